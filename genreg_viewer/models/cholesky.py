"""Structured image covariance through a sparse Cholesky factor of the precision (Duff et al. 2023).

The covariance decoder predicts, for every pixel, the entries of a sparse lower-triangular matrix ``L`` with

    Sigma^{-1} = L L^T,        pixels in raster order, index ``p = row * W + col``.

Parameterisation (the project's method notes): for a ``k x k`` neighbourhood (``k`` odd, 3 by
default, 5 as an option) there are ``F = (k^2 - 1) / 2`` off-diagonal weights per pixel, one for each neighbour
*after* the pixel in raster order inside the window, listed by the raster order of the offset
(:func:`neighbour_offsets`). Channel 0 is the log-diagonal ``l_p`` with ``L[p, p] = exp(l_p)``; channel ``1 + j``
is ``w_j(p) = L[p + off_j, p]`` (row: the later pixel ``q = p + off_j``, column ``p``). Weights whose neighbour
falls outside the image are ignored (masked to zero, so neither their values nor their gradients matter). Hence

    (L^T v)_p = exp(l_p) v_p + sum_j w_j(p) v_{p + off_j}
    (L v)_q   = exp(l_q) v_q + sum_j w_j(q - off_j) v_{q - off_j}
    log det(Sigma) = -log det(L L^T) = -2 sum_p l_p.

``L`` is banded with lower bandwidth ``r W + r`` (``r = k // 2``: ``W + 1`` for 3x3, ``2W + 2`` for 5x5) and,
grouping the pixels into blocks of ``r`` image rows, block lower *bidiagonal*; :meth:`SparseCholesky.variance_map`
uses that to compute ``diag(Sigma)`` exactly without ever forming ``Sigma``.

The torch operations (``mul``, ``mul_transpose``, ``precision_mul``, ``log_det_precision``, ``nll``) are batched,
differentiable and run on any device (shifts of zero-padded images, a Python loop over the ``F`` offsets only).
The solves, samples, covariance rows and the variance map run on the CPU in float64 (SciPy), item by item, and
are not differentiable.
"""

from __future__ import annotations

import math
from typing import Any
from functools import lru_cache

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
import torch.nn.functional as nnf

__all__ = ["SparseCholesky", "channels_for", "neighbour_offsets"]


