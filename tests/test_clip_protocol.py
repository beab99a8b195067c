"""The students' spatial protocol (issue 19): a clip cache that keeps the whole frame width
(`clips.width`), training crops anywhere in the frame, and the test's left / centre / right crops
across the full width; the teachers keep seeing the centre square."""

import numpy as np
import pytest

from uniego.config import ClipSettings, parse_student
from uniego.data import make_view
from uniego.video import resize_crop

STUDENT = parse_student({"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [40, 48]})


def columns(T=2, H=40, W=72):
    """Frames whose red channel is the column index and green the row index (values survive the crop)."""
    f = np.zeros((T, H, W, 3), np.uint8)
    f[..., 0] = np.arange(W)[None, None, :]
    f[..., 1] = np.arange(H)[None, :, None]
    return f


def seen(view):
    """(rows, columns) of the source frame a [3, T, I, I] view shows (mean 0, std 1 undone below)."""
    x = view.numpy()[:, 0] * 255
    return np.rint(x[1, :, 0]).astype(int), np.rint(x[0, 0, :]).astype(int)


def test_test_crops_are_left_centre_right_across_the_full_width():
    """Short side already at train_jitter[0] = 40 (no resize): the three crops of 32 start at column 0,
    ceil((72 - 32) / 2) = 20 (TimeSformer's uniform_crop) and 72 - 32 = 40, each vertically centred."""
    f = columns()
    starts = []
    for crop in (0, 1, 2):
        rows, cols = seen(make_view(f, STUDENT, train=False, crop=crop, mean=(0, 0, 0), std=(1, 1, 1)))
        assert rows.tolist() == list(range(4, 36))
        assert cols.tolist() == list(range(cols[0], cols[0] + 32))
        starts.append(int(cols[0]))
    assert starts == [0, 20, 40]   # the first reaches the left edge, the last the right edge (column 71)
    # a portrait frame: the crops go down its long side instead
    p = columns(H=72, W=40)
    tops = [seen(make_view(p, STUDENT, train=False, crop=c, mean=(0, 0, 0), std=(1, 1, 1)))[0][0] for c in (0, 1, 2)]
    assert tops == [0, 20, 40]


def test_training_crops_reach_both_frame_edges():
    """Short side jittered in [40, 48] (the long side in proportion), a random 32 x 32 crop anywhere:
    over many draws, crops touch the left and the right edge and the top and the bottom."""
    f = columns()
    left = right = top = bottom = False
    for i in range(300):
        v = make_view(f, STUDENT, train=True, rng=np.random.default_rng([0, i]), mean=(0, 0, 0), std=(1, 1, 1))
        x = v.numpy()[:, 0] * 255
        cols = x[0, 0, :]
        rows = x[1, :, 0]
        lo_col, hi_col = min(cols[0], cols[-1]), max(cols[0], cols[-1])   # a flipped crop runs right to left
        left |= lo_col < 1.0
        right |= hi_col > 70.0
        top |= rows[0] < 1.0
        bottom |= rows[-1] > 38.0
    assert left and right and top and bottom


def test_a_square_clip_is_viewed_as_before():
    """With the centre square cached (width null) the views are those of the square protocol: resize
    to J x J, a crop inside it; the cache's resize is the old short-side resize and centre crop."""
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 40, 72, 3), dtype=np.uint8)
    square = resize_crop(frames, 40)
    assert square.shape == (2, 40, 40, 3) and np.array_equal(square, resize_crop(frames, 40, 40))
    assert np.array_equal(square, frames[:, :, 16:56])   # short side already 40: the centre square, untouched
    whole = resize_crop(frames, 40, 72)
    assert np.array_equal(whole, frames)   # the whole frame at its own size
    assert resize_crop(frames, 20, 36).shape == (2, 20, 36, 3)


