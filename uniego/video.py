"""Decoding with decord: which frames a clip samples, and resize + centre crop.

Sampling over the labelled segment [start, end):
  uniform  T frames at the centres of T equal parts of the segment (default);
  stride   TimeSformer-style: T frames `stride` apart, the window centred in the segment
           (clamped to the segment and the video).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from uniego.errors import UniegoError


def segment_rows(start: float, end: float, fps: float, n_frames: int) -> tuple[int, int]:
    """The first and last frame index of [start, end) s in a sequence of n_frames at fps."""
    first = max(0, int(math.floor(start * fps)))
    return first, min(n_frames - 1, max(first, int(math.ceil(end * fps)) - 1))


def frame_indices(start: float, end: float, fps: float, n_frames: int, num: int, *, sampling: str = "uniform",
                  stride: int = 1, view: int = 0, views: int = 1) -> np.ndarray:
    """Indices of the `num` frames a clip [start, end) samples from a video of n_frames at fps.

    Temporal view `view` of `views` (the multi-view test protocol): uniform sampling shifts
    every frame by (view + 0.5) / views of its bin; stride sampling places the window's centre
    at (view + 0.5) / views of the room the segment leaves. One view is the centred clip."""
    first, last = segment_rows(start, end, fps, n_frames)
    if not 0 <= view < views:
        raise ValueError(f"temporal view {view} of {views}")
    if sampling == "uniform":
        t = start + (np.arange(num) + (view + 0.5) / views) * (end - start) / num
        idx = np.floor(t * fps).astype(np.int64)
    elif sampling == "stride":
        span = num * stride
        room = max((end - start) * fps - span, 0.0)
        centre = (start + end) / 2 * fps if views == 1 or not room else start * fps + span / 2 + room * (view + 0.5) / views
        idx = np.floor(centre + (np.arange(num) - num / 2) * stride).astype(np.int64)
    else:
        raise UniegoError(f"clips.sampling: unknown sampling {sampling!r} (uniform | stride)")
    return np.clip(idx, first, last)


def check_segment(path: str, sample_id: str, start: float, end: float, fps: float, n_frames: int, *, stage: str) -> None:
    duration = n_frames / fps if fps > 0 else 0.0
    if n_frames <= 0:
        raise UniegoError(f"video {path} (sample {sample_id}) has no frames", stage=stage)
    if end > duration + 1.0 / fps + 1e-6:
        raise UniegoError(f"sample {sample_id}: segment [{start}, {end}) s ends after the video {path} "
                          f"({n_frames} frames at {fps:g} fps = {duration:.3f} s); fix the annotation", stage=stage)



def open_video(path: str, sample_id: str, *, stage: str):
    """(decord VideoReader, frame count, fps); an unreadable file names the file and sample."""
    try:
        import decord
    except ImportError:
        raise UniegoError("decord is not installed: `pip install decord`", stage=stage) from None
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        return vr, len(vr), float(vr.get_avg_fps())
    except Exception as e:
        raise UniegoError(f"cannot open video {path} (sample {sample_id}): {type(e).__name__}: {str(e)[:200]}", stage=stage) from None


def decode_frames(vr, idx: np.ndarray, path: str, sample_id: str, *, stage: str) -> np.ndarray:
    """uint8 [len(idx), H, W, 3] (monochrome cameras repeated to 3 channels)."""
    try:
        frames = vr.get_batch(list(map(int, idx))).asnumpy()
    except Exception as e:
        raise UniegoError(f"cannot decode frames {list(idx)[:10]}... of video {path} (sample {sample_id}): "
                          f"{type(e).__name__}: {str(e)[:200]}; the file is corrupt or truncated", stage=stage) from None
    if frames.shape[0] != len(idx) or frames.ndim != 4:
        raise UniegoError(f"video {path} (sample {sample_id}) decoded to shape {frames.shape}", stage=stage)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return frames


DIGESTS = "digests.csv"   # in a dataset root: video (root-relative), frames_sha256 (decoded_digest)


def decoded_digest(path: str, sample_id: str, *, stage: str) -> str:
    """sha256 (16 hex) of every decoded frame of a video, as the pipeline decodes it: what
    a different encoder or decoder build changes, even when the file looks the same."""
    import hashlib

    vr, n, _ = open_video(path, sample_id, stage=stage)
    frames = decode_frames(vr, np.arange(n), path, sample_id, stage=stage)
    h = hashlib.sha256(str(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()[:16]


def read_frames(path: str, sample_id: str, start: float, end: float, num: int, *, sampling: str = "uniform",
                stride: int = 1, stage: str = "clips", view: int = 0, views: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Decode the clip's frames: (uint8 [num, H, W, 3], times in seconds [num]).

    Any unreadable, corrupt or truncated video raises a UniegoError naming the file and sample.
    """
    vr, n, fps = open_video(path, sample_id, stage=stage)
    check_segment(path, sample_id, start, end, fps, n, stage=stage)
    idx = frame_indices(start, end, fps, n, num, sampling=sampling, stride=stride, view=view, views=views)
    frames = decode_frames(vr, idx, path, sample_id, stage=stage)
    return frames, (idx / fps).astype(np.float32)


