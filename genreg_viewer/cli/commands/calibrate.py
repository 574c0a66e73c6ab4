"""``genreg calibrate DATA --methods mean+covar,mean+diagonal,latent-vi --mask radial:25 --noise 0.05``.

Measures how well the posterior std maps describe the actual errors on held-out images: the coverage of
``|x - x_hat| <= k std`` for k = 1, 2, 3 (a calibrated map gives 68.3 / 95.4 / 99.7 %) and the correlation of the
std with ``|x - x_hat|``, the area under the sparsification error (AUSE) and the uncertainty calibration error (UCE).
``--fit-on VAL`` first fits one std scale factor per method on validation images (printed and measured on DATA next
to the raw map), ``--write`` stores it in the weight set's ``tuned/calibration.json``, ``--apply`` measures DATA with
the stored factor. ``--conformal ALPHA`` also fits the split-conformal quantile ``q`` of ``|x - x_hat| / std`` on VAL
and reports the coverage of ``x_hat +- q std`` on DATA (``--write`` stores ``q`` with the factor; ``--apply`` measures
the stored ones). Conventions: :mod:`genreg_viewer.evaluation.calibration`.
"""

from __future__ import annotations

import json
import sys

import torch

from ...defaults import DEFAULT_MASK_SPEC, DEFAULT_NOISE_SIGMA
from ..common import add_weights_argument


def register(subparsers) -> None:
    from ...evaluation.calibration import CONFORMAL_LEVELS, STD_MAP_METHODS

    p = subparsers.add_parser("calibrate", help="coverage of the posterior std maps on held-out images; fit a scale")
    p.add_argument("data", help="held-out slice set .h5 or phantom:N[:SEED] to measure on")
    p.add_argument("--methods", action="append", default=None, metavar="M1,M2,...",
                   help=f"methods with a std map (default {','.join(STD_MAP_METHODS)})")
    p.add_argument("--mask", default=DEFAULT_MASK_SPEC, metavar="SPEC",
                   help=f"sampling mask (default {DEFAULT_MASK_SPEC})")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE_SIGMA, metavar="SIGMA",
                   help=f"k-space noise std (default {DEFAULT_NOISE_SIGMA})")
    p.add_argument("--seed", type=int, default=0, help="noise seed (image i: SEED * 2**32 + i, as genreg evaluate)")
    p.add_argument("--images", type=int, default=None, metavar="N", help="N images evenly spaced through DATA")
    p.add_argument("--fit-on", default=None, metavar="VAL",
                   help="validation slice set or phantom:N:SEED to fit the std scale factor on (never the test set)")
    p.add_argument("--fit-images", type=int, default=None, metavar="N", help="N images evenly spaced through VAL")
    p.add_argument("--fit-k", default="2", metavar="K[,K...]",
                   help="k whose coverage the factor matches (least squares over several; default 2: the ±2 std "
                        "interval)")
    p.add_argument("--conformal", default=None, metavar="ALPHA[,ALPHA...]",
                   help="with --fit-on: fit the conformal quantile q of |x - x_hat| / std on VAL so that "
                        "x_hat +- q std covers >= 1 - ALPHA of held-out pixels, and report its coverage on DATA")
    p.add_argument("--conformal-level", choices=CONFORMAL_LEVELS, default="pixel",
                   help="pixel: split conformal, a new pixel is covered with probability >= 1 - ALPHA (default); "
                        "image: conformal risk control, a new image's expected covered fraction is >= 1 - ALPHA "
                        "(needs >= 1/ALPHA - 1 validation images)")
    p.add_argument("--write", action="store_true", help="with --fit-on: store the factors in the weight set's tuned/")
    p.add_argument("--apply", action="store_true", help="also measure DATA with the stored factors")
    p.add_argument("--batch", type=int, default=8, metavar="B", help="images per method call (default 8)")
    p.add_argument("--param", action="append", default=[], metavar="[METHOD:]NAME=VALUE",
                   help="method parameter, repeatable (e.g. posterior_samples=32)")
    add_weights_argument(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--report", default=None, metavar="JSON", help="write every number (and the curves) as JSON")
    p.add_argument("--png", default=None, metavar="PNG", help="write the calibration plot")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="img", desc="calibrate", file=sys.stderr, dynamic_ncols=True)
    return bar, bar.update


