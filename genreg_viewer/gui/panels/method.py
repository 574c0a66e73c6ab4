"""Method: choose a registered reconstruction method, edit its parameters, run it in the background.

:class:`MethodControls` (a dock) lists every method of :func:`genreg_viewer.recon.all_methods` with a form built
from its parameter declarations, queues runs on the :class:`~genreg_viewer.gui.workers.ReconQueue` and shows
their progress; :class:`LiveRunView` (a tab) shows the running method's current iterate and its objective,
PSNR and SSIM curves.
"""

from __future__ import annotations

import html
import math

import numpy as np
import torch
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QFont, QStandardItemModel
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...application import ExperimentState, ProgressUpdate, ReconJob, describe_setting
from ...device import default_device
from ...recon import ParameterError, ReconMethod, all_methods
from ...weight_sets import (
    AUTO,
    BUNDLED_SETS,
    WeightSetError,
    active_weight_set,
    is_auto,
    resolve_weight_set,
    use_weight_set,
)
from ..widgets.controls import (
    ElidedLabel,
    RunControls,
    button_row,
    compact_combo,
    group_box,
    int_spin,
    note_label,
    push_button,
)
from ..widgets.image_view import ImageView, em
from ..widgets.param_form import ParameterForm
from ..widgets.plots import ThemedPlot
from ..run_status import failure_summary, format_seconds, run_details, run_summary
from ..workers import ReconQueue

CATEGORY_ORDER = ("generative", "learned", "classical", "other")
#: section headings of the method list
CATEGORY_HEADINGS = {
    "generative": "Generative priors (VAE, flow)",
    "learned": "Learned networks and image priors",
    "classical": "Classical",
    "other": "Other",
}
#: preferred method on start-up (the paper's method), then fall-backs
PREFERRED_METHODS = ("mean+covar", "tv", "lsq", "adjoint")


def device_choices() -> list[tuple[str, str]]:
    """(label, device) pairs: automatic first (CUDA when present, else CPU)."""
    auto = default_device()
    choices = [(f"Automatic ({auto.type.upper()})", str(auto)), ("CPU", "cpu")]
    if torch.cuda.is_available():
        choices.append((f"CUDA ({torch.cuda.get_device_name(0)})", "cuda"))
    return choices


