"""The z-update of the joint reconstructions: decoder outputs with their graph, and two monotone z-optimisers.

For fixed x the z-part of paper eq. 12 (divided by lambda) is the *latent energy*

    f(z) = nll(x; G(z), L(z)) + mu/2 ||z||^2,

which is non-convex and ill-conditioned. Both optimisers take per-image line-searched steps along a descent direction
``d`` whose length is a continuous function of the problem (:meth:`GradientSteps.line_search`: the first trial
``t0`` stands when ``f(z + t0 d) <= f(z) + t0 g^T d / 2``, otherwise the minimiser of the quadratic interpolant,
accepted under the Armijo condition ``f(z + t d) <= f(z) + 1e-4 t g^T d``; an image whose search fails keeps its z),
so the joint objective never increases and a tiny change of the data changes the iterates only a little:

* :class:`GradientSteps`: ``d = -g`` with a first trial that doubles the last accepted step (the paper's
  backtracking gradient descent);
* :class:`LBFGSSteps`: the L-BFGS direction ``d = -H g`` (two-loop recursion, Nocedal & Wright 2006, Alg. 7.4) from
  the last ``memory`` curvature pairs ``(s, y) = (z_new - z, g(z_new) - g(z))`` and a unit first trial.
  Pairs are kept across outer iterations (see the class); a row whose direction is not a descent direction, or
  whose line search fails, falls back to ``-g`` and forgets its pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...models.cholesky import SparseCholesky
from ..solvers import batch_dot
from .common import inference_decoders

#: curvature pairs with ``s^T y`` below this (relative to ``||s|| ||y||``) are not stored (keeps ``H`` positive
#: definite)
_CURVATURE_EPS = 1e-8


def latent_energy64(cholesky: SparseCholesky, x: torch.Tensor, mean: torch.Tensor, z: torch.Tensor,
                    mu: float) -> torch.Tensor:
    """``f(z) = 1/2 ||L^T (x - G)||^2 - sum_p l_p + mu/2 ||z||^2`` per image, the sums accumulated in float64.

    The terms are ~1e4 while line-search decisions compare differences of ~1e-2: float32 sums (rounding ~1e-3,
    order-dependent) would make those comparisons noise-driven.
    """
    whitened = cholesky.mul_transpose(x - mean).double()
    return (0.5 * whitened.square().sum(dim=(1, 2, 3)) - cholesky.log_diag.double().sum(dim=(1, 2, 3))
            + 0.5 * mu * z.double().square().sum(1))


@dataclass
class DecodedLatent:
    """Decoder outputs ``G(z)`` and ``L(z)`` for a batch of latents, kept with their autograd graph.

    The z-gradient of ``nll(x; G(z), L(z))`` at a *new* x then costs one backward pass through the stored graph
    instead of a fresh forward + backward, and the x-update and the objective reuse ``G`` and ``L`` without decoding
    again. Per-image line searches may assemble the rows from several candidates (:meth:`select`); ``leaves`` lists
    the latent leaf tensors of every graph that contributes a row (rows not taken from a graph get zero gradient).
    """

    z: torch.Tensor
    mean: torch.Tensor
    cholesky: SparseCholesky
    leaves: tuple[torch.Tensor, ...]

    @classmethod
    def decode(cls, model, z: torch.Tensor) -> "DecodedLatent":
        """``G(z)`` and ``L(z)`` with their graph, through the model's :func:`~.common.inference_decoders`
        (batch norms folded) where it has them."""
        leaf = z.detach().requires_grad_(True)
        decoders = inference_decoders(model)
        with torch.enable_grad():
            if decoders is None:
                return cls(leaf.detach(), model.decode_mean(leaf), model.decode_cholesky(leaf), (leaf,))
            mean, cholesky = decoders.decode(leaf)
            return cls(leaf.detach(), mean, cholesky, (leaf,))

    def energy(self, x: torch.Tensor, mu: float, penalty=None) -> torch.Tensor:
        """``f(z) = nll(x; G(z), L(z)) + mu/2 ||z||^2 [+ penalty(L(z))]`` per image, without graph."""
        with torch.no_grad():
            value = latent_energy64(self.cholesky, x, self.mean, self.z, mu)
            return value if penalty is None else value + penalty(self.cholesky).double()

    def energy_and_gradient(self, x: torch.Tensor, mu: float, penalty=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``f(z)`` per image and its gradient in z (one backward pass; the graph is retained for reuse)."""
        with torch.enable_grad():
            nll = self.cholesky.nll(x, self.mean)
            if penalty is not None:
                nll = nll + penalty(self.cholesky)
            grads = torch.autograd.grad(nll.sum(), self.leaves, retain_graph=True, allow_unused=True)
        grad = mu * self.z
        for g in grads:
            if g is not None:
                grad = grad + g
        return self.energy(x, mu, penalty), grad

    def select(self, take: torch.Tensor, other: "DecodedLatent") -> "DecodedLatent":
        """Rows from ``other`` where ``take`` (shape ``(B,)``) is true, the rest from ``self``."""
        if bool(take.all()):
            return other
        if not bool(take.any()):
            return self

        def pick(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.where(take.view(-1, *([1] * (a.ndim - 1))), b, a)

        with torch.enable_grad():
            cholesky = SparseCholesky(pick(self.cholesky.log_diag, other.cholesky.log_diag),
                                      pick(self.cholesky.off_diag, other.cholesky.off_diag),
                                      self.cholesky.neighbourhood)
            mean = pick(self.mean, other.mean)
        return DecodedLatent(pick(self.z, other.z), mean, cholesky, self.leaves + other.leaves)


class GradientSteps:
    """Backtracking gradient descent on z (the paper's z-update); the step adapts per image across calls."""

    armijo = 1e-4
    grow = 2.0

    def __init__(self, batch: int, step_size: float, device, max_backtracks: int = 12, max_graphs: int = 4):
        self.step = torch.full((batch,), float(step_size), device=device)
        self.max_backtracks = max_backtracks
        self.max_graphs = max_graphs
        #: optional extra term of the latent energy, a differentiable function of the factor ``L(z)`` -> ``(B,)``
        self.penalty: Callable[[SparseCholesky], torch.Tensor] | None = None

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return -grad

    def restrict(self, keep: torch.Tensor) -> None:
        """Keep only the images ``keep`` (a boolean mask over the current batch) from now on."""
        self.step = self.step[keep]

    def first_trial(self) -> torch.Tensor:
        return self.step.clone()

    def observe_gradient(self, z: torch.Tensor, grad: torch.Tensor) -> None:
        """Called with every gradient evaluated (quasi-Newton memory); plain gradient steps keep none."""

    def after_step(self, accepted: torch.Tensor, trial: torch.Tensor) -> None:
        self.step = torch.where(accepted, trial * self.grow, trial)

    def run(self, model, x: torch.Tensor, decoded: DecodedLatent, mu: float, count: int) -> DecodedLatent:
        """``count`` line-searched steps from ``decoded`` at fixed ``x``; returns the decoder outputs at the new z.

        Costs one backward pass per step (the gradient) and one decoder forward pass per line-search trial.
        """
        if len(decoded.leaves) > self.max_graphs:  # images stuck on old graphs: start one fresh graph
            decoded = DecodedLatent.decode(model, decoded.z)
        for _ in range(count):
            energy, grad = decoded.energy_and_gradient(x, mu, self.penalty)
            self.observe_gradient(decoded.z, grad)
            direction = self.direction(grad)
            decoded, accepted, step = self.line_search(model, x, decoded, energy, direction, grad, mu)
            self.after_step(accepted, step)
        return decoded

    def line_search(self, model, x, decoded: DecodedLatent, energy: torch.Tensor, direction: torch.Tensor,
                    grad: torch.Tensor, mu: float) -> tuple[DecodedLatent, torch.Tensor, torch.Tensor]:
        """Per image: a step ``t`` along ``direction`` that is a *continuous* function of the problem.

        With ``f0 = f(z)``, slope ``g0 = g^T d < 0`` and ``f1 = f(z + t0 d)`` at the first trial ``t0``, the next
        step is the minimiser of the quadratic through ``(f0, g0, f1)``, kept in ``[t0 / 10, t0]``:

            t = min(t0, max(t0 / 10, -g0 t0^2 / (2 (f1 - f0 - g0 t0))))      (t0 when the quadratic is not convex)

        ``t = t0`` exactly when ``f1 <= f0 + g0 t0 / 2`` (Armijo with ``c = 1/2``), and at that boundary the
        quadratic's minimiser is ``t0`` itself, so the step moves continuously as ``f1`` crosses it (plain halving
        jumps from ``t0`` to ``t0/2``: a 1e-6 change of the data could flip it and send the non-convex iteration
        to another local minimum). A step shorter than ``t0`` is accepted when it meets Armijo with ``c =
        armijo``; otherwise the interpolation repeats from it (at most ``max_backtracks`` trials; an image whose
        search fails keeps its z, so the objective never increases). Energies and the model are float64.
        Returns the decoder outputs at the new z, which images accepted a step, and the accepted (or last) steps.
        """
        slope = batch_dot(grad.double(), direction.double())
        accepted = torch.zeros_like(slope, dtype=torch.bool)
        trial = self.first_trial().double()
        new = decoded
        for attempt in range(self.max_backtracks):
            candidate = DecodedLatent.decode(model, decoded.z + trial.to(direction.dtype)[:, None] * direction)
            value = candidate.energy(x, mu, self.penalty)
            curvature = value - energy - slope * trial  # > 0: the quadratic model along d is convex
            minimiser = torch.where(curvature > 0, -slope * trial.square() / (2 * curvature).clamp_min(1e-300),
                                    torch.full_like(trial, torch.inf))
            interpolated = torch.minimum(trial, torch.maximum(0.1 * trial, minimiser))
            interpolated = torch.where(torch.isfinite(value), interpolated, 0.5 * trial)  # NaN/inf: halve
            if attempt == 0:  # the first trial stands when the interpolated step is the trial itself
                ok = (interpolated >= trial) & (value < energy)
            else:
                ok = value <= energy + self.armijo * trial * slope
            ok = ok & ~accepted
            new = new.select(ok, candidate)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            trial = torch.where(accepted, trial, interpolated)
        return new, accepted, trial.to(grad.dtype)


class LBFGSSteps(GradientSteps):
    """Line-searched L-BFGS steps on z with per-image curvature memory kept across calls.

    A curvature pair is formed from every two consecutive gradient evaluations. Within a call they are at the same x;
    across calls (the first gradient of a call is at the x solved for the current z) they are pairs of the reduced
    objective ``min_x E(x, z)``, whose gradient is ``lambda`` times the latent-energy gradient at that exact x
    (envelope theorem), so with ``z_steps = 1`` this is L-BFGS on the reduced objective. Each image keeps its own
    ring buffer of its last ``memory`` valid pairs, so its steps do not depend on the other images of the batch.
    """

    def __init__(self, batch: int, step_size: float, device, memory: int = 8, **kwargs):
        super().__init__(batch, step_size, device, **kwargs)
        self.memory = memory
        self.s: torch.Tensor | None = None  # (memory, B, d) ring buffers, allocated at the first pair
        self.y: torch.Tensor | None = None
        self.rho = torch.zeros(memory, batch, device=device)  # 0: empty slot
        self.head = torch.zeros(batch, dtype=torch.long, device=device)  # next slot to write, per image
        self.gamma = torch.ones(batch, device=device)
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def restrict(self, keep: torch.Tensor) -> None:
        super().restrict(keep)
        if self.s is not None:
            self.s, self.y = self.s[:, keep], self.y[:, keep]
        self.rho, self.head, self.gamma = self.rho[:, keep], self.head[keep], self.gamma[keep]
        if self.last is not None:
            self.last = (self.last[0][keep], self.last[1][keep])

    @property
    def has_memory(self) -> torch.Tensor:
        return (self.rho != 0).any(0)

    def _newest_first(self):
        """``(s_j, y_j, rho_j)`` per image from the newest pair to the oldest (each ``(B, ...)``)."""
        rows = torch.arange(self.rho.shape[1], device=self.rho.device)
        for age in range(self.memory):
            slot = (self.head - 1 - age) % self.memory
            yield self.s[slot, rows], self.y[slot, rows], self.rho[slot, rows]

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """``-H g`` by the two-loop recursion, ``H_0 = gamma I`` with ``gamma = s^T y / y^T y`` of the newest pair."""
        if self.s is None:
            return -grad
        q = grad.clone()
        history = list(self._newest_first())
        alphas = []
        for s, y, rho in history:
            alpha = rho * batch_dot(s, q)
            q = q - alpha[:, None] * y
            alphas.append(alpha)
        q = q * self.gamma[:, None]
        for (s, y, rho), alpha in zip(reversed(history), reversed(alphas)):
            beta = rho * batch_dot(y, q)
            q = q + (alpha - beta)[:, None] * s
        direction = -q
        descent = batch_dot(grad, direction) < 0
        if not bool(descent.all()):  # forget the memory of rows where H g is not a descent direction
            self._forget(~descent)
            direction = torch.where(descent[:, None], direction, -grad)
        return direction

    def first_trial(self) -> torch.Tensor:
        return torch.where(self.has_memory, torch.ones_like(self.step), self.step)

    def observe_gradient(self, z: torch.Tensor, grad: torch.Tensor) -> None:
        last, self.last = self.last, (z, grad)
        if last is None:
            return
        s, y = z - last[0], grad - last[1]
        sy = batch_dot(s, y)
        valid = sy > _CURVATURE_EPS * s.norm(dim=1) * y.norm(dim=1)
        if not bool(valid.any()):
            return
        if self.s is None:
            self.s = torch.zeros((self.memory, *s.shape), dtype=s.dtype, device=s.device)
            self.y = torch.zeros_like(self.s)
        rows = torch.arange(s.shape[0], device=s.device)[valid]
        slots = self.head[valid]
        self.s[slots, rows] = s[valid]
        self.y[slots, rows] = y[valid]
        self.rho[slots, rows] = (1.0 / sy[valid]).to(self.rho.dtype)
        self.head = torch.where(valid, (self.head + 1) % self.memory, self.head)
        self.gamma = torch.where(valid, sy / batch_dot(y, y).clamp_min(1e-30), self.gamma).to(self.gamma.dtype)

    def after_step(self, accepted: torch.Tensor, trial: torch.Tensor) -> None:
        self.step = torch.where(self.has_memory, self.step, torch.where(accepted, trial * self.grow, trial))
        if not bool(accepted.all()):  # the line search failed for these rows: restart them from -g
            self._forget(~accepted)

    def _forget(self, rows: torch.Tensor) -> None:
        self.rho = torch.where(rows[None], torch.zeros_like(self.rho), self.rho)
        self.gamma = torch.where(rows, torch.ones_like(self.gamma), self.gamma)


Z_OPTIMISERS: dict[str, type[GradientSteps]] = {"lbfgs": LBFGSSteps, "gradient": GradientSteps}
