"""Every checkpoint, store and report records the package versions and the machine."""

import json
from importlib.metadata import version

import numpy as np
import torch

from uniego.io import atomic_torch_save, atomic_write_json
from uniego.provenance import PACKAGES, environment


def test_environment_names_the_packages_that_move_numbers_and_the_machine():
    env = environment()
    assert set(env["packages"]) == set(PACKAGES) >= {"torch", "numpy", "av", "decord", "timm", "open_clip_torch", "zarr"}
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["av"] == version("av")
    m = env["machine"]
    assert m["cpu"] and m["cpus"] >= 1 and m["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert m["gpu"] is None or isinstance(m["gpu"], str)
    assert json.loads(json.dumps(env)) == env


def test_every_checkpoint_records_its_environment(tmp_path):
    path = atomic_torch_save({"encoder": {"w": torch.ones(2)}, "meta": {"kind": "test"}}, tmp_path / "m.pt")
    meta = torch.load(path, weights_only=True)["meta"]
    assert meta["kind"] == "test" and meta["environment"]["packages"]["numpy"] == np.__version__


def test_stores_record_their_environment(tmp_path):
    from uniego.cache import ArraySpec, StoreWriter, open_store

    w = StoreWriter(tmp_path / "s.zarr", sample_ids=["a", "b"], splits=["train", "test"], labels=[0, 1],
                    arrays={"features": ArraySpec((4,), "float16", ("channel",))}, attrs={"teacher": "t"})
    w.write(0, 2, features=np.ones((2, 4), np.float32))
    w.finalize()
    attrs = dict(open_store(tmp_path / "s.zarr", stage="test").attrs)
    assert attrs["environment"]["packages"]["zarr"] == version("zarr")


def test_report_names_versions_and_machine(tmp_path):
    from uniego.report import write_report

    p = tmp_path / "r.json"
    atomic_write_json(p, ({"model": "uniego", "top1": 50.0, "top5": 90.0, "n": 54, "views": "1x3"}))
    text = write_report("demo", [str(p)], tmp_path / "report.md").read_text()
    env = environment()
    assert "## Environment" in text and f"torch {torch.__version__}" in text and f"av {version('av')}" in text
    assert f"Machine: {env['machine']['cpu']} ({env['machine']['cpus']} CPUs" in text


def test_training_threads_come_from_the_job_not_the_machine(monkeypatch):
    """The thread count changes float sums: on a 2-CPU and an 8-CPU machine a job with
    threads 2 and 2 loader workers must train on the same number of threads."""
    import os

    from uniego.engine import cpu_threads_beside

    before = torch.get_num_threads()
    torch.set_num_threads(2)   # what Snakemake's OMP_NUM_THREADS gives a job with threads: 2
    try:
        seen = []
        for cpus in (2, 8, 64):
            monkeypatch.setattr(os, "cpu_count", lambda cpus=cpus: cpus)
            with cpu_threads_beside(2, torch.device("cpu")):
                seen.append(torch.get_num_threads())
            with cpu_threads_beside(1, torch.device("cpu")):
                seen.append(torch.get_num_threads())
        assert seen == [1, 1] * 3
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
