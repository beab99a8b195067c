"""The one training loop every stage uses (proxies, merge-free stages, SPD, baselines).

A task provides `model` (an nn.Module whose trainable parameters are optimised) and
`step(batch) -> {"loss": ..., "<term>_loss": ...}`. The engine owns: SGD with momentum and
Nesterov, weight decay, the per-epoch step learning-rate schedule, gradient accumulation
(leftover micro-batches at an epoch's end are discarded, as the official code does), bf16
autocast on GPU, a checkpoint after every epoch (model, optimiser, RNG) with resume from the
last one, a JSONL metrics log (every term by name) and a seeded, worker-independent order. One
DataLoader serves every epoch of a run (`AllEpochs`), so its workers start once, not per epoch.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from uniego import distributed
from uniego.cache import fingerprint
from uniego.config import TrainSettings
from uniego.device import autocast_for
from uniego.errors import UniegoError
from uniego.io import atomic_torch_save


def whole_batches(batch):
    """DataLoader collate_fn for datasets whose items are already batches (batch_size=None)."""
    return batch


@contextmanager
def cpu_threads_beside(workers: int, device: torch.device):
    """On CPU, the model's intra-op threads are the job's threads (Snakemake's `threads`, which it
    exports as OMP_NUM_THREADS) minus its DataLoader workers, at least 1: the two otherwise
    oversubscribe the cores (2 cores, 1 worker: 21 % more proxy-training steps/s with 1 model
    thread than with 2; benchmarks/input_pipeline.py).

    The count comes from the job's settings only, never from the machine's core count: the
    thread count changes the order of float sums, so a count taken from `os.cpu_count()` trained
    other weights on an 8-CPU than on a 2-CPU machine (docs/reproducing.md)."""
    before = torch.get_num_threads()
    if device.type == "cpu" and workers > 0:
        torch.set_num_threads(max(1, before - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class AllEpochs(torch.utils.data.Dataset):
    """The epochs' datasets one after the other: item j is batch j of their concatenation."""

    def __init__(self, datasets: list):
        self.datasets = datasets
        self.offsets = np.cumsum([0] + [len(d) for d in datasets])

    def __len__(self):
        return int(self.offsets[-1])

    def __getitem__(self, j: int):
        k = int(np.searchsorted(self.offsets, j, side="right")) - 1
        return self.datasets[k][j - int(self.offsets[k])]


def epoch_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """A seeded permutation of n samples cut into full batches (drop_last, as the official code)."""
    order = np.random.default_rng([seed, 17, epoch]).permutation(n)
    if n < batch_size:
        return [order]
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def gradient_conflict(task, probe: dict, device: torch.device) -> dict:
    """Per probe sample, the cosine between the gradients of the classification term and of
    the distillation term of the task's loss, over the shared encoder's parameters (paper
    Figures 4-5). `task.gradient_terms(batch) -> (cls_term, kd_term)` (weighted, as they enter
    the loss); `task.shared_parameters()`. Returns grad_conflict_rate (fraction of the probe
    samples with cos < 0; a sample without a distillation gradient, as SPD gives a sample
    with no selected proxy, does not conflict), grad_cosine_mean (over samples with both
    gradients) and grad_probe_distilled (the fraction that had a distillation gradient)."""
    model = task.model
    was_training = model.training
    model.eval()
    params = [p for p in task.shared_parameters() if p.requires_grad]
    n = len(probe["label"])
    cosines = []
    for i in range(n):
        batch = {k: v[i:i + 1].to(device) for k, v in probe.items()}
        cls, kd = task.gradient_terms(batch)
        g = []
        for term in (cls, kd):
            if not term.requires_grad:
                g.append(None)
                continue
            grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
            g.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(grads, params)]))
        if g[0] is None or g[1] is None or g[0].norm() == 0 or g[1].norm() == 0:
            cosines.append(float("nan"))
        else:
            cosines.append(float(torch.nn.functional.cosine_similarity(g[0].double(), g[1].double(), dim=0)))
    model.train(was_training)
    c = np.asarray(cosines)
    valid = ~np.isnan(c)
    return {"grad_conflict_rate": float((c[valid] < 0).sum() / n), "grad_cosine_mean": float(c[valid].mean()) if valid.any() else None,
            "grad_probe_distilled": float(valid.mean())}


def train(task, make_epoch_dataset, n: int, settings: TrainSettings, run_dir: str | Path, *, seed: int,
          identity: dict, device: torch.device = torch.device("cpu"), precision: str = "auto", workers: int = 0,
          desc: str = "train", optimizer: str | None = None, probe: dict | None = None) -> None:
    """Train `task.model` for settings.epochs over n samples; resumable from run_dir/last.pt.

    make_epoch_dataset(batches, epoch) -> a Dataset whose item b is batch b (tensors).
    `identity` (JSON-able: config, inputs' hashes) must match for a checkpoint to be resumed.
    optimizer: None (settings.optimizer: "sgd" with momentum, Nesterov and weight decay, or
    "adamw"), or "adam" (lr, L2 weight decay; the merge). A task may define `epoch_end() -> dict` of extra per-epoch statistics.
    probe: a fixed batch (eval view) on which `gradient_conflict` is measured after every
    epoch and logged (tasks with `gradient_terms`); it does not touch the RNG or the weights.
    Under torchrun (uniego.distributed) each rank trains on its part of every batch, the
    gradients are averaged, epoch_end counts are summed over the ranks, and only rank 0
    writes; the other ranks exit when training ends.
    """
    device = distributed.init(device)
    rank, world = distributed.world()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with own_run_dir(run_dir, desc) if rank == 0 else nullcontext():
        _train(task, make_epoch_dataset, n, settings, run_dir, seed=seed, identity=identity, device=device,
               precision=precision, workers=workers, desc=desc, optimizer=optimizer, probe=probe, rank=rank, world=world)


