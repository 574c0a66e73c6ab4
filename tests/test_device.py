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
