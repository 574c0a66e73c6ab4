"""The normalising-flow prior: exact invertibility, the log-determinant against a dense Jacobian, training by
likelihood, and ``flow-prior`` reconstructions (tiny random flows; the bundled weights where present)."""

import math

import pytest
import torch

from genreg_viewer import metrics
from genreg_viewer.cli.main import main as genreg
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.models import flow as flow_module
from genreg_viewer.models.flow import Flow, FlowConfig, dequantize, flow_from_weights, squeeze, unsqueeze
from genreg_viewer.physics import mask_from_spec, radial_mask, simulate_measurement
from genreg_viewer.recon import Problem, run_method
from genreg_viewer.recon.priors import flow_prior

HELD_OUT = 1_000_000


def tiny_flow(size: int = 8, hidden=(6, 6), steps: int = 2, seed: int = 0, dtype=torch.float64) -> Flow:
    """A random flow whose couplings and split priors are far from the identity (zero-initialised layers perturbed)."""
    torch.manual_seed(seed)
    model = Flow(FlowConfig(image_size=size, hidden=hidden, steps_per_level=steps)).to(dtype)
    model.initialize(torch.rand(8, 1, size, size, dtype=dtype))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.freeze()


def test_squeeze_is_a_permutation():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    s = squeeze(x)
    assert s.shape == (2, 12, 4, 4)
    assert torch.equal(unsqueeze(s), x)
    assert torch.equal(s.flatten().sort().values, x.flatten().sort().values)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_flow_is_invertible(dtype, tol):
    model = tiny_flow(size=16, hidden=(6, 8, 8), dtype=dtype)
    z = torch.randn(3, 256, dtype=dtype)
    x = model.decode(z)
    assert x.shape == (3, 1, 16, 16)
    assert (model.encode(x)[0] - z).abs().max() < tol
    images = torch.rand(3, 1, 16, 16, dtype=dtype)
    assert (model.decode(model.encode(images)[0]) - images).abs().max() < tol


def test_log_determinant_matches_dense_jacobian():
    model = tiny_flow(size=8)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    _, logdet = model.encode(x)
    jacobian = torch.autograd.functional.jacobian(lambda v: model.encode(v.view(1, 1, 8, 8))[0].view(64), x.view(64))
    sign, logabsdet = torch.linalg.slogdet(jacobian)
    assert float(sign) != 0
    assert abs(float(logabsdet) - float(logdet)) < 1e-8
    assert abs(float(logdet)) > 1.0  # the test is not trivial: the flow is far from volume-preserving


def test_log_prob_is_a_normalised_density_change_of_variables():
    """log p(x) = log N(f(x)) + log|det J|; the bits/dim follow from it with the 8-bit offset."""
    model = tiny_flow(size=8)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    z, logdet = model.encode(x)
    expected = -0.5 * (z.square().sum(1) + 64 * math.log(2 * math.pi)) + logdet
    assert torch.allclose(model.log_prob(x), expected)
    assert torch.allclose(model.bits_per_dim(x), (-expected + 64 * math.log(256)) / (64 * math.log(2)))


def test_dequantize_keeps_the_8_bit_level():
    x = torch.rand(4, 1, 8, 8)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0
    d = dequantize(x, torch.Generator().manual_seed(0))
    assert float(d.min()) >= 0 and float(d.max()) < 1
    assert torch.equal(torch.floor(d * 256), torch.floor(x * 256).clamp(max=255))


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="multiple of 2\\^levels"):
        FlowConfig(image_size=20, hidden=(4, 4, 4))
    with pytest.raises(ValueError, match="unknown flow config keys"):
        FlowConfig.from_dict({"image_size": 16, "colour": 3})
    with pytest.raises(ValueError, match="expects images of shape"):
        tiny_flow(size=8).encode(torch.rand(1, 1, 16, 16, dtype=torch.float64))


@pytest.mark.slow
def test_train_flow_cli_lowers_bits_per_dim_and_saves(tmp_path, capsys):
    stem = tmp_path / "flow_small"
    code = genreg(["train", "flow", "--size", "16", "--hidden", "8,8", "--steps-per-level", "2", "--images", "64",
                   "--held-out", "8", "--batch", "16", "--steps", "60", "--lr", "3e-3", "--out", str(stem)])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    model, info = flow_from_weights(stem)
    assert info["steps"] == 60 and info["held_out_bits_per_dim"] < info["uniform_noise_bits_per_dim"]
    first_logged = info["curve"][0][1]
    assert info["train_bits_per_dim"] < first_logged
    # the saved model reproduces the held-out figure it reports
    from genreg_viewer.training.flow import evaluate_bits_per_dim, phantom_images

    held = phantom_images(8, HELD_OUT, 16)
    assert abs(evaluate_bits_per_dim(model, held) - info["held_out_bits_per_dim"]) < 1e-3


