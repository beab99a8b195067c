"""Ego-Exo4D keysteps: one clip per keystep segment, the take's Aria RGB stream paired with its `best_exo`.

Reads the keystep annotation files (`{annotations: {take_uid: {take_uid, take_name, segments:
[{start_time, end_time, step_unique_id, step_name}]}}, taxonomy, vocabulary}`), `takes.json`
(take_uid, take_name, root_dir, best_exo, frame_aligned_videos {cam: {stream: {relative_path}}})
and the official `annotations/splits.json` (`take_uid_to_split`). The split is the take's
official split mapped by `options.split_map` (val -> test: the test labels are withheld).
Classes: the step ids with at least `min_train_count` training segments, in id order (UNIEGO's
665-class set is not published); test segments of other steps are left out and listed in the
data check. A take without `best_exo` (about 10 %) has no exo partner: `options.unpaired`.
Times are seconds from the start of the frame-aligned videos. Exo keypoints: a folder of
per-clip files (`options.skeletons`), which `options.body_pose` has written from the dataset's
own body-pose annotations (uniego.datasets.ee4d_body_pose).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from uniego.datasets.common import Built, read_json, require_keys, rows_frame, skeleton_file
from uniego.errors import UniegoError

DEFAULTS = {
    "keysteps": ["annotations/keystep_train.json", "annotations/keystep_val.json"],
    "takes": "takes.json",
    "splits": "annotations/splits.json",
    "split_map": {"train": "train", "val": "test"},
    "ego_stream": "214-1",       # the Aria RGB stream of frame_aligned_videos
    "exo_stream": "0",
    "min_train_count": 1,
    "unpaired": "drop",
    "skeletons": None,           # a folder of <sample_id>.npz exo keypoints (docs/datasets.md, "Skeletons")
    "body_pose": None,           # e.g. annotations/ego_pose: write `skeletons` from Ego-Exo4D's body pose (rule body_pose)
    "body_pose_kinds": ["annotation"],  # subfolders of <body_pose>/<split>/body/ to read, first found wins
}
LAYOUT = """  annotations/keystep_train.json, annotations/keystep_val.json   (options.keysteps)
  annotations/splits.json    (options.splits: take_uid_to_split)
  takes.json                 (options.takes: root_dir, best_exo, frame_aligned_videos)
  <root_dir>/<relative_path> of each take's ego (aria*, stream 214-1) and best_exo (stream 0) video"""


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / f for f in opts["keysteps"]] + [root / opts["takes"], root / opts["splits"]]


def skeleton_source(root: Path, opts: dict) -> str | None:
    if opts["body_pose"] and not opts["skeletons"]:
        raise UniegoError("options.body_pose is set but options.skeletons is not: name the folder the body-pose "
                          "keypoints are written to (relative to root, or absolute)", stage="manifest")
    return None if opts["skeletons"] is None else str(root / opts["skeletons"])


def _video(root: Path, take: dict, cam: str, stream: str, where: str) -> str:
    streams = take["frame_aligned_videos"].get(cam)
    if not isinstance(streams, dict) or stream not in streams:
        raise UniegoError(f"{where}: take {take['take_name']!r} has no frame_aligned_videos[{cam!r}][{stream!r}] "
                          f"(cameras: {', '.join(take['frame_aligned_videos'])})", stage="manifest")
    require_keys(streams[stream], ("relative_path",), f"{where}: {take['take_name']} {cam}/{stream}")
    return str(root / take["root_dir"] / streams[stream]["relative_path"])


def build(root: Path, opts: dict, ds: str) -> Built:
    takes_path, splits_path = root / opts["takes"], root / opts["splits"]
    takes = read_json(takes_path)
    if not isinstance(takes, list):
        raise UniegoError(f"{takes_path}: expected a list of takes", stage="manifest")
    for i, t in enumerate(takes):
        require_keys(t, ("take_uid", "take_name", "root_dir", "best_exo", "frame_aligned_videos"), f"{takes_path}[{i}]")
    takes = {t["take_uid"]: t for t in takes}
    splits = read_json(splits_path)
    require_keys(splits, ("take_uid_to_split",), str(splits_path))
    segments, vocabulary = [], {}
    for rel in opts["keysteps"]:
        path = root / rel
        obj = read_json(path)
        require_keys(obj, ("annotations",), str(path))
        vocabulary.update({str(k): v for k, v in obj.get("vocabulary", {}).items()})
        for uid, ann in obj["annotations"].items():
            require_keys(ann, ("take_uid", "segments"), f"{path}: annotations[{uid!r}]")
            for j, s in enumerate(ann["segments"]):
                where = f"{path}: annotations[{uid!r}].segments[{j}]"
                require_keys(s, ("start_time", "end_time", "step_unique_id"), where)
                segments.append((uid, j, s, where))
    for uid, _, _, where in segments:
        if uid not in takes:
            raise UniegoError(f"{where}: take {uid} is not in {takes_path}", stage="manifest")
        if uid not in splits["take_uid_to_split"]:
            raise UniegoError(f"{where}: take {uid} has no split in {splits_path}", stage="manifest")
    split_of = {uid: opts["split_map"].get(splits["take_uid_to_split"][uid]) for uid, *_ in segments}
    counts = Counter(str(s["step_unique_id"]) for uid, _, s, _ in segments if split_of[uid] == "train")
    ids = sorted((k for k, n in counts.items() if n >= opts["min_train_count"]), key=lambda k: (len(k), k))
    names = {k: vocabulary.get(k) or next(s.get("step_name") for _, _, s, _ in segments if str(s["step_unique_id"]) == k)
             for k in ids}
    classes = [f"{k} {names[k]}" if names[k] else k for k in ids]
    skeletons = skeleton_source(root, opts)
    rows, unpaired, dropped = [], [], {"step not among the training classes": [], "split not in options.split_map": []}
    for uid, j, s, where in segments:
        take = takes[uid]
        sample_id = f"{take['take_name']}_{j:03d}"
        step = str(s["step_unique_id"])
        if split_of[uid] is None:
            dropped["split not in options.split_map"].append(sample_id)
            continue
        if step not in ids:
            dropped["step not among the training classes"].append(f"{sample_id} (step {step})")
            continue
        if not take["best_exo"]:
            unpaired.append(f"{sample_id}: take {take['take_name']} has no best_exo in {takes_path.name}")
            continue
        ego_cams = sorted(c for c in take["frame_aligned_videos"] if c.startswith("aria"))
        if not ego_cams:
            raise UniegoError(f"{where}: take {take['take_name']} has no aria camera in frame_aligned_videos", stage="manifest")
        rows.append({"sample_id": sample_id, "split": split_of[uid], "label": ids.index(step), "class_name": classes[ids.index(step)],
                     "ego_video": _video(root, take, ego_cams[0], opts["ego_stream"], where),
                     "exo_video": _video(root, take, take["best_exo"], opts["exo_stream"], where),
                     "start": float(s["start_time"]), "end": float(s["end_time"]), "skeleton": skeleton_file(skeletons, sample_id)})
    return Built(rows_frame(rows), classes, unpaired=unpaired, dropped={k: v for k, v in dropped.items() if v},
                 sources=[str(root / f) for f in opts["keysteps"]] + [str(takes_path), str(splits_path)])
