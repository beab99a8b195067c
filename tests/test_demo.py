"""The demo dataset: deterministic, well-formed, and built so the exo view carries what the
ego view lacks."""

import numpy as np
import pandas as pd

from tests.conftest import TINY
from uniego.datasets.demo import read_annotations
from uniego.demo import body as B
from uniego.demo.generate import _film, _timeline, generate
from uniego.demo.render import Scene
from uniego.video import read_frames


def test_generator_is_deterministic(tmp_path, tiny_data):
    again = generate(tmp_path / "again", TINY, seed=7, workers=1)  # other worker count, same seed
    a = pd.read_csv(tiny_data["root"] / "annotations.csv")
    b = pd.read_csv(again / "annotations.csv")
    pd.testing.assert_frame_equal(a, b)
    for row in a.itertuples():
        fa, ta = read_frames(str(tiny_data["root"] / row.ego_video), row.sample_id, row.start, row.end, 4)
        fb, tb = read_frames(str(again / row.ego_video), row.sample_id, row.start, row.end, 4)
        np.testing.assert_array_equal(fa, fb)
        np.testing.assert_array_equal(ta, tb)
    for row in a.head(5).itertuples():
        assert (tiny_data["root"] / row.exo_video).read_bytes() == (again / row.exo_video).read_bytes()
        np.testing.assert_array_equal(np.load(tiny_data["root"] / row.skeleton)["keypoints"],
                                      np.load(again / row.skeleton)["keypoints"])


def test_other_seed_gives_other_data(tmp_path, tiny_data):
    other = generate(tmp_path / "other", TINY, seed=8, workers=2)
    a = pd.read_csv(tiny_data["root"] / "annotations.csv")
    b = pd.read_csv(other / "annotations.csv")
    assert not np.allclose(a.end, b.end)


def test_dataset_contents(tiny_data):
    table = tiny_data["table"]
    assert len(table) == 3 * len(B.CLASSES) and len(B.CLASSES) >= 6
    assert tiny_data["classes"] == B.CLASSES
    counts = table.groupby(["class_name", "split"]).size().unstack()
    assert (counts[["train", "val", "test"]] >= 1).all().all()
    row = table.iloc[0]
    with np.load(row.skeleton) as z:
        kp, (h, w) = z["keypoints"], z["img_shape"]
    assert kp.shape[1:] == (17, 3) and (h, w) == (64, 84)
    assert ((kp[..., 2] > 0) & (kp[..., 2] <= 1)).all()
    frames, _ = read_frames(row.exo_video, row.sample_id, row.start, row.end, 4)
    assert frames.shape == (4, 64, 84, 3)
    # the whole body is in the exo frame
    assert (kp[..., 0] > 0).all() and (kp[..., 0] < w).all() and (kp[..., 1] > 0).all() and (kp[..., 1] < h).all()
    sessions = pd.read_csv(tiny_data["root"] / "sessions.csv")
    labels = np.load(tiny_data["root"] / sessions.labels[0])
    assert len(labels) == sessions.n_frames[0]
    assert len(set(labels.tolist()) - {len(B.CLASSES)}) == TINY.actions_per_session  # actions + idle


def _render(exercise, size=64):
    rng = np.random.default_rng(3)
    body, scene = B.Body.sample(rng), Scene.sample(rng)
    params, _, _ = _timeline([(exercise, 2.0)], 12, np.random.default_rng(4))
    ego, exo, skel, _ = _film(params, body, scene, size, 12, np.random.default_rng(5), exo=True)
    return ego.astype(float), exo.astype(float), skel


def test_kickback_pairs_have_a_weak_ego_cue_and_an_obvious_exo_one():
    """arm_circle vs arm_circle_kickback: the legs kick behind the body, out of the head
    camera's view; the skeleton's heels rise by many pixels. The ego view's only cue is the
    torso tipping forward by at most KICK_LEAN (x amplitude) with each kick: the head camera
    bobs by about a degree, far less than another exercise changes the ego frames."""
    ego_a, _, _ = _render("squat")
    ego_b, _, _ = _render("arm_circle")
    other_exercise = np.abs(ego_a - ego_b).mean()
    for base in ("arm_circle", "front_raise"):
        ego_a, exo_a, sk_a = _render(base)
        ego_b, exo_b, sk_b = _render(base + "_kickback")
        ego_diff = np.abs(ego_a - ego_b).mean()
        ankle_diff = np.abs(sk_a[:, 15:17, 1] - sk_b[:, 15:17, 1]).max()
        head_diff = np.abs(sk_a[:, 0, :2] - sk_b[:, 0, :2]).max()
        assert 0.5 < ego_diff < other_exercise / 3, (ego_diff, other_exercise)   # present, but weak
        assert np.abs(exo_a - exo_b).mean() > 0.1
        assert ankle_diff > 5.0 and head_diff < 0.5, (ankle_diff, head_diff)    # pixels: the heels rise
        leans = [B.pose_params(base + "_kickback", t, 1.1)["lean"] - B.pose_params(base, t, 1.1)["lean"]
                 for t in np.linspace(0, 2 * np.pi, 50)]
        assert 0.01 < max(leans) <= B.KICK_LEAN * 1.1 + 1e-9 and min(leans) >= 0


def test_manifest_from_demo(tiny_data):
    table, classes = read_annotations(tiny_data["root"], "demo")
    assert list(table.columns) == ["sample_id", "split", "label", "class_name", "ego_video", "exo_video",
                                   "start", "end", "skeleton", "dataset"]
    assert (table.end > table.start).all() and table.sample_id.is_unique
    assert [classes[i] for i in table.label] == list(table.class_name)


def test_digests_record_the_decoded_frames_and_the_data_check_names_a_changed_clip(tmp_path, tiny_data):
    import shutil

    from uniego.demo.generate import write_video
    from uniego.stages.data.check_data import check_data, summary
    from uniego.video import DIGESTS, decode_frames, decoded_digest, open_video

    root = shutil.copytree(tiny_data["root"], tmp_path / "demo")
    digests = pd.read_csv(root / DIGESTS, dtype=str)
    table = pd.read_csv(root / "annotations.csv")
    assert set(digests.video) == set(table.ego_video) | set(table.exo_video) | set(pd.read_csv(root / "sessions.csv").video)
    assert all(len(d) == 16 for d in digests.frames_sha256)
    spec = {"adapter": "demo", "root": str(root)}
    report = check_data(spec, "tiny", tmp_path / "check.json", skeletons=True)
    assert report["changed_videos"] == [] and "WARNING" not in summary(report)

    # one frame of one rendered clip changes: the digest changes and the data check names that clip
    video = table.exo_video[4]
    vr, n, fps = open_video(str(root / video), "x", stage="test")
    frames = decode_frames(vr, np.arange(n), str(root / video), "x", stage="test")
    before = decoded_digest(str(root / video), "x", stage="test")
    frames[n // 2, 10:30, 10:30] = 255 - frames[n // 2, 10:30, 10:30]
    write_video(root / video, frames, int(round(fps)))
    assert decoded_digest(str(root / video), "x", stage="test") != before
    report = check_data(spec, "tiny", tmp_path / "check.json", skeletons=True)
    assert len(report["changed_videos"]) == 1 and report["changed_videos"][0].startswith(f"{video}: frames ")
    assert f"recorded {before}" in report["changed_videos"][0]
    text = summary(report)
    assert "WARNING: 1 video(s) decode to other frames than when they were rendered" in text and video in text
