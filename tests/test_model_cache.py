"""The one cache of loaded networks: same object while the file is unchanged, reloaded when it changes, one load
when several threads ask at once, a clear error for missing files."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from genreg_viewer.models.weights import WeightsError, save_weights, weights_paths
from genreg_viewer.recon.learned.common import load_network

LOADS: list[int] = []


def _build(config: dict) -> torch.nn.Linear:
    layer = torch.nn.Linear(int(config["size"]), int(config["size"]))
    if layer.weight.device.type != "meta":  # the shape check before a load builds on the meta device: not a load
        LOADS.append(1)
    return layer


def _saved(tmp_path, value: float):
    layer = torch.nn.Linear(3, 3)
    torch.nn.init.constant_(layer.weight, value)
    stem = tmp_path / "layer"
    save_weights(layer, stem, {"size": 3}, {})
    return stem


def test_a_network_is_loaded_once_until_its_file_changes(tmp_path):
    stem = _saved(tmp_path, 1.0)
    LOADS.clear()
    first, _, _ = load_network(str(stem), _build, torch.device("cpu"))
    again, _, _ = load_network(str(stem), _build, torch.device("cpu"))
    assert again is first and len(LOADS) == 1
    assert float(first.weight[0, 0]) == 1.0 and not first.weight.requires_grad and not first.training
    _saved(tmp_path, 2.0)  # a new training run writes the file again
    tensors, meta = weights_paths(stem)
    later = os.stat(tensors).st_mtime_ns + 10**9  # a distinct modification time even on coarse file systems
    os.utime(tensors, ns=(later, later))
    os.utime(meta, ns=(later, later))
    reloaded, _, _ = load_network(str(stem), _build, torch.device("cpu"))
    assert reloaded is not first and float(reloaded.weight[0, 0]) == 2.0 and len(LOADS) == 2


def test_threads_asking_at_once_share_one_load(tmp_path):
    stem = _saved(tmp_path, 0.5)
    LOADS.clear()
    results = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        results.append(load_network(str(stem), _build, torch.device("cpu"))[0])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(LOADS) == 1 and all(result is results[0] for result in results)


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_network(str(tmp_path / "nothing"), _build, torch.device("cpu"))
