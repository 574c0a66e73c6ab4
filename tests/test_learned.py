"""Learned baselines: RealSN operator norms, the exact PnP x-step, the variational network's building blocks and
setting choice, DIP, the bundled weights, cancellation and the trainers (tiny runs)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genreg_viewer.models.dncnn import RealSNConv2d, conv_operator_norm, conv_symbol_norm
from genreg_viewer.models.unet import UNet
from genreg_viewer.models.varnet import RBFActivation, VariationalStage, _InterpolatedRBF
from genreg_viewer.models.weights import WeightsError, save_weights
from genreg_viewer.physics import Measurement, mask_fingerprint, mask_from_spec, simulate_measurement
from genreg_viewer.recon import ParameterError, Problem, get_method, run_method
from genreg_viewer.recon.learned import varnet as varnet_module
from genreg_viewer.recon.learned.pnp import TUNED_FILE as PNP_TUNED_FILE
from genreg_viewer.recon.learned.pnp import load_denoiser
from genreg_viewer.tuning import tuned_table
from genreg_viewer.training.common import HELD_OUT_SEED, held_out_images, training_images


@pytest.fixture(scope="module")
def held_out():
    return held_out_images(2)


def _problem(images, spec="radial:25", sigma=0.05, seed=0):
    mask = mask_from_spec(spec, (128, 128))
    return Problem(simulate_measurement(images, mask, sigma, seed=seed), images, seed=seed)


# ------------------------------------------------------------------------------------------------ RealSN
def test_power_iteration_matches_dense_operator_norm():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 2, 3, 3, generator=gen, dtype=torch.float64)
    shape = (6, 5)
    basis = torch.eye(2 * 6 * 5, dtype=torch.float64).view(-1, 2, *shape)
    matrix = F.conv2d(basis, weight, padding=1).flatten(1).T  # columns = images of the basis vectors
    exact = torch.linalg.matrix_norm(matrix, ord=2)
    estimate, _ = conv_operator_norm(weight, shape, iterations=500, generator=gen)
    assert float(estimate) == pytest.approx(float(exact), rel=1e-6)
    # the reshaped-matrix norm (ordinary spectral normalisation) is a different number
    assert abs(float(torch.linalg.matrix_norm(weight.flatten(1), ord=2)) - float(exact)) > 1e-3


def test_realsn_layer_operator_norm_at_most_one():
    torch.manual_seed(0)
    layer = RealSNConv2d(4, 6, power_shape=(24, 24))
    with torch.no_grad():
        layer.weight.mul_(5.0)  # far outside the constraint
    layer.train()
    for _ in range(60):  # the persistent power iteration converges during training steps
        layer(torch.rand(2, 4, 24, 24))
    layer.eval()
    estimate, stored = layer.refresh_norm((24, 24), iterations=200)
    assert stored >= estimate
    for shape in ((24, 24), (64, 64)):  # the stored bound holds on every image size
        norm, _ = conv_operator_norm(layer.effective_weight().detach(), shape, iterations=400,
                                     generator=torch.Generator().manual_seed(3))
        assert float(norm) <= 1.0 + 1e-5
    assert float(norm) >= 0.98  # the constraint is active, not over-shrunk


def test_symbol_bound_is_a_tight_upper_bound():
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 4, 3, 3, generator=gen)
    bound = float(conv_symbol_norm(weight))
    for shape in ((8, 8), (40, 40)):
        estimate, _ = conv_operator_norm(weight, shape, iterations=400, generator=gen)
        assert float(estimate) <= bound
    assert bound <= 1.01 * float(estimate)  # within 1% of the norm on 40x40 images


@pytest.mark.slow
def test_bundled_denoiser_layers_are_non_expansive():
    denoiser, config, info = load_denoiser("dncnn", torch.device("cpu"))
    for conv in denoiser.convs:
        norm, _ = conv_operator_norm(conv.effective_weight(), (128, 128), iterations=40,
                                     generator=torch.Generator().manual_seed(1))
        assert float(norm) <= 1.0 + 1e-4
    for conv in (denoiser.convs[0], denoiser.convs[-1]):  # the stored norm is the certified bound (cheap layers)
        assert float(conv.sigma) >= float(conv_symbol_norm(conv.weight)) * (1 - 1e-6)
    # the whole residual map is then 1-Lipschitz: check on a random pair of inputs
    gen = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 1, 1, 128, 128, generator=gen)
    with torch.no_grad():
        gap = denoiser.residual(a, 0.05) - denoiser.residual(b, 0.05)
    assert float(gap.norm()) <= float((a - b).norm())


# --------------------------------------------------------------------------------------------- PnP-ADMM
# the exact x-step (RealLeastSquares.prox_l2) is tested against dense and autograd oracles in test_operator.py


@pytest.mark.slow
def test_pnp_admm_beats_adjoint(held_out):
    problem = _problem(held_out)
    adjoint = run_method("adjoint", problem)
    pnp = run_method("pnp-admm", problem)
    assert pnp.iterations == 100
    assert pnp.psnr > adjoint.psnr + 1.0


@pytest.mark.slow
def test_pnp_batch_equals_single_images(held_out):
    problem = _problem(held_out)
    batch = run_method("pnp-admm", problem, iterations=5)
    for i in range(2):
        measurement = Measurement(problem.y[i : i + 1], problem.operator, problem.sigma)
        single = run_method("pnp-admm", Problem(measurement, held_out[i : i + 1]), iterations=5)
        assert torch.allclose(batch.image[i : i + 1], single.image, atol=1e-5)


def test_pnp_rejects_denoiser_level_outside_training_range(held_out):
    with pytest.raises(ParameterError, match="trained on"):
        run_method("pnp-admm", _problem(held_out[:1]), {"denoiser_sigma": 0.002}, iterations=1)


def test_pnp_relaxation_one_is_plain_admm(held_out):
    problem = _problem(held_out[:1])
    result = run_method("pnp-admm", problem, {"relaxation": 1.0, "denoiser_sigma": 0.04, "rho": 0.5}, iterations=3)
    denoiser, _, _ = load_denoiser("dncnn", torch.device("cpu"))
    data = problem.operator.data_term(problem.y)
    z = problem.zero_filled()
    u = torch.zeros_like(z)
    with torch.no_grad():
        for _ in range(3):
            x = data.prox_l2(z - u, 0.5)
            z = denoiser(x + u, 0.04)
            u = u + x - z
    assert torch.allclose(result.image, z, atol=1e-6)


@pytest.mark.slow
def test_pnp_over_relaxation_makes_faster_progress(held_out):
    problem = _problem(held_out)
    plain = run_method("pnp-admm", problem, {"relaxation": 1.0}, iterations=20)
    relaxed = run_method("pnp-admm", problem, {"relaxation": 1.8}, iterations=20)
    assert relaxed.psnr > plain.psnr + 0.1


def test_pnp_defaults_come_from_the_nearest_tuned_setting(held_out):
    method = get_method("pnp-admm")
    _, config, _ = load_denoiser("dncnn", torch.device("cpu"))
    low, high = config["sigma_range"]
    table = tuned_table(PNP_TUNED_FILE)["pnp-admm"]
    assert table
    for entry in table:  # every tuned entry is a valid parameter set inside the denoiser's trained range
        params = method.resolve_params(entry["params"])
        assert low <= params["denoiser_sigma"] <= high
    for spec, sigma in (("radial:25", 0.05), ("radial:25", 0.0125), ("radial:125", 0.05)):
        problem = _problem(held_out[:1], spec, sigma)
        fraction = problem.operator.sampling_fraction
        nearest = min(table, key=lambda e: np.hypot(np.log(e["sampling_fraction"] / fraction),
                                                    np.log(e["sigma"] / sigma)))
        assert method.defaults_for(problem) == nearest["params"]
        result = run_method("pnp-admm", problem, iterations=1)
        assert {k: result.params[k] for k in nearest["params"]} == nearest["params"]


# -------------------------------------------------------------------------------------- variational network
def test_varnet_filters_and_adjoint():
    stage = VariationalStage(generator=torch.Generator().manual_seed(0)).double()
    x = torch.rand(2, 1, 30, 26, dtype=torch.float64)
    responses = stage.filter_responses(x)
    direct = F.conv2d(F.pad(x, (5,) * 4, mode="reflect"), stage.zero_mean_kernels())
    assert torch.allclose(responses, direct, atol=1e-10)
    r = torch.randn_like(responses)
    with torch.no_grad():
        assert float((responses * r).sum()) == pytest.approx(float((x * stage.filter_adjoint(r)).sum()), rel=1e-10)


def test_rbf_activation_interpolates_the_gaussian_mixture():
    act = RBFActivation(5)
    with torch.no_grad():
        act.weights.normal_(generator=torch.Generator().manual_seed(0))
    z = 1.5 * torch.randn(2, 5, 20, 20, generator=torch.Generator().manual_seed(1))
    bound = act.weights.abs().sum(1).max() / (8 * 64**2) * 1.01  # h^2/8 max|phi''|, see the docstring
    with torch.no_grad():
        assert float((act(z) - act.exact(z)).abs().max()) <= float(bound) + 1e-6
    small = RBFActivation(3).double()
    weights = torch.randn(3, 31, dtype=torch.float64, requires_grad=True)
    zz = (0.7 * torch.randn(1, 3, 4, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, w: _InterpolatedRBF.apply(a, w, small.basis.double(), small.lo, small.h), (zz, weights), atol=1e-6
    )


@pytest.mark.parametrize("spec, sigma, expected, exact", [
    ("radial:25", 0.05, "radial25-sigma0.05", True),
    ("radial:25", 0.0125, "radial25-sigma0.0125", True),
    ("radial:125", 0.05, "radial125-sigma0.05", True),
    ("radial:5", 0.05, "radial25-sigma0.05", False),
    ("radial:45", 0.02, "radial25-sigma0.0125", False),
    ("cartesian:16:0.25", 0.05, "radial125-sigma0.05", False),
])
def test_varnet_picks_nearest_trained_setting(held_out, spec, sigma, expected, exact):
    result = run_method("varnet", _problem(held_out[:1], spec, sigma), iterations=1)
    assert result.extras["trained_setting"] == expected
    assert result.extras["exact_setting"] is exact


def test_bundled_varnet_fingerprints_match_their_masks():
    settings = varnet_module.trained_settings()
    assert {s.name for s in settings} == {"radial25-sigma0.05", "radial25-sigma0.0125", "radial125-sigma0.05"}
    for setting in settings:
        assert setting.fingerprint == mask_fingerprint(mask_from_spec(setting.mask_spec, (128, 128)))


@pytest.mark.slow
def test_varnet_beats_adjoint_and_validates_requests(held_out):
    problem = _problem(held_out)
    assert run_method("varnet", problem).psnr > run_method("adjoint", problem).psnr + 3.0
    forced = run_method("varnet", problem, {"setting": "radial125-sigma0.05"}, iterations=1)
    assert forced.extras["trained_setting"] == "radial125-sigma0.05" and not forced.extras["exact_setting"]
    with pytest.raises(ParameterError, match="unknown variational network setting"):
        run_method("varnet", problem, {"setting": "radial7-sigma9"}, iterations=1)
    with pytest.raises(ParameterError, match="stages"):
        run_method("varnet", problem, iterations=1000)


# ------------------------------------------------------------------------------------------------------ DIP
@pytest.mark.slow
def test_dip_reduces_data_misfit(held_out):
    problem = _problem(held_out[:1])
    result = run_method("dip", problem, iterations=25, report_every=1)
    objectives = [h["objective"] for h in result.history]
    assert objectives[-1] < 0.5 * objectives[0]
    # seeded: the same problem seed gives the same result
    again = run_method("dip", problem, iterations=3)
    first = run_method("dip", problem, iterations=3)
    assert torch.equal(again.image, first.image)


@pytest.mark.slow
def test_dip_beats_the_adjoint_at_its_defaults(held_out):
    # with Adam at the full rate from the first step the random U-Net sat on an almost flat image for ~100-200
    # iterations and ended its 500 iterations barely above the adjoint (held-out phantoms 0 and 1, noise seed 7:
    # +0.55 / +0.07 dB); with the 100-iteration learning-rate warm-up +4.70 / +2.66 dB
    problem = _problem(held_out[:1], seed=7)
    result = run_method("dip", problem)  # default parameters and iteration count
    assert result.iterations == get_method("dip").default_iterations
    adjoint = run_method("adjoint", problem)
    assert result.psnr > adjoint.psnr + 1.5


@pytest.mark.slow
def test_edip_starts_from_the_pretrained_network(held_out):
    problem = _problem(held_out[:1])
    result = run_method("edip", problem, iterations=5, report_every=1)
    adjoint = run_method("adjoint", problem)
    assert result.history[0]["psnr"] > adjoint.psnr + 2.0  # the warm start already reconstructs
    assert result.history[-1]["objective"] < result.history[0]["objective"]


def test_unet_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible"):
        UNet()(torch.zeros(1, 1, 30, 30))


# ------------------------------------------------------------------------------------- runner integration
@pytest.mark.slow
def test_cancellation_between_iterations(held_out):
    problem = _problem(held_out[:1])
    for name in ("pnp-admm", "dip"):
        event = threading.Event()

        def stop_at_three(state, event=event):
            if state.iteration >= 3:
                event.set()

        result = run_method(name, problem, iterations=50, cancel=event, callback=stop_at_three, report_every=1)
        assert result.cancelled and result.iterations <= 4


def test_missing_weights_are_reported(tmp_path):
    """A weight set without the learned networks and without a fallback: the methods say how to train them."""
    import json

    from genreg_viewer.weight_sets import active_weight_set, use_weight_set

    save_weights(torch.nn.Linear(2, 2), tmp_path / "unrelated", {"in": 2}, {})
    (tmp_path / "weightset.json").write_text(json.dumps({"name": "bare", "fallback": None}))
    before = active_weight_set()
    use_weight_set(tmp_path)
    try:
        for name, hint in (("pnp-admm", "genreg train denoiser"), ("varnet", "genreg train varnet"),
                           ("edip", "genreg train edip")):
            ok, why = get_method(name).available()
            assert not ok and hint in why
        assert get_method("dip").available() == (True, "")
    finally:
        use_weight_set(before)
    with pytest.raises(WeightsError, match="not found"):
        load_denoiser(str(tmp_path / "nothing"), torch.device("cpu"))


def test_training_seeds_never_reach_held_out_range():
    with pytest.raises(ValueError, match="seeds"):
        training_images(3, HELD_OUT_SEED - 2)


# ------------------------------------------------------------------------------------------------ trainers
@pytest.mark.slow
def test_tiny_trainings_write_loadable_weights(tmp_path, held_out):
    from genreg_viewer.training.denoiser import DenoiserTrainingConfig, train_denoiser
    from genreg_viewer.training.edip import EdipTrainingConfig, train_edip
    from genreg_viewer.training.varnet import VarnetTrainingConfig, train_varnet

    train_denoiser(DenoiserTrainingConfig(layers=3, channels=4, images=2, patch=16, batch=2, steps=2), tmp_path / "dn")
    problem = _problem(held_out[:1])
    result = run_method("pnp-admm", problem, {"weights": str(tmp_path / "dn")}, iterations=2)
    assert result.image.shape == (1, 1, 128, 128) and torch.isfinite(result.image).all()

    train_varnet(VarnetTrainingConfig(mask="radial:9", noise=0.03, stages=2, images=2, batch=1, steps=1),
                 tmp_path / "vn")
    result = run_method("varnet", problem, {"setting": str(tmp_path / "vn")}, iterations=2)
    assert result.extras["trained_setting"] == "radial9-sigma0.03"

    train_edip(EdipTrainingConfig(channels=(4, 8), images=2, batch=1, steps=1), tmp_path / "ed")
    result = run_method("edip", problem, {"weights": str(tmp_path / "ed")}, iterations=1)
    assert torch.isfinite(result.image).all()


def test_cli_lists_training_kinds(capsys):
    from genreg_viewer.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "varnet", "--help"])
    out = capsys.readouterr().out
    assert "--mask" in out and "--noise" in out and "--minutes" in out
