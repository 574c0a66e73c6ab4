"""Typed access to Qt objects that PyQt6's stubs declare optional (``X | None``) but that exist wherever this
application asks for them: the running ``QApplication``, a widget's style and layout, a scroll area's viewport,
the menus and actions that ``addMenu``/``addAction`` have just created. Each helper checks what it returns, so a
broken assumption fails here, by name, instead of as an ``AttributeError`` on ``None`` further on."""

from __future__ import annotations

from typing import Callable

from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QLayout,
    QMenu,
    QMenuBar,
    QStyle,
    QToolBar,
    QWidget,
)


def qapp() -> QApplication:
    """The running QApplication."""
    app = QApplication.instance()
    assert isinstance(app, QApplication), "needs a running QApplication"
    return app


def ensure_qapp(argv: list[str]) -> QApplication:
    """The running QApplication, created with ``argv`` when there is none yet."""
    return qapp() if QApplication.instance() is not None else QApplication(argv)


def style_of(widget: QWidget) -> QStyle:
    """The widget's style (Qt falls back to the application's, so there always is one)."""
    style = widget.style()
    assert style is not None
    return style


def layout_of(widget: QWidget) -> QLayout:
    """The layout installed on ``widget`` (callers only ask widgets they gave one)."""
    layout = widget.layout()
    assert layout is not None, f"{type(widget).__name__} has no layout"
    return layout


def viewport_of(area: QAbstractScrollArea) -> QWidget:
    """The scroll area's viewport widget (created with the area)."""
    viewport = area.viewport()
    assert viewport is not None
    return viewport


def add_menu(parent: QMenuBar | QMenu, title: str) -> QMenu:
    """A new menu titled ``title`` in a menu bar or as a sub-menu."""
    menu = parent.addMenu(title)
    assert menu is not None
    return menu


def add_action(parent: QMenu | QToolBar, text: str, slot: Callable[..., object] | None = None) -> QAction:
    """A new action ``text`` in a menu or tool bar, triggering ``slot`` when given."""
    action = parent.addAction(text) if slot is None else parent.addAction(text, slot)
    assert action is not None
    return action