def read_frames_at(path: str, sample_id: str, times: np.ndarray, *, stage: str) -> np.ndarray:
    """Decode the frames at `times` (s; a clip cache's `frame_time`, i.e. frame index / fps) at the
    video's own resolution: uint8 [len(times), H, W, 3]. A time that is not a frame of this video
    (the video changed since the cache was built) names the file and sample."""
    vr, n, fps = open_video(path, sample_id, stage=stage)
    exact = np.asarray(times, dtype=np.float64) * fps
    idx = np.rint(exact).astype(np.int64)
    if (np.abs(exact - idx) > 0.01).any() or (idx < 0).any() or (idx >= n).any():
        raise UniegoError(f"video {path} (sample {sample_id}) has no frames at the clip cache's times {np.round(times, 4).tolist()} "
                          f"({n} frames at {fps:g} fps): the video changed since the clip cache was built; rebuild the cache",
                          stage=stage)
    return decode_frames(vr, idx, path, sample_id, stage=stage)


def resize_crop(frames: np.ndarray, size: int, width: int | None = None) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, width, 3]: resized (bilinear, antialiased) to cover size x width
    with the aspect kept, then centre-cropped. `width` None: a size x size square (the short side
    resized to `size`); a 16:9 frame with width = 16/9 size is kept whole."""
    T, H, W, _ = frames.shape
    width = size if width is None else width
    scale = max(size / H, width / W)
    h, w = max(size, round(H * scale)), max(width, round(W * scale))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    top, left = (h - size) // 2, (w - width) // 2
    x = x[:, :, top:top + size, left:left + width]
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def skeleton_header_problem(img_shape, fps) -> str | None:
    """What is wrong with a skeleton file's `img_shape` and `fps`, or None: the frame size the
    pixels refer to must be two positive numbers, the rate positive and finite."""
    shape = np.asarray(img_shape).reshape(-1)
    if shape.size != 2 or not np.isfinite(shape.astype(np.float64)).all() or (shape <= 0).any():
        return f"img_shape {shape.tolist()} is not the exo frame size (h, w) the keypoints' pixels refer to"
    if not np.isfinite(fps) or fps <= 0:
        return f"fps {fps} is not a frame rate (the keypoint rows' rate, > 0)"
    return None


def skeleton_file_problem(path: str) -> str | None:
    """A skeleton file's header checked without reading its keypoints (the data check)."""
    try:
        with np.load(path) as z:
            missing = [k for k in ("keypoints", "img_shape", "fps") if k not in z.files]
            if missing:
                return f"has no {', '.join(missing)} (expected keypoints [T, V, 3], img_shape (h, w) and fps)"
            return skeleton_header_problem(z["img_shape"], float(z["fps"]))
    except Exception as e:
        return f"cannot be read: {type(e).__name__}: {e}"


