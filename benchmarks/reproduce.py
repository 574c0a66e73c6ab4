"""Regenerate the experiment figures of Duff, Simpson, Ehrhardt & Campbell (2023), "VAEs with Structured Image
Covariance Applied to Compressed Sensing MRI", on held-out synthetic knee phantoms.

    python benchmarks/reproduce.py --figure all --images 50 --device cuda      # every figure, 50 test phantoms
    python benchmarks/reproduce.py --figure 7 --images 4 --threads 1           # one figure on the CPU
    python benchmarks/reproduce.py --figure 3 --quick --methods tv mean+covar  # fewer settings, two methods

Each figure N is written as ``figN.png`` plus ``figN.csv`` (one row per image, method and setting: PSNR, SSIM,
seconds, iterations, the parameters used) into ``--out`` (default ``docs/figures``), and ``manifest.json`` there
records the images, device, weight set and commit of each figure. A figure's files are written as soon as it is
done, so an interrupted run keeps the finished figures.

    fig 3   PSNR and SSIM against radial spokes (5, 12, 25, 45, 125) at sigma 0.05 and 0.0125, main methods
    fig 5   example reconstructions at 5, 25, 45 and 125 spokes (sigma 0.05)
    fig 6   example reconstructions at sigma 0.2, 0.05 and 0.0125 (25 spokes)
    fig 7   ablation mean+identity / mean+diagonal / mean+covar: against spokes (sigma 0.05) and against sigma
            0.0125 .. 0.2 (25 spokes)
    fig 8   range, Narnhofer19, PnP-ADMM and mean+covar on the same images (25 spokes, sigma 0.05) with error maps
    fig 9   the methods of fig 8 as curves against spokes (sigma 0.05) and against sigma 0.0125/0.05/0.2
    fig 10  Cartesian sampling (16 centre rows + rows with probability 0.25, sigma 0.05): generalisation of every
            method, the generative ones included (the variational network was trained on radial masks)

Every (method, setting) is ONE batched registry run over all images (``run_method`` with the shipped, tuned
defaults; the joint methods without their posterior std map), shared between the figures that need it, on
``--device``. Methods are never tuned here. Test phantoms have seeds 1,000,000+ (training < 1,000,000, tuning
2,000,000+); each image's k-space noise is drawn from its own seed, so an image's data do not depend on --images.

``--data SLICESET.h5 --weights real-knee`` runs the same figures on real slices for local use only: images derived
from real scans must not be committed, so the output then defaults to runs/figures-real and docs/figures is refused.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from figures_common import (
    JOINT, KEPT_EXAMPLES, MethodRun, RunCache, Setting, csv_rows, git_commit, phantom_images, pyplot, radial,
    sampled_percent, slice_set_images, style, update_manifest, write_csv,
)

from genreg_viewer.device import resolve_device
from genreg_viewer.physics import mask_from_spec
from genreg_viewer.recon import method_names
from genreg_viewer.weight_sets import use_weight_set

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "docs" / "figures"
REAL_DATA_OUT = ROOT / "runs" / "figures-real"
FIGURES = ("3", "5", "6", "7", "8", "9", "10")

MAIN_METHODS = ("adjoint", "tv", "pnp-admm", "varnet", "range", "mean+covar")
ABLATION = JOINT
GENERATIVE_COMPARISON = ("range", "narnhofer19", "pnp-admm", "mean+covar")
CARTESIAN_METHODS = ("adjoint", "tv", "varnet", "pnp-admm", "range", "narnhofer19") + JOINT


class Plan:
    """Which settings and methods each figure uses (``--quick`` thins the settings, ``--methods`` filters the
    methods, ``--add-methods`` adds methods to figs. 3, 5, 6 and 10)."""

    def __init__(self, quick: bool = False, methods: list[str] | None = None, add_methods: list[str] | None = None,
                 spokes: list[int] | None = None, cartesian: list[str] | None = None):
        self.spokes = tuple(spokes) if spokes else ((5, 25, 125) if quick else (5, 12, 25, 45, 125))
        self.curve_sigmas = (0.05, 0.0125)  # fig 3
        self.grid_spokes = tuple(s for s in (5, 25, 45, 125) if not quick or s in self.spokes)  # fig 5
        self.grid_sigmas = (0.2, 0.05, 0.0125)  # figs 6 and 9
        self.noise_sigmas = (0.0125, 0.05, 0.2) if quick else (0.0125, 0.025, 0.05, 0.1, 0.2)  # fig 7
        self.comparison_spokes, self.comparison_sigma = 25, 0.05  # figs 6-9
        self.cartesian = tuple(cartesian) if cartesian else ("cartesian:16:0.25",)
        extra = tuple(m for m in (add_methods or []) if m not in MAIN_METHODS)
        keep = (lambda names: tuple(m for m in names if m in methods)) if methods else (lambda names: tuple(names))
        self.main = keep(MAIN_METHODS + extra)
        self.ablation = keep(ABLATION)
        self.comparison = keep(GENERATIVE_COMPARISON)
        self.cartesian_methods = keep(CARTESIAN_METHODS + tuple(m for m in extra if m not in CARTESIAN_METHODS))


# ---- drawing helpers ------------------------------------------------------------------------------------------------

def _label(run: MethodRun, total: int) -> str:
    return run.method if run.count == total else f"{run.method} ({run.count} images)"


def _curve(axes, runs: list[MethodRun], xs: list[float], metric: str, total: int, dashed: bool = False) -> None:
    if not runs:
        return
    means = [r.mean_and_error(metric) for r in runs]
    kwargs = style(runs[0].method)
    if dashed:
        kwargs.update(linestyle="--", alpha=0.7)
    axes.errorbar(xs, [m for m, _ in means], yerr=[e for _, e in means], capsize=2, markersize=4, linewidth=1.3,
                  label=_label(runs[0], total), **kwargs)


def _log_axis(axes, ticks: list[float], labels: list[str], xlabel: str) -> None:
    """A logarithmic x axis with a labelled tick at each curve point and no minor ticks."""
    axes.set_xscale("log")
    axes.set_xticks(ticks)
    axes.set_xticklabels(labels, fontsize=7)
    axes.minorticks_off()
    axes.set_xlabel(xlabel)
    axes.grid(alpha=0.3)


def _spokes_axis(axes, spokes: tuple[int, ...]) -> None:
    _log_axis(axes, list(spokes), [f"{s}\n{sampled_percent(f'radial:{s}'):.1f}%" for s in spokes],
              "radial spokes (sampled fraction)")


def _sigma_axis(axes, sigmas: tuple[float, ...]) -> None:
    _log_axis(axes, list(sigmas), [f"{s:g}" for s in sigmas], "k-space noise sigma")


#: the per-image numbers printed on an image
_LABEL = {"color": "yellow", "fontsize": 5.5, "va": "bottom", "bbox": {"facecolor": "black", "alpha": 0.6, "pad": 1,
                                                                         "linewidth": 0}}


def _show(axes, image: np.ndarray, title: str = "", vmax: float = 1.0, cmap: str = "gray") -> None:
    axes.imshow(image, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=7)


def _runs_at(cache: RunCache, methods, settings) -> list[MethodRun]:
    """The runs of ``methods`` at ``settings`` (each once, in this order; failed runs left out)."""
    runs = []
    for setting in dict.fromkeys(settings):
        for method in dict.fromkeys(methods):
            run = cache.run(method, setting)
            if run is not None:
                runs.append(run)
    return runs


def _in_order(runs: list[MethodRun], method: str, settings) -> list[MethodRun]:
    """``method``'s runs at ``settings``, in the order of ``settings`` (the points of one curve)."""
    by_setting = {r.setting: r for r in runs if r.method == method}
    return [by_setting[s] for s in settings if s in by_setting]