# --------------------------------------------------------------------------------------------- neighbourhood
def _check_neighbourhood(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3 or k % 2 == 0:
        raise ValueError(f"neighbourhood must be an odd integer >= 3 (3 for 3x3, 5 for 5x5), got {k!r}")
    return int(k)


def neighbour_offsets(k: int) -> list[tuple[int, int]]:
    """The ``(drow, dcol)`` offsets of the neighbours after a pixel in raster order inside its ``k x k`` window.

    Ordered by the raster order of the offset: ``k = 3`` gives ``[(0, 1), (1, -1), (1, 0), (1, 1)]``; ``k = 5``
    gives ``(0, 1), (0, 2), (1, -2), ..., (1, 2), (2, -2), ..., (2, 2)``. There are ``(k^2 - 1) / 2`` of them.
    """
    radius = _check_neighbourhood(k) // 2
    same_row = [(0, dcol) for dcol in range(1, radius + 1)]
    later_rows = [(drow, dcol) for drow in range(1, radius + 1) for dcol in range(-radius, radius + 1)]
    return same_row + later_rows


def channels_for(k: int) -> int:
    """Channels of the covariance decoder for a ``k x k`` neighbourhood: ``1 + (k^2 - 1) / 2`` (5 or 13)."""
    return 1 + len(neighbour_offsets(k))


@lru_cache(maxsize=32)
def _valid_neighbours(height: int, width: int, k: int) -> np.ndarray:
    """Boolean ``(F, H, W)``: whether pixel ``p``'s neighbour ``p + off_j`` lies inside the image."""
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    masks = [(rows + drow < height) & (cols + dcol >= 0) & (cols + dcol < width) for drow, dcol in neighbour_offsets(k)]
    valid = np.stack(masks).astype(bool)
    valid.setflags(write=False)
    return valid


@lru_cache(maxsize=32)
def _valid_neighbours_tensor(height: int, width: int, k: int, device: torch.device) -> torch.Tensor:
    """:func:`_valid_neighbours` as a bool tensor on ``device`` (cached: no host-to-device copy per factor)."""
    return torch.from_numpy(_valid_neighbours(height, width, k).copy()).to(device)


@lru_cache(maxsize=16)
def _csr_pattern(height: int, width: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparsity pattern of ``L`` in CSR form with sorted column indices: ``(indptr, indices, source)``.

    The CSR data is ``values[source]`` for the flattened ``(1 + F) * n`` array ``[exp(l), w_0, ..., w_{F-1}]``.
    """
    n = height * width
    pixel = np.arange(n).reshape(height, width)
    valid = _valid_neighbours(height, width, k)
    row_parts, col_parts, source_parts = [pixel.ravel()], [pixel.ravel()], [pixel.ravel()]
    for j, (drow, dcol) in enumerate(neighbour_offsets(k)):
        p = pixel[valid[j]]
        row_parts.append(p + drow * width + dcol)
        col_parts.append(p)
        source_parts.append((1 + j) * n + p)
    rows, cols, source = np.concatenate(row_parts), np.concatenate(col_parts), np.concatenate(source_parts)
    order = np.lexsort((cols, rows))
    indptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    pattern = (indptr, cols[order].astype(np.int32), source[order])
    for array in pattern:
        array.setflags(write=False)
    return pattern


def _triangular_factor(matrix: scipy.sparse.spmatrix):
    """SuperLU object for a lower-triangular sparse ``matrix`` with natural ordering and no pivoting.

    For a triangular matrix this "factorisation" creates no fill (unit-lower times diagonal); its ``solve(b)`` and
    ``solve(b, trans="T")`` are plain forward and back substitutions, much faster per call than
    ``scipy.sparse.linalg.spsolve_triangular``, which rebuilds and rescales the matrix on every call
    (``benchmarks/bench_covariance.py`` times both).
    """
    return scipy.sparse.linalg.splu(scipy.sparse.csc_matrix(matrix), permc_spec="NATURAL", diag_pivot_thresh=0.0,
                                    options={"SymmetricMode": True})


_NUMPY_FLOATS = {torch.float32: np.float32, torch.float64: np.float64}


def _to_numpy64(tensor: torch.Tensor) -> np.ndarray:
    """A detached float64 NumPy copy/view of ``tensor`` (conversion done by NumPy: torch's CPU thread pool makes
    tiny element-wise ops slow on a busy 2-core machine)."""
    tensor = tensor.detach().cpu()
    if tensor.dtype not in _NUMPY_FLOATS:
        tensor = tensor.double()
    return tensor.numpy().astype(np.float64, copy=False)


def _from_numpy_like(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``array`` as a tensor with ``like``'s dtype and device."""
    numpy_dtype = _NUMPY_FLOATS.get(like.dtype)
    if numpy_dtype is not None:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=numpy_dtype)).to(like.device)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device=like.device, dtype=like.dtype)


def _as_index(value, size: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} {value} is out of range [0, {size - 1}]")
    return int(value)