def pyskl_test_indices(total: int, clip_len: int, num_clips: int, *, seed: int = 255) -> np.ndarray:
    """The frame indices pyskl's `UniformSample(clip_len, num_clips)` takes in test mode from a
    sequence of `total` frames (kennymckormick/pyskl, pyskl/datasets/pipelines/sampling.py,
    UniformSampleFrames._get_test_clips, then `np.mod` by the length), num_clips * clip_len of them.

    The random state is seeded with `seed` (pyskl's default 255) for each sample, and every clip
    draws what pyskl draws, in its order: the p_interval ratio and offset (with p_interval 1 they
    change nothing but are drawn all the same), then one index per bin when total >= 2 clip_len,
    or the frames to repeat when clip_len <= total < 2 clip_len. A sequence shorter than a clip
    is read from evenly spaced starts and wraps around."""
    rng = np.random.RandomState(seed)
    clips = []
    for i in range(num_clips):
        rng.rand()       # the p_interval ratio: 1
        rng.randint(1)   # the offset of the interval: 0
        if total < clip_len:
            first = i if total < num_clips else i * total // num_clips
            inds = np.arange(first, first + clip_len)
        elif total < 2 * clip_len:
            shifted = rng.choice(clip_len + 1, total - clip_len, replace=False)   # where a frame is skipped
            skip = np.zeros(clip_len + 1, np.int64)
            skip[shifted] = 1
            inds = np.arange(clip_len) + np.cumsum(skip)[:-1]
        else:
            bins = np.arange(clip_len + 1) * total // clip_len   # one random frame per bin
            inds = bins[:-1] + rng.randint(np.diff(bins))
        clips.append(inds)
    return np.mod(np.concatenate(clips), total)


def read_skeleton(path: str, sample_id: str, start: float, end: float, num: int, *, num_joints: int = 17,
                  clips: int = 1, sampling: str = "uniform", stage: str = "clips") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skeleton file (.npz: keypoints [N, V, 3], img_shape (h, w), fps; optional t0, the video
    time of row 0 in seconds, default 0) -> (keypoints [clips * num, V, 3] float32, img_shape [2],
    times [clips * num] on the video's timeline). Sampling "uniform": `num` frames uniformly over
    [start, end) (clips must be 1); "pyskl": the segment's rows as pyskl's test UniformSample
    takes them (`pyskl_test_indices`), `clips` clips of `num` frames one after the other."""
    import os

    if path is None:
        raise UniegoError(f"sample {sample_id} has no skeleton file: this dataset has no body-pose source. The exo_skl "
                          "and exo_skego teachers need per-clip keypoints: set datasets.<ds>.options.skeletons to a "
                          "folder of <sample_id>.npz files (docs/datasets.md, \"Skeletons\"), or leave those teachers out of "
                          "level1.teachers", stage=stage)
    if not os.path.isfile(path):
        raise UniegoError(f"skeleton file {path} (sample {sample_id}) does not exist; the exo_skl and exo_skego "
                          "teachers need one per clip", stage=stage)
    try:
        with np.load(path) as z:
            kp, img_shape, fps = z["keypoints"], z["img_shape"], float(z["fps"])
            t0 = float(z["t0"]) if "t0" in z.files else 0.0
    except Exception as e:
        raise UniegoError(f"cannot read skeleton file {path} (sample {sample_id}): {type(e).__name__}: {e}. "
                          "Expected an .npz with keypoints [T, V, 3], img_shape (h, w) and fps", stage=stage) from None
    problem = skeleton_header_problem(img_shape, fps)
    if problem:
        raise UniegoError(f"skeleton file {path} (sample {sample_id}): {problem}", stage=stage)
    if kp.ndim != 3 or kp.shape[1] != num_joints or kp.shape[2] != 3:
        raise UniegoError(f"skeleton file {path} (sample {sample_id}): keypoints have shape {kp.shape}, "
                          f"expected [T, {num_joints}, 3] (x, y, score)", stage=stage)
    if not np.isfinite(kp).all():
        raise UniegoError(f"skeleton file {path} (sample {sample_id}) contains NaN or Inf", stage=stage)
    if start < t0 - 1e-6:
        raise UniegoError(f"skeleton file {path} (sample {sample_id}) starts at {t0:.3f} s, after the clip's start "
                          f"{start:.3f} s", stage=stage)
    check_segment(path, sample_id, start - t0, end - t0, fps, kp.shape[0], stage=stage)
    if sampling == "pyskl":
        first, last = segment_rows(max(start - t0, 0.0), end - t0, fps, kp.shape[0])
        idx = first + pyskl_test_indices(last - first + 1, num, clips)
    elif sampling == "uniform" and clips == 1:
        idx = frame_indices(max(start - t0, 0.0), end - t0, fps, kp.shape[0], num)
    else:
        raise UniegoError(f"clips.skeleton_sampling {sampling!r} with skeleton_clips {clips}: uniform sampling takes one "
                          "clip; pyskl takes any number", stage=stage)
    return kp[idx].astype(np.float32), np.asarray(img_shape, np.int32), (idx / fps + t0).astype(np.float32)
