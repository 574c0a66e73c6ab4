"""Generated hostile inputs (issue 22): seeded mutations of the structured files the program reads -- calibration
and tuned tables, session metadata, weight-set descriptions, weight configs -- and of the values a user types (mask
specs, method parameters, output paths). Each case must give a correct result or one of the user errors
(:data:`genreg_viewer.cli.errors.USER_ERRORS`) with a one-line message; any other exception (TypeError,
AttributeError, OverflowError, RecursionError, ...) is a defect. Everything runs in-process on tiny inputs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from genreg_viewer.cli.errors import USER_ERRORS

pytestmark = pytest.mark.slow  # generated-input fuzzing

#: values a hostile file or user puts where a number, text, list or object belongs
HOSTILE = [None, True, False, 0, -1, 1, 2**31, 2**63, 10**309, -10**309, 0.5, -0.0, 1e-300, 1e300, float("nan"),
           float("inf"), float("-inf"), "", "x", "1", "nan", "1e400", " " * 3, "a" * 20000, [], [1], [None],
           [[[[[[[[1]]]]]]]], {}, {"a": 1}, {"": None}, [1.5, "x"], "radial:25", "/dev/stdin"]


def hostile(rng: random.Random):
    return rng.choice(HOSTILE)


def mutate(value, rng: random.Random, depth: int = 0):
    """``value`` with one field (at any depth) replaced, removed or added."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.7:
        key = rng.choice(list(value))
        out = dict(value)
        action = rng.random()
        if action < 0.2:
            out.pop(key)
        elif action < 0.3:
            out[rng.choice(["extra", "", "0"])] = hostile(rng)
        else:
            out[key] = mutate(value[key], rng, depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.7:
        out = list(value)
        index = rng.randrange(len(out))
        if rng.random() < 0.2:
            out.pop(index)
        else:
            out[index] = mutate(out[index], rng, depth + 1)
        return out
    return hostile(rng)


def expect_user_error_or_result(call, *args, **kwargs):
    """Run one case: its result, or ``None`` after a user error whose message is one line."""
    try:
        return call(*args, **kwargs)
    except USER_ERRORS as exc:
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text, repr(text)
        return None


def dumps(value) -> str:
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return "{"


# ------------------------------------------------------------------------------------------------ tables
CALIBRATION = {"mean+covar": [{"mask": "radial:25", "sigma": 0.05, "scale": 0.9, "fitted_on": "val.h5",
                               "fitted_for_k": [2.0], "params": {"lam": 0.2}}]}


def test_generated_calibration_tables(tmp_path):
    from genreg_viewer.evaluation.calibration import std_scale_for_run
    from genreg_viewer.weight_sets import WeightSet

    rng = random.Random(22)
    folder = tmp_path / "set"
    (folder / "tuned").mkdir(parents=True)
    weight_set = WeightSet("fuzz", folder)
    for case in range(400):
        (folder / "tuned" / "calibration.json").write_text(dumps(mutate(CALIBRATION, rng)))
        found = expect_user_error_or_result(std_scale_for_run, "mean+covar", "radial:25", 0.05, weight_set=weight_set)
        if found is not None:
            assert math.isfinite(found.scale) and found.scale > 0, case


TUNED = {"pnp-admm": [{"sampling_fraction": 0.1, "sigma": 0.05, "params": {"denoiser_sigma": 0.05, "rho": 1.0}},
                      {"sampling_fraction": 0.02, "sigma": 0.0125, "params": {"rho": 2.0}}]}


def test_generated_tuned_tables(tmp_path):
    from genreg_viewer.physics import radial_mask, simulate_measurement
    from genreg_viewer.recon import Problem, get_method
    from genreg_viewer.weight_sets import WeightSet

    rng = random.Random(23)
    folder = tmp_path / "set"
    (folder / "tuned").mkdir(parents=True)
    truth = torch.full((1, 1, 32, 32), 0.5)
    problem = Problem(simulate_measurement(truth, radial_mask(8, (32, 32)), 0.05, 0), truth,
                      weight_set=WeightSet("fuzz", folder))
    method = get_method("pnp-admm")
    for case in range(400):
        (folder / "tuned" / "pnp.json").write_text(dumps(mutate(TUNED, rng)))
        defaults = expect_user_error_or_result(method.defaults_for, problem)
        if defaults is not None:
            method.resolve_params(defaults), case  # every value a tuned table gives passes the declarations


# ------------------------------------------------------------------------------------------------ sessions
def test_generated_session_metadata(qapp, tmp_path):
    from genreg_viewer.application import ExperimentState, ImageInfo, RunRecord
    from genreg_viewer.application import bundles, session_schema, sessions
    from genreg_viewer.physics import radial_mask

    state = ExperimentState(shape=(32, 32))
    yy, xx = np.mgrid[:32, :32]
    image = (0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    state.set_image(image, ImageInfo(source="test image"))
    state.set_mask(radial_mask(8, (32, 32)), "radial:8")
    state.add_result(RunRecord(run_id=1, method="adjoint", title="Adjoint", image=image, params={"a": 1},
                               iterations=1, seconds=0.1, device="cpu", psnr=20.0, ssim=0.5, setting=state.setting()))
    good = sessions.make_bundle(state, gui={"method": {"method": "tv", "params": {"lam": 0.1}, "edited": ["lam"]},
                                           "comparison": {"window": [0.0, 1.0], "region": [1, 1, 4, 4]}, "tab": 1})
    rng = random.Random(24)
    for case in range(600):
        meta = mutate(json.loads(json.dumps(good.meta)), rng)
        bundle = bundles.Bundle(meta if isinstance(meta, dict) else {"format": "x"}, dict(good.arrays))
        expect_user_error_or_result(session_schema.check_bundle, bundle)
        try:
            session_schema._describe(tmp_path, bundle)
        except bundles.SessionError as exc:
            assert "\n" not in str(exc), case


# ------------------------------------------------------------------------------------------------ weight sets
def test_generated_weightset_descriptions(tmp_path):
    from genreg_viewer.weight_sets import resolve_weight_set

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "x.safetensors").write_bytes(b"")
    rng = random.Random(25)
    base = {"name": "mine", "description": "d", "data": "phantoms", "terms": "none", "fallback": "phantom"}
    for _ in range(300):
        (folder / "weightset.json").write_text(dumps(mutate(base, rng)))
        found = expect_user_error_or_result(resolve_weight_set, str(folder))
        if found is not None:
            assert isinstance(found.name, str) and found.fallback in (None, "phantom", "real-knee")


def test_generated_vae_configs(tmp_path):
    """Configs are checked before a network is built; each case builds on the meta device at most."""
    from genreg_viewer.models.flow import FlowConfig
    from genreg_viewer.models.vae import VAEConfig

    rng = random.Random(26)
    bases = [(VAEConfig, {"image_size": 32, "latent_dim": 8, "widths": [4, 8], "decoder_widths": [8, 4], "patch": 4,
                          "covariance_kind": "identity", "identity_rho": 0.01, "log_diag_min": -2.0,
                          "log_diag_max": 6.0, "dropout": 0.1, "batch_norm": True, "neighbourhood": 3,
                          "coarse_channels": 0, "latent_channels": 0, "coarse_blocks": 0}),
             (FlowConfig, FlowConfig().to_dict())]
    for _ in range(600):
        config_class, base = rng.choice(bases)
        config = mutate(base, rng)
        try:
            config_class.from_dict(config)
        except (ValueError, TypeError) as exc:  # generator_from_weights reports both as a WeightsError line
            assert "\n" not in str(exc)


# ------------------------------------------------------------------------------------------------ typed values
def test_generated_mask_specs():
    from genreg_viewer.physics import mask_from_spec

    rng = random.Random(27)
    kinds = ["radial", "golden", "cartesian", "random", "full", "RADIAL", "", "x"]
    numbers = ["0", "1", "-1", "25", "1e9", "nan", "inf", "0.5", "1.5", "", "abc", "9" * 40, "1e-300"]
    for _ in range(500):
        parts = [rng.choice(kinds)] + [rng.choice(numbers) for _ in range(rng.randrange(0, 3))]
        mask = expect_user_error_or_result(mask_from_spec, ":".join(parts), (32, 32), rng.randrange(0, 5))
        if mask is not None:
            assert mask.shape == (32, 32) and mask.dtype == bool


def test_generated_method_parameters():
    from genreg_viewer.recon import all_methods

    rng = random.Random(28)
    texts = ["0", "-1", "1", "1e9", "1e400", "nan", "inf", "-inf", "", "abc", "0.5", "2**63", "9" * 40, "true",
             "none", " 3 ", "1_000", "0x10", "1e-400"]
    methods = all_methods()
    for _ in range(800):
        method = rng.choice(methods)
        if not method.parameters:
            continue
        parameter = rng.choice(method.parameters)
        value = rng.choice(texts) if rng.random() < 0.7 else hostile(rng)
        params = expect_user_error_or_result(method.resolve_params, {parameter.name: value})
        if params is not None and isinstance(params[parameter.name], float):
            assert math.isfinite(params[parameter.name]), (method.name, parameter.name, value)


@pytest.mark.parametrize("seed", range(4))
def test_generated_output_paths(tmp_path, seed):
    import os

    from genreg_viewer.fileio import atomic_write_text, check_writable

    rng = random.Random(seed)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    candidates = ["", " ", str(tmp_path), str(blocker / "below.txt"), str(fifo), os.devnull, "/dev/zero",
                  str(tmp_path / "new" / "deeper" / "out.txt"), str(tmp_path / ("n" * 300)), str(tmp_path / "ok.txt")]
    for _ in range(25):
        path = rng.choice(candidates)
        checked = expect_user_error_or_result(check_writable, path, "--out")
        if checked is not None:
            expect_user_error_or_result(atomic_write_text, path, "x")
    assert os.path.exists(os.devnull) and not Path(os.devnull).is_file()
    assert not [p for p in tmp_path.rglob(".*genreg-*")]  # no temporary left behind


# ------------------------------------------------------------------------------------------------ array files
def npy_bytes(descr: str, shape: tuple, fortran: bool, data: bytes) -> bytes:
    header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + data


def test_generated_npy_images_and_masks(tmp_path):
    """Headers of every kind (types numpy cannot hold as pixels, odd shapes, truncated or missing data) through the
    image and mask loaders."""
    from genreg_viewer.data.loading import describe_file, load_image
    from genreg_viewer.physics.masks import load_mask

    rng = random.Random(29)
    descrs = ["'<f4'", "'<f8'", "'<c8'", "'|b1'", "'|u1'", "'>i8'", "'<f2'", "'<U3'", "'<M8[s]'", "'|V8'",
              "[('a', '<f4'), ('b', '<f4')]", "'|O'", "'<m8[s]'", "'|S4'"]
    shapes = [(), (0,), (5,), (0, 0), (1, 1), (16, 16), (32, 32), (3, 16, 16), (16, 16, 3), (2, 0, 16),
              (1, 1, 1, 1), (100000, 100000), (2**40, 2)]
    path = tmp_path / "array.npy"
    for case in range(300):
        descr, shape = rng.choice(descrs), rng.choice(shapes)
        size = int(np.prod(shape)) if shape else 1
        itemsize = 8 if "8" in descr or "V8" in descr or "M8" in descr else 4
        data = bytes(rng.randrange(256) for _ in range(min(size * itemsize, 4096)))
        if rng.random() < 0.3:
            data = data[:rng.randrange(len(data) + 1)]
        path.write_bytes(npy_bytes(descr, shape, rng.random() < 0.2, data))
        loaded = expect_user_error_or_result(load_image, path, size=None)
        if loaded is not None:
            assert descr in ("'<f4'", "'<f8'", "'<c8'", "'|b1'", "'|u1'", "'>i8'", "'<f2'"), (case, descr)
            assert np.isfinite(loaded.image).all() and loaded.image.min() >= 0 and loaded.image.max() <= 1, case
        expect_user_error_or_result(describe_file, path)
        mask = expect_user_error_or_result(load_mask, path, None)
        if mask is not None:
            assert mask.dtype == bool and mask.ndim == 2, case


def test_generated_slice_sets(tmp_path):
    """Slice sets with images, volume and slice datasets of random types, shapes and lengths through every reader
    of slice sets."""
    import h5py

    from genreg_viewer.data.dataset import load_slice_set, load_slice_set_sources
    from genreg_viewer.data.loading import describe_file
    from genreg_viewer.evaluation.evaluate import load_evaluation_images

    rng = random.Random(30)
    image_shapes = [(2, 128, 128), (1, 128, 128), (0, 128, 128), (2, 64, 64), (128, 128), (2, 128, 128, 1), None]
    image_types = ["f4", "f8", "u1", "c8", "b1", "S3", "i8"]
    lists = [["a.h5", "b.h5"], ["a.h5"], [1.0, 2.0], [], None, ["x"] * 5]
    path = tmp_path / "set.h5"
    for case in range(150):
        with h5py.File(path, "w") as f:
            shape, kind = rng.choice(image_shapes), rng.choice(image_types)
            if shape is not None:
                if kind == "S3":
                    f.create_dataset("images", data=np.full(shape, b"abc", dtype="S3"))
                else:
                    f.create_dataset("images", data=(np.random.default_rng(case).random(shape) * 2).astype(kind))
            volume = rng.choice(lists)
            if volume is not None:
                if volume and isinstance(volume[0], str):
                    f.create_dataset("volume", data=np.array(volume, dtype=object), dtype=h5py.string_dtype())
                else:
                    f.create_dataset("volume", data=np.array(volume, dtype="f8"))
            if rng.random() < 0.8:
                f.create_dataset("slice", data=np.arange(rng.randrange(0, 4), dtype=rng.choice(["i4", "f4"])))
            if rng.random() < 0.5:
                f.attrs["format"] = rng.choice(["genreg-slice-set", 5, b"\xff"])
        images = expect_user_error_or_result(load_slice_set, path)
        if images is not None:
            assert images.dtype == np.float32 and images.ndim == 3 and np.isfinite(images).all(), case
        sources = expect_user_error_or_result(load_slice_set_sources, path)
        if sources is not None:
            assert all(isinstance(v, str) and isinstance(i, int) for v, i in sources), case
        expect_user_error_or_result(describe_file, path)
        selection = expect_user_error_or_result(load_evaluation_images, str(path), rng.choice([None, 1, 5]))
        if selection is not None:
            assert tuple(selection.images.shape[1:]) == (1, 128, 128) and len(selection.sources) == len(
                selection.indices), case


def test_generated_session_arrays(qapp, tmp_path):
    """Session files whose arrays have random types and shapes (the metadata valid) through read and check."""
    from genreg_viewer.application import bundles, session_schema

    rng = random.Random(31)
    shapes = [(32, 32), (16, 16), (2, 2), (32,), (), (1, 32, 32), (129, 129), (0, 32)]
    kinds = ["f4", "f8", "f2", "u1", "b1", "c8", "i8", "U2"]
    meta = {"format": bundles.FORMAT_NAME, "version": 1, "kind": "session", "image_info": {"source": "x"},
            "mask_spec": "radial:8", "sigma": 0.05, "seed": 0,
            "runs": [{"run_id": 1, "method": "adjoint", "title": "Adjoint", "psnr": 20.0, "ssim": 0.5,
                      "extras": ["std_map"]}],
            "arrays": ["ground_truth", "mask", "run1__image", "run1__std_map"]}

    def array(rng) -> np.ndarray:
        shape, kind = rng.choice(shapes), rng.choice(kinds)
        values = np.random.default_rng(rng.randrange(1000)).random(shape)
        if rng.random() < 0.1:
            values = np.full(shape, np.nan)
        return values.astype(kind)

    for suffix in (".npz", ".h5"):
        for case in range(75):
            arrays = {name: array(rng) for name in meta["arrays"] if rng.random() < 0.95}
            path = tmp_path / f"s{case}{suffix}"
            try:
                bundles.write_bundle(path, bundles.Bundle(dict(meta), arrays))
            except (ValueError, TypeError):
                continue  # what the writer itself refuses
            bundle = expect_user_error_or_result(bundles.read_bundle, path)
            if bundle is not None:
                contents = expect_user_error_or_result(session_schema.check_bundle, bundle)
                if contents is not None:
                    assert np.isfinite(contents.image).all() and contents.image.shape == contents.mask.shape, case
                    for record in contents.records:  # no NaN run is shown as a result
                        assert np.isfinite(record.image).all(), case
                        assert all(np.isfinite(a).all() for a in record.arrays.values() if a.dtype.kind == "f"), case


# ------------------------------------------------------------------------------------------------ CLI numbers
def test_generated_cli_numbers(capsys, tmp_path):
    """``genreg recon`` with hostile numbers in its options: exit 0 with finite scores, or exit 2 with one line
    (argparse's own refusals, exit 2 through SystemExit, count as one line too)."""
    import torch

    from genreg_viewer.cli.main import main

    image = tmp_path / "image.npy"
    yy, xx = np.mgrid[:32, :32]
    np.save(image, (0.5 + 0.4 * np.sin(xx / 5.0) * np.cos(yy / 3.0)).astype(np.float32))
    rng = random.Random(32)
    numbers = ["0", "1", "-1", "2", "1e9", "1e400", "nan", "inf", "-inf", "", "abc", "0.5", "9" * 40, "0x10",
               "1e-400", str(2**63), str(2**31)]
    options = ["--slice", "--noise", "--seed", "--iters", "--threads"]
    threads = torch.get_num_threads()
    try:
        for case in range(120):
            chosen = rng.sample(options, rng.randrange(1, 3))
            args = ["recon", str(image), "--method", rng.choice(["adjoint", "zero-filled"]), "--mask",
                    rng.choice(["radial:8", "random:0.3", "full"]), "--device", "cpu", "--json"]
            for option in chosen:
                args += [option, rng.choice(numbers)]
            if "--iters" in chosen and args[args.index("--iters") + 1] not in ("0", "1", "2", "-1"):
                args[args.index("--iters") + 1] = "3"  # a long run is not the point here
            try:
                code = main(args)
            except SystemExit as exc:  # argparse: "invalid int value", one usage line and one error line
                code = exc.code
            captured = capsys.readouterr()
            assert code in (0, 2), (case, args, code)
            assert "Traceback" not in captured.err, (case, args)
            if code == 0:
                summary = json.loads(captured.out)
                assert math.isfinite(summary["psnr"]) and math.isfinite(summary["ssim"]), (case, args)
            elif "usage:" not in captured.err:
                assert len(captured.err.strip().splitlines()) == 1, (case, args, captured.err)
    finally:
        torch.set_num_threads(threads)


def test_generated_weight_files(tmp_path):
    """Weight JSON documents of the bundled DnCNN and variational network with mutated configs and manifests,
    loaded as the methods load them: a network, or one WeightsError line naming the file."""
    import shutil

    from genreg_viewer.models.weights import WeightsError
    from genreg_viewer.recon.learned.common import load_network
    from genreg_viewer.recon.learned.pnp import _build_denoiser
    from genreg_viewer.recon.learned.varnet import _build
    from genreg_viewer.weight_sets import BUNDLED_SETS

    rng = random.Random(33)
    networks = {"dncnn": _build_denoiser, "varnet-radial25-sigma0.05": _build}
    originals = {}
    for name in networks:
        for suffix in (".safetensors", ".json"):
            shutil.copy(BUNDLED_SETS["phantom"] / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
        originals[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for case in range(120):
        name = rng.choice(list(networks))
        document = dict(originals[name])
        part = rng.choice(["config", "config", "tensors", "document"])
        if part == "document":
            document = mutate(document, rng)
        else:
            document[part] = mutate(document[part], rng)
        (tmp_path / f"{name}.json").write_text(dumps(document))
        try:
            module, _, _ = load_network(str(tmp_path / name), networks[name], torch.device("cpu"))
        except WeightsError as exc:
            assert "\n" not in str(exc) and f"{name}" in str(exc), (case, str(exc))
        else:
            assert sum(p.numel() for p in module.parameters()) > 0, case


# ------------------------------------------------------------------------------------------------ checkpoints
def test_generated_checkpoints(tmp_path):
    """Resume payloads with fields removed, retyped or resized: refused in one line, or loadable into the network
    and its optimiser with a step inside the run."""
    from genreg_viewer.training.loop import Plan, Schedule, _check_checkpoint

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    network(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    good = {"identity": {"a": 1}, "trainable": network.state_dict(), "optimizer": optimizer.state_dict(), "step": 3,
            "history": [{"loss": 1.0}], "curve": [[1, 0.5]], "seconds": 1.5, "skipped": 0, "running": 0.7,
            "buffers": {}}
    plan = Plan(Schedule(1e-3), period=2, steps=8)
    rng = random.Random(34)
    tensors = [torch.zeros(4), torch.zeros(4, 3), torch.zeros(()), torch.full((4,), float("nan")),
               torch.zeros(4, dtype=torch.int64)]
    for case in range(300):
        payload = dict(good)
        key = rng.choice(list(good))
        action = rng.random()
        if action < 0.2:
            payload.pop(key)
        elif key == "trainable" and action < 0.7:
            state = dict(good["trainable"])
            name = rng.choice(list(state))
            state[name] = rng.choice(tensors) if rng.random() < 0.7 else hostile(rng)
            payload["trainable"] = state
        else:
            payload[key] = hostile(rng) if rng.random() < 0.8 else rng.choice(tensors)
        try:
            step = _check_checkpoint(payload, tmp_path / "x.checkpoint.pt", network, plan)
        except ValueError as exc:
            assert "\n" not in str(exc) and "x.checkpoint.pt" in str(exc), case
            continue
        assert isinstance(step, int) and 0 <= step <= plan.total_steps, case
        copy = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        copy.load_state_dict(payload["trainable"])  # names and shapes were checked


# ------------------------------------------------------------------------------------------------ memory
def test_hostile_files_stay_within_a_memory_limit(tmp_path):
    """Small files declaring huge data, run through the command line in one process whose address space is capped
    at 3 GiB: each must end in one line and exit 2, without a MemoryError."""
    import os
    import resource
    import subprocess
    import sys

    import h5py

    def npy_header(path: Path, shape: tuple, descr: str = "<f4") -> str:
        path.write_bytes(npy_bytes(repr(descr), shape, False, b""))
        return str(path)

    files = {
        "npy": npy_header(tmp_path / "huge.npy", (2, 40000, 40000)),
        "kspace npy": npy_header(tmp_path / "k.npy", (8192, 8192), "<c8"),
        "mask npy": npy_header(tmp_path / "mask.npy", (100000, 100000), "|b1"),
    }
    with h5py.File(tmp_path / "volume.h5", "w") as f:
        f.create_dataset("reconstruction_esc", shape=(2, 40000, 40000), dtype="f4", chunks=(1, 1000, 1000),
                         compression="gzip")
    with h5py.File(tmp_path / "chunks.h5", "w") as f:
        f.create_dataset("reconstruction_esc", shape=(1, 8192, 8192), dtype="f4", chunks=(1, 1, 1))
    with h5py.File(tmp_path / "kspace.h5", "w") as f:
        f.create_dataset("kspace", shape=(2, 15, 2048, 2048), dtype="c8", chunks=(1, 1, 2048, 2048),
                         compression="gzip")
    with h5py.File(tmp_path / "set.h5", "w") as f:
        f.create_dataset("images", shape=(200000, 128, 128), dtype="f8", chunks=(1, 128, 128), compression="gzip")
    image = str(tmp_path / "image.npy")
    np.save(image, np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64))
    commands = [
        ["recon", files["npy"], "--method", "adjoint"],
        ["recon", "--kspace", files["kspace npy"], "--method", "adjoint"],
        ["recon", image, "--mask", files["mask npy"], "--method", "adjoint"],
        ["recon", str(tmp_path / "volume.h5"), "--method", "adjoint"],
        ["recon", str(tmp_path / "chunks.h5"), "--method", "adjoint"],
        ["recon", str(tmp_path / "kspace.h5"), "--method", "adjoint"],
        ["evaluate", str(tmp_path / "set.h5"), "--methods", "adjoint", "--out", str(tmp_path / "r.csv")],
        ["train", "vae", "phantom:4", "--held-out", "phantom:999999999999", "--out", str(tmp_path / "run"),
         "--epochs", "1"],
    ]
    script = (
        "import contextlib, io, json, sys\n"
        "from genreg_viewer.cli.main import main\n"
        "results = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        code = main(args + ['--device', 'cpu'])\n"
        "    results.append([code, err.getvalue().strip().splitlines()[-1:]])\n"
        "print(json.dumps(results))\n"
    )

    def capped() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    run = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], preexec_fn=capped,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "GENREG_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for args, (code, last) in zip(commands, results):
        assert code == 2 and last and ": error: " in last[0] and "MemoryError" not in last[0], (args, code, last)
        assert "limit" in last[0] or "must have between" in last[0], (args, last)  # refused by size, from headers
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "run").exists()
