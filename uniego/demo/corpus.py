"""The pretraining corpus: what the demo's stand-in teachers and the shared student start learn
from (the analogue of the web images, depth data and captions the real teachers saw).

The demo renderer draws it, but it is disjoint from the demo dataset: other participants and
rooms (their own random streams), other motions (random per-limb oscillations, never one of
the demo's exercises), and no class labels at all. Each clip carries the dense supervision the
renderer knows for free:

- ego and exo videos (H.264, as the demo's);
- `joints3d` [T, 17, 3] (world, metres) and `joints2d_ego` / `joints2d_exo` [T, 17, 3]
  (pixel x, y and depth along the camera axis, COCO-17 order);
- `depth_ego` / `depth_exo` [T', H', W'] float16 (metres) and `parts_ego` / `parts_exo`
  [T', H', W'] uint8 body-part masks (render.PARTS), every `dense_every`-th frame at
  1/`dense_scale` of the video's size;
- the camera: `ego_position` / `ego_forward` [T, 3] (the head camera moves), `exo_position`,
  `exo_forward` [3] and both focal lengths;
- a caption of attributes: which limbs move, how fast, where the actor stands and faces
  (`captions.csv`, with the attributes as JSON).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from uniego.demo.body import REST, Body, facing, joints
from uniego.demo.generate import _with_progress, write_digests, write_video
from uniego.demo.render import PARTS, Scene, background, ego_camera, exo_camera, render_dense
from uniego.video import decoded_digest

# The pose parameters (demo.body) each limb moves, and the range each may take.
LIMBS = {"left arm": ("le", "laz", "lel"), "right arm": ("re", "raz", "rel"),
         "left leg": ("la", "lb", "lc"), "right leg": ("ra", "rb", "rc"), "torso": ("lean", "hop")}
RANGES = {"le": (0.0, 2.9), "laz": (-0.5, 1.8), "lel": (0.0, 1.8), "re": (0.0, 2.9), "raz": (-0.5, 1.8),
          "rel": (0.0, 1.8), "la": (-0.4, 1.5), "lb": (0.0, 0.4), "lc": (0.0, 1.9), "ra": (-0.4, 1.5),
          "rb": (0.0, 0.4), "rc": (0.0, 1.9), "lean": (0.0, 0.6), "hop": (0.0, 0.04)}
SPEEDS = {"slowly": (0.25, 0.55), "steadily": (0.7, 1.1), "quickly": (1.4, 2.0)}   # Hz
STREAM = 10   # the corpus's random streams: np.random.default_rng([seed, STREAM, ...]); the demo uses 1-4


@dataclasses.dataclass(frozen=True)
class CorpusPreset:
    clips: int
    size: int             # video height in pixels (width 4/3 of it, as the demo's)
    fps: int
    seconds: float
    dense_every: int = 2  # depth and part masks on every n-th frame
    dense_scale: int = 2  # ... at 1/n of the video's size


@dataclasses.dataclass(frozen=True)
class Motion:
    """A random motion program: the moving limbs' parameters oscillate, the rest hold a pose."""
    limbs: tuple[str, ...]
    speed: str
    hold: dict            # parameter -> value for the parameters that do not move
    waves: dict           # parameter -> (centre, amplitude, frequency Hz, phase)

    @staticmethod
    def sample(rng: np.random.Generator) -> "Motion":
        names = list(LIMBS)
        limbs = tuple(sorted(rng.choice(names, size=int(rng.integers(1, 4)), replace=False), key=names.index))
        speed = str(rng.choice(list(SPEEDS)))
        waves, hold = {}, {}
        for limb, params in LIMBS.items():
            for p in params:
                lo, hi = RANGES[p]
                if limb in limbs:
                    amp = rng.uniform(0.15, 0.5) * (hi - lo)
                    centre = rng.uniform(lo + amp, hi - amp) if hi - lo > 2 * amp else (lo + hi) / 2
                    waves[p] = (centre, amp, rng.uniform(*SPEEDS[speed]), rng.uniform(0, 2 * np.pi))
                else:
                    hold[p] = float(np.clip(REST[p] + rng.normal(0, 0.1) * (hi - lo), lo, hi))
        return Motion(limbs, speed, hold, waves)

    def params(self, t: float) -> dict:
        """Pose parameters at time t (seconds)."""
        p = dict(self.hold)
        for name, (centre, amp, freq, phase) in self.waves.items():
            p[name] = centre + amp * np.sin(2 * np.pi * freq * t + phase)
        return p


