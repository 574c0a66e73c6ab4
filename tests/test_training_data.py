"""The training data of the learned baselines' trainers (``genreg train denoiser | varnet | edip | flow``): phantoms by
default, exactly as before, or a slice set ``.h5`` (``--data``, ``--held-out``, ``--augment``), chosen in one place
(training/common.py load_training_data, training/cli_arguments.py add_data_arguments)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genreg_viewer.cli.main import main as genreg
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.training.common import (
    HELD_OUT_SEED,
    StepTrainingConfig,
    augment_batch,
    held_out_images,
    load_training_data,
    random_flips,
    training_images,
)


def write_slice_set(path, volumes: int = 3, slices: int = 4, size: int = 128, first_seed: int = 0):
    """A slice set in the layout of ``genreg dataset build`` (images, volume, slice), made of phantoms."""
    import h5py

    images = phantom_batch(volumes * slices, first_seed, size=size)
    with h5py.File(path, "w") as h5file:
        h5file["images"] = images
        h5file.create_dataset("volume", data=np.array([f"vol{v}.h5" for v in range(volumes) for _ in range(slices)],
                                                      dtype=object), dtype=h5py.string_dtype("utf-8"))
        h5file["slice"] = np.tile(np.arange(slices, dtype=np.int32), volumes)
    return images


@pytest.fixture(scope="module")
def slice_sets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slices")
    paths = {"train": folder / "train.h5", "val": folder / "val.h5", "small": folder / "small16.h5"}
    write_slice_set(paths["train"])
    write_slice_set(paths["val"], volumes=1, slices=3, first_seed=100)
    write_slice_set(paths["small"], volumes=3, slices=6, size=16)
    return paths


def info_of(stem):
    return json.loads(stem.with_suffix(".json").read_text())["info"]


# ------------------------------------------------------------------------------------------------------ the data
def test_default_data_are_todays_phantoms():
    data = load_training_data(StepTrainingConfig(images=3), report=lambda _: None)
    assert torch.equal(data.train.images, training_images(3))
    assert torch.equal(data.held_out.images, held_out_images(StepTrainingConfig.DEFAULT_HELD_OUT))
    assert data.phantoms and data.describe("flips") == "knee phantoms, seeds 0..2, flips"
    assert data.info() == {"data_spec": "phantom:3", "training_images": 3,
                           "held_out_data": f"phantom:4:{HELD_OUT_SEED}", "held_out_images": 4}
    same = load_training_data(StepTrainingConfig(data="phantom:3", held_out=4), report=lambda _: None)
    assert torch.equal(same.train.images, data.train.images) and torch.equal(same.held_out.images, data.held_out.images)


def test_slice_set_data_and_held_out(slice_sets):
    train = str(slice_sets["train"])
    data = load_training_data(StepTrainingConfig(data=train), report=lambda _: None)
    assert len(data.train) == 8 and len(data.held_out) == 4  # the last whole volume is held out
    assert not data.phantoms and data.describe() == f"{train} minus 1 held-out volumes (8 images)"
    data = load_training_data(StepTrainingConfig(data=train, held_out=str(slice_sets["val"]), augment=True),
                              report=lambda _: None)
    assert len(data.train) == 12 and data.info()["held_out_data"] == str(slice_sets["val"])
    assert data.describe().endswith("contrast (gamma) per image")
    data = load_training_data(StepTrainingConfig(data=train, held_out=2), report=lambda _: None)
    assert torch.equal(data.held_out.images, held_out_images(2))
    with pytest.raises(ValueError, match="seeds must stay below"):
        load_training_data(StepTrainingConfig(data=f"phantom:5:{HELD_OUT_SEED - 2}"), report=lambda _: None)
    with pytest.raises(ValueError, match="phantom:N or phantom:N:SEED"):
        StepTrainingConfig(data="phantom:x").check()
    with pytest.raises(ValueError, match="at least one"):
        StepTrainingConfig(held_out=0).check()


def test_augment_keeps_the_flip_stream_and_changes_images():
    images = training_images(4)
    plain = augment_batch(images, torch.Generator().manual_seed(1))
    assert torch.equal(plain, random_flips(images, torch.Generator().manual_seed(1)))
    augmented = augment_batch(images, torch.Generator().manual_seed(1), augment=True)
    assert augmented.shape == images.shape and not torch.equal(augmented, plain)
    assert float(augmented.min()) >= 0 and float(augmented.max()) <= 1 + 1e-6


# ---------------------------------------------------------------------------------------------- the trainers
@pytest.mark.slow
@pytest.mark.parametrize("kind, options, held_out", [
    ("denoiser", ["--layers", "3", "--channels", "4", "--patch", "16", "--batch", "2", "--augment"], None),
    ("varnet", ["--mask", "radial:9", "--noise", "0.03", "--stages", "2", "--batch", "1", "--augment"], None),
    ("edip", ["--batch", "1"], "val"),
    ("flow", ["--size", "16", "--hidden", "8,8", "--steps-per-level", "2", "--batch", "4", "--augment"], None),
])
def test_trainers_learn_from_a_slice_set(tmp_path, slice_sets, capsys, kind, options, held_out):
    data = str(slice_sets["small" if kind == "flow" else "train"])
    stem = tmp_path / kind
    extra = ["--held-out", str(slice_sets[held_out])] if held_out else []
    assert genreg(["train", kind, "--data", data, *extra, "--steps", "2", "--threads", "1", *options,
                   "--out", str(stem)]) == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out and stem.with_suffix(".safetensors").exists()
    info = info_of(stem)
    record = info if kind == "flow" else info["training"]
    assert record["data_spec"] == data and data in record["data"] and "phantom" not in record["data"]
    train_count = {"flow": 12, "edip": 12}.get(kind, 8)  # all 12 slices with a separate held-out set
    assert record["training_images"] == train_count
    assert record["held_out_images"] == (3 if held_out else 6 if kind == "flow" else 4)
    assert ("contrast" in record["data"]) == ("--augment" in options)
    if kind != "flow":
        assert info["training"]["images"] == train_count and info["training"]["steps_done"] == 2


def test_cli_data_errors(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert genreg(["train", "edip", "--images", "4", "--data", "phantom:4", "--steps", "1", "--out", out]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert genreg(["train", "edip", "--held-out", "0", "--steps", "1", "--out", out]) == 2
    assert "at least one" in capsys.readouterr().err
    assert genreg(["train", "denoiser", "--data", str(tmp_path / "missing.h5"), "--steps", "1", "--out", out]) == 2
    capsys.readouterr()
    assert not list(tmp_path.iterdir())
