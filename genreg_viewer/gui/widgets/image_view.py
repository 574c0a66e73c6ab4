"""Image display: a pyqtgraph view box with an image, a title, a caption and an optional star marker.

Images are ``(H, W)`` numpy arrays indexed ``[row, col]``; pixel ``(row, col)`` covers the square
``[col, col + 1] x [row, row + 1]`` in view coordinates and row 0 is at the top (the y axis is inverted).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont
from PyQt6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from ...render import DIVERGING_STOPS
from ..qt_typed import layout_of
from ..theme import on_theme_change, view_colors

#: grey for images in [0, 1]
GREY = pg.ColorMap(pos=[0.0, 1.0], color=[(0, 0, 0), (255, 255, 255)], name="grey")
#: blue-white-red, symmetric about zero, white exactly at 0 (the same stops as the CLI's PNGs,
#: :data:`genreg_viewer.render.DIVERGING_STOPS`): correlation maps (levels [-1, 1]) and differences to the truth
DIVERGING = pg.ColorMap(pos=[p for p, _ in DIVERGING_STOPS], color=[c for _, c in DIVERGING_STOPS], name="diverging")
#: perceptually uniform map for non-negative maps (variance, posterior standard deviation)
SEQUENTIAL = pg.colormap.get("viridis")


#: entries of the lookup tables: odd, so that the middle of symmetric levels ``[-v, v]`` (value 0) falls on the
#: entry at exactly the middle of the map (white for :data:`DIVERGING`); pyqtgraph maps a value ``t`` of the levels'
#: span to entry ``floor(t * LUT_SIZE)``
LUT_SIZE = 257


_LOOKUP_TABLES: dict[int, tuple[pg.ColorMap, np.ndarray]] = {}


def lookup_table(colormap: pg.ColorMap) -> np.ndarray:
    """``LUT_SIZE`` RGBA entries of ``colormap`` (entry ``k`` is the map at ``k / (LUT_SIZE - 1)``), cached."""
    cached = _LOOKUP_TABLES.get(id(colormap))
    if cached is None or cached[0] is not colormap:
        cached = _LOOKUP_TABLES[id(colormap)] = (colormap, colormap.getLookupTable(0.0, 1.0, nPts=LUT_SIZE,
                                                                                   alpha=True))
    return cached[1]


def em(widget: QWidget, factor: float = 1.0) -> int:
    """``factor`` times the height of a line of text: the unit for sizes, so layouts scale with fonts and DPI."""
    return int(round(factor * widget.fontMetrics().height()))


class PixelImageItem(pg.ImageItem):
    """An ``ImageItem`` that reports pixels under the mouse as ``(row, col)``.

    Left clicks always emit ``pixelClicked``. Left drags emit ``pixelDragged(row, col, finished)`` only while
    ``drag_picking`` is on (the view box pans otherwise). ``hovered(x, y)`` follows the mouse in view coordinates
    (NaN when it leaves the image).
    """

    pixelClicked = pyqtSignal(int, int)
    pixelDragged = pyqtSignal(int, int, bool)
    dragStarted = pyqtSignal(int, int)
    hovered = pyqtSignal(float, float)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drag_picking = False
        self.setAcceptHoverEvents(True)

    def pixel_at(self, pos: QPointF) -> tuple[int, int] | None:
        """The ``(row, col)`` under an item-coordinate position, or None outside the image."""
        if self.image is None:
            return None
        row, col = int(math.floor(pos.y())), int(math.floor(pos.x()))
        height, width = self.image.shape[:2]
        if 0 <= row < height and 0 <= col < width:
            return row, col
        return None

    def mouseClickEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton:
            super().mouseClickEvent(ev)
            return
        pixel = self.pixel_at(ev.pos())
        if pixel is None:
            ev.ignore()
            return
        ev.accept()
        self.pixelClicked.emit(*pixel)

    def mouseDragEvent(self, ev):
        if not self.drag_picking or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            start = self.pixel_at(ev.buttonDownPos())
            if start is not None:
                self.dragStarted.emit(*start)
        pixel = self.pixel_at(ev.pos())
        if pixel is not None:
            self.pixelDragged.emit(pixel[0], pixel[1], bool(ev.isFinish()))

    def hoverEvent(self, ev):
        if ev.isExit():
            self.hovered.emit(math.nan, math.nan)
            return
        pos = ev.pos()
        self.hovered.emit(float(pos.x()), float(pos.y()))


class _Marker(pg.ScatterPlotItem):
    """The star that marks a pixel: clicks pass through it to the image (a scatter item takes left clicks near its
    points, and pyqtgraph's pixel-mode hit test also took clicks far from the star, so a click on a marked view was
    lost)."""

    def mouseClickEvent(self, ev):  # noqa: N802 (pyqtgraph API)
        ev.ignore()


class _FitState:
    """Shared by linked views: True while they fit the image (until the user pans or zooms)."""

    auto = True


class ImageViewBox(pg.ViewBox):
    """A view box for images that are linked leader/follower style.

    Followers (``link_follower``) show exactly the leader's region; a follower's own range changes reach the
    leader (and through it every other follower) only when the user pans or zooms the follower. pyqtgraph's
    default instead lines linked views up by their position on screen and echoes every adjustment back, so
    side-by-side views of different sizes (a colour bar, a longer caption) drift against each other.
    """

    link_follower = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._interacting = False

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (pyqtgraph API)
        self._interacting = True
        try:
            super().mouseDragEvent(ev, axis)
        finally:
            self._interacting = False

    def wheelEvent(self, ev, axis=None):  # noqa: N802
        self._interacting = True
        try:
            super().wheelEvent(ev, axis)
        finally:
            self._interacting = False

    def linkedViewChanged(self, view, axis):  # noqa: N802
        if self.linksBlocked or view is None:
            return
        if getattr(view, "link_follower", False) and not getattr(view, "_interacting", False):
            return
        rect = view.viewRect()
        view.blockLink(True)
        try:
            if axis == pg.ViewBox.XAxis:
                self.setXRange(rect.left(), rect.right(), padding=0)
            else:
                self.setYRange(rect.top(), rect.bottom(), padding=0)
        finally:
            view.blockLink(False)


class ImageView(QWidget):
    """A titled image with a caption below; clicks report ``pixelClicked(row, col)``.

    The view fits the image until the user pans or zooms; ``set_image`` then keeps the zoom. A star marker
    (``set_marker``) marks a pixel, e.g. the one whose covariance row is shown.
    """

    pixelClicked = pyqtSignal(int, int)

    def __init__(self, title: str = "", parent: QWidget | None = None, caption: bool = True, square: bool = True):
        super().__init__(parent)
        self.square = square
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(em(self, 0.25))
        self.title_label = QLabel(title)
        title_font = QFont(self.title_label.font())
        title_font.setBold(True)
        self.title_label.setFont(title_font)
        self.title_label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.title_label.setWordWrap(True)
        self.title_label.setVisible(bool(title))
        layout.addWidget(self.title_label)

        self.graphics = pg.GraphicsView()
        self.graphics.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.graphics.setMinimumSize(em(self, 6), em(self, 6))
        self.view_box = ImageViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view_box.setDefaultPadding(0.01)
        self.view_box.disableAutoRange()  # fitting is explicit (see ``fit``): linked views fight over auto-range
        self._fit = _FitState()
        self._leader: ImageView | None = None  #: the view this one is linked to (see ``link_to``)
        self.layout_item = pg.GraphicsLayout()
        self.layout_item.setContentsMargins(0, 0, 0, 0)
        self.layout_item.addItem(self.view_box, 0, 0)
        self.graphics.setCentralItem(self.layout_item)
        self.colorbar: pg.ColorBarItem | None = None
        self.image_item = PixelImageItem()
        self.view_box.addItem(self.image_item)
        self.view_box.sigRangeChangedManually.connect(self._range_changed_by_user)
        self.view_box.sigResized.connect(self._resized)
        self.image_item.pixelClicked.connect(self.pixelClicked)
        layout.addWidget(self.graphics, 1)

        self.marker = _Marker(symbol="star", size=em(self, 1.3), pxMode=True)
        self.marker.setZValue(10)
        self.marker.setVisible(False)
        self.view_box.addItem(self.marker, ignoreBounds=True)

        self.caption_label = QLabel("")
        self.caption_label.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.caption_label.setTextFormat(Qt.TextFormat.RichText)
        self.caption_label.setWordWrap(True)
        self.caption_label.setVisible(caption)
        layout.addWidget(self.caption_label)
        layout.addStretch(0)
        on_theme_change(self, self._apply_theme)

    # --------------------------------------------------------------------- API
    def set_title(self, title: str) -> None:
        self.title_label.setText(title)
        self.title_label.setVisible(bool(title))

    def set_caption(self, text: str) -> None:
        self.caption_label.setText(text)

    def set_image(
        self,
        image: np.ndarray | None,
        levels: tuple[float, float] = (0.0, 1.0),
        colormap: pg.ColorMap = GREY,
    ) -> None:
        """Show ``image`` (H, W) with fixed ``levels`` and ``colormap`` (None clears the view)."""
        if image is None:
            self.image_item.clear()
            return
        image = np.asarray(image, dtype=np.float32)
        previous = self.image_item.image
        self.image_item.setImage(image, autoLevels=False, levels=levels)
        self.image_item.setLookupTable(lookup_table(colormap))
        if self._fit.auto and (previous is None or previous.shape != image.shape):
            self.fit()

    def set_rgb_image(self, rgb: np.ndarray) -> None:
        """Show an ``(H, W, 3)`` colour image with values in [0, 1] as it is (no colour map)."""
        rgb = np.asarray(rgb, dtype=np.float32)
        previous = self.image_item.image
        self.image_item.setLookupTable(None)
        self.image_item.setImage(rgb, autoLevels=False, levels=(0.0, 1.0))
        if self._fit.auto and (previous is None or previous.shape[:2] != rgb.shape[:2]):
            self.fit()

    def image(self) -> np.ndarray | None:
        return self.image_item.image

    def show_colorbar(self, colormap: pg.ColorMap, levels: tuple[float, float], label: str = "") -> None:
        """Show (or update) a colour bar beside the image for ``colormap`` over ``levels``."""
        if self.colorbar is None:
            self.colorbar = pg.ColorBarItem(values=levels, colorMap=colormap, interactive=False,
                                            width=em(self, 0.8))
            if label:
                self.colorbar.axis.setLabel(label)
            self.colorbar.axis.setWidth(None)  # as wide as its tick labels and title (pyqtgraph fixes 45 px)
            self.colorbar.axis.enableAutoSIPrefix(False)  # the label names the unit; no "(x0.001)" after it
            # half a text line above and below the bar, so the end tick labels (centred on the ends) are not clipped
            half_line = self.fontMetrics().height() // 2 + 1
            self.colorbar.setContentsMargins(0, half_line, 0, half_line)
            self.layout_item.addItem(self.colorbar, 0, 1)
            self._apply_theme()
        else:
            self.colorbar.setColorMap(colormap)
            self.colorbar.setLevels(values=levels)
            if label and label != self.colorbar.axis.labelText:
                self.colorbar.axis.setLabel(label)
                self._apply_theme()

    def set_marker(self, row: int | None, col: int | None = None) -> None:
        """Draw a star at the centre of pixel ``(row, col)``; ``None`` hides it."""
        if row is None:
            self.marker.setVisible(False)
            return
        assert col is not None, "a marked pixel needs its column"
        self.marker.setData([col + 0.5], [row + 0.5])
        self.marker.setVisible(True)

    def link_to(self, other: "ImageView") -> None:
        """Pan and zoom together with ``other`` (or the view ``other`` follows), which leads: it decides the
        region shown when the views fit the image."""
        leader = other._leader or other
        self._leader = leader
        self._fit = leader._fit
        self.view_box.link_follower = True
        self.view_box.setXLink(leader.view_box)
        self.view_box.setYLink(leader.view_box)

    def fit(self) -> None:
        """Show the whole image (in the leader of linked views, which passes the region on)."""
        target = self._leader if self._leader is not None and self._leader.image() is not None else self
        if target.image() is not None:
            target.view_box.autoRange(padding=0.01)

    def reset_zoom(self) -> None:
        """Fit the image, and keep fitting it on resizes until the next pan or zoom."""
        self._fit.auto = True
        self.fit()

    def _range_changed_by_user(self, *_args) -> None:
        self._fit.auto = False

    def _resized(self, *_args) -> None:
        if self._fit.auto:
            self.fit()

    def set_square_both_ways(self, on: bool = True) -> None:
        """Keep the image area square however the view is shaped: no taller than wide (as every square view) and
        also no wider than the height left by the title and caption allows, centred (no dark bands beside a
        square image in a wide cell)."""
        self.square_both_ways = on
        if not on:
            layout_of(self).setContentsMargins(0, 0, 0, 0)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """A square view keeps the image area no taller than wide (the caption stays under the image)."""
        super().resizeEvent(event)
        if self.square:
            self.graphics.setMaximumHeight(max(self.width(), self.graphics.minimumHeight()))
        if self.square and getattr(self, "square_both_ways", False):
            layout = layout_of(self)
            used = 0
            for label in (self.title_label, self.caption_label):
                if not label.isHidden():
                    used += label.heightForWidth(self.width()) + layout.spacing()
            side = max(min(self.width(), self.height() - used), self.graphics.minimumWidth())
            pad = max((self.width() - side) // 2, 0)  # the spare width left and right: a centred square
            if layout.contentsMargins().left() != pad:
                layout.setContentsMargins(pad, 0, pad, 0)

    # ------------------------------------------------------------------- theme
    def _apply_theme(self) -> None:
        colours = view_colors()
        self.graphics.setBackground(colours["image_background"])
        if self.colorbar is not None:  # drawn on the (always dark) image background
            self.colorbar.axis.setTextPen(pg.mkPen("#d8d8d8"))
            self.colorbar.axis.setPen(pg.mkPen("#8a8a8a"))
            if self.colorbar.axis.labelText:
                self.colorbar.axis.setLabel(self.colorbar.axis.labelText, color="#d8d8d8")
        self.marker.setPen(pg.mkPen(QColor("#111111"), width=1))
        self.marker.setBrush(pg.mkBrush(QColor("#ffd400")))