def run(args) -> int:
    from ...device import resolve_device
    from ...evaluation import calibration as cal
    from ...evaluation.evaluate import load_evaluation_images, parse_method_list, parse_method_params
    from ...fileio import atomic_write_text, check_writable
    from ...physics import check_sigma, mask_from_spec
    from ...recon import get_method
    from ...weight_sets import use_weight_set, weight_set_for

    if args.threads is not None:
        from ...device import check_thread_count

        torch.set_num_threads(check_thread_count(args.threads))
    # --weights or GENREG_WEIGHTS, else auto: the set trained for DATA's kind (phantoms or real scans), as evaluate
    if args.weights:
        use_weight_set(args.weights)
    weight_set = weight_set_for(args.data)
    methods = parse_method_list(args.methods or list(cal.STD_MAP_METHODS))
    params = parse_method_params(args.param, methods)
    for name in methods:
        get_method(name).resolve_params(params[name])
    if args.write and not args.fit_on:
        raise ValueError("--write stores a factor fitted with --fit-on VAL; give --fit-on")
    sigma = check_sigma(args.noise, "--noise")
    try:
        fit_ks = tuple(float(k) for k in args.fit_k.split(","))
    except ValueError:
        fit_ks = ()
    if not fit_ks or not all(0 < k <= 10 for k in fit_ks):
        raise ValueError(f"--fit-k expects numbers in (0, 10] separated by commas, got {args.fit_k!r}")
    alphas = _parse_alphas(args.conformal)
    if alphas and not args.fit_on:
        raise ValueError("--conformal fits its quantile on validation images; give --fit-on VAL")
    for option in ("report", "png"):
        if getattr(args, option):
            check_writable(getattr(args, option), f"--{option}")
    stored: dict[str, float] = {}
    if args.apply:
        for name in methods:
            scale = cal.stored_scale(name, args.mask, sigma, weight_set)
            if scale is None and not args.fit_on:
                raise ValueError(f"--apply: {cal.calibration_path(weight_set)} has no factor for {name} at "
                                 f"{args.mask}, sigma {sigma}; fit one with --fit-on VAL --write")
            if scale is not None:
                stored[name] = scale
    device = resolve_device(args.device)
    test = load_evaluation_images(args.data, args.images)
    mask = mask_from_spec(args.mask, tuple(test.images.shape[-2:]), args.seed)
    validation = load_evaluation_images(args.fit_on, args.fit_images) if args.fit_on else None
    if validation is not None:
        for alpha in alphas:  # too few validation pixels (or images) for alpha: before any method runs
            cal.check_conformal_sample(alpha, int(validation.images[0].numel()) * len(validation.indices),
                                       len(validation.indices), args.conformal_level)
    total = len(methods) * (len(test.indices) + (len(validation.indices) if validation is not None else 0))
    bar, update = _progress(total, not (args.quiet or args.json))
    report: dict = {"data": args.data, "images": len(test.indices), "mask": args.mask, "sigma": sigma,
                    "seed": args.seed, "weights": weight_set.name, "fit_on": args.fit_on, "methods": {}, "notes": []}
    try:
        for name in methods:
            entry: dict = {}
            scale = stored.get(name)
            quantiles: list[dict] = []  # {"alpha", "level", "q", ...} to measure on DATA
            if args.apply and not alphas:
                stored_entry = cal.stored_entry(name, args.mask, sigma, weight_set) or {}
                quantiles = [{"alpha": float(item["alpha"]), "level": item.get("level", "pixel"),
                              "q": float(item["q"]), "source": "stored"} for item in stored_entry.get("conformal", [])]
            if validation is not None:
                run_val = cal.run_with_std_maps(name, validation, mask, sigma, args.seed, args.batch, device,
                                                params[name], update, weight_set)
                z = cal.standardised_errors(run_val.truth, run_val.estimate, run_val.std)
                scale = cal.fit_scale(z, fit_ks)
                entry["validation"] = {
                    "images": len(validation.indices), "fitted_scale": scale, "fitted_for_k": list(fit_ks),
                    "raw": cal.calibration_report(run_val.truth, run_val.estimate, run_val.std).to_dict(),
                    "scaled": cal.calibration_report(run_val.truth, run_val.estimate, run_val.std, scale).to_dict()}
                scores = z.reshape(len(validation.indices), -1)
                quantiles = [{"alpha": alpha, "level": args.conformal_level,
                              "q": cal.conformal_quantile(scores, alpha, args.conformal_level), "source": "fitted",
                              "validation_images": int(scores.shape[0]), "validation_pixels": int(scores.size)}
                             for alpha in alphas]
                if args.write:
                    fitted_on = f"{validation.data_name}, {len(validation.indices)} images"
                    path = cal.write_calibration({name: {
                        "mask": args.mask, "sigma": sigma, "scale": round(scale, 4), "fitted_on": fitted_on,
                    "fitted_for_k": list(fit_ks),
                        "params": {k: v for k, v in run_val.params.items() if isinstance(v, (int, float, str, bool))},
                        "validation_raw": _curve(entry["validation"]["raw"]),
                        "validation_scaled": _curve(entry["validation"]["scaled"]),
                        **({"conformal": [{"alpha": c["alpha"], "q": c["q"], "level": c["level"],
                                           "pixels": c["validation_pixels"], "images": c["validation_images"]}
                                          for c in quantiles]} if quantiles else {}),
                        # a mask file is not read again to place the entry: its fraction is stored
                        **({} if args.mask.partition(":")[0].lower() in cal.GENERATED_MASKS
                           else {"sampling_fraction": float(mask.mean())})}}, weight_set)
                    report["notes"].append(f"{name}: std scale {scale:.3g} fitted on {fitted_on}, written to {path}")
            run_test = cal.run_with_std_maps(name, test, mask, sigma, args.seed, args.batch, device, params[name],
                                             update, weight_set)
            entry["params"] = {k: v for k, v in run_test.params.items() if isinstance(v, (int, float, str, bool))}
            entry["seconds_per_image"] = run_test.seconds / len(test.indices)
            entry["raw"] = cal.calibration_report(run_test.truth, run_test.estimate, run_test.std).to_dict()
            if scale is not None:
                entry["scaled"] = cal.calibration_report(run_test.truth, run_test.estimate, run_test.std,
                                                         scale).to_dict()
                source = "fitted on --fit-on" if validation is not None else \
                    f"stored in {cal.calibration_path(weight_set)}"
                report["notes"].append(f"{name}: std maps also measured multiplied by {scale:.3g} ({source})")
            if quantiles:
                entry["conformal"] = [{**c, **_conformal_coverage(run_test, c["q"], c["alpha"])} for c in quantiles]
            report["methods"][name] = entry
    finally:
        if bar is not None:
            bar.close()
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=1) + "\n")
    if args.png:
        cal.plot_calibration([(f"{test.data_name}, {args.mask}, sigma {sigma:g}", report)], args.png)
    if args.json:
        print(json.dumps(report))
    else:
        print(_table(report))
        for note in report["notes"]:
            print(f"note: {note}")
    return 0


