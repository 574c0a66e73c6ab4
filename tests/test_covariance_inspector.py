"""The covariance inspector's model without Qt (issue 23, item 2): which image it inspects, when it loads and decodes,
how it coalesces clicks, that results made for an earlier image are dropped, and the calibrated std map.

Work is handed to a list instead of a thread, so each test decides when (and in which order) tasks finish; a small
randomly initialised structured-covariance VAE on 32x32 images stands in for the bundled weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genreg_viewer.application import ExperimentState, RunRecord
from genreg_viewer.application.covariance import (
    CovarianceInspector,
    CovarianceTask,
    PreparedCovariance,
    load_covariance_model,
    prepare_covariance,
)
from genreg_viewer.application.sources import phantom_image
from genreg_viewer.models.vae import GenerativeModel, VAEConfig
from genreg_viewer.paths import RESOURCES_DIR

SIDE = 32
LATENT_DIM = 8


@pytest.fixture(scope="module")
def model() -> GenerativeModel:
    torch.manual_seed(0)
    config = VAEConfig(image_size=SIDE, latent_dim=LATENT_DIM, widths=(4, 4, 4), dropout=0.0,
                       covariance_kind="covar")
    return GenerativeModel(config).freeze()


class Tasks:
    """The inspector's executor: tasks wait in a list until the test finishes them."""

    def __init__(self) -> None:
        self.waiting: list[CovarianceTask] = []
        self.inspector: CovarianceInspector | None = None

    def __call__(self, task: CovarianceTask) -> None:
        self.waiting.append(task)

    def kinds(self) -> list[str]:
        return [task.kind for task in self.waiting]

    def finish(self, kind: str | None = None) -> CovarianceTask:
        """Run the oldest waiting task (of ``kind``) and report its result or error to the inspector."""
        task = next(t for t in self.waiting if kind is None or t.kind == kind)
        self.waiting.remove(task)
        assert self.inspector is not None
        try:
            result = task.function()
        except Exception as exc:  # noqa: BLE001 - reported to the inspector as the worker thread does
            self.inspector.task_failed(task, str(exc))
        else:
            self.inspector.task_done(task, result)
        return task

    def finish_all(self) -> None:
        while self.waiting:
            self.finish()


class Events:
    """Every event the inspector emits, by name."""

    def __init__(self, inspector: CovarianceInspector) -> None:
        self.seen: dict[str, list[tuple]] = {}
        for name in ("sources_changed", "following_changed", "source_changed", "std_changed", "prepared_changed",
                     "row_shown", "samples_drawn", "status", "model_failed", "failed"):
            getattr(inspector, name).connect(lambda *args, name=name: self.seen.setdefault(name, []).append(args))

    def of(self, name: str) -> list[tuple]:
        return self.seen.get(name, [])


def make_inspector(model) -> tuple[ExperimentState, CovarianceInspector, Tasks, Events]:
    state = ExperimentState((SIDE, SIDE))
    state.set_image(*phantom_image(0, SIDE))
    tasks = Tasks()
    inspector = CovarianceInspector(state, tasks)
    inspector.model_loader = lambda: model
    tasks.inspector = inspector
    inspector.refresh_sources()
    return state, inspector, tasks, Events(inspector)


def finished_run(state: ExperimentState, arrays: dict, method: str = "mean+covar", cancelled: bool = False,
                 setting: dict | None = None, params: dict | None = None) -> RunRecord:
    return RunRecord(run_id=state.next_run_id(), method=method, title=method, image=state.image, params=params or {},
                     iterations=1, seconds=0.1, device="cpu", psnr=30.0, ssim=0.9, cancelled=cancelled,
                     setting=setting or {}, arrays=arrays)


