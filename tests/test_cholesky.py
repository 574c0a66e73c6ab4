"""Sparse-Cholesky covariance operations checked against dense matrices built from the definition."""

import functools
import math

import numpy as np
import pytest
import torch

from genreg_viewer.models.cholesky import SparseCholesky, channels_for, neighbour_offsets

SHAPES = [(3, 6, 7), (5, 6, 7), (5, 7, 6)]  # (neighbourhood, H, W); 7 rows with k=5 leave a one-row last block


def random_factor(k, height, width, batch=2, seed=0, scale=0.2):
    gen = torch.Generator().manual_seed(seed)
    num_weights = len(neighbour_offsets(k))
    log_diag = scale * torch.randn(batch, 1, height, width, generator=gen, dtype=torch.float64)
    off_diag = scale * torch.randn(batch, num_weights, height, width, generator=gen, dtype=torch.float64)
    return SparseCholesky(log_diag, off_diag, k)


def dense_lower(factor, index):
    """``L`` straight from the parameterisation: ``L[p, p] = exp(l_p)``, ``L[p + off_j, p] = w_j(p)``."""
    _, _, height, width = factor.log_diag.shape
    matrix = torch.zeros(height * width, height * width, dtype=torch.float64)
    for row in range(height):
        for col in range(width):
            p = row * width + col
            matrix[p, p] = torch.exp(factor.log_diag[index, 0, row, col])
            for j, (drow, dcol) in enumerate(factor.offsets):
                if 0 <= row + drow < height and 0 <= col + dcol < width:
                    matrix[(row + drow) * width + col + dcol, p] = factor.off_diag[index, j, row, col]
    return matrix


def dense_covariance(factor, index):
    lower = dense_lower(factor, index)
    return torch.linalg.inv(lower @ lower.T)


def flat(image):
    return image.reshape(image.shape[0], -1)


def test_neighbourhood_layout():
    assert neighbour_offsets(3) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    assert neighbour_offsets(5) == [(0, 1), (0, 2)] + [(drow, dcol) for drow in (1, 2) for dcol in range(-2, 3)]
    assert (channels_for(3), channels_for(5)) == (5, 13)
    for bad in (2, 4, 1, 3.0, "3", True):
        with pytest.raises(ValueError, match="odd integer"):
            neighbour_offsets(bad)


