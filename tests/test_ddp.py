"""Data-parallel training under torchrun: a 2-process gloo job (CPU) must write the weights of a single-process run
with the same global batch (training/distributed.py, training/loop.py).

The oracle is an ordinary single-process run of the same command: DDP averages the two ranks' gradients of their
shares' mean losses, weighted by share size, which is the gradient of the global-batch mean only if the sharding,
the loss weighting and the gradient averaging are all right. As a control, the single-process run with the batch
of one rank (what a job that forgot to shard would compute) is far outside the tolerance.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genreg_viewer.cli.main import main

pytestmark = pytest.mark.slow  # multi-process training runs

#: after a few Adam steps, sums split over two processes differ from one process by float32 rounding only
#: (about 1e-8 here); Adam's normalisation can magnify rounding where a gradient is near 0, hence the margin
ATOL, RTOL = 1e-5, 1e-4


#: the runs of the one 2-process job (a single torchrun launch: starting the processes costs more than training)
DENOISER = ["train", "denoiser", "--layers", "3", "--channels", "4", "--images", "3", "--patch", "16", "--steps", "4",
            "--threads", "1", "--checkpoint-every", "2"]
#: a VAE without batch norm (on the CPU each process would normalise with its own share's statistics: gloo has no
#: SyncBatchNorm); 9 images in batches of 4: each epoch ends with a batch of 1, so one rank's share is empty
VAE = ["train", "vae", "phantom:9", "--held-out", "phantom:2:1000000", "--widths", "4,8", "--latent-dim", "4",
       "--epochs", "2", "--lr", "0.05", "--no-batch-norm", "--augment", "--device", "cpu", "--threads", "1"]


def torchrun(commands: list[list[str]], processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """The ``genreg`` ``commands`` in one CPU job of ``processes`` ranks: ``python -m torch.distributed.run
    --standalone --nproc_per_node N tests/ddp_job.py`` (each command as ``torchrun -m genreg_viewer.cli.main``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               str(Path(__file__).with_name("ddp_job.py")), json.dumps(commands)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One 2-process gloo job: the denoiser with global batch 5 (split 2 + 3) and VAE stage 1 with batch 4."""
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun([[*DENOISER, "--batch", "5", "--out", str(out / "dn")],
                     [*VAE, "--batch-size", "4", "--out", str(out / "vae")]])
    return out, done.stdout


def differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def assert_weights_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=ATOL, rtol=RTOL, msg=lambda m, key=key: f"{key}: {m}")


def test_two_process_denoiser_equals_one_process_with_the_global_batch(job, tmp_path):
    out, stdout = job
    assert stdout.count(f"wrote {out / 'dn'}") == 2  # rank 0 reports its two files; rank 1 says nothing
    assert main([*DENOISER, "--batch", "5", "--out", str(tmp_path / "one")]) == 0
    assert main([*DENOISER, "--batch", "2", "--out", str(tmp_path / "rank")]) == 0
    ddp, one = load_file(out / "dn.safetensors"), load_file(tmp_path / "one.safetensors")
    assert_weights_close(ddp, one)
    assert differences(ddp, load_file(tmp_path / "rank.safetensors")) > 100 * ATOL
    info = json.loads((out / "dn.json").read_text())["info"]
    assert info["processes"] == 2 and info["training"]["steps_done"] == 4
    assert not list(out.glob("dn*.checkpoint.pt"))  # removed after the weights were written


def test_two_process_vae_stage1_equals_one_process_with_the_global_batch(job, tmp_path):
    out, stdout = job
    assert stdout.count(f"wrote {out / 'vae'}") == 1
    assert main([*VAE, "--batch-size", "4", "--out", str(tmp_path / "one")]) == 0
    assert main([*VAE, "--batch-size", "2", "--out", str(tmp_path / "rank")]) == 0
    ddp, one = (load_file(folder / "vae_identity.safetensors") for folder in (out / "vae", tmp_path / "one"))
    assert_weights_close(ddp, one)
    assert differences(ddp, load_file(tmp_path / "rank" / "vae_identity.safetensors")) > 100 * ATOL
    info, reference = (json.loads((folder / "vae_identity.json").read_text())["info"]
                       for folder in (out / "vae", tmp_path / "one"))
    assert info["processes"] == 2 and [h["epoch"] for h in info["history"]] == [1, 2]
    # the logged epoch means are global-batch means too, and rho is the same maximum-likelihood value
    for key in ("train_loss", "held_out_psnr", "identity_rho"):
        assert math.isclose(info["final"][key], reference["final"][key], rel_tol=1e-5), key
    assert (out / "vae" / "vae_identity.checkpoint.pt").is_file()  # the VAE keeps its per-epoch checkpoint


def test_one_process_under_a_launcher_trains_through_ddp_like_a_plain_run(tmp_path, monkeypatch):
    """``torchrun --nproc_per_node 1`` (the environment it sets, here in this process) joins a one-rank group and
    trains through DistributedDataParallel: the way to run that code path on a single GPU. The weights must equal
    a plain run's."""
    import socket

    import torch.distributed as dist

    from genreg_viewer.training import distributed

    command = ["train", "edip", "--images", "3", "--batch", "2", "--steps", "3", "--threads", "1"]
    assert main([*command, "--out", str(tmp_path / "plain")]) == 0
    with socket.socket() as probe:  # a free port for the one-rank group's store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    wrapped = []
    monkeypatch.setattr(distributed.ParallelModule, "release",
                        lambda self: wrapped.append(self.ddp is not None))
    try:
        assert main([*command, "--out", str(tmp_path / "launched")]) == 0
        assert dist.is_initialized() and dist.get_world_size() == 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    assert wrapped == [True]  # the model was trained through DDP
    plain, launched = (load_file(tmp_path / f"{run}.safetensors") for run in ("plain", "launched"))
    assert differences(plain, launched) == 0.0


def test_resume_continues_the_interrupted_run_exactly(tmp_path, monkeypatch):
    """A run killed right after its step-2 checkpoint and resumed equals the uninterrupted 4-step run: model,
    optimiser, step and the batch generator all come back from the checkpoint."""
    from genreg_viewer.training import loop

    common = ["train", "varnet", "--mask", "radial:9", "--noise", "0.03", "--stages", "2", "--images", "3",
              "--batch", "2", "--threads", "1", "--checkpoint-every", "2", "--lr", "1e-3", "--steps", "4"]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    save = loop._save_checkpoint

    def save_then_die(path, payload):
        save(path, payload)
        raise KeyboardInterrupt  # the job is killed after the first checkpoint

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    assert main([*common, "--out", str(tmp_path / "split")]) == 130
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    assert (tmp_path / "split.checkpoint.pt").is_file() and not (tmp_path / "split.safetensors").exists()
    assert main([*common, "--resume", "--out", str(tmp_path / "split")]) == 0
    straight, split = load_file(tmp_path / "straight.safetensors"), load_file(tmp_path / "split.safetensors")
    assert differences(straight, split) == 0.0
    assert json.loads((tmp_path / "split.json").read_text())["info"]["training"]["steps_done"] == 4


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    common = ["train", "edip", "--images", "2", "--batch", "1", "--steps", "1", "--threads", "1",
              "--out", str(tmp_path / "e")]
    assert main([*common, "--keep-checkpoint"]) == 0
    capsys.readouterr()
    assert main([*common, "--resume", "--lr", "1e-4"]) == 2
    assert "different settings (config)" in capsys.readouterr().err
    assert main(["train", "edip", "--images", "2", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_a_batch_smaller_than_the_process_count_is_refused(tmp_path):
    from genreg_viewer.training.distributed import DistributedContext

    with pytest.raises(ValueError, match="smaller than the 2 processes"):
        DistributedContext(rank=0, world_size=2).check_batch(1)
    # with SyncBatchNorm (CUDA) a process with an empty share would hang its peers: such epochs are refused
    cuda = DistributedContext(rank=0, world_size=4, device=torch.device("cuda", 0))
    norm = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    with pytest.raises(ValueError, match="last batch of 2, fewer than the 4 processes"):
        cuda.check_epoch_batches(10, 4, norm)
    cuda.check_epoch_batches(12, 4, norm)  # no partial batch
    cuda.check_epoch_batches(10, 4, torch.nn.Conv2d(1, 2, 3))  # no batch norm: an empty share contributes zero
    DistributedContext(rank=0, world_size=4).check_epoch_batches(10, 4, norm)  # gloo: per-process statistics


def test_sync_batch_norm_swap_keeps_the_parameters_and_statistics():
    """On CUDA the loop trains BatchNorm layers as SyncBatchNorm and swaps them back afterwards: the same parameter
    and buffer tensors throughout, so the saved model is the trained one (the swap itself needs no GPU)."""
    from genreg_viewer.models.vae import GenerativeModel, VAEConfig
    from genreg_viewer.training.distributed import _swap_batch_norm

    model = GenerativeModel(VAEConfig(image_size=32, latent_dim=4, widths=(4, 8), covariance_kind="identity"))
    before = {name: tensor for name, tensor in model.state_dict(keep_vars=True).items()}
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert norms > 0
    _swap_batch_norm(model, to_sync=True)
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules()) == norms
    assert not any(type(m) is torch.nn.BatchNorm2d for m in model.modules())
    with torch.no_grad():
        next(m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)).running_mean.add_(1.0)
    _swap_batch_norm(model, to_sync=False)
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
    assert sum(type(m) is torch.nn.BatchNorm2d for m in model.modules()) == norms