@pytest.mark.slow
def test_run_selected_preparing_ready_pixel_clicked_row(model):
    state, inspector, tasks, events = make_inspector(model)
    assert inspector.key == "truth" and inspector.following and tasks.waiting == []  # nothing while hidden
    inspector.set_active(True)
    assert tasks.kinds() == ["model"] and events.of("status")[-1] == ("Loading the covariance model…",)
    # a finished run with the model's own latent is followed: it becomes the source, with its latent
    latent = np.full(LATENT_DIM, 0.5, np.float32)
    record = finished_run(state, {"latent": latent, "std_map": np.full((SIDE, SIDE), 0.1, np.float32)})
    state.add_result(record)
    assert inspector.key == f"run:{record.run_id}" and inspector.source.latent is latent
    assert events.of("source_changed")[-1][0].record is record
    assert tasks.kinds() == ["model"]  # decoding waits for the model
    tasks.finish("model")
    assert tasks.kinds() == ["prepare"] and inspector.preparing == inspector.token and inspector.prepared is None
    tasks.finish("prepare")  # ready
    prepared = inspector.prepared
    assert isinstance(prepared, PreparedCovariance) and events.of("prepared_changed") == [(prepared,)]
    expected = prepare_covariance(model, None, latent)
    np.testing.assert_allclose(prepared.mean_image(), expected.mean_image(), atol=1e-6)
    np.testing.assert_allclose(prepared.variance, expected.variance, rtol=1e-5)
    assert events.of("status")[-1] == ("Click or drag over the image",)
    # clicks while a row is being computed are coalesced: only the newest is computed next
    inspector.request_pixel(10, 12)
    assert tasks.kinds() == ["row"] and inspector.row_busy
    inspector.request_pixel(5, 5)
    inspector.request_pixel(6, 7)
    assert tasks.kinds() == ["row"]
    tasks.finish("row")
    assert inspector.pixel == (10, 12) and events.of("row_shown")[-1][:2] == (10, 12)
    assert tasks.kinds() == ["row"]  # the newest request, sent as soon as the first row is done
    tasks.finish("row")
    assert inspector.pixel == (6, 7) and not inspector.row_busy and tasks.waiting == []
    assert [args[:2] for args in events.of("row_shown")] == [(10, 12), (6, 7)]
    assert inspector.correlation is not None and inspector.correlation[6, 7] == pytest.approx(1.0)
    np.testing.assert_allclose(inspector.correlation, expected.correlation_row(6, 7), atol=1e-5)
    # residual samples are drawn on request as one mosaic
    assert inspector.draw_samples(count=4, seed=3)
    tasks.finish("samples")
    drawn = events.of("samples_drawn")[-1][0]
    assert drawn.count == 4 and drawn.seed == 3 and drawn.mosaic.shape == (2 * SIDE + 2, 2 * SIDE + 2)


def test_a_run_decoded_on_the_reconstruction_worker_needs_no_decoding(model):
    state, inspector, tasks, events = make_inspector(model)
    inspector.model_loader = load_covariance_model  # the app's loader: a run's own decoding is the same model's
    record = finished_run(state, {"latent": np.zeros(LATENT_DIM, np.float32)})
    record.covariance = prepare_covariance(model, None, record.arrays["latent"])
    state.add_result(record)
    assert inspector.prepared is record.covariance and "prepare" not in tasks.kinds()


def test_results_for_an_older_source_are_dropped(model):
    state, inspector, tasks, events = make_inspector(model)
    inspector.set_active(True)
    tasks.finish("model")
    truth_task = tasks.waiting[-1]
    assert truth_task.kind == "prepare"
    inspector.select("adjoint", by_user=True)  # before the ground truth's decoding is done
    assert not inspector.following and inspector.token == truth_task.token + 1
    assert tasks.kinds() == ["prepare", "prepare"]
    tasks.finish("prepare")  # the ground truth's: too late
    assert inspector.prepared is None and events.of("prepared_changed") == []
    tasks.finish("prepare")
    adjoint = prepare_covariance(model, state.adjoint, None)
    np.testing.assert_allclose(inspector.prepared.mean_image(), adjoint.mean_image(), atol=1e-6)

    # a row computed for the adjoint arrives after the ground truth was chosen: dropped, and asked again
    inspector.request_pixel(8, 9)
    inspector.select("truth", by_user=True)
    assert tasks.kinds() == ["row", "prepare"]
    tasks.finish("row")
    assert inspector.pixel is None and events.of("row_shown") == []
    assert tasks.kinds() == ["prepare"]  # the row waits for the new decoding
    tasks.finish("prepare")
    tasks.finish("row")
    truth = prepare_covariance(model, state.image, None)
    assert inspector.pixel == (8, 9)
    np.testing.assert_allclose(inspector.correlation, truth.correlation_row(8, 9), atol=1e-5)
    # samples drawn for the old image are dropped too
    inspector.draw_samples()
    inspector.select("adjoint")
    tasks.finish("samples")
    assert inspector.samples is None and events.of("samples_drawn") == []


