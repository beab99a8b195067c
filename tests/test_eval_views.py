"""The multi-view test protocol: temporal views x spatial crops, logits summed."""

import json

import numpy as np
import pytest
import torch
import zarr

from uniego.checkpoints import predict
from uniego.config import ClipSettings, ComputeSettings, parse_student
from uniego.data import ClipSource
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256
from uniego.metrics import retrieval_scores
from uniego.stages.data.clips import build_clip_cache
from uniego.stages.evaluate.recognition import evaluate_recognition
from uniego.student import build_student
from uniego.video import frame_indices, read_frames

STUDENT = {"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [32, 40]}
CLIPS = ClipSettings(num_frames=4, size=48, sampling="uniform", stride=2)


def test_temporal_views_tile_the_segment():
    # one view = the centred clip; V views shift every frame through its bin
    assert frame_indices(0.0, 4.0, 10, 100, 4).tolist() == [5, 15, 25, 35]
    assert frame_indices(0.0, 4.0, 10, 100, 4, view=0, views=2).tolist() == [2, 12, 22, 32]
    assert frame_indices(0.0, 4.0, 10, 100, 4, view=1, views=2).tolist() == [7, 17, 27, 37]
    # stride windows (4 frames x 2 = 8 frames) spread over the room a 40-frame segment leaves
    assert frame_indices(0.0, 4.0, 10, 100, 4, sampling="stride", stride=2).tolist() == [16, 18, 20, 22]
    assert frame_indices(0.0, 4.0, 10, 100, 4, sampling="stride", stride=2, view=0, views=2).tolist() == [8, 10, 12, 14]
    assert frame_indices(0.0, 4.0, 10, 100, 4, sampling="stride", stride=2, view=1, views=2).tolist() == [24, 26, 28, 30]
    with pytest.raises(ValueError):
        frame_indices(0.0, 4.0, 10, 100, 4, view=2, views=2)


@pytest.fixture(scope="module")
def views_store(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("views") / "ego.views2.zarr"
    return str(build_clip_cache(tiny_data["manifest"], "ego", out, CLIPS, workers=0, temporal_views=2))


def test_views_cache_holds_the_test_split_and_each_view(views_store, tiny_data):
    g = zarr.open_group(views_store, mode="r")
    table = tiny_data["table"]
    test = table[table.split == "test"].reset_index(drop=True)
    assert g["frames"].shape == (len(test), 2, 4, 48, 48, 3) and g.attrs["temporal_views"] == 2
    assert list(g["sample"][:]) == list(test.sample_id)
    row = test.iloc[0]
    from uniego.video import resize_crop
    for v in range(2):
        frames, t = read_frames(str(row.ego_video), row.sample_id, row.start, row.end, 4, view=v, views=2)
        np.testing.assert_array_equal(g["frames"][0, v], resize_crop(frames, 48))
        np.testing.assert_allclose(g["frame_time"][0, v], t)
    assert not np.array_equal(g["frames"][0, 0], g["frames"][0, 1])


def test_recognition_sums_temporal_views_and_crops(views_store, tiny_data, tmp_path):
    sha = manifest_sha256(tiny_data["manifest"])
    student = parse_student(STUDENT)
    enc = build_student(student, 9, num_frames=4, seed=5)
    ck = tmp_path / "m.pt"
    torch.save({"encoder": enc.state_dict(), "meta": {"kind": "student", "classes": tiny_data["classes"], "num_frames": 4,
                                                       "manifest_sha256": sha, "seed": 5}}, ck)
    settings = {"student": STUDENT, "eval": {"spatial_crops": 3, "temporal_clips": 2}}
    cpu = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)
    res = evaluate_recognition(str(tiny_data["manifest"]), views_store, str(ck), str(tmp_path / "r.json"), settings, compute=cpu,
                               retrieval_out=str(tmp_path / "retrieval.json"))
    table = tiny_data["table"]
    ids = list(table.sample_id[table.split == "test"])
    outs = [predict(enc, ClipSource(views_store, ids, manifest_sha256=sha, temporal_view=v), student,
                    device=torch.device("cpu"), crop=c) for v in range(2) for c in range(3)]
    logits = sum(z for _, z in outs)
    y = table.label[table.split == "test"].to_numpy()
    assert res["views"] == "2x3" and res["n"] == len(ids)
    assert res["top1"] == pytest.approx(100 * float((logits.argmax(1) == y).mean()))
    # retrieval from the same pass: the tiny test split has one clip per class, so it is undefined (null)
    retrieval = json.loads((tmp_path / "retrieval.json").read_text())
    assert np.bincount(y).max() == 1
    assert retrieval["mAP"] is None and retrieval["R@1"] is None and "no test class" in retrieval["note"]
    assert retrieval["views"] == "2x3" and "retrieval" not in json.loads((tmp_path / "r.json").read_text())
    with pytest.raises(UniegoError, match="temporal views 2; asked for view None"):
        ClipSource(views_store, ids, manifest_sha256=sha)


def test_retrieval_uses_the_cls_averaged_over_views(views_store, tiny_data, tmp_path):
    """Relabel the test clips into two classes (a manifest of our own) so every query has relevant clips."""
    from uniego.manifest import read_manifest, write_manifest
    table, classes = read_manifest(tiny_data["manifest"])
    test = table.split == "test"
    table.loc[test, "label"] = np.arange(test.sum()) % 2
    manifest = tmp_path / "two.parquet"
    write_manifest(table, classes, manifest)
    sha = manifest_sha256(manifest)
    student = parse_student(STUDENT)
    enc = build_student(student, 9, num_frames=4, seed=6)
    ck = tmp_path / "m.pt"
    torch.save({"encoder": enc.state_dict(), "meta": {"kind": "student", "classes": classes, "num_frames": 4,
                                                       "manifest_sha256": sha, "seed": 6}}, ck)
    clips = build_clip_cache(manifest, "ego", tmp_path / "ego.zarr", CLIPS, workers=0)
    settings = {"student": STUDENT, "eval": {"spatial_crops": 3, "temporal_clips": 1}}
    cpu = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)
    evaluate_recognition(str(manifest), str(clips), str(ck), str(tmp_path / "r.json"), settings, compute=cpu,
                         retrieval_out=str(tmp_path / "retrieval.json"))
    ids = list(table.sample_id[test])
    feats = sum(predict(enc, ClipSource(str(clips), ids, manifest_sha256=sha), student, device=torch.device("cpu"), crop=c)[0]
                for c in range(3)) / 3
    expect = retrieval_scores(feats, table.label[test].to_numpy())
    got = json.loads((tmp_path / "retrieval.json").read_text())
    assert got["mAP"] == pytest.approx(expect["mAP"]) and got["R@1"] == pytest.approx(expect["R@1"])
    assert 0 < got["mAP"] <= 1 and got["queries"] == len(ids) and got["views"] == "1x3"
