"""Real-data plumbing: MRNet slice sets (``genreg dataset build --format mrnet``), weight sets (``--weights``),
and the training augmentation. Every file here is synthetic (phantoms written in MRNet's layout); no scan is used."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from genreg_viewer.cli.main import main
from genreg_viewer.data import DataError, load_slice_set, load_slice_set_sources, preprocess
from genreg_viewer.data.mrnet import build_mrnet_slice_set, find_mrnet_volumes, parse_exam_ranges
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.paths import RESOURCES_DIR
from genreg_viewer.recon import Problem, get_method
from genreg_viewer.training.common import random_geometry_and_contrast, random_intensity_curves
from genreg_viewer.weight_sets import (
    WeightSetError,
    active_weight_set,
    find_weights,
    is_auto,
    resolve_weight_set,
    tuned_file,
    use_weight_set,
    weight_set_choice,
    weight_set_for,
)


def write_exam(root, split, plane, exam, slices=6, seed=0):
    """An MRNet-like uint8 (S, 256, 256) stack: phantoms, with the first slice empty background."""
    stack = (phantom_batch(slices, seed, size=256) * 255).round().astype(np.uint8)
    stack[0] = 0
    folder = root / split / plane
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{exam:04d}.npy", stack)
    return stack


@pytest.fixture
def mrnet_dir(tmp_path):
    root = tmp_path / "MRNet-v1.0"
    for exam in (0, 1, 2):
        write_exam(root, "train", "coronal", exam, seed=10 * exam)
        write_exam(root, "train", "sagittal", exam, seed=10 * exam + 5)
    write_exam(root, "valid", "coronal", 1130, seed=99)
    write_exam(tmp_path / "copy", "valid", "coronal", 1130, seed=99)  # the same exam found twice
    return tmp_path


def test_exam_ranges_parse_and_reject():
    assert parse_exam_ranges("0-1124") == [(0, 1124)]
    assert parse_exam_ranges("1130")[0] == (1130, 1130)
    assert parse_exam_ranges("1130-")[0][0] == 1130 and parse_exam_ranges("1130-")[0][1] > 10**6
    assert parse_exam_ranges(None) is None
    for bad in ("abc", "5-3", "-", "1-2-3"):
        with pytest.raises(DataError):
            parse_exam_ranges(bad)


@pytest.mark.slow
def test_find_volumes_splits_by_exam_and_dedupes(mrnet_dir):
    volumes = find_mrnet_volumes(mrnet_dir, ("coronal",))
    assert [v.exam for v in volumes] == [0, 1, 2, 1130]  # 1130 once although it is stored twice
    test = find_mrnet_volumes(mrnet_dir, ("coronal", "sagittal"), "1130-")
    train = find_mrnet_volumes(mrnet_dir, ("coronal", "sagittal"), "0-1124")
    assert {v.exam for v in test}.isdisjoint({v.exam for v in train})
    assert len(train) == 6
    with pytest.raises(DataError, match="no MRNet exams"):
        find_mrnet_volumes(mrnet_dir, ("axial",))
    with pytest.raises(DataError, match="planes"):
        find_mrnet_volumes(mrnet_dir, ("frontal",))


@pytest.mark.slow
def test_build_preprocesses_like_fastmri_and_skips_empty_slices(mrnet_dir, tmp_path):
    out = tmp_path / "train.h5"
    summary = build_mrnet_slice_set(mrnet_dir, out, planes=("coronal",), exams="0-1124", progress=False)
    assert summary.num_volumes == 3 and summary.skipped_slices == 3  # one empty slice per stack
    images = load_slice_set(out)
    assert images.shape == (15, 128, 128)
    sources = load_slice_set_sources(out)
    assert sources[0] == ("coronal/0000", 1)
    stack = np.load(mrnet_dir / "MRNet-v1.0" / "train" / "coronal" / "0000.npy")
    np.testing.assert_allclose(images[0], preprocess(stack[1], 128), atol=1e-6)
    with h5py.File(out) as handle:
        assert handle.attrs["acquisition"] == "mrnet:coronal" and "research-use" in handle.attrs["terms"]


@pytest.mark.slow
def test_cli_builds_mrnet_sets_and_reports_bad_input(mrnet_dir, tmp_path, capsys):
    out = tmp_path / "c.h5"
    code = main(["dataset", "build", "--format", "mrnet", str(mrnet_dir), str(out), "--planes", "all",
                 "--exams", "0-2", "--slices-near-centre", "2", "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["num_images"] == 12 and summary["num_volumes"] == 6
    bad = mrnet_dir / "MRNet-v1.0" / "train" / "coronal" / "0003.npy"
    np.save(bad, np.zeros((2, 10, 10), dtype=np.uint8))
    bad.write_bytes(bad.read_bytes()[:64])  # a truncated file
    code = main(["dataset", "build", "--format", "mrnet", str(mrnet_dir), str(out), "--exams", "3",
                 "--no-progress"])
    assert code == 2 and "no usable slice" in capsys.readouterr().err
    assert main(["dataset", "build", str(mrnet_dir), str(out)]) == 2  # fastMRI needs --slices-near-centre
    assert "--slices-near-centre" in capsys.readouterr().err


def test_augmentation_keeps_range_and_is_seeded():
    images = torch.from_numpy(phantom_batch(4, 3))[:, None]
    first = random_geometry_and_contrast(images, torch.Generator().manual_seed(5))
    again = random_geometry_and_contrast(images, torch.Generator().manual_seed(5))
    other = random_geometry_and_contrast(images, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and torch.allclose(first.flatten(1).amax(1), torch.ones(4))
    # the identity transform (no rotation, zoom, shift or gamma) returns the image rescaled to max 1
    same = random_geometry_and_contrast(images, torch.Generator().manual_seed(0), 0.0, (1.0, 1.0), 0.0, (1.0, 1.0))
    assert torch.allclose(same, images / images.flatten(1).amax(1)[:, None, None, None], atol=1e-5)



def test_intensity_curves_monotone_by_default_and_nonmonotone_on_request():
    # a horizontal ramp through the curve, without bias field: rows show the curve itself
    ramp = torch.linspace(0, 1, 64).repeat(64, 1)[None, None].repeat(16, 1, 1, 1)
    monotone = random_intensity_curves(ramp, torch.Generator().manual_seed(3), max_bias=0.0)
    assert (monotone[:, 0, 0].diff(dim=-1) >= -1e-6).all()  # order of intensities kept
    swapped = random_intensity_curves(ramp, torch.Generator().manual_seed(3), max_bias=0.0, nonmonotone=1.0)
    decreasing_somewhere = (swapped[:, 0, 0].diff(dim=-1) < -1e-3).any(dim=-1)
    assert decreasing_somewhere.sum() >= 8  # a random curve may still rise, or be blended mostly with the identity
    assert swapped[:, 0, 0, 0].abs().max() < 1e-6  # air (0) stays dark
    assert torch.allclose(swapped.flatten(1).amax(1), torch.ones(16))
    # p = 0 draws nothing extra: the same batches as without the option
    assert torch.equal(monotone, random_intensity_curves(ramp, torch.Generator().manual_seed(3), max_bias=0.0,
                                                         nonmonotone=0.0))
    with pytest.raises(ValueError, match="probability"):
        random_intensity_curves(ramp, torch.Generator(), nonmonotone=1.5)


# ------------------------------------------------------------------------------------------------- weight sets
@pytest.fixture
def restore_weight_set():
    before = None if is_auto() else active_weight_set()  # None: auto mode
    yield
    use_weight_set(before)


def copy_set(source_folder, target, names):
    target.mkdir()
    for name in names:
        for suffix in (".safetensors", ".json"):
            shutil.copy(source_folder / f"{name}{suffix}", target / f"{name}{suffix}")
    return target


def test_weight_set_resolution_and_errors(tmp_path, restore_weight_set):
    phantom = resolve_weight_set("phantom")
    assert phantom.folder == RESOURCES_DIR / "weights" and phantom.fallback is None
    assert "phantom" in phantom.data
    with pytest.raises(WeightSetError, match="unknown weight set"):
        resolve_weight_set("no-such-set")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightSetError, match="holds no weights"):
        resolve_weight_set(tmp_path / "empty")
    assert main(["recon", "--weights", "no-such-set"]) == 2


def test_auto_mode_gives_real_scans_the_real_knee_set_and_phantoms_the_phantom_set(tmp_path, restore_weight_set):
    use_weight_set("auto")
    sample = RESOURCES_DIR / "samples" / "knee_phantom_000.npy"
    scan = tmp_path / "scan.npy"
    shutil.copy(sample, scan)  # same pixels, but a file the user brings: treated as a real scan
    assert is_auto() and active_weight_set().name == "phantom"  # contexts without an image
    assert weight_set_choice(sample) == (resolve_weight_set("phantom"), "auto: synthetic phantom")
    assert weight_set_for("phantom:8:1000000").name == "phantom"
    assert weight_set_for(tmp_path / "knee_phantom_017.npy").name == "phantom"  # `genreg phantom` output
    assert weight_set_choice(scan) == (resolve_weight_set("real-knee"), "auto: real scan")
    assert weight_set_for(tmp_path / "file1000000.h5").name == "real-knee"
    use_weight_set("phantom")  # a chosen set applies to every image
    assert not is_auto() and weight_set_choice(scan) == (resolve_weight_set("phantom"), "chosen")
    use_weight_set("auto")
    assert weight_set_for(scan).name == "real-knee"
    with pytest.raises(WeightSetError, match="a mode, not a set"):
        resolve_weight_set("auto")


def test_auto_mode_follows_genreg_weights_and_the_cli(tmp_path, capsys, monkeypatch, restore_weight_set):
    import genreg_viewer.weight_sets as weight_sets

    scan = tmp_path / "scan.npy"
    np.save(scan, phantom_batch(1, 1_000_002)[0])
    use_weight_set("auto")
    assert main(["recon", str(scan), "--method", "adjoint", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["weights"]
    assert summary["name"] == "real-knee" and summary["chosen"] == "auto: real scan" and "MRNet" in summary["terms"]
    assert main(["recon", str(scan), "--method", "adjoint", "--json", "--weights", "phantom"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == {**summary, "name": "phantom", "chosen": "chosen",
                                                             "data": resolve_weight_set("phantom").data,
                                                             "terms": resolve_weight_set("phantom").terms}
    assert is_auto()  # --weights applied to that command only
    assert main(["weights"]) == 0 and capsys.readouterr().out.splitlines()[-1].startswith("in use: auto (")
    monkeypatch.setenv("GENREG_WEIGHTS", "phantom")
    monkeypatch.setattr(weight_sets, "_AUTO", None)  # as in a new process
    assert not is_auto() and weight_set_for(scan).name == "phantom"
    monkeypatch.setenv("GENREG_WEIGHTS", "auto")
    monkeypatch.setattr(weight_sets, "_AUTO", None)
    assert is_auto() and weight_set_for(scan).name == "real-knee"


def test_folder_set_falls_back_to_phantom_and_carries_its_tuned_defaults(tmp_path, restore_weight_set):
    phantom = resolve_weight_set("phantom")
    mine = copy_set(phantom.folder, tmp_path / "mine", ["vae_identity", "vae_diagonal"])
    (mine / "tuned").mkdir()
    (mine / "tuned" / "classical.json").write_text(json.dumps(
        {"tv": [{"spokes": 25, "sampling_fraction": 0.1, "sigma": 0.05, "params": {"alpha": 0.0123}}]}))
    chosen = use_weight_set(mine)
    assert chosen.name == "mine" and chosen.fallback == "phantom"
    # the edge passes the chosen set on: the core never reads the choice itself (issue 23)
    assert find_weights("vae_diagonal", active_weight_set())[1].name == "mine"
    assert find_weights("vae_covar", chosen)[1].name == "phantom"  # not in the folder: its fallback supplies it
    assert tuned_file("classical.json", chosen) == mine / "tuned" / "classical.json"
    assert tuned_file("generative.json", chosen) == RESOURCES_DIR / "tuned" / "generative.json"
    assert find_weights("vae_diagonal")[1].name == "phantom"  # given no set: the bundled default, not the choice
    from genreg_viewer.physics import mask_from_spec, simulate_measurement

    truth = torch.from_numpy(phantom_batch(1, 1_000_000))[:, None]
    measurement = simulate_measurement(truth, mask_from_spec("radial:25", (128, 128)), 0.05, seed=0)
    problem = Problem(measurement, truth, weight_set=active_weight_set())
    assert problem.weight_set == chosen
    assert get_method("tv").defaults_for(problem) == {"alpha": 0.0123}
    assert Problem(measurement, truth).weight_set.name == "phantom"  # no set given: the default, not the choice
    use_weight_set("phantom")
    assert Problem(measurement, truth, weight_set=active_weight_set()).weight_set.name == "phantom"
    assert problem.weight_set.name == "mine"  # a problem keeps the set it was made with


def test_recon_cli_names_its_weights_and_restores_the_active_set(tmp_path, capsys, restore_weight_set):
    image = tmp_path / "knee.npy"
    np.save(image, phantom_batch(1, 1_000_001)[0])
    code = main(["recon", str(image), "--method", "tv", "--weights", "phantom", "--json", "--iters", "20"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["weights"]["name"] == "phantom" and "phantom" in summary["weights"]["data"]
    mine = copy_set(resolve_weight_set("phantom").folder, tmp_path / "mine", ["vae_identity"])
    before = active_weight_set()
    assert main(["recon", str(image), "--method", "tv", "--weights", str(mine), "--json", "--iters", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"]["name"] == "mine"
    assert active_weight_set() == before  # --weights applies to that command only


def test_weights_command_lists_bundled_sets(capsys):
    assert main(["weights", "--json", "phantom"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["name"] == "phantom" and "vae_covar" in described["networks"]
    assert main(["weights"]) == 0
    assert "phantom" in capsys.readouterr().out


def test_copy_to_half_precision_keeps_the_networks_and_repins_bases(tmp_path, capsys):
    from genreg_viewer.models.vae import load_generative_model
    from genreg_viewer.models.weights import read_weights_json

    target = tmp_path / "half"
    code = main(["weights", "phantom", "--copy-to", str(target), "--only", "vae_identity", "vae_covar", "--half"])
    assert code == 0 and "vae_covar.safetensors" in capsys.readouterr().out
    original, copied = load_generative_model("covar"), load_generative_model("covar", target)
    assert read_weights_json(target / "vae_covar")["storage"] == "float16"
    assert (target / "vae_identity.safetensors").stat().st_size < 0.6 * (
        RESOURCES_DIR / "weights" / "vae_identity.safetensors").stat().st_size
    z = torch.randn(3, original.config.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean_a, mean_b = original.decode_mean(z), copied.decode_mean(z)
    assert copied.encoder.stem.weight.dtype == torch.float32
    assert 0 < float((mean_a - mean_b).abs().max()) < 1e-2  # float16 rounding, nothing more
    # a covariance decoder without its base is refused with a clear message
    assert main(["weights", "phantom", "--copy-to", str(tmp_path / "x"), "--only", "vae_covar"]) == 2
    assert "base weights" in capsys.readouterr().err
