"""The pretraining corpus (issue 18): deterministic, disjoint from the demo dataset, and its
dense supervision agrees with the rendered frames."""

import json

import numpy as np
import pandas as pd
import pytest

from uniego.demo import body as B
from uniego.demo.corpus import LIMBS, SPEEDS, STREAM, CorpusPreset, Motion, generate_corpus
from uniego.demo.generate import participant
from uniego.demo.render import PARTS, Camera, Scene, exo_camera, render, render_dense

# 48 px high, 64 wide: macroblock-aligned, where libx264's output is repeatable (docs/reproducing.md)
PRESET = CorpusPreset(clips=6, size=48, fps=12, seconds=1.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return generate_corpus(tmp_path_factory.mktemp("corpus") / "corpus", PRESET, seed=7, workers=2)


def test_corpus_is_deterministic(corpus, tmp_path):
    again = generate_corpus(tmp_path / "again", PRESET, seed=7, workers=1)   # other worker count
    pd.testing.assert_frame_equal(pd.read_csv(corpus / "captions.csv"), pd.read_csv(again / "captions.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(corpus / "digests.csv"), pd.read_csv(again / "digests.csv"))
    for f in sorted((corpus / "clips").glob("*.npz")):
        with np.load(f) as a, np.load(again / "clips" / f.name) as b:
            assert a.files == b.files
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k], err_msg=f"{f.name}: {k}")
    other = generate_corpus(tmp_path / "other", PRESET, seed=8, workers=1)
    assert not pd.read_csv(other / "captions.csv").caption.equals(pd.read_csv(corpus / "captions.csv").caption)


def test_corpus_is_disjoint_from_the_demo_dataset(corpus):
    from tests.conftest import TINY

    table = pd.read_csv(corpus / "captions.csv")
    assert len(table) == PRESET.clips and set(table.split) <= {"train", "val"}
    assert not {"label", "class_name", "class"} & set(table.columns)        # no class labels at all
    assert not any(c in text for c in B.CLASSES for text in table.caption)  # nor their names in captions
    assert all(i.startswith("corpus_") for i in table.clip_id)              # no demo sample id
    # other participants and rooms: the corpus's own random streams, never the demo's (streams 1-4)
    assert STREAM not in (1, 2, 3, 4)
    corpus_people = [(B.Body.sample(r), Scene.sample(r)) for r in
                     (np.random.default_rng([7, STREAM, i]) for i in range(PRESET.clips))]
    demo_people = [participant(TINY, 7, i, np.random.default_rng([7, 1, i]))[1:] for i in range(36)]
    for body, scene in corpus_people:
        assert all(body != b for b, _ in demo_people)
        assert all(not np.array_equal(scene.floor_a, s.floor_a) for _, s in demo_people)
    # other motions: every corpus clip is a random per-limb oscillation, described by its attributes
    for attrs in map(json.loads, table.attributes):
        assert set(attrs["limbs"]) <= set(LIMBS) and attrs["speed"] in SPEEDS and 1 <= len(attrs["limbs"]) <= 3


def test_dense_supervision_matches_the_render(corpus):
    n = int(round(PRESET.seconds * PRESET.fps))
    for f in sorted((corpus / "clips").glob("*.npz")):
        z = np.load(f)
        J = z["joints3d"]
        assert J.shape == (n, 17, 3) and z["joints2d_ego"].shape == z["joints2d_exo"].shape == (n, 17, 3)
        assert z["depth_exo"].shape == z["parts_exo"].shape == (len(range(0, n, 2)), 24, 32)
        # 2-D joints are the 3-D joints projected by the recorded exo camera
        cam = Camera.look(z["exo_position"].astype(float), z["exo_forward"].astype(float), fov_deg=42, width=64, height=48)
        uv, depth = cam.project(J.astype(float))
        np.testing.assert_allclose(z["joints2d_exo"][..., :2], uv, atol=1e-2)
        np.testing.assert_allclose(z["joints2d_exo"][..., 2], depth, atol=1e-3)
        # the head camera sits at the face, in front of the nose, and moves with it
        np.testing.assert_allclose(np.linalg.norm(z["ego_position"] - J[:, 0], axis=-1), 0.05, atol=1e-4)
        # part masks: the actor is there, and its depth is that of its joints
        parts, dmap = z["parts_exo"], z["depth_exo"].astype(np.float32)
        assert {PARTS.index("torso"), PARTS.index("head")} <= set(np.unique(parts))
        actor = parts > 0
        assert abs(np.median(dmap[actor]) - np.median(z["joints2d_exo"][z["dense_frames"], :, 2])) < 0.5
        assert (dmap[~actor] > dmap[actor].min()).mean() > 0.9     # the room lies behind the actor
        assert (z["parts_ego"] != PARTS.index("head")).all()       # the head camera never sees its own head


def test_dense_render_draws_the_same_pixels_as_the_video_render():
    rng = np.random.default_rng(0)
    body, scene = B.Body.sample(rng), Scene.sample(rng)
    J = B.joints(body, Motion.sample(rng).params(0.3))
    cam = exo_camera(64, 48, rng)
    img, depth, parts = render_dense(cam, J, body.height, scene, ego=False)
    np.testing.assert_array_equal(img, render(cam, J, body.height, scene, ego=False))
    assert depth.shape == parts.shape == (48, 64) and depth.dtype == np.float32 and parts.dtype == np.uint8
