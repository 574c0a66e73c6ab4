"""The main window: docks for sampling and method controls, tabs for the views, menus and shortcuts."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from PyQt6.QtCore import QSettings, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence
from PyQt6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMenuBar,
    QMessageBox,
    QScrollArea,
    QStatusBar,
    QStyle,
    QTabWidget,
    QWidget,
)

from .. import __version__
from ..application import CUSTOM_MASK_SPEC, ExperimentState, ReconJob, describe_setting
from ..application import sessions
from ..application.bundles import is_bundle
from ..application.sources import IMAGE_FILTER, default_image, load_image_file, phantom_image
from ..data.loading import ImageKeyError
from ..device import default_device
from ..physics import load_mask, save_mask
from .dialogs import RESULTS_FILTER, SESSION_FILTER, choose_item, show_error, show_shortcuts
from .panels.comparison import ComparisonPanel
from .panels.covariance import CovariancePanel
from .panels.method import LiveRunView, MethodControls
from .panels.sampling import MeasurementView, SamplingControls
from .panels.sweep import SweepPanel
from .panels.uncertainty import UncertaintyPanel
from .qt_typed import add_action, add_menu, style_of
from .run_status import run_summary
from .theme import THEME_MODES, theme_manager
from .widgets.image_view import em
from .workers import ReconQueue, wait_for_threads

MAX_RECENT = 8
MASK_FILTER = "Masks (*.png *.npy);;PNG image (*.png);;NumPy array (*.npy)"
USER_ERRORS = (ValueError, RuntimeError, OSError, KeyError)
#: how long closing the window waits for the background threads to stop (all of them together)
SHUTDOWN_WAIT_MS = 2000


def _scrolling(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    scrollbar = style_of(area).pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
    area.setMinimumWidth(widget.minimumSizeHint().width() + scrollbar)
    return area


class MainWindow(QMainWindow):
    """genreg-viewer's window. ``settings`` (QSettings) holds recent files, theme and geometry."""

    #: emitted once the window has closed and its background work was cancelled (``app.main`` quits on it)
    closed = pyqtSignal()

    def __init__(self, settings: QSettings | None = None, open_default: bool = True):
        super().__init__()
        self.setWindowTitle("genreg-viewer")
        self.setAcceptDrops(True)
        self.settings = settings if settings is not None else QSettings("genreg-viewer", "genreg-viewer")
        self.state = ExperimentState()
        self.queue = ReconQueue(self)
        #: asks which HDF5 dataset to read when a file has no known image dataset: ``(path, candidate keys) ->
        #: chosen key or None`` (cancelled); a list dialog by default, replaced in tests
        self.choose_image_key: Callable[[Path, Sequence[str]], str | None] = self._image_key_dialog
        #: asks before a new image replaces the runs of the current one: ``(what, run count) -> go ahead``; a
        #: question dialog by default, replaced in tests
        self.confirm_replace_runs: Callable[[str, int], bool] = self._replace_runs_dialog
        self._undo: tuple[str, Callable[[], object]] | None = None  #: (what, how) of the last undoable change

        self.measurement_view = MeasurementView(self.state)
        self.live_view = LiveRunView(self.queue)
        self.comparison = ComparisonPanel(self.state)
        self.covariance = CovariancePanel(self.state)
        self.uncertainty = UncertaintyPanel(self.state)
        self.sweep = SweepPanel(self.state)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        for widget, label in (
            (self.measurement_view, "Measurement"),
            (self.live_view, "Live run"),
            (self.comparison, "Comparison"),
            (self.covariance, "Covariance"),
            (self.uncertainty, "Uncertainty"),
            (self.sweep, "Sweeps"),
        ):
            self.tabs.addTab(widget, label)
        self.setCentralWidget(self.tabs)

        self.sampling = SamplingControls(self.state, self.measurement_view.painter)
        self.method_panel = MethodControls(self.state, self.queue)
        self.sampling_dock = self._dock("Sampling", self.sampling, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.method_dock = self._dock("Method", self.method_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.method_panel.weightSetChanged.connect(self.covariance.reset_model)

        self._build_status_bar()
        self._connect()
        self._build_menus()
        self._restore_window_settings()
        if open_default:
            self.open_default_image()

    # ------------------------------------------------------------------ layout
    def statusBar(self) -> QStatusBar:  # noqa: N802 (Qt API)
        """The status bar (QMainWindow creates it on first use, so never None)."""
        bar = super().statusBar()
        assert bar is not None
        return bar

    def menuBar(self) -> QMenuBar:  # noqa: N802 (Qt API)
        """The menu bar (QMainWindow creates it on first use, so never None)."""
        bar = super().menuBar()
        assert bar is not None
        return bar

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title.lower()}_dock")
        dock.setWidget(_scrolling(widget))
        self.addDockWidget(area, dock)
        return dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.setting_label = QLabel("")
        device = default_device()
        self.device_label = QLabel(f"Device: {device.type.upper()}")
        self.device_label.setToolTip("Runs use CUDA when a GPU is visible, otherwise the CPU")
        bar.addPermanentWidget(self.setting_label)
        bar.addPermanentWidget(self.device_label)

    def _connect(self) -> None:
        state, queue = self.state, self.queue
        state.measurement_changed.connect(self._update_setting_label)
        queue.jobStarted.connect(self._job_started)
        queue.jobFinished.connect(self._job_finished)
        queue.jobFailed.connect(lambda job, message: self.error(f"{job.title} failed", message))
        for panel in (self.sampling, self.method_panel, self.covariance, self.uncertainty, self.sweep):
            panel.errorOccurred.connect(self.error)
        # one "Calibrated std" choice for the Covariance and Uncertainty tabs (setChecked to the same state is silent)
        calibrated = (self.covariance.calibrated_std_check, self.uncertainty.calibrated_std_check)
        calibrated[0].toggled.connect(calibrated[1].setChecked)
        calibrated[1].toggled.connect(calibrated[0].setChecked)
        for panel in (self.method_panel, self.sweep):
            panel.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        form = self.method_panel.form  # the Advanced parameter group stays as the user left it
        form.set_advanced_open(self.settings.value("advancedParametersOpen", False, type=bool))
        form.advancedToggled.connect(lambda open_: self.settings.setValue("advancedParametersOpen", bool(open_)))
        self.sampling.openRequested.connect(self.open_dialog)
        self.sampling.sliceRequested.connect(self.open_slice)
        self.sampling.loadMaskRequested.connect(self.load_mask_dialog)
        self.sampling.saveMaskRequested.connect(self.save_mask_dialog)
        self.sampling.showMeasuredToggled.connect(self.measurement_view.set_show_measured)
        self.comparison.exportPngRequested.connect(self.export_png_dialog)
        self.comparison.exportResultsRequested.connect(self.export_results_dialog)
        self.comparison.clearRequested.connect(self.clear_runs)
        self.comparison.inspectRequested.connect(self.inspect_covariance)

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        self.addAction(action)  # shortcuts work even when the menu bar is hidden
        self.shortcut_actions.append(action)
        return action

    def _build_menus(self) -> None:
        self.shortcut_actions: list[QAction] = []
        bar = self.menuBar()
        file_menu = add_menu(bar, "&File")
        self._action(file_menu, "&Open image or session…", self.open_dialog, QKeySequence.StandardKey.Open,
                     "Open a fastMRI .h5 volume, an image, a .npy array or a saved session")
        self.recent_menu = add_menu(file_menu, "Open &recent")
        self._action(file_menu, "New knee &phantom…", self.new_phantom_dialog, "Ctrl+Shift+N")
        file_menu.addSeparator()
        self._action(file_menu, "Open &session…", self.open_session_dialog, "Ctrl+Shift+O")
        self._action(file_menu, "&Save session…", self.save_session_dialog, QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "&Load mask…", self.load_mask_dialog, "Ctrl+L")
        self._action(file_menu, "Save &mask…", self.save_mask_dialog, "Ctrl+Shift+L")
        file_menu.addSeparator()
        self._action(file_menu, "&Export comparison as PNG…", self.export_png_dialog, "Ctrl+E")
        self._action(file_menu, "Export &results (.npz/.h5)…", self.export_results_dialog, "Ctrl+Shift+E")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        run_menu = add_menu(bar, "&Run")
        self._action(run_menu, "&Run method", self.method_panel.run, "Ctrl+R")
        self._action(run_menu, "&Cancel run", self.method_panel.cancel, "Esc")
        self._action(run_menu, "Cancel &all runs", self.queue.cancel_all, "Shift+Esc")
        run_menu.addSeparator()
        self._action(run_menu, "Run &sweep", self._run_sweep, "Ctrl+Shift+R")
        run_menu.addSeparator()
        self.replace_repeats_action = QAction("Repeated run &replaces the earlier one", self)
        self.replace_repeats_action.setCheckable(True)
        self.replace_repeats_action.setStatusTip("A run with the same method, parameters, iterations and measurement "
                                                 "as an earlier run replaces it instead of appearing beside it as #2")
        self.replace_repeats_action.toggled.connect(self._set_replace_repeats)
        self.replace_repeats_action.setChecked(self.settings.value("replaceRepeatedRuns", False, type=bool))
        run_menu.addAction(self.replace_repeats_action)

        undo_menu = add_menu(bar, "&Edit")
        self.undo_action = self._action(undo_menu, "&Undo", self.undo, QKeySequence.StandardKey.Undo,
                                        "Undo clearing the runs or opening another image")
        self.undo_action.setEnabled(False)
        self._action(undo_menu, "&Clear runs", self.clear_runs, None, "Remove every run from the comparison")

        edit_menu = add_menu(bar, "&Mask")
        for tool, key in (("pan", "P"), ("brush", "B"), ("eraser", "X")):
            self._action(edit_menu, f"{tool.capitalize()} tool", lambda t=tool: self.set_mask_tool(t), key)
        self._action(edit_menu, "Reset mask to pattern", lambda: self.sampling.set_spec(self.sampling.base_spec))

        view_menu = add_menu(bar, "&View")
        for index in range(self.tabs.count()):
            self._action(view_menu, self.tabs.tabText(index), lambda i=index: self.tabs.setCurrentIndex(i),
                         f"Ctrl+{index + 1}")
        self._action(view_menu, "Reset &zoom", self.reset_zoom, "Ctrl+0")
        view_menu.addSeparator()
        view_menu.addAction(self.sampling_dock.toggleViewAction())
        view_menu.addAction(self.method_dock.toggleViewAction())
        theme_menu = add_menu(view_menu, "&Theme")
        group = QActionGroup(self)
        current = str(self.settings.value("theme", "system"))
        for mode in THEME_MODES:
            action = QAction(mode.capitalize(), self)
            action.setCheckable(True)
            action.setChecked(mode == current)
            action.triggered.connect(lambda _checked, m=mode: self.set_theme(m))
            group.addAction(action)
            theme_menu.addAction(action)

        help_menu = add_menu(bar, "&Help")
        self._action(help_menu, "&Keyboard shortcuts", lambda: show_shortcuts(self, self.shortcut_actions),
                     QKeySequence.StandardKey.HelpContents)
        self._action(help_menu, "&About", self._about)
        self._rebuild_recent_menu()

    # ------------------------------------------------------------------ errors
    def error(self, title: str, message: str) -> None:
        self.statusBar().showMessage(f"{title}: {message}", 8000)
        show_error(self, title, message)

    # ------------------------------------------------------------------- files
    def open_default_image(self) -> None:
        self.state.set_image(*default_image())

    # ------------------------------------------------------------- keep work
    def replace_image(self, image, info) -> bool:
        """Show a new ground truth. When the comparison holds runs of the current image, ask first (they go with
        it); Undo (Ctrl+Z) brings the previous image back with its runs, mask and noise. False when declined."""
        state = self.state
        if state.results and not self.confirm_replace_runs(info.label() or "the new image", len(state.results)):
            self.statusBar().showMessage("Kept the current image and its runs", 5000)
            return False
        previous = (state.image, state.image_info, state.mask, state.mask_spec, state.sigma, state.seed,
                    list(state.results))
        state.set_image(image, info)
        if previous[0] is not None and previous[6]:
            self._set_undo(f"opening {info.label() or 'the image'}", lambda: self._restore_previous(previous))
        return True

    def _restore_previous(self, previous) -> None:
        self.state.restore(*previous)
        self.sampling.sync_from_state()

    def _replace_runs_dialog(self, what: str, count: int) -> bool:
        runs = "1 run" if count == 1 else f"{count} runs"
        box = QMessageBox(QMessageBox.Icon.Question, "Open another image?",
                          f"The comparison holds {runs} of the current image. Opening {what} removes them "
                          "(Edit ▸ Undo brings them back; File ▸ Save session keeps them on disk).", parent=self)
        go = box.addButton("Open and remove the runs", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is go

    def clear_runs(self) -> None:
        """Remove every run from the comparison; Undo (Ctrl+Z) puts them back."""
        removed = self.state.clear_results()
        if removed:
            version = self.state.image_version
            self._set_undo("clearing the runs",
                           lambda: self.state.restore_results(removed) if self.state.image_version == version else 0)
            self.statusBar().showMessage(f"Removed {len(removed)} runs · Edit ▸ Undo (Ctrl+Z) brings them back",
                                         8000)

    def _set_undo(self, what: str, how: Callable[[], object]) -> None:
        self._undo = (what, how)
        self.undo_action.setText(f"&Undo {what}")
        self.undo_action.setEnabled(True)

    def undo(self) -> None:
        if self._undo is None:
            return
        what, how = self._undo
        self._undo = None
        self.undo_action.setText("&Undo")
        self.undo_action.setEnabled(False)
        how()
        self.statusBar().showMessage(f"Undid {what}", 5000)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image, volume or session", self._last_folder(),
                                              IMAGE_FILTER + ";;" + SESSION_FILTER)
        if path:
            self.open_path(path)

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self._last_folder(), SESSION_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, slice_index: int | None = None) -> bool:
        """Open an image, a volume (``slice_index``: default centre slice) or a saved session."""
        path = Path(path)
        try:
            if is_bundle(path):
                self.restore_session(path)
            else:
                loaded = self._load_with_key_choice(path, slice_index)
                if loaded is None:
                    self.statusBar().showMessage(f"Did not open {path.name}: no dataset chosen", 5000)
                    return False
                if not self.replace_image(*loaded):
                    return False
        except USER_ERRORS as exc:
            self.error(f"Cannot open {path.name}", str(exc).strip("'\""))
            return False
        self.add_recent(path)
        note = self.state.image_info.note if not is_bundle(path) else ""
        self.statusBar().showMessage(f"Opened {path.name}" + (f": {note}" if note else ""), 12000)
        return True

    def _load_with_key_choice(self, path: Path, slice_index: int | None):
        """``load_image_file`` for ``path``; an HDF5 file with no known image dataset is loaded with the dataset
        the user picks from its candidates (``None`` when the choice is cancelled)."""
        size = self.state.shape[0]
        try:
            return load_image_file(path, slice_index, size=size)
        except ImageKeyError as exc:
            if not exc.candidates:  # said in the app's words (the loader's message names the CLI's --key)
                raise ValueError(str(exc).split(". Choose one with")[0] + "; none of them is an image or a stack "
                                 "of images genreg-viewer can show") from None
            key = self.choose_image_key(path, exc.candidates)
            if key is None:
                return None
            return load_image_file(path, slice_index, size=size, key=key)

    def _image_key_dialog(self, path: Path, candidates: Sequence[str]) -> str | None:
        return choose_item(self, f"Choose the image dataset of {path.name}",
                           f"{path.name} has no image dataset genreg-viewer knows.\nRead the slices from:",
                           list(candidates))

    def open_slice(self, slice_index: int) -> None:
        """Show slice ``slice_index`` of the open volume; if it cannot be read the slice controls go back to the
        slice still shown."""
        info = self.state.image_info
        if info.path:
            try:
                image, new_info = load_image_file(info.path, slice_index, size=self.state.shape[0], key=info.key)
                if not self.replace_image(image, new_info):
                    self.sampling.sync_slice_controls()
            except USER_ERRORS as exc:
                self.sampling.sync_slice_controls()
                self.error("Cannot read the slice", str(exc))

    def new_phantom_dialog(self) -> None:
        seed, ok = QInputDialog.getInt(self, "Knee phantom", "Phantom seed", 0, 0, 2**31 - 1)
        if ok:
            try:
                self.replace_image(*phantom_image(seed, self.state.shape[0]))
            except USER_ERRORS as exc:
                self.error("Cannot make the phantom", str(exc))

    def restore_session(self, path: str | Path) -> None:
        gui = sessions.load_session(path, self.state)
        self.sampling.sync_from_state()
        self.method_panel.restore_settings(gui.get("method", {}))
        self.comparison.restore_display_settings(gui.get("comparison", {}))
        if isinstance(gui.get("tab"), int):
            self.tabs.setCurrentIndex(gui["tab"])

    def gui_settings(self) -> dict:
        return {
            "method": self.method_panel.settings(),
            "comparison": self.comparison.display_settings(),
            "tab": self.tabs.currentIndex(),
        }

    def save_session(self, path: str | Path) -> Path:
        return sessions.save_session(path, self.state, self.gui_settings())

    def save_session_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save session (.npz, .h5, or a folder name without suffix)",
            str(Path(self._last_folder()) / "session.npz"), SESSION_FILTER)
        if path:
            self._write(lambda: self.save_session(path), f"Saved the session to {path}")

    def export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export comparison grid",
                                              str(Path(self._last_folder()) / "comparison.png"), "PNG (*.png)")
        if path:
            self.tabs.setCurrentWidget(self.comparison)
            self._write(lambda: self.comparison.save_png(path), f"Saved {path}")

    def export_results_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results",
                                              str(Path(self._last_folder()) / "results.npz"), RESULTS_FILTER)
        if path:
            self._write(lambda: sessions.export_results(path, self.state), f"Saved {path}")

    def load_mask_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load mask", self._last_folder(), MASK_FILTER)
        if path:
            try:
                self.state.set_mask(load_mask(path, self.state.shape), CUSTOM_MASK_SPEC)
                self.sampling.set_spec(CUSTOM_MASK_SPEC, apply=False)
            except USER_ERRORS as exc:
                self.error("Cannot load the mask", str(exc))

    def save_mask_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save mask", str(Path(self._last_folder()) / "mask.png"),
                                              MASK_FILTER)
        if path:
            self._write(lambda: save_mask(self.state.mask, path), f"Saved the mask to {path}")

    def _write(self, write, message: str) -> bool:
        try:
            write()
        except USER_ERRORS as exc:
            self.error("Cannot save", str(exc))
            return False
        self.statusBar().showMessage(message, 5000)
        return True

    # ------------------------------------------------------------------ recent
    def recent_files(self) -> list[str]:
        value = self.settings.value("recentFiles", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [path] + [p for p in self.recent_files() if p != path]
        self.settings.setValue("recentFiles", recent[:MAX_RECENT])
        self.settings.setValue("lastFolder", str(Path(path).parent))
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_files()
        for index, path in enumerate(recent):
            action = add_action(self.recent_menu, f"&{index + 1}  {Path(path).name}")
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda _checked, p=path: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _clear_recent(self) -> None:
        self.settings.setValue("recentFiles", [])
        self._rebuild_recent_menu()

    def _last_folder(self) -> str:
        return str(self.settings.value("lastFolder", str(Path.home())))

    # ------------------------------------------------------------- drag & drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_path(files[0])

    # -------------------------------------------------------------------- runs
    def _job_started(self, job: ReconJob) -> None:
        if self.tabs.currentWidget() is self.measurement_view:
            self.tabs.setCurrentWidget(self.live_view)
        self.statusBar().showMessage(f"Running {job.title} on {job.device}…")

    def _job_finished(self, job: ReconJob, record) -> None:
        if not self.state.accept(job, record):
            self.statusBar().showMessage(f"{job.title} finished for an image that is no longer open; "
                                         "its result was dropped", 8000)
            return
        metrics = f" · {record.metrics_text()}" if record.metrics_text() else ""
        self.statusBar().showMessage(f"{record.title} {run_summary(record, job.iterations)}{metrics}", 8000)

    def _set_replace_repeats(self, on: bool) -> None:
        self.state.replace_repeats = bool(on)
        self.settings.setValue("replaceRepeatedRuns", bool(on))

    def _run_sweep(self) -> None:
        self.tabs.setCurrentWidget(self.sweep)
        self.sweep.start()

    def inspect_covariance(self, image) -> None:
        self.tabs.setCurrentWidget(self.covariance)
        self.covariance.inspect_image(image)

    def set_mask_tool(self, tool: str) -> None:
        self.sampling.tool_buttons[tool].setChecked(True)
        self.tabs.setCurrentWidget(self.measurement_view)

    def reset_zoom(self) -> None:
        current = self.tabs.currentWidget()
        if current is self.comparison:
            self.comparison.reset_zoom()
        elif current is self.measurement_view:
            for view in (self.measurement_view.truth_view, self.measurement_view.painter):
                view.reset_zoom()
        elif current is self.covariance:
            self.covariance.source_view.reset_zoom()
        elif current is self.uncertainty:
            self.uncertainty.reset_zoom()
        elif current is self.live_view:
            self.live_view.image_view.reset_zoom()

    # ------------------------------------------------------------ misc / theme
    def _update_setting_label(self) -> None:
        self.setting_label.setText(describe_setting(self.state.setting()) if self.state.image is not None else "")

    def set_theme(self, mode: str) -> None:
        theme_manager().set_mode(mode)
        self.settings.setValue("theme", mode)

    def _about(self) -> None:
        QMessageBox.about(
            self, "About genreg-viewer",
            f"<b>genreg-viewer {__version__}</b><br>Compressed-sensing MRI reconstruction with generative "
            "regularisers: VAEs with structured image covariance (Duff, Simpson, Ehrhardt, Campbell 2023).",
        )

    def _restore_window_settings(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(em(self, 90), em(self, 52))
        window_state = self.settings.value("windowState")
        if window_state is not None:
            self.restoreState(window_state)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        # cancel everything first, then wait for all threads together; workers' late signals are dropped
        self.queue.shutdown(0)
        self.covariance.shutdown(0)
        self.sweep.shutdown(0)
        wait_for_threads(SHUTDOWN_WAIT_MS)
        super().closeEvent(event)
        self.closed.emit()