def caption(motion: Motion, body: Body) -> tuple[str, dict]:
    """Attribute caption: what moves, how fast, where the actor stands and which way it faces."""
    # as the exo camera sees it: the world's +x is the image's right; yaw > 0 turns the actor to its left
    where = "on the right" if body.x > 0.08 else "on the left" if body.x < -0.08 else "in the middle"
    distance = "near the camera" if body.z > 0.1 else "far from the camera" if body.z < -0.1 else "mid-room"
    turned = "turned to its left" if body.yaw > 0.1 else "turned to its right" if body.yaw < -0.1 else "facing the camera"
    attrs = {"limbs": list(motion.limbs), "speed": motion.speed, "where": where, "distance": distance, "facing": turned}
    moving = " and ".join([", ".join(motion.limbs[:-1]), motion.limbs[-1]] if len(motion.limbs) > 1 else motion.limbs)
    return f"a person moves the {moving} {motion.speed}, standing {where}, {distance}, {turned}", attrs


def make_corpus_clip(args) -> dict:
    """Render one corpus clip: both videos and its dense supervision (.npz)."""
    root, index, preset, seed = args
    rng = np.random.default_rng([seed, STREAM, index])
    body, scene, motion = Body.sample(rng), Scene.sample(rng), Motion.sample(rng)
    n = int(round(preset.seconds * preset.fps))
    J = np.stack([joints(body, motion.params((i + 0.5) / preset.fps)) for i in range(n)])
    width = (preset.size * 4 // 3) // 2 * 2
    exo = exo_camera(width, preset.size, rng)
    pitch = np.radians(rng.uniform(35, 45))
    ego_cams = [ego_camera(j, facing(body), pitch, width, preset.size) for j in J]
    bg = background(exo, scene, depth=True)
    ego = [render_dense(c, j, body.height, scene, ego=True) for c, j in zip(ego_cams, J)]
    exo_frames = [render_dense(exo, j, body.height, scene, ego=False, bg=bg) for j in J]
    cid = f"corpus_{index:05d}"
    dense = {}
    for view, frames, cams in (("ego", ego, ego_cams), ("exo", exo_frames, [exo] * n)):
        write_video(root / "videos" / view / f"{cid}.mp4", np.stack([f[0] for f in frames]), preset.fps)
        keep, s = frames[::preset.dense_every], preset.dense_scale
        dense[f"depth_{view}"] = np.stack([f[1][::s, ::s] for f in keep]).astype(np.float16)
        dense[f"parts_{view}"] = np.stack([f[2][::s, ::s] for f in keep])
        uv_z = [c.project(j) for c, j in zip(cams, J)]
        dense[f"joints2d_{view}"] = np.stack([np.concatenate([uv, z[:, None]], -1) for uv, z in uv_z]).astype(np.float32)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "clips" / f"{cid}.npz", joints3d=J.astype(np.float32), **dense,
                        ego_position=np.stack([c.position for c in ego_cams]).astype(np.float32),
                        ego_forward=np.stack([c.forward for c in ego_cams]).astype(np.float32),
                        exo_position=exo.position.astype(np.float32), exo_forward=exo.forward.astype(np.float32),
                        focal=np.array([ego_cams[0].focal, exo.focal], np.float32),
                        dense_frames=np.arange(0, n, preset.dense_every), fps=np.array(preset.fps))
    text, attrs = caption(motion, body)
    digests = {f"videos/{v}/{cid}.mp4": decoded_digest(str(root / "videos" / v / f"{cid}.mp4"), cid, stage="corpus")
               for v in ("ego", "exo")}
    return dict(clip_id=cid, ego_video=f"videos/ego/{cid}.mp4", exo_video=f"videos/exo/{cid}.mp4",
                dense=f"clips/{cid}.npz", caption=text, attributes=json.dumps(attrs), digests=digests,
                split="val" if index % 10 == 9 else "train")


def generate_corpus(root: str | Path, preset: CorpusPreset, *, seed: int, workers: int = 1,
                    code_version: str = "") -> Path:
    """Write the corpus under `root` (staged in `root.partial`, then moved)."""
    root = Path(root)
    stage = root.with_name(root.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    jobs = [(stage, i, preset, seed) for i in range(preset.clips)]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = _with_progress(pool.map(make_corpus_clip, jobs, chunksize=4), len(jobs), "clips",
                              prefix="uniego demo-corpus")
    write_digests(stage, [r.pop("digests") for r in rows])
    pd.DataFrame(rows).to_csv(stage / "captions.csv", index=False)
    (stage / "corpus.json").write_text(json.dumps({
        "generator": "uniego demo-corpus", "seed": seed, "preset": dataclasses.asdict(preset),
        "code_version": code_version, "parts": PARTS,
        "note": "pretraining corpus for the demo's stand-in teachers and student start; disjoint from the demo "
                "dataset (own participants, rooms and motions; no class labels)"}, indent=2))
    if root.exists():
        shutil.rmtree(root)
    os.replace(stage, root)
    return root
