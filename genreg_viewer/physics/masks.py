"""Sampling masks: boolean ``H x W`` arrays with the k-space centre (DC) in the middle, at ``(H//2, W//2)``.

Mask specs (CLI, GUI, config files): ``radial:N``, ``golden:N``, ``cartesian:CENTRE_ROWS:P``, ``random:FRACTION``,
``full``, or the path of a ``.png``/``.npy`` mask.

Every parameter is checked before anything is allocated: ``1 <= N <= MAX_SPOKES``, ``0 <= CENTRE_ROWS <= H``,
``P`` in [0, 1], ``FRACTION`` in (0, 1] (NaN and infinity are refused), shapes of at most ``MAX_MASK_SIDE`` pixels a
side, and seeds that are non-negative integers; anything else is a :class:`MaskError`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from ..defaults import IMAGE_SHAPE
from ..fileio import atomic_write
from ..validators import check_seed, is_whole_number

GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))  # 2*pi/phi^2 ~ 137.51 degrees, the golden angle for half-lines

#: most spokes a radial or golden-angle mask may have. Half-lines of length ``r`` cover every pixel within radius
#: ``r`` once there are about ``2 pi r`` of them, so ``pi * N`` spokes (402 at 128 x 128, 1609 at 512 x 512) already
#: sample an ``N x N`` k-space nearly everywhere; each spoke costs one rasterisation pass.
MAX_SPOKES = 2048
#: largest mask side (rows or columns) accepted; a ``4096 x 4096`` mask is 16 MiB, far beyond MRI matrix sizes
MAX_MASK_SIDE = 4096
#: the mask specs :func:`mask_from_spec` understands, for messages
SPEC_FORMS = "radial:N, golden:N, cartesian:CENTRE_ROWS:P, random:FRACTION, full, or a .png/.npy file"
#: file suffixes :func:`save_mask` writes
MASK_SAVE_SUFFIXES = (".png", ".npy")


class MaskError(ValueError):
    """A mask spec or mask file that cannot be used."""


def check_mask_shape(shape) -> tuple[int, int]:
    """``shape`` as ``(H, W)``: two whole numbers in ``1..MAX_MASK_SIDE``, else a :class:`MaskError`."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise MaskError(f"a mask shape must be (rows, columns), got {shape!r}") from None
    if len(dims) != 2 or not all(is_whole_number(d) for d in dims):
        raise MaskError(f"a mask shape must be two whole numbers (rows, columns), got {shape!r}")
    h, w = int(dims[0]), int(dims[1])
    if not (1 <= h <= MAX_MASK_SIDE and 1 <= w <= MAX_MASK_SIDE):
        raise MaskError(f"a mask must have between 1 and {MAX_MASK_SIDE} rows and columns, got {h} x {w}")
    return h, w


def _check_spokes(spokes, what: str) -> int:
    if not is_whole_number(spokes):
        raise MaskError(f"the number of spokes of a {what} mask must be a whole number, got {spokes!r}")
    if not 1 <= spokes <= MAX_SPOKES:
        raise MaskError(f"a {what} mask needs between 1 and {MAX_SPOKES} spokes, got {int(spokes)}")
    return int(spokes)


def _check_seed(seed) -> int:
    return check_seed(seed, "the mask seed", MaskError)


