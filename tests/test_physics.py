import math

import numpy as np
import pytest
import torch

from genreg_viewer.cli.main import main as cli_main
from genreg_viewer.physics import (
    MAX_MASK_SIDE,
    MAX_SPOKES,
    MRIOperator,
    MaskError,
    cartesian_mask,
    golden_angle_mask,
    load_mask,
    mask_fingerprint,
    mask_from_spec,
    radial_mask,
    random_mask,
    save_mask,
    simulate_measurement,
)


def _complex_randn(shape, gen):
    return torch.complex(torch.randn(shape, generator=gen, dtype=torch.float64),
                         torch.randn(shape, generator=gen, dtype=torch.float64))


def test_adjoint_identity():
    gen = torch.Generator().manual_seed(0)
    op = MRIOperator(radial_mask(25))
    x = _complex_randn((3, 1, 128, 128), gen)
    y = _complex_randn((3, 1, 128, 128), gen)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_a_ah_is_projection():
    gen = torch.Generator().manual_seed(1)
    op = MRIOperator(radial_mask(25))
    y = _complex_randn((1, 1, 128, 128), gen)
    once = op.forward(op.adjoint(y))
    twice = op.forward(op.adjoint(once))
    assert torch.allclose(once, twice, atol=1e-6)
    # A A^H = M: keeps sampled coefficients, zeroes the others
    assert torch.allclose(once, y * op.sampling, atol=1e-6)


def test_full_mask_is_identity():
    gen = torch.Generator().manual_seed(2)
    op = MRIOperator(np.ones((64, 64), bool))
    x = torch.rand((2, 1, 64, 64), generator=gen)
    assert torch.allclose(op.adjoint(op.forward(x)).real, x, atol=1e-6)
    assert torch.allclose((op.forward(x).abs() ** 2).sum(), (x**2).sum(), rtol=1e-5)  # Parseval


def test_dc_in_centre_of_mask():
    mask = cartesian_mask(1, 0.0, (32, 32))
    op = MRIOperator(mask)
    assert op.sampling[0].all() and op.sampling[1:].sum() == 0  # centre row maps to DC row


@pytest.mark.parametrize("spokes,percent", [(5, 2.1), (25, 10.2), (45, 17.9), (125, 45.0)])
def test_radial_coverage_matches_reference(spokes, percent):
    assert round(100 * radial_mask(spokes).mean(), 1) == percent


# --- radial masks against the exact geometry -------------------------------------------------------------------
# A radial mask is the set of pixels (c_r + floor(r sin t), c_c + floor(r cos t)) for t = 2 pi k / N and r = 0, 1, ...
# Two independent checks: (1) the same rasterisation in 50-digit arithmetic; (2) the symmetries of the spoke set, which
# a floored rasterisation inherits as follows. A symmetry of the angles that negates a coordinate v maps the pixel
# index floor(v) to floor(-v) = -1 - floor(v) when v is not an integer (a mirror about the pixel corner at the
# centre, i.e. np.flipud on an even side) but to -floor(v) when v is an integer. By Niven's theorem r sin t is an
# integer (r > 0) only where sin t is 0, +-1/2 or +-1, i.e. at multiples of 30 degrees; those "integer points" are
# computed below with integer arithmetic and left out of the mirror comparison (and must themselves be sampled).
# Swapping the coordinates (t -> 90 deg - t, a symmetry when 4 | N) maps pixels exactly: the mask is its own
# transpose about the centre pixel. A quarter turn about the centre pixel is NOT a symmetry once generic spokes are
# present (N = 8: the 45-degree spoke floors to (f, f), the 135-degree one to (f, -f - 1)).

# sin(m * 30 deg) = a / 2 + b * sqrt(3) / 2, as (a, b), for m = 0..11
_SIN_30 = [(0, 0), (1, 0), (0, 1), (2, 0), (0, 1), (1, 0), (0, 0), (-1, 0), (0, -1), (-2, 0), (0, -1), (-1, 0)]


def _floor_30(r: int, m: int, cosine: bool) -> int:
    """floor(r sin(m * 30 deg)) (or of the cosine), exactly, with integer arithmetic."""
    a, b = _SIN_30[(m + 3) % 12 if cosine else m % 12]
    if b == 0 or r == 0:
        return (r * a) // 2
    half = math.isqrt(3 * r * r) // 2  # floor(r sqrt(3) / 2); r sqrt(3) / 2 is irrational for r > 0
    return half if b > 0 else -half - 1