# ---- the figures ----------------------------------------------------------------------------------------------------

def figure_3(cache: RunCache, plan: Plan, total: int):
    settings = [radial(s, sigma) for sigma in plan.curve_sigmas for s in plan.spokes]
    runs = _runs_at(cache, plan.main, settings)
    plt = pyplot()
    figure, axes = plt.subplots(2, len(plan.curve_sigmas), figsize=(4.6 * len(plan.curve_sigmas), 6.6), dpi=130,
                                squeeze=False)
    for column, sigma in enumerate(plan.curve_sigmas):
        for row, metric in enumerate(("psnr", "ssim")):
            ax = axes[row, column]
            for method in plan.main:
                line = _in_order(runs, method, [radial(s, sigma) for s in plan.spokes])
                _curve(ax, line, [r.setting.spokes for r in line], metric, total)
            _spokes_axis(ax, plan.spokes)
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
            if row == 0:
                ax.set_title(f"sigma {sigma:g}", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"Fig. 3: PSNR and SSIM against radial spokes ({total} test phantoms, mean ± s.e.)", fontsize=9)
    figure.tight_layout()
    return figure, runs


def _example_grid(cache: RunCache, methods, settings, row_labels, title: str, total: int, example: int,
                  first_column: str):
    runs = _runs_at(cache, methods, settings)
    plt = pyplot()
    columns = 1 + len(methods) + 1
    figure, axes = plt.subplots(len(settings), columns, figsize=(1.45 * columns, 1.6 * len(settings) + 0.5), dpi=130,
                                squeeze=False)
    truth = cache.test.images[example, 0].numpy()
    for row, setting in enumerate(settings):
        ax = axes[row, 0]
        if first_column == "mask":
            _show(ax, mask_from_spec(setting.mask, truth.shape, 0).astype(float),
                  "mask" if row == 0 else "")
        else:
            adjoint = cache.run("adjoint", setting)
            _show(ax, adjoint.examples[example] if adjoint is not None else np.zeros_like(truth),
                  "adjoint" if row == 0 else "")
        ax.set_ylabel(row_labels[row], fontsize=7)
        for column, method in enumerate(methods, start=1):
            ax = axes[row, column]
            run = next((r for r in runs if r.method == method and r.setting == setting), None)
            if run is None:
                _show(ax, np.zeros_like(truth), f"{method}\nfailed" if row == 0 else "failed")
                continue
            _show(ax, run.examples[example], method if row == 0 else "")
            ax.text(2, 125, f"{run.psnr[example]:.2f} dB\n{run.ssim[example]:.3f}", **_LABEL)
        _show(axes[row, -1], truth, "ground truth" if row == 0 else "")
    figure.suptitle(f"{title} (test phantom seed {cache.test.seeds[example]}; PSNR/SSIM of this image; CSV: all "
                    f"{total} images)", fontsize=8)
    figure.tight_layout()
    return figure, runs