def test_a_model_loaded_for_a_replaced_weight_set_is_dropped(model):
    state, inspector, tasks, events = make_inspector(model)
    inspector.set_active(True)
    old_load = tasks.waiting[0]
    inspector.reset_model()  # the weight set changed while loading
    assert tasks.kinds() == ["model", "model"]
    tasks.finish("model")
    assert inspector.model is None and inspector.loading and old_load not in tasks.waiting
    tasks.finish("model")
    assert inspector.model is model and tasks.kinds() == ["prepare"]


def test_a_missing_model_is_reported_once(model):
    state, inspector, tasks, events = make_inspector(model)

    def missing():
        raise ValueError("no 'covar' VAE weights")

    inspector.model_loader = missing
    inspector.set_active(True)
    tasks.finish("model")
    assert inspector.model_error == "no 'covar' VAE weights" and events.of("model_failed") == [(inspector.model_error,)]
    inspector.select("adjoint", by_user=True)
    inspector.set_active(True)
    assert tasks.waiting == []  # no second attempt until the weight set changes
    assert events.of("failed") == []  # not an error dialog


def test_following_new_runs_until_the_user_chooses(model):
    state, inspector, tasks, events = make_inspector(model)
    first = finished_run(state, {"std_map": np.zeros((SIDE, SIDE), np.float32)})
    state.add_result(first)
    assert inspector.key == f"run:{first.run_id}"
    state.add_result(finished_run(state, {}, method="tv"))  # nothing to inspect
    state.add_result(finished_run(state, {"latent": np.zeros(LATENT_DIM, np.float32)}, cancelled=True))
    assert inspector.key == f"run:{first.run_id}"
    assert [key for key, _label in inspector.sources()][:2] == ["truth", "adjoint"] and len(inspector.sources()) == 5
    inspector.select("adjoint", by_user=True)
    assert not inspector.following and events.of("following_changed") == [(False,)]
    second = finished_run(state, {"std_map": np.zeros((SIDE, SIDE), np.float32)})
    state.add_result(second)
    assert inspector.key == "adjoint"
    inspector.set_following(True)
    assert inspector.key == f"run:{second.run_id}"
    state.remove_result(second.run_id)
    assert inspector.key == "truth"  # the inspected run is gone: the first source


def phantom_entry(method: str) -> dict:
    table = json.loads((RESOURCES_DIR / "tuned" / "calibration.json").read_text())
    return next(e for e in table[method] if e["mask"] == "radial:25" and e["sigma"] == 0.05)


def test_the_calibration_factor_is_applied_only_when_asked(model):
    state, inspector, tasks, events = make_inspector(model)
    entry = phantom_entry("mean+covar")
    setting = {"mask": "radial:25", "fraction": 0.1017, "sigma": 0.05, "seed": 0, "weights": "phantom"}
    raw = np.linspace(0, 0.2, SIDE * SIDE, dtype=np.float32).reshape(SIDE, SIDE)
    record = finished_run(state, {"std_map": raw}, setting=setting, params=dict(entry["params"]))
    state.add_result(record)
    shown = inspector.std
    assert shown.available is not None and shown.available.scale == entry["scale"] and shown.why_not == ""
    assert shown.scale is None
    np.testing.assert_array_equal(shown.std_map, raw)
    inspector.set_calibrated(True)
    assert inspector.std.scale == shown.available
    np.testing.assert_allclose(inspector.std.std_map, entry["scale"] * raw, rtol=1e-6)
    assert events.of("std_changed")[-1] == (inspector.std,)
    # a run whose map was saved calibrated (genreg recon --calibrated-std) is shown from its raw map
    record.info["std_scale"] = 2.0
    record.arrays["std_map"] = 2.0 * raw
    inspector.set_calibrated(False)
    np.testing.assert_allclose(inspector.std.std_map, raw, rtol=1e-6)
    # a method without a stored factor: raw, with the reason
    inspector.set_calibrated(True)
    other = finished_run(state, {"std_map": raw}, method="pnp-admm", setting=setting)
    state.add_result(other)
    assert inspector.std.available is None and inspector.std.scale is None
    assert inspector.std.why_not.startswith("No stored std scale factor for pnp-admm in the phantom set")
    np.testing.assert_array_equal(inspector.std.std_map, raw)
    inspector.select("truth", by_user=True)
    assert inspector.std.std_map is None and inspector.std.why_not == "Choose a run that reports its posterior std"
