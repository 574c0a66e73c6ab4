"""Drawing on the sampling mask over the log-magnitude k-space.

The background is ``log(1 + |F x|)`` (centred, as masks are stored); the mask is a translucent overlay. With the
brush (eraser) tool a left drag sets (clears) every coefficient within ``radius`` k-space pixels of the mouse,
interpolating between mouse positions so fast strokes leave no gaps; with the pan tool the view pans and zooms.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QGraphicsEllipseItem, QWidget

from ..theme import on_theme_change, view_colors
from .image_view import GREY, ImageView

MASK_TOOLS = ("pan", "brush", "eraser")
MASK_COLOUR = (255, 170, 0)  #: amber: visible on the grey k-space in both themes


def stamp_disk(mask: np.ndarray, row: float, col: float, radius: float, value: bool) -> None:
    """Set every pixel of ``mask`` whose centre is within ``radius`` of pixel ``(row, col)`` to ``value``."""
    r0, r1 = int(np.floor(row - radius)), int(np.ceil(row + radius)) + 1
    c0, c1 = int(np.floor(col - radius)), int(np.ceil(col + radius)) + 1
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, mask.shape[0]), min(c1, mask.shape[1])
    if r0 >= r1 or c0 >= c1:
        return
    rows, cols = np.ogrid[r0:r1, c0:c1]
    inside = (rows - row) ** 2 + (cols - col) ** 2 <= radius**2 + 1e-9
    mask[r0:r1, c0:c1][inside] = value


def stamp_stroke(mask: np.ndarray, start: tuple[int, int], end: tuple[int, int], radius: float, value: bool) -> None:
    """Stamp disks along the segment from ``start`` to ``end`` at half-pixel steps."""
    (r0, c0), (r1, c1) = start, end
    steps = max(int(np.ceil(2 * max(abs(r1 - r0), abs(c1 - c0)))), 1)
    for t in np.linspace(0.0, 1.0, steps + 1):
        stamp_disk(mask, r0 + t * (r1 - r0), c0 + t * (c1 - c0), radius, value)


class MaskPainter(ImageView):
    """k-space view with an editable mask overlay; ``maskEdited(mask)`` fires live while painting."""

    maskEdited = pyqtSignal(object)

    def __init__(self, title: str = "k-space and sampling mask", parent: QWidget | None = None):
        super().__init__(title, parent)
        self.overlay = pg.ImageItem()
        self.overlay.setZValue(1)
        self.overlay.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.overlay.setAcceptHoverEvents(False)
        self.view_box.addItem(self.overlay)
        self.cursor_ring = QGraphicsEllipseItem()
        self.cursor_ring.setZValue(5)
        self.cursor_ring.setVisible(False)
        self.view_box.addItem(self.cursor_ring, ignoreBounds=True)
        self.mask_array: np.ndarray | None = None
        self.tool = "pan"
        self.radius = 1.5
        self.overlay_opacity = 0.6
        self._last_pixel: tuple[int, int] | None = None
        self.image_item.dragStarted.connect(self._drag_started)
        self.image_item.pixelDragged.connect(self._dragged)
        self.pixelClicked.connect(self._clicked)
        self.image_item.hovered.connect(self._hovered)
        on_theme_change(self, self._apply_ring_theme)

    # --------------------------------------------------------------------- API
    def set_background(self, log_magnitude: np.ndarray | None) -> None:
        if log_magnitude is None:
            self.set_image(None)
            return
        top = float(np.percentile(log_magnitude, 99.7)) or 1.0
        self.set_image(log_magnitude, levels=(0.0, top), colormap=GREY)

    def set_mask(self, mask: np.ndarray) -> None:
        self.mask_array = np.array(mask, dtype=bool)
        self._draw_overlay()

    def set_tool(self, tool: str) -> None:
        if tool not in MASK_TOOLS:
            raise ValueError(f"unknown mask tool {tool!r}; use one of {MASK_TOOLS}")
        self.tool = tool
        self.image_item.drag_picking = tool != "pan"
        cursor = Qt.CursorShape.ArrowCursor if tool == "pan" else Qt.CursorShape.CrossCursor
        self.graphics.viewport().setCursor(cursor)
        self.cursor_ring.setVisible(False)

    def set_radius(self, radius: float) -> None:
        self.radius = max(float(radius), 0.0)

    def paint(self, row: int, col: int, previous: tuple[int, int] | None = None) -> None:
        """Apply the current tool at ``(row, col)`` (a stroke from ``previous``) and emit ``maskEdited``."""
        if self.mask_array is None or self.tool == "pan":
            return
        value = self.tool == "brush"
        stamp_stroke(self.mask_array, previous or (row, col), (row, col), self.radius, value)
        self._draw_overlay()
        self.maskEdited.emit(self.mask_array.copy())

    # ---------------------------------------------------------------- internals
    def _draw_overlay(self) -> None:
        if self.mask_array is None:
            self.overlay.clear()
            return
        rgba = np.zeros((*self.mask_array.shape, 4), dtype=np.uint8)
        rgba[self.mask_array, :3] = MASK_COLOUR
        rgba[self.mask_array, 3] = int(255 * self.overlay_opacity)
        self.overlay.setImage(rgba, autoLevels=False, levels=(0, 255))

    def _drag_started(self, row: int, col: int) -> None:
        self._last_pixel = None
        self.paint(row, col)
        self._last_pixel = (row, col)

    def _dragged(self, row: int, col: int, finished: bool) -> None:
        self.paint(row, col, self._last_pixel)
        self._last_pixel = None if finished else (row, col)

    def _clicked(self, row: int, col: int) -> None:
        self.paint(row, col)

    def _hovered(self, x: float, y: float) -> None:
        if self.tool == "pan" or np.isnan(x):
            self.cursor_ring.setVisible(False)
            return
        r = self.radius + 0.5
        col, row = np.floor(x) + 0.5, np.floor(y) + 0.5
        self.cursor_ring.setRect(col - r, row - r, 2 * r, 2 * r)
        self.cursor_ring.setVisible(True)

    def _apply_ring_theme(self) -> None:
        pen = pg.mkPen(QColor(view_colors()["accent"]).lighter(130), width=1.5)
        pen.setCosmetic(True)
        self.cursor_ring.setPen(pen)