@pytest.mark.parametrize("k,height,width", SHAPES)
def test_products_match_dense(k, height, width):
    factor = random_factor(k, height, width)
    v = torch.randn(2, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for index in range(2):
        lower = dense_lower(factor, index)
        torch.testing.assert_close(flat(factor.mul(v))[index], lower @ flat(v)[index])
        torch.testing.assert_close(flat(factor.mul_transpose(v))[index], lower.T @ flat(v)[index])
        torch.testing.assert_close(flat(factor.precision_mul(v))[index], lower @ lower.T @ flat(v)[index])
        np.testing.assert_allclose(factor.to_scipy(index).toarray(), lower.numpy(), rtol=0, atol=1e-15)


def test_weights_pointing_outside_are_ignored():
    factor = random_factor(5, 6, 7)
    outside = ~torch.from_numpy(np.stack([
        [[0 <= r + dr < 6 and 0 <= c + dc < 7 for c in range(7)] for r in range(6)] for dr, dc in factor.offsets]))
    garbage = factor.off_diag.clone()
    garbage[:, outside] = 1e6
    other = SparseCholesky(factor.log_diag, garbage, 5)
    v = torch.randn(2, 1, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(other.mul(v), factor.mul(v))
    torch.testing.assert_close(other.mul_transpose(v), factor.mul_transpose(v))
    assert (other.to_scipy(1) != factor.to_scipy(1)).nnz == 0


@pytest.mark.parametrize("k,height,width", SHAPES)
def test_log_det_and_nll_match_multivariate_normal(k, height, width):
    factor = random_factor(k, height, width, seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, height, width, generator=gen, dtype=torch.float64)
    mean = torch.rand(2, 1, height, width, generator=gen, dtype=torch.float64)
    nll = factor.nll(x, mean, include_constant=True)
    for index in range(2):
        lower = dense_lower(factor, index)
        precision = lower @ lower.T
        torch.testing.assert_close(factor.log_det_precision()[index], torch.linalg.slogdet(precision)[1])
        reference = torch.distributions.MultivariateNormal(flat(mean)[index], precision_matrix=precision)
        torch.testing.assert_close(nll[index], -reference.log_prob(flat(x)[index]))
    constant = 0.5 * height * width * math.log(2 * math.pi)
    torch.testing.assert_close(factor.nll(x, mean), nll - constant)
    torch.testing.assert_close(factor.log_det_covariance(), -factor.log_det_precision())


def test_nll_minimised_at_the_true_variance():
    """Scalar check of the 1/2 log det convention: argmin_l nll over residuals r is exp(-2 l) = mean(r^2)."""
    residual = torch.randn(1, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 0.7
    levels = torch.linspace(-2, 2, 4001, dtype=torch.float64)
    log_diag = levels[:, None, None, None].expand(-1, 1, 32, 32)
    factor = SparseCholesky(log_diag, torch.zeros(4001, 4, 32, 32, dtype=torch.float64), 3)
    best = levels[factor.nll(residual, torch.zeros_like(residual)).argmin()]
    assert abs(float(torch.exp(-2 * best)) - float(residual.square().mean())) < 5e-3


@pytest.mark.parametrize("k,height,width", SHAPES)
def test_solves_match_dense(k, height, width):
    factor = random_factor(k, height, width, seed=4)
    b = torch.randn(2, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for index in range(2):
        lower = dense_lower(factor, index)
        expected_lower = torch.linalg.solve_triangular(lower, flat(b)[index, :, None], upper=False)[:, 0]
        expected_upper = torch.linalg.solve_triangular(lower.T, flat(b)[index, :, None], upper=True)[:, 0]
        torch.testing.assert_close(flat(factor.solve_lower(b))[index], expected_lower)
        torch.testing.assert_close(flat(factor.solve_upper_transpose(b))[index], expected_upper)


def test_solves_broadcast_and_keep_dtype():
    factor = random_factor(3, 6, 7, batch=1, seed=7)
    b = torch.randn(3, 1, 6, 7, generator=torch.Generator().manual_seed(8))  # float32, batch 3 against 1 factor
    solved = factor.solve_upper_transpose(b)
    assert solved.shape == (3, 1, 6, 7) and solved.dtype == torch.float32
    lower = dense_lower(factor, 0)
    expected = torch.linalg.solve_triangular(lower.T, flat(b).double().T, upper=True).T
    torch.testing.assert_close(flat(solved).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(factor.mul_transpose(solved.double()), b.double(), rtol=1e-5, atol=1e-5)


def chain_factor(k, height, width, seed=0):
    """Strongly correlated factors: weight -+exp(l) on the (1, 0) neighbour makes each column a random walk (item 0,
    correlations up to +0.95) or an alternating one (item 1, down to -0.95); small random other weights."""
    gen = torch.Generator().manual_seed(seed)
    offsets = neighbour_offsets(k)
    log_diag = 0.1 * torch.randn(2, 1, height, width, generator=gen, dtype=torch.float64)
    off_diag = 0.02 * torch.randn(2, len(offsets), height, width, generator=gen, dtype=torch.float64)
    below = offsets.index((1, 0))
    off_diag[0, below] = -torch.exp(log_diag[0, 0])
    off_diag[1, below] = torch.exp(log_diag[1, 0])
    return SparseCholesky(log_diag, off_diag, k)


def dense_correlation(sigma):
    deviation = np.sqrt(np.diag(sigma))
    return sigma / np.outer(deviation, deviation)


FACTORS = [(functools.partial(random_factor, scale=0.3), k, h, w) for k, h, w in SHAPES]
FACTORS += [(chain_factor, k, 8, 8) for k in (3, 5)]


@pytest.mark.parametrize("build,k,height,width", FACTORS)
def test_covariance_correlation_and_variance_match_dense(build, k, height, width):
    """Every pixel's covariance and correlation row and the variance map against ``inv(L L^T)`` of the dense ``L``
    built from the parameterisation (float64); the chain factors reach correlations of +-0.95, where the code's
    clipping to [-1, 1] and its exact 1 at the pixel could hide an error."""
    factor = build(k, height, width, seed=9)
    for index in range(2):
        sigma = dense_covariance(factor, index).numpy()
        correlation = dense_correlation(sigma)
        if build is chain_factor:
            off_pixel = correlation - np.eye(len(sigma))
            assert off_pixel.max() > 0.9 if index == 0 else off_pixel.min() < -0.9
        np.testing.assert_allclose(factor.variance_map(index).ravel(), np.diag(sigma), rtol=1e-10)
        for i in range(height * width):
            row, col = divmod(i, width)
            np.testing.assert_allclose(factor.covariance_row(row, col, index).ravel(), sigma[i], rtol=1e-10,
                                       atol=1e-12 * sigma[i, i])
            np.testing.assert_allclose(factor.correlation_row(row, col, index).ravel(), correlation[i], rtol=0,
                                       atol=1e-10)


@pytest.mark.slow
def test_samples_have_the_model_covariance():
    factor = random_factor(3, 5, 6, batch=2, seed=10, scale=0.4)
    mean = torch.rand(2, 1, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(11))
    count = 40000
    samples = factor.sample(mean, generator=torch.Generator().manual_seed(12), count=count)
    assert samples.shape == (count, 2, 1, 5, 6)
    for index in range(2):
        draws = samples[:, index].reshape(count, -1).numpy()
        sigma = dense_covariance(factor, index).numpy()
        scale = np.abs(sigma).max()
        assert np.abs(draws.mean(axis=0) - flat(mean)[index].numpy()).max() < 0.03 * math.sqrt(scale)
        assert np.abs(np.cov(draws, rowvar=False) - sigma).max() < 0.04 * scale
    again = factor.sample(mean, generator=torch.Generator().manual_seed(12), count=count)
    torch.testing.assert_close(again, samples, rtol=0, atol=0)


def test_gradients():
    factor = random_factor(3, 3, 4, seed=13)
    gen = torch.Generator().manual_seed(14)
    inputs = [torch.rand(2, 1, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    params = [factor.log_diag.clone().requires_grad_(), factor.off_diag.clone().requires_grad_()]

    def nll(x, mean, log_diag, off_diag):
        return SparseCholesky(log_diag, off_diag, 3).nll(x, mean)

    def products(v, log_diag, off_diag):
        chol = SparseCholesky(log_diag, off_diag, 3)
        return chol.mul(v), chol.mul_transpose(v), chol.precision_mul(v)

    assert torch.autograd.gradcheck(nll, (*inputs, *params))
    assert torch.autograd.gradcheck(products, (inputs[0], *params))
    # weights pointing outside the image get exactly zero gradient
    SparseCholesky(params[0], params[1], 3).nll(*inputs).sum().backward()
    assert params[1].grad[:, 0, :, -1].abs().max() == 0  # (0, 1) from the last column
    assert params[1].grad[:, 1:, -1, :].abs().max() == 0  # row offsets from the last row
    assert params[1].grad[:, 1, :, 0].abs().max() == 0  # (1, -1) from the first column


@pytest.mark.parametrize("k", [3, 5])
def test_full_size_row_inverts_the_precision(k):
    """128x128: L L^T (Sigma e_i) = e_i, and the variance map agrees with the rows' diagonal entries."""
    factor = random_factor(k, 128, 128, batch=1, seed=15, scale=0.15)
    pixels = [(0, 0), (64, 37), (127, 127)]
    variance = factor.variance_map()
    for row, col in pixels:
        covariance = factor.covariance_row(row, col)
        unit = torch.zeros(1, 1, 128, 128, dtype=torch.float64)
        unit[0, 0, row, col] = 1.0
        back = factor.precision_mul(torch.from_numpy(covariance)[None, None])
        assert (back - unit).abs().max() < 1e-10
        assert abs(variance[row, col] - covariance[row, col]) < 1e-12 * variance[row, col]
        # the correlation formula at full size (its inputs are checked here against the precision and on small
        # images against the dense inverse)
        expected = covariance / np.sqrt(covariance[row, col] * variance)
        np.testing.assert_allclose(factor.correlation_row(row, col), expected, rtol=1e-9, atol=1e-12)


def test_identity_and_from_channels():
    rho = 0.03
    identity = SparseCholesky.identity((2, 1, 8, 9), -0.5 * math.log(rho), dtype=torch.float64)
    np.testing.assert_allclose(identity.variance_map(1), rho)
    np.testing.assert_allclose(identity.covariance_row(4, 4)[4, 4], rho)
    residual = torch.randn(2, 1, 8, 9, dtype=torch.float64)
    expected = 0.5 * residual.square().sum(dim=(1, 2, 3)) / rho + 0.5 * 72 * math.log(rho)
    torch.testing.assert_close(identity.nll(residual, torch.zeros_like(residual)), expected)
    channels = torch.randn(2, 13, 8, 9)
    split = SparseCholesky.from_channels(channels, neighbourhood=5)
    assert torch.equal(split.log_diag, channels[:, :1]) and torch.equal(split.off_diag, channels[:, 1:])
    moved = split.to(dtype=torch.float64).detach()
    assert moved.dtype == torch.float64 and moved.neighbourhood == 5


def test_bad_input_is_rejected_clearly():
    factor = random_factor(3, 6, 7)
    with pytest.raises(ValueError, match="off-diagonal channels"):
        SparseCholesky(factor.log_diag, factor.off_diag, 5)
    with pytest.raises(ValueError, match="needs channels"):
        SparseCholesky.from_channels(torch.zeros(1, 5, 4, 4), neighbourhood=5)
    with pytest.raises(ValueError, match="agree"):
        SparseCholesky(factor.log_diag[:, :, :5], factor.off_diag, 3)
    with pytest.raises(ValueError, match="same dtype"):
        SparseCholesky(factor.log_diag.float(), factor.off_diag, 3)
    with pytest.raises(ValueError, match="shape"):
        factor.mul(torch.zeros(2, 1, 7, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="batch size"):
        factor.mul_transpose(torch.zeros(3, 1, 6, 7, dtype=torch.float64))
    with pytest.raises(ValueError, match="out of range"):
        factor.covariance_row(6, 0)
    with pytest.raises(ValueError, match="out of range"):
        factor.variance_map(index=2)
    with pytest.raises(ValueError, match="count"):
        factor.sample(torch.zeros(2, 1, 6, 7), count=0)
    broken = factor.log_diag.clone()
    broken[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        SparseCholesky(broken, factor.off_diag, 3).covariance_row(0, 0)
    with pytest.raises(ValueError, match="singular"):
        SparseCholesky(factor.log_diag - 1e4, factor.off_diag, 3).variance_map()


@pytest.mark.parametrize("k,height,width", SHAPES)
@pytest.mark.parametrize("factor_batch,image_batch", [(2, 2), (1, 3), (3, 1)])
def test_products_without_autograd_match_dense_and_the_recorded_products(k, height, width, factor_batch, image_batch):
    """Without autograd the products take the in-place path (one multiply-add per offset on the valid rectangle);
    they must equal the dense ``L`` and the autograd path, broadcast over the batch the same way, leave ``v`` alone
    and keep working when the weights pointing outside the image hold garbage."""
    factor = random_factor(k, height, width, batch=factor_batch, seed=2)
    valid = factor._valid
    garbage = torch.where(valid, factor.off_diag, torch.full_like(factor.off_diag, 1e3))
    factor = SparseCholesky(factor.log_diag, garbage, k)
    v = torch.randn(image_batch, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    before = v.clone()
    recorded = v.clone().requires_grad_(True)
    for name in ("mul", "mul_transpose", "precision_mul"):
        fast = getattr(factor, name)(v)
        with torch.enable_grad():
            slow = getattr(factor, name)(recorded)
        assert slow.requires_grad and not fast.requires_grad
        torch.testing.assert_close(fast, slow.detach(), rtol=1e-12, atol=1e-12)
        batch = max(factor_batch, image_batch)
        assert fast.shape == (batch, 1, height, width)
        for index in range(batch):
            lower = dense_lower(factor, min(index, factor_batch - 1))
            matrix = {"mul": lower, "mul_transpose": lower.T, "precision_mul": lower @ lower.T}[name]
            torch.testing.assert_close(flat(fast)[index], matrix @ flat(v)[min(index, image_batch - 1)])
    assert torch.equal(v, before)
