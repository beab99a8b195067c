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


def test_an_image_teacher_sees_the_source_video_at_the_cache_times(tiny_data):
    """Issue 19: an image teacher (`frames_from: video`, the default) decodes the frames the clip
    cache sampled from the source video, at the video's own size (64 x 84 here, where the cache
    holds 48 x 48), and applies its eval transform to them; `cache` gives it the cached frames."""
    import dataclasses

    import torch

    from tests.conftest import TINY_CLIPS
    from uniego.stages.teachers.extract import _TeacherInputs
    from uniego.teachers import build_teacher
    from uniego.video import frame_indices, open_video

    table = tiny_data["table"]
    g = open_store(tiny_data["clips"]["ego"])
    ids, videos = list(table.sample_id), {"ego": list(table.ego_video)}
    on_video = build_teacher(EGO_DINO, seed=0)
    on_cache = build_teacher(dataclasses.replace(EGO_DINO, frames_from="cache"), seed=0)
    assert (on_video.frames_from, on_cache.frames_from) == ("video", "cache")
    assert on_video.provenance()["frames_from"] == "video"
    [(idx, inputs)] = _TeacherInputs({"ego": tiny_data["clips"]["ego"]}, on_video, [(0, 0, 3)], videos, ids)[0][3]
    [(_, cached)] = _TeacherInputs({"ego": tiny_data["clips"]["ego"]}, on_cache, [(0, 0, 3)], {}, ids)[0][3]
    assert idx == [0, 1, 2] and inputs["frames"].shape == cached["frames"].shape == (3, 4, 3, 56, 56)
    for j in range(3):
        row = table.iloc[j]
        vr, n, fps = open_video(row.ego_video, row.sample_id, stage="test")
        sampled = frame_indices(row.start, row.end, fps, n, TINY_CLIPS.num_frames, sampling=TINY_CLIPS.sampling)
        frames = vr.get_batch(list(map(int, sampled))).asnumpy()   # the clip's frames, as the cache sampled them
        assert frames.shape[1:3] == (64, 84)
        torch.testing.assert_close(inputs["frames"][j], on_video.transform(frames), rtol=0, atol=0)
        torch.testing.assert_close(cached["frames"][j], on_cache.transform(np.asarray(g["frames"][j])), rtol=0, atol=0)
    assert (inputs["frames"] - cached["frames"]).abs().max() > 0.05   # 64 px of the video, not the cache's 48


def test_frames_of_other_sizes_in_one_batch_are_run_in_groups(tiny_data, tmp_path, monkeypatch):
    """Videos of other shapes in one batch (Depth Anything keeps the aspect ratio, so its inputs
    differ in shape): each sample's feature equals the teacher's on that sample alone."""
    import dataclasses

    import torch

    import uniego.stages.teachers.extract as ex

    portrait = set(tiny_data["table"].sample_id[1::2])
    decode, build = ex.read_frames_at, ex.build_teacher

    def mixed(path, sample_id, times, *, stage):
        f = decode(path, sample_id, times, stage=stage)
        return np.ascontiguousarray(f.transpose(0, 2, 1, 3)) if sample_id in portrait else f

    def depth_anything_transform(settings, seed):
        t = build(settings, seed=seed)
        t.arch = dataclasses.replace(t.arch, transform="depth_anything")
        return t

    monkeypatch.setattr(ex, "read_frames_at", mixed)
    monkeypatch.setattr(ex, "build_teacher", depth_anything_transform)
    settings = TeacherSettings("ego_depth", "depth_anything_test", "random")
    out = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "ego_depth.zarr", settings, compute=CPU, dtype="float32")
    feats = np.asarray(zarr.open_group(str(out), mode="r")["features"][:4])
    teacher = depth_anything_transform(settings, seed=0)
    times = np.asarray(open_store(tiny_data["clips"]["ego"])["frame_time"][:4])
    shapes = set()
    for j, row in enumerate(tiny_data["table"].iloc[:4].itertuples()):
        x = teacher.transform(mixed(row.ego_video, row.sample_id, times[j], stage="test"))
        shapes.add(tuple(x.shape[-2:]))
        with torch.inference_mode():
            alone = teacher({"frames": x[None]})[0].numpy()
        np.testing.assert_allclose(feats[j], alone, rtol=1e-4, atol=1e-5)
    assert shapes == {(56, 70), (70, 56)}


def test_a_video_that_changed_since_the_cache_is_named(tiny_data):
    from uniego.video import read_frames_at

    row = tiny_data["table"].iloc[0]
    with pytest.raises(UniegoError, match=f"{row.ego_video}.*{row.sample_id}.*rebuild the cache"):
        read_frames_at(row.ego_video, row.sample_id, np.array([0.5 / 12]), stage="extract")   # between two frames at 12 fps
