"""Ego-Exo4D body pose -> the per-clip keypoint files of the exo skeleton teachers.

Ego-Exo4D ships body pose per take: `<body_pose>/<split>/body/<kind>/<take_uid>.json`, which
maps a frame number of the take's frame-aligned videos (30 fps) to
`[{"annotation2D": {<cam>: {<joint>: {"x", "y", "placement"}}}, "annotation3D": {...}}]`,
17 COCO body joints. For each clip this writes `<sample_id>.npz` (keypoints [T, 17, 3] =
x, y, score over the clip's frames, img_shape, fps, t0 = the time of the first row) from the
2-D keypoints of the take's `best_exo` camera, the camera whose video is the clip's exo view.

Every frame of a clip must have that camera's pose: a clip with a frame without one is refused
(listed, nothing written), never interpolated. Ego-Exo4D's manual body pose is annotated at
sparse timestamps, so clips usually need dense keypoints: the automatic annotations
(`options.body_pose_kinds`) where they cover the clips, or a 2-D pose detector's output in
`options.skeletons` instead. A joint absent from an annotated frame (not visible in that
camera) gets score 0 (the COCO convention for an unlabelled joint); annotated joints score 1.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from uniego.errors import UniegoError

# COCO-17 order, Ego-Exo4D's joint names
JOINTS = ("nose", "left-eye", "right-eye", "left-ear", "right-ear", "left-shoulder", "right-shoulder", "left-elbow",
          "right-elbow", "left-wrist", "right-wrist", "left-hip", "right-hip", "left-knee", "right-knee", "left-ankle",
          "right-ankle")


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def pose_file(folder: Path, kinds: list[str], take_uid: str) -> Path | None:
    """The take's body-pose file: the first of `kinds` (e.g. annotation, then automatic) in any split folder."""
    for kind in kinds:
        hits = sorted(folder.glob(f"*/body/{kind}/{take_uid}.json"))
        if hits:
            return hits[0]
    return None


def clip_keypoints(frames: dict, cam: str, start: float, end: float, fps: float) -> tuple[np.ndarray | None, int, list[int]]:
    """(keypoints [T, 17, 3] or None, first frame, frames without `cam`'s pose) for [start, end)."""
    first, stop = int(math.floor(start * fps)), int(math.ceil(end * fps))
    rows, missing = [], []
    index = {_norm(j): i for i, j in enumerate(JOINTS)}
    for f in range(first, stop):
        entry = frames.get(str(f))
        ann = entry[0] if isinstance(entry, list) and entry else entry if isinstance(entry, dict) else None
        cam2d = (ann or {}).get("annotation2D", {}).get(cam) if isinstance(ann, dict) else None
        if not cam2d:
            missing.append(f)
            continue
        kp = np.zeros((len(JOINTS), 3), np.float32)
        for name, p in cam2d.items():
            j = index.get(_norm(name))
            if j is not None and p is not None and p.get("x") is not None and p.get("y") is not None:
                kp[j] = (float(p["x"]), float(p["y"]), 1.0)
        rows.append(kp)
    return (np.stack(rows) if rows and not missing else None), first, missing


def write_body_pose(spec: dict, ds: str, out: str | Path) -> Path:
    """Write `<out>/<sample_id>.npz` for every clip of the ee4d dataset `spec`; all or nothing."""
    from uniego.datasets import adapter_options, egoexo4d
    from uniego.video import open_video

    if spec["adapter"] != "ee4d":
        raise UniegoError(f"datasets.{ds}: body pose files are read for the ee4d adapter only", stage="body_pose")
    root, opts = Path(spec["root"]), adapter_options(spec, ds)
    if not opts.get("body_pose"):
        raise UniegoError(f"datasets.{ds}.options.body_pose is not set (e.g. annotations/ego_pose)", stage="body_pose")
    folder, kinds, fps = root / opts["body_pose"], list(opts["body_pose_kinds"]), 30.0
    if not folder.is_dir():
        raise UniegoError(f"datasets.{ds}.options.body_pose: {folder} does not exist (expected "
                          "<split>/body/<kind>/<take_uid>.json files)", stage="body_pose")
    built = egoexo4d.build(root, opts, ds)
    takes = {t["take_name"]: t for t in json.loads((root / opts["takes"]).read_text())}
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    refused, cache, shapes = [], {}, {}
    for row in built.table.itertuples():
        take = takes[row.sample_id.rsplit("_", 1)[0]]
        cam = take["best_exo"]
        path = pose_file(folder, kinds, take["take_uid"])
        if path is None:
            refused.append(f"{row.sample_id}: take {take['take_name']} ({take['take_uid']}) has no body pose file "
                           f"({folder}/*/body/{{{','.join(kinds)}}}/{take['take_uid']}.json)")
            continue
        if path not in cache:
            try:
                cache = {path: json.loads(path.read_text())}
            except (OSError, ValueError) as e:
                raise UniegoError(f"cannot read body pose file {path}: {e}", stage="body_pose") from None
        kp, first, missing = clip_keypoints(cache[path], cam, row.start, row.end, fps)
        if kp is None:
            n = int(math.ceil(row.end * fps)) - int(math.floor(row.start * fps))
            refused.append(f"{row.sample_id}: {len(missing)} of {n} frames have no {cam} body pose in {path} "
                           f"(first missing: frame {missing[0] if missing else '-'})")
            continue
        if row.exo_video not in shapes:
            vr, _, _ = open_video(row.exo_video, row.sample_id, stage="body_pose")
            shapes[row.exo_video] = vr[0].shape[:2]
        np.savez(tmp / f"{row.sample_id}.npz", keypoints=kp, img_shape=np.asarray(shapes[row.exo_video], np.int32),
                 fps=np.float32(fps), t0=np.float64(first / fps))
    if refused:
        shutil.rmtree(tmp, ignore_errors=True)
        shown = refused[:20] + ([f"... and {len(refused) - 20} more"] if len(refused) > 20 else [])
        raise UniegoError(f"{len(refused)} of {len(built.table)} clip(s) lack exo body pose on every frame (nothing "
                          "written; keypoints are never interpolated):\n  " + "\n  ".join(shown) + "\nAdd the automatic "
                          f"annotations to datasets.{ds}.options.body_pose_kinds, or give dense keypoints from a 2-D pose "
                          "detector in options.skeletons (and unset body_pose), or leave exo_skl and exo_skego out of "
                          "level1.teachers", stage="body_pose")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
