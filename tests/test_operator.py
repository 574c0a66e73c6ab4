"""The MRI operator as an operator object: adjointness, the real Gram operator and the exact data prox.

Oracles: the dense orthonormal DFT matrix (numpy, float64) for ``A``, ``Re(A^H A)`` and the prox's normal equation,
and autograd through ``||A x - y||^2`` for gradients (the gradient of the prox objective must vanish at its output).
Parametrised over masks (radial with an odd spoke count, so not point-symmetric; cartesian; random; full), even and
odd image sizes and devices (CUDA when present).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genreg_viewer.physics import (
    MRIOperator,
    RealLeastSquares,
    conjugate_symmetric_sampling,
    mask_from_spec,
    radial_mask,
    simulate_measurement,
)

MASKS = ["radial:5", "cartesian:2:0.3", "random:0.3", "full"]
SHAPES = [(12, 10), (9, 11)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _dense_fourier(shape: tuple[int, int]) -> np.ndarray:
    """The orthonormal 2-D DFT as a matrix acting on raster-ordered images."""
    height, width = shape
    return np.kron(np.fft.fft(np.eye(height), norm="ortho"), np.fft.fft(np.eye(width), norm="ortho"))


def _dense_forward(mask: np.ndarray) -> np.ndarray:
    """``A = M F`` as a dense complex matrix (``M`` the centred mask moved to DC-at-index-0)."""
    sampled = np.fft.ifftshift(mask).ravel().astype(np.float64)
    return sampled[:, None] * _dense_fourier(mask.shape)


def _case(spec: str, shape: tuple[int, int], device: str, seed: int = 0):
    mask = mask_from_spec(spec, shape, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    truth = torch.rand(2, 1, *shape, generator=generator, dtype=torch.float64)
    measurement = simulate_measurement(truth, mask, 0.1, seed=seed + 2, device=device)
    y = measurement.y.to(torch.complex128)
    return mask, measurement.operator, y, generator


@pytest.fixture(params=[(spec, shape, device) for spec in MASKS for shape in SHAPES for device in DEVICES],
                ids=lambda p: f"{p[0]}-{p[1][0]}x{p[1][1]}-{p[2]}")
def case(request):
    """(mask, operator, y (complex128), generator) for every mask, image size and device."""
    return _case(*request.param)


def _flat(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().reshape(x.shape[0], -1)


def test_forward_and_adjoint_match_the_dense_matrix_and_are_adjoint(case):
    mask, operator, _, generator = case
    shape, device = mask.shape, operator.device
    x = torch.complex(*torch.randn(2, 2, 1, *shape, generator=generator, dtype=torch.float64)).to(device)
    k = torch.complex(*torch.randn(2, 2, 1, *shape, generator=generator, dtype=torch.float64)).to(device)
    dense = _dense_forward(mask)
    np.testing.assert_allclose(_flat(operator.forward(x)), _flat(x) @ dense.T, atol=1e-10)
    np.testing.assert_allclose(_flat(operator.adjoint(k)), _flat(k) @ dense.conj(), atol=1e-10)
    # <A x, k> = <x, A^H k> (complex inner product, conjugate-linear in the first argument)
    left = torch.vdot(operator.forward(x).flatten(), k.flatten())
    right = torch.vdot(x.flatten(), operator.adjoint(k).flatten())
    assert abs(complex(left - right)) < 1e-10 * max(1.0, abs(complex(left)))
    # restricted to real images: <A x, k>_R = <x, Re(A^H k)>
    real = x.real.contiguous()
    left = float(torch.vdot(operator.forward(real).flatten(), k.flatten()).real)
    right = float((real * operator.adjoint_real(k)).sum())
    assert left == pytest.approx(right, abs=1e-10)


def test_real_gram_is_the_dense_real_gram(case):
    mask, operator, y, generator = case
    shape, device = mask.shape, operator.device
    x = torch.rand(3, 1, *shape, generator=generator, dtype=torch.float64).to(device)
    dense = _dense_forward(mask)
    gram = (dense.conj().T @ dense).real
    np.testing.assert_allclose(_flat(operator.normal_real(x)), _flat(x) @ gram.T, atol=1e-10)
    data = RealLeastSquares(operator, y)
    np.testing.assert_allclose(_flat(data.normal(x)), _flat(x) @ gram.T, atol=1e-10)
    # its k-space diagonal: F Re(A^H A) F^H = diag(D)
    fourier = _dense_fourier(shape)
    diagonal = np.diag(fourier @ gram @ fourier.conj().T)
    np.testing.assert_allclose(diagonal.real, operator.real_gram_weights.cpu().numpy().ravel(), atol=1e-10)


def test_prox_l2_solves_the_real_normal_equation_and_zeroes_the_objective_gradient(case):
    mask, operator, y, generator = case
    shape, device = mask.shape, operator.device
    v = torch.rand(2, 1, *shape, generator=generator, dtype=torch.float64).to(device)
    rho = 0.7
    x = operator.prox_l2(v, y, rho)
    assert x.dtype == torch.float64 and not x.is_complex() and x.shape == v.shape
    # dense oracle: (Re(A^H A) + rho I) x = Re(A^H y) + rho v
    dense = _dense_forward(mask)
    lhs = (dense.conj().T @ dense).real + rho * np.eye(dense.shape[1])
    rhs = (_flat(y.to(torch.complex128)) @ dense.conj()).real + rho * _flat(v)
    np.testing.assert_allclose(_flat(x), np.linalg.solve(lhs, rhs.T).T, atol=1e-10)
    # optimality by autograd: grad of 1/2||A x - y||^2 + rho/2||x - v||^2 vanishes at the output
    point = x.detach().clone().requires_grad_(True)
    objective = 0.5 * operator.data_misfit(point, y).sum() + 0.5 * rho * (point - v).square().sum()
    (gradient,) = torch.autograd.grad(objective, point)
    assert float(gradient.abs().max()) < 1e-10
    # the precomputed prox_{tau f} is prox_l2 with rho = 1 / tau; value and gradient of f agree with autograd
    data = operator.data_term(y)
    torch.testing.assert_close(data.prox(1 / rho)(v), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(data.value(v), 0.5 * operator.data_misfit(v, y), atol=1e-10, rtol=1e-10)
    point = v.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(0.5 * operator.data_misfit(point, y).sum(), point)
    torch.testing.assert_close(data.gradient(v), gradient, atol=1e-10, rtol=0)


def test_prox_of_an_asymmetric_mask_is_not_the_real_part_of_the_complex_solution():
    """With 25 spokes (not point-symmetric) taking Re of the complex prox is wrong: its objective gradient is not 0."""
    shape = (128, 128)
    truth = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(0))
    measurement = simulate_measurement(truth, radial_mask(25), 0.05, seed=1)
    operator, y, rho = measurement.operator, measurement.y, 0.7
    v = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(2))

    def objective_gradient_norm(x: torch.Tensor) -> float:
        point = x.detach().clone().requires_grad_(True)
        value = 0.5 * operator.data_misfit(point, y).sum() + 0.5 * rho * (point - v).square().sum()
        return float(torch.autograd.grad(value, point)[0].norm())

    exact = operator.prox_l2(v, y, rho)
    naive = torch.fft.ifft2((y + rho * torch.fft.fft2(v.to(torch.complex64), norm="ortho"))
                            / (operator.sampling + rho), norm="ortho").real
    assert objective_gradient_norm(exact) < 1e-4
    assert objective_gradient_norm(naive) > 100 * objective_gradient_norm(exact)


def test_prox_batch_equals_single_images():
    _, operator, y, generator = _case("radial:5", (12, 10), "cpu")
    v = torch.rand(2, 1, 12, 10, generator=generator, dtype=torch.float64)
    batch = operator.prox_l2(v, y, 0.3)
    for i in range(2):
        torch.testing.assert_close(batch[i : i + 1], operator.prox_l2(v[i : i + 1], y[i : i + 1], 0.3))


@pytest.mark.parametrize("rho", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_proximal_weight_is_a_clear_error(rho):
    _, operator, y, generator = _case("full", (12, 10), "cpu")
    with pytest.raises(ValueError, match="proximal weight must be a positive finite number"):
        operator.prox_l2(torch.zeros(2, 1, 12, 10, dtype=torch.float64), y, rho)


def test_conjugate_symmetric_sampling_values():
    mask = radial_mask(25)
    sampling = MRIOperator(mask).sampling
    d = conjugate_symmetric_sampling(sampling)
    assert set(torch.unique(d).tolist()) == {0.0, 0.5, 1.0}  # odd spoke count: many k sampled without -k
    assert float(d[0, 0]) == 1.0  # DC is its own mirror
    mirrored = torch.roll(torch.flip(d, (-2, -1)), (1, 1), (-2, -1))
    assert torch.equal(d, mirrored)
    assert float(d.sum()) == pytest.approx(float(sampling.sum()))
