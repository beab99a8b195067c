"""GPU slots for local runs: `snakemake --resources gpu=N` only counts GPU jobs, it never says
which device a job gets, so without this every job would run on cuda:0.

`uniego gpu-slots --gpus K -- CMD ...` takes K free slots (one lock file per device,
`flock`ed without blocking), sets CUDA_VISIBLE_DEVICES to their device ids and replaces itself
with CMD. The locks live in open file descriptions that CMD inherits (and its DataLoader
workers and torchrun processes with it), so a slot stays taken for the job's whole life and
the kernel frees it when the last process exits, even after SIGKILL. Nothing to clean up.

It stands aside when a batch scheduler has chosen the devices (CUDA_VISIBLE_DEVICES set inside
a SLURM, PBS, LSF, SGE or Flux job). A CUDA_VISIBLE_DEVICES exported by hand outside a
scheduler (`CUDA_VISIBLE_DEVICES=2,3 snakemake ...`) is taken as the pool to share, like
`compute.gpu_ids`. Stdlib only: it runs before every GPU job and must start instantly.
"""

from __future__ import annotations

import fcntl
import glob
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from uniego.errors import UniegoError


def default_lock_dir() -> Path:
    """One folder per machine (not per workflow), so two workflows on one box share slots."""
    return Path(tempfile.gettempdir()) / "uniego-gpu-slots"


SCHEDULER_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID", "FLUX_JOB_ID")


def visible_gpus() -> list[int]:
    """Device ids of the NVIDIA GPUs on this machine (/dev/nvidia0, /dev/nvidia1, ...)."""
    return sorted(int(m.group(1)) for p in glob.glob("/dev/nvidia*") if (m := re.fullmatch(r"/dev/nvidia(\d+)", p)))


def parse_ids(ids: str) -> list[int]:
    """`auto` (every GPU of the machine) or a comma list of device ids (`0,1`)."""
    if ids == "auto":
        return visible_gpus()
    try:
        out = [int(x) for x in ids.split(",") if x.strip()]
    except ValueError:
        raise UniegoError(f"compute.gpu_ids must be `auto` or a list of device ids, got {ids!r}") from None
    if len(set(out)) != len(out):
        raise UniegoError(f"compute.gpu_ids lists a device twice: {ids!r}")
    return out


def try_acquire(ids: list[int], count: int, lock_dir: Path) -> tuple[list[int], list[int]]:
    """Non-blocking: `count` free slots as (device ids, lock fds), or ([], []) with nothing held.
    A job that gets only some of the slots it needs releases them all, so two multi-GPU jobs
    never deadlock holding half each."""
    if not lock_dir.is_dir():
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:  # shared by every user of the machine, like /tmp
            os.chmod(lock_dir, 0o1777)
        except OSError:
            pass
    got, fds = [], []
    for i in ids:
        path = lock_dir / f"gpu{i}.lock"
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        got.append(i)
        fds.append(fd)
        if len(got) == count:
            return got, fds
    for fd in fds:
        os.close(fd)
    return [], []


def acquire(ids: list[int], count: int, lock_dir: Path, *, poll_s: float = 0.5, log=sys.stderr) -> tuple[list[int], list[int]]:
    """Wait until `count` of the slots `ids` are free and take them."""
    if count > len(ids):
        raise UniegoError(f"a job asks for {count} GPUs but compute.gpu_ids has {len(ids)} ({ids}); lower "
                          "compute.gpus_per_job or list more devices")
    waited = False
    while True:
        got, fds = try_acquire(ids, count, lock_dir)
        if got:
            return got, fds
        if not waited:
            print(f"uniego gpu-slots: all of GPUs {ids} are taken (locks in {lock_dir}); waiting. Is --resources gpu=N "
                  "larger than the number of GPUs, or is another workflow using them?", file=log, flush=True)
            waited = True
        time.sleep(poll_s)


def run_on_gpus(command: list[str], *, gpus: int, ids: str = "auto", lock_dir: str | None = None) -> None:
    """Take `gpus` slots, set CUDA_VISIBLE_DEVICES and exec `command` (does not return)."""
    if not command:
        raise UniegoError("gpu-slots: give the command to run after `--`")
    env = dict(os.environ)
    given = env.get("CUDA_VISIBLE_DEVICES")
    job = next((f"{v}={env[v]}" for v in SCHEDULER_JOB_VARS if env.get(v)), None)
    by_hand = given is not None and job is None and all(x.strip().isdigit() for x in given.split(",") if x.strip())
    if given is not None and not by_hand:
        slurm = env.get("SLURM_JOB_ID")
        print(f"uniego gpu-slots: CUDA_VISIBLE_DEVICES={given} was set by the scheduler"
              f"{f' (SLURM job {slurm})' if slurm else f' ({job})' if job else ''}; using it as is", file=sys.stderr, flush=True)
    else:
        if by_hand:
            print(f"uniego gpu-slots: sharing the GPUs of CUDA_VISIBLE_DEVICES={given} (set outside a scheduler)",
                  file=sys.stderr, flush=True)
        devices = parse_ids(given if by_hand else ids)
        if not devices or gpus == 0:
            print("uniego gpu-slots: no GPU on this machine (compute.gpu_ids: auto found no /dev/nvidiaN); "
                  "running without a device", file=sys.stderr, flush=True)
        else:
            folder = Path(lock_dir) if lock_dir and lock_dir != "auto" else default_lock_dir()
            got, fds = acquire(devices, gpus, folder)
            for fd in fds:
                os.set_inheritable(fd, True)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, got))
            print(f"uniego gpu-slots: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} (slots in {folder})",
                  file=sys.stderr, flush=True)
    sys.stderr.flush()
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        raise UniegoError(f"gpu-slots: command not found: {command[0]}") from None
