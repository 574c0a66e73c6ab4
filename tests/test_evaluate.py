"""``genreg evaluate``: rows against an independent numpy oracle, resuming, torn lines, the summary's statistics,
bad input, and a 2-process gloo run under ``torch.distributed.run`` that merges into the single-process CSV."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genreg_viewer.cli.main import main
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.evaluation import evaluate as ev
from genreg_viewer.physics import radial_mask

PHANTOMS = "phantom:3:1000000"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def without_time(rows, also=()):
    return [{k: v for k, v in row.items() if k not in ("seconds", *also)} for row in rows]


def evaluate(tmp_path: Path, *extra: str, out: str = "results.csv", methods: str = "adjoint,tv") -> int:
    return main(["evaluate", PHANTOMS, "--methods", methods, "--mask", "radial:25", "--noise", "0.05",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / out), *extra])


def adjoint_psnr_oracle(image: np.ndarray, index: int, seed: int, sigma: float, spokes: int) -> float:
    """Zero-filled reconstruction with numpy's orthonormal FFT and the documented noise seed
    ``seed * 2**32 + index`` (real parts, then imaginary parts, of a CPU ``torch.randn``)."""
    mask = np.fft.ifftshift(radial_mask(spokes, image.shape))
    generator = torch.Generator().manual_seed(seed * 2**32 + index)
    noise = torch.randn((2, 1, 1, *image.shape), generator=generator, dtype=torch.float32).numpy()[:, 0, 0]
    y = (np.fft.fft2(image.astype(np.float64), norm="ortho") + sigma * (noise[0] + 1j * noise[1])) * mask
    estimate = np.clip(np.fft.ifft2(y, norm="ortho").real, 0, 1)
    return 10 * math.log10(1.0 / np.mean((estimate - image) ** 2))


def test_rows_match_an_independent_adjoint_oracle(tmp_path, capsys):
    assert evaluate(tmp_path, "--seed", "3", methods="adjoint") == 0
    rows = read_csv(tmp_path / "results.csv")
    assert [r["image"] for r in rows] == ["0", "1", "2"]
    assert {r["method"] for r in rows} == {"adjoint"} and {r["seed"] for r in rows} == {"3"}
    assert [r["source"] for r in rows] == [f"phantom seed {1_000_000 + i}" for i in range(3)]
    images = phantom_batch(3, 1_000_000)
    for row, image in zip(rows, images):
        assert float(row["psnr"]) == pytest.approx(adjoint_psnr_oracle(image, int(row["image"]), 3, 0.05, 25),
                                                   abs=2e-4)
    assert "| adjoint | 3 |" in capsys.readouterr().out
    assert not list(tmp_path.glob("results.csv.part-*"))  # merged and removed


def test_an_image_gets_the_same_data_alone_or_in_a_batch(tmp_path):
    assert evaluate(tmp_path, "--batch", "3", out="all.csv", methods="adjoint") == 0
    assert evaluate(tmp_path, "--batch", "1", "--images", "2", out="two.csv", methods="adjoint") == 0
    every = {r["image"]: r["psnr"] for r in read_csv(tmp_path / "all.csv")}
    two = read_csv(tmp_path / "two.csv")
    assert [r["image"] for r in two] == ["0", "2"]  # evenly spaced: first and last
    assert all(every[r["image"]] == r["psnr"] for r in two)


@pytest.mark.slow
def test_resume_computes_only_missing_rows_and_drops_a_torn_line(tmp_path):
    out = tmp_path / "results.csv"
    assert evaluate(tmp_path, "--batch", "2") == 0
    full = read_csv(out)
    assert len(full) == 6
    kept = [r for r in full if not (r["method"] == "tv" and r["image"] == "1")]
    text = ev.format_rows(kept, header=True) + "phantom:3:1000000,1,phantom seed 10"  # a crash mid-line
    out.write_text(text)
    assert len(ev.read_rows(out)) == 5
    config = ev.EvaluationConfig(PHANTOMS, ["adjoint", "tv"], out, batch=2, device="cpu")
    run = ev.run_evaluation(config, ev.Shard(), progress=False)
    assert (run.computed, run.skipped) == (1, 5)
    resumed = read_csv(out)
    assert [r["batch"] for r in resumed if r["method"] == "tv" and r["image"] == "1"] == ["1"]  # a one-image call
    assert without_time(resumed, ["batch"]) == without_time(full, ["batch"])
    again = ev.run_evaluation(config, ev.Shard(), progress=False)
    assert (again.computed, again.skipped) == (0, 6)


def test_other_settings_live_in_the_same_csv(tmp_path):
    assert evaluate(tmp_path, methods="adjoint") == 0
    assert main(["evaluate", PHANTOMS, "--methods", "adjoint", "--noise", "0.1", "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "results.csv")]) == 0
    rows = read_csv(tmp_path / "results.csv")
    assert sorted({r["sigma"] for r in rows}) == ["0.05", "0.1"] and len(rows) == 6


def test_summary_statistics_by_hand():
    rows = []
    psnr = {"tv": [20.0, 22.0, 24.0, 26.0], "mean+covar": [21.0, 21.5, 25.5, 27.0]}
    for method, values in psnr.items():
        for image, value in enumerate(values):
            rows.append({"method": method, "image": str(image), "psnr": str(value), "ssim": "0.5",
                         "seconds": "2" if method == "tv" else "4"})
    summary = ev.summarise(rows, ["tv", "mean+covar"], "tv")
    entry = summary["methods"]["mean+covar"]
    diff = np.array([1.0, -0.5, 1.5, 1.0])
    assert entry["diff_vs_reference"] == pytest.approx(0.75)
    assert entry["diff_se"] == pytest.approx(diff.std(ddof=1) / 2)
    assert entry["wins_vs_reference"] == 3 and entry["paired_images"] == 4
    assert entry["psnr_std"] == pytest.approx(np.std(psnr["mean+covar"]))
    assert "diff_vs_reference" not in summary["methods"]["tv"]
    assert entry["params_variants"] == 1
    rows[-1]["params"] = '{"lam": 2}'  # a row from a run with other defaults
    assert ev.summarise(rows, ["tv", "mean+covar"], "tv")["methods"]["mean+covar"]["params_variants"] == 2
    table = ev.summary_table(summary)
    assert "| mean+covar | 4 | 23.75 ± 2.56 | 0.500 ± 0.000 | +0.75 ± 0.43 | 3/4 | 4.00 |" in table


def test_param_parsing():
    methods = ["tv", "mean+covar", "mean+diagonal"]
    parsed = ev.parse_method_params(["mean+covar:lam=0.2", "mu=4", "tv:alpha=0.01"], methods)
    assert parsed == {"tv": {"alpha": "0.01"}, "mean+covar": {"lam": "0.2", "mu": "4"}, "mean+diagonal": {"mu": "4"}}
    with pytest.raises(ValueError, match="none of"):
        ev.parse_method_params(["nonsense=1"], methods)
    with pytest.raises(ValueError, match="not in --methods"):
        ev.parse_method_params(["varnet:stages=1"], methods)


@pytest.mark.parametrize("args, message", [
    (["--methods", "nosuch"], "nosuch"),
    (["--methods", "adjoint", "--batch", "0"], "--batch"),
    (["--methods", "adjoint", "--images", "0"], "--images"),
    (["--methods", "adjoint", "--noise", "-1"], "--noise"),
    (["--methods", "adjoint", "--seed", str(2**40)], "--seed"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["evaluate", PHANTOMS, "--device", "cpu", "--quiet", "--out", str(tmp_path / "r.csv"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_refuses_to_append_to_a_foreign_csv(tmp_path, capsys):
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    assert main(["evaluate", PHANTOMS, "--methods", "adjoint", "--device", "cpu", "--quiet", "--out",
                 str(foreign)]) == 2
    assert "not a results CSV" in capsys.readouterr().err
    assert foreign.read_text() == "a,b\n1,2\n"


def test_shard_from_environment():
    assert ev.shard_from_environment({}) == ev.Shard(0, 1, 0)
    assert ev.shard_from_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == ev.Shard(1, 2, 1)
    with pytest.raises(ValueError):
        ev.shard_from_environment({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.slow
def test_two_gloo_processes_merge_into_the_single_process_csv(tmp_path):
    """``python -m torch.distributed.run --nproc_per_node 2`` on CPU (gloo): rank 0 merges both parts into the same
    rows (timings aside) as one process with the same batches."""
    args = ["evaluate", "phantom:5:1000000", "--methods", "adjoint,tv", "--batch", "2", "--device", "cpu",
            "--threads", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "single.csv")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "genreg_viewer.cli.main", *args, "--out", str(tmp_path / "multi.csv")],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "rank 1/2" in completed.stderr and "rank 0/2" in completed.stderr
    single, multi = read_csv(tmp_path / "single.csv"), read_csv(tmp_path / "multi.csv")
    assert len(multi) == 10
    assert without_time(multi) == without_time(single)
    assert not list(tmp_path.glob("multi.csv.part-*"))
    assert "| tv | 5 |" in completed.stdout  # rank 0 prints the summary, once
    assert completed.stdout.count("| tv | 5 |") == 1
