"""`uniego extract`: one teacher's embeddings of every manifest clip -> `features/{teacher}.zarr`.

Work is cut into the store's chunks and each chunk into batches of at most `batch_size`
samples, so a resumed run computes exactly the batches an uninterrupted one would (identical
stores). DataLoader workers read the clip caches (an image teacher: its frames decoded from the
source videos at the times the cache sampled, `teachers.<key>.frames_from`) and preprocess; the main process runs the
model (bf16/fp16 autocast on GPU when asked), checks every feature is finite, writes the
chunk and marks it done.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uniego.cache import ArraySpec, StoreWriter, chunk_samples_for, open_store, read_rows, strings, zarr_module
from uniego.config import ComputeSettings, TeacherSettings
from uniego.device import autocast_for, resolve_device
from uniego.errors import UniegoError
from uniego.io import read_checkpoint
from uniego.manifest import manifest_sha256, read_manifest
from uniego.teachers import build_teacher
from uniego.teachers.skeleton import skeleton_clips
from uniego.video import read_frames_at


class _TeacherInputs(Dataset):
    """Batches of preprocessed teacher inputs: the clip caches' arrays, or for a teacher whose
    `frames_from` is `video` its views' frames decoded from the source videos at the times the clip
    cache sampled (uniego.teachers.base.frames_from)."""

    def __init__(self, clip_stores: dict[str, str], teacher, batches, videos: dict[str, list[str]], sample_ids):
        self.paths, self.teacher, self.batches, self.videos, self.ids = clip_stores, teacher, batches, videos, sample_ids
        self.groups = None

    def _open(self):
        zarr = zarr_module()
        if self.groups is None:
            self.groups = {v: zarr.open_group(p, mode="r", use_consolidated=False) for v, p in self.paths.items()}
        return self.groups

    def __len__(self):
        return len(self.batches)

    def _frames(self, view, group, start, stop):
        if view not in self.videos:
            return read_rows(group["frames"], slice(start, stop), store=self.paths[view], stage="extract")
        times = read_rows(group["frame_time"], slice(start, stop), store=self.paths[view], stage="extract")
        return [read_frames_at(self.videos[view][j], str(self.ids[j]), times[j - start], stage="extract")
                for j in range(start, stop)]

    def __getitem__(self, i):
        chunk, start, stop = self.batches[i]
        g = self._open()
        raw = {}
        for view, group in g.items():
            if view == "skeleton":
                raw["skeleton"] = read_rows(group["keypoints"], slice(start, stop), store=self.paths[view], stage="extract")
                raw["skeleton_img_hw"] = read_rows(group["img_hw"], slice(start, stop), store=self.paths[view], stage="extract")
                raw["skeleton_clips"] = np.full(stop - start, skeleton_clips(group, self.paths[view]))
            else:
                raw[view] = self._frames(view, group, start, stop)
        items = [self.teacher.preprocess({k: v[j] for k, v in raw.items()}) for j in range(stop - start)]
        # samples whose inputs differ in shape (videos of another size: Depth Anything keeps the
        # aspect ratio) go through the model in groups of one shape each, in order
        groups: dict[tuple, list[int]] = {}
        for j, it in enumerate(items):
            groups.setdefault(tuple((k, tuple(v.shape)) for k, v in sorted(it.items())), []).append(j)
        return chunk, start, stop, [(idx, {k: torch.stack([items[j][k] for j in idx]) for k in items[0]})
                                    for idx in groups.values()]


def task_teacher_meta(path: str | Path, key: str, manifest_sha: str) -> dict:
    """The provenance of a task-trained teacher checkpoint, after checking it fits."""
    path = Path(path)
    if not path.is_file():
        raise UniegoError(f"task teacher checkpoint {path} does not exist; run `uniego train-teacher` for {key}", stage="extract")
    obj = read_checkpoint(path, stage="extract")
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    if meta.get("kind") != "task_teacher" or meta.get("teacher") != key:
        raise UniegoError(f"{path} is not a task-teacher checkpoint of {key}", stage="extract")
    if meta.get("manifest_sha256") != manifest_sha:
        raise UniegoError(f"task teacher {path} was trained on another manifest; retrain it", stage="extract")
    return {"checkpoint": str(path), "init_weights": meta["init_weights"], "val_top1": meta["val_top1"],
            "epochs": meta["train"]["epochs"], "code_version": meta["code_version"]}


def extract(manifest: str | Path, clip_stores: dict[str, str], out: str | Path, teacher_settings: TeacherSettings, *,
            compute: ComputeSettings = ComputeSettings(), seed: int = 0, code_version: str = "",
            chunk_samples: int | None = None, dtype: str = "float16", task_teacher: str | Path | None = None) -> Path:
    """Extract `teacher_settings.key`'s features for every manifest sample into `out`.
    A teacher with `finetune: true` is extracted from its task-trained checkpoint `task_teacher`
    (`uniego train-teacher`), which replaces the configured weights."""
    from tqdm import tqdm

    table, classes = read_manifest(manifest)
    msha = manifest_sha256(manifest)
    task_meta = None
    if teacher_settings.finetune:
        if task_teacher is None:
            raise UniegoError(f"teachers.{teacher_settings.key}.finetune is true: train it first (`uniego train-teacher`) "
                              "and pass its checkpoint with --task-teacher", stage="extract")
        task_meta = task_teacher_meta(task_teacher, teacher_settings.key, msha)
        teacher_settings = dataclasses.replace(teacher_settings, weights=str(task_teacher))
    elif task_teacher is not None:
        raise UniegoError(f"--task-teacher given but teachers.{teacher_settings.key}.finetune is false", stage="extract")
    teacher = build_teacher(teacher_settings, seed=seed)
    missing = [v for v in teacher.inputs if v not in clip_stores]
    if missing:
        raise UniegoError(f"teacher {teacher.spec.key} needs clip caches {missing}", stage="extract")
    groups = {}
    for view in teacher.inputs:  # refuse incomplete or stale clip caches up front (each store opened and listed once)
        groups[view] = g = open_store(clip_stores[view], manifest_sha256=msha, expect={"kind": "clips", "view": view}, stage="extract")
        if list(strings(g["sample"][:])) != list(table.sample_id):
            raise UniegoError(f"clip cache {clip_stores[view]} does not hold the manifest's samples", stage="extract")
    T = groups[teacher.inputs[0]]["frame_time"].shape[1]
    tail = (T, teacher.feature_dim) if teacher.arch.per_frame else (teacher.feature_dim,)
    dims = ("frame", "channel") if teacher.arch.per_frame else ("channel",)
    arrays = {"features": ArraySpec(tail, dtype, dims)}
    attrs = {"kind": "features", **teacher.provenance(), "frames": T, "dtype": dtype, "manifest_sha256": msha,
             "manifest": str(manifest), "classes": classes, "seed": seed, "code_version": code_version,
             "clip_stores": {v: str(clip_stores[v]) for v in teacher.inputs}, "task_teacher": task_meta}
    n = len(table)
    writer = StoreWriter(out, sample_ids=table.sample_id, splits=table.split, labels=table.label, arrays=arrays,
                         attrs=attrs, chunk_samples=chunk_samples or chunk_samples_for(arrays, n), stage="extract")
    bs = compute.batch_size
    pending = writer.pending()
    batches = [(ci, a, min(a + bs, stop)) for ci, (start, stop) in enumerate(pending) for a in range(start, stop, bs)]
    chunks = {ci: [start, stop, {}] for ci, (start, stop) in enumerate(pending)}
    device = resolve_device(compute)
    teacher.to(device)
    videos = {v: list(table[f"{v}_video"]) for v in teacher.inputs if v != "skeleton" and teacher.frames_from == "video"}
    loader = DataLoader(_TeacherInputs({v: str(clip_stores[v]) for v in teacher.inputs}, teacher, batches, videos,
                                       list(table.sample_id)),
                        batch_size=None, num_workers=compute.workers, prefetch_factor=4 if compute.workers else None,
                        pin_memory=device.type == "cuda")
    kill_after = int(os.environ.get("UNIEGO_TEST_KILL_AFTER_CHUNKS", "0"))  # test hook: SIGKILL self
    written = 0
    bar = tqdm(total=sum(b - a for _, a, b in batches), desc=f"extract {teacher.spec.key}", leave=False, disable=None)
    with torch.inference_mode():
        for ci, a, b, parts in loader:
            feats = np.empty((b - a, *tail), np.float32)
            for idx, inputs in parts:
                with autocast_for(device, compute.precision):
                    out = teacher({k: v.to(device, non_blocking=True) for k, v in inputs.items()})
                out = out.float().cpu().numpy()
                if out.shape != (len(idx), *tail):
                    raise UniegoError(f"teacher {teacher.spec.key} returned {out.shape}, expected {(len(idx), *tail)}",
                                      stage="extract")
                feats[idx] = out
            bad = ~np.isfinite(feats.reshape(b - a, -1)).all(axis=1)
            if bad.any():
                raise UniegoError(f"teacher {teacher.spec.key} produced NaN/Inf for samples "
                                  f"{[str(i) for i in table.sample_id.iloc[a:b][bad]]}; check the weights and the inputs", stage="extract")
            bar.update(b - a)
            start, stop, parts = chunks[ci]
            parts[a] = feats
            if sum(len(p) for p in parts.values()) == stop - start:
                writer.write(start, stop, features=np.concatenate([parts[k] for k in sorted(parts)]).astype(dtype))
                del chunks[ci]
                written += 1
                if kill_after and written >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
    bar.close()
    return writer.finalize()
