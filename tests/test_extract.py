"""The feature cache contract (DESIGN §4): layout, provenance, resume after kill -9, refusal
of incomplete and stale stores, `uniego inspect`."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr

from uniego.cache import VOLATILE_ATTRS, open_store, read_array
from uniego.config import ComputeSettings, TeacherSettings
from uniego.errors import UniegoError
from uniego.stages.teachers.extract import extract

EGO_DINO = TeacherSettings("ego_dino", "dinov2_test", "random")
CPU = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=2)


def _cli_extract(data, out, *, env_extra=None, teacher="ego_dino", arch="dinov2_test"):
    settings = json.dumps({"teacher": {"key": teacher, "arch": arch, "weights": "random"}, "seed": 0})
    cmd = [sys.executable, "-m", "uniego", "extract", "--settings", settings, "--manifest", str(data["manifest"]),
           "--teacher", teacher, "--clips", *[f"{v}={p}" for v, p in data["clips"].items()], "--out", str(out),
           "--workers", "1", "--batch-size", "2", "--device", "cpu", "--precision", "fp32", "--chunk-samples", "4"]
    return subprocess.run(cmd, env={**os.environ, **(env_extra or {})}, capture_output=True, text=True)


def test_store_layout_and_provenance(tiny_data, tmp_path):
    out = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "ego_dino.zarr", EGO_DINO, compute=CPU)
    ds = xr.open_zarr(out)
    n = len(tiny_data["table"])
    assert ds["features"].dims == ("sample", "frame", "channel") and ds["features"].shape == (n, 4, 64)
    assert ds["features"].dtype == np.float16
    assert [str(s) for s in ds["sample"].values] == list(tiny_data["table"].sample_id)
    assert set(ds.coords) >= {"sample", "split", "label"}
    assert (ds["label"].values == tiny_data["table"].label.values).all()
    attrs = ds.attrs
    for key in ("teacher", "architecture", "weights", "state_sha256", "view", "modality", "pooling", "frames",
                "input_size", "mean", "std", "dtype", "manifest_sha256", "uniego_version"):
        assert key in attrs, key
    assert attrs["complete"] is True and attrs["view"] == "ego" and attrs["frames"] == 4
    assert not os.path.exists(f"{out}.partial")
    values, ids = read_array(out, manifest_sha256=attrs["manifest_sha256"], sample_ids=tiny_data["table"].sample_id)
    assert np.isfinite(values).all() and values.std() > 0


def test_clip_cache_contents(tiny_data):
    g = open_store(tiny_data["clips"]["ego"])
    frames = np.asarray(g["frames"][:2])
    assert frames.shape == (2, 4, 48, 48, 3) and frames.dtype == np.uint8 and g["frames"].chunks[0] == 1
    t = np.asarray(g["frame_time"][:])
    table = tiny_data["table"]
    assert (t >= table.start.values[:, None] - 1 / 12).all() and (t < table.end.values[:, None]).all()
    sk = open_store(tiny_data["clips"]["skeleton"])
    assert sk["keypoints"].shape == (len(table), 16, 17, 3) and list(np.asarray(sk["img_hw"][0])) == [64, 84]


def test_killed_extraction_resumes_to_an_identical_store(tiny_data, tmp_path):
    full = _cli_extract(tiny_data, tmp_path / "full.zarr")
    assert full.returncode == 0, full.stderr
    killed = _cli_extract(tiny_data, tmp_path / "resumed.zarr", env_extra={"UNIEGO_TEST_KILL_AFTER_CHUNKS": "3"})
    assert killed.returncode == -signal.SIGKILL
    staging = tmp_path / "resumed.zarr.partial"
    assert staging.exists() and not (tmp_path / "resumed.zarr").exists()
    done = np.asarray(zarr.open_group(str(staging), mode="r")["done"][:])
    assert done.sum() == 12 and done[:12].all()
    with pytest.raises(UniegoError, match="does not exist.*partial"):  # nothing half-written is read
        open_store(tmp_path / "resumed.zarr")
    resumed = _cli_extract(tiny_data, tmp_path / "resumed.zarr")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "12 of 27" in resumed.stderr
    a = zarr.open_group(str(tmp_path / "full.zarr"), mode="r")
    b = zarr.open_group(str(tmp_path / "resumed.zarr"), mode="r")
    for name in ("features", "sample", "split", "label", "done"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]))
    strip = lambda d: {k: v for k, v in d.items() if k not in VOLATILE_ATTRS + ("clip_stores",)}  # noqa: E731
    assert strip(dict(a.attrs)) == strip(dict(b.attrs))


def test_incomplete_and_stale_stores_are_refused(tiny_data, tmp_path):
    out = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "s.zarr",
                  TeacherSettings("exo_skl", "stgcn_test", "random"), compute=CPU)
    g = zarr.open_group(str(out), mode="r+", use_consolidated=False)
    with pytest.raises(UniegoError, match="another manifest"):
        open_store(out, manifest_sha256="0" * 64)
    g.attrs["complete"] = False
    with pytest.raises(UniegoError, match="incomplete"):
        open_store(out)
    with pytest.raises(UniegoError, match="incomplete"):
        read_array(out)


def test_extraction_refuses_stale_clip_cache(tiny_data, tmp_path):
    import shutil

    from uniego.manifest import read_manifest, write_manifest
    table, classes = read_manifest(tiny_data["manifest"])
    edited = tmp_path / "edited.parquet"
    write_manifest(table.iloc[:-1], classes, edited)
    with pytest.raises(UniegoError, match="another manifest"):
        extract(edited, tiny_data["clips"], tmp_path / "x.zarr", EGO_DINO, compute=CPU)
    assert not (tmp_path / "x.zarr").exists()
    shutil.rmtree(tmp_path / "x.zarr.partial", ignore_errors=True)


def test_inspect_prints_the_promised_items(tiny_data, tmp_path):
    out = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "exo_skego.zarr",
                  TeacherSettings("exo_skego", "skego_standin_test", "random"), compute=CPU)
    r = subprocess.run([sys.executable, "-m", "uniego", "inspect", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for item in ("features (27, 4, 32) float16", "dims ('sample', 'frame', 'channel')", "chunks (", "compression x",
                 "test 9, train 9, val 9", "norm mean", "NaN 0 Inf 0", "STAND-IN", "manifest_sha256", "architecture: skego_standin_test"):
        assert item in text, item
    info = json.loads(subprocess.run([sys.executable, "-m", "uniego", "inspect", "--json", str(out)],
                                     capture_output=True, text=True).stdout)
    stats = info["arrays"]["features"]["stats"]
    feats = np.asarray(zarr.open_group(str(out), mode="r")["features"][:], np.float32)
    assert stats["norm_mean"] == pytest.approx(np.linalg.norm(feats.reshape(-1, 32), axis=1).mean(), rel=1e-5)
    assert info["splits"] == {"test": 9, "train": 9, "val": 9}


def test_kill_at_random_moments_then_resume_gives_the_same_store(tiny_data, tmp_path):
    """SIGKILL the extraction (and its decode worker) at seeded random moments while it writes,
    three times in a row on the same output; nothing complete-looking appears early, and the
    final rerun yields the store an uninterrupted run writes."""
    import time
    full = _cli_extract(tiny_data, tmp_path / "full.zarr")
    assert full.returncode == 0, full.stderr
    settings = json.dumps({"teacher": {"key": "ego_dino", "arch": "dinov2_test", "weights": "random"}, "seed": 0})
    cmd = [sys.executable, "-m", "uniego", "extract", "--settings", settings, "--manifest", str(tiny_data["manifest"]),
           "--teacher", "ego_dino", "--clips", *[f"{v}={p}" for v, p in tiny_data["clips"].items()],
           "--out", str(tmp_path / "killed.zarr"), "--workers", "1", "--batch-size", "2", "--device", "cpu",
           "--precision", "fp32", "--chunk-samples", "4"]
    out, staging = tmp_path / "killed.zarr", tmp_path / "killed.zarr.partial"

    def done():
        try:
            return int(np.asarray(zarr.open_group(str(staging), mode="r")["done"][:]).sum())
        except Exception:
            return -1

    rng = np.random.default_rng(0)
    progress = []
    for target, extra in zip(sorted(rng.integers(1, 26, size=3)), rng.uniform(0, 0.3, size=3)):
        p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while p.poll() is None and done() < target:   # a random point in the writing, then a random delay
            time.sleep(0.01)
        time.sleep(extra)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        if out.exists():   # the kill came after the move into place: then it is the finished store
            assert open_store(out).attrs["complete"] is True
        else:
            with pytest.raises(UniegoError):
                read_array(out)
        progress.append(done())
    assert any(0 < n < 27 for n in progress), progress   # the kills landed mid-way
    final = subprocess.run(cmd, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    a = zarr.open_group(str(tmp_path / "full.zarr"), mode="r")
    b = zarr.open_group(str(out), mode="r")
    for name in ("features", "sample", "split", "label", "done"):
        np.testing.assert_array_equal(np.asarray(a[name][:]), np.asarray(b[name][:]))
