"""Data-parallel training over several processes (one per GPU), started by torchrun.

A training command given `--procs N` (the rule's `compute.gpus_per_job`) restarts itself
under `torchrun --standalone --nproc-per-node N`. The engine then keeps the single-process
run's mathematics: every global batch of `train.batch_size` samples (the same seeded order)
is cut into N equal contiguous parts, one per rank; each rank's loss is its part's mean, and
the gradients are averaged over the ranks (one all-reduce per optimiser step, after the
`train.accumulate` micro-batches), which is the gradient of the global batch's mean. So the
effective batch is batch_size x accumulate whatever N, the loss curve and weights match the
single-process run up to float summation order, and only the memory per GPU shrinks. To use
the extra GPUs for a larger batch, raise `train.batch_size` (that changes results and reruns).

Differences to know: random numbers drawn inside the model (dropout, drop path) differ per
rank; BatchNorm would normalise per rank (the students have none). Rank 0 alone writes logs,
checkpoints and outputs; the other ranks exit when training ends. NCCL on GPUs, gloo on CPU
(the tests).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from uniego.errors import UniegoError


def relaunch_under_torchrun(procs: int, argv: list[str]) -> None:
    """exec `torchrun ... -m uniego <argv>` unless this process already is one of its ranks."""
    if "LOCAL_RANK" in os.environ:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world != procs:
            raise SystemExit(f"uniego: --procs {procs} but torchrun started {world} processes")
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", f"--nproc-per-node={procs}",
           "-m", "uniego", *argv]
    print("uniego: data-parallel over", procs, "processes:", " ".join(cmd[1:4]), "...", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, cmd)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init(device: torch.device) -> torch.device:
    """Join the process group when started by torchrun with WORLD_SIZE > 1; return the device
    this rank trains on (its own GPU: cuda:LOCAL_RANK)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def rank_part(batches: list[np.ndarray], rank: int, size: int, *, where: str) -> list[np.ndarray]:
    """This rank's contiguous 1/size of every global batch."""
    if size == 1:
        return batches
    out = []
    for b in batches:
        if len(b) % size:
            raise UniegoError(f"{where}: a batch of {len(b)} samples cannot be split evenly over {size} processes; make "
                              "train.batch_size (and the train split, if smaller) a multiple of compute.gpus_per_job",
                              stage="train")
        m = len(b) // size
        out.append(b[rank * m:(rank + 1) * m])
    return out


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the ranks. A parameter without a gradient on
    every rank keeps none (the optimiser then skips it, as in one process)."""
    rank, size = world()
    if size == 1:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    if not live:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in live])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p in live:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def total(x: torch.Tensor) -> tuple[float, int]:
    """(sum of a scalar over the ranks, world size): for losses normalised by a global count."""
    rank, size = world()
    if size == 1:
        return float(x), 1
    t = x.detach().float().reshape(1).clone()
    dist.all_reduce(t)
    return float(t), size


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    rank, size = world()
    if size == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / size for k, v in zip(keys, t.tolist())}


def sum_over_ranks(values: dict, device: torch.device) -> dict:
    """Counts (numbers or nested lists of numbers) summed over the ranks."""
    rank, size = world()
    if size == 1:
        return values
    out = {}
    for k in sorted(values):
        a = np.asarray(values[k], dtype=np.float64)
        t = torch.from_numpy(a.copy()).to(device)
        dist.all_reduce(t)
        r = t.cpu().numpy()
        out[k] = r.tolist() if a.ndim else (int(r) if isinstance(values[k], int) else float(r))
    return out


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def finish() -> None:
    """End of training: ranks other than 0 leave (rank 0 writes the outputs)."""
    rank, size = world()
    if size == 1:
        return
    dist.barrier()
    dist.destroy_process_group()
    if rank != 0:
        sys.exit(0)
