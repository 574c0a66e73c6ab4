"""Comparison: every finished run as a tile beside the ground truth and the zero-filled adjoint.

All tiles pan and zoom together (``ViewBox.setXLink/setYLink`` to the ground-truth tile) and share one contrast
window. A zoom-in inset magnifies the region chosen with the rectangle on the ground-truth tile in the corner of
every tile (as in the paper's figures). "Difference to truth" shows ``x - x_true`` with a blue-white-red map
symmetric about zero. The grid exports as PNG exactly as shown.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QRect, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QColor, QTextDocument
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGraphicsRectItem,
    QGridLayout,
    QLabel,
    QMenu,
    QScrollArea,
    QSizePolicy,
    QSpacerItem,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from ...application import ExperimentState, RunRecord, describe_setting
from ...fileio import atomic_path
from ..qt_typed import add_action, layout_of, viewport_of
from ..run_status import run_details, run_summary
from ..widgets.controls import float_spin, int_spin
from ..widgets.image_view import DIVERGING, GREY, ImageView, em, lookup_table

INSET_COLOUR = QColor("#ffd400")
INSET_FRACTION = 0.42  #: inset width as a fraction of the image width
DISPLAY_MODES = (("image", "Images"), ("difference", "Difference to truth"))
#: most tiles per row the automatic layout puts side by side
MAX_AUTO_COLUMNS = 6


@dataclass
class TileContent:
    """What one tile of the grid shows: an image with its title, details and tooltip."""

    key: str  #: "truth", "adjoint" or "run:<id>"
    title: str
    image: np.ndarray
    details: str = ""  #: metrics and setting, shown under the title
    run_id: int | None = None
    tooltip: str = ""


class ComparisonTile(QFrame):
    """One image of the grid with its caption, an optional zoom inset and a context menu."""

    removeRequested = pyqtSignal(int)
    inspectRequested = pyqtSignal(object)  # np.ndarray

    def __init__(self, content: TileContent, parent: QWidget | None = None):
        super().__init__(parent)
        self.content = content
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        margin = em(self, 0.15)
        layout.setContentsMargins(margin, margin, margin, margin)
        self.view = ImageView("")
        self.view.setMinimumWidth(em(self, 10))
        # the same caption height on every tile keeps the linked views the same size (and aligned)
        self.view.caption_label.setFixedHeight(self.view.caption_label.fontMetrics().lineSpacing() * 4 + 2)
        self.view.caption_label.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.view)
        self.inset = pg.ImageItem()
        self.inset.setZValue(5)
        self.inset_border = QGraphicsRectItem()
        self.region_outline = QGraphicsRectItem()
        pen = pg.mkPen(INSET_COLOUR, width=1.5)
        pen.setCosmetic(True)
        for item in (self.inset_border, self.region_outline):
            item.setPen(pen)
            item.setZValue(6)
            self.view.view_box.addItem(item, ignoreBounds=True)
        self.view.view_box.addItem(self.inset, ignoreBounds=True)
        self.set_content(content)

    def set_content(self, content: TileContent) -> None:
        self.content = content
        details = f"<br><span>{content.details}</span>" if content.details else ""
        self.view.set_caption(f"<b>{content.title}</b>{details}")
        self.setToolTip(content.tooltip)

    def show_image(self, image: np.ndarray, levels: tuple[float, float], colormap: pg.ColorMap,
             region: tuple[int, int, int, int] | None, own_outline: bool = True) -> None:
        """Display ``image``; with ``region = (row, col, height, width)`` also the magnified inset."""
        self.view.set_image(image, levels, colormap)
        show_inset = region is not None
        for item in (self.inset, self.inset_border):
            item.setVisible(show_inset)
        self.region_outline.setVisible(show_inset and own_outline)
        if region is None:
            return
        row, col, height, width = region
        crop = image[row:row + height, col:col + width]
        self.inset.setImage(crop, autoLevels=False, levels=levels)
        self.inset.setLookupTable(lookup_table(colormap))
        rows, cols = image.shape
        inset_width = INSET_FRACTION * cols
        inset_height = inset_width * height / max(width, 1)
        rect = QRectF(cols - inset_width, rows - inset_height, inset_width, inset_height)
        self.inset.setRect(rect)
        self.inset_border.setRect(rect)
        self.region_outline.setRect(QRectF(col, row, width, height))

    def contextMenuEvent(self, event) -> None:  # noqa: N802 (Qt API)
        menu = QMenu(self)
        inspect = QAction("Inspect covariance of this image", menu)
        inspect.triggered.connect(lambda: self.inspectRequested.emit(self.content.image))
        menu.addAction(inspect)
        if self.content.run_id is not None:
            remove = QAction("Remove from comparison", menu)
            remove.triggered.connect(lambda: self.removeRequested.emit(self.content.run_id))
            menu.addAction(remove)
        menu.exec(event.globalPos())


class ComparisonPanel(QWidget):
    """The side-by-side grid of ground truth, adjoint and every finished run, with display controls."""

    exportPngRequested = pyqtSignal()
    exportResultsRequested = pyqtSignal()
    clearRequested = pyqtSignal()
    inspectRequested = pyqtSignal(object)

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.tiles: dict[str, ComparisonTile] = {}
        self.region = (40, 40, 32, 32)  #: (row, col, height, width) of the zoom-in inset
        layout = QVBoxLayout(self)
        layout.addWidget(self._toolbar())
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setSpacing(em(self, 0.35))
        self._base_margin = em(self, 0.25)
        self._spacer = QSpacerItem(0, 0, QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Expanding)
        self.grid.setContentsMargins(*(self._base_margin,) * 4)
        self.scroll_area.setWidget(self.grid_widget)
        viewport_of(self.scroll_area).installEventFilter(self)
        self.columns = 1
        layout.addWidget(self.scroll_area, 1)
        self.roi: pg.RectROI | None = None
        state.image_changed.connect(self.rebuild)
        state.measurement_changed.connect(self._measurement_changed)
        state.result_added.connect(self._result_added)
        state.result_removed.connect(lambda _id: self.rebuild())
        state.results_cleared.connect(self.rebuild)

    # ------------------------------------------------------------------ toolbar
    def _toolbar(self) -> QWidget:
        """Display controls and actions; a tool bar folds what does not fit into its » menu."""
        bar = QToolBar()
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.mode_combo = QComboBox()
        for mode, label in DISPLAY_MODES:
            self.mode_combo.addItem(label, mode)
        self.mode_combo.currentIndexChanged.connect(self.refresh)
        self.low_spin = float_spin(-1.0, 2.0, 0.05, 2, 0.0)
        self.high_spin = float_spin(-1.0, 2.0, 0.05, 2, 1.0)
        self.low_spin.setToolTip("Shared contrast window: black level")
        self.high_spin.setToolTip("Shared contrast window: white level")
        self.diff_spin = float_spin(0.01, 1.0, 0.05, 2, 0.25)
        self.diff_spin.setPrefix("± ")
        self.diff_spin.setToolTip("Colour range of the difference maps (symmetric about zero)")
        for spin in (self.low_spin, self.high_spin, self.diff_spin):
            spin.valueChanged.connect(self.refresh)
        self.inset_check = QCheckBox("Zoom inset")
        self.inset_check.setToolTip("Magnify the region marked on the ground truth in a corner of every tile")
        self.inset_check.toggled.connect(self.refresh)
        self.columns_spin = int_spin(0, 12, 0)
        self.columns_spin.setSpecialValueText("auto")
        self.columns_spin.setToolTip("Tiles per row")
        self.columns_spin.valueChanged.connect(self.rebuild)
        actions = QToolBar()
        actions.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        add_action(actions, "Export PNG…", self.exportPngRequested.emit).setToolTip("Save the grid as shown (Ctrl+E)")
        add_action(actions, "Export results…", self.exportResultsRequested.emit).setToolTip(
            "Save the images, mask and metrics as .npz or .h5 (Ctrl+Shift+E)")
        add_action(actions, "Reset zoom", self.reset_zoom).setToolTip("Fit the images (Ctrl+0)")
        add_action(actions, "Clear runs", self.clearRequested.emit).setToolTip(
            "Remove every run from the grid (Undo with Ctrl+Z)")
        actions.addSeparator()
        widget: QWidget
        for widget in (self.inset_check, QLabel("   Columns "), self.columns_spin):
            actions.addWidget(widget)
        for widget in (QLabel("Show "), self.mode_combo, QLabel("   Window "), self.low_spin, self.high_spin):
            bar.addWidget(widget)
        add_action(bar, "Auto", self.auto_window).setToolTip("Window from the ground truth's 0.5-99.5 percentiles")
        for widget in (QLabel("   Difference "), self.diff_spin):
            bar.addWidget(widget)
        box = QWidget()
        rows = QVBoxLayout(box)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.setSpacing(0)
        rows.addWidget(actions)
        rows.addWidget(bar)
        return box

    # --------------------------------------------------------------------- API
    def contents(self) -> list[TileContent]:
        state = self.state
        if state.image is None:
            return []
        items = [TileContent("truth", "Ground truth", state.image, state.image_info.label())]
        if state.adjoint is not None:
            scores = state.adjoint_metrics()
            details = f"PSNR&nbsp;{scores[0]:.2f}&nbsp;dB · SSIM&nbsp;{scores[1]:.3f}" if scores else ""
            # named apart from a run of the adjoint method, whose tile would otherwise carry the same caption
            items.append(TileContent("adjoint", "Measurement: zero-filled adjoint", state.adjoint,
                                     f"{details}<br>{describe_setting(state.setting())}"))
        labels = numbered_labels(state.results)
        for record in state.results:
            label = labels[record.run_id]
            items.append(TileContent(f"run:{record.run_id}", label, record.image,
                                     _record_details(record), record.run_id, _record_tooltip(record, label)))
        return items

    def rebuild(self) -> None:
        """Recreate the tiles from the state (keeping the zoom) and lay them out."""
        zoom = self._current_range()
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.hide()
            tile.deleteLater()
        self.tiles.clear()
        self.roi = None
        for content in self.contents():
            self._new_tile(content)
        truth = self.tiles.get("truth")
        if truth is not None:
            for key, tile in self.tiles.items():
                if key != "truth":
                    tile.view.link_to(truth.view)
            self._make_roi(truth)
        self._layout_tiles()
        self.refresh()
        if zoom is not None and truth is not None:  # keep the user's zoom across rebuilds
            truth.view._fit.auto = False
            truth.view.view_box.setRange(xRange=zoom[0], yRange=zoom[1], padding=0)

    def _new_tile(self, content: TileContent) -> ComparisonTile:
        tile = ComparisonTile(content)
        tile.removeRequested.connect(self.state.remove_result)
        tile.inspectRequested.connect(self.inspectRequested)
        self.tiles[content.key] = tile
        return tile

    def _layout_tiles(self) -> None:
        """Place the tiles in reading order, ``columns`` per row (auto: as many as show them largest in the
        window, see :meth:`_size_tiles`), spare height below them."""
        columns = self.columns_spin.value() or self._auto_columns()
        self._place(columns)
        self._size_tiles()

    def _place(self, columns: int) -> None:
        count = len(self.tiles)
        self.columns = columns
        for row in range(self.grid.rowCount()):
            self.grid.setRowStretch(row, 0)
        for index, tile in enumerate(self.tiles.values()):
            self.grid.addWidget(tile, index // columns, index % columns)  # moves a tile already in the grid
        # the spare height below the tiles (an empty row would take no stretch: the tiles would grow instead)
        self.grid.removeItem(self._spacer)
        self.grid.addItem(self._spacer, (count - 1) // columns + 1, 0)
        self.grid.setRowStretch((count - 1) // columns + 1, 1)

    def _auto_columns(self) -> int:
        """The column count (up to :data:`MAX_AUTO_COLUMNS`) whose tiles come out largest in the viewport."""
        count = max(len(self.tiles), 1)
        best, best_side = 1, -1
        for columns in range(1, min(count, MAX_AUTO_COLUMNS) + 1):
            side = self._fit(columns)[0]
            if side > best_side + 0.5:
                best, best_side = columns, side
        return best

    def _result_added(self, record: RunRecord) -> None:
        """One more tile for a new run; the others stay as they are (a new run costs one tile, not a grid)."""
        truth = self.tiles.get("truth")
        key = f"run:{record.run_id}"
        if truth is None or key in self.tiles:
            self.rebuild()
            return
        content = next(c for c in self.contents() if c.key == key)
        tile = self._new_tile(content)
        tile.view.link_to(truth.view)
        self._layout_tiles()
        self._show_tile(key, tile)

    def refresh(self) -> None:
        """Redraw every tile with the current mode, contrast window and inset."""
        if self.tiles.get("truth") is None:
            return
        for key, tile in self.tiles.items():
            self._show_tile(key, tile)
        if self.roi is not None:
            self.roi.setVisible(self.inset_check.isChecked())

    def _show_tile(self, key: str, tile: ComparisonTile) -> None:
        truth = self.tiles["truth"].content.image
        region = self.region if self.inset_check.isChecked() else None
        window = (self.low_spin.value(), self.high_spin.value())
        if window[1] <= window[0]:
            window = (window[0], window[0] + 1e-3)
        spread = self.diff_spin.value()
        if self.mode_combo.currentData() == "difference" and key != "truth":
            tile.show_image(tile.content.image - truth, (-spread, spread), DIVERGING, region)
        else:
            tile.show_image(tile.content.image, window, GREY, region, own_outline=key != "truth")

    def auto_window(self) -> None:
        if self.state.image is None:
            return
        low, high = np.percentile(self.state.image, [0.5, 99.5])
        self.low_spin.setValue(float(low))
        self.high_spin.setValue(float(high) if high > low else float(low) + 0.01)

    def reset_zoom(self) -> None:
        truth = self.tiles.get("truth")
        if truth is not None:
            truth.view.reset_zoom()

    def set_region(self, row: int, col: int, height: int, width: int) -> None:
        """Set the inset region (clamped to the image) and redraw."""
        rows, cols = self.state.shape
        height, width = int(np.clip(height, 4, rows)), int(np.clip(width, 4, cols))
        row, col = int(np.clip(row, 0, rows - height)), int(np.clip(col, 0, cols - width))
        self.region = (row, col, height, width)
        if self.roi is not None:
            self.roi.blockSignals(True)
            self.roi.setPos((col, row))
            self.roi.setSize((width, height))
            self.roi.blockSignals(False)
        self.refresh()

    def display_settings(self) -> dict:
        return {
            "mode": self.mode_combo.currentData(),
            "window": [self.low_spin.value(), self.high_spin.value()],
            "difference_range": self.diff_spin.value(),
            "inset": self.inset_check.isChecked(),
            "region": list(self.region),
            "columns": self.columns_spin.value(),
        }

    def restore_display_settings(self, settings: dict) -> None:
        if not settings:
            return
        self.mode_combo.setCurrentIndex(max(self.mode_combo.findData(settings.get("mode", "image")), 0))
        low, high = settings.get("window", [0.0, 1.0])
        self.low_spin.setValue(low)
        self.high_spin.setValue(high)
        self.diff_spin.setValue(settings.get("difference_range", self.diff_spin.value()))
        self.inset_check.setChecked(bool(settings.get("inset", False)))
        self.columns_spin.setValue(int(settings.get("columns", 0)))
        if "region" in settings:
            self.set_region(*settings["region"])

    def save_png(self, path) -> None:
        """Write the tiles as shown to ``path`` (PNG, atomically): just the tiles (no empty space below them), and
        the inset region drawn as an outline instead of the draggable rectangle with its handles."""
        if not self.tiles:
            raise ValueError("there is nothing to export: open an image first")
        truth = self.tiles.get("truth")
        roi = self.roi if self.roi is not None and self.roi.isVisible() else None
        if roi is not None and truth is not None:
            roi.setVisible(False)
            truth.region_outline.setVisible(True)
        try:
            area = QRect()
            for tile in self.tiles.values():
                area = area.united(tile.geometry())
            pixmap = self.grid_widget.grab(area)
            with atomic_path(path, suffix=".png") as tmp:
                if not pixmap.save(str(tmp), "PNG"):
                    raise OSError(f"could not write {path}")
        finally:
            if roi is not None and truth is not None:
                roi.setVisible(True)
                truth.region_outline.setVisible(False)

    # ---------------------------------------------------------------- internals
    def eventFilter(self, watched, event) -> bool:  # noqa: N802 (Qt API)
        if watched is self.scroll_area.viewport() and event.type() == QEvent.Type.Resize:
            self._size_tiles()
        return super().eventFilter(watched, event)

    def _fit(self, columns: int) -> tuple[int, int]:
        """``(side, caption height)`` of square image views in ``columns`` columns: as wide as a column, and no
        taller than lets every row (view and caption) fit the viewport's height (but at least 8 lines of text;
        the grid scrolls below that)."""
        viewport = viewport_of(self.scroll_area)
        margin = self._base_margin
        spacing = self.grid.spacing()
        count = max(len(self.tiles), 1)
        rows = -(-count // columns)
        tile = next(iter(self.tiles.values()), None)
        extra = 0
        if tile is not None:
            tile_margins = layout_of(tile).contentsMargins()
            extra = tile_margins.left() + tile_margins.right() + 2 * tile.frameWidth()
            extra_height = tile_margins.top() + tile_margins.bottom() + 2 * tile.frameWidth() + \
                layout_of(tile).spacing() + layout_of(tile.view).spacing()
        else:
            extra_height = 0
        side = int((viewport.width() - 2 * margin - spacing * (columns - 1)) / columns) - extra
        row_height = (viewport.height() - 2 * margin - spacing * (rows - 1)) / rows - extra_height
        caption = self._caption_height(side)
        for _ in range(2):  # a narrower view wraps its caption onto more lines: fit again with the taller caption
            if side + caption <= row_height:
                break
            side = max(int(row_height - caption), em(self, 8))
            caption = self._caption_height(side)
        return max(side, em(self, 8)), caption

    def _caption_height(self, width: int) -> int:
        """The height of the tallest caption at ``width`` (at least two lines)."""
        lines = [t.view.caption_label.fontMetrics().lineSpacing() * 2 for t in self.tiles.values()]
        return max([_text_height(t.view.caption_label, max(width, em(self, 8))) for t in self.tiles.values()]
                   + lines + [0])

    def _size_tiles(self) -> None:
        """Square image views as large as the viewport allows for the column count (auto: the count that makes
        them largest), the grid centred; the same caption height on every tile keeps the linked views aligned."""
        if not self.tiles:
            return
        if not self.columns_spin.value():
            columns = self._auto_columns()
            if columns != self.columns:
                self._place(columns)
        side, caption = self._fit(self.columns)
        tile = next(iter(self.tiles.values()))
        tile_margins = layout_of(tile).contentsMargins()
        width = side + tile_margins.left() + tile_margins.right() + 2 * tile.frameWidth()
        # the columns as wide as the tiles (square views), the spare width split left and right
        viewport_width = viewport_of(self.scroll_area).width()
        spare = viewport_width - self.columns * width - self.grid.spacing() * (self.columns - 1)
        side_margin = max(self._base_margin, spare // 2)
        self.grid.setContentsMargins(side_margin, self._base_margin, side_margin, self._base_margin)
        for tile in self.tiles.values():
            tile.setFixedWidth(width)
            tile.view.graphics.setFixedHeight(side)
            tile.view.caption_label.setFixedHeight(caption + 2)

    def _current_range(self):
        """The truth tile's view range when the user has zoomed (None while the tiles fit the image)."""
        truth = self.tiles.get("truth")
        if truth is None or truth.view.image() is None or truth.view._fit.auto:
            return None
        return truth.view.view_box.viewRange()

    def _make_roi(self, truth: ComparisonTile) -> None:
        row, col, height, width = self.region
        pen = pg.mkPen(INSET_COLOUR, width=1.5)
        self.roi = pg.RectROI((col, row), (width, height), pen=pen, movable=True, rotatable=False,
                              resizable=True, snapSize=1.0, translateSnap=True, scaleSnap=True)
        self.roi.setZValue(7)
        self.roi.sigRegionChangeFinished.connect(self._roi_moved)
        truth.view.view_box.addItem(self.roi, ignoreBounds=True)

    def _roi_moved(self, roi) -> None:
        (col, row), (width, height) = roi.pos(), roi.size()
        self.set_region(int(round(row)), int(round(col)), int(round(height)), int(round(width)))

    def _measurement_changed(self) -> None:
        adjoint = self.tiles.get("adjoint")
        if (adjoint is None) != (self.state.adjoint is None):
            self.rebuild()
            return
        if adjoint is not None:
            content = next(c for c in self.contents() if c.key == "adjoint")
            adjoint.set_content(content)
            self._size_tiles()
            self.refresh()


