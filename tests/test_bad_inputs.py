"""Bad data fails loudly, naming the file, sample and stage, and leaves no output behind."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_CLIPS
from uniego.datasets.demo import read_annotations
from uniego.errors import UniegoError
from uniego.manifest import write_manifest
from uniego.stages.data.clips import build_clip_cache
from uniego.video import frame_indices, read_skeleton


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data["root"], root)
    return root


def _manifest(root, tmp_path):
    table, classes = read_annotations(root, "demo")
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
        read_annotations(data_copy, "demo")


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
        read_annotations(data_copy, "demo")


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


# --- stores: every reader refuses bad features, naming the store and sample; no output ------

def _feature_store(path, tiny_data, values, *, ids=None, attrs=None):
    from uniego.cache import ArraySpec, StoreWriter
    from uniego.manifest import manifest_sha256
    table = tiny_data["table"]
    ids = list(table.sample_id) if ids is None else ids
    w = StoreWriter(path, sample_ids=ids, splits=["train"] * len(ids), labels=[0] * len(ids),
                    arrays={"features": ArraySpec(values.shape[1:], "float32", ("frame", "channel")[-(values.ndim - 1):])},
                    attrs={"kind": "features", "teacher": "exo_dino", "architecture": "dinov2_test", "feature_dim": 64,
                           "manifest_sha256": manifest_sha256(tiny_data["manifest"]), **(attrs or {})}, stage="test")
    w.write(0, len(ids), features=values)
    return str(w.finalize())


def _train_proxy(tiny_data, features, out):
    from tests.test_level1 import SETTINGS
    from uniego.config import ComputeSettings
    from uniego.stages.level1.proxies import train_proxy
    train_proxy(str(tiny_data["manifest"]), tiny_data["clips"]["ego"], features, str(out), {**SETTINGS, "teacher": "exo_dino"},
                compute=ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4))


def test_feature_store_with_nan_names_the_samples(tiny_data, tmp_path):
    n = len(tiny_data["table"])
    values = np.ones((n, 2, 64), np.float32)
    values[4, 1, 7] = np.nan
    values[6, 0, 0] = np.inf
    store = _feature_store(tmp_path / "f.zarr", tiny_data, values)
    ids = list(tiny_data["table"].sample_id)
    with pytest.raises(UniegoError, match=rf"\[level1\] store .*f.zarr: `features` has NaN or Inf for samples \['{ids[4]}', '{ids[6]}'\]"):
        _train_proxy(tiny_data, store, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


def test_feature_store_with_other_samples_is_refused(tiny_data, tmp_path):
    ids = list(tiny_data["table"].sample_id)
    store = _feature_store(tmp_path / "f.zarr", tiny_data, np.ones((len(ids) - 1, 2, 64), np.float32), ids=ids[1:])
    with pytest.raises(UniegoError, match=rf"does not hold the manifest's samples in order \(missing \['{ids[0]}'\]"):
        _train_proxy(tiny_data, store, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


def test_feature_store_of_the_wrong_dimension_is_refused(tiny_data, tmp_path):
    n = len(tiny_data["table"])
    store = _feature_store(tmp_path / "f.zarr", tiny_data, np.ones((n, 2, 48), np.float32), attrs={"feature_dim": 48})
    with pytest.raises(UniegoError, match="has 48-d features, but architecture dinov2_test says 64"):
        _train_proxy(tiny_data, store, tmp_path / "p.pt")
    assert not (tmp_path / "p.pt").exists()


def test_zero_frame_video_names_the_file(data_copy, tmp_path):
    import av
    manifest, table = _manifest(data_copy, tmp_path)
    victim = table.ego_video[1]
    out = av.open(victim, "w")                    # header and trailer, a video stream, no frames
    s = out.add_stream("libx264", rate=12)
    s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
    out.start_encoding()
    for packet in s.encode(None):
        out.mux(packet)
    out.close()
    with pytest.raises(UniegoError, match=rf"{victim} \(sample {table.sample_id[1]}\)"):
        build_clip_cache(manifest, "ego", tmp_path / "ego.zarr", TINY_CLIPS, workers=0)
    assert not (tmp_path / "ego.zarr").exists()


def test_unknown_teacher_in_config_is_named(config):
    from uniego.config import validate_config
    config["teachers"]["ego_dinov3"] = {"arch": "dinov2_test", "weights": "random"}
    with pytest.raises(UniegoError, match="teachers.*ego_dinov3"):
        validate_config(config)
    del config["teachers"]["ego_dinov3"]
    config["level1"]["teachers"] = ["exo_skl", "exo_dinov3"]
    with pytest.raises(UniegoError, match=r"level1\.teachers\.1.*exo_dinov3"):
        validate_config(config)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_bit_test_for_nan_and_inf_agrees_with_isfinite(dtype):
    from uniego.cache import all_finite
    x = np.random.default_rng(0).standard_normal((300, 1000)).astype(dtype)
    x[5, 5] = np.finfo(dtype).max          # large and subnormal values are finite
    x[6, 6] = np.finfo(dtype).tiny / 4
    assert all_finite(x) and all_finite(x[:0])
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[299, 999] = bad                   # in the last cache-sized block
        assert not all_finite(y) and not np.isfinite(y).all()