def test_teachers_see_the_centre_square_of_a_wide_cache():
    """Every `square`-transform teacher (the demo's stand-ins, the exo TimeSformer) takes the centre
    square of a wide cached clip (the square cache's frames); Sk-Ego places its skeleton box in the
    whole frame. A crop given to frames_to_tensor (the Sk-Ego box, also in its pretraining) is
    resized as it is, not cut again."""
    import torch

    from uniego.config import TeacherSettings
    from uniego.teachers import build_teacher
    from uniego.teachers.transforms import frames_to_tensor
    rng = np.random.default_rng(1)
    wide = rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    square = np.ascontiguousarray(wide[:, :, 8:56])
    sk = np.concatenate([rng.uniform([20, 10], [60, 60], (16, 17, 2)), rng.uniform(0.5, 1, (16, 17, 1))], -1).astype(np.float32)
    for key, arch in (("ego_dino", "dinov2_test"), ("exo_siglip", "siglip_test"), ("ego_depth", "depth_anything_test"),
                      ("exo_rgb", "timesformer_test")):
        t = build_teacher(TeacherSettings(key, arch, "random"))
        view = "exo" if key.startswith("exo") else "ego"
        a = t.preprocess({view: wide, "skeleton": sk, "skeleton_img_hw": np.array([64, 84])})
        b = t.preprocess({view: square, "skeleton": sk, "skeleton_img_hw": np.array([64, 84])})
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    from uniego.teachers.clip_frames import skeleton_box
    skego = build_teacher(TeacherSettings("exo_skego", "skego_standin_test", "random"))
    top, left, bottom, right = skeleton_box(sk, (64, 84), (48, 64))
    got = skego.preprocess({"exo": wide, "skeleton": sk, "skeleton_img_hw": np.array([64, 84])})["frames"]
    torch.testing.assert_close(got, frames_to_tensor(wide[:, top:bottom, left:right], skego.input_size, skego.arch.mean,
                                                     skego.arch.std))
    assert right - left > 4   # a real box
    box = rng.integers(0, 256, (2, 20, 30, 3), dtype=np.uint8)   # a non-square crop is squashed, not cut
    x = frames_to_tensor(box, 24, (0.5,) * 3, (0.25,) * 3)
    assert tuple(x.shape) == (2, 3, 24, 24)
    assert not torch.allclose(x, frames_to_tensor(np.ascontiguousarray(box[:, :, 5:25]), 24, (0.5,) * 3, (0.25,) * 3))


