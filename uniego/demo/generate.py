"""`uniego demo-data`: write the demo dataset, deterministically from a seed.

Layout under `root` (written into `root.partial`, moved into place at the end):
  videos/{ego,exo}/{clip}.mp4    H.264 (PyAV), idle lead-in, the action, idle tail
  skeletons/{clip}.npz           exo 2-D COCO-17 keypoints [T, 17, 3] (x px, y px, confidence),
                                 img_shape (h, w), fps: one row per video frame
  annotations.csv                one row per clip: sample_id, split, participant, class_name,
                                 ego_video, exo_video, start, end (s, the action), skeleton
  classes.txt                    class names, index = label
  sessions/{id}.mp4, sessions.csv, sessions/{id}.labels.npy
                                 long ego sessions chaining several actions, frame labels
                                 (index into classes.txt; len(classes) = idle)
  demo.json                      generator settings, seed and code version (provenance)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from uniego.config import DemoPreset
from uniego.demo.body import CLASSES, IDLE, REST, Body, blend, facing, joints, pose_params
from uniego.demo.render import Scene, background, ego_camera, exo_camera, render
from uniego.video import DIGESTS, decoded_digest

SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


def rgb_to_yuv420(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> the yuv420p planes stacked as [H * 3 / 2, W] (BT.601 limited range,
    chroma averaged over 2x2 pixels). Done here rather than by PyAV: its swscale conversion is
    not repeatable (the same frames now and then gave other videos; docs/reproducing.md)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {w}x{h}")
    x = frame.astype(np.float32)
    y = 16 + (65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]) / 255
    c = x.reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
    u = 128 + (-37.797 * c[..., 0] - 74.203 * c[..., 1] + 112.0 * c[..., 2]) / 255
    v = 128 + (112.0 * c[..., 0] - 93.786 * c[..., 1] - 18.214 * c[..., 2]) / 255
    planes = [np.clip(np.round(p), 0, 255).astype(np.uint8).ravel() for p in (y, u, v)]
    return np.concatenate(planes).reshape(h * 3 // 2, w)


# No B-frames (frame-exact seeking), one thread, and no MB-tree rate control: with it, libx264
# now and then wrote another bitstream for the very same planes (docs/reproducing.md).
X264 = {"crf": "18", "bf": "0", "g": "16", "threads": "1", "x264-params": "mbtree=0"}


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """uint8 [T, H, W, 3] -> H.264 mp4 from YUV planes made in numpy (`X264`): bit-identical
    output for identical input."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps, options=X264)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb_to_yuv420(f), format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _timeline(segments, fps: int, rng: np.random.Generator):
    """segments: [(exercise, seconds)] -> per frame pose params, with 0.3 s blends between them."""
    body_amp = [(ex, sec, rng.uniform(0.75, 1.1), rng.uniform(0.45, 1.1), rng.uniform(0, 2 * np.pi)) for ex, sec in segments]
    bounds = np.cumsum([0] + [sec for _, sec in segments])
    n = int(round(bounds[-1] * fps))
    params, labels = [], []
    for i in range(n):
        t = (i + 0.5) / fps
        k = min(int(np.searchsorted(bounds, t, side="right")) - 1, len(segments) - 1)
        ex, _, amp, freq, phase = body_amp[k]
        local = t - bounds[k]
        theta = 2 * np.pi * freq * local + phase
        w = min(1.0, local / 0.3, (bounds[k + 1] - t) / 0.3) if ex != IDLE else 0.0
        params.append(blend(REST, pose_params(ex, theta, amp), max(0.0, w)))
        labels.append(ex)
    return params, labels, bounds


