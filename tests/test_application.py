"""The application model without a window: a script drives the experiment state, runs jobs and saves/opens
bundles exactly as the GUI does (no Qt object anywhere), and gets the same numbers as the registry called
directly."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from genreg_viewer import metrics
from genreg_viewer.application import ExperimentState, ImageInfo, run_job
from genreg_viewer.application import sessions
from genreg_viewer.data.phantom import knee_phantom
from genreg_viewer.physics import radial_mask, simulate_measurement
from genreg_viewer.recon import Problem, run_method


@pytest.fixture
def state() -> ExperimentState:
    state = ExperimentState()
    state.set_image(knee_phantom(3, 128), ImageInfo(source="knee phantom (seed 3)"))
    state.set_mask(radial_mask(20), "radial:20")
    state.set_noise(0.03, 7)
    return state


def test_a_job_from_the_state_scores_as_the_registry_does(state):
    heard = []
    state.result_added.connect(heard.append)
    job = state.make_job("tv", {"alpha": 0.02}, iterations=60)
    assert job.setting["mask"] == "radial:20" and job.setting["weights"] == "phantom"  # a phantom: auto picks it
    updates = []
    record = run_job(job, updates.append)
    assert updates[-1].final and updates[-1].iteration == record.iterations
    assert [p[0] for u in updates for p in u.points] == sorted({p[0] for u in updates for p in u.points})
    assert state.accept(job, record) and heard == [record]
    # the same problem through the registry, built independently of the state
    truth = knee_phantom(3, 128)
    problem = Problem(simulate_measurement(truth, radial_mask(20), 0.03, seed=7), truth[None, None], seed=7)
    expected = run_method("tv", problem, {"alpha": 0.02}, iterations=60)
    assert record.psnr == pytest.approx(expected.psnr, abs=1e-6)
    np.testing.assert_allclose(record.image, expected.image_numpy(0), atol=1e-6)


def test_a_result_for_an_earlier_image_is_dropped(state):
    job = state.make_job("adjoint")
    record = run_job(job, lambda update: None)
    state.set_image(knee_phantom(4, 128), ImageInfo(source="knee phantom (seed 4)"))
    assert not state.accept(job, record) and state.results == []


def test_cancel_stops_a_job_between_iterations(state):
    job = state.make_job("tv", {"tolerance": 0.0}, iterations=100_000)  # no early stop
    seen = []

    def on_progress(update):
        seen.append(update.iteration)
        job.cancel.set()  # at the first report

    record = run_job(job, on_progress)
    assert record.cancelled and record.iterations <= seen[0] + job.report_every()


def test_a_session_round_trip_restores_state_and_runs(state, tmp_path):
    job = state.make_job("lsq", iterations=8)
    state.accept(job, run_job(job, lambda update: None))
    path = sessions.save_session(tmp_path / "s.h5", state, {"method": {"method": "lsq"}})
    restored = ExperimentState()
    events = []
    for name in ("results_cleared", "image_changed", "measurement_changed", "result_added"):
        getattr(restored, name).connect(lambda *args, name=name: events.append(name))
    gui = sessions.load_session(path, restored)
    assert gui["method"]["method"] == "lsq"
    assert events == ["image_changed", "measurement_changed", "result_added"]
    np.testing.assert_array_equal(restored.image, state.image)
    np.testing.assert_allclose(restored.measurement.y.numpy(), state.measurement.y.numpy())
    (record,) = restored.results
    assert record.psnr == pytest.approx(float(metrics.psnr(np.clip(record.image, 0, 1), restored.image)[0]),
                                        abs=1e-5)
    assert restored.next_run_id() == job.job_id + 1  # ids continue after the restored runs


def test_the_model_runs_jobs_from_another_thread(state):
    """The GUI runs jobs on a worker thread: run_job needs nothing of the thread it runs on."""
    job = state.make_job("tv", iterations=20)
    out = {}
    worker = threading.Thread(target=lambda: out.update(record=run_job(job, lambda update: None)))
    worker.start()
    worker.join(60)
    assert out["record"].iterations == 20 and np.isfinite(out["record"].psnr)


def test_the_readme_script_runs(tmp_path, monkeypatch):
    """The README's scripting example, run as written on the bundled sample (instead of knee.h5, slice 17) with TV
    (instead of mean+covar, for time): the session it saves opens again with the run in it."""
    import re
    from pathlib import Path

    from genreg_viewer.application import ExperimentState, sessions
    from genreg_viewer.paths import SAMPLES_DIR

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    script = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "save_session" in block)
    sample = SAMPLES_DIR / "knee_phantom_000.npy"
    assert 'load_image_file("knee.h5", slice_index=17)' in script and 'make_job("mean+covar")' in script
    script = script.replace('load_image_file("knee.h5", slice_index=17)', f"load_image_file({str(sample)!r})")
    script = script.replace('make_job("mean+covar")', 'make_job("tv")')
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "README.md", "exec"), {"print": lambda *args, **kwargs: None})
    state = ExperimentState()
    sessions.load_session(tmp_path / "knee-session.h5", state)
    assert [record.method for record in state.results] == ["tv"] and state.results[0].psnr > 15
