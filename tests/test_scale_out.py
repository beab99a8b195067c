"""Scale-out: GPU slots for concurrent local jobs, and data-parallel training (torchrun, gloo
on CPU) that reproduces the single-process run."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import CPU, SPD, TEACHERS, merge_settings
from tests.conftest import PROXY_SETTINGS as SETTINGS
from uniego.gpus import SCHEDULER_JOB_VARS, try_acquire

# Drop path draws its masks from each process's RNG, so with it two ranks cannot reproduce one
# process's masks (any data-parallel training); the equivalence is shown without it.
STUDENT = {**SETTINGS["student"], "drop_path_rate": 0.0}


def _run(args, env=None):
    return subprocess.run([sys.executable, "-m", "uniego", *args], env={**os.environ, **(env or {})}, capture_output=True, text=True)


def _same_run(a_out, b_out, parts):
    """Same per-epoch losses (float tolerance) and same final weights."""
    logs = [[json.loads(line) for line in (p.with_name(p.stem + ".run") / "metrics.jsonl").read_text().splitlines()] for p in (a_out, b_out)]
    assert len(logs[0]) == len(logs[1]) > 1
    for ea, eb in zip(*logs):
        assert ea["steps"] == eb["steps"] and ea["lr"] == eb["lr"]
        for k, v in ea.items():
            if isinstance(v, float):
                assert eb[k] == pytest.approx(v, rel=1e-5, abs=1e-6), (ea["epoch"], k)
            else:
                assert eb[k] == v, (ea["epoch"], k)
    a, b = (torch.load(p, weights_only=True) for p in (a_out, b_out))
    for part in parts:
        for k, v in a[part].items():
            torch.testing.assert_close(b[part][k], v, rtol=1e-4, atol=1e-5, msg=f"{part}.{k}")
    return logs[0], a, b


def test_data_parallel_proxy_training_matches_one_process(tiny_data, proxies, tmp_path):
    """2 gloo processes x half of each batch == 1 process x the whole batch (effective batch
    batch_size 4 x accumulate 2 in both), loss curve and final weights."""
    base, _, _ = proxies
    args = ["train-proxy", "--settings", json.dumps({**SETTINGS, "teacher": "ego_dino", "student": STUDENT}), "--teacher", "ego_dino",
            "--manifest", str(tiny_data["manifest"]), "--clips", tiny_data["clips"]["ego"], "--features", str(base / "ego_dino.zarr"),
            "--workers", "0", "--device", "cpu", "--precision", "fp32"]
    one = _run([*args, "--out", str(tmp_path / "one.pt")])
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*args, "--out", str(tmp_path / "two.pt"), "--procs", "2"])
    assert two.returncode == 0, two.stderr[-3000:]
    assert "data-parallel over 2 processes" in two.stderr
    logs, _, _ = _same_run(tmp_path / "one.pt", tmp_path / "two.pt", ("encoder", "proj"))
    assert [e["lr"] for e in logs] == pytest.approx([0.005, 0.005, 0.0005])


def test_data_parallel_spd_matches_one_process(tiny_data, proxies, tmp_path):
    """SPD with the official per-batch normalisation (a count over the global batch), the
    selection counts summed over ranks and the gradient probe."""
    from uniego.stages.level2.merging import run_merge

    _, paths, outputs = proxies
    merged = run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "avg.pt", merge_settings(), compute=CPU)
    settings = {"student": STUDENT, "train": {**SETTINGS["train"], "epochs": 2}, "spd": {**SPD, "normalize": "official"},
                "teachers": TEACHERS, "seed": 0, "probe_samples": 2}
    args = ["spd", "--settings", json.dumps(settings), "--manifest", str(tiny_data["manifest"]), "--clips", tiny_data["clips"]["ego"],
            "--init", str(merged), "--outputs", *[f"{t}={outputs[t]}" for t in TEACHERS], "--workers", "0", "--device", "cpu",
            "--precision", "fp32"]
    one = _run([*args, "--out", str(tmp_path / "one.pt")])
    assert one.returncode == 0, one.stderr[-2000:]
    two = _run([*args, "--out", str(tmp_path / "two.pt"), "--procs", "2"])
    assert two.returncode == 0, two.stderr[-3000:]
    _, a, b = _same_run(tmp_path / "one.pt", tmp_path / "two.pt", ("encoder",))
    assert a["meta"]["selection"] == b["meta"]["selection"] and a["meta"]["selection"]["samples_seen"] > 0


def test_a_batch_that_does_not_split_evenly_is_refused(tiny_data, proxies, tmp_path):
    base, _, _ = proxies
    s = {**SETTINGS, "teacher": "ego_dino", "train": {**SETTINGS["train"], "batch_size": 3, "epochs": 1}}
    r = _run(["train-proxy", "--settings", json.dumps(s), "--teacher", "ego_dino", "--manifest", str(tiny_data["manifest"]),
              "--clips", tiny_data["clips"]["ego"], "--features", str(base / "ego_dino.zarr"), "--workers", "0", "--device", "cpu",
              "--precision", "fp32", "--out", str(tmp_path / "x.pt"), "--procs", "2"])
    assert r.returncode != 0 and "cannot be split evenly over 2 processes" in r.stderr
    assert "compute.gpus_per_job" in r.stderr and not (tmp_path / "x.pt").exists()


JOB = r'''
import json, os, signal, sys, time
i, out, records = sys.argv[1], sys.argv[2], sys.argv[3]
rec = {"job": i, "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
try:  # the first job to start is killed (once), while the others still wait for a slot
    os.close(os.open(os.path.join(records, "killer"), os.O_CREAT | os.O_EXCL))
    kill = True
except FileExistsError:
    kill = False
time.sleep(1.0 if kill else 2.0)
rec["end"] = time.time()
with open(os.path.join(records, f"{i}.{os.getpid()}.json"), "w") as f:
    json.dump({**rec, "killed": kill}, f)
if kill:
    os.kill(os.getpid(), signal.SIGKILL)
open(out, "w").write(rec["cvd"])
'''

SNAKEFILE = '''
rule all:
    input: expand("out/{i}.txt", i=[1, 2, 3, 4, 5, 6])

rule gpu_job:
    output: "out/{i}.txt"
    resources: gpu=1
    shell: "uniego gpu-slots --gpus {resources.gpu} --ids 0,1 --lock-dir locks -- python job.py {wildcards.i} {output:q} records"
'''


def test_concurrent_gpu_jobs_never_share_a_device(tmp_path):
    """6 GPU jobs, --cores 4 --resources gpu=2, two simulated devices (compute.gpu_ids [0, 1]):
    no two jobs that ran at the same time saw the same CUDA_VISIBLE_DEVICES, also after the
    first job was killed with SIGKILL (the kernel frees its slot: a waiting job takes that
    device while the other is busy); the rerun completes the killed job."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    (tmp_path / "records").mkdir()
    cmd = [sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=2", "--keep-going"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode != 0 and "Error in rule gpu_job" in first.stderr + first.stdout
    assert len(list((tmp_path / "out").glob("*.txt"))) == 5
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert len(runs) == 7 and sum(r["killed"] for r in runs) == 1
    assert {r["cvd"] for r in runs} == {"0", "1"}
    overlapping = [(a, b) for a in runs for b in runs if a is not b and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "the jobs never ran concurrently"
    assert all(a["cvd"] != b["cvd"] for a, b in overlapping), overlapping
    killed = next(r for r in runs if r["killed"])
    later = [r for r in runs if r["start"] >= killed["end"] and any(r is a for a, _ in overlapping)]
    assert later, "no job ran beside another after the kill"
    assert len(list((tmp_path / "out").glob("*.txt"))) == 6


def test_slots_are_taken_in_order_skipping_held_ones(tmp_path):
    got, fds = try_acquire([0, 1, 2], 1, tmp_path)
    assert got == [0]
    more, fds2 = try_acquire([0, 1, 2], 2, tmp_path)
    assert more == [1, 2]
    none, fds3 = try_acquire([0, 1, 2], 1, tmp_path)
    assert none == [] and fds3 == []
    for fd in fds + fds2:
        os.close(fd)
    again, fds4 = try_acquire([0, 1, 2], 3, tmp_path)
    assert again == [0, 1, 2]
    for fd in fds4:
        os.close(fd)


def test_gpu_slots_stand_aside_when_a_scheduler_set_the_devices(tmp_path):
    show = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    r = _run(["gpu-slots", "--gpus", "1", "--ids", "0,1", "--lock-dir", str(tmp_path / "locks"), "--", *show],
             env={"CUDA_VISIBLE_DEVICES": "3", "SLURM_JOB_ID": "77"})
    assert r.returncode == 0 and r.stdout.strip() == "3"
    assert "set by the scheduler (SLURM job 77)" in r.stderr and not (tmp_path / "locks").exists()
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES" and k not in SCHEDULER_JOB_VARS}
    r = subprocess.run([sys.executable, "-m", "uniego", "gpu-slots", "--gpus", "2", "--ids", "4,5", "--lock-dir", str(tmp_path / "locks"),
                        "--", *show], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "4,5"
    r = subprocess.run([sys.executable, "-m", "uniego", "gpu-slots", "--gpus", "3", "--ids", "4,5", "--lock-dir", str(tmp_path / "locks"),
                        "--", *show], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "asks for 3 GPUs but compute.gpu_ids has 2" in r.stderr


def test_a_cuda_visible_devices_exported_by_hand_is_the_pool_to_share(tmp_path):
    """`CUDA_VISIBLE_DEVICES=4,5 snakemake ...` outside a scheduler: jobs share 4 and 5, one each."""
    env = {k: v for k, v in os.environ.items() if k not in SCHEDULER_JOB_VARS}
    env["CUDA_VISIBLE_DEVICES"] = "4,5"
    show = [sys.executable, "-c", "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"]
    held, fds = try_acquire([4], 1, tmp_path / "locks")
    assert held == [4]
    r = subprocess.run([sys.executable, "-m", "uniego", "gpu-slots", "--gpus", "1", "--lock-dir", str(tmp_path / "locks"), "--", *show],
                       env=env, capture_output=True, text=True)
    for fd in fds:
        os.close(fd)
    assert r.returncode == 0 and r.stdout.strip() == "5", r.stderr
    assert "sharing the GPUs of CUDA_VISIBLE_DEVICES=4,5" in r.stderr
