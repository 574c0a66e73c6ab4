"""pyqtgraph plots that follow the application theme."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QGraphicsItem, QLabel, QWidget

from ..theme import SERIES_COLORS, on_theme_change, view_colors
from .image_view import em


class ThemedPlot(pg.PlotWidget):
    """A ``PlotWidget`` with a grid, axis labels and theme-aware colours."""

    def __init__(self, title: str = "", x_label: str = "", y_label: str = "", log_y: bool = False,
                 legend: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self._title = title
        self._labels = {"bottom": x_label, "left": y_label}
        self.showGrid(x=True, y=True, alpha=0.25)
        self.setLogMode(x=False, y=log_y)
        self.setMinimumSize(em(self, 10), em(self, 6))
        self.legend = self.addLegend(offset=(-em(self, 0.5), em(self, 0.5))) if legend else None
        self.setMenuEnabled(False)
        for name in ("left", "bottom", "top", "right"):
            axis = self.getAxis(name)
            axis.enableAutoSIPrefix(False)
            # an axis (with its grid lines) is redrawn from a cached pixmap unless its range or size changed: a
            # new curve point then repaints only the curve (the axes were most of each repaint, several ms each)
            axis.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # a fixed width for the tick labels: new labels (a growing range) then do not resize the plot area, which
        # would redraw every axis of the plot
        self.getAxis("left").setWidth(em(self, 4.2))
        on_theme_change(self, self._apply_theme)

    def set_title_text(self, title: str) -> None:
        """Set the plot's title (kept across theme changes)."""
        self._title = title
        self._apply_theme()

    def set_axis_label(self, axis: str, text: str) -> None:
        """Set the label of the ``bottom`` or ``left`` axis (kept across theme changes)."""
        self._labels[axis] = text
        self._apply_theme()

    def place_legend_away_from(self, xs, ys) -> str:
        """Anchor the legend in the corner of the plot with the fewest of the points ``(xs, ys)`` under it (the
        best points of a sweep sit in a top corner, where a fixed legend covered them); returns the corner."""
        if self.legend is None:
            return ""
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        finite = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[finite], ys[finite]
        corners = {"top-right": (1, 0), "bottom-right": (1, 1), "top-left": (0, 0), "bottom-left": (0, 1)}
        if xs.size:
            u = (xs - xs.min()) / (np.ptp(xs) or 1.0)  # 0 left .. 1 right
            v = (ys.max() - ys) / (np.ptp(ys) or 1.0)  # 0 top .. 1 bottom
            counts = {name: int(np.sum((np.abs(u - cx) < 0.45) & (np.abs(v - cy) < 0.4)))
                      for name, (cx, cy) in corners.items()}
            corner = min(corners, key=lambda name: counts[name])  # ties: the order above
        else:
            corner = "top-right"
        cx, cy = corners[corner]
        margin = em(self, 0.5)
        self.legend.anchor(itemPos=(cx, cy), parentPos=(cx, cy),
                           offset=(-margin if cx else margin, -margin if cy else margin))
        self.legend_corner = corner
        return corner

    def series_pen(self, index: int, width: float = 2.0, dashed: bool = False):
        pen = pg.mkPen(SERIES_COLORS[index % len(SERIES_COLORS)], width=width)
        if dashed:
            pen.setStyle(pg.QtCore.Qt.PenStyle.DashLine)
        return pen

    def _apply_theme(self) -> None:
        colours = view_colors()
        self.setBackground(colours["background"])
        foreground = colours["foreground"]
        for name in ("left", "bottom"):
            axis = self.getAxis(name)
            axis.setPen(pg.mkPen(colours["muted"]))
            axis.setTextPen(pg.mkPen(foreground))
            if self._labels[name]:
                axis.setLabel(self._labels[name], color=foreground.name())
        if self._title:
            self.setTitle(self._title, color=foreground.name())
        if self.legend is not None:
            self.legend.setLabelTextColor(foreground)
            self.legend.setBrush(pg.mkBrush(colours["background"].red(), colours["background"].green(),
                                            colours["background"].blue(), 200))


class SeriesLegend(QLabel):
    """A legend beside the plots, never over their data: one line sample (``━●━``) in the series' colour and its
    name per entry, side by side, wrapping at the widget's width; several plots of the same series share it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter)
        self.entries: list[tuple[str, str]] = []  #: (name, colour as #rrggbb)

    def set_entries(self, entries: list[tuple[str, str]]) -> None:
        """Show ``(name, colour)`` entries (``colour``: a ``QColor`` or ``#rrggbb``), nothing for none."""
        self.entries = [(name, colour if isinstance(colour, str) else colour.name()) for name, colour in entries]
        self.setText("&nbsp;&nbsp;&nbsp; ".join(
            f'<span style="white-space:nowrap"><span style="color:{colour}; font-weight:bold">━●━</span>&nbsp;'
            f"{html.escape(name)}</span>" for name, colour in self.entries))
        self.setVisible(bool(self.entries))
