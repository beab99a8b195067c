"""Bad data fails loudly, naming the file, sample and stage, and leaves no output behind."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_CLIPS
from uniego.clips import build_clip_cache
from uniego.errors import UniegoError
from uniego.manifest import build_demo_manifest, write_manifest
from uniego.video import frame_indices, read_skeleton


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data["root"], root)
    return root


def _manifest(root, tmp_path):
    table, classes = build_demo_manifest(root, "demo")
    path = tmp_path / "manifest.parquet"
    write_manifest(table, classes, path)
    return path, table


def test_corrupt_video_names_the_file(data_copy, tmp_path):
    manifest, table = _manifest(data_copy, tmp_path)
    victim = table.exo_video[5]
    with open(victim, "r+b") as f:  # cut the file: the index (moov) at the end is lost
        f.truncate(f.seek(0, 2) // 2)
    with pytest.raises(UniegoError) as e:
        build_clip_cache(manifest, "exo", tmp_path / "exo.zarr", TINY_CLIPS, workers=0)
    assert victim in str(e.value) and table.sample_id[5] in str(e.value) and "[clips]" in str(e.value)
    assert not (tmp_path / "exo.zarr").exists()


def test_garbage_video_fails_in_the_cli_with_exit_2(data_copy, tmp_path):
    manifest, table = _manifest(data_copy, tmp_path)
    with open(table.ego_video[2], "wb") as f:
        f.write(np.random.default_rng(0).bytes(5000))
    r = subprocess.run([sys.executable, "-m", "uniego", "clips", "--settings",
                        '{"num_frames": 4, "size": 48, "sampling": "uniform", "stride": 2}', "--manifest", str(manifest),
                        "--view", "ego", "--out", str(tmp_path / "ego.zarr"), "--workers", "0"], capture_output=True, text=True)
    assert r.returncode == 2
    assert table.ego_video[2] in r.stderr and "Traceback" not in r.stderr


def test_missing_skeleton_file_names_the_file(data_copy, tmp_path):
    manifest, table = _manifest(data_copy, tmp_path)
    victim = table.skeleton[3]
    (data_copy / "skeletons" / victim.split("/")[-1]).unlink()
    with pytest.raises(UniegoError, match=f"skeleton file {victim}.*does not exist"):
        build_clip_cache(manifest, "skeleton", tmp_path / "sk.zarr", TINY_CLIPS, workers=0)
    with pytest.raises(UniegoError, match=f"row 5 .*skeleton file {victim} does not exist"):
        build_demo_manifest(data_copy, "demo")


def test_skeleton_with_wrong_joint_count(tmp_path):
    np.savez(tmp_path / "s.npz", keypoints=np.zeros((30, 18, 3)), img_shape=np.array([64, 84]), fps=np.array(12))
    with pytest.raises(UniegoError, match=r"s.npz \(sample x\).*\[T, 17, 3\]"):
        read_skeleton(str(tmp_path / "s.npz"), "x", 0.0, 1.0, 8)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(sample_id=[t.sample_id[0]] * 2 + list(t.sample_id[2:])), "row 2 .*duplicate sample_id"),
    (lambda t: t.assign(class_name=["burpee"] + list(t.class_name[1:])), "row 2 .*label 'burpee' is not in the class list"),
    (lambda t: t.assign(end=[0.1] + list(t.end[1:])), r"row 2 .*end \(0.1\) <= start"),
    (lambda t: t.assign(split=["training"] + list(t.split[1:])), "row 2 .*split 'training'"),
    (lambda t: t.assign(ego_video=["videos/ego/gone.mp4"] + list(t.ego_video[1:])), "row 2 .*ego_video file .*gone.mp4 does not exist"),
])
def test_bad_annotation_rows_are_named(data_copy, edit, message):
    ann = data_copy / "annotations.csv"
    edit(pd.read_csv(ann)).to_csv(ann, index=False)
    with pytest.raises(UniegoError, match=message):
        build_demo_manifest(data_copy, "demo")


def test_segment_beyond_video_end(data_copy, tmp_path):
    ann = data_copy / "annotations.csv"
    t = pd.read_csv(ann)
    t.loc[0, "end"] = 30.0
    t.to_csv(ann, index=False)
    manifest, _ = _manifest(data_copy, tmp_path)
    with pytest.raises(UniegoError, match="ends after the video"):
        build_clip_cache(manifest, "ego", tmp_path / "ego.zarr", TINY_CLIPS, workers=0)


def test_frame_indices():
    # uniform: centres of 4 equal parts of [1.0, 2.0) at 10 fps
    assert frame_indices(1.0, 2.0, 10, 100, 4).tolist() == [11, 13, 16, 18]
    # stride window centred in the segment, clamped to it
    assert frame_indices(1.0, 2.0, 10, 100, 4, sampling="stride", stride=2).tolist() == [11, 13, 15, 17]
    assert frame_indices(1.0, 2.0, 10, 100, 4, sampling="stride", stride=8).tolist() == [10, 10, 15, 19]
    assert frame_indices(0.0, 5.0, 10, 20, 3).tolist() == [8, 19, 19]  # clamped to the video
