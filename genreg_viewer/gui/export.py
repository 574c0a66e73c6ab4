"""Exporting what a widget shows as a PNG (the session and results files are in
:mod:`genreg_viewer.application.sessions`)."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_path


def save_widget_png(widget, path: str | Path) -> Path:
    """Render ``widget`` as shown (at the screen's device pixel ratio) into a PNG at ``path``, atomically."""
    pixmap = widget.grab()
    with atomic_path(path, suffix=".png") as tmp:
        if not pixmap.save(str(tmp), "PNG"):
            raise OSError(f"could not write {path}")
    return Path(path)
