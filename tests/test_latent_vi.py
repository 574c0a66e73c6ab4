"""``latent-vi``: the Gaussian variational posterior over a generator's latent (tiny random VAEs and flows; a linear
decoder with a closed-form posterior; the bundled VAE where present)."""

import pytest
import torch

from genreg_viewer.models.vae import GenerativeModel, VAEConfig
from genreg_viewer.physics import mask_from_spec, radial_mask, simulate_measurement
from genreg_viewer.recon import Problem, run_method
from genreg_viewer.recon.generative import common
from genreg_viewer.recon.priors import flow_prior
from genreg_viewer.recon.priors.latent_vi import gaussian_kl, negative_elbo
from test_flow import phantom_problem, tiny_flow, tiny_problem, zero_filled_psnr


def tiny_vae(size: int = 16, seed: int = 0) -> GenerativeModel:
    torch.manual_seed(seed)
    config = VAEConfig(image_size=size, latent_dim=6, widths=(4, 4), dropout=0.0, covariance_kind="identity",
                       identity_rho=0.01)
    return GenerativeModel(config).freeze()


class LinearDecoder(torch.nn.Module):
    """``G(z) = W z + b`` on ``size x size`` images; the encoder returns the prior ``N(0, I)``."""

    def __init__(self, size: int, latent: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.size, self.latent = size, latent
        self.weight = torch.randn(size * size, latent, generator=generator) * 0.3
        self.bias = torch.rand(size * size, generator=generator) * 0.5

    def encode(self, x):
        zeros = torch.zeros(x.shape[0], self.latent, device=x.device)
        return zeros, zeros

    def decode_mean(self, z):
        return (z @ self.weight.T + self.bias).view(z.shape[0], 1, self.size, self.size)


def use_model(monkeypatch, model):
    monkeypatch.setattr(common, "bundled_model", lambda kind, device, weight_set=None: model.to(device))
    monkeypatch.setattr(common, "model_available", lambda kind: (True, ""))


def test_gaussian_kl_matches_torch_distributions():
    mean, log_std = torch.randn(3, 5), 0.3 * torch.randn(3, 5)
    q = torch.distributions.Normal(mean, log_std.exp())
    p = torch.distributions.Normal(torch.zeros(3, 5), torch.ones(3, 5))
    assert torch.allclose(gaussian_kl(mean, log_std), torch.distributions.kl_divergence(q, p).sum(1), atol=1e-6)


def _linear_posterior(decoder: LinearDecoder, problem: Problem, sigma: float):
    """Exact Gaussian posterior of z for y = A(W z + b) + n: precision P = I + Re(W^T A^H A W)/s^2, mean."""
    columns = decoder.weight.T.reshape(decoder.latent, 1, decoder.size, decoder.size)
    a_w = problem.operator.forward(columns).flatten(1)  # (d, n) complex: A applied to each column of W
    gram = (a_w.conj() @ a_w.T).real
    precision = torch.eye(decoder.latent) + gram / sigma**2
    bias_image = decoder.bias.view(1, 1, decoder.size, decoder.size)
    residual = problem.y[0].flatten() - problem.operator.forward(bias_image).flatten()
    rhs = (a_w.conj() @ residual).real / sigma**2
    return torch.linalg.solve(precision, rhs), precision


@pytest.mark.slow
def test_linear_gaussian_model_recovers_the_exact_posterior(monkeypatch):
    """For a linear decoder the posterior over z is Gaussian; the best mean-field Gaussian has the exact posterior
    mean and variances 1 / P_jj (P the posterior precision)."""
    size, sigma = 8, 0.3
    decoder = LinearDecoder(size, latent=3)
    use_model(monkeypatch, decoder)
    truth = decoder.decode_mean(torch.tensor([[0.5, -1.0, 0.3]]))
    problem = Problem(simulate_measurement(truth, radial_mask(4, (size, size)), sigma, seed=0), seed=0)
    exact_mean, precision = _linear_posterior(decoder, problem, sigma)
    result = run_method("latent-vi", problem, {"learning_rate": 0.05, "mc_samples": 32, "samples": 512},
                        iterations=600)
    exact_std = precision.diagonal().rsqrt()
    assert torch.allclose(result.extras["latent"][0], exact_mean, atol=0.1 * float(exact_std.min()))
    assert torch.allclose(result.extras["latent_std"][0], exact_std, rtol=0.05)
    # the reported image is the posterior mean E_q[G(z)] = G(m) for a linear G (up to Monte Carlo error)
    assert torch.allclose(result.image, decoder.decode_mean(exact_mean[None]), atol=0.05)


def test_negative_elbo_estimator_is_unbiased_for_a_linear_decoder(monkeypatch):
    """E_eps ||A G(m + s eps) - y||^2 = ||A G(m) - y||^2 + sum_j s_j^2 ||A W e_j||^2."""
    size, sigma = 8, 0.2
    decoder = LinearDecoder(size, latent=3, seed=1)
    truth = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(2))
    problem = Problem(simulate_measurement(truth, radial_mask(4, (size, size)), sigma, seed=0), truth)
    mean, log_std = torch.tensor([[0.2, -0.4, 0.1]]), torch.log(torch.tensor([[0.5, 1.0, 2.0]]))
    eps = torch.randn(20000, 1, 3, generator=torch.Generator().manual_seed(3))
    estimate = negative_elbo(problem, decoder.decode_mean, mean, log_std, eps, sigma, data_weight=1.0)
    columns = decoder.weight.T.reshape(3, 1, size, size)
    column_norms = problem.operator.data_misfit(columns, torch.zeros_like(problem.y))
    spread = (log_std.exp()[0] ** 2 * column_norms).sum()
    expected_misfit = problem.operator.data_misfit(decoder.decode_mean(mean), problem.y) + spread
    expected = expected_misfit / (2 * sigma**2) + gaussian_kl(mean, log_std)
    assert torch.allclose(estimate, expected, rtol=0.02)