def figure_5(cache: RunCache, plan: Plan, total: int, example: int):
    settings = [radial(s, plan.comparison_sigma) for s in plan.grid_spokes]
    labels = [f"{s} spokes\n({sampled_percent(f'radial:{s}'):.1f}%)" for s in plan.grid_spokes]
    return _example_grid(cache, plan.main, settings, labels, f"Fig. 5: reconstructions against spokes, sigma "
                         f"{plan.comparison_sigma:g}", total, example, "mask")


def figure_6(cache: RunCache, plan: Plan, total: int, example: int):
    settings = [radial(plan.comparison_spokes, sigma) for sigma in plan.grid_sigmas]
    labels = [f"sigma {sigma:g}" for sigma in plan.grid_sigmas]
    methods = tuple(m for m in plan.main if m != "adjoint")
    return _example_grid(cache, methods, settings, labels, f"Fig. 6: reconstructions against noise, "
                         f"{plan.comparison_spokes} spokes", total, example, "adjoint")


def _spokes_and_noise_curves(cache: RunCache, plan: Plan, methods, reference, total: int, title: str, sigmas):
    spokes_settings = [radial(s, plan.comparison_sigma) for s in plan.spokes]
    noise_settings = [radial(plan.comparison_spokes, sigma) for sigma in sigmas]
    runs = _runs_at(cache, methods + reference, spokes_settings + noise_settings)
    plt = pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(9.2, 6.6), dpi=130)
    for row, metric in enumerate(("psnr", "ssim")):
        for method in methods + reference:
            dashed = method in reference
            left = _in_order(runs, method, spokes_settings)
            _curve(axes[row, 0], left, [r.setting.spokes for r in left], metric, total, dashed)
            right = _in_order(runs, method, sorted(noise_settings, key=lambda s: s.sigma))
            _curve(axes[row, 1], right, [r.setting.sigma for r in right], metric, total, dashed)
        _spokes_axis(axes[row, 0], plan.spokes)
        _sigma_axis(axes[row, 1], tuple(sorted(sigmas)))
        for ax in axes[row]:
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
    axes[0, 0].set_title(f"against spokes, sigma {plan.comparison_sigma:g}", fontsize=9)
    axes[0, 1].set_title(f"against noise, {plan.comparison_spokes} spokes", fontsize=9)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(f"{title} ({total} test phantoms, mean ± s.e.)", fontsize=9)
    figure.tight_layout()
    return figure, runs


