"""A form built from a method's declared :class:`~genreg_viewer.recon.Parameter` list.

``bool`` -> check box, ``choices`` -> combo box, ``int`` -> spin box, ``float`` -> a spin box showing ``%g``
(log-scale parameters step by a factor ``10^(1/4)`` per click), ``str`` -> line edit. Ranges come from the
declaration; values are checked once more with ``Parameter.parse`` when read.

Fields the user has not touched follow the method's setting-dependent defaults (``set_defaults``), so the form
always shows what will run.

Solver internals (:meth:`Parameter.is_advanced`: z steps, CG iterations, tolerance, ...) sit in a collapsible
*Advanced* group, closed by default. A value that differs from its default is never hidden silently: its label is
bold, and the closed group's title counts them ("Advanced · 2 changed"; its tooltip names them).
"""

from __future__ import annotations

import math
from typing import Any

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtGui import QValidator
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ...recon import Parameter, ReconMethod
from ..qt_typed import layout_of

LOG_STEP = 10 ** 0.25
INT_LIMIT = 2**31 - 1


class ScientificSpinBox(QDoubleSpinBox):
    """A double spin box for values spanning many decades: shows ``%.6g``, accepts ``1e-3``.

    With ``log_scale`` the arrows multiply or divide by ``10^(1/4)`` instead of adding a step.
    """

    def __init__(self, log_scale: bool = False, parent: QWidget | None = None):
        super().__init__(parent)
        self.log_scale = log_scale
        self.setDecimals(15)
        self.setKeyboardTracking(False)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt API)
        return f"{value:.6g}"

    def valueFromText(self, text: str | None) -> float:  # noqa: N802
        try:
            return float((text or "").strip())
        except ValueError:
            return self.value()

    def validate(self, text: str | None, pos: int) -> tuple[QValidator.State, str, int]:
        text = text or ""
        stripped = text.strip()
        try:
            float(stripped)
            return QValidator.State.Acceptable, text, pos
        except ValueError:
            pass
        allowed = set("0123456789+-.eE")
        if stripped == "" or set(stripped) <= allowed:
            return QValidator.State.Intermediate, text, pos
        return QValidator.State.Invalid, text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self.value()
        if self.log_scale and value > 0:
            self.setValue(value * LOG_STEP**steps)
        else:
            super().stepBy(steps)


def _tooltip(p: Parameter) -> str:
    help_text = p.help[:1].upper() + p.help[1:] if p.help else ""
    bits = [f"<b>{p.display_label()}</b>: {help_text}" if help_text else f"<b>{p.display_label()}</b>"]
    if p.minimum is not None or p.maximum is not None:
        low = "-∞" if p.minimum is None else f"{p.minimum:g}"
        high = "∞" if p.maximum is None else f"{p.maximum:g}"
        bits.append(f"range [{low}, {high}]")
    bits.append(f"default {p.default} · saved and scripted as <tt>{p.name}</tt>")
    return "<br>".join(bits)


