"""Synthetic knee phantom: API contract, anatomy sanity and the ``genreg phantom`` command."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from genreg_viewer.cli.main import main
from genreg_viewer.data.phantom import knee_phantom, phantom_batch, phantom_grid, sample_anatomy
from genreg_viewer.paths import SAMPLES_DIR

SEEDS = range(12)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return phantom_batch(len(SEEDS), SEEDS[0])


def test_shape_dtype_and_full_range(batch):
    assert batch.shape == (len(SEEDS), 128, 128) and batch.dtype == np.float32
    assert np.isfinite(batch).all()
    for image in batch:  # linearly rescaled to use the whole [0, 1] range
        assert image.min() == 0.0 and image.max() == 1.0
    small = knee_phantom(3, size=64)
    assert small.shape == (64, 64) and small.dtype == np.float32 and small.min() == 0.0 and small.max() == 1.0


def test_deterministic_per_seed():
    np.testing.assert_array_equal(knee_phantom(7), knee_phantom(7))
    assert sample_anatomy(np.random.default_rng(7)) == sample_anatomy(np.random.default_rng(7))


def test_batch_item_i_is_phantom_of_seed_plus_i(batch):
    for i in (0, 5, len(SEEDS) - 1):
        np.testing.assert_array_equal(batch[i], knee_phantom(SEEDS[0] + i))
    assert phantom_batch(0, 3).shape == (0, 128, 128)


def test_different_seeds_differ(batch):
    for i in range(len(batch)):
        for j in range(i + 1, len(batch)):
            assert np.abs(batch[i] - batch[j]).mean() > 0.03, (i, j)


def test_anatomy_does_not_depend_on_size():
    """The anatomy is drawn before any texture, so a 256-pixel phantom shrunk to 128 matches the 128 one."""
    big = knee_phantom(4, size=256)
    shrunk = np.asarray(Image.fromarray(big).resize((128, 128), Image.Resampling.BOX))
    same = np.corrcoef(shrunk.ravel(), knee_phantom(4).ravel())[0, 1]
    other = np.corrcoef(shrunk.ravel(), knee_phantom(5).ravel())[0, 1]
    assert same > 0.9 and same > other + 0.2


def test_central_column_marrow_joint_marrow(batch):
    """Down the middle: bright femoral marrow (top third), a darker band at the joint (notch, cortex, cruciate
    ligaments), bright tibial marrow (bottom third)."""
    for image in batch:
        profile = image[:, 60:68].mean(axis=1)
        top, bottom = np.median(profile[4:40]), np.median(profile[88:124])
        joint = np.convolve(profile, np.ones(5) / 5, mode="same")[44:84].min()
        assert top > 0.3 and bottom > 0.3
        assert joint < 0.75 * min(top, bottom)


def test_dark_noisy_background(batch):
    for image in batch:
        darkest = np.sort(image.ravel())[: image.size // 50]  # the background beside the leg
        assert darkest.mean() < 0.1
        assert (darkest > 0).mean() > 0.9  # a Rician noise floor, not exact zeros
        assert np.median(image[32:96, 32:96]) > 3 * darkest.mean() + 0.2  # the knee stands out


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="seed"):
        knee_phantom(-1)
    with pytest.raises(ValueError, match="size"):
        knee_phantom(0, size=8)
    with pytest.raises(ValueError, match="count"):
        phantom_batch(-2, 0)
    with pytest.raises(ValueError, match="non-empty"):
        phantom_grid(np.zeros((0, 4, 4)))


def test_grid_layout():
    images = np.ones((5, 8, 6), np.float32)
    grid = phantom_grid(images, columns=2, gap=1)
    assert grid.shape == (3 * 8 + 2, 2 * 6 + 1)
    assert grid.sum() == 5 * 8 * 6


def test_cli_writes_npy_png_and_grid(tmp_path, capsys):
    out = tmp_path / "phantoms"
    grid = str(tmp_path / "grid.png")
    assert main(["phantom", "--count", "2", "--seed", "5", "--out", str(out), "--grid", grid]) == 0
    for seed in (5, 6):
        stored = np.load(out / f"knee_phantom_{seed:03d}.npy")
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, knee_phantom(seed))
        with Image.open(out / f"knee_phantom_{seed:03d}.png") as png:
            assert png.size == (128, 128) and png.mode == "L"
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (2 * 128 + 2, 128)
    assert "2 phantoms" in capsys.readouterr().out


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["phantom", "--count", "0", "--out", str(tmp_path)]) == 2
    assert main(["phantom", "--count", "1", "--size", "4", "--out", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bundled_samples_match_documented_command():
    """resources/samples/README.md: ``genreg phantom --count 6 --seed 0 --out resources/samples``."""
    for seed in range(6):
        stored = np.load(SAMPLES_DIR / f"knee_phantom_{seed:03d}.npy")
        assert stored.shape == (128, 128) and stored.dtype == np.float32
        np.testing.assert_allclose(stored, knee_phantom(seed), atol=1e-4)
