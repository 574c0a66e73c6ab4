"""Helpers shared by the commands that reconstruct: the ground-truth/k-space/mask/noise options, ``--param k=v``
parsing and building a :class:`~genreg_viewer.recon.Problem` from them.

Two sources of data:

* ``IMAGE`` (any file :func:`~genreg_viewer.data.loading.load_image` reads): the ground truth; the measurement is
  simulated as ``y = M F x + n`` with the mask ``--mask``, noise ``--noise`` and seed ``--seed``.
* ``--kspace FILE``: measured k-space, a complex ``(H, W)`` array (or ``(slices, H, W)``, see ``--slice``) in a
  ``.npy``/``.npz`` file, centred (DC in the middle, like the masks) with zeros where unsampled. The mask is
  ``--mask`` or else the non-zero pattern; ``--noise`` is the sigma that methods assume. No metrics unless an
  ``IMAGE`` is given as well (then it is the ground truth). The data should be scaled like the simulated data
  (the image in about [0, 1]); a warning says when its zero-filled image is far from that range.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.errors import DataError
from ..data.kspace import load_kspace
from ..data.limits import check_seed
from ..data.loading import load_image
from ..defaults import DEFAULT_MASK_SPEC, DEFAULT_NOISE_SIGMA, IMAGE_SIZE
from ..device import resolve_device
from ..physics import MaskError, Measurement, MRIOperator, check_sigma, mask_from_spec, simulate_measurement
from ..recon import ParameterError, Problem
from ..weight_sets import weight_set_choice


def add_problem_arguments(parser) -> None:
    """``IMAGE``, ``--kspace``, ``--slice``, ``--mask``, ``--noise``, ``--seed`` and ``--device``."""
    parser.add_argument("image", nargs="?", default=None,
                        help="ground-truth image (fastMRI .h5, PNG/TIFF/JPEG, .npy/.npz); optional with --kspace")
    parser.add_argument("--kspace", default=None, metavar="FILE",
                        help="reconstruct measured k-space: complex (H, W) array in .npy/.npz, centred, zero where "
                             "unsampled")
    parser.add_argument("--slice", type=int, default=None, help="slice of a volume (default: the centre one)")
    parser.add_argument("--key", default=None, metavar="NAME",
                        help="HDF5 dataset or .npz array holding the image (default: detected)")
    parser.add_argument("--mask", default=None, metavar="SPEC",
                        help=f"radial:N, golden:N, cartesian:ROWS:P, random:F, full or a .png/.npy file "
                             f"(default {DEFAULT_MASK_SPEC}; with --kspace the data's non-zero pattern)")
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE_SIGMA, metavar="SIGMA",
                        help=f"std of the real and imaginary k-space noise (default {DEFAULT_NOISE_SIGMA})")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the noise, random masks and methods, 0 <= SEED < 2**63 (default 0)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default auto)")


def add_weights_argument(parser) -> None:
    """``--weights NAME_OR_FOLDER``: the weight set the methods use (see :mod:`genreg_viewer.weight_sets`)."""
    from ..weight_sets import BUNDLED_SETS

    parser.add_argument("--weights", default=None, metavar="SET",
                        help=f"trained weights: auto, a bundled set ({', '.join(BUNDLED_SETS)}) or a folder of "
                             "weights (default: $GENREG_WEIGHTS or auto = phantom for synthetic phantoms, real-knee "
                             "for real scans)")


def apply_weights_argument(args):
    """Activate ``--weights`` (when given; ``auto`` included) and return the active
    :class:`~genreg_viewer.weight_sets.WeightSet` (in auto mode an image's own set is ``weight_set_choice(image)``)."""
    from ..weight_sets import active_weight_set, use_weight_set

    return use_weight_set(args.weights) if getattr(args, "weights", None) else active_weight_set()


def parse_param_pairs(pairs: list[str] | None) -> dict[str, str]:
    """``["alpha=0.01", "constraint=box"]`` -> ``{"alpha": "0.01", "constraint": "box"}`` (values parsed later by
    the method's :class:`~genreg_viewer.recon.Parameter` declarations)."""
    parsed: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ParameterError(f"--param expects NAME=VALUE, got {pair!r}")
        parsed[name.strip()] = value.strip()
    return parsed


@dataclass
class ProblemSetup:
    """A problem built from the command line, with what a summary or an output file reports about it."""

    problem: Problem
    info: dict[str, Any] = field(default_factory=dict)  #: mask spec and fraction, sigma, seed, shape, ...
    #: why ``problem.weight_set`` was used ("chosen", "auto: real scan", "auto: synthetic phantom")
    weights_reason: str = "chosen"

    @property
    def mask(self) -> np.ndarray:
        return self.problem.measurement.mask

    @property
    def ground_truth(self) -> np.ndarray | None:
        truth = self.problem.ground_truth
        return None if truth is None else truth[0, 0].detach().cpu().numpy()


def _measured_problem(args, device: torch.device) -> ProblemSetup:
    kspace = load_kspace(args.kspace, args.slice)
    if args.mask is not None:
        mask = mask_from_spec(args.mask, kspace.shape, args.seed)
        mask_spec = args.mask
    else:
        mask = kspace != 0
        mask_spec = "data"
        if not mask.any():
            raise MaskError(f"{args.kspace}: the k-space is all zeros, so it samples nothing")
    operator = MRIOperator(mask, device=device)
    y = torch.from_numpy(np.fft.ifftshift(kspace))[None, None].to(device) * operator.sampling
    measurement = Measurement(y=y, operator=operator, sigma=float(args.noise), seed=None)
    truth = None
    if args.image is not None:
        square = kspace.shape[0] == kspace.shape[1]
        truth = load_image(args.image, slice_index=args.slice, size=kspace.shape[0] if square else None,
                           key=args.key).image
        if truth.shape != kspace.shape:
            raise DataError(f"ground truth {args.image} has shape {truth.shape}, the k-space {kspace.shape}")
    zero_filled_max = float(measurement.zero_filled().abs().max())
    if not 0.05 <= zero_filled_max <= 20:
        print(f"warning: the zero-filled image of {args.kspace} peaks at {zero_filled_max:.3g}; the methods expect "
              "an image scaled to about [0, 1]", file=sys.stderr)
    info = {"kspace": str(args.kspace), "image": args.image}
    truth_tensor = None if truth is None else torch.from_numpy(np.asarray(truth, dtype=np.float32))
    weight_set, reason = weight_set_choice(args.kspace)
    return _setup(Problem(measurement, truth_tensor, seed=args.seed, device=device, weight_set=weight_set),
                  mask_spec, info, reason)


def _simulated_problem(args, device: torch.device) -> ProblemSetup:
    loaded = load_image(args.image, slice_index=args.slice, size=IMAGE_SIZE, key=args.key)
    truth = loaded.image
    mask_spec = DEFAULT_MASK_SPEC if args.mask is None else args.mask  # an empty --mask is an error, not the default
    mask = mask_from_spec(mask_spec, truth.shape, args.seed)
    measurement = simulate_measurement(truth, mask, args.noise, seed=args.seed, device=device)
    truth_tensor = torch.from_numpy(np.asarray(truth, dtype=np.float32))
    weight_set, reason = weight_set_choice(args.image)
    return _setup(Problem(measurement, truth_tensor, seed=args.seed, device=device, weight_set=weight_set),
                  mask_spec, {"image": str(args.image), "slice": loaded.slice_index,
                              "num_slices": int(loaded.num_slices), "key": args.key}, reason)


def _setup(problem: Problem, mask_spec: str, info: dict, weights_reason: str) -> ProblemSetup:
    operator = problem.operator
    info = {
        **info, "mask": mask_spec, "mask_fraction": operator.sampling_fraction, "sigma": problem.sigma,
        "seed": problem.seed, "shape": list(operator.shape),
    }
    return ProblemSetup(problem, info, weights_reason)


def build_problem(args) -> ProblemSetup:
    """The :class:`Problem` described by the options of :func:`add_problem_arguments`."""
    if args.image is None and args.kspace is None:
        raise ValueError("give an IMAGE (ground truth to simulate from) or --kspace FILE (measured data)")
    args.noise = check_sigma(args.noise, "--noise")
    args.seed = check_seed(args.seed, "--seed")
    device = resolve_device(args.device)
    return _measured_problem(args, device) if args.kspace is not None else _simulated_problem(args, device)
