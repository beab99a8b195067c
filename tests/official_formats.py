"""Tiny datasets in each official annotation format (the real field names, a few rows, small
generated videos), for the adapter, data-check, import and DAG tests. Not a test module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uniego.datasets.egoexo_fitness import PAPER_CLASSES as EEF_CLASSES
from uniego.demo.generate import write_video


def clip(path: Path, seconds: float, fps: int, *, seed: int, gray: bool = False, size: int = 32) -> Path:
    """A small H.264 video of moving noise blocks (gray: a monochrome camera, equal channels)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    frames = np.stack([np.kron(np.roll(base, i, axis=1), np.ones((size // 4, size // 4, 1), np.uint8)) for i in range(n)])
    if gray:
        frames = np.repeat(frames.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    write_video(path, frames, fps)
    return path


def skeletons(folder: Path, sample_ids, *, seconds: float = 4.0, fps: int = 10, joints: int = 17) -> Path:
    """Per-clip keypoint files `<sample_id>.npz` (keypoints [T, V, 3], img_shape, fps)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for sid in sample_ids:
        kp = rng.uniform(0, 32, (int(seconds * fps), joints, 3)).astype(np.float32)
        np.savez(folder / f"{sid}.npz", keypoints=kp, img_shape=np.array([32, 32]), fps=np.array(fps))
    return folder


def make_eef(root: Path) -> Path:
    """EgoExo-Fitness: 4 sequences x (ego_m, exo_m, ego_l) with 2 actions each; 3 train, 1 test."""
    db = {}
    for g in range(4):
        group = f"ACT{g:02d}_{g + 1}-1-1"
        labels = [EEF_CLASSES[(2 * g) % 12], EEF_CLASSES[(2 * g + 1) % 12]]
        for view in ("ego_m", "exo_m", "ego_l"):
            key = f"{group}_{view}"
            db[key] = {"annotations": [{"label": lab, "segment": [0.5 + 1.5 * i, 1.7 + 1.5 * i],
                                        "segment_time": [15 + 45 * i, 51 + 45 * i], "fps": 30} for i, lab in enumerate(labels)],
                       "duration": 4.0, "fps": 30, "num_frames": 120, "subset": "test" if g == 3 else "train",
                       "view": view, "actor": f"ACT{g:02d}", "path": f"frames/{key}", "seq_st": 0, "seq_ed": 120}
            clip(root / "videos" / f"{key}.mp4", 4.0, 10, seed=g * 3 + len(view))
    ann = root / "annotations" / "subaction_level_annotations_ant13_style_v1.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps({"version": "v1", "classes": EEF_CLASSES, "database": db}, indent=1))
    skeletons(root / "skeletons", [f"ACT{g:02d}_{g + 1}-1-1_{i:03d}" for g in range(4) for i in range(2)])
    return root


A101_FIELDS = ["id", "video", "start_frame", "end_frame", "action_id", "verb_id", "noun_id", "action_cls", "verb_cls",
               "noun_cls", "toy_id", "toy_name", "is_shared", "is_RGB"]
A101_SEQS = ["nusar-2021_action_both_9011-a01_9011_user_id_2021-02-01_153724",
             "nusar-2021_action_both_9033-a30_9033_user_id_2021-02-04_131528"]


def make_a101(root: Path) -> Path:
    """Assembly101: 2 sequences, segments annotated on ego e4 (HMC_21179183_mono10bit, gray), exo v3
    (C10118_rgb) and v1; one ego segment has no v3 row (unpaired). Videos 60 fps, frames @30 fps."""
    from uniego.datasets.assembly101 import VERBS
    rows = {"train": [], "validation": []}
    rid = 0
    for s, seq in enumerate(A101_SEQS):
        split = "train" if s == 0 else "validation"
        for k, (f0, f1, verb) in enumerate([(10, 40, 0), (45, 80, 4), (85, 110, 6)]):
            for cam, rgb in (("HMC_21179183_mono10bit", 0), ("C10118_rgb", 1), ("C10095_rgb", 1)):
                if s == 1 and k == 2 and cam == "C10118_rgb":
                    continue  # the unpaired ego segment
                rows[split].append([rid, f"{seq}/{cam}.mp4", f0, f1, 100 + verb, verb, 7, f"{VERBS[verb]} screw",
                                    VERBS[verb], "screw", "a01", "excavator", 1, rgb])
                rid += 1
        for cam in ("HMC_21179183_mono10bit", "C10118_rgb", "C10095_rgb"):
            clip(root / "videos" / seq / f"{cam}.mp4", 4.0, 60, seed=s * 5 + len(cam), gray=cam.startswith("HMC"))
    import pandas as pd
    for split, r in rows.items():
        path = root / "fine-grained-annotations" / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(r, columns=A101_FIELDS).to_csv(path, index=False)
    return root


def make_ee4d(root: Path) -> Path:
    """Ego-Exo4D: 3 takes (one without best_exo), keystep train/val files, splits.json, takes.json."""
    takes, ann = [], {"train": {}, "val": {}}
    steps = {"101": "Get bowl", "102": "Crack egg", "103": "Whisk", "104": "Serve"}
    for t in range(3):
        uid, name = f"uid-{t:04d}", f"upenn_0711_Cooking_{t + 1}"
        split = "val" if t == 2 else "train"
        cams = {"aria01": {"214-1": {"relative_path": "frame_aligned_videos/aria01_214-1.mp4", "clip_uid": "a"}},
                "cam01": {"0": {"relative_path": "frame_aligned_videos/cam01.mp4"}},
                "cam02": {"0": {"relative_path": "frame_aligned_videos/cam02.mp4"}}}
        takes.append({"take_uid": uid, "take_name": name, "root_dir": f"takes/{name}", "best_exo": None if t == 1 else "cam02",
                      "task_name": "Cooking", "duration_sec": 4.0, "frame_aligned_videos": cams})
        for cam in ("aria01_214-1", "cam01", "cam02"):
            clip(root / "takes" / name / "frame_aligned_videos" / f"{cam}.mp4", 4.0, 10, seed=t * 7 + len(cam))
        segs = [{"start_time": 0.2 + 1.2 * i, "end_time": 1.1 + 1.2 * i, "step_id": int(sid) % 10, "step_unique_id": int(sid),
                 "step_name": steps[sid], "step_description": "", "is_essential": True}
                for i, sid in enumerate(["101", "102", "103"] if split == "train" else ["102", "104"])]
        ann[split][uid] = {"take_uid": uid, "take_name": name, "scenario": "Cooking",
                           "annotation_meta": {"annotation_uid": f"an-{t}", "annotator_id": 1}, "segments": segs}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (root / "annotations" / f"keystep_{split}.json").write_text(json.dumps(
            {"annotations": ann[split], "taxonomy": {}, "vocabulary": steps}))
    (root / "annotations" / "splits.json").write_text(json.dumps(
        {"take_uid_to_split": {t["take_uid"]: ("val" if i == 2 else "train") for i, t in enumerate(takes)},
         "split_to_take_uids": {}}))
    (root / "takes.json").write_text(json.dumps(takes))
    return root


def make_uniego_csv(root: Path) -> Path:
    """The official UNIEGO layout: vclip/{train,val,test}.csv (no header), clips <name>_ego.mp4 / _exo.mp4."""
    (root / "vclip").mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "val": [], "test": []}
    for i in range(9):
        split = "train" if i < 5 else "val" if i < 7 else "test"
        for view in ("ego", "exo"):
            clip(root / "videos_subaction" / f"P{i:02d}_squat_{view}.mp4", 1.0 + 0.1 * i, 10, seed=i * 2 + len(view))
        lines[split].append(f"P{i:02d}_squat_ego.mp4,{i % 3}")
    for split, ls in lines.items():
        (root / "vclip" / f"{split}.csv").write_text("\n".join(ls) + "\n")
    return root


EE4D_JOINTS = ("nose", "left-eye", "right-eye", "left-ear", "right-ear", "left-shoulder", "right-shoulder", "left-elbow",
               "right-elbow", "left-wrist", "right-wrist", "left-hip", "right-hip", "left-knee", "right-knee", "left-ankle",
               "right-ankle")


def ee4d_pose_point(take: int, frame: int, cam: str, j: int) -> tuple[float, float]:
    return 100.0 * take + 2.0 * j + (0.5 if cam == "cam02" else 0.0), float(frame)


def make_ee4d_body_pose(root: Path, *, every: int = 1) -> Path:
    """Ego-Exo4D body pose files (annotations/ego_pose/<split>/body/annotation/<take_uid>.json) for
    takes 0 and 2 of make_ee4d: frames 0..119 (30 fps) every `every` frames, cam01 and cam02
    2-D keypoints; the right ankle is not annotated on odd frames (not visible)."""
    for t, split in ((0, "train"), (2, "val")):
        frames = {}
        for f in range(0, 120, every):
            cams = {cam: {name: {"x": ee4d_pose_point(t, f, cam, j)[0], "y": ee4d_pose_point(t, f, cam, j)[1], "placement": "manual"}
                          for j, name in enumerate(EE4D_JOINTS) if not (name == "right-ankle" and f % 2)}
                    for cam in ("cam01", "cam02")}
            frames[str(f)] = [{"annotation2D": cams, "annotation3D": {}}]
        folder = root / "annotations" / "ego_pose" / split / "body" / "annotation"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"uid-{t:04d}.json").write_text(json.dumps(frames))
    return root


A101_COARSE_ACTIONS = ["attach wheel", "detach wheel", "screw chassis", "attempt to screw chassis"]
# per sequence: contiguous coarse segments [start, end) at 30 fps (the videos are 4 s at 60 fps)
A101_COARSE = [[(6, 40, "attach wheel"), (40, 75, "screw chassis"), (75, 100, "attach wheel")],
               [(3, 50, "attempt to screw chassis"), (50, 110, "detach wheel")]]


def make_a101_coarse(root: Path) -> Path:
    """Assembly101 coarse annotations for make_a101's two sequences: actions.csv, coarse_labels/
    assembly_<seq>.txt (tab-separated, zero-padded frames), coarse_splits (train: seq 0, val: seq 1)."""
    base = root / "coarse-annotations"
    (base / "coarse_labels").mkdir(parents=True, exist_ok=True)
    (base / "coarse_splits").mkdir(parents=True, exist_ok=True)
    lines = ["action_id,verb_id,noun_id,action_cls,verb_cls,noun_cls"]
    lines += [f"{i},{i % 2},{i},{name},{name.split()[0]},{name.split()[-1]}" for i, name in enumerate(A101_COARSE_ACTIONS)]
    (base / "actions.csv").write_text("\n".join(lines) + "\n")
    for s, (seq, segs) in enumerate(zip(A101_SEQS, A101_COARSE)):
        (base / "coarse_labels" / f"assembly_{seq}.txt").write_text(
            "".join(f"{a:09d}\t{b:09d}\t{name}\n" for a, b, name in segs))
        split = "train" if s == 0 else "val"
        (base / "coarse_splits" / f"{split}_coarse_assembly.txt").write_text(f"assembly_{seq}.txt\tshared\ta01\texcavator\n")
    for split in ("train", "val"):
        (base / "coarse_splits" / f"{split}_coarse_disassembly.txt").write_text("")
    return root