# --------------------------------------------------------------------------------------------- the factor
class SparseCholesky:
    """A batch of sparse lower-triangular Cholesky factors ``L`` of precisions ``Sigma^{-1} = L L^T``.

    ``log_diag``: ``(B, 1, H, W)`` log-diagonal ``l`` (``L_pp = exp(l_p)``); ``off_diag``: ``(B, F, H, W)`` weights
    ``w_j(p) = L[p + off_j, p]`` for the offsets of :func:`neighbour_offsets` ``(neighbourhood)``. Both floating
    point, same dtype and device. The instance treats the tensors as immutable: SciPy matrices and variance maps
    are cached per batch item, so do not modify the tensors in place after construction.
    """

    def __init__(self, log_diag: torch.Tensor, off_diag: torch.Tensor, neighbourhood: int = 3):
        k = _check_neighbourhood(neighbourhood)
        offsets = neighbour_offsets(k)
        for name, tensor in (("log_diag", log_diag), ("off_diag", off_diag)):
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
            if tensor.dim() != 4:
                raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(tensor.shape)}")
            if not tensor.is_floating_point():
                raise ValueError(f"{name} must be a real floating-point tensor, got {tensor.dtype}")
        if log_diag.shape[1] != 1:
            raise ValueError(f"log_diag must have 1 channel, got shape {tuple(log_diag.shape)}")
        if off_diag.shape[1] != len(offsets):
            raise ValueError(f"a {k}x{k} neighbourhood needs {len(offsets)} off-diagonal channels, got shape "
                             f"{tuple(off_diag.shape)}")
        if log_diag.shape[0] != off_diag.shape[0] or log_diag.shape[2:] != off_diag.shape[2:]:
            raise ValueError(f"log_diag {tuple(log_diag.shape)} and off_diag {tuple(off_diag.shape)} must agree in "
                             "batch size and image size")
        if min(log_diag.shape[0], log_diag.shape[2], log_diag.shape[3]) < 1:
            raise ValueError(f"empty batch or image: log_diag has shape {tuple(log_diag.shape)}")
        if log_diag.dtype != off_diag.dtype or log_diag.device != off_diag.device:
            raise ValueError(f"log_diag ({log_diag.dtype}, {log_diag.device}) and off_diag ({off_diag.dtype}, "
                             f"{off_diag.device}) must have the same dtype and device")
        self.log_diag = log_diag
        self.off_diag = off_diag
        self.neighbourhood = k
        self.offsets = offsets
        self._valid = _valid_neighbours_tensor(log_diag.shape[2], log_diag.shape[3], k, log_diag.device)
        self._csr_cache: dict[int, scipy.sparse.csr_matrix] = {}
        self._factor_cache: dict[int, Any] = {}  # SuperLU objects
        self._variance_cache: dict[int, np.ndarray] = {}
        self._diagonal_cache: torch.Tensor | None = None  # exp(log_diag) for products without autograd

    # ------------------------------------------------------------------------------------------ builders
    @classmethod
    def from_channels(cls, channels: torch.Tensor, neighbourhood: int = 3) -> "SparseCholesky":
        """Split decoder output ``(B, 1 + F, H, W)`` into ``log_diag = channels[:, :1]`` and
        ``off_diag = channels[:, 1:]``.

        No squashing happens here: bounding ``l`` is the decoder's job.
        """
        expected = channels_for(neighbourhood)
        if not isinstance(channels, torch.Tensor) or channels.dim() != 4 or channels.shape[1] != expected:
            shape = tuple(channels.shape) if isinstance(channels, torch.Tensor) else type(channels).__name__
            raise ValueError(f"a {neighbourhood}x{neighbourhood} neighbourhood needs channels of shape "
                             f"(B, {expected}, H, W), got {shape}")
        return cls(channels[:, :1], channels[:, 1:], neighbourhood)

    @classmethod
    def identity(cls, shape, log_diag_value: float = 0.0, device=None, dtype=None,
                 neighbourhood: int = 3) -> "SparseCholesky":
        """A diagonal factor ``L = exp(log_diag_value) I``, i.e. ``Sigma = exp(-2 log_diag_value) I``.

        ``shape`` is ``(B, 1, H, W)`` (or ``(H, W)`` for ``B = 1``); off-diagonal weights are zero. For
        ``Sigma = rho I`` use ``log_diag_value = -0.5 * log(rho)``.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1, 1) + shape
        if len(shape) != 4 or shape[1] != 1:
            raise ValueError(f"identity shape must be (B, 1, H, W) or (H, W), got {shape}")
        if not math.isfinite(float(log_diag_value)):
            raise ValueError(f"log_diag_value must be finite, got {log_diag_value!r}")
        dtype = dtype or torch.get_default_dtype()
        log_diag = torch.full(shape, float(log_diag_value), device=device, dtype=dtype)
        off_diag = torch.zeros((shape[0], len(neighbour_offsets(neighbourhood))) + shape[2:], device=device,
                               dtype=dtype)
        return cls(log_diag, off_diag, neighbourhood)

    def detach(self) -> "SparseCholesky":
        """The same factor with tensors detached from the autograd graph."""
        return SparseCholesky(self.log_diag.detach(), self.off_diag.detach(), self.neighbourhood)

    def to(self, device=None, dtype=None) -> "SparseCholesky":
        """The same factor on another device and/or with another floating-point dtype."""
        return SparseCholesky(self.log_diag.to(device=device, dtype=dtype),
                              self.off_diag.to(device=device, dtype=dtype), self.neighbourhood)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def batch_size(self) -> int:
        return self.log_diag.shape[0]

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.log_diag.shape[2]), int(self.log_diag.shape[3])

    @property
    def num_pixels(self) -> int:
        return self.image_shape[0] * self.image_shape[1]

    @property
    def device(self) -> torch.device:
        return self.log_diag.device

    @property
    def dtype(self) -> torch.dtype:
        return self.log_diag.dtype

    def __repr__(self) -> str:
        return (f"SparseCholesky(batch={self.batch_size}, image={self.image_shape}, "
                f"neighbourhood={self.neighbourhood}x{self.neighbourhood}, dtype={self.dtype}, device={self.device})")

    def diagonal(self) -> torch.Tensor:
        """``L_pp = exp(l_p)``, shape ``(B, 1, H, W)``."""
        return torch.exp(self.log_diag)

    def masked_off_diag(self) -> torch.Tensor:
        """Off-diagonal weights with those pointing outside the image set to zero (gradient zero there too)."""
        return torch.where(self._valid, self.off_diag, torch.zeros((), dtype=self.dtype, device=self.device))

    # ------------------------------------------------------------------------------------------ torch ops
    def _needs_graph(self, v: torch.Tensor) -> bool:
        """Whether a product with ``v`` must be recorded by autograd (grad mode on and any input requiring grad)."""
        return torch.is_grad_enabled() and (self.log_diag.requires_grad or self.off_diag.requires_grad
                                            or v.requires_grad)

    def _mul_constant(self, v: torch.Tensor, transpose: bool) -> torch.Tensor:
        """``L^T v`` or ``L v`` without autograd: the same sums as :meth:`mul_transpose` / :meth:`mul`, but each
        offset ``j`` is one in-place multiply-add on the rectangle of pixels ``p`` whose neighbour ``p + off_j``
        lies inside the image (exactly where the weight is valid, so no masking, padding or stacking is needed),
        and ``exp(l)`` is computed once per factor (the tensors are immutable, see the class)."""
        if self._diagonal_cache is None:
            with torch.no_grad():
                self._diagonal_cache = torch.exp(self.log_diag)
        height, width = self.image_shape
        total = self._diagonal_cache * v
        for j, (drow, dcol) in enumerate(self.offsets):
            rows = slice(0, height - drow)  # pixels p whose neighbour p + off_j is inside the image
            cols = slice(max(0, -dcol), width - max(0, dcol))
            moved_rows = slice(drow, height)  # their neighbours q = p + off_j
            moved_cols = slice(max(0, dcol), width - max(0, -dcol))
            weight = self.off_diag[:, j:j + 1, rows, cols]
            if transpose:  # (L^T v)_p += w_j(p) v_{p + off_j}
                total[:, :, rows, cols].addcmul_(weight, v[:, :, moved_rows, moved_cols])
            else:  # (L v)_q += w_j(q - off_j) v_{q - off_j}
                total[:, :, moved_rows, moved_cols].addcmul_(weight, v[:, :, rows, cols])
        return total

    def _check_image(self, v: torch.Tensor, name: str = "v") -> None:
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
        if v.dim() != 4 or v.shape[1] != 1 or tuple(v.shape[2:]) != self.image_shape:
            raise ValueError(f"{name} must have shape (B, 1, {self.image_shape[0]}, {self.image_shape[1]}), "
                             f"got {tuple(v.shape)}")
        if v.shape[0] not in (1, self.batch_size) and self.batch_size != 1:
            raise ValueError(f"{name} has batch size {v.shape[0]} but the factor has batch size {self.batch_size}")
        if v.is_complex():
            raise ValueError(f"{name} must be real, got {v.dtype}")

    def mul_transpose(self, v: torch.Tensor) -> torch.Tensor:
        """``L^T v``: ``(L^T v)_p = exp(l_p) v_p + sum_j w_j(p) v_{p + off_j}``, for ``v`` ``(B, 1, H, W)``."""
        self._check_image(v)
        if not self._needs_graph(v):
            return self._mul_constant(v, transpose=True)
        radius = self.neighbourhood // 2
        height, width = self.image_shape
        padded = nnf.pad(v, (radius, radius, 0, radius))  # zero rows below, zero columns on both sides
        shifted = torch.cat([padded[:, :, drow:drow + height, radius + dcol:radius + dcol + width]
                             for drow, dcol in self.offsets], dim=1)  # (B, F, H, W): v_{p + off_j}
        return self.diagonal() * v + (self.masked_off_diag() * shifted).sum(dim=1, keepdim=True)

    def mul(self, v: torch.Tensor) -> torch.Tensor:
        """``L v``: ``(L v)_q = exp(l_q) v_q + sum_j w_j(q - off_j) v_{q - off_j}``, for ``v`` ``(B, 1, H, W)``."""
        self._check_image(v)
        if not self._needs_graph(v):
            return self._mul_constant(v, transpose=False)
        radius = self.neighbourhood // 2
        height, width = self.image_shape
        contributions = nnf.pad(self.masked_off_diag() * v, (radius, radius, radius, 0))  # w_j(p) v_p, zero-padded
        total = self.diagonal() * v
        for j, (drow, dcol) in enumerate(self.offsets):  # move w_j(p) v_p to q = p + off_j
            total = total + contributions[:, j:j + 1, radius - drow:radius - drow + height,
                                          radius - dcol:radius - dcol + width]
        return total

    def precision_mul(self, v: torch.Tensor) -> torch.Tensor:
        """``Sigma^{-1} v = L (L^T v)``."""
        return self.mul(self.mul_transpose(v))

    def log_det_precision(self) -> torch.Tensor:
        """``log det(L L^T) = 2 sum_p l_p``, shape ``(B,)``."""
        return 2.0 * self.log_diag.sum(dim=(1, 2, 3))

    def log_det_covariance(self) -> torch.Tensor:
        """``log det(Sigma) = -2 sum_p l_p``, shape ``(B,)``."""
        return -self.log_det_precision()

    def nll(self, x: torch.Tensor, mean: torch.Tensor, include_constant: bool = False) -> torch.Tensor:
        """Exact Gaussian negative log-likelihood ``-log N(x; mean, Sigma)`` per batch item, shape ``(B,)``.

            nll = 1/2 ||L^T (x - mean)||^2 - sum_p l_p  [+ (n/2) log(2 pi) if include_constant]

        (paper eq. 10, with ``log det(Sigma) = -2 sum_p l_p``). Note: the project notes write the loss as
        ``-2 sum log L_pp + 1/2 ||L^T (x - G)||^2``, i.e. ``log det(Sigma)`` where the Gaussian has
        ``1/2 log det(Sigma)``. That doubled log-det term would make the fitted variance half the true one (scalar
        precision ``p``, residual ``r``: ``-log p + p r^2 / 2`` is minimised at ``p = 1/r^2``, ``-2 log p +
        p r^2 / 2`` at ``p = 2/r^2``), so we implement the true Gaussian nll. Differentiable in ``x``, ``mean``,
        ``l`` and ``w``; ``x`` and ``mean`` broadcast over the batch like the factor.
        """
        self._check_image(x, "x")
        self._check_image(mean, "mean")
        if x.shape[0] not in (1, mean.shape[0]) and mean.shape[0] != 1:
            raise ValueError(f"x (batch {x.shape[0]}) and mean (batch {mean.shape[0]}) do not broadcast")
        whitened = self.mul_transpose(x - mean)
        value = 0.5 * whitened.square().sum(dim=(1, 2, 3)) - self.log_diag.sum(dim=(1, 2, 3))
        if include_constant:
            value = value + 0.5 * self.num_pixels * math.log(2.0 * math.pi)
        return value

    # ------------------------------------------------------------------------------------------ SciPy side
    def _check_index(self, index) -> int:
        return _as_index(index, self.batch_size, "batch index")

    def _lower_csr(self, index: int) -> scipy.sparse.csr_matrix:
        """``L`` of batch item ``index`` (float64 CSR, cached), after checking it is finite and non-singular."""
        index = self._check_index(index)
        if index not in self._csr_cache:
            height, width = self.image_shape
            n = self.num_pixels
            with np.errstate(over="ignore", under="ignore"):
                values = np.concatenate([np.exp(_to_numpy64(self.log_diag[index]).ravel()),
                                         _to_numpy64(self.off_diag[index]).ravel()])
            if not np.isfinite(values).all():
                raise ValueError("the Cholesky factor contains non-finite values (NaN/inf log-diagonal or weights)")
            if not (values[:n] > 0).all():
                raise ValueError("the Cholesky factor is singular: exp(log_diag) underflows to 0 "
                                 f"(smallest log-diagonal {float(self.log_diag[index].min()):.3g})")
            indptr, indices, source = _csr_pattern(height, width, self.neighbourhood)
            lower = scipy.sparse.csr_matrix((values[source], indices, indptr), shape=(n, n))
            lower.has_sorted_indices = True
            self._csr_cache[index] = lower
        return self._csr_cache[index]

    def to_scipy(self, index: int = 0) -> scipy.sparse.csr_matrix:
        """``L`` of batch item ``index`` as an ``n x n`` float64 CSR matrix (``n = H W``, raster order)."""
        return self._lower_csr(index).copy()

    def _solve_columns(self, index: int, rhs: np.ndarray, transpose: bool) -> np.ndarray:
        """``L^{-1} rhs`` (or ``L^{-T} rhs``) for float64 ``rhs`` of shape ``(n,)`` or ``(n, m)``.

        Uses a cached SuperLU object of the triangular ``L`` (see :func:`_triangular_factor`; same result as
        ``spsolve_triangular`` up to rounding; timings in ``benchmarks/bench_covariance.py``).
        """
        index = self._check_index(index)
        if index not in self._factor_cache:
            self._factor_cache[index] = _triangular_factor(self._lower_csr(index))
        return self._factor_cache[index].solve(rhs, trans="T" if transpose else "N")

    def _solve_images(self, b: torch.Tensor, transpose: bool) -> torch.Tensor:
        self._check_image(b, "b")
        batch = max(self.batch_size, b.shape[0])
        n = self.num_pixels
        columns = _to_numpy64(b).reshape(b.shape[0], n)
        columns = np.broadcast_to(columns, (batch, n))
        if self.batch_size == 1:  # one factor for every right-hand side: a single multi-column solve
            solved = self._solve_columns(0, np.ascontiguousarray(columns.T), transpose).T.reshape(batch, n)
        else:
            solved = np.stack([self._solve_columns(i, np.array(columns[i]), transpose) for i in range(batch)])
        return _from_numpy_like(solved.reshape(batch, 1, *self.image_shape), b)

    def solve_lower(self, b: torch.Tensor) -> torch.Tensor:
        """``L^{-1} b`` (forward substitution) for ``b`` ``(B, 1, H, W)``.

        Computed in float64 on the CPU by a sparse triangular solve (a cached fill-free SuperLU object of ``L``;
        the same substitution as ``scipy.sparse.linalg.spsolve_triangular`` without its per-call set-up). The
        result comes back on ``b``'s device and dtype and is not differentiable.
        """
        return self._solve_images(b, transpose=False)

    def solve_upper_transpose(self, b: torch.Tensor) -> torch.Tensor:
        """``L^{-T} b`` (back substitution) for ``b`` ``(B, 1, H, W)``; see :meth:`solve_lower`."""
        return self._solve_images(b, transpose=True)

    def sample(self, mean: torch.Tensor, generator: torch.Generator | None = None, count: int = 1) -> torch.Tensor:
        """Draws ``x = mean + L^{-T} u`` with ``u ~ N(0, I)``, so ``Cov(x) = L^{-T} L^{-1} = (L L^T)^{-1} = Sigma``.

        ``mean`` is ``(B, 1, H, W)``. Returns ``(count, B, 1, H, W)`` on ``mean``'s device and dtype
        (``sample(mean)[0]`` is one draw per batch item). ``u`` is drawn in float64 from ``generator`` (on its
        device; the global RNG when ``None``), so results do not depend on the device of ``mean``.
        """
        self._check_image(mean, "mean")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count must be a positive integer, got {count!r}")
        count = int(count)
        batch = max(self.batch_size, mean.shape[0])
        n = self.num_pixels
        generator_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn((count, batch, n), generator=generator, dtype=torch.float64,
                            device=generator_device).cpu().numpy()
        if self.batch_size == 1:
            columns = noise.reshape(count * batch, n).T
            solved = self._solve_columns(0, np.ascontiguousarray(columns), True).T.reshape(count, batch, n)
        else:
            solved = np.stack([self._solve_columns(i, np.ascontiguousarray(noise[:, i].T), True).T
                               for i in range(batch)], axis=1)
        draws = _to_numpy64(mean).reshape(1, mean.shape[0], n) + solved
        return _from_numpy_like(draws.reshape(count, batch, 1, *self.image_shape), mean)

    def covariance_row(self, row: int, col: int, index: int = 0) -> np.ndarray:
        """Row ``i = row * W + col`` of ``Sigma`` as an ``(H, W)`` float64 image: ``Sigma e_i = L^{-T} (L^{-1} e_i)``.

        One forward and one back substitution (sparse triangular solves; the first call on an instance also builds
        its float64 copy and SuperLU object of ``L``: ``benchmarks/bench_covariance.py`` times both).
        """
        height, width = self.image_shape
        pixel = _as_index(row, height, "row") * width + _as_index(col, width, "col")
        unit = np.zeros(self.num_pixels)
        unit[pixel] = 1.0
        forward = self._solve_columns(index, unit, transpose=False)
        return self._solve_columns(index, forward, transpose=True).reshape(height, width)

    def correlation_row(self, row: int, col: int, index: int = 0) -> np.ndarray:
        """Correlations ``Sigma_ij / sqrt(Sigma_ii Sigma_jj)`` of pixel ``i = (row, col)`` with every pixel ``j``.

        ``(H, W)`` float64 in ``[-1, 1]``, exactly 1 at ``(row, col)``. Uses :meth:`covariance_row` and the
        (cached) :meth:`variance_map`, so the first call per batch item also pays for the variance map.
        """
        covariance = self.covariance_row(row, col, index)
        variance = self.variance_map(index).copy()
        variance[row, col] = covariance[row, col]  # the same number in numerator and denominator at i
        correlation = covariance / np.sqrt(covariance[row, col] * variance)
        correlation[row, col] = 1.0
        return np.clip(correlation, -1.0, 1.0)

    def variance_map(self, index: int = 0) -> np.ndarray:
        """Exact pixel variances ``diag(Sigma)_i = ||L^{-1} e_i||^2`` as an ``(H, W)`` float64 image (cached).

        Group pixels into blocks of ``r = k // 2`` image rows. Every neighbour offset moves at most ``r`` rows, so
        ``L`` is block lower bidiagonal, with diagonal blocks ``D_m`` (lower triangular) and sub-diagonal blocks
        ``C_m = L[block m+1, block m]``. From ``L^T Sigma = L^{-1}`` (block lower triangular with diagonal blocks
        ``D_m^{-1}``), the diagonal blocks ``S_m`` of ``Sigma`` obey the backward recursion

            S_last = D_last^{-T} D_last^{-1},      S_m = D_m^{-T} (I + C_m^T S_{m+1} C_m) D_m^{-1},

        exact up to rounding. ``D_m`` and ``C_m`` stay sparse: per block, a fill-free sparse factor of ``D_m``
        (:func:`_triangular_factor`), two triangular solves with ``r W`` dense right-hand sides and two sparse-dense
        products, ``~4 nnz(L) r W`` flops in all (0.04 GFlop for 128x128 3x3, 0.2 GFlop for 5x5), in SciPy's
        single-threaded compiled loops (no BLAS threading, which thrashes on a busy 2-core machine); memory
        ``O((r W)^2)``; timed by ``benchmarks/bench_covariance.py`` (README, "Covariance operations").
        """
        index = self._check_index(index)
        if index not in self._variance_cache:
            lower = self._lower_csr(index)
            height, width = self.image_shape
            n = self.num_pixels
            block = (self.neighbourhood // 2) * width
            variances = np.empty(n)
            later_block_cov = None  # S_{m+1}
            for start in reversed(range(0, n, block)):
                stop = min(start + block, n)
                middle = np.eye(stop - start)  # M = I + C_m^T S_{m+1} C_m
                if later_block_cov is not None:
                    sub_block = lower[stop:stop + later_block_cov.shape[0], start:stop]  # C_m, sparse
                    middle += sub_block.T @ np.ascontiguousarray((sub_block.T @ later_block_cov).T)
                diag_factor = _triangular_factor(lower[start:stop, start:stop])  # D_m
                # S_m = D^{-T} M D^{-1}: Y = D^{-T} M, then S_m = S_m^T = D^{-T} Y^T.
                half = diag_factor.solve(middle, trans="T")
                block_cov = diag_factor.solve(np.ascontiguousarray(half.T), trans="T")
                block_cov = 0.5 * (block_cov + block_cov.T)
                variances[start:stop] = np.diag(block_cov)
                later_block_cov = block_cov
            variance_image = variances.reshape(height, width)
            variance_image.setflags(write=False)
            self._variance_cache[index] = variance_image
        return self._variance_cache[index].copy()
