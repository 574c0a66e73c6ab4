"""Sampling: the image source, the mask pattern and its parameters, mask drawing tools and the noise.

:class:`SamplingControls` (a dock) edits the :class:`~genreg_viewer.application.experiment.ExperimentState`;
:class:`MeasurementView` (a tab) shows the ground truth, the k-space with the mask (where the mask is drawn) and
the zero-filled adjoint ``Re(A^H y)``, all updated as soon as a control changes.
"""

from __future__ import annotations

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...application.experiment import CUSTOM_MASK_SPEC, ExperimentState
from ...defaults import DEFAULT_MASK_SPEC
from ...physics import MAX_SPOKES, mask_from_spec
from ..widgets.controls import (
    button_row,
    float_spin,
    group_box,
    int_spin,
    note_label,
    push_button,
    wrapped_label,
)
from ..widgets.image_view import ImageView, em
from ..widgets.mask_painter import MaskPainter

#: (spec kind, label) in the order the mask-type box lists them
MASK_KINDS = (
    ("radial", "Radial spokes"),
    ("golden", "Golden-angle spokes"),
    ("cartesian", "Cartesian rows"),
    ("random", "Random points"),
    ("full", "Fully sampled"),
    (CUSTOM_MASK_SPEC, "Custom (drawn or loaded)"),
)
DEFAULT_SPEC = DEFAULT_MASK_SPEC
DEFAULT_SIGMA = 0.05


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


