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


def test_radial_symmetry_and_centre():
    m = radial_mask(4, (128, 128))
    assert m[64, 64]
    assert m[64, 64:].all() and m[64:, 64].all()  # spokes at 0 and 90 degrees reach the edge


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


def test_gui_uses_the_physics_spoke_limit():
    pytest.importorskip("PyQt6")
    from genreg_viewer.gui import sweeps

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