def test_a_wide_clip_cache_trains_and_tests_over_the_whole_frame(tiny_data, tmp_path):
    """The tiny demo's ego videos are 64 x 84: a cache of size 48 and width 63 keeps the whole frame;
    training and test views come from it, and `Encoder.decode` decodes a video as the cache does."""
    import zarr

    from uniego.data import ClipBatches, ClipSource
    from uniego.encoder import decode_clip
    from uniego.manifest import manifest_sha256, read_manifest
    from uniego.stages.data.clips import build_clip_cache
    settings = ClipSettings(num_frames=4, size=48, width=63, sampling="uniform", stride=2)
    out = build_clip_cache(tiny_data["manifest"], "ego", tmp_path / "ego.zarr", settings, workers=0)
    g = zarr.open_group(str(out), mode="r")
    table, _ = read_manifest(tiny_data["manifest"])
    assert g["frames"].shape == (len(table), 4, 48, 63, 3) and g.attrs["settings"]["width"] == 63
    row = table.iloc[0]
    assert np.array_equal(g["frames"][0], decode_clip(row.ego_video, settings, start=row.start, end=row.end, sample_id=row.sample_id))
    source = ClipSource(str(out), table.sample_id, manifest_sha256=manifest_sha256(tiny_data["manifest"]),
                        clip_settings=settings.used())
    student = parse_student({"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [40, 48]})
    batch = ClipBatches(source, table.label, student, [np.arange(4)], epoch=0, seed=0, train=True)[0]
    assert tuple(batch["clip"].shape) == (4, 3, 4, 32, 32)
    with pytest.raises(Exception, match="settings"):   # a reader expecting the square cache refuses the wide one
        ClipSource(str(out), table.sample_id, manifest_sha256=manifest_sha256(tiny_data["manifest"]),
                   clip_settings=ClipSettings(num_frames=4, size=48, width=None, sampling="uniform", stride=2).used()
                   | {"width": None})


@pytest.mark.parametrize("sampling, pool", [("stride", 8), ("uniform", 8)])
def test_training_clips_are_drawn_anew_each_epoch_from_the_pool(tiny_data, tmp_path, sampling, pool):
    """`clips.pool`: the ego cache keeps `pool` frames per clip beside the test clip. Each epoch a
    training clip is drawn from them: with stride sampling a window of consecutive pool frames inside
    the segment (the centred window is the test clip, bit for bit); with uniform sampling every
    (pool / T)-th pool frame from a random first one. Across epochs the windows differ."""
    import zarr

    from uniego.data import ClipBatches, ClipSource
    from uniego.manifest import manifest_sha256, read_manifest
    from uniego.stages.data.clips import build_clip_cache
    settings = ClipSettings(num_frames=4, size=48, sampling=sampling, stride=2, pool=pool)
    out = build_clip_cache(tiny_data["manifest"], "ego", tmp_path / "ego.zarr", settings, workers=0)
    g = zarr.open_group(str(out), mode="r")
    table, _ = read_manifest(tiny_data["manifest"])
    assert g["pool_frames"].shape == (len(table), pool, 48, 48, 3) and g["pool_time"].shape == (len(table), pool)
    source = ClipSource(str(out), table.sample_id, manifest_sha256=manifest_sha256(tiny_data["manifest"]), clip_settings=settings.used())
    pool_frames, test_clip = np.asarray(g["pool_frames"][0]), np.asarray(g["frames"][0])
    if sampling == "stride":
        assert np.array_equal(pool_frames[2:6], test_clip)   # the centred window of the pool is the test clip
        candidates = [pool_frames[s:s + 4] for s in range(pool - 4 + 1)]
    else:
        candidates = [pool_frames[o::2] for o in range(2)]
    drawn = set()
    for epoch in range(12):
        clip = source.train_clip(0, np.random.default_rng([0, epoch, 0]))
        match = [k for k, c in enumerate(candidates) if np.array_equal(c, clip)]
        assert match, epoch
        drawn.add(match[0])
    assert len(drawn) >= 2   # different temporal windows across epochs
    # the training batches use them, the evaluation the test clip
    student = parse_student({"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [40, 48]})
    a = ClipBatches(source, table.label, student, [np.arange(2)], epoch=0, seed=0, train=True)[0]["clip"]
    b = ClipBatches(source, table.label, student, [np.arange(2)], epoch=1, seed=0, train=True)[0]["clip"]
    assert a.shape == b.shape == (2, 3, 4, 32, 32) and not np.array_equal(a.numpy(), b.numpy())
    assert "pool_frames" not in zarr.open_group(str(build_clip_cache(tiny_data["manifest"], "exo", tmp_path / "exo.zarr",
                                                                       ClipSettings(num_frames=4, size=48, sampling=sampling,
                                                                                    stride=2), workers=0)), mode="r")


@pytest.mark.parametrize("clips, message", [
    ({"pool": 12, "sampling": "uniform"}, "clips.pool 12 must be a multiple of clips.num_frames 8"),
    ({"pool": 11, "sampling": "stride"}, "clips.pool 11 must be clips.num_frames 8 plus an even number"),
])
def test_a_pool_that_cannot_give_the_clips_fails_at_validation(clips, message):
    from pathlib import Path

    from uniego.config import load_yaml, merge_overlay, validate_config
    from uniego.errors import UniegoError
    with pytest.raises(UniegoError, match=message):
        validate_config(merge_overlay(load_yaml(Path(__file__).parents[1] / "config.yaml"), {"clips": clips}))