def _parse_alphas(text: str | None) -> tuple[float, ...]:
    if text is None:
        return ()
    try:
        alphas = tuple(float(a) for a in text.split(","))
    except ValueError:
        alphas = ()
    if not alphas or not all(0 < a < 1 for a in alphas) or len(alphas) > 8 or len(set(alphas)) != len(alphas):
        raise ValueError(f"--conformal expects 1 to 8 distinct numbers in (0, 1) separated by commas (the allowed "
                         f"miscoverage, e.g. 0.1 for 90 % intervals), got {text!r}")
    return alphas


def _conformal_coverage(run, q: float, alpha: float) -> dict:
    """The held-out coverage of ``x_hat +- q std`` (raw std) on a :class:`StdMapRun`: pooled, the lowest of the
    images, and the mean half-width of the intervals."""
    import numpy as np

    from ...evaluation import calibration as cal

    z = cal.standardised_errors(run.truth, run.estimate, run.std).reshape(run.truth.shape[0], -1)
    covered = z <= q
    return {"nominal": 1 - alpha, "coverage": float(covered.mean()),
            "coverage_per_image_min": float(covered.mean(axis=1).min()),
            "mean_half_width": float(q * np.mean(run.std.double().numpy()))}


def _curve(report: dict) -> dict:
    return {"k": report["curve_k"], "coverage": report["curve_coverage"], "coverage_k123": report["coverage"]}


def _table(report: dict) -> str:
    from ...evaluation.calibration import gaussian_coverage

    header = ("| method | std | images | k = 1 | k = 2 | k = 3 | corr(std, \\|err\\|) | AUSE | UCE | RMSE | "
              "RMS std |")
    lines = [header, "|" + "---|" * 11,
             f"| Gaussian (calibrated) | | | {100 * gaussian_coverage(1):.1f} % | {100 * gaussian_coverage(2):.1f} % | "
             f"{100 * gaussian_coverage(3):.1f} % | | | 0 | | |"]
    for name, entry in report["methods"].items():
        for label in ("raw", "scaled"):
            if label not in entry:
                continue
            r = entry[label]
            what = "raw" if label == "raw" else f"x {r['scale']:.3g}"
            lines.append(f"| {name} | {what} | {r['images']} | {100 * r['coverage']['1']:.1f} % | "
                         f"{100 * r['coverage']['2']:.1f} % | {100 * r['coverage']['3']:.1f} % | "
                         f"{r['correlation']:.2f} ({r['correlation_per_image']:.2f}/image) | {r['ause']:.3f} | "
                         f"{r['uce']:.2e} | {r['rmse']:.4f} | {r['rms_std']:.4f} |")
    conformal = [(name, c) for name, entry in report["methods"].items() for c in entry.get("conformal", [])]
    if conformal:
        lines += ["", "| method | conformal | alpha | q (x raw std) | coverage | nominal | lowest image | "
                      "mean half-width |", "|" + "---|" * 8]
        for name, c in conformal:
            images = c.get("validation_images", 0)
            fitted = (f"{c['level']}, fitted on {c['validation_pixels']} px of {images} image{'s' * (images != 1)}"
                      if c["source"] == "fitted" else f"{c['level']}, stored")
            lines.append(f"| {name} | {fitted} | {c['alpha']:g} | {c['q']:.3f} | {100 * c['coverage']:.1f} % | "
                         f"{100 * c['nominal']:.1f} % | {100 * c['coverage_per_image_min']:.1f} % | "
                         f"{c['mean_half_width']:.4f} |")
    return "\n".join(lines)