class MethodControls(QWidget):
    """Method choice, parameter form, Run/Cancel, progress and the run queue."""

    errorOccurred = pyqtSignal(str, str)
    statusMessage = pyqtSignal(str)
    weightSetChanged = pyqtSignal(str)  #: the name of the newly chosen weight set

    def __init__(self, state: ExperimentState, queue: ReconQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.queue = queue
        self.methods: dict[str, ReconMethod] = {m.name: m for m in all_methods()}
        self.iterations: dict[str, int] = {name: m.default_iterations for name, m in self.methods.items()}
        self._current: ReconMethod | None = None
        layout = QVBoxLayout(self)
        layout.setSpacing(em(self, 0.6))
        layout.addWidget(self._method_group())
        layout.addWidget(self._parameter_group())
        layout.addWidget(self._run_group())
        layout.addWidget(self._queue_group(), 1)
        self._populate_methods()
        state.measurement_changed.connect(self._measurement_changed)
        queue.queueChanged.connect(self._queue_changed)
        queue.jobStarted.connect(self._job_started)
        queue.jobProgress.connect(self._job_progress)
        queue.jobFinished.connect(self._job_ended)
        queue.jobFailed.connect(self._job_failed)
        self._queue_changed()

    # ------------------------------------------------------------------ groups
    def _method_group(self) -> QGroupBox:
        box, layout = group_box("Method")
        self.method_combo = compact_combo(QComboBox())
        self.method_combo.currentIndexChanged.connect(self._method_changed)
        layout.addWidget(self.method_combo)
        self.description_label = note_label()
        layout.addWidget(self.description_label)
        return box

    def _parameter_group(self) -> QGroupBox:
        box, layout = group_box("Parameters")
        self.form = ParameterForm()
        layout.addWidget(self.form)
        reset = push_button("Reset to defaults", lambda: self.form.reset(self.setting_defaults()),
                            "Defaults for this method and measurement setting")
        layout.addWidget(reset, 0, Qt.AlignmentFlag.AlignRight)
        return box

    def _run_group(self) -> QGroupBox:
        box, layout = group_box("Run")
        form = QFormLayout()
        self.iterations_spin = int_spin(1, 10_000_000)
        self.iterations_spin.valueChanged.connect(self._iterations_changed)
        form.addRow("Iterations", self.iterations_spin)
        self.device_combo = compact_combo(QComboBox())
        for label, device in device_choices():
            self.device_combo.addItem(label, device)
        self.device_combo.currentIndexChanged.connect(self._update_hint)
        form.addRow("Device", self.device_combo)
        self.weights_combo = compact_combo(QComboBox())
        self._fill_weight_sets()
        self.weights_combo.currentIndexChanged.connect(self._weight_set_chosen)
        self.state.image_changed.connect(self._fill_weight_sets)  # auto: the label names this image's set
        form.addRow("Weights", self.weights_combo)
        layout.addLayout(form)
        self.run_controls = RunControls("Run", self.run, self.cancel,
                                        "Queue a run of this method with these parameters (Ctrl+R)",
                                        "Stop the running method after its current iteration (Esc)")
        layout.addWidget(self.run_controls)
        return box

    def _queue_group(self) -> QGroupBox:
        box, layout = group_box("Queue")
        self.queue_list = QListWidget()
        self.queue_list.setMinimumHeight(em(self, 4))
        layout.addWidget(self.queue_list, 1)
        layout.addLayout(button_row(
            push_button("Remove", self._remove_selected,
                        "Remove the selected queued run (or cancel it if it is running)"),
            push_button("Cancel all", self.queue.cancel_all,
                        "Cancel the running method and empty the queue (Shift+Esc)")))
        return box

    def _fill_weight_sets(self) -> None:
        """``auto`` (each image gets the set trained for its kind), the bundled weight sets that are installed, and
        the active one when it is a folder of its own."""
        active = active_weight_set()
        combo = self.weights_combo
        combo.blockSignals(True)
        combo.clear()
        image_set, _why = self.state.weight_set_choice()
        combo.addItem(f"auto ({image_set.name})" if is_auto() else "auto", AUTO)
        combo.setItemData(0, self._auto_tooltip(), Qt.ItemDataRole.ToolTipRole)
        for name in BUNDLED_SETS:
            try:
                weight_set = resolve_weight_set(name)
            except WeightSetError:
                continue
            combo.addItem(f"{name}", name)
            combo.setItemData(combo.count() - 1, self._weights_tooltip(weight_set), Qt.ItemDataRole.ToolTipRole)
        if not is_auto() and combo.findData(active.name) < 0:
            combo.addItem(active.name, str(active.folder))
            combo.setItemData(combo.count() - 1, self._weights_tooltip(active), Qt.ItemDataRole.ToolTipRole)
        index = 0 if is_auto() else combo.findData(active.name)
        combo.setCurrentIndex(index if index >= 0 else combo.count() - 1)
        combo.setToolTip(self._auto_tooltip() if is_auto() else self._weights_tooltip(active))
        combo.blockSignals(False)

    def _auto_tooltip(self) -> str:
        image_set, why = self.state.weight_set_choice()
        now = f"\nThis image ({why.removeprefix('auto: ')}) uses: {image_set.name}" if is_auto() else ""
        return ("Each image gets the weights trained for its kind: phantom for the bundled and generated phantoms, "
                "real-knee for scans you open (fastMRI, MRNet, your own)" + now)

    @staticmethod
    def _weights_tooltip(weight_set) -> str:
        lines = [weight_set.description or f"weights in {weight_set.folder}"]
        if weight_set.data:
            lines.append(f"Trained on: {weight_set.data}")
        if weight_set.terms:
            lines.append(f"Terms: {weight_set.terms}")
        if weight_set.fallback:
            lines.append(f"Networks it lacks come from: {weight_set.fallback}")
        return "\n".join(lines)

    def select_weight_set(self, spec: str) -> None:
        """Use the weight set ``spec`` (``auto``, a bundled name or a folder) for the next runs; raises
        ``WeightSetError``."""
        chosen = use_weight_set(spec)
        self._fill_weight_sets()
        if is_auto():
            image_set, why = self.state.weight_set_choice()
            self._populate_methods()
            self.weightSetChanged.emit(AUTO)
            self.statusMessage.emit(f"Weights: auto (this image, {why.removeprefix('auto: ')}: {image_set.name})")
            return
        self._populate_methods()
        self.weightSetChanged.emit(chosen.name)
        self.statusMessage.emit(f"Weights: {chosen.name}" + (f" ({chosen.data})" if chosen.data else ""))

    def _weight_set_chosen(self, *_args) -> None:
        spec = self.weights_combo.currentData()
        if spec is None or (spec == AUTO) == is_auto() and (spec == AUTO or spec == active_weight_set().name):
            return
        current = self._current.name if self._current else None
        try:
            self.select_weight_set(spec)
        except WeightSetError as exc:
            self.errorOccurred.emit("Cannot use these weights", str(exc))
            self._fill_weight_sets()
            return
        if current:
            self.select_method(current)

    # --------------------------------------------------------------------- API
    def current_method(self) -> ReconMethod | None:
        return self._current

    def select_method(self, name: str) -> bool:
        index = self.method_combo.findData(name)
        if index < 0:
            return False
        self.method_combo.setCurrentIndex(index)
        return True

    def setting_defaults(self) -> dict:
        """The method's declared defaults updated with its defaults for the current measurement setting."""
        method = self._current
        if method is None:
            return {}
        defaults = {p.name: p.default for p in method.parameters}
        if self.state.ready:
            try:
                defaults.update(method.defaults_for(self.state.problem()))
            except Exception:  # noqa: BLE001 - a defaults table that cannot be read: the declared defaults still work
                pass
        return defaults

    def settings(self) -> dict:
        """Method, parameters, iterations and device (saved with sessions)."""
        method = self._current
        try:
            params = self.form.values()
        except ParameterError:
            params = {}
        return {
            "method": method.name if method else None,
            "params": params,
            "edited": sorted(self.form.edited),
            "iterations": self.iterations_spin.value(),
            "device": self.device_combo.currentData(),
            "weights": AUTO if is_auto() else active_weight_set().name,
        }

    def restore_settings(self, settings: dict) -> None:
        weights = settings.get("weights")
        current = AUTO if is_auto() else active_weight_set().name
        if isinstance(weights, str) and (weights in BUNDLED_SETS or weights == AUTO) and weights != current:
            try:
                self.select_weight_set(weights)
            except WeightSetError as exc:
                self.errorOccurred.emit("Cannot use the session's weights", str(exc))
        if settings.get("method") and self.select_method(settings["method"]):
            edited = set(settings.get("edited", []))
            params = settings.get("params", {})
            self.form.set_values({k: v for k, v in params.items() if k in edited})
            if settings.get("iterations"):
                self.iterations_spin.setValue(int(settings["iterations"]))

    def make_job(self) -> ReconJob:
        """A job for the current method, parameters and measurement (raises ``ValueError`` when not ready)."""
        if self._current is None:
            raise ValueError("no reconstruction method is selected")
        return self.state.make_job(self._current, self.form.values(), self.iterations_spin.value(),
                                   self.device_combo.currentData())

    def run(self) -> None:
        try:
            job = self.make_job()
        except ValueError as exc:
            self.errorOccurred.emit("Cannot run", str(exc))
            return
        self.queue.submit(job)
        self.statusMessage.emit(f"Queued {job.title}")

    def cancel(self) -> None:
        if self.queue.cancel_current():
            self.statusMessage.emit("Cancelling…")

    # ------------------------------------------------------------------ events
    def _populate_methods(self) -> None:
        combo = self.method_combo
        model, view = combo.model(), combo.view()
        assert isinstance(model, QStandardItemModel) and view is not None  # a QComboBox's own model and list
        combo.blockSignals(True)
        combo.clear()
        ordered = sorted(self.methods.values(), key=lambda m: CATEGORY_ORDER.index(m.category)
                         if m.category in CATEGORY_ORDER else len(CATEGORY_ORDER))
        previous_category = None
        heading_font = QFont(combo.font())
        heading_font.setBold(True)
        for method in ordered:
            if method.category != previous_category:  # a heading that cannot be chosen
                combo.addItem(CATEGORY_HEADINGS.get(method.category, method.category.capitalize()), None)
                heading = model.item(combo.count() - 1)
                assert heading is not None
                heading.setEnabled(False)
                heading.setFont(heading_font)
            previous_category = method.category
            ok, why = method.available()
            combo.addItem(method.title if ok else f"{method.title} — not available", method.name)
            index = combo.count() - 1
            combo.setItemData(index, method.description if ok else f"Not available: {why}",
                              Qt.ItemDataRole.ToolTipRole)
            if not ok:
                item = model.item(index)
                assert item is not None
                item.setEnabled(False)
        # the list shows every name in full, however narrow the closed box is
        view.setMinimumWidth(view.sizeHintForColumn(0) + em(self, 1.5))
        combo.blockSignals(False)
        for name in PREFERRED_METHODS:
            index = combo.findData(name)
            if index >= 0 and self.methods[name].available()[0]:
                combo.setCurrentIndex(index)
                break
        self._method_changed()

    def _method_changed(self, *_args) -> None:
        name = self.method_combo.currentData()
        method = self.methods.get(name)
        self._current = method
        self.form.set_method(method)
        if method is None:
            self.description_label.setText("")
            return
        self.description_label.setText(method.description)
        self.iterations_spin.blockSignals(True)
        self.iterations_spin.setValue(self.iterations.get(name, method.default_iterations))
        self.iterations_spin.blockSignals(False)
        self.form.set_defaults(self.setting_defaults())
        self._update_buttons()

    def _iterations_changed(self, value: int) -> None:
        if self._current is not None:
            self.iterations[self._current.name] = value
        self._update_hint()

    def run_hint(self) -> str:
        """What Run will do with the current image, mask and method (rich text, shown until the first run)."""
        method, state = self._current, self.state
        if state.image is None:
            return "Open an image (Ctrl+O) to start."
        if method is None:
            return "Choose a method above, then press <b>Run</b> (Ctrl+R)."
        ok, why = method.available()
        if not ok:
            return f"{html.escape(method.title)} is not available: {html.escape(why)}. Choose another method above."
        if not state.ready:
            return f"Cannot run yet: {html.escape(state.measurement_error or 'no measurement')}."
        device = self.device_combo.currentText().removeprefix("Automatic (").removesuffix(")")
        iterations = self.iterations_spin.value()
        return (f"<b>Run</b> (Ctrl+R) reconstructs <b>{html.escape(state.image_info.label())}</b> from its "
                f"{html.escape(describe_setting(state.setting()))} measurement with <b>{html.escape(method.title)}"
                f"</b>: {iterations} iteration{'' if iterations == 1 else 's'} on {html.escape(device)}. "
                "The result joins the Comparison tab.")

    def _update_hint(self, *_args) -> None:
        if not self.run_controls.started:
            self.run_controls.set_hint(self.run_hint())

    def _measurement_changed(self) -> None:
        self.form.set_defaults(self.setting_defaults())
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.state.ready and self._current is not None and self._current.available()[0]
        run_button = self.run_controls.run_button
        run_button.setEnabled(ready)
        run_button.setToolTip("Queue a run (Ctrl+R)" if ready else (self.state.measurement_error or
                                                                    "this method is not available"))
        self.run_controls.cancel_button.setEnabled(self.queue.current is not None)
        self._update_hint()

    def _queue_changed(self) -> None:
        self.queue_list.clear()
        jobs = ([self.queue.current] if self.queue.current else []) + list(self.queue.pending)
        for job in jobs:
            running = job is self.queue.current
            text = f"{'▶' if running else '⏳'}  {job.title}  ·  {job.iterations} it  ·  {job.setting.get('mask')}"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, job.job_id)
            self.queue_list.addItem(item)
        if not jobs:
            placeholder = QListWidgetItem("No runs queued")
            placeholder.setFlags(Qt.ItemFlag.NoItemFlags)
            self.queue_list.addItem(placeholder)
        self._update_buttons()

    def _remove_selected(self) -> None:
        for item in self.queue_list.selectedItems():
            job_id = item.data(Qt.ItemDataRole.UserRole)
            if job_id is not None:
                self.queue.remove(int(job_id))

    def _job_started(self, job: ReconJob) -> None:
        self.run_controls.set_progress(f"{job.title}: starting on {job.device}…", 0, job.iterations)

    def _job_progress(self, job: ReconJob, update: ProgressUpdate) -> None:
        self.run_controls.set_progress(
            f"{job.title}: iteration {update.iteration}/{update.total} · {format_seconds(update.elapsed)}"
            f" · ETA {format_seconds(update.eta)}", update.iteration)

    def _job_ended(self, job: ReconJob, record) -> None:
        # a method may stop early once converged: a run that was not cancelled is complete; whether its
        # convergence test fired is a detail (the tooltip), not the headline
        self.run_controls.set_progress(f"{job.title} {run_summary(record, job.iterations)}",
                                       None if record.cancelled else job.iterations,
                                       details=run_details(record, job.iterations))

    def _job_failed(self, job: ReconJob, message: str) -> None:
        self.run_controls.set_progress(f"{job.title} {failure_summary(message)}", 0, details=message)


