"""Light/dark theme that follows the system colour scheme (or is forced from the View menu).

The application uses Qt's Fusion style. In ``system`` mode the palette is the style's standard palette, which
follows the platform's light/dark setting (Qt >= 6.5) and is re-applied when the system scheme changes;
``light``/``dark`` force a fixed palette. pyqtgraph views do not use the Qt palette, so every themed view
registers a callback with :func:`on_theme_change` and re-reads :func:`view_colors`.
"""

from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QGuiApplication, QPalette
from PyQt6.QtWidgets import QApplication

THEME_MODES = ("system", "light", "dark")


def _dark_palette() -> QPalette:
    """Fusion draws frames and check-box outlines in ``Window.darker(140)``, so the window colour must stay
    clearly lighter than ``Base`` for them to show."""
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#36373b",
        QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#1d1e21",
        QPalette.ColorRole.AlternateBase: "#2a2b2f",
        QPalette.ColorRole.ToolTipBase: "#2d2e31",
        QPalette.ColorRole.ToolTipText: "#e8eaed",
        QPalette.ColorRole.Text: "#e8eaed",
        QPalette.ColorRole.Button: "#3d3e43",
        QPalette.ColorRole.ButtonText: "#e8eaed",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Link: "#8ab4f8",
        QPalette.ColorRole.Highlight: "#3d7be0",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#9aa0a6",
        QPalette.ColorRole.Mid: "#4a4b50",
        QPalette.ColorRole.Dark: "#1a1b1e",
        QPalette.ColorRole.Light: "#55565b",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7c8086"))
    return palette


def _light_palette() -> QPalette:
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#f3f4f6",
        QPalette.ColorRole.WindowText: "#1f2328",
        QPalette.ColorRole.Base: "#ffffff",
        QPalette.ColorRole.AlternateBase: "#f0f1f3",
        QPalette.ColorRole.ToolTipBase: "#ffffff",
        QPalette.ColorRole.ToolTipText: "#1f2328",
        QPalette.ColorRole.Text: "#1f2328",
        QPalette.ColorRole.Button: "#e9eaee",
        QPalette.ColorRole.ButtonText: "#1f2328",
        QPalette.ColorRole.BrightText: "#c62828",
        QPalette.ColorRole.Link: "#1a5fb4",
        QPalette.ColorRole.Highlight: "#2f6fde",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#6e7781",
        QPalette.ColorRole.Mid: "#c6c8cc",
        QPalette.ColorRole.Dark: "#9a9ca0",
        QPalette.ColorRole.Light: "#ffffff",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#9ea3a8"))
    return palette


class ThemeManager(QObject):
    """Owns the application palette; emits ``changed`` whenever the effective light/dark scheme changes."""

    changed = pyqtSignal()

    def __init__(self, app: QApplication):
        super().__init__(app)
        self._app = app
        self._mode = "system"
        app.setStyle("Fusion")
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._system_scheme_changed)
        self.apply()

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in THEME_MODES:
            raise ValueError(f"unknown theme {mode!r}; use one of {', '.join(THEME_MODES)}")
        self._mode = mode
        self.apply()

    def system_is_dark(self) -> bool:
        hints = QGuiApplication.styleHints()
        return hasattr(hints, "colorScheme") and hints.colorScheme() == Qt.ColorScheme.Dark

    def is_dark(self) -> bool:
        return self._app.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def apply(self) -> None:
        if self._mode == "dark" or (self._mode == "system" and self.system_is_dark()):
            palette = _dark_palette()
        elif self._mode == "light":
            palette = _light_palette()
        else:
            palette = self._app.style().standardPalette()
        self._app.setPalette(palette)
        self.changed.emit()

    def _system_scheme_changed(self, *_args) -> None:
        if self._mode == "system":
            self.apply()


_MANAGER: ThemeManager | None = None


def theme_manager() -> ThemeManager:
    """The application's theme manager (created on first use; needs a QApplication)."""
    global _MANAGER
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("the theme manager needs a QApplication")
    if _MANAGER is None or _MANAGER.parent() is not app:
        _MANAGER = ThemeManager(app)
    return _MANAGER


def on_theme_change(owner: QObject, callback: Callable[[], None]) -> None:
    """Call ``callback`` now and after every theme change while ``owner`` is alive."""
    manager = theme_manager()
    manager.changed.connect(callback)
    owner.destroyed.connect(lambda *_: _safe_disconnect(manager, callback))
    callback()


def _safe_disconnect(manager: ThemeManager, callback) -> None:
    try:
        manager.changed.disconnect(callback)
    except (TypeError, RuntimeError):
        pass


def view_colors() -> dict[str, QColor]:
    """Colours for pyqtgraph items from the current palette: background, foreground, grid and accent."""
    palette = QApplication.instance().palette()
    dark = palette.color(QPalette.ColorRole.Window).lightness() < 128
    return {
        "background": palette.color(QPalette.ColorRole.Base),
        "foreground": palette.color(QPalette.ColorRole.Text),
        "muted": palette.color(QPalette.ColorRole.PlaceholderText),
        "accent": palette.color(QPalette.ColorRole.Highlight),
        "image_background": QColor("#0b0c0e") if dark else QColor("#1b1c1f"),
    }


#: distinguishable line colours (Okabe-Ito), readable on light and dark backgrounds
SERIES_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
