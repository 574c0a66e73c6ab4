"""Data-parallel training across processes (``torchrun --nproc_per_node N genreg train ...``).

Every ``genreg train`` kind runs unchanged under ``torchrun`` (or ``python -m torch.distributed.run``): the launcher
sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`distributed_run`
joins the process group from them (NCCL when the trainer's device is CUDA, each rank on ``cuda:LOCAL_RANK``; gloo
on the CPU). Without those variables it is a plain single-process run and nothing here costs anything.

How a step is split (data parallelism with DistributedDataParallel): every rank draws the same *global* batch of
``--batch`` items from the same seeded generator (indices, flips, noise, latent samples: cheap next to the
networks) and runs the network on its contiguous share of it, items ``floor(B r / N) .. floor(B (r + 1) / N) - 1``
for rank ``r`` of ``N`` (:class:`BatchShare`, in the manner of a DistributedSampler). Each rank's loss is its mean
over its ``b_r`` items; the loop back-propagates ``N (b_r / B) loss_r`` and DDP averages the gradients over the
ranks, so the update is the gradient of ``sum_r (b_r / B) loss_r``, the mean over the global batch: the same step
as one process with batch ``B``, up to float rounding. Batch norm is the exception: under DDP on CUDA it becomes
``SyncBatchNorm`` (statistics over the global batch, as in one process); on the CPU (gloo) PyTorch has no
``SyncBatchNorm``, so each rank normalises with its own share's statistics and the result differs from one process
(a warning says so; rank 0's running statistics are kept). Networks without batch norm (the denoiser, variational
network, U-Net, flow, a VAE with ``--no-batch-norm``) match one process up to float rounding on any backend.

Only rank 0 logs, writes checkpoints, weights and plots; every rank evaluates the held-out images (so that all
take the same decisions) and all meet at a barrier before the process group is closed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger("genreg_viewer.training")


def launched_by_torchrun() -> bool:
    """Whether a launcher (``torchrun``) started this process: ``RANK`` and ``WORLD_SIZE`` are in the environment.
    One process (``--nproc_per_node 1``) then also trains through DDP, which checks that code path on one GPU."""
    try:
        return int(os.environ["WORLD_SIZE"]) >= 1 and int(os.environ["RANK"]) >= 0
    except (KeyError, ValueError):
        return False


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or a plain process (``RANK`` unset)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


class EmptyShareError(Exception):
    """This rank's share of a global batch is empty (fewer items than ranks); the loop then contributes zero."""