def _text_height(label: QLabel, width: int) -> int:
    """The height of ``label``'s rich text wrapped at ``width`` (``QLabel.heightForWidth`` would answer at least
    the label's fixed height, so a caption sized by it could only grow)."""
    document = QTextDocument()
    document.setDocumentMargin(0)
    document.setDefaultFont(label.font())
    document.setHtml(label.text())
    document.setTextWidth(width)
    return int(math.ceil(document.size().height()))


def _record_details(record: RunRecord) -> str:
    """Metrics and setting, one line each; a narrow tile wraps them between PSNR and SSIM (its caption grows to
    hold them)."""
    metrics = record.metrics_text().replace(" dB", "&nbsp;dB").replace("PSNR ", "PSNR&nbsp;").replace(
        "SSIM ", "SSIM&nbsp;")
    return "<br>".join(line for line in (metrics, record.setting_text()) if line)


def numbered_labels(records: list[RunRecord]) -> dict[int, str]:
    """``{run_id: label}``: a repeat of an identical run (:meth:`RunRecord.repeat_key`) is numbered in the order
    the runs came, "TV", "TV #2", "TV #3", so two tiles never carry the same caption for different runs."""
    seen: dict[tuple, int] = {}
    labels = {}
    for record in records:
        key = record.repeat_key()
        seen[key] = seen.get(key, 0) + 1
        number = f" #{seen[key]}" if seen[key] > 1 else ""
        suffix = " (cancelled)" if record.cancelled else ""
        labels[record.run_id] = f"{record.title}{number}{suffix}"
    return labels


def _record_tooltip(record: RunRecord, label: str | None = None) -> str:
    params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.params.items())
    lines = [f"<b>{label or record.label()}</b>", record.metrics_text(), record.setting_text(),
             f"{run_summary(record)} on {record.device}"]
    if params:
        lines.append(params)
    if label is not None and label != record.label():
        lines.append("A repeat: the same method, parameters, iterations and measurement as an earlier run")
    lines.extend(html.escape(line) for line in run_details(record).splitlines())
    return "<br>".join(line for line in lines if line)