@pytest.mark.slow
def test_extras_contract_and_elbo_improves(monkeypatch):
    model = tiny_vae()
    use_model(monkeypatch, model)
    problem = tiny_problem()
    result = run_method("latent-vi", problem, {"samples": 6}, iterations=60, report_every=1)
    samples, std = result.extras["samples"], result.extras["std_map"]
    assert samples.shape == (6, 2, 1, 16, 16)
    assert std.shape == (2, 1, 16, 16) and torch.isfinite(std).all() and float(std.max()) > 0
    assert torch.allclose(std, samples.std(0)) and torch.allclose(result.image, samples.mean(0))
    assert result.extras["latent"].shape == (2, 6) and result.extras["latent_std"].shape == (2, 6)
    objectives = [h["objective"] for h in result.history]
    assert sum(objectives[-10:]) < sum(objectives[:10])


def test_same_seed_same_result(monkeypatch):
    use_model(monkeypatch, tiny_vae())
    first = run_method("latent-vi", tiny_problem(batch=1), {"samples": 4}, iterations=10)
    second = run_method("latent-vi", tiny_problem(batch=1), {"samples": 4}, iterations=10)
    assert torch.equal(first.image, second.image)
    assert torch.equal(first.extras["samples"], second.extras["samples"])


@pytest.mark.slow
def test_tempering_widens_the_posterior(monkeypatch):
    """beta < 1 down-weights the likelihood: the fitted posterior std grows."""
    decoder = LinearDecoder(8, latent=3)
    use_model(monkeypatch, decoder)
    truth = decoder.decode_mean(torch.zeros(1, 3))
    problem = Problem(simulate_measurement(truth, radial_mask(4, (8, 8)), 0.3, seed=0))
    exact = run_method("latent-vi", problem, {"mc_samples": 16}, iterations=300)
    tempered = run_method("latent-vi", problem, {"mc_samples": 16, "data_weight": 0.1}, iterations=300)
    assert bool((tempered.extras["latent_std"] > exact.extras["latent_std"]).all())


def test_flow_generator(monkeypatch):
    model = tiny_flow(size=16, hidden=(6, 8), dtype=torch.float32)
    monkeypatch.setattr(flow_prior, "bundled_flow", lambda device, weight_set=None: model.to(device))
    monkeypatch.setattr(flow_prior, "flow_available", lambda: (True, ""))
    use_model(monkeypatch, tiny_vae())
    problem = tiny_problem(batch=1)
    result = run_method("latent-vi", problem, {"generator": "flow", "samples": 4, "mc_samples": 2}, iterations=15,
                        report_every=1)
    assert result.extras["samples"].shape == (4, 1, 1, 16, 16)
    assert result.extras["latent"].shape == (1, 256)
    objectives = [h["objective"] for h in result.history]
    assert objectives[-1] < objectives[0]


def test_missing_flow_is_a_clear_error(monkeypatch):
    use_model(monkeypatch, tiny_vae())
    monkeypatch.setattr(flow_prior, "flow_available", lambda: (False, "no bundled flow weights"))
    with pytest.raises(RuntimeError, match="generator=flow: no bundled flow weights"):
        run_method("latent-vi", tiny_problem(batch=1), {"generator": "flow"}, iterations=2)


def test_bad_parameters_are_rejected():
    from genreg_viewer.recon import ParameterError, get_method

    method = get_method("latent-vi")
    with pytest.raises(ParameterError, match="one of"):
        method.resolve_params({"generator": "gan"})
    with pytest.raises(ParameterError, match=">= 2"):
        method.resolve_params({"samples": 1})


bundled = pytest.mark.skipif(not common.model_available("identity")[0], reason="no bundled VAE weights")


@pytest.mark.slow
@bundled
def test_bundled_vae_posterior_mean_beats_adjoint_at_25_spokes():
    problem = phantom_problem(mask_from_spec("radial:25"), 0.05, seed=1, offset=7)
    adjoint = zero_filled_psnr(problem)
    result = run_method("latent-vi", problem, iterations=150)
    assert result.psnr > adjoint + 1.0, (result.psnr, adjoint)
    assert float(result.extras["std_map"].mean()) > 0