def _check_fraction(value, low_open: bool, what: str) -> float:
    """``value`` as a float in ``[0, 1]`` (``(0, 1]`` with ``low_open``); NaN, infinity and non-numbers are refused."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MaskError(f"{what} must be a number, got {value!r}") from None
    inside = (0 < number <= 1) if low_open else (0 <= number <= 1)  # False for NaN
    if not inside:
        raise MaskError(f"{what} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value}")
    return number


def _spoke_directions(spokes: int) -> np.ndarray:
    """``(sin t, cos t)`` for ``t = 2 pi k / spokes``, ``k = 0 .. spokes-1``, as a ``(spokes, 2)`` float64 array
    with the symmetries of the exact values.

    Each angle is reduced with integer arithmetic to ``phi = (pi/2) j / spokes`` in ``[0, pi/4]``; ``sin phi`` and
    ``cos phi`` are evaluated once there and the quadrant and octant reflections only swap and negate them. So spokes
    related by a reflection or a quarter turn get bit-identical magnitudes, and the angles whose sine or cosine is
    rational (by Niven's theorem only multiples of 30 degrees: 0, 1/2, 1) get those values exactly: the 270-degree
    spoke has cosine 0, not ``cos(3 pi / 2) = -1.8e-16``, which used to put it in two different columns.
    """
    directions = np.empty((spokes, 2), dtype=np.float64)
    for k in range(spokes):
        quadrant, rem = divmod(4 * k, spokes)  # angle = quadrant * 90 deg + (pi/2) rem / spokes
        swap = 2 * rem > spokes  # in the upper half of the quadrant: phi = 90 deg - angle
        j = spokes - rem if swap else rem
        if j == 0:
            s, c = 0.0, 1.0
        elif 3 * j == spokes:  # 30 degrees
            s, c = 0.5, math.sqrt(3.0) / 2
        elif 2 * j == spokes:  # 45 degrees
            s = c = math.sqrt(0.5)
        else:
            phi = (math.pi / 2) * j / spokes
            s, c = math.sin(phi), math.cos(phi)
        if swap:
            s, c = c, s
        # rotate (sin, cos) by quarter turns: +90 deg maps (s, c) to (c, -s)
        directions[k] = ((s, c), (c, -s), (-s, -c), (-c, s))[quadrant]
    return directions


def _spokes_mask(directions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise half-lines from the centre along unit ``directions`` (rows of ``(sin t, cos t)``).

    As in the paper's reference operator: the radius steps 0, 1, 2, ... out to the corners and each point
    ``(c_r + r sin t, c_c + r cos t)`` is floored to the grid. At 128x128 this gives 2.1% coverage for 5 spokes,
    10.2% for 25, 17.9% for 45 and 45.0% for 125 (``tests/test_physics.py`` pins these numbers). The offsets
    ``r sin t`` and ``r cos t`` are floored before the integer centre is added, so a spoke and its mirror image
    (negated offsets) floor consistently: ``floor(-v) = -floor(v) - 1`` for every non-integer float ``v``.
    """
    h, w = shape
    cr, cc = h // 2, w // 2
    radius = np.arange(int(math.ceil(math.hypot(h, w) / 2)) + 2, dtype=np.float64)
    mask = np.zeros(shape, dtype=bool)
    for s, c in np.asarray(directions, dtype=np.float64):
        rows = cr + np.floor(radius * s).astype(np.int64)
        cols = cc + np.floor(radius * c).astype(np.int64)
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        mask[rows[inside], cols[inside]] = True
    return mask


def radial_mask(spokes: int, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """``spokes`` (``1..MAX_SPOKES``) equally spaced half-lines from the centre at angles ``2 pi k / spokes``.

    The rasterisation is that of the exact angles (see :func:`_spoke_directions`), so the mask inherits the symmetries
    of the spoke set: ``t -> -t`` for every count, ``t -> 180 deg - t`` for even counts and ``t -> 90 deg - t``
    (transposition about the centre pixel) for counts divisible by 4; ``tests/test_physics.py`` derives how the floor
    maps each of them onto pixels.
    """
    spokes = _check_spokes(spokes, "radial")
    return _spokes_mask(_spoke_directions(spokes), check_mask_shape(shape))


def golden_angle_mask(spokes: int, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """``spokes`` (``1..MAX_SPOKES``) half-lines at angles ``k * 137.5 deg`` (golden-angle ordering: any prefix is
    near-uniform)."""
    spokes = _check_spokes(spokes, "golden-angle")
    angles = GOLDEN_ANGLE * np.arange(spokes)
    return _spokes_mask(np.stack([np.sin(angles), np.cos(angles)], axis=1), check_mask_shape(shape))


def cartesian_mask(
    centre_rows: int, probability: float, shape: tuple[int, int] = IMAGE_SHAPE, seed: int = 0
) -> np.ndarray:
    """Full k-space rows: the ``centre_rows`` rows around DC plus every other row with ``probability`` (seeded).

    ``probability = 1`` samples everything; ``0 <= centre_rows <= H``.
    """
    h, w = shape = check_mask_shape(shape)
    probability = _check_fraction(probability, False, "cartesian row probability")
    if not is_whole_number(centre_rows) or not 0 <= centre_rows <= h:
        raise MaskError(f"cartesian centre rows must be a whole number between 0 and {h}, got {centre_rows!r}")
    centre_rows = int(centre_rows)
    rng = np.random.default_rng(_check_seed(seed))
    rows = rng.random(h) < probability
    start = h // 2 - centre_rows // 2
    rows[start : start + centre_rows] = True
    mask = np.zeros(shape, dtype=bool)
    mask[rows, :] = True
    return mask


def random_mask(fraction: float, shape: tuple[int, int] = IMAGE_SHAPE, seed: int = 0, decay: float = 2.0) -> np.ndarray:
    """Variable-density random points: ``round(fraction * H * W)`` distinct coefficients drawn (seeded) with
    probability proportional to ``(1 - r / r_max)^decay + 0.02`` (dense centre, sparse edges); DC always kept."""
    fraction = _check_fraction(fraction, True, "random mask fraction")
    if not (isinstance(decay, (int, float, np.integer, np.floating)) and math.isfinite(decay) and decay >= 0):
        raise MaskError(f"random mask density decay must be a finite number >= 0, got {decay!r}")
    h, w = shape = check_mask_shape(shape)
    seed = _check_seed(seed)
    rr, cc = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    radius = np.hypot(rr, cc)
    weights = (1.0 - radius / (radius.max() + 1e-9)) ** decay + 0.02
    weights[h // 2, w // 2] = 0.0
    count = max(int(round(fraction * h * w)) - 1, 0)
    mask = np.zeros(h * w, dtype=bool)
    if count:  # a 1 x 1 mask has no coefficient besides DC (and all-zero weights)
        rng = np.random.default_rng(seed)
        mask[rng.choice(h * w, size=count, replace=False, p=(weights / weights.sum()).ravel())] = True
    centred = mask.reshape(shape)
    centred[h // 2, w // 2] = True
    return centred


def as_mask_array(mask) -> np.ndarray:
    """Validate and convert a mask (numpy/torch/list) into a 2-D boolean numpy array."""
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    array = np.asarray(mask)
    if array.ndim != 2:
        raise MaskError(f"a mask must be a 2-D array, got shape {array.shape}")
    if array.dtype != bool:
        if not np.isfinite(array.astype(np.float64)).all():
            raise MaskError("the mask contains NaN or infinite values")
        array = array != 0
    return array


def _check_file_shape(shape, path: Path) -> None:
    try:
        check_mask_shape(shape)
    except MaskError as exc:
        raise MaskError(f"mask {path}: {exc}") from None


def load_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Load a mask from ``.png``/image (non-black pixels are sampled) or ``.npy`` (non-zero entries are sampled).

    The file stores the mask centred (DC in the middle), as ``save_mask`` writes it.
    """
    from ..data.npyfiles import read_npy_file_header
    from ..data.errors import DataError

    path = Path(path)
    if not path.exists():
        raise MaskError(f"mask file not found: {path}")
    if path.is_dir():
        raise MaskError(f"{path} is a folder, not a mask file")
    from ..fileio import NotRegularFileError, check_not_special

    try:
        check_not_special(path, "mask file")
    except NotRegularFileError as exc:  # a FIFO or /dev/stdin would block the run
        raise MaskError(str(exc).replace("; give a file name", "")) from None
    try:
        if path.suffix.lower() == ".npy":  # the header is checked before the data is read
            header = read_npy_file_header(path)
            if len(header.shape) != 2:
                raise MaskError(f"mask {path} must be a 2-D array, got shape {header.shape}")
            if header.dtype.kind not in "biuf" or header.dtype.fields is not None:
                raise MaskError(f"mask {path} holds {header.dtype}; a mask is boolean or numeric (non-zero: "
                                "sampled)")
            _check_file_shape(header.shape, path)
            array = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as img:
                _check_file_shape((img.height, img.width), path)  # from the header, before decoding
                array = np.asarray(img.convert("L")) > 127
    except MaskError:
        raise
    except DataError as exc:
        raise MaskError(str(exc)) from None
    except Exception as exc:  # corrupt file, unsupported format
        raise MaskError(f"could not read mask file {path}: {exc}") from exc
    mask = as_mask_array(array)
    if shape is not None and mask.shape != tuple(shape):
        raise MaskError(f"mask {path} has shape {mask.shape}, expected {tuple(shape)}")
    return mask


def check_mask_save_path(path: str | Path) -> Path:
    """``path`` as a :class:`~pathlib.Path` if :func:`save_mask` can write it (suffix in ``MASK_SAVE_SUFFIXES``)."""
    path = Path(path)
    if path.suffix.lower() not in MASK_SAVE_SUFFIXES:
        raise MaskError(
            f"cannot save a mask as {path.name!r}: unsupported file type {path.suffix or '(no extension)'!r}; "
            f"use {' or '.join(MASK_SAVE_SUFFIXES)}"
        )
    return path


def save_mask(mask, path: str | Path) -> Path:
    """Write a mask atomically as ``.npy`` (boolean) or an 8-bit ``.png`` (white = sampled); any other suffix is a
    :class:`MaskError`."""
    path = check_mask_save_path(path)
    mask = as_mask_array(mask)
    if path.suffix.lower() == ".npy":
        return atomic_write(path, lambda tmp: np.save(tmp, mask))
    from PIL import Image

    return atomic_write(path, lambda tmp: Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG"))


def mask_fingerprint(mask) -> str:
    """A short hash identifying a boolean mask exactly (shape and pattern): the first 16 hex digits of
    ``sha256(packbits(mask) + str(shape))``; stored with trained variational networks to recognise their mask."""
    mask = np.asarray(mask, dtype=bool)
    digest = hashlib.sha256(np.packbits(mask).tobytes() + str(mask.shape).encode()).hexdigest()
    return digest[:16]


def _number(text: str, kind, what: str):
    try:
        return kind(text)
    except ValueError:
        raise MaskError(f"{what} must be a number, got {text!r}") from None


def mask_from_spec(spec: str, shape: tuple[int, ...] = IMAGE_SHAPE, seed: int = 0) -> np.ndarray:
    """Build a mask from a spec string (see module docstring)."""
    shape = check_mask_shape(shape)
    spec = str(spec).strip()
    if not spec:
        raise MaskError(f"the mask spec is empty; use {SPEC_FORMS}")
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    args = rest.split(":") if rest else []
    if kind == "radial" and len(args) == 1:
        return radial_mask(_number(args[0], int, "number of spokes"), shape)
    if kind == "golden" and len(args) == 1:
        return golden_angle_mask(_number(args[0], int, "number of spokes"), shape)
    if kind == "cartesian" and len(args) == 2:
        return cartesian_mask(
            _number(args[0], int, "centre rows"), _number(args[1], float, "row probability"), shape, seed
        )
    if kind == "random" and len(args) == 1:
        return random_mask(_number(args[0], float, "random fraction"), shape, seed)
    if kind == "full" and not args:
        return np.ones(shape, dtype=bool)
    if Path(spec).suffix.lower() in (".png", ".npy", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg") or Path(spec).exists():
        return load_mask(spec, shape)
    raise MaskError(f"unknown mask spec {spec!r}; use {SPEC_FORMS}")