def _integer_points(spokes: int, shape, axis: int) -> np.ndarray:
    """Pixels of the spoke points whose ``axis`` coordinate (0: row offset r sin t, 1: column offset r cos t) is an
    integer: the centre and the points of spokes at multiples of 30 degrees where r sin t (r cos t) is whole."""
    h, w = shape
    out = np.zeros(shape, dtype=bool)
    out[h // 2, w // 2] = True
    for k in range(spokes):
        if (12 * k) % spokes:
            continue  # not a multiple of 30 degrees: r sin t and r cos t are irrational for r > 0
        m = 12 * k // spokes
        a, b = _SIN_30[(m + 3) % 12 if axis else m]
        if b:
            continue  # the coordinate is +-r sqrt(3) / 2
        for r in range(1, h + w):
            if (r * a) % 2 == 0:
                row, col = h // 2 + _floor_30(r, m, False), w // 2 + _floor_30(r, m, True)
                if 0 <= row < h and 0 <= col < w:
                    out[row, col] = True
    return out


def _check_mirror(mask: np.ndarray, integer_points: np.ndarray, axis: int) -> None:
    """``mask`` is symmetric under the pixel-corner mirror of ``axis`` (index i -> 2 c - 1 - i, c = size // 2) away
    from the integer points and their mirror images; the integer points are sampled."""
    assert mask[integer_points].all()
    m, e = np.moveaxis(mask, axis, 0), np.moveaxis(integer_points, axis, 0)
    c = m.shape[0] // 2
    lo, hi = max(0, 2 * c - m.shape[0]), min(m.shape[0], 2 * c)  # rows whose mirror image is on the grid
    m, e = m[lo:hi], e[lo:hi]
    compare = ~(e | e[::-1])
    assert (m == m[::-1])[compare].all(), "mask not mirror-symmetric"


def _check_transpose(mask: np.ndarray) -> None:
    """``mask[c_r + a, c_c + b] == mask[c_r + b, c_c + a]`` wherever both pixels exist."""
    h, w = mask.shape
    n = min(h // 2, w // 2)  # offsets -n .. n'-1 exist along both axes
    n_hi = min(h - h // 2, w - w // 2)
    block = mask[h // 2 - n : h // 2 + n_hi, w // 2 - n : w // 2 + n_hi]
    assert (block == block.T).all(), "mask not symmetric under swapping rows and columns"


def check_radial_symmetries(mask: np.ndarray, spokes: int) -> None:
    h, w = mask.shape
    assert mask[h // 2, w // 2:].all()  # the 0-degree spoke is exactly the half-row right of the centre
    _check_mirror(mask, _integer_points(spokes, mask.shape, 0), 0)  # t -> -t: every N
    if spokes % 2 == 0:
        assert mask[h // 2].all()  # 0 and 180 degrees
        _check_mirror(mask, _integer_points(spokes, mask.shape, 1), 1)  # t -> 180 deg - t
    if spokes % 4 == 0:
        assert mask[:, w // 2].all()  # 90 and 270 degrees: exactly the centre column
        _check_transpose(mask)  # t -> 90 deg - t


@pytest.mark.parametrize("shape", [(128, 128), (97, 130)])
def test_radial_masks_have_the_symmetries_of_exact_spokes(shape):
    for spokes in range(1, 65):
        check_radial_symmetries(radial_mask(spokes, shape), spokes)
    assert radial_mask(1, shape).sum() == shape[1] - shape[1] // 2  # one spoke: the half-row, nothing else


def _exact_radial_mask(spokes: int, shape) -> np.ndarray:
    """The radial rasterisation in 50-digit arithmetic: each sin t, cos t as a 160-bit fixed-point integer, so
    floor(r sin t) is exact unless r sin t lies within 2^-100 of an integer; such points must be the integer
    points of multiples of 30 degrees (asserted) and are taken as that integer."""
    mpmath = pytest.importorskip("mpmath")
    h, w = shape
    bits = 160
    one, tol = 1 << bits, 1 << (bits - 100)
    mask = np.zeros(shape, dtype=bool)
    with mpmath.workdps(50):
        for k in range(spokes):
            t = 2 * mpmath.pi * k / spokes
            fixed = [int(mpmath.floor(f(t) * one)) for f in (mpmath.sin, mpmath.cos)]
            for r in range(int(math.hypot(h, w) / 2) + 3):
                offsets = []
                for value in fixed:
                    scaled = r * value  # r * sin t * 2^bits, exact to within r
                    low = scaled >> bits
                    frac = scaled - (low << bits)
                    if frac <= tol * (r + 1) or one - frac <= tol * (r + 1):
                        assert (12 * k) % spokes == 0 or r == 0, (spokes, k, r)
                        low = (scaled + one // 2) >> bits  # the nearest integer
                    offsets.append(low)
                row, col = h // 2 + offsets[0], w // 2 + offsets[1]
                if 0 <= row < h and 0 <= col < w:
                    mask[row, col] = True
    return mask


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(128, 128), (97, 130)])
def test_radial_masks_match_a_high_precision_rasterisation(shape):
    for spokes in list(range(1, 65)) + [125]:
        assert (radial_mask(spokes, shape) == _exact_radial_mask(spokes, shape)).all(), spokes


def test_cli_radial_12_mask_is_symmetric(tmp_path):
    assert cli_main(["mask", "radial:12", "--out", str(tmp_path / "mask.npy")]) == 0
    mask = np.load(tmp_path / "mask.npy")
    assert mask.shape == (128, 128) and (mask == mask.T).all()  # 12 spokes: 4 | 12, transposition about (64, 64)
    assert mask[64].all() and mask[:, 64].all()
    check_radial_symmetries(mask, 12)
    assert (mask == _exact_radial_mask(12, (128, 128))).all()


def test_golden_and_random_and_cartesian():
    g = golden_angle_mask(25)
    assert 0.08 < g.mean() < 0.12
    r = random_mask(0.2, seed=3)
    assert abs(r.mean() - 0.2) < 1e-3 and r[64, 64]
    assert (random_mask(0.2, seed=3) == r).all() and not (random_mask(0.2, seed=4) == r).all()
    c = cartesian_mask(16, 0.25, seed=5)
    assert c[56:72].all() and (c.all(axis=1) | ~c.any(axis=1)).all()
    assert cartesian_mask(16, 1.0).all()


def test_mask_specs_and_files(tmp_path):
    assert (mask_from_spec("radial:25") == radial_mask(25)).all()
    assert mask_from_spec("full").all()
    for name in ("m.png", "m.npy"):
        save_mask(radial_mask(25), tmp_path / name)
        assert (load_mask(tmp_path / name) == radial_mask(25)).all()
        assert (mask_from_spec(str(tmp_path / name)) == radial_mask(25)).all()
    with pytest.raises(MaskError, match="unknown mask spec"):
        mask_from_spec("spiral:3")
    with pytest.raises(MaskError, match="must be a number"):
        mask_from_spec("radial:many")
    with pytest.raises(MaskError, match="expected"):
        load_mask(tmp_path / "m.png", shape=(64, 64))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="could not read"):
        load_mask(tmp_path / "bad.png")


def test_spoke_counts_are_bounded():
    assert radial_mask(MAX_SPOKES).all() and golden_angle_mask(MAX_SPOKES).all()  # the limit itself is allowed
    for build in (radial_mask, golden_angle_mask):
        for spokes in (0, -3, MAX_SPOKES + 1, 10**9, 2.5, float("nan"), True):
            with pytest.raises(MaskError, match="spokes"):
                build(spokes)
    # refused at once instead of rasterising a billion spokes
    for spec in ("radial:1000000000", "golden:1000000000", "radial:-1", "golden:0"):
        with pytest.raises(MaskError, match=f"between 1 and {MAX_SPOKES} spokes"):
            mask_from_spec(spec)


def test_sweeps_use_the_physics_spoke_limit():
    from genreg_viewer.application import sweeps

    assert sweeps.MAX_SPOKES is MAX_SPOKES


@pytest.mark.parametrize("spec,message", [
    ("cartesian:-1:0.5", "centre rows"),
    ("cartesian:129:0.5", "between 0 and 128"),  # more rows than the image has
    ("cartesian:4:nan", r"probability must be in \[0, 1\]"),
    ("cartesian:4:-0.1", "probability"),
    ("cartesian:4:1.5", "probability"),
    ("cartesian:4:inf", "probability"),
    ("random:nan", r"fraction must be in \(0, 1\]"),
    ("random:inf", "fraction"),
    ("random:-0.2", "fraction"),
    ("random:0", "fraction"),
    ("random:1.5", "fraction"),
])
def test_invalid_mask_parameters_are_refused(spec, message):
    with pytest.raises(MaskError, match=message):
        mask_from_spec(spec)


def test_mask_shape_and_seed_are_checked():
    for shape in ((0, 128), (-4, 128), (MAX_MASK_SIDE + 1, 16), (10**6, 10**6), (128,), (2.5, 3), "ab"):
        with pytest.raises(MaskError, match="mask"):
            mask_from_spec("full", shape)
    with pytest.raises(MaskError, match="rows and columns"):
        radial_mask(5, (10**6, 10**6))
    with pytest.raises(MaskError, match="seed"):
        mask_from_spec("random:0.2", seed=-1)
    with pytest.raises(MaskError, match="seed"):
        cartesian_mask(4, 0.5, seed=-1)
    with pytest.raises(MaskError, match="decay"):
        random_mask(0.2, decay=float("nan"))
    assert random_mask(0.5, (1, 1)).all()  # DC only: nothing to draw
    assert mask_from_spec("cartesian:8:0", (8, 8)).all()  # every row, the largest allowed centre


def test_save_mask_refuses_unsupported_suffixes(tmp_path):
    for name in ("mask.txt", "mask.jpg", "mask"):
        with pytest.raises(MaskError, match=r"unsupported file type.*use \.png or \.npy"):
            save_mask(radial_mask(5), tmp_path / name)
        assert not (tmp_path / name).exists()
    assert save_mask(radial_mask(5), tmp_path / "MASK.PNG").exists()  # suffixes are case-insensitive


def test_cli_mask_refuses_bad_output_and_spoke_counts(tmp_path, capsys):
    assert cli_main(["mask", "radial:5", "--out", str(tmp_path / "mask.txt")]) == 2
    assert "use .png or .npy" in capsys.readouterr().err and not (tmp_path / "mask.txt").exists()
    assert cli_main(["mask", "radial:1000000000", "--out", str(tmp_path / "mask.png")]) == 2
    assert f"between 1 and {MAX_SPOKES} spokes" in capsys.readouterr().err
    assert cli_main(["mask", "radial:5", "--out", str(tmp_path / "mask.png"), "--size", "0", "5"]) == 2
    assert "rows and columns" in capsys.readouterr().err and not (tmp_path / "mask.png").exists()
    assert cli_main(["mask", "radial:5", "--out", str(tmp_path / "mask.npy")]) == 0
    assert (np.load(tmp_path / "mask.npy") == radial_mask(5)).all()


def test_mask_fingerprint_identifies_shape_and_pattern():
    radial = radial_mask(25)
    assert mask_fingerprint(radial) == "fbaa6817eccbdad5"  # stored with the bundled radial:25 variational networks
    assert mask_fingerprint(radial.astype(np.uint8)) == mask_fingerprint(torch.from_numpy(radial)) == "fbaa6817eccbdad5"
    assert mask_fingerprint(radial_mask(26)) != mask_fingerprint(radial)
    # the same bits in another shape are another mask
    assert mask_fingerprint(np.zeros((8, 8), bool)) != mask_fingerprint(np.zeros((4, 16), bool))


def test_empty_mask_is_rejected():
    with pytest.raises(MaskError, match="empty"):
        MRIOperator(np.zeros((16, 16), bool))


def test_noise_statistics_and_seed():
    x = torch.zeros(1, 1, 128, 128)
    m1 = simulate_measurement(x, radial_mask(125), 0.05, seed=7)
    m2 = simulate_measurement(x, radial_mask(125), 0.05, seed=7)
    assert torch.equal(m1.y, m2.y)
    sampled = m1.y[0, 0][m1.operator.sampling.bool()]
    assert abs(sampled.real.std() - 0.05) < 0.003 and abs(sampled.imag.std() - 0.05) < 0.003
    assert (m1.y[0, 0][~m1.operator.sampling.bool()] == 0).all()


def test_nan_image_rejected():
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        simulate_measurement(x, np.ones((16, 16), bool), 0.01)
