"""Building blocks of the control panels: group boxes, labels, rows of buttons and the Run/Cancel/progress block."""

from __future__ import annotations

from typing import Callable

from PyQt6.QtCore import Qt, pyqtBoundSignal
from PyQt6.QtGui import QFont, QFontMetrics
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QElidingLabel


def int_spin(minimum: int, maximum: int, value: int | None = None) -> QSpinBox:
    """An integer spin box over ``[minimum, maximum]`` showing ``value`` (Qt's default, the minimum, if None)."""
    spin = QSpinBox()
    spin.setMinimum(minimum)
    spin.setMaximum(maximum)
    if value is not None:
        spin.setValue(value)
    return spin


def float_spin(minimum: float, maximum: float, step: float, decimals: int, value: float) -> QDoubleSpinBox:
    """A spin box of ``decimals``-digit numbers over ``[minimum, maximum]`` in steps of ``step``, showing ``value``
    (set in this order, as Qt's keyword constructor would)."""
    spin = QDoubleSpinBox()
    spin.setMinimum(minimum)
    spin.setMaximum(maximum)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setValue(value)
    return spin


def group_box(title: str) -> tuple[QGroupBox, QVBoxLayout]:
    """A titled group box and the vertical layout of its contents."""
    box = QGroupBox(title)
    return box, QVBoxLayout(box)


def wrapped_label(text: str = "") -> QLabel:
    """A label whose text wraps at the panel's width."""
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class ElidedLabel(QElidingLabel):
    """One line of text that elides (``…``, at the end or with ``mode=ElideMiddle`` in the middle) what does not fit
    instead of widening its window; the whole text is the tooltip while it is cut, followed by the ``details``
    (:meth:`set_details`) when there are any."""

    def __init__(self, text: str = "", parent: QWidget | None = None,
                 mode: Qt.TextElideMode = Qt.TextElideMode.ElideRight):
        super().__init__(parent)
        self.details = ""
        self.setElideMode(mode)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def set_details(self, details: str) -> None:
        """More about the text (e.g. how a run converged), shown in the tooltip."""
        self.details = details
        self._update_tooltip()

    def set_text_keeping(self, text: str, keep: str) -> None:
        """Show ``text`` whose ending ``keep`` (e.g. a run's status and numbers) stays whole: the part before it
        is elided at its end when the line is too short; only a ``keep`` that alone does not fit is elided (in the
        label's mode)."""
        self.keep = keep
        self.setText(text)

    def _elidedText(self) -> str:  # noqa: N802 (superqt API)
        keep, text = getattr(self, "keep", ""), self.text()
        if keep and text.endswith(keep) and text != keep:
            metrics = QFontMetrics(self.font())
            width = self.width() - self._ellipses_width
            room = width - metrics.horizontalAdvance(keep)
            if metrics.horizontalAdvance(text) > width and room > 3 * metrics.horizontalAdvance("…"):
                return metrics.elidedText(text[:-len(keep)], Qt.TextElideMode.ElideRight, room) + keep
        return super()._elidedText()

    def setText(self, text: str | None) -> None:  # noqa: N802 (Qt API)
        super().setText(text or "")  # QLabel's contract: None is the empty text
        self._update_tooltip()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._update_tooltip()

    def is_elided(self) -> bool:
        return QLabel.text(self) != self.text()

    def _update_tooltip(self) -> None:
        parts = [self.text()] if self.is_elided() else []
        if getattr(self, "details", ""):
            parts.append(self.details)
        self.setToolTip("\n\n".join(parts))


def note_label(text: str = "") -> QLabel:
    """Explanatory text in the palette's muted (disabled) colour, wrapped."""
    label = wrapped_label(text)
    label.setEnabled(False)
    return label


def push_button(text: str, slot: Callable | pyqtBoundSignal | None = None, tooltip: str = "") -> QPushButton:
    """A push button that calls ``slot`` (a function or a signal) when clicked."""
    button = QPushButton(text)
    if tooltip:
        button.setToolTip(tooltip)
    if slot is not None:
        button.clicked.connect(slot)
    return button


def button_row(*buttons: QPushButton, stretches: tuple[int, ...] | None = None) -> QHBoxLayout:
    """The buttons side by side, sharing the width in proportion to ``stretches`` (equally by default)."""
    row = QHBoxLayout()
    for button, stretch in zip(buttons, stretches or (0,) * len(buttons)):
        row.addWidget(button, stretch)
    return row


def compact_combo(combo: QComboBox, characters: int = 14) -> QComboBox:
    """Let a combo box with long item texts shrink to ``characters`` (the popup still shows them in full)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


#: lines of text under a progress bar (the longest, "... cancelled after N of M iterations, T s", takes three at the
#: docks' width; a failure's message is elided after them, whole in the tooltip)
PROGRESS_LINES = 3


class RunControls(QWidget):
    """A bold Run button and a Cancel button over a progress bar and a progress text. Until the first run starts
    the bar and text give way to a hint (:meth:`set_hint`: what Run will do)."""

    def __init__(self, run_text: str, on_run: Callable, on_cancel: Callable, run_tip: str = "",
                 cancel_tip: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.run_button = push_button(run_text, on_run, run_tip)
        font = QFont(self.run_button.font())
        font.setBold(True)
        self.run_button.setFont(font)
        self.run_button.setDefault(True)
        self.cancel_button = push_button("Cancel", on_cancel, cancel_tip)
        self.cancel_button.setEnabled(False)
        layout.addLayout(button_row(self.run_button, self.cancel_button, stretches=(2, 1)))
        self.progress_bar = QProgressBar()
        self.progress_bar.setTextVisible(True)
        layout.addWidget(self.progress_bar)
        self.progress_label = wrapped_label("Idle")
        # three lines, always: a new progress text then repaints the label without re-laying out the dock
        self.progress_label.setFixedHeight(PROGRESS_LINES * self.progress_label.fontMetrics().lineSpacing() + 2)
        self.progress_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.progress_label)
        self.hint_label = wrapped_label("")
        self.hint_label.setTextFormat(Qt.TextFormat.RichText)
        self.hint_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        layout.addWidget(self.hint_label)
        self.hint_label.hide()
        self.started = False  #: whether a first progress text replaced the hint

    def set_hint(self, text: str) -> None:
        """Show ``text`` (rich text: what Run will do) in place of the bar and progress text until the first run."""
        self.hint_label.setText(text)
        if not self.started:
            self.progress_bar.hide()
            self.progress_label.hide()
            self.hint_label.show()

    def set_progress(self, text: str, done: int | None = None, total: int | None = None, details: str = "") -> None:
        """Show ``text`` under the bar (``details``, e.g. how the run converged, in its tooltip); the bar counts to
        ``total`` and shows ``done`` where they are given."""
        if not self.started:
            self.started = True
            self.hint_label.hide()
            self.progress_bar.show()
            self.progress_label.show()
        bar = self.progress_bar
        # QProgressBar repaints at once (synchronously, with every other pending paint of the window) when its
        # value changes; with updates off for the change it is painted with the next regular paint instead
        bar.setUpdatesEnabled(False)
        try:
            if total is not None:
                bar.setRange(0, total)
            if done is not None:
                bar.setValue(done)
        finally:
            bar.setUpdatesEnabled(True)  # schedules the (asynchronous) repaint
        self.progress_label.setText(text)
        self.progress_label.setToolTip(details)

    def set_running(self, running: bool) -> None:
        """Run is enabled while nothing runs, Cancel while something does."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