@contextmanager
def own_run_dir(run_dir: Path, desc: str):
    """One process at a time per run folder (whatever Snakemake's own locks do): an exclusive
    `flock` on run_dir/lock, freed by the kernel when the process ends, even after SIGKILL."""
    import fcntl

    lock = run_dir / "lock"
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UniegoError(f"{run_dir} is in use by {holder}: the same target is being trained twice. Wait for it, "
                              "or stop it; the folder frees itself when that process ends", stage=desc) from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        yield


def _cut_log(log_path: Path, epochs: int) -> None:
    """Keep the log's records of the first `epochs` epochs: a crash between the log line and the
    checkpoint leaves one record the checkpoint does not have, and the resumed run redoes it."""
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["epoch"] <= epochs]
    if len(kept) != len(lines):
        tmp = log_path.with_name(log_path.name + ".partial")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, log_path)


def _train(task, make_epoch_dataset, n, settings, run_dir, *, seed, identity, device, precision, workers, desc,
           optimizer, probe, rank, world) -> None:
    from tqdm import tqdm

    ckpt_path, log_path = run_dir / "last.pt", run_dir / "metrics.jsonl"
    optimizer = optimizer or settings.optimizer
    fp = fingerprint({"identity": identity, "train": settings.__dict__, "seed": seed, "n": n, "optimizer": optimizer})
    model = task.model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    elif optimizer != "sgd":
        raise ValueError(f"unknown optimizer {optimizer!r}")
    else:
        opt = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov,
                              weight_decay=settings.weight_decay)
    torch.manual_seed(seed)
    start = 0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ck.get("fingerprint") == fp:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng"])
            start = int(ck["epoch"])
            print(f"[{desc}] resuming from {ckpt_path} after epoch {start}", file=sys.stderr)
        else:
            print(f"[{desc}] ignoring {ckpt_path}: it belongs to another configuration", file=sys.stderr)
            if rank == 0:
                log_path.unlink(missing_ok=True)
    if start == 0 and rank == 0:
        log_path.unlink(missing_ok=True)
    elif rank == 0:
        _cut_log(log_path, start)
    amp = autocast_for(device, precision)
    kill_after = int(os.environ.get("UNIEGO_TEST_KILL_AFTER_EPOCHS", "0"))  # test hook: SIGKILL self
    plan = []   # (epoch, all its batches, this rank's part)
    for epoch in range(start, settings.epochs):
        batches = epoch_batches(n, settings.batch_size, seed=seed, epoch=epoch)
        plan.append((epoch, batches, distributed.rank_part(batches, rank, world, where=desc)))
    # One DataLoader for every remaining epoch, so its workers start once per run, not once per epoch
    # (item j: batch j of the epochs one after the other).
    loader = DataLoader(AllEpochs([make_epoch_dataset(mine, epoch) for epoch, _, mine in plan]), batch_size=None,
                        collate_fn=whole_batches, num_workers=workers, pin_memory=device.type == "cuda")
    with cpu_threads_beside(workers, device):
        items = None
        for epoch, batches, mine in plan:
            lr = settings.lr_at(epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            if items is None:
                items = iter(loader)
            else:   # each epoch draws the one number from torch's RNG that a new DataLoader iterator draws
                torch.empty((), dtype=torch.int64).random_()
            model.train()
            sums: dict[str, float] = {}
            opt.zero_grad(set_to_none=True)
            epoch_items = (next(items) for _ in range(len(mine)))
            for step, batch in enumerate(tqdm(epoch_items, total=len(mine), desc=f"{desc} {epoch + 1}/{settings.epochs}",
                                              leave=False, disable=None)):
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with amp:
                    out = task.step(batch)
                loss = out["loss"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"[{desc}] loss is {loss.item()} at epoch {epoch + 1} step {step}")
                (loss / settings.accumulate).backward()
                if (step + 1) % settings.accumulate == 0:
                    distributed.average_gradients(params)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            opt.zero_grad(set_to_none=True)
            sums = distributed.mean_over_ranks(sums, device)
            record = {"epoch": epoch + 1, "lr": lr, "steps": len(batches),
                      **{k: v / max(len(batches), 1) for k, v in sums.items()}}
            if hasattr(task, "epoch_end"):
                record.update(distributed.sum_over_ranks(task.epoch_end(), device))
            if probe is not None:
                record.update(gradient_conflict(task, probe, device))
            if rank == 0:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(f"[{desc}] " + _epoch_line(record, settings.epochs), file=sys.stderr, flush=True)
                atomic_torch_save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                   "rng": torch.get_rng_state(), "fingerprint": fp}, ckpt_path)
            distributed.barrier()
            if kill_after and epoch + 1 >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    if rank == 0:   # finished: no resume state left behind, so a forced rerun retrains (the log stays: the history)
        ckpt_path.unlink(missing_ok=True)
    distributed.finish()


def _epoch_line(record: dict, epochs: int) -> str:
    """One log line per epoch, numbers rounded (metrics.jsonl keeps them exact)."""
    scalars = (f"{k} {v:.4g}" for k, v in record.items()
               if k not in ("epoch", "steps") and isinstance(v, (int, float)) and not isinstance(v, bool))
    return f"epoch {record['epoch']}/{epochs}  " + "  ".join(scalars)


def epoch_history(run_dir: str | Path, drop=("selected_per_proxy", "selected_per_class")) -> list[dict]:
    """The per-epoch records of a finished run (metrics.jsonl), without the bulky lists."""
    path = Path(run_dir) / "metrics.jsonl"
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]