def figure_7(cache: RunCache, plan: Plan, total: int):
    reference = ("tv",) if "tv" in plan.main else ()
    return _spokes_and_noise_curves(cache, plan, plan.ablation, reference, total,
                                    "Fig. 7: covariance ablation (tv dashed, for reference)", plan.noise_sigmas)


def figure_8(cache: RunCache, plan: Plan, total: int, example: int):
    setting = radial(plan.comparison_spokes, plan.comparison_sigma)
    methods = ("adjoint",) + tuple(plan.comparison)
    runs = _runs_at(cache, methods, [setting])
    shown = [i for i in range(min(2, KEPT_EXAMPLES, total))]
    if example not in shown:
        shown = [example] + shown[:1]
    plt = pyplot()
    columns = 1 + len(runs)
    figure, axes = plt.subplots(2 * len(shown), columns, figsize=(1.55 * columns, 3.3 * len(shown) + 0.6), dpi=130,
                                squeeze=False)
    for block, index in enumerate(shown):
        truth = cache.test.images[index, 0].numpy()
        _show(axes[2 * block, 0], truth, f"ground truth\nseed {cache.test.seeds[index]}")
        axes[2 * block + 1, 0].axis("off")
        for column, run in enumerate(runs, start=1):
            mean, error = run.mean_and_error("psnr")
            title = f"{run.method}\n{mean:.2f} ± {error:.2f} dB" if block == 0 else ""
            _show(axes[2 * block, column], run.examples[index], title)
            axes[2 * block, column].text(2, 125, f"{run.psnr[index]:.2f} dB", **_LABEL)
            _show(axes[2 * block + 1, column], np.abs(run.examples[index] - truth), "", vmax=0.25, cmap="magma")
    axes[1, 0].text(0.5, 0.5, "|error|\n(0 .. 0.25)", ha="center", va="center", fontsize=7,
                    transform=axes[1, 0].transAxes)
    figure.suptitle(f"Fig. 8: generative methods on the same images, {setting.label()} (column titles: mean ± s.e. "
                    f"over {total} images)", fontsize=8)
    figure.tight_layout()
    return figure, runs


def figure_9(cache: RunCache, plan: Plan, total: int):
    return _spokes_and_noise_curves(cache, plan, plan.comparison, (), total,
                                    "Fig. 9: range, Narnhofer19, PnP-ADMM and mean+covar as curves",
                                    plan.grid_sigmas)


