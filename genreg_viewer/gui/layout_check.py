"""Is the window's layout intact? A check the screenshot tool and the tests run at several sizes and scale factors.

A layout is *intact* when every visible control (button, combo box, spin box, line edit, check box, slider,
progress bar, tab bar) of the window

- lies inside the window (or inside the scroll area that holds it),
- is at least as large as its minimum size hint (nothing squeezed until its text is cut), and
- overlaps no other visible control of the same parent.

Not judged: scroll bars (their scroll area places them) and controls inside a container of zero size (a closed
*Advanced* group hides its controls on purpose).
"""

from __future__ import annotations

from PyQt6.QtCore import QRect
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QProgressBar,
    QScrollBar,
    QTabBar,
    QWidget,
)

#: the kinds of widget whose size and place the check judges (labels wrap and elide by design; views scale)
CONTROL_TYPES = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractSlider, QProgressBar, QTabBar)


def _describe(widget: QWidget) -> str:
    text = ""
    for getter in ("text", "currentText", "placeholderText"):
        if hasattr(widget, getter):
            try:
                text = str(getattr(widget, getter)())
            except TypeError:
                continue
            if text:
                break
    name = widget.objectName() or type(widget).__name__
    return f"{name} {text!r}" if text else name


def _scrolled(widget: QWidget, root: QWidget) -> bool:
    """True when ``widget`` sits inside a scroll area below ``root`` (it may legitimately extend past the
    window: the area scrolls to it)."""
    parent = widget.parentWidget()
    while parent is not None and parent is not root:
        if isinstance(parent, QAbstractScrollArea):
            return True
        parent = parent.parentWidget()
    return False


def _collapsed(widget: QWidget, root: QWidget) -> bool:
    """True when ``widget`` or a container below ``root`` has no area (a closed collapsible group holds its
    controls at zero height on purpose)."""
    current: QWidget | None = widget
    while current is not None and current is not root:
        if current.width() <= 0 or current.height() <= 0:
            return True
        current = current.parentWidget()
    return False


def _window_rect(widget: QWidget, root: QWidget) -> QRect:
    return QRect(widget.mapTo(root, widget.rect().topLeft()), widget.size())


def layout_problems(root: QWidget) -> list[str]:
    """One line per visible control of ``root`` that lies outside it, is smaller than its minimum size hint, or
    overlaps a sibling control (rectangles sharing more than a one-pixel border)."""
    controls = [w for w in root.findChildren(QWidget) if isinstance(w, CONTROL_TYPES) and w.isVisible()
                and not isinstance(w.parentWidget(), (QComboBox, QAbstractSpinBox, QTabBar))
                and not isinstance(w, QScrollBar) and not _collapsed(w, root)]
    problems = []
    bounds = root.rect()
    for widget in controls:
        rect = _window_rect(widget, root)
        if not _scrolled(widget, root) and not bounds.contains(rect):
            problems.append(f"{_describe(widget)} at {rect.getRect()} lies outside the window {bounds.getRect()}")
        hint = widget.minimumSizeHint()
        if hint.isValid() and (widget.width() < hint.width() - 1 or widget.height() < hint.height() - 1):
            problems.append(f"{_describe(widget)} is squeezed to {widget.width()}x{widget.height()} "
                            f"(needs {hint.width()}x{hint.height()})")
    by_parent: dict[int, list[QWidget]] = {}
    for widget in controls:
        by_parent.setdefault(id(widget.parentWidget()), []).append(widget)
    for siblings in by_parent.values():
        for i, first in enumerate(siblings):
            for second in siblings[i + 1:]:
                shared = first.geometry().adjusted(1, 1, -1, -1).intersected(second.geometry().adjusted(1, 1, -1, -1))
                if not shared.isEmpty():
                    problems.append(f"{_describe(first)} overlaps {_describe(second)}")
    return problems
