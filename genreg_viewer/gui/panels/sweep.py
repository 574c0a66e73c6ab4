"""Sweep view: mean PSNR (± std over the images) against the number of radial spokes or against the noise level,
one curve per chosen method, computed in the background (see :mod:`genreg_viewer.application.sweeps`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...application.experiment import ExperimentState
from ...application.sources import load_image_file
from ...application.sweeps import SWEEP_AXES, SweepPoint, SweepSpec, parse_values, summarise, to_csv
from ...data.loading import SUPPORTED_SUFFIXES
from ...data.phantom import phantom_batch
from ...device import default_device
from ...fileio import atomic_write_text
from ...paths import SAMPLES_DIR
from ...physics import MAX_SPOKES
from ...recon import all_methods
from ...weight_sets import weight_set_choice
from ..export import save_widget_png
from ..widgets.controls import RunControls, button_row, float_spin, group_box, int_spin, note_label, push_button
from ..widgets.image_view import em
from ..widgets.plots import SeriesLegend, ThemedPlot
from ..workers import SweepWorker

DEFAULT_VALUES = {"spokes": "5, 15, 25, 45, 85, 125", "noise": "0, 0.025, 0.05, 0.1, 0.2"}
IMAGE_SETS = (
    ("current", "Current image"),
    ("phantoms", "Knee phantoms"),
    ("samples", "Bundled sample slices"),
    ("folder", "Images in a folder…"),
)
DEFAULT_SWEEP_METHODS = ("adjoint", "tv", "mean+covar")


class SweepPanel(QWidget):
    """Controls and plots for PSNR sweeps."""

    errorOccurred = pyqtSignal(str, str)
    statusMessage = pyqtSignal(str)

    def __init__(self, state: ExperimentState, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state
        self.points: list[SweepPoint] = []
        self.spec: SweepSpec | None = None
        self.running = False
        self.folder: str | None = None
        self.worker = SweepWorker(self)
        self.worker.point.connect(self._point)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)
        layout = QHBoxLayout(self)
        layout.setSpacing(em(self, 1))
        controls = QWidget()
        controls.setMaximumWidth(em(self, 22))
        controls_layout = QVBoxLayout(controls)
        controls_layout.setContentsMargins(0, 0, 0, 0)
        controls_layout.addWidget(self._setting_group())
        controls_layout.addWidget(self._method_group(), 1)
        controls_layout.addWidget(self._run_group())
        layout.addWidget(controls)
        plots = QVBoxLayout()
        self.psnr_plot = ThemedPlot("Mean PSNR over the images", SWEEP_AXES["spokes"], "PSNR (dB)")
        self.ssim_plot = ThemedPlot("Mean SSIM", SWEEP_AXES["spokes"], "SSIM")
        self.ssim_plot.setXLink(self.psnr_plot)
        # one legend for both plots, above them: it never hides a curve
        self.legend = SeriesLegend()
        self.legend.hide()
        plots.addWidget(self.legend)
        plots.addWidget(self.psnr_plot, 3)
        plots.addWidget(self.ssim_plot, 2)
        layout.addLayout(plots, 1)
        self._axis_changed()

    # ------------------------------------------------------------------ groups
    def _setting_group(self) -> QGroupBox:
        box = QGroupBox("Sweep")
        form = QFormLayout(box)
        self.axis_combo = QComboBox()
        self.axis_combo.addItem("PSNR against spokes (Fig. 3)", "spokes")
        self.axis_combo.addItem("PSNR against noise (Figs. 7-9)", "noise")
        self.axis_combo.currentIndexChanged.connect(self._axis_changed)
        form.addRow("Plot", self.axis_combo)
        self.values_edit = QLineEdit()
        self.values_edit.setToolTip("Comma-separated values, or start:stop:step")
        form.addRow("Values", self.values_edit)
        self.sigma_spin = float_spin(0.0, 1.0, 0.01, 4, 0.05)
        self.spokes_spin = int_spin(1, MAX_SPOKES, 25)
        self.sigma_label = QLabel("Noise σ")
        self.spokes_label = QLabel("Spokes")
        form.addRow(self.sigma_label, self.sigma_spin)
        form.addRow(self.spokes_label, self.spokes_spin)
        self.images_combo = QComboBox()
        for key, label in IMAGE_SETS:
            self.images_combo.addItem(label, key)
        self.images_combo.currentIndexChanged.connect(self._images_changed)
        form.addRow("Images", self.images_combo)
        self.count_spin = int_spin(1, 256, 4)
        self.count_spin.setToolTip("Number of phantoms (seeds 0, 1, ...)")
        self.count_label = QLabel("Phantoms")
        form.addRow(self.count_label, self.count_spin)
        self.seed_spin = int_spin(0, 2**31 - 1, 0)
        form.addRow("Seed", self.seed_spin)
        self._images_changed()
        return box

    def _method_group(self) -> QGroupBox:
        box, layout = group_box("Methods")
        self.method_list = QListWidget()
        self.method_list.setWordWrap(True)  # full names, wrapped, instead of cut off behind a scroll bar
        self.method_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        for method in all_methods():
            ok, why = method.available()
            item = QListWidgetItem(method.title)
            item.setData(Qt.ItemDataRole.UserRole, method.name)
            item.setToolTip(f"{method.title}: {method.description}" if ok else f"{method.title}: not available: {why}")
            if ok:
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                checked = method.name in DEFAULT_SWEEP_METHODS
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            else:
                item.setFlags(Qt.ItemFlag.NoItemFlags)
                item.setText(f"{method.title} — not available")
            self.method_list.addItem(item)
        layout.addWidget(self.method_list)
        layout.addWidget(note_label("Each method runs with its default (setting-tuned) parameters and iterations."))
        return box

    def _run_group(self) -> QGroupBox:
        box, layout = group_box("Run")
        self.run_controls = RunControls("Run sweep", self.start, self.cancel,
                                        "Run every chosen method at every value (Ctrl+Shift+R)",
                                        "Stop the sweep (the running reconstruction stops after its current iteration)")
        layout.addWidget(self.run_controls)
        layout.addLayout(button_row(push_button("Export CSV…", self._export_csv, "Save the sweep's points as CSV"),
                                    push_button("Export PNG…", self._export_png, "Save the plots as shown")))
        return box

    # --------------------------------------------------------------------- API
    def _method_items(self) -> list[QListWidgetItem]:
        items = [self.method_list.item(i) for i in range(self.method_list.count())]
        return [item for item in items if item is not None]  # every row below count() holds an item

    def checked_methods(self) -> list[str]:
        items = self._method_items()
        return [i.data(Qt.ItemDataRole.UserRole) for i in items if i.checkState() == Qt.CheckState.Checked]

    def set_checked_methods(self, names) -> None:
        for item in self._method_items():
            if item.flags() & Qt.ItemFlag.ItemIsUserCheckable:
                checked = item.data(Qt.ItemDataRole.UserRole) in names
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def images(self) -> np.ndarray:
        """The image set chosen for the sweep as ``(N, H, W)``."""
        kind = self.images_combo.currentData()
        if kind == "current":
            if self.state.image is None:
                raise ValueError("no image is loaded")
            return self.state.image[None]
        if kind == "phantoms":
            return phantom_batch(self.count_spin.value(), self.seed_spin.value(), size=self.state.shape[0])
        suffixes: tuple[str, ...]
        if kind == "samples":  # each sample is bundled as .npy (the data) and .png (a preview)
            folder, suffixes = SAMPLES_DIR, (".npy",)
        elif self.folder:
            folder, suffixes = Path(self.folder), SUPPORTED_SUFFIXES
        else:
            raise ValueError("choose a folder of images first")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []
        if not files:
            raise ValueError(f"no images in {folder}")
        return np.stack([load_image_file(f, size=self.state.shape[0])[0] for f in files])

    def weight_set(self):
        """The weight set of the sweep's runs: the picker's, or in auto mode the one trained for the images' kind
        (the current image's; ``phantom`` for generated phantoms and the bundled samples; for a folder, that of its
        first image), as a single run of those images would use."""
        kind = self.images_combo.currentData()
        if kind == "current":
            return self.state.weight_set_choice()[0]
        if kind == "phantoms":
            return weight_set_choice(None)[0]
        folder = SAMPLES_DIR if kind == "samples" else Path(self.folder or ".")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES) if folder.is_dir() else []
        return weight_set_choice(files[0] if files else folder)[0]

    def make_spec(self) -> SweepSpec:
        axis = self.axis_combo.currentData()
        spec = SweepSpec(
            axis=axis,
            values=parse_values(self.values_edit.text(), axis),
            methods=self.checked_methods(),
            images=self.images(),
            spokes=self.spokes_spin.value(),
            sigma=self.sigma_spin.value(),
            seed=self.seed_spin.value(),
            device=str(default_device()),
            weight_set=self.weight_set(),
        )
        spec.validate()
        return spec

    def start(self) -> None:
        if self.running:
            return
        try:
            spec = self.make_spec()
        except ValueError as exc:
            self.errorOccurred.emit("Cannot run the sweep", str(exc))
            return
        self.spec = spec
        self.points = []
        self._plot()
        self.running = True
        self.run_controls.set_progress(f"Running {spec.total_runs} reconstructions of {len(spec.images)} image(s)…",
                                       0, spec.total_runs)
        self.run_controls.set_running(True)
        self.worker.start(spec)

    def cancel(self) -> None:
        if self.running:
            self.worker.cancel.set()
            self.run_controls.set_progress("Cancelling…")

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Stop the worker (waiting up to ``timeout_ms``; 0: not at all); its late results are dropped."""
        return self.worker.shutdown(timeout_ms)

    # ------------------------------------------------------------------ events
    def _axis_changed(self, *_args) -> None:
        axis = self.axis_combo.currentData()
        self.values_edit.setText(DEFAULT_VALUES[axis])
        widget: QWidget
        for widget in (self.sigma_spin, self.sigma_label):
            widget.setVisible(axis == "spokes")
        for widget in (self.spokes_spin, self.spokes_label):
            widget.setVisible(axis == "noise")
        for plot in (self.psnr_plot, self.ssim_plot):
            plot.set_axis_label("bottom", SWEEP_AXES[axis])

    def _images_changed(self, *_args) -> None:
        kind = self.images_combo.currentData()
        for widget in (self.count_spin, self.count_label):
            widget.setVisible(kind == "phantoms")
        if kind == "folder":
            folder = QFileDialog.getExistingDirectory(self, "Folder of test images")
            if folder:
                self.folder = folder
                self.images_combo.setItemText(self.images_combo.currentIndex(), f"Folder: {Path(folder).name}")

    def _point(self, point: SweepPoint) -> None:
        assert self.spec is not None  # points arrive only from a sweep that start() began
        self.points.append(point)
        done = f"({len(self.points)}/{self.spec.total_runs})"
        if point.failed:
            self.run_controls.set_progress(f"{point.method} at {point.value:g}: failed, diverged {done}",
                                           len(self.points))
        else:
            self.run_controls.set_progress(f"{point.method} at {point.value:g}: PSNR {point.psnr.mean():.2f} dB "
                                           f"{done}", len(self.points))
        self._plot()

    def _finished(self, cancelled: bool) -> None:
        self.running = False
        self.run_controls.set_running(False)
        failed = [p for p in self.points if p.failed]
        text = f"Sweep {'cancelled' if cancelled else 'finished'}: {len(self.points) - len(failed)} points"
        if failed:
            where = ", ".join(f"{p.method} at {p.value:g}" for p in failed[:4]) + (", ..." if len(failed) > 4 else "")
            text += f"; {len(failed)} diverged and are not plotted ({where})"
        self.run_controls.set_progress(text, details="\n".join(p.error for p in failed))
        self.statusMessage.emit(text)

    def _failed(self, message: str) -> None:
        self.running = False
        self.run_controls.set_running(False)
        self.run_controls.set_progress("Sweep failed")
        self.errorOccurred.emit("Sweep failed", message)

    def _plot(self) -> None:
        for plot in (self.psnr_plot, self.ssim_plot):
            plot.clear()
        titles = {m.name: m.title for m in all_methods()}
        entries = []
        for index, (method, series) in enumerate(summarise(self.points).items()):
            name = titles.get(method, method)
            pen = self.psnr_plot.series_pen(index)
            entries.append((name, pen.color()))
            symbol = dict(symbol="o", symbolSize=em(self, 0.5), symbolBrush=pen.color(), symbolPen=pen)
            self.psnr_plot.plot(series["x"], series["psnr"], pen=pen, name=name, **symbol)
            if len(series["x"]) > 0:
                width = 0.02 * (np.ptp(series["x"]) or 1.0)
                self.psnr_plot.addItem(pg.ErrorBarItem(x=series["x"], y=series["psnr"], height=2 * series["psnr_std"],
                                                       beam=width, pen=pen))
            self.ssim_plot.plot(series["x"], series["ssim"], pen=pen, name=name, **symbol)
        self.legend.set_entries(entries)

    def _export_csv(self) -> None:
        if not self.points:
            self.errorOccurred.emit("Nothing to export", "Run a sweep first.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export sweep as CSV", "sweep.csv", "CSV (*.csv)")
        if path:
            assert self.spec is not None  # there are points, so a sweep ran
            atomic_write_text(path, to_csv(self.points, self.spec.axis))
            self.statusMessage.emit(f"Saved {path}")

    def _export_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export sweep plots as PNG", "sweep.png", "PNG (*.png)")
        if path:
            try:
                save_widget_png(self, path)
            except OSError as exc:
                self.errorOccurred.emit("Export failed", str(exc))
                return
            self.statusMessage.emit(f"Saved {path}")