def figure_10(cache: RunCache, plan: Plan, total: int, example: int):
    settings = [Setting(mask, plan.comparison_sigma) for mask in plan.cartesian]
    runs = _runs_at(cache, plan.cartesian_methods, settings)
    plt = pyplot()
    methods = [m for m in plan.cartesian_methods if any(r.method == m for r in runs)]
    columns = 2 + len(methods)
    figure_width = max(1.1 * columns, 9.0)  # an image column about 1 inch (130 px: the images' own 128 px)
    figure = plt.figure(figsize=(figure_width, 1.3 * len(settings) + 3.2), dpi=130, layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=[1.3 * len(settings), 3.0])
    image_axes = top.subplots(len(settings), columns, squeeze=False)
    truth = cache.test.images[example, 0].numpy()
    for row, setting in enumerate(settings):
        mask = mask_from_spec(setting.mask, truth.shape, 0)
        ax = image_axes[row, 0]
        _show(ax, mask.astype(float), "mask" if row == 0 else "")
        ax.set_ylabel(f"{setting.mask}\n({100 * mask.mean():.1f}%)", fontsize=6)
        _show(image_axes[row, 1], truth, "ground truth" if row == 0 else "")
        for column, method in enumerate(methods, start=2):
            ax = image_axes[row, column]
            run = next((r for r in runs if r.method == method and r.setting == setting), None)
            if run is None:
                _show(ax, np.zeros_like(truth), "failed")
                continue
            _show(ax, run.examples[example], method if row == 0 else "")
            ax.text(2, 125, f"{run.psnr[example]:.2f} dB", **_LABEL)
    bar_axes = bottom.subplots(1, 2)
    for ax, metric in zip(bar_axes, ("psnr", "ssim")):
        width = 0.8 / len(settings)
        for k, setting in enumerate(settings):
            values = [next((r for r in runs if r.method == m and r.setting == setting), None) for m in methods]
            means = [v.mean_and_error(metric) if v is not None else (math.nan, 0.0) for v in values]
            positions = np.arange(len(methods)) + (k - (len(settings) - 1) / 2) * width
            ax.bar(positions, [m for m, _ in means], width, yerr=[e for _, e in means], capsize=2,
                   color=[style(m)["color"] for m in methods], alpha=1.0 - 0.35 * k, label=setting.mask)
        ax.set_xticks(np.arange(len(methods)))
        ax.set_xticklabels(methods, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        low = min((r.mean_and_error(metric)[0] for r in runs), default=0.0)
        ax.set_ylim(bottom=math.floor(low - 1) if metric == "psnr" else max(0.0, low - 0.1))
        ax.grid(alpha=0.3, axis="y")
        if len(settings) > 1:
            ax.legend(fontsize=6)
    figure.suptitle(f"Fig. 10: Cartesian sampling, sigma {plan.comparison_sigma:g} ({total} test phantoms, "
                    f"mean ± s.e.; varnet was trained on radial masks)", fontsize=8)
    return figure, runs


# ---- driver ---------------------------------------------------------------------------------------------------------

def make_figure(name: str, cache: RunCache, plan: Plan, total: int, example: int):
    if name == "3":
        return figure_3(cache, plan, total)
    if name == "5":
        return figure_5(cache, plan, total, example)
    if name == "6":
        return figure_6(cache, plan, total, example)
    if name == "7":
        return figure_7(cache, plan, total)
    if name == "8":
        return figure_8(cache, plan, total, example)
    if name == "9":
        return figure_9(cache, plan, total)
    return figure_10(cache, plan, total, example)


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", nargs="+", default=["all"], help="3 5 6 7 8 9 10 or all (default: all)")
    parser.add_argument("--images", type=int, default=8, help="test images (the paper used 50; default 8)")
    parser.add_argument("--weights", default="phantom", help="weight set name or folder (default: phantom)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--out", default=None, help=f"output folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--data", default=None, help="a slice-set .h5 of real images (local use only, never commit "
                                                     "the output; default output then runs/figures-real)")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (in every figure)")
    parser.add_argument("--add-methods", nargs="+", default=None,
                        help="extra registry methods for figs. 3, 5, 6 and 10 (e.g. flow-prior edip)")
    parser.add_argument("--cap", nargs="+", default=[], metavar="METHOD=N",
                        help="run METHOD on its first N images only (stated in the legends and the CSV)")
    parser.add_argument("--spokes", nargs="+", type=int, default=None, help="spoke counts of the curves")
    parser.add_argument("--cartesian", nargs="+", default=None, help="Cartesian mask specs of fig. 10 "
                                                                     "(default cartesian:16:0.25)")
    parser.add_argument("--quick", action="store_true", help="fewer settings: spokes 5/25/125, sigma 0.0125/0.05/0.2")
    parser.add_argument("--example", type=int, default=0, help=f"image shown in the example grids (< {KEPT_EXAMPLES})")
    parser.add_argument("--store", default=None,
                        help="keep every run in this folder and reuse the runs found there (resume an interrupted "
                             "run; delete the folder when the code or the weights change)")
    parser.add_argument("--stored-only", action="store_true",
                        help="with --store: redraw from the stored runs only; missing runs are reported, not run")
    parser.add_argument("--summary", action="store_true",
                        help="run nothing: print each figure's CSV in --out as a markdown table (mean ± s.e.)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    figures = FIGURES if "all" in args.figure else tuple(dict.fromkeys(args.figure))
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        parser.error(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)} or all")
    args.figures = figures
    if args.images < 1:
        parser.error("--images must be at least 1")
    if not 0 <= args.example < min(KEPT_EXAMPLES, args.images):
        parser.error(f"--example must be between 0 and {min(KEPT_EXAMPLES, args.images) - 1}")
    known = set(method_names())
    for name in (args.methods or []) + (args.add_methods or []):
        if name not in known:
            parser.error(f"unknown method {name!r}; see 'genreg methods'")
    args.caps = {}
    for item in args.cap:
        method, _, count = item.partition("=")
        if method not in known or not count.isdigit() or int(count) < 1:
            parser.error(f"--cap expects METHOD=N with a registry method and N >= 1, got {item!r}")
        args.caps[method] = int(count)
    if args.stored_only and not args.store:
        parser.error("--stored-only needs --store DIR")
    if args.spokes and any(s < 1 for s in args.spokes):
        parser.error("--spokes must be positive")
    return args


def summarise(folder: Path, figures) -> None:
    """Mean ± standard error of PSNR and SSIM per setting and method, from the CSVs in ``folder``."""
    from figures_common import read_csv

    for name in figures:
        path = folder / f"fig{name}.csv"
        if not path.is_file():
            print(f"fig {name}: no {path}")
            continue
        groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for row in read_csv(path):
            groups.setdefault((row["mask"], row["sigma"], row["method"]), []).append(
                (float(row["psnr"]), float(row["ssim"])))
        print(f"\nfig {name} ({path})\n")
        print("| mask | sigma | method | images | PSNR (dB) | SSIM |\n|---|---|---|---|---|---|")
        for (mask, sigma, method), values in groups.items():
            psnr, ssim = np.array(values).T
            print(f"| {mask} | {sigma} | {method} | {len(values)} | {psnr.mean():.2f} ± {_standard_error(psnr):.2f} | "
                  f"{ssim.mean():.3f} ± {_standard_error(ssim):.3f} |")


def _standard_error(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if args.summary:
        summarise(Path(args.out).resolve() if args.out else DEFAULT_OUT, args.figures)
        return 0
    torch.set_num_threads(max(1, args.threads))
    try:
        device = resolve_device(args.device)
        weight_set = use_weight_set(args.weights)
    except ValueError as exc:  # an unknown or missing device, an unknown weight set: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.data:
        out = Path(args.out).resolve() if args.out else REAL_DATA_OUT
        if out == DEFAULT_OUT.resolve() or DEFAULT_OUT.resolve() in out.parents:
            print("error: figures of real scans must not go to docs/figures (they would be committed); "
                  "choose another --out", file=sys.stderr)
            return 2
        print(f"WARNING: {args.data} holds real scans: the images in {out} are derived from them; use them "
              "locally and never commit them.", flush=True)
        test = slice_set_images(args.data, args.images)
    else:
        out = Path(args.out).resolve() if args.out else DEFAULT_OUT
        test = phantom_images(args.images)
    plan = Plan(args.quick, args.methods, args.add_methods, args.spokes, args.cartesian)
    cache = RunCache(test, device, args.caps, log=lambda text: print(text, flush=True),
                     store=Path(args.store) if args.store else None, weights=weight_set.name, commit=git_commit(),
                     stored_only=args.stored_only)
    total = len(test.seeds)
    commit = git_commit()
    print(f"{total} images ({test.source}), weights {weight_set.name}, device {device}, commit {commit}, "
          f"figures {' '.join(args.figures)} -> {out}", flush=True)
    failed_figures = []
    timings = {}
    start_all = time.perf_counter()
    for name in args.figures:
        start = time.perf_counter()
        print(f"fig {name}:", flush=True)
        cache.attempted.clear()
        if not _figure_methods(name, plan):
            print(f"fig {name}: none of its methods is left after --methods; not drawn", flush=True)
            continue
        try:
            figure, runs = make_figure(name, cache, plan, total, args.example)
            out.mkdir(parents=True, exist_ok=True)
            figure.savefig(out / f"fig{name}.png")
            pyplot().close(figure)
            write_csv(out / f"fig{name}.csv", csv_rows(f"fig{name}", runs, test))
        except Exception:  # one figure's failure must not lose the others
            traceback.print_exc()
            failed_figures.append(name)
            continue
        seconds = time.perf_counter() - start
        timings[name] = seconds
        compute = sum(r.seconds for r in runs)
        failures = sorted(f"{m} at {s.label()}: {cache.failures[(m, s)]}" for (m, s) in cache.attempted
                          if (m, s) in cache.failures)
        update_manifest(out / "manifest.json", f"fig{name}", {
            "images": total, "source": test.source, "weights": weight_set.name, "device": str(device),
            "commit": sorted({r.commit for r in runs}) if runs else commit, "seconds_this_call": round(seconds, 1),
            "run_seconds": round(compute, 1),  # every run the figure shows, shared or stored runs included
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "methods": sorted({r.method for r in runs}),
            "images_per_method": {r.method: r.count for r in runs if r.count != total},
            "not_run": failures,
        })
        print(f"fig {name} done in {seconds:.1f} s (new runs included) -> {out / f'fig{name}.png'}", flush=True)
    print("timing: " + ", ".join(f"fig {k} {v:.1f} s" for k, v in timings.items())
          + f"; total {time.perf_counter() - start_all:.1f} s", flush=True)
    if cache.failures:
        print("runs that did not happen:\n  " + "\n  ".join(f"{m} at {s.label()}: {why}"
                                                           for (m, s), why in cache.failures.items()), flush=True)
    if failed_figures:
        print(f"FAILED figures: {' '.join(failed_figures)}", file=sys.stderr, flush=True)
        return 1
    return 0


def _figure_methods(name: str, plan: Plan) -> tuple[str, ...]:
    return {"3": plan.main, "5": plan.main, "6": plan.main, "7": plan.ablation, "8": plan.comparison,
            "9": plan.comparison, "10": plan.cartesian_methods}[name]


if __name__ == "__main__":
    sys.exit(main())