def _film(params, body: Body, scene: Scene, size: int, fps: int, rng, *, exo: bool):
    width = (size * 4 // 3) // 2 * 2
    pitch = np.radians(rng.uniform(35, 45))
    J_all = np.stack([joints(body, p) for p in params])
    ego = np.stack([render(ego_camera(J, facing(body), pitch, width, size), J, body.height, scene, ego=True) for J in J_all])
    if not exo:
        return ego, None, None, None
    cam = exo_camera(width, size, rng)
    bg = background(cam, scene)
    exo_frames = np.stack([render(cam, J, body.height, scene, ego=False, bg=bg) for J in J_all])
    uv, _ = cam.project(J_all)
    noise = rng.normal(0, 0.4, uv.shape)
    conf = np.clip(rng.normal(0.93, 0.04, uv.shape[:2]), 0.5, 1.0)
    skel = np.concatenate([uv + noise, conf[..., None]], -1).astype(np.float32)
    return ego, exo_frames, skel, (size, width)


def participant(preset: DemoPreset, seed: int, index: int, rng: np.random.Generator) -> tuple[int, Body, Scene]:
    """The actor and room of clip/session `index`: one of `preset.participants` recurring ones
    (as in real ego-exo datasets), or a fresh one per clip when participants = 0 (id -1)."""
    if preset.participants == 0:
        return -1, Body.sample(rng), Scene.sample(rng)
    pid = index % preset.participants
    prng = np.random.default_rng([seed, 4, pid])
    return pid, Body.sample(prng), Scene.sample(prng)


def make_clip(args) -> dict:
    """Render one clip: idle lead-in, the action, idle tail; write both videos and the skeleton."""
    root, index, class_name, preset, seed = args
    rng = np.random.default_rng([seed, 1, index])
    pid, body, scene = participant(preset, seed, index, rng)
    lead, tail = rng.uniform(0.2, 0.5), rng.uniform(0.2, 0.5)
    action = preset.seconds * rng.uniform(0.9, 1.1)
    params, _, bounds = _timeline([(IDLE, lead), (class_name, action), (IDLE, tail)], preset.fps, rng)
    ego, exo, skel, hw = _film(params, body, scene, preset.size, preset.fps, rng, exo=True)
    sid = f"demo_{index:05d}"
    write_video(root / "videos" / "ego" / f"{sid}.mp4", ego, preset.fps)
    write_video(root / "videos" / "exo" / f"{sid}.mp4", exo, preset.fps)
    digests = {f"videos/{v}/{sid}.mp4": decoded_digest(str(root / "videos" / v / f"{sid}.mp4"), sid, stage="demo-data")
               for v in ("ego", "exo")}
    (root / "skeletons").mkdir(parents=True, exist_ok=True)
    np.savez(root / "skeletons" / f"{sid}.npz", keypoints=skel, img_shape=np.array(hw), fps=np.array(preset.fps))
    return dict(sample_id=sid, participant=pid, class_name=class_name, ego_video=f"videos/ego/{sid}.mp4", exo_video=f"videos/exo/{sid}.mp4",
                start=round(float(bounds[1]), 4), end=round(float(bounds[2]), 4), skeleton=f"skeletons/{sid}.npz",
                digests=digests)


def make_session(args) -> dict:
    """A long ego video chaining several actions with idle gaps, and its frame labels."""
    root, index, preset, seed = args
    rng = np.random.default_rng([seed, 2, index])
    _, body, scene = participant(preset, seed, index, rng)
    segments = [(IDLE, rng.uniform(0.4, 0.8))]
    for c in rng.choice(len(CLASSES), preset.actions_per_session, replace=False):
        segments += [(CLASSES[c], preset.seconds * rng.uniform(0.9, 1.3)), (IDLE, rng.uniform(0.4, 0.8))]
    params, labels, _ = _timeline(segments, preset.fps, rng)
    ego, *_ = _film(params, body, scene, preset.size, preset.fps, rng, exo=False)
    sid = f"session_{index:03d}"
    write_video(root / "sessions" / f"{sid}.mp4", ego, preset.fps)
    digest = decoded_digest(str(root / "sessions" / f"{sid}.mp4"), sid, stage="demo-data")
    names = CLASSES + [IDLE]
    np.save(root / "sessions" / f"{sid}.labels.npy", np.array([names.index(x) for x in labels], np.int16))
    return dict(session_id=sid, video=f"sessions/{sid}.mp4", labels=f"sessions/{sid}.labels.npy",
                n_frames=len(labels), fps=preset.fps, split="train" if index % 3 else "test",
                digests={f"sessions/{sid}.mp4": digest})


def assign_splits(class_names: list[str], rng: np.random.Generator) -> list[str]:
    """Per class: 60 % train, 20 % val, 20 % test (at least one val and one test clip)."""
    splits = [""] * len(class_names)
    for c in sorted(set(class_names)):
        idx = [i for i, n in enumerate(class_names) if n == c]
        rng.shuffle(idx)
        n_val = n_test = max(1, round(len(idx) * SPLIT_FRACTIONS[1]))
        for j, i in enumerate(idx):
            splits[i] = "test" if j < n_test else "val" if j < n_test + n_val else "train"
    return splits


def write_digests(root: Path, digests: list[dict]) -> Path:
    """digests.csv: every video's decoded-frame digest at render time, and what rendered it.
    `uniego check-data` decodes the videos again and names any whose frames changed."""
    from uniego.provenance import environment

    rows = [{"video": video, "frames_sha256": digest} for d in digests for video, digest in d.items()]
    pd.DataFrame(rows).to_csv(root / DIGESTS, index=False)
    (root / "rendered_with.json").write_text(json.dumps(environment(), indent=2) + "\n")
    return root / DIGESTS


def _with_progress(results, total: int, what: str, *, prefix: str = "uniego demo-data") -> list:
    """Collect `results`, printing a plain line every ~10 % (the rule shows it on the terminal)."""
    out, step = [], max(1, total // 10)
    for r in results:
        out.append(r)
        if len(out) % step == 0 or len(out) == total:
            print(f"{prefix}: {len(out)}/{total} {what} rendered", file=sys.stderr, flush=True)
    return out


def generate(root: str | Path, preset: DemoPreset, *, seed: int, workers: int = 1, code_version: str = "") -> Path:
    """Write the demo dataset under `root` (staged in `root.partial`, then moved)."""
    root = Path(root)
    stage = root.with_name(root.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    class_names = [c for c in CLASSES for _ in range(preset.clips_per_class)]
    jobs = [(stage, i, c, preset, seed) for i, c in enumerate(class_names)]
    sjobs = [(stage, i, preset, seed) for i in range(preset.sessions)]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = _with_progress(pool.map(make_clip, jobs, chunksize=4), len(jobs), "clips")
        sessions = _with_progress(pool.map(make_session, sjobs), len(sjobs), "sessions")
    write_digests(stage, [r.pop("digests") for r in rows + sessions])
    table = pd.DataFrame(rows)
    table.insert(1, "split", assign_splits(class_names, np.random.default_rng([seed, 3])))
    table.to_csv(stage / "annotations.csv", index=False)
    pd.DataFrame(sessions, columns=["session_id", "video", "labels", "n_frames", "fps", "split"]).to_csv(
        stage / "sessions.csv", index=False)
    (stage / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (stage / "demo.json").write_text(json.dumps({
        "generator": "uniego demo-data", "seed": seed, "preset": preset.__dict__, "classes": CLASSES,
        "idle_label": len(CLASSES), "code_version": code_version,
        "note": "synthetic stick-figure actor; exo_dino etc. teachers in the demo config are random-init stand-ins"},
        indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(stage, root)
    return root