class LiveRunView(QWidget):
    """The running method's current iterate and its objective, PSNR and SSIM against the iteration.

    Painting stays cheap while a run goes on: the x axes span the run's iteration budget from its start (so they
    do not re-tick at every update), the y ranges grow in steps of a quarter of their span (see :func:`_grown`),
    the log axis of the objective switches only when the values start or stop spanning a decade, and the header
    cuts a long title, keeping the run's status and numbers at its end (the full text is its tooltip), instead of
    widening the window.
    """

    def __init__(self, queue: ReconQueue, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setSpacing(em(self, 0.8))
        # a finished run's status and numbers (iterations, time, PSNR, SSIM) stay whole: its title is cut instead;
        # other long texts are elided in the middle
        self.header = ElidedLabel("No run yet: choose a method and press Run (Ctrl+R).",
                                  mode=Qt.TextElideMode.ElideMiddle)
        font = QFont(self.header.font())
        font.setPointSizeF(font.pointSizeF() * 1.15)
        font.setBold(True)
        self.header.setFont(font)
        layout.addWidget(self.header, 0, 0, 1, 2)
        self.image_view = ImageView("Current iterate")
        layout.addWidget(self.image_view, 1, 0, 3, 1)
        self.objective_plot = ThemedPlot("Objective", "iteration", "")
        self.psnr_plot = ThemedPlot("PSNR", "iteration", "dB")
        self.ssim_plot = ThemedPlot("SSIM", "iteration", "")
        self.plots = {"objective": self.objective_plot, "psnr": self.psnr_plot, "ssim": self.ssim_plot}
        for row, plot in enumerate(self.plots.values(), start=1):
            layout.addWidget(plot, row, 1)
            plot.disableAutoRange()
            if plot is not self.objective_plot:
                plot.setXLink(self.objective_plot)
        layout.setColumnStretch(0, 3)
        layout.setColumnStretch(1, 2)
        self.curves = {key: plot.plot(pen=plot.series_pen(index)) for index, (key, plot) in
                       enumerate(self.plots.items())}
        self.data: dict[str, list[tuple[int, float]]] = {k: [] for k in self.curves}
        self._y_ranges: dict[str, tuple[float, float] | None] = {k: None for k in self.curves}
        self._log_objective = False
        queue.jobStarted.connect(self.start)
        queue.jobProgress.connect(self.update_progress)
        queue.jobFinished.connect(self.finish)
        queue.jobFailed.connect(self._failed)

    def start(self, job: ReconJob) -> None:
        for key in self.data:
            self.data[key] = []
            self.curves[key].setData([], [])
            self._y_ranges[key] = None
        self.objective_plot.setXRange(0, max(job.iterations, 1), padding=0.02)
        self.image_view.set_image(None)
        self.image_view.set_title("Current iterate")
        self.image_view.set_caption("")
        self.header.set_text_keeping(f"{job.title} · {describe_setting(job.setting)} · running…", "")
        self.header.set_details("")

    def update_progress(self, job: ReconJob, update: ProgressUpdate) -> None:
        for iteration, objective, psnr, ssim in update.points:
            for key, value in (("objective", objective), ("psnr", psnr), ("ssim", ssim)):
                if value is not None and math.isfinite(value):
                    self.data[key].append((iteration, value))
        objectives = [v for _, v in self.data["objective"]]
        # a log axis only where it helps: positive values spanning more than a decade (pyqtgraph labels no
        # ticks on a log axis that spans less)
        spans_decades = bool(objectives) and min(objectives) > 0 and max(objectives) > 10 * min(objectives)
        if spans_decades != self._log_objective:
            self._log_objective = spans_decades
            self.objective_plot.setLogMode(y=spans_decades)
            self._y_ranges["objective"] = None
        for key, points in self.data.items():
            if points:
                xs, ys = np.array(points).T
                few = len(points) <= 30  # mark the points of short runs, or one point would be invisible
                self.curves[key].setData(xs, ys, symbol="o" if few else None, symbolSize=em(self, 0.4),
                                         symbolBrush=self.curves[key].opts["pen"].color())
                shown = np.log10(ys) if key == "objective" and self._log_objective else ys
                grown = _grown(self._y_ranges[key], float(shown.min()), float(shown.max()))
                if grown != self._y_ranges[key]:
                    self._y_ranges[key] = grown
                    self.plots[key].setYRange(*grown, padding=0)
        self.image_view.set_image(update.image)
        last = {k: v[-1][1] for k, v in self.data.items() if v}
        caption = f"iteration {update.iteration}/{update.total}"
        if "psnr" in last:
            caption += f" · PSNR {last['psnr']:.2f} dB · SSIM {last['ssim']:.3f}"
        self.image_view.set_caption(caption)
        if update.final:
            self.objective_plot.setXRange(0, max(update.iteration, 1), padding=0.02)

    def finish(self, job: ReconJob, record) -> None:
        self.image_view.set_title("Final image" if not record.cancelled else "Last iterate (cancelled)")
        self.image_view.set_image(record.image)
        metrics = f" · {record.metrics_text()}" if record.metrics_text() else ""
        status = f"{run_summary(record, job.iterations)}{metrics}"  # kept whole: a long title is cut instead
        self.header.set_text_keeping(f"{job.title} {status}", f" {status}")
        self.header.set_details(f"{run_details(record, job.iterations)}\nDevice: {record.device}.")

    def _failed(self, job: ReconJob, message: str) -> None:
        self.image_view.set_title("Last iterate (failed)")
        self.header.set_text_keeping(f"{job.title} {failure_summary(message)}", "")
        self.header.set_details(message)


def _grown(current: tuple[float, float] | None, low: float, high: float) -> tuple[float, float]:
    """The y range to show for data in ``[low, high]``: ``current`` while it holds them and they fill at least a
    third of it, else a range a quarter of the span wider on each side than needed (so a curve re-ticks its axis
    only every few updates)."""
    span = max(high - low, abs(high) * 1e-3, 1e-12)
    if current is not None and current[0] <= low and high <= current[1] and 3 * span >= current[1] - current[0]:
        return current
    return low - 0.25 * span, high + 0.25 * span
