"""Device and thread-count helpers."""

import pytest
import torch

from genreg_viewer.device import background_thread_count, configure_background_threads, resolve_device


def test_background_threads_default_to_one(monkeypatch):
    monkeypatch.delenv("GENREG_THREADS", raising=False)
    assert background_thread_count() == 1


def test_background_threads_from_environment(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("GENREG_THREADS", "2")
    try:
        assert configure_background_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-3", "two", "1.5"])
def test_bad_thread_count_has_a_clear_message(monkeypatch, value):
    monkeypatch.setenv("GENREG_THREADS", value)
    with pytest.raises(ValueError, match="GENREG_THREADS must be a positive integer"):
        background_thread_count()


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


def _machine(monkeypatch, cores: int, load: float) -> None:
    from genreg_viewer import device

    monkeypatch.delenv("GENREG_THREADS", raising=False)
    monkeypatch.setattr(device, "_usable_cores", lambda: cores)
    monkeypatch.setattr(device, "busy_cores", lambda: load)


def test_one_slice_gets_one_thread_even_on_an_idle_machine(monkeypatch):
    from genreg_viewer.device import default_thread_count

    _machine(monkeypatch, cores=8, load=0.0)
    assert default_thread_count((1, 1, 128, 128)) == 1
    assert default_thread_count(None) == 1


def test_large_batches_use_the_idle_cores_only(monkeypatch):
    from genreg_viewer.device import PIXELS_PER_THREAD, default_thread_count

    batch = 4 * PIXELS_PER_THREAD // (128 * 128)  # four threads' worth of pixels
    _machine(monkeypatch, cores=8, load=0.0)
    assert default_thread_count((batch, 1, 128, 128)) == 4
    _machine(monkeypatch, cores=2, load=0.0)
    assert default_thread_count((batch, 1, 128, 128)) == 2  # no more than the usable cores
    _machine(monkeypatch, cores=2, load=1.2)
    assert default_thread_count((batch, 1, 128, 128)) == 1  # the other core is busy: a second thread would wait
    _machine(monkeypatch, cores=8, load=5.6)
    assert default_thread_count((batch, 1, 128, 128)) == 2


def test_environment_and_explicit_count_override_the_default(monkeypatch):
    from genreg_viewer.device import configure_threads, default_thread_count

    before = torch.get_num_threads()
    _machine(monkeypatch, cores=8, load=0.0)
    monkeypatch.setenv("GENREG_THREADS", "3")
    try:
        assert default_thread_count((1, 1, 128, 128)) == 3
        assert configure_threads(2, (1, 1, 128, 128)) == 2 and torch.get_num_threads() == 2
        for count in (0, 100000):  # 100000 aborted inside libgomp
            with pytest.raises(ValueError, match="--threads must be an integer from 1 to 256"):
                configure_threads(count)
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_busy_cores_sees_a_neighbour_that_just_started(monkeypatch):
    """A process spinning for a moment is counted at once, though the load average (here 0) has not seen it yet."""
    import multiprocessing
    import os

    from genreg_viewer.device import busy_cores

    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    context = multiprocessing.get_context("spawn")
    spinning = context.Event()
    spinner = context.Process(target=_spin, args=(spinning, 30.0), daemon=True)
    spinner.start()
    try:
        assert spinning.wait(120), "the spinning process did not start"
        assert busy_cores() >= 0.5
    finally:
        spinner.terminate()
        spinner.join()


def _spin(spinning, seconds: float) -> None:
    import time

    spinning.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
