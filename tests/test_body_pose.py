"""Ego-Exo4D body pose files -> per-clip exo keypoints (the skeleton teachers' input)."""

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests import official_formats as F
from uniego.datasets import build_manifest
from uniego.datasets.ee4d_body_pose import write_body_pose
from uniego.errors import UniegoError
from uniego.video import read_skeleton

OPTIONS = {"body_pose": "annotations/ego_pose", "skeletons": "body_pose_keypoints"}


@pytest.fixture
def ee4d(tmp_path_factory):
    return F.make_ee4d(tmp_path_factory.mktemp("ee4d"))


def test_dense_body_pose_becomes_per_clip_keypoints_of_the_best_exo_camera(ee4d):
    F.make_ee4d_body_pose(ee4d)
    spec = {"adapter": "ee4d", "root": str(ee4d), "options": OPTIONS}
    out = write_body_pose(spec, "ee4d", ee4d / "body_pose_keypoints")
    table = build_manifest(spec, "ee4d").table
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(table.sample_id) and len(table) == 4
    row = table.set_index("sample_id").loc["upenn_0711_Cooking_1_001"]   # take 0, segment [1.4, 2.3) s
    assert row.skeleton == str(out / "upenn_0711_Cooking_1_001.npz")
    with np.load(row.skeleton) as z:
        kp, t0, fps, shape = z["keypoints"], float(z["t0"]), float(z["fps"]), tuple(z["img_shape"])
    first, stop = math.floor(row.start * 30), math.ceil(row.end * 30)
    assert kp.shape == (stop - first, 17, 3) and fps == 30 and t0 == pytest.approx(first / 30) and shape == (32, 32)
    for r, f in ((0, first), (5, first + 5)):
        for j in range(17):
            x, y = F.ee4d_pose_point(0, f, "cam02", j)   # best_exo is cam02, not cam01
            if j == 16 and f % 2:
                assert tuple(kp[r, j]) == (0, 0, 0)      # not annotated: score 0
            else:
                assert tuple(kp[r, j]) == (x, y, 1.0)
    keypoints, _, times = read_skeleton(row.skeleton, row.name, row.start, row.end, 8)
    assert ((times >= row.start - 1e-6) & (times < row.end)).all()
    frames = np.round(times * 30).astype(int)
    assert np.array_equal(keypoints[:, 0, 1], frames.astype(np.float32))   # y of the nose = the frame number


def test_sparse_body_pose_is_refused_not_interpolated(ee4d):
    F.make_ee4d_body_pose(ee4d, every=10)   # manual pose at sparse timestamps
    spec = {"adapter": "ee4d", "root": str(ee4d), "options": OPTIONS}
    with pytest.raises(UniegoError) as e:
        write_body_pose(spec, "ee4d", ee4d / "body_pose_keypoints")
    msg = str(e.value)
    assert "4 of 4 clip(s) lack exo body pose on every frame" in msg and "never interpolated" in msg
    assert "upenn_0711_Cooking_1_000: 24 of 27 frames have no cam02 body pose" in msg
    assert "body_pose_kinds" in msg and not (ee4d / "body_pose_keypoints").exists()
    assert not (ee4d / "body_pose_keypoints.partial").exists()


def test_a_take_without_a_pose_file_is_named(ee4d):
    F.make_ee4d_body_pose(ee4d)
    shutil.rmtree(ee4d / "annotations/ego_pose/val")
    spec = {"adapter": "ee4d", "root": str(ee4d), "options": OPTIONS}
    with pytest.raises(UniegoError, match=r"upenn_0711_Cooking_3_000: take upenn_0711_Cooking_3 \(uid-0002\) has no body pose file"):
        write_body_pose(spec, "ee4d", ee4d / "body_pose_keypoints")
    with pytest.raises(UniegoError, match="options.body_pose is set but options.skeletons is not"):
        build_manifest({**spec, "options": {"body_pose": "annotations/ego_pose"}}, "ee4d")


def test_the_body_pose_rule_runs_before_the_data_check(ee4d, tmp_path):
    from tests.test_datasets import _dry_run, _workflow_copy
    from tests.test_workflow import planned_jobs
    F.make_ee4d_body_pose(ee4d)
    work = _workflow_copy(tmp_path)
    overlay = tmp_path / "data.yaml"
    overlay.write_text(f"datasets:\n  ee4d:\n    root: {ee4d}\n    options:\n      body_pose: annotations/ego_pose\n"
                       "      skeletons: body_pose_keypoints\n")
    r = _dry_run(work, "results/ee4d/clips/skeleton.zarr", overlay)
    assert r.returncode == 0, r.stderr[-3000:]
    assert planned_jobs(r) == {"body_pose_ee4d": 1, "check_data": 1, "manifest": 1, "clips": 1}
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/ee4d/clips/skeleton.zarr", "--cores", "2",
                        "--configfile", str(overlay)], cwd=work, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    import xarray as xr
    ds = xr.open_zarr(work / "results/ee4d/clips/skeleton.zarr")
    assert ds.sizes["sample"] == 4 and len(list((ee4d / "body_pose_keypoints").glob("*.npz"))) == 4