class SamplingControls(QWidget):
    """Controls for the image source, the mask and the noise."""

    openRequested = pyqtSignal()
    sliceRequested = pyqtSignal(int)
    loadMaskRequested = pyqtSignal()
    saveMaskRequested = pyqtSignal()
    errorOccurred = pyqtSignal(str, str)  # title, message
    showMeasuredToggled = pyqtSignal(bool)

    def __init__(self, state: ExperimentState, painter: MaskPainter, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.painter = painter
        self.base_spec = DEFAULT_SPEC  #: the pattern a drawn mask started from ("Reset" returns to it)
        layout = QVBoxLayout(self)
        layout.setSpacing(em(self, 0.6))
        layout.addWidget(self._image_group())
        layout.addWidget(self._mask_group())
        layout.addWidget(self._edit_group())
        layout.addWidget(self._noise_group())
        layout.addStretch(1)
        self._slice_timer = QTimer(self)
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(150)
        self._slice_timer.timeout.connect(lambda: self.sliceRequested.emit(self.slice_spin.value() - 1))
        state.image_changed.connect(self._image_changed)
        state.measurement_changed.connect(self._measurement_changed)
        painter.maskEdited.connect(self._mask_drawn)
        state.set_noise(self.sigma_spin.value(), self.seed_spin.value())
        self.set_spec(DEFAULT_SPEC)

    # ------------------------------------------------------------------ groups
    def _image_group(self) -> QGroupBox:
        box, layout = group_box("Image")
        row = QHBoxLayout()
        self.source_label = wrapped_label("No image")
        self.source_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.source_label, 1)
        row.addWidget(push_button("Open…", self.openRequested,
                                  "Open a fastMRI .h5 volume, an image or a .npy array (Ctrl+O); or drop a file"))
        layout.addLayout(row)
        self.slice_row = QWidget()
        slice_layout = QHBoxLayout(self.slice_row)
        slice_layout.setContentsMargins(0, 0, 0, 0)
        slice_layout.addWidget(QLabel("Slice"))
        self.slice_slider = QSlider(Qt.Orientation.Horizontal)
        self.slice_spin = QSpinBox()
        self.slice_slider.valueChanged.connect(self.slice_spin.setValue)
        self.slice_spin.valueChanged.connect(self.slice_slider.setValue)
        self.slice_spin.valueChanged.connect(self._slice_changed)
        slice_layout.addWidget(self.slice_slider, 1)
        slice_layout.addWidget(self.slice_spin)
        self.slice_row.setVisible(False)
        layout.addWidget(self.slice_row)
        return box

    def _mask_group(self) -> QGroupBox:
        box, layout = group_box("Sampling mask")
        form = _form()
        self.kind_combo = QComboBox()
        for kind, label in MASK_KINDS:
            self.kind_combo.addItem(label, kind)
        self.kind_combo.currentIndexChanged.connect(self._kind_changed)
        form.addRow("Pattern", self.kind_combo)
        layout.addLayout(form)

        self.pages = QStackedWidget()
        self.spokes_spin = int_spin(1, MAX_SPOKES, 25)
        self.spokes_spin.setToolTip("Half-lines from the k-space centre (the paper uses 5 to 125 for 128x128)")
        self.golden_spin = int_spin(1, MAX_SPOKES, 25)
        self.centre_spin = int_spin(0, self.state.shape[0], 16)
        self.centre_spin.setToolTip("Fully sampled rows around the k-space centre")
        self.probability_spin = float_spin(0.0, 1.0, 0.05, 3, 0.25)
        self.probability_spin.setToolTip("Probability of sampling each remaining row")
        self.fraction_spin = float_spin(0.001, 1.0, 0.01, 3, 0.15)
        self.fraction_spin.setToolTip("Fraction of k-space sampled; variable density, denser at the centre")
        pages: dict[str, list[tuple[str, QSpinBox | QDoubleSpinBox]]] = {
            "radial": [("Spokes", self.spokes_spin)],
            "golden": [("Spokes", self.golden_spin)],
            "cartesian": [("Centre rows", self.centre_spin), ("Row probability", self.probability_spin)],
            "random": [("Fraction", self.fraction_spin)],
            "full": [],
            CUSTOM_MASK_SPEC: [],
        }
        for kind, _ in MASK_KINDS:
            page = QWidget()
            page_form = _form()
            page_form.setContentsMargins(0, 0, 0, 0)
            for label, widget in pages[kind]:
                page_form.addRow(label, widget)
                widget.setKeyboardTracking(False)
                widget.valueChanged.connect(self.apply_pattern)
            if kind == CUSTOM_MASK_SPEC:
                page_form.addRow(note_label("Drawn with the brush or loaded from a file."))
            page.setLayout(page_form)
            self.pages.addWidget(page)
        layout.addWidget(self.pages)
        self.coverage_label = wrapped_label()
        layout.addWidget(self.coverage_label)
        layout.addLayout(button_row(
            push_button("Load…", self.loadMaskRequested,
                        "Load a mask from a .png or .npy file (centred, white/non-zero = sampled)"),
            push_button("Save…", self.saveMaskRequested, "Save the mask as .png or .npy")))
        return box

    def _edit_group(self) -> QGroupBox:
        box, layout = group_box("Draw on the mask")
        row = QHBoxLayout()
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QToolButton] = {}
        for tool, label, tip in (
            ("pan", "Pan", "Pan and zoom the k-space view (P)"),
            ("brush", "Brush", "Add samples: drag over the k-space view (B)"),
            ("eraser", "Eraser", "Remove samples: drag over the k-space view (X)"),
        ):
            button = QToolButton()
            button.setText(label)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
            self.tool_group.addButton(button)
            self.tool_buttons[tool] = button
            button.toggled.connect(lambda on, t=tool: self.painter.set_tool(t) if on else None)
            row.addWidget(button)
        self.tool_buttons["pan"].setChecked(True)
        layout.addLayout(row)
        form = _form()
        self.radius_spin = float_spin(0.0, 32.0, 0.5, 1, 1.5)
        self.radius_spin.setSuffix(" px")
        self.radius_spin.setToolTip("Brush radius in k-space samples")
        self.radius_spin.valueChanged.connect(self.painter.set_radius)
        self.painter.set_radius(self.radius_spin.value())
        form.addRow("Radius", self.radius_spin)
        layout.addLayout(form)
        measured = QCheckBox("Show measured data (noisy y)")
        measured.setToolTip("Show log(1 + |y|) instead of the full k-space of the ground truth")
        measured.toggled.connect(self.showMeasuredToggled)
        layout.addWidget(measured)
        layout.addWidget(push_button("Reset to pattern", lambda: self.set_spec(self.base_spec),
                                     "Discard drawn edits and go back to the chosen pattern"))
        return box

    def _noise_group(self) -> QGroupBox:
        box = QGroupBox("Noise")
        form = _form()
        self.sigma_spin = float_spin(0.0, 1.0, 0.005, 4, DEFAULT_SIGMA)
        self.sigma_spin.setToolTip("Std of the real and of the imaginary part of the noise on each sampled "
                                   "coefficient (orthonormal FFT, image range [0, 1])")
        self.seed_spin = int_spin(0, 2**31 - 1, 0)
        self.seed_spin.setToolTip("Seed of the noise, of random masks and of the methods")
        for spin in (self.sigma_spin, self.seed_spin):
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(self.apply_noise)
        form.addRow("σ", self.sigma_spin)
        form.addRow("Seed", self.seed_spin)
        box.setLayout(form)
        return box

    # --------------------------------------------------------------------- API
    def current_kind(self) -> str:
        return self.kind_combo.currentData()

    def spec(self) -> str:
        """The spec string of the chosen pattern (``radial:25``, ...), or ``custom``."""
        kind = self.current_kind()
        if kind == "radial":
            return f"radial:{self.spokes_spin.value()}"
        if kind == "golden":
            return f"golden:{self.golden_spin.value()}"
        if kind == "cartesian":
            return f"cartesian:{self.centre_spin.value()}:{self.probability_spin.value():g}"
        if kind == "random":
            return f"random:{self.fraction_spin.value():g}"
        return kind

    def set_spec(self, spec: str, apply: bool = True) -> None:
        """Show ``spec`` in the controls (unknown specs select Custom) and, with ``apply``, build the mask."""
        kind, _, rest = spec.partition(":")
        args = rest.split(":") if rest else []
        widgets = [self.kind_combo, self.spokes_spin, self.golden_spin, self.centre_spin, self.probability_spin,
                   self.fraction_spin]
        for w in widgets:
            w.blockSignals(True)
        try:
            if kind == "radial" and len(args) == 1:
                self.spokes_spin.setValue(int(args[0]))
            elif kind == "golden" and len(args) == 1:
                self.golden_spin.setValue(int(args[0]))
            elif kind == "cartesian" and len(args) == 2:
                self.centre_spin.setValue(int(args[0]))
                self.probability_spin.setValue(float(args[1]))
            elif kind == "random" and len(args) == 1:
                self.fraction_spin.setValue(float(args[0]))
            elif kind != "full":
                kind = CUSTOM_MASK_SPEC
            index = self.kind_combo.findData(kind)
            self.kind_combo.setCurrentIndex(index)
            self.pages.setCurrentIndex(index)
        finally:
            for w in widgets:
                w.blockSignals(False)
        if kind != CUSTOM_MASK_SPEC:
            self.base_spec = self.spec()
        if apply:
            self.apply_pattern()

    def apply_pattern(self) -> None:
        """Build the chosen pattern and hand it to the state (which re-simulates the measurement)."""
        kind = self.current_kind()
        if kind == CUSTOM_MASK_SPEC:
            return
        spec = self.spec()
        self.base_spec = spec
        try:
            mask = mask_from_spec(spec, self.state.shape, seed=self.seed_spin.value())
            self.state.set_mask(mask, spec)
        except ValueError as exc:
            self.errorOccurred.emit("Invalid mask", str(exc))

    def apply_noise(self) -> None:
        self.state.set_noise(self.sigma_spin.value(), self.seed_spin.value())
        if self.current_kind() in ("cartesian", "random"):  # their masks are seeded too
            self.apply_pattern()

    def sync_from_state(self) -> None:
        """Show the state's mask spec, noise and seed (after a session was restored)."""
        self.sigma_spin.blockSignals(True)
        self.sigma_spin.setValue(self.state.sigma)
        self.sigma_spin.blockSignals(False)
        self.seed_spin.blockSignals(True)
        self.seed_spin.setValue(self.state.seed)
        self.seed_spin.blockSignals(False)
        self.set_spec(self.state.mask_spec, apply=False)

    # ------------------------------------------------------------------ events
    def _kind_changed(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        if self.current_kind() == CUSTOM_MASK_SPEC:
            self.state.set_mask(self.state.mask, CUSTOM_MASK_SPEC)
        else:
            self.apply_pattern()

    def _mask_drawn(self, mask) -> None:
        if self.current_kind() != CUSTOM_MASK_SPEC:
            self.kind_combo.blockSignals(True)
            index = self.kind_combo.findData(CUSTOM_MASK_SPEC)
            self.kind_combo.setCurrentIndex(index)
            self.pages.setCurrentIndex(index)
            self.kind_combo.blockSignals(False)
        self.state.set_mask(mask, CUSTOM_MASK_SPEC)

    def sync_slice_controls(self) -> None:
        """Show the slice of the open image on the slider and spin box without requesting a load (also used to
        undo a slider move whose slice could not be read)."""
        self._slice_timer.stop()
        info = self.state.image_info
        volume = info.num_slices > 1
        self.slice_row.setVisible(volume)
        if volume:
            for w in (self.slice_spin, self.slice_slider):
                w.blockSignals(True)
                w.setRange(1, info.num_slices)
                w.setValue((info.slice_index or 0) + 1)
                w.blockSignals(False)

    def _slice_changed(self, _value: int) -> None:
        if not self.slice_spin.signalsBlocked():
            self._slice_timer.start()

    def _image_changed(self) -> None:
        self.centre_spin.blockSignals(True)
        self.centre_spin.setMaximum(self.state.shape[0])  # at most every row
        self.centre_spin.blockSignals(False)
        info = self.state.image_info
        self.source_label.setText(info.label() or "No image")
        self.source_label.setToolTip(info.source)
        self.sync_slice_controls()
        if self.state.mask.shape != self.state.shape or (
            self.state.mask_spec == "full" and self.current_kind() not in ("full", CUSTOM_MASK_SPEC)
        ):
            self.apply_pattern()

    def _measurement_changed(self) -> None:
        mask = self.state.mask
        self.coverage_label.setText(
            f"Samples <b>{100 * mask.mean():.1f}%</b> of k-space ({int(mask.sum())} of {mask.size})"
        )


class MeasurementView(QWidget):
    """Ground truth | k-space with the mask (drawable) | zero-filled adjoint."""

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.grid = QGridLayout(self)
        self.grid.setSpacing(em(self, 0.8))
        self.truth_view = ImageView("Ground truth")
        self.painter = MaskPainter("k-space (log |F x|) and mask")
        self.adjoint_view = ImageView("Zero-filled  Re(Aᴴy)")
        self.adjoint_view.link_to(self.truth_view)
        self.views = (self.truth_view, self.painter, self.adjoint_view)
        for view in self.views:
            view.set_square_both_ways()
        self.columns = 0
        self.arrangement = ""
        self._featured_widths = (0.0, 0.0)
        self._arrange("columns:3")
        self.show_measured = False
        state.image_changed.connect(self._image_changed)
        state.measurement_changed.connect(self._measurement_changed)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        """The arrangement that shows the views largest (:meth:`arrangements`), each square."""
        super().resizeEvent(event)
        best = max(self.arrangements().items(), key=lambda item: item[1])[0]
        if best != self.arrangement:
            self._arrange(best)

    def arrangements(self) -> dict[str, float]:
        """The image area (square pixels) each arrangement gives the three views in the tab's current size:
        ``columns:N`` (N per row, equal squares) and ``featured`` (the k-space, where the mask is drawn, large on
        the left; ground truth and adjoint stacked on the right)."""
        margins = self.grid.contentsMargins()
        width = self.width() - margins.left() - margins.right()
        height = self.height() - margins.top() - margins.bottom()
        extra, spacing = em(self, 4.5), self.grid.spacing()
        areas = {}
        for columns in (1, 2, 3):
            rows = -(-len(self.views) // columns)
            side = min((width - spacing * (columns - 1)) / columns, (height - spacing * (rows - 1)) / rows - extra)
            areas[f"columns:{columns}"] = len(self.views) * max(side, 0) ** 2
        small = max(min((height - spacing) / 2 - extra, (width - spacing) / 3), 0)
        big = max(min(height - extra, width - spacing - small), 0)
        self._featured_widths = (big, small)
        areas["featured"] = big**2 + 2 * small**2
        return areas

    def _arrange(self, arrangement: str) -> None:
        self.arrangement = arrangement
        for index in range(len(self.views)):
            self.grid.setRowStretch(index, 0)
            self.grid.setColumnStretch(index, 0)
        if arrangement == "featured":
            self.columns = 2
            big, small = self._featured_widths
            self.grid.addWidget(self.painter, 0, 0, 2, 1)
            self.grid.addWidget(self.truth_view, 0, 1)
            self.grid.addWidget(self.adjoint_view, 1, 1)
            self.grid.setColumnStretch(0, max(int(big), 1))
            self.grid.setColumnStretch(1, max(int(small), 1))
            self.grid.setRowStretch(0, 1)
            self.grid.setRowStretch(1, 1)
            return
        columns = self.columns = int(arrangement.split(":")[1])
        rows = -(-len(self.views) // columns)
        for index, view in enumerate(self.views):
            self.grid.addWidget(view, index // columns, index % columns)  # moves a view already in the grid
        for row in range(rows):
            self.grid.setRowStretch(row, 1)
        for column in range(columns):
            self.grid.setColumnStretch(column, 1)

    def set_show_measured(self, measured: bool) -> None:
        """Show ``log(1 + |y|)`` (the noisy measured data) instead of the full k-space under the mask."""
        self.show_measured = measured
        self._measurement_changed()

    def _image_changed(self) -> None:
        self.truth_view.set_image(self.state.image)
        self.truth_view.set_caption(self.state.image_info.label())

    def _measurement_changed(self) -> None:
        state = self.state
        background = state.measured_log_magnitude if self.show_measured else state.kspace_log_magnitude
        self.painter.set_background(background)
        self.painter.set_mask(state.mask)
        self.painter.set_caption(f"{state.mask_spec} · {100 * state.mask.mean():.1f}% sampled")
        self.adjoint_view.set_image(state.adjoint)
        scores = state.adjoint_metrics()
        if state.measurement_error:
            self.adjoint_view.set_caption(f"<i>{state.measurement_error}</i>")
        elif scores is not None:
            self.adjoint_view.set_caption(f"PSNR {scores[0]:.2f} dB · SSIM {scores[1]:.3f} · σ={state.sigma:g}")
