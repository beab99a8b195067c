"""Assembly101 fine-grained recognition: the 24 verb classes, ego `e4` paired with exo `v3`.

Reads the fine-grained annotation CSVs (`id, video, start_frame, end_frame, action_id, verb_id,
noun_id, action_cls, verb_cls, noun_cls, toy_id, toy_name, is_shared, is_RGB`; `video` is
"<sequence>/<camera>.mp4"). A segment becomes one clip when both the ego camera (UNIEGO's
`ego04` = e4: HMC_84358933 or HMC_21179183, monochrome, decoded to 3 channels) and the exo
camera (`exo03` = v3 = C10118_rgb) have a row with the same sequence, frames and action; the
paper's counts suggest it keeps exactly those, so `unpaired: drop` is the default and the data
check lists the dropped ones. Annotation frames are at 30 fps whatever the video's own rate
(the raw videos are 60 fps): times become seconds as frame / annotation_fps, with end_frame
inclusive. The official test labels are withheld, so UNIEGO's test split is the validation CSV.

Segmentation sessions (`build_sessions`, options.coarse): the coarse annotations, one session
per (assembly|disassembly, sequence) on the ego camera's video: `coarse_labels/<part>_<sequence>.txt`
(tab-separated start_frame, end_frame, action_cls at 30 fps, contiguous segments [start, end)),
the 202 classes of `actions.csv` in action_id order, the sequences of
`coarse_splits/{train,val}_coarse_{assembly,disassembly}.txt` (val -> test). A session is the
annotated span of the video; video frame v takes the label of annotation frame
floor(v x 30 / video fps).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from uniego.datasets.common import Built, require_columns, rows_frame, skeleton_file
from uniego.errors import UniegoError

VERBS = ["pick up", "put down", "inspect", "rotate", "unscrew", "position", "screw", "remove", "position screw on",
         "remove screw from", "pass", "tilt up", "attempt to position", "push", "tilt down", "pull", "attempt to remove",
         "attempt to pick up", "clap", "attempt to unscrew", "attempt to put down", "spin", "attempt to screw", "shake"]

DEFAULTS = {
    "splits": {"train": "fine-grained-annotations/train.csv", "test": "fine-grained-annotations/validation.csv"},
    "videos": "videos",                               # <videos>/<sequence>/<camera>.mp4
    "ego_cameras": ["HMC_84358933", "HMC_21179183"],  # e4 (either camera set); matched as prefixes
    "exo_cameras": ["C10118_rgb"],                    # v3
    "annotation_fps": 30.0,
    "unpaired": "drop",
    "skeletons": None,                                # a folder of <sample_id>.npz body keypoints (Assembly101 ships hand poses only)
    "coarse": {                                       # segmentation sessions from the coarse annotations; null: none
        "labels": "coarse-annotations/coarse_labels",
        "actions": "coarse-annotations/actions.csv",
        "splits": {"train": ["coarse-annotations/coarse_splits/train_coarse_assembly.txt",
                             "coarse-annotations/coarse_splits/train_coarse_disassembly.txt"],
                   "test": ["coarse-annotations/coarse_splits/val_coarse_assembly.txt",
                            "coarse-annotations/coarse_splits/val_coarse_disassembly.txt"]},
    },
}
LAYOUT = """  fine-grained-annotations/train.csv        (options.splits: split -> CSV, relative to root)
  fine-grained-annotations/validation.csv   (used as the test split: the official test labels are withheld)
  videos/<sequence>/<camera>.mp4            (options.videos; e.g. videos/nusar-.../C10118_rgb.mp4)
  coarse-annotations/{actions.csv, coarse_labels/, coarse_splits/}   (options.coarse, for segmentation)"""
FIELDS = ("id", "video", "start_frame", "end_frame", "action_id", "verb_id", "verb_cls")


def annotation_files(root: Path, opts: dict) -> list[Path]:
    return [root / f for f in opts["splits"].values()]


def skeleton_source(root: Path, opts: dict) -> str | None:
    return None if opts["skeletons"] is None else str(root / opts["skeletons"])


def _camera(view: str, prefixes: list[str]) -> int | None:
    for i, p in enumerate(prefixes):
        if view.startswith(p):
            return i
    return None


def build(root: Path, opts: dict, ds: str) -> Built:
    rows, unpaired, sources = [], [], []
    fps = float(opts["annotation_fps"])
    skeletons = skeleton_source(root, opts)
    for split, rel in opts["splits"].items():
        path = root / rel
        sources.append(str(path))
        t = pd.read_csv(path, dtype={"video": str, "verb_cls": str})
        require_columns(t, FIELDS, path)
        parts = t.video.str.rsplit("/", n=1, expand=True)
        if parts.shape[1] != 2 or parts[1].isna().any():
            bad = t.video[parts[1].isna()].iloc[0] if parts.shape[1] == 2 else t.video.iloc[0]
            raise UniegoError(f"{path}: video {bad!r} is not '<sequence>/<camera>.mp4'", stage="manifest")
        t["sequence"], t["camera"] = parts[0], parts[1].str.replace(r"\.mp4$", "", regex=True)
        for i, r in enumerate(t.itertuples(index=False)):
            if not (0 <= int(r.verb_id) < len(VERBS)):
                raise UniegoError(f"{path} row {i + 2} (id {r.id}): verb_id {r.verb_id} is not one of the 24 verbs (0-23)",
                                  stage="manifest")
            if str(r.verb_cls).replace("_", " ").strip().lower() != VERBS[int(r.verb_id)]:
                raise UniegoError(f"{path} row {i + 2} (id {r.id}): verb_cls {r.verb_cls!r} does not match verb_id "
                                  f"{r.verb_id} ({VERBS[int(r.verb_id)]!r})", stage="manifest")
        key = ["sequence", "start_frame", "end_frame", "action_id"]
        t["ego_rank"] = [_camera(c, opts["ego_cameras"]) for c in t.camera]
        t["exo_rank"] = [_camera(c, opts["exo_cameras"]) for c in t.camera]
        ego = t[t.ego_rank.notna()]
        exo = t[t.exo_rank.notna()].sort_values("exo_rank").drop_duplicates(key)
        dup = ego[ego.duplicated(key, keep=False)]
        if len(dup):
            raise UniegoError(f"{path}: segment {dup[key].iloc[0].tolist()} has {len(dup)} ego rows (ids "
                              f"{', '.join(map(str, dup.id))}); one ego camera per recording is expected", stage="manifest")
        pairs = ego.merge(exo[key + ["camera"]], on=key, how="left", suffixes=("", "_exo"))
        for r in pairs.itertuples(index=False):
            sample_id = f"{split}_{r.id}"
            if pd.isna(r.camera_exo):
                unpaired.append(f"{sample_id} ({r.video}, frames {r.start_frame}-{r.end_frame}): no "
                                f"{'/'.join(opts['exo_cameras'])} row in {path.name}")
                continue
            rows.append({"sample_id": sample_id, "split": split, "label": int(r.verb_id), "class_name": VERBS[int(r.verb_id)],
                         "ego_video": str(root / opts["videos"] / r.sequence / f"{r.camera}.mp4"),
                         "exo_video": str(root / opts["videos"] / r.sequence / f"{r.camera_exo}.mp4"),
                         "start": r.start_frame / fps, "end": (r.end_frame + 1) / fps,
                         "skeleton": skeleton_file(skeletons, sample_id)})
    return Built(rows_frame(rows), list(VERBS), unpaired=unpaired, sources=sources)


def session_files(root: Path, opts: dict) -> list[Path]:
    """What the segmentation sessions read (the label files are found through the split lists)."""
    c = opts["coarse"]
    return [root / c["actions"]] + [root / f for files in c["splits"].values() for f in files]


def _coarse_segments(path: Path, classes: dict) -> list[tuple[int, int, int]]:
    segs = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise UniegoError(f"{path} line {i + 1}: expected start_frame<TAB>end_frame<TAB>action_cls, got {line!r}",
                              stage="sessions")
        name = parts[2].strip()
        if name not in classes:
            raise UniegoError(f"{path} line {i + 1}: action {name!r} is not in actions.csv", stage="sessions")
        segs.append((int(parts[0]), int(parts[1]), classes[name]))
    if not segs:
        raise UniegoError(f"{path}: no segments", stage="sessions")
    segs.sort()
    for (a0, a1, _), (b0, b1, _) in zip(segs, segs[1:]):
        if b0 != a1:
            raise UniegoError(f"{path}: segments are not contiguous ({a0}-{a1} then {b0}-{b1})", stage="sessions")
    return segs


def build_sessions(root: Path, opts: dict, ds: str, labels_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One session per coarse label file of the split lists; writes `<labels_dir>/<session>.npy`."""
    from uniego.video import open_video

    c = opts["coarse"]
    actions_path = root / c["actions"]
    actions = pd.read_csv(actions_path)
    require_columns(actions, ("action_id", "action_cls"), actions_path)
    actions = actions.sort_values("action_id")
    if actions.action_id.tolist() != list(range(len(actions))):
        raise UniegoError(f"{actions_path}: action_id must run 0..{len(actions) - 1}", stage="sessions")
    names = [str(n).strip() for n in actions.action_cls]
    index = {n: i for i, n in enumerate(names)}
    fps = float(opts["annotation_fps"])
    rows = []
    for split, files in c["splits"].items():
        for rel in files:
            listing = root / rel
            for i, line in enumerate(listing.read_text().splitlines()):
                if not line.strip():
                    continue
                name = line.split("\t")[0].split()[0].strip()
                label_file = root / c["labels"] / name
                part, _, sequence = Path(name).stem.partition("_")
                if part not in ("assembly", "disassembly") or not sequence:
                    raise UniegoError(f"{listing} line {i + 1}: {name!r} is not <assembly|disassembly>_<sequence>.txt",
                                      stage="sessions")
                if not label_file.is_file():
                    raise UniegoError(f"{listing} line {i + 1}: coarse label file {label_file} does not exist", stage="sessions")
                segs = _coarse_segments(label_file, index)
                folder = root / opts["videos"] / sequence
                videos = sorted(p for p in folder.glob("*.mp4") if _camera(p.stem, opts["ego_cameras"]) is not None)
                if not videos:
                    raise UniegoError(f"{label_file}: no ego video ({'/'.join(opts['ego_cameras'])}*.mp4) in {folder}",
                                      stage="sessions")
                session_id = Path(name).stem
                _, n, vfps = open_video(str(videos[0]), session_id, stage="sessions")
                first, stop = segs[0][0], segs[-1][1]
                v0, v1 = math.ceil(first * vfps / fps - 1e-9), math.ceil(stop * vfps / fps - 1e-9)
                if v1 > n:
                    raise UniegoError(f"{label_file}: the coarse segments end at frame {stop} @{fps:g} fps = "
                                      f"{stop / fps:.2f} s, after the video {videos[0]} ({n} frames at {vfps:g} fps)",
                                      stage="sessions")
                ann = np.floor(np.arange(v0, v1) * fps / vfps + 1e-9).astype(np.int64)
                starts = np.array([a for a, _, _ in segs])
                labels = np.array([y for _, _, y in segs])[np.searchsorted(starts, ann, side="right") - 1]
                out = labels_dir / f"{session_id}.npy"
                np.save(out, labels.astype(np.int64))
                rows.append({"session_id": session_id, "split": split, "video": str(videos[0]), "labels": str(out),
                             "fps": vfps, "n_frames": int(v1 - v0), "start_frame": int(v0), "dataset": ds})
    if not rows:
        raise UniegoError(f"options.coarse.splits of dataset {ds} list no sequences", stage="sessions")
    return pd.DataFrame(rows), names