class ParameterForm(QWidget):
    """Editable values of one method's parameters; ``valuesChanged`` fires on every user edit,
    ``advancedToggled(open)`` when the user opens or closes the *Advanced* group."""

    valuesChanged = pyqtSignal()
    advancedToggled = pyqtSignal(bool)

    def __init__(self, method: ReconMethod | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.layout_ = QFormLayout()
        outer.addLayout(self.layout_)
        self.advanced = QCollapsible("Advanced", expandedIcon="▼", collapsedIcon="▶")
        self.advanced.setDuration(120)
        layout_of(self.advanced).setContentsMargins(0, 0, 0, 0)
        self.advanced.toggleButton().setToolTip("Solver internals: most runs never need them changed")
        advanced_fields = QWidget()
        self.advanced_layout = QFormLayout(advanced_fields)
        self.advanced_layout.setContentsMargins(0, 0, 0, 0)
        self.advanced.addWidget(advanced_fields)
        self.advanced.toggled.connect(self.advancedToggled)
        outer.addWidget(self.advanced)
        self.method: ReconMethod | None = None
        self.fields: dict[str, QWidget] = {}
        self.labels: dict[str, QLabel] = {}
        self.edited: set[str] = set()
        self._defaults: dict[str, Any] = {}
        self._programmatic = False
        self.set_method(method)

    # --------------------------------------------------------------------- API
    def set_method(self, method: ReconMethod | None) -> None:
        for layout in (self.layout_, self.advanced_layout):
            while layout.rowCount():
                layout.removeRow(0)
        self.fields.clear()
        self.labels.clear()
        self.edited.clear()
        self.method = method
        self._defaults = {p.name: p.default for p in method.parameters} if method is not None else {}
        if method is not None and not method.parameters:
            note = QLabel("This method has no parameters.")
            note.setEnabled(False)
            self.layout_.addRow(note)
        for p in method.parameters if method is not None else ():
            field = self._make_field(p)
            field.setToolTip(_tooltip(p))
            label = QLabel(p.display_label())
            label.setToolTip(_tooltip(p))
            (self.advanced_layout if p.is_advanced() else self.layout_).addRow(label, field)
            self.fields[p.name] = field
            self.labels[p.name] = label
            self._set_field(p, field, p.default)
        # one label column for both groups: the advanced fields line up with the others
        width = max((label.sizeHint().width() for label in self.labels.values()), default=0)
        for label in self.labels.values():
            label.setMinimumWidth(width)
        self.advanced.setVisible(bool(self.advanced_names()))
        if self.advanced.isExpanded():  # the group's height follows its new rows
            self.advanced.expand(animate=False)
        self._mark_changed()

    def advanced_names(self) -> list[str]:
        """The parameters of the *Advanced* group, in declaration order."""
        return [p.name for p in self.method.parameters if p.is_advanced()] if self.method is not None else []

    def changed(self) -> dict[str, tuple[Any, Any]]:
        """``{name: (value, default)}`` of the fields whose value is not their current default."""
        if self.method is None:
            return {}
        changed = {}
        for p in self.method.parameters:
            value = self._field_value(p, self.fields[p.name])
            default = self._defaults.get(p.name, p.default)
            if not _same(value, default):
                changed[p.name] = (value, default)
        return changed

    def advanced_open(self) -> bool:
        return self.advanced.isExpanded()

    def set_advanced_open(self, open_: bool) -> None:
        """Open or close the *Advanced* group (at once, without the animation)."""
        if open_:
            self.advanced.expand(animate=False)
        else:
            self.advanced.collapse(animate=False)

    def values(self) -> dict[str, Any]:
        """The current values, parsed and range-checked (``ParameterError`` on a bad value)."""
        if self.method is None:
            return {}
        return {p.name: p.parse(self._field_value(p, self.fields[p.name])) for p in self.method.parameters}

    def set_values(self, values: dict[str, Any], edited: bool = True) -> None:
        """Set fields from ``values`` (unknown names are ignored); mark them edited unless ``edited=False``."""
        if self.method is None:
            return
        for p in self.method.parameters:
            if p.name in values:
                self._set_field(p, self.fields[p.name], values[p.name])
                if edited:
                    self.edited.add(p.name)
                else:
                    self.edited.discard(p.name)
        self._mark_changed()

    def set_defaults(self, defaults: dict[str, Any]) -> None:
        """Show ``defaults`` (the method's declared defaults updated with setting-dependent ones) in every
        field the user has not edited."""
        if self.method is None:
            return
        self._defaults = {p.name: defaults.get(p.name, p.default) for p in self.method.parameters}
        for p in self.method.parameters:
            if p.name not in self.edited:
                self._set_field(p, self.fields[p.name], self._defaults[p.name])
        self._mark_changed()

    def reset(self, defaults: dict[str, Any] | None = None) -> None:
        self.edited.clear()
        self.set_defaults(defaults or {})
        self.valuesChanged.emit()

    # ---------------------------------------------------------------- internals
    def _make_field(self, p: Parameter) -> QWidget:
        field: QWidget  # one of the widgets that _set_field and _field_value know
        if p.kind is bool:
            field = QCheckBox()
            field.toggled.connect(lambda *_: self._user_edit(p.name))
        elif p.choices:
            field = QComboBox()
            for choice in p.choices:
                field.addItem(str(choice), choice)
            field.currentIndexChanged.connect(lambda *_: self._user_edit(p.name))
        elif p.kind is int:
            field = QSpinBox()
            field.setRange(int(p.minimum) if p.minimum is not None else -INT_LIMIT,
                           int(p.maximum) if p.maximum is not None else INT_LIMIT)
            field.setKeyboardTracking(False)
            field.valueChanged.connect(lambda *_: self._user_edit(p.name))
        elif p.kind is float:
            field = ScientificSpinBox(log_scale=p.log_scale)
            field.setRange(p.minimum if p.minimum is not None else -1e12, p.maximum if p.maximum is not None else 1e12)
            field.setSingleStep(_linear_step(p))
            field.valueChanged.connect(lambda *_: self._user_edit(p.name))
        else:
            field = QLineEdit()
            field.editingFinished.connect(lambda: self._user_edit(p.name))
        return field

    def _user_edit(self, name: str) -> None:
        if self._programmatic:
            return
        self.edited.add(name)
        self._mark_changed()
        self.valuesChanged.emit()

    def _mark_changed(self) -> None:
        """Bold labels for values that differ from their defaults; the *Advanced* title counts its changed ones."""
        changed = self.changed()
        for name, label in self.labels.items():
            font = label.font()
            if font.bold() != (name in changed):
                font.setBold(name in changed)
                label.setFont(font)
        hidden = [name for name in self.advanced_names() if name in changed]
        self.advanced.setText(f"Advanced · {len(hidden)} changed" if hidden else "Advanced")
        button = self.advanced.toggleButton()
        font = button.font()
        if font.bold() != bool(hidden):
            font.setBold(bool(hidden))
            button.setFont(font)
        tip = "Solver internals: most runs never need them changed"
        if hidden and self.method is not None:
            by_name = {p.name: p for p in self.method.parameters}
            tip += "<br>Changed from the defaults: " + ", ".join(
                f"{by_name[name].display_label()} = {_shown(changed[name][0])} (default {_shown(changed[name][1])})"
                for name in hidden)
        self.advanced.toggleButton().setToolTip(tip)

    def _set_field(self, p: Parameter, field: QWidget, value: Any) -> None:
        self._programmatic = True
        try:
            if isinstance(field, QCheckBox):
                field.setChecked(bool(value))
            elif isinstance(field, QComboBox):
                index = field.findData(value)
                field.setCurrentIndex(index if index >= 0 else field.findText(str(value)))
            elif isinstance(field, (QSpinBox, QDoubleSpinBox)):
                field.setValue(value)
            else:
                assert isinstance(field, QLineEdit)
                field.setText(str(value))
        finally:
            self._programmatic = False

    @staticmethod
    def _field_value(p: Parameter, field: QWidget) -> Any:
        if isinstance(field, QCheckBox):
            return field.isChecked()
        if isinstance(field, QComboBox):
            return field.currentData()
        if isinstance(field, (QSpinBox, QDoubleSpinBox)):
            return field.value()
        assert isinstance(field, QLineEdit)
        return field.text()


def _linear_step(p: Parameter) -> float:
    """A tenth of the default's decade (or 1% of a bounded range) for linear float spin boxes."""
    if p.minimum is not None and p.maximum is not None and math.isfinite(p.maximum - p.minimum):
        return (p.maximum - p.minimum) / 100
    magnitude = abs(float(p.default)) if p.default else 1.0
    return 10 ** math.floor(math.log10(magnitude)) / 10


def _same(value: Any, default: Any) -> bool:
    """Whether a field's value is its default (floats compared as the spin box shows them, to 6 digits)."""
    if isinstance(value, float) or isinstance(default, float):
        try:
            return math.isclose(float(value), float(default), rel_tol=1e-6, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return value == default or str(value) == str(default)


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
