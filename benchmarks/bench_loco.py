r"""Leave-one-contrast-out validation of the generative prior: train without one source/contrast/plane, test on it.

    # every fold: build its training/validation sets, train the VAE (stage 1, covar, diagonal), tune on the fold's
    # own validation slices (the held-out contrast never enters), test on the held-out contrast's test slices
    python benchmarks/bench_loco.py --data-dir /work/data --out runs/loco \
        --stage1-args "--widths 64 --patch 4 --latent-channels 8 --coarse-blocks 2 --augment --intensity-curves"
    python benchmarks/bench_loco.py --out runs/loco --report   # the table of docs/REAL_KNEES.md, from the records

Sources (slice sets in ``--data-dir``, built with ``genreg dataset build``; see docs/DATA.md): MRNet coronal T1,
sagittal T2 with fat saturation and axial PD with fat saturation (``mrnet_<plane>_{train,val,test}.h5``: exams
0-1124 / 1125-1129 / 1130-) and the mridata.org sagittal PD FSE knees of RefineGAN (``refinegan_{train,val,test}.h5``:
subjects 0-13 / 14-15 / 16-19). Fold ``F`` trains on the training split of every other source (validation: their
validation splits), tunes TV's alpha and the joint methods' lambda/mu on 8 of those validation slices
(:func:`bench_real.tune_setting`, grids grown until interior) and reports, on ``--images`` evenly spaced test slices
of the held-out source, each method's PSNR/SSIM and its paired PSNR difference to TV (mean ± standard error, wins).

Each fold is resumable: a finished stage (weights present), tuning (``tuned/``) or evaluation (CSV rows) is kept.
Real data stays local (research-use terms): the folds' weights and CSVs go to ``--out``, never to the repository.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from bench_real import JOINT, evaluate_setting, load_images, tune_setting, write_tuned
import torch
from common import markdown_table

from genreg_viewer.data.merge import merge_slice_sets
from genreg_viewer.weight_sets import use_weight_set

#: fold name -> (label, slice-set stem): ``<stem>_train.h5``, ``<stem>_val.h5``, ``<stem>_test.h5``
SOURCES = {
    "mrnet-coronal-t1": ("MRNet coronal T1", "mrnet_coronal"),
    "mrnet-sagittal-t2fs": ("MRNet sagittal T2 fat-sat", "mrnet_sagittal"),
    "mrnet-axial-pdfs": ("MRNet axial PD fat-sat", "mrnet_axial"),
    "mridata-sagittal-pd": ("mridata sagittal PD FSE (RefineGAN)", "refinegan"),
}
METHODS = ("adjoint", "tv") + JOINT


def run(command: list[str], log: Path) -> None:
    """Run a ``genreg`` command, its output appended to ``log``; a failure stops the benchmark."""
    print("  $ " + shlex.join(command), flush=True)
    with open(log, "a") as handle:
        subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=True)


def fold_data(data_dir: Path, fold: str, out: Path) -> tuple[Path, Path]:
    """The fold's training and validation slice sets: the other sources' splits merged."""
    others = [stem for name, (_, stem) in SOURCES.items() if name != fold]
    sets = {}
    for split in ("train", "val"):
        path = out / f"{split}.h5"
        if not path.exists():
            merge_slice_sets(path, [data_dir / f"{stem}_{split}.h5" for stem in others])
        sets[split] = path
    return sets["train"], sets["val"]


def train_fold(train: Path, val: Path, folder: Path, args) -> None:
    """Stage 1, then the covar and diagonal covariance decoders (skipped when their weights exist)."""
    genreg = [sys.executable, "-m", "genreg_viewer.cli.main", "train"]
    common = ["--held-out", str(val), "--out", str(folder), "--threads", str(args.threads)]
    if not (folder / "vae_identity.json").exists():
        run(genreg + ["vae", str(train), *common, "--epochs", str(args.stage1_epochs), *shlex.split(args.stage1_args)],
            folder / "train.log")
    for kind in ("covar", "diagonal"):
        if not (folder / f"vae_{kind}.json").exists():
            run(genreg + ["covariance", str(train), *common, "--vae", str(folder), "--kind", kind, "--epochs",
                          str(args.stage2_epochs), *shlex.split(args.stage2_args)], folder / "train.log")


def run_fold(fold: str, args) -> dict:
    label, stem = SOURCES[fold]
    folder = args.out / fold
    folder.mkdir(parents=True, exist_ok=True)
    print(f"fold {fold}: trained without {label}", flush=True)
    train, val = fold_data(args.data_dir, fold, folder)
    train_fold(train, val, folder, args)
    use_weight_set(folder)
    if not (folder / "tuned" / "generative.json").exists():
        tuned = tune_setting(load_images(str(val), args.tune_images), args.spokes, args.sigma, METHODS)
        write_tuned(folder / "tuned", {(args.spokes, args.sigma): tuned},
                    f"{val.name} of fold {fold} ({args.tune_images} images; {label} never seen)")
    record = evaluate_setting(str(args.data_dir / f"{stem}_test.h5"), args.images, args.spokes, args.sigma, METHODS,
                              folder / f"test_radial{args.spokes}_sigma{args.sigma}.csv", args.batch, "cpu",
                              str(folder))
    record.update(fold=fold, held_out=label)
    (folder / f"record_radial{args.spokes}_sigma{args.sigma}.json").write_text(json.dumps(record, indent=1))
    return record


def report(out: Path, spokes: int, sigma: float) -> None:
    """The table of docs/REAL_KNEES.md (and the README): per held-out source and method, PSNR, SSIM and the paired
    difference to TV."""
    rows = []
    for fold in SOURCES:
        path = out / fold / f"record_radial{spokes}_sigma{sigma}.json"
        if not path.exists():
            continue
        record = json.loads(path.read_text())
        for method, entry in record["methods"].items():
            diff = (f"{entry['diff_vs_tv']:+.2f} ± {entry['diff_se']:.2f}" if "diff_vs_tv" in entry else "")
            wins = f"{entry['wins_vs_tv']}/{record['images']}" if "wins_vs_tv" in entry else ""
            rows.append([f"{record['held_out']} ({record['images']} test slices)", method,
                         f"{entry['psnr_mean']:.2f} ± {entry['psnr_std']:.2f}",
                         f"{entry['ssim_mean']:.3f}", diff, wins])
    print(markdown_table(["held out (never in training or tuning)", "method", "PSNR (dB)", "SSIM",
                          "PSNR - TV (± s.e.)", "beats TV"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("/work/data"), help="folder of the slice sets")
    parser.add_argument("--out", type=Path, default=Path("runs/loco"), help="folds' weights, CSVs and records")
    parser.add_argument("--folds", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    parser.add_argument("--stage1-args", default="--widths 64 --patch 4 --latent-channels 8 --coarse-blocks 2 "
                        "--augment --intensity-curves", help="model and augmentation options of genreg train vae")
    parser.add_argument("--stage2-args", default="--augment --intensity-curves",
                        help="options of genreg train covariance")
    parser.add_argument("--stage1-epochs", type=int, default=30, help="stage-1 epochs (default 30)")
    parser.add_argument("--stage2-epochs", type=int, default=6, help="epochs of each covariance decoder (default 6)")
    parser.add_argument("--spokes", type=int, default=25)
    parser.add_argument("--sigma", type=float, default=0.05)
    parser.add_argument("--tune-images", type=int, default=8, help="validation slices for tuning (default 8)")
    parser.add_argument("--images", type=int, default=24, help="test slices per fold (default 24)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="only print the table of the stored records")
    args = parser.parse_args()
    if not args.report:
        torch.set_num_threads(args.threads)
        for fold in args.folds:
            run_fold(fold, args)
    report(args.out, args.spokes, args.sigma)


if __name__ == "__main__":
    main()
