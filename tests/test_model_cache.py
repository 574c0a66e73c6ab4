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


# ------------------------------------------------------------------------------------------- the VAEs share it
def _copied_vae_set(tmp_path):
    """A weight-set folder holding copies of the bundled phantom set's identity VAE and its diagonal model (which
    borrows the encoder and mean decoder from the identity file)."""
    import shutil

    from genreg_viewer.weight_sets import resolve_weight_set

    source = resolve_weight_set("phantom").folder
    folder = tmp_path / "copied-set"
    folder.mkdir()
    for name in ("vae_identity", "vae_diagonal"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(source / f"{name}{suffix}", folder / f"{name}{suffix}")
    return resolve_weight_set(folder)


def _touch_later(stem) -> None:
    """A distinct modification time even on coarse file systems."""
    for path in weights_paths(stem):
        later = os.stat(path).st_mtime_ns + 10**9
        os.utime(path, ns=(later, later))


@pytest.mark.slow
def test_a_vae_is_loaded_again_when_a_weights_file_of_its_set_is_rewritten(tmp_path):
    from genreg_viewer.models.vae import BASE_PREFIXES, load_generative_model, save_generative_model
    from genreg_viewer.recon.generative.common import bundled_model

    weight_set = _copied_vae_set(tmp_path)
    stem, base = weight_set.folder / "vae_diagonal", weight_set.folder / "vae_identity"
    first = bundled_model("diagonal", torch.device("cpu"), weight_set)
    assert bundled_model("diagonal", torch.device("cpu"), weight_set) is first
    name, parameter = next((n, p) for n, p in first.named_parameters() if not n.startswith(BASE_PREFIXES))
    changed = load_generative_model("diagonal", weight_set.folder)  # a fresh copy, not the cached one
    with torch.no_grad():
        dict(changed.named_parameters())[name].add_(0.5)
    save_generative_model(changed, stem, {"note": "another training run"}, base=base)  # a valid file, new values
    _touch_later(stem)
    second = bundled_model("diagonal", torch.device("cpu"), weight_set)
    assert second is not first
    assert torch.allclose(dict(second.named_parameters())[name], parameter + 0.5)
    assert bundled_model("diagonal", torch.device("cpu"), weight_set) is second
    identity = load_generative_model("identity", weight_set.folder)
    with torch.no_grad():
        next(identity.encoder.parameters()).add_(0.25)
    save_generative_model(identity, base, {"note": "a retrained base"})  # the file the diagonal model borrows from
    _touch_later(base)
    with pytest.raises(WeightsError, match="changed since"):  # not the stale cached model
        bundled_model("diagonal", torch.device("cpu"), weight_set)


def test_threads_asking_for_a_vae_at_once_share_one_load(tmp_path, monkeypatch):
    from genreg_viewer.models import vae
    from genreg_viewer.recon.generative.common import bundled_model

    weight_set = _copied_vae_set(tmp_path)
    original, loads = vae.load_generative_model, []

    def counting(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(vae, "load_generative_model", counting)
    results = []
    start = threading.Barrier(4)

    def ask() -> None:
        start.wait()
        results.append(bundled_model("identity", torch.device("cpu"), weight_set))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(loads) == 1 and all(result is results[0] for result in results)