class BatchShare:
    """This rank's part of one global batch: ``share(tensor)`` returns rows ``floor(B r / N) .. floor(B (r+1) / N) - 1``
    of a tensor whose first dimension is the global batch ``B`` (the whole tensor in a single process).
    :attr:`fraction` is ``b_r / B``, the weight of this rank's mean loss in the global mean."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.rank, self.world_size = rank, world_size
        self.total: int | None = None
        self.count: int | None = None

    def bounds(self, total: int) -> tuple[int, int]:
        return total * self.rank // self.world_size, total * (self.rank + 1) // self.world_size

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        total = int(tensor.shape[0])
        if self.total is not None and total != self.total:
            raise ValueError(f"one batch, two sizes: {self.total} and {total} (share every tensor of the global batch)")
        start, stop = self.bounds(total)
        self.total, self.count = total, stop - start
        if self.world_size == 1:
            return tensor
        if stop == start:
            raise EmptyShareError
        return tensor[start:stop]

    @property
    def fraction(self) -> float:
        """``b_r / B`` (1 when nothing was shared: a loss that is not a mean over batch items)."""
        if not self.total:
            return 1.0 / self.world_size
        return (self.count or 0) / self.total


class _LossModule(nn.Module):
    """Holds the trained parameters for DDP; ``forward()`` runs the loss function set on it (so that DDP sees a
    forward pass however the trainer calls its network: ``model.encode``, ``model.residual``, ...)."""

    def __init__(self, trainable: nn.Module) -> None:
        super().__init__()
        self.trainable = trainable
        self.compute = None

    def forward(self):  # noqa: D401 (returns what the loss function returns)
        return self.compute()


def _swap_batch_norm(module: nn.Module, to_sync: bool) -> nn.Module:
    """Replace ``BatchNorm2d`` by ``SyncBatchNorm`` (``to_sync``) or back, sharing parameters and buffers."""
    for name, child in module.named_children():
        if to_sync and isinstance(child, nn.BatchNorm2d):
            replacement: nn.Module = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                                      child.track_running_stats)
        elif not to_sync and isinstance(child, nn.SyncBatchNorm):
            replacement = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats)
        else:
            _swap_batch_norm(child, to_sync)
            continue
        if child.affine:
            replacement.weight, replacement.bias = child.weight, child.bias
        if child.track_running_stats:
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(replacement, buffer, getattr(child, buffer))
        replacement.train(child.training)
        setattr(module, name, replacement)
    return module


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@dataclass
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node and its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    #: whether this process joined a process group (under ``torchrun``, also with one process): DDP wraps the model
    joined: bool = False

    @property
    def distributed(self) -> bool:
        """Whether there are other ranks (collectives, batch sharing and loss weighting are needed)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self) -> BatchShare:
        """A fresh :class:`BatchShare` for the next global batch."""
        return BatchShare(self.rank, self.world_size)

    def check_batch(self, batch: int, option: str = "--batch") -> None:
        """Refuse a global batch smaller than the number of processes (a rank would get no items)."""
        if self.distributed and batch < self.world_size:
            raise ValueError(f"{option} {batch} is smaller than the {self.world_size} processes: each needs at least "
                             "one item of the global batch")

    def check_epoch_batches(self, count: int, batch: int, trainable: nn.Module) -> None:
        """Refuse an epoch of ``count`` items in batches of ``batch`` whose last batch has fewer items than there are
        processes when ``trainable`` will use SyncBatchNorm (CUDA): a process with no items would skip the forward
        pass its peers' batch-norm synchronisation waits for."""
        remainder = count % batch
        if (self.distributed and self.device.type == "cuda" and has_batch_norm(trainable)
                and 0 < remainder < self.world_size):
            raise ValueError(f"{count} training images in batches of {batch} leave a last batch of {remainder}, fewer "
                             f"than the {self.world_size} processes, and synchronised batch norm needs an image on "
                             "every process: choose another --batch-size (or --no-batch-norm)")

    def wrap(self, trainable: nn.Module) -> "ParallelModule":
        """The module the loop calls: DDP over ``trainable`` under ``torchrun`` (``SyncBatchNorm`` on CUDA), else a
        plain pass-through."""
        return ParallelModule(self, trainable)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (float64, on the CPU) summed over the ranks (the values themselves in one process)."""
        if not self.distributed:
            return values
        buffer = values.to(self.device, torch.float64)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return buffer.cpu()

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (clock readings: every rank must take the same decisions)."""
        if not self.distributed:
            return value
        return float(self.sum(torch.tensor([value if self.is_main else 0.0], dtype=torch.float64))[0])

    def broadcast_state(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers (batch-norm running statistics) to every rank."""
        if not self.distributed:
            return
        for tensor in list(module.parameters()) + list(module.buffers()):
            with torch.no_grad():
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()


class ParallelModule:
    """``trainable`` as the training loop uses it: ``run(compute)`` evaluates the loss function ``compute``
    through DistributedDataParallel (gradients averaged over the ranks during ``backward``); :meth:`release`
    undoes the ``SyncBatchNorm`` conversion when training ends."""

    def __init__(self, context: DistributedContext, trainable: nn.Module) -> None:
        self.context, self.trainable = context, trainable
        self.synced_batch_norm = False
        self.holder = _LossModule(trainable)
        self.ddp: nn.Module | None = None
        if context.joined and any(p.requires_grad for p in trainable.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            if has_batch_norm(trainable):
                if context.device.type == "cuda":
                    _swap_batch_norm(trainable, to_sync=True)
                    self.synced_batch_norm = True
                elif context.distributed and context.is_main:
                    logger.warning("batch norm under gloo (CPU): each of the %d processes normalises with the "
                                   "statistics of its own share of the batch (SyncBatchNorm needs CUDA), so the "
                                   "result differs from a one-process run", context.world_size)
            device_ids = [context.device.index] if context.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.holder, device_ids=device_ids, find_unused_parameters=False)

    def run(self, compute):
        self.holder.compute = compute
        try:
            return (self.ddp or self.holder)()
        finally:
            self.holder.compute = None

    def release(self) -> None:
        if self.synced_batch_norm:
            _swap_batch_norm(self.trainable, to_sync=False)
            self.synced_batch_norm = False


def _device_for_rank(device: torch.device, local_rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise RuntimeError(f"LOCAL_RANK {local_rank} but only {count} CUDA device(s) are visible: start at most "
                           f"{count} processes per node (torchrun --nproc_per_node {count})")
    return torch.device("cuda", local_rank)


def _close_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_run(device: torch.device | str) -> Iterator[DistributedContext]:
    """The :class:`DistributedContext` of a trainer: under ``torchrun`` joins the process group from the environment
    (NCCL for a CUDA ``device``, each rank then on ``cuda:LOCAL_RANK``; gloo otherwise) unless it is already open,
    and on leaving meets the other ranks at a barrier. The group stays open for later trainers of the same process
    (joining it a second time after closing it is not reliable) and is closed when the process exits. Without
    ``torchrun``: one process on ``device``."""
    device = torch.device(device)
    if not launched_by_torchrun():
        yield DistributedContext(device=device)
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device_for_rank(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_close_process_group)
    context = DistributedContext(rank, world, local_rank, device, joined=True)
    if not context.is_main:
        logger.setLevel(logging.WARNING)  # rank 0 reports progress; warnings and errors still show
    yield context
    context.barrier()  # not after an error: torchrun stops the other ranks when one fails