def test_train_flow_cli_rejects_bad_arguments(tmp_path, capsys):
    code = genreg(["train", "flow", "--size", "20", "--hidden", "8,8,8", "--steps", "1", "--out", str(tmp_path / "f")])
    assert code == 2
    assert "multiple of 2^levels" in capsys.readouterr().err
    code = genreg(["train", "flow", "--images", "1000001", "--steps", "1", "--out", str(tmp_path / "f")])
    assert code == 2


# ---------------------------------------------------------------------------------------------- reconstruction
@pytest.fixture
def use_tiny_flow(monkeypatch):
    model = tiny_flow(size=16, hidden=(6, 8), dtype=torch.float32)
    monkeypatch.setattr(flow_prior, "bundled_flow", lambda device, weight_set=None: model.to(device))
    monkeypatch.setattr(flow_prior, "flow_available", lambda: (True, ""))
    return model


def phantom_problem(mask, sigma: float, seed: int, batch: int = 1, offset: int = 0, size: int = 128) -> Problem:
    """Held-out phantoms (seeds ``HELD_OUT + offset, ...``) measured through ``mask`` with noise ``sigma``."""
    truth = torch.from_numpy(phantom_batch(batch, HELD_OUT + offset, size=size))[:, None]
    return Problem(simulate_measurement(truth, mask, sigma, seed=seed), truth, seed=seed)


def zero_filled_psnr(problem: Problem) -> float:
    return float(metrics.psnr(problem.zero_filled().clamp(0, 1), problem.ground_truth))


def tiny_problem(size: int = 16, batch: int = 2, sigma: float = 0.05, spokes: int = 6) -> Problem:
    return phantom_problem(radial_mask(spokes, (size, size)), sigma, seed=3, batch=batch, size=size)


@pytest.mark.slow
def test_flow_prior_decreases_its_objective(use_tiny_flow):
    problem = tiny_problem()
    result = run_method("flow-prior", problem, {"learning_rate": 0.02}, iterations=40, report_every=1)
    values = [h["objective"] for h in result.history]
    assert values[-1] < 0.7 * values[0]
    assert result.image.shape == (2, 1, 16, 16) and result.extras["latent"].shape == (2, 256)
    # the final image is G(latent)
    assert torch.allclose(use_tiny_flow.decode(result.extras["latent"]), result.image, atol=1e-5)


def test_flow_prior_adjoint_init_starts_at_the_adjoint(use_tiny_flow):
    """... clipped to the flow's data range [0, 1] (outside it the flow is not numerically invertible)."""
    problem = tiny_problem(sigma=0.5)
    assert float(problem.zero_filled().min()) < 0 < float(problem.zero_filled().max()) - 1  # the clip matters here
    result = run_method("flow-prior", problem, {"init": "adjoint"}, iterations=1)
    assert torch.allclose(result.image, problem.zero_filled().clamp(0, 1), atol=1e-4)


def test_flow_prior_rejects_other_image_sizes(use_tiny_flow):
    with pytest.raises(ValueError, match="trained on 16x16"):
        run_method("flow-prior", tiny_problem(size=32), iterations=2)


def test_missing_flow_weights_are_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(flow_module, "bundled_flow_stem", lambda weight_set=None: tmp_path / "flow")
    ok, why = flow_prior.flow_available()
    assert not ok and "genreg train flow" in why
    with pytest.raises(RuntimeError, match="not available"):
        run_method("flow-prior", tiny_problem(), iterations=2)


# ---------------------------------------------------------------------------------------------- bundled weights
bundled = pytest.mark.skipif(not flow_module.bundled_flow_available()[0], reason="no bundled flow weights")


@bundled
def test_bundled_flow_prefers_phantoms_to_noise():
    model = flow_prior.bundled_flow(torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    phantoms = torch.from_numpy(phantom_batch(4, HELD_OUT))[:, None]
    with torch.no_grad():
        clean = model.bits_per_dim(dequantize(phantoms, generator))
        noise = 0.1 * torch.randn(phantoms.shape, generator=generator)
        noisy = model.bits_per_dim(dequantize((phantoms + noise).clamp(0, 1), generator))
        uniform = model.bits_per_dim(dequantize(torch.rand(phantoms.shape, generator=generator), generator))
    assert float(clean.max()) < float(noisy.min()) < float(uniform.min())


@pytest.mark.slow
@bundled
def test_bundled_flow_prior_beats_adjoint_at_25_spokes():
    problem = phantom_problem(mask_from_spec("radial:25"), 0.05, seed=1, offset=7)
    adjoint = zero_filled_psnr(problem)
    result = run_method("flow-prior", problem, iterations=100)
    assert result.psnr > adjoint + 3.0, (result.psnr, adjoint)  # about 24.8 against 19.2 dB


@pytest.mark.slow
@bundled
def test_bundled_flow_denoises_with_the_full_mask():
    problem = phantom_problem(mask_from_spec("full"), 0.1, seed=2, offset=3)
    noisy = zero_filled_psnr(problem)
    result = run_method("flow-prior", problem, {"gamma": 0.1}, iterations=60)
    assert result.psnr > noisy + 3.0, (result.psnr, noisy)  # about 26.7 against 20.6 dB
