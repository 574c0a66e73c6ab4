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

from .qt_typed import qapp

THEME_MODES = ("system", "light", "dark")


#: ``(dark, light)`` colour of each palette role in the forced schemes. Fusion draws frames and check-box outlines in
#: ``Window.darker(140)``, so the dark window colour must stay clearly lighter than ``Base`` for them to show.
SCHEME_COLORS = {
    "Window": ("#36373b", "#f3f4f6"),
    "WindowText": ("#e8eaed", "#1f2328"),
    "Base": ("#1d1e21", "#ffffff"),
    "AlternateBase": ("#2a2b2f", "#f0f1f3"),
    "ToolTipBase": ("#2d2e31", "#ffffff"),
    "ToolTipText": ("#e8eaed", "#1f2328"),
    "Text": ("#e8eaed", "#1f2328"),
    "Button": ("#3d3e43", "#e9eaee"),
    "ButtonText": ("#e8eaed", "#1f2328"),
    "BrightText": ("#ff6b6b", "#c62828"),
    "Link": ("#8ab4f8", "#1a5fb4"),
    "Highlight": ("#3d7be0", "#2f6fde"),
    "HighlightedText": ("#ffffff", "#ffffff"),
    "PlaceholderText": ("#9aa0a6", "#6e7781"),
    "Mid": ("#4a4b50", "#c6c8cc"),
    "Dark": ("#1a1b1e", "#9a9ca0"),
    "Light": ("#55565b", "#ffffff"),
}
#: ``(dark, light)`` colour of disabled text, window text and button text
DISABLED_TEXT_COLORS = ("#7c8086", "#9ea3a8")


def scheme_palette(dark: bool) -> QPalette:
    """The forced dark or light palette from :data:`SCHEME_COLORS`."""
    column = 0 if dark else 1
    palette = QPalette()
    for role, colours in SCHEME_COLORS.items():
        palette.setColor(QPalette.ColorRole[role], QColor(colours[column]))
    disabled = QColor(DISABLED_TEXT_COLORS[column])
    for disabled_role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, disabled_role, disabled)
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
        if hints is not None and hasattr(hints, "colorSchemeChanged"):
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
        return hints is not None and hasattr(hints, "colorScheme") and hints.colorScheme() == Qt.ColorScheme.Dark

    def apply(self) -> None:
        if self._mode == "dark" or (self._mode == "system" and self.system_is_dark()):
            palette = scheme_palette(dark=True)
        elif self._mode == "light":
            palette = scheme_palette(dark=False)
        else:
            style = self._app.style()
            assert style is not None  # QApplication creates its style on first use
            palette = style.standardPalette()
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
    if not isinstance(app, QApplication):
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
    palette = qapp().palette()
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
