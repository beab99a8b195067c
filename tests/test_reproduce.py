"""`uniego compare-runs`: two identical result trees compare identical; any change to a metric,
a weight, a store value or a file list is found and named (file, key or array, values)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from uniego.cache import ArraySpec, StoreWriter
from uniego.errors import UniegoError
from uniego.reproduce import compare_runs, diff_values


def _make_run(folder, *, top1=61.1, weight_delta=0.0, feature_delta=0.0, created_at="2026-01-01T00:00:00+00:00"):
    res = folder / "results" / "demo"
    (res / "eval" / "uniego").mkdir(parents=True)
    (res / "eval" / "uniego" / "recognition.json").write_text(json.dumps({"top1": top1, "n": 54, "views": "1x3"}))
    (res / "uniego.run").mkdir()
    (res / "uniego.run" / "metrics.jsonl").write_text('{"epoch": 1, "loss": 2.5}\n{"epoch": 2, "loss": 1.25}\n')
    (res / "report.md").write_text("| model | top-1 |\n|---|---|\n| UNIEGO | 61.1 |\n")
    np.savez(res / "eval" / "uniego" / "segmentation.predictions.npz", video_0=np.arange(6))
    pd.DataFrame({"sample_id": ["a", "b"], "label": [0, 1]}).to_parquet(res / "manifest.parquet")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, generator=g)
    w[1, 2] += weight_delta
    torch.save({"encoder": {"w": w, "steps": torch.tensor([3])}, "meta": {"seed": 0, "teachers": ["a", "b"]}},
               res / "uniego.pt")
    writer = StoreWriter(res / "features" / "exo_dino.zarr", sample_ids=["a", "b", "c"], splits=["train"] * 3,
                         labels=[0, 1, 2], arrays={"features": ArraySpec((2,), "float32", ("dim",))},
                         attrs={"teacher": "exo_dino"})
    feats = np.arange(6, dtype=np.float32).reshape(3, 2)
    feats[2, 1] += feature_delta
    writer.write(0, 3, features=feats)
    writer.finalize()
    import zarr
    zarr.open_group(str(res / "features" / "exo_dino.zarr"), mode="r+").attrs["created_at"] = created_at
    return folder


def test_identical_runs_compare_identical(tmp_path):
    a = _make_run(tmp_path / "a", created_at="2026-01-01T00:00:00+00:00")
    b = _make_run(tmp_path / "b", created_at="2026-06-30T12:00:00+00:00")   # volatile attrs do not count
    c = compare_runs(a, b)
    assert c.identical, c.differences
    assert c.compared == {"metrics": 5, "checkpoints": 1, "stores": 1}


def test_every_kind_of_difference_is_named(tmp_path):
    a = _make_run(tmp_path / "a")
    b = _make_run(tmp_path / "b", top1=59.3, weight_delta=1e-6, feature_delta=0.5)
    (b / "results/demo/report.md").write_text("| model | top-1 |\n|---|---|\n| UNIEGO | 59.3 |\n")
    (b / "results/demo/eval/uniego/retrieval.json").write_text("{}")
    c = compare_runs(a, b)
    assert not c.identical
    text = "\n".join(c.differences)
    assert "eval/uniego/recognition.json: top1: 61.1 != 59.3" in text
    assert "report.md: line 3:" in text
    assert "eval/uniego/retrieval.json: only in B" in text
    assert "uniego.pt: encoder.w: 1 of 12 values differ, first at [1, 2]" in text   # one weight, 1e-6 off
    assert "features/exo_dino.zarr: array features: 1 of 6 values differ, first at [2, 1]: 5.0 != 5.5" in text
    assert len(c.differences) == 5, text
    # a tolerance admits last-bit noise, not a real change
    loose = compare_runs(a, b, rtol=1e-3)
    assert not any("uniego.pt" in d for d in loose.differences)
    assert any("recognition.json" in d for d in loose.differences)
    assert compare_runs(a, b, kinds=("metrics",)).compared == {"metrics": 5}


def test_nan_equals_nan_and_types_are_checked():
    assert diff_values({"x": float("nan"), "y": [1, 2]}, {"x": float("nan"), "y": [1, 2]}) == []
    assert diff_values({"y": [1, 2]}, {"y": [1, 2, 3]}) == ["y: length 2 != 3"]
    assert diff_values({"a": 1}, {"b": 1}) == ["a: only in A", "b: only in B"]
    assert diff_values({"flag": True}, {"flag": 1.0}) == ["flag: True != 1.0"]


def test_cli_exit_status_and_missing_folder(tmp_path):
    a, b = _make_run(tmp_path / "a"), _make_run(tmp_path / "b")
    run = lambda *x: subprocess.run([sys.executable, "-m", "uniego", "compare-runs", *map(str, x)],  # noqa: E731
                                    capture_output=True, text=True)
    same = run(a, b)
    assert same.returncode == 0 and same.stdout.startswith("identical:"), same.stdout + same.stderr
    shutil.rmtree(b / "results/demo/features")
    differ = run(a, b)
    assert differ.returncode == 1 and "features/exo_dino.zarr: only in A" in differ.stdout
    missing = run(a, tmp_path / "nope")
    assert missing.returncode == 2 and "not a workflow folder" in missing.stderr
    with pytest.raises(UniegoError):
        compare_runs(a, tmp_path / "nope")
