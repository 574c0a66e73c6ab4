"""Message dialogs. Every user-facing error goes through :func:`show_error` (tests patch ``QMessageBox``)."""

from __future__ import annotations

from html import escape

from PyQt6.QtGui import QAction
from PyQt6.QtWidgets import QInputDialog, QMessageBox, QWidget

#: file-dialog filters of sessions (File > Open/Save session) and results exports (File > Export results); the
#: formats are those of :mod:`genreg_viewer.application.bundles`
SESSION_FILTER = "Session (*.npz *.h5 *.hdf5);;NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5);;All files (*)"
RESULTS_FILTER = "NumPy archive (*.npz);;HDF5 (*.h5 *.hdf5)"


def show_error(parent: QWidget | None, title: str, message: str) -> None:
    """A modal error dialog with one clear message (never a traceback)."""
    QMessageBox.critical(parent, title, message)


def choose_item(parent: QWidget | None, title: str, label: str, items: list[str]) -> str | None:
    """Let the user pick one of ``items`` from a list (not editable); ``None`` when cancelled."""
    item, ok = QInputDialog.getItem(parent, title, label, list(items), 0, False)
    return item if ok and item else None


def shortcuts_text(actions: list[QAction]) -> str:
    """An HTML table of the actions that have keyboard shortcuts."""
    rows = []
    for action in actions:
        keys = ", ".join(s.toString() for s in action.shortcuts())
        if keys:
            label = escape(action.text().replace("&", "").rstrip("…"))
            rows.append(f"<tr><td><b>{escape(keys)}</b></td><td>&nbsp;&nbsp;{label}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def show_shortcuts(parent: QWidget | None, actions: list[QAction]) -> None:
    box = QMessageBox(parent)
    box.setWindowTitle("Keyboard shortcuts")
    box.setText(shortcuts_text(actions))
    box.exec()
