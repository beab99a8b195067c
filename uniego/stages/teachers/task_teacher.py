"""Task teachers: the two trainable exo teachers of Table 1, trained on the dataset's train
split with cross-entropy *before* their features are extracted (the paper fine-tunes the exo
TimeSformer and the ST-GCN on each dataset; the foundation-model teachers stay frozen).

  exo_rgb   TimeSformer on the exo clip cache, TimeSformer augmentation (jitter, crop, flip)
  exo_skl   ST-GCN on the exo skeleton cache (pyskl normalisation, no augmentation)

The backbone is initialised from the teacher's configured `weights` (a K400 `.pyth`, a pyskl
checkpoint, hub ImageNet, or random), a linear head on the documented feature is added, and
the shared engine trains both. The checkpoint `results/{ds}/teachers/{teacher}.pt` holds
`state_dict` (the backbone, in the keys the teacher loaders read) so extraction loads it as
the teacher's weights; `head` and `meta` (val top-1, provenance) travel with it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from uniego.cache import open_store, read_rows, strings, zarr_module
from uniego.config import ComputeSettings, TeacherSettings, from_dict, parse_train
from uniego.data import make_view
from uniego.device import autocast_for, resolve_device
from uniego.engine import whole_batches
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest
from uniego.metrics import topk_accuracy
from uniego.stages.runner import checkpoint_meta, fit, save_checkpoint
from uniego.teachers import build_teacher
from uniego.teachers.skeleton import skeleton_clips

TRAINABLE_FAMILIES = ("timesformer", "stgcn")


class TaskTeacher(nn.Module):
    """A teacher backbone (its documented feature) and a linear classifier on it."""

    def __init__(self, teacher, num_classes: int):
        super().__init__()
        self.teacher = teacher
        self.head = nn.Linear(teacher.feature_dim, num_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self.teacher(batch))


class _CETask:
    def __init__(self, model: TaskTeacher):
        self.model = model

    def step(self, batch):
        ce = F.cross_entropy(self.model(batch), batch["label"])
        return {"loss": ce, "cls_loss": ce.detach()}


class TeacherBatches(Dataset):
    """Item b = batch b of the given clip-cache rows, as the teacher's inputs plus labels.
    Frames (train): the student's augmentation at the teacher's input size and normalisation;
    frames (eval) and skeletons: exactly the teacher's extraction preprocessing, except that in
    training a sample cached with several skeleton clips (pyskl's test UniformSample) gives one of
    them, drawn per epoch: pyskl trains on one randomly sampled clip (`train_clip`)."""

    def __init__(self, clip_stores: dict[str, str], rows, labels, teacher, view_settings, batches, *, epoch: int,
                 seed: int, train: bool):
        self.paths, self.rows, self.labels, self.teacher = clip_stores, np.asarray(rows), np.asarray(labels), teacher
        self.view, self.batches, self.epoch, self.seed, self.train = view_settings, batches, epoch, seed, train
        self.groups = None

    def __len__(self):
        return len(self.batches)

    def _sample(self, r: int) -> dict:
        if self.groups is None:  # opened per worker process
            self.groups = {v: zarr_module().open_group(p, mode="r", use_consolidated=False) for v, p in self.paths.items()}
        raw = {}
        for view, g in self.groups.items():
            if view == "skeleton":
                raw["skeleton"] = read_rows(g["keypoints"], r, store=self.paths[view], stage="train_teacher")
                raw["skeleton_img_hw"] = read_rows(g["img_hw"], r, store=self.paths[view], stage="train_teacher")
                raw["skeleton_clips"] = skeleton_clips(g, self.paths[view])
            else:
                raw[view] = read_rows(g["frames"], r, store=self.paths[view], stage="train_teacher")
        return raw

    def __getitem__(self, b: int) -> dict:
        idx = self.batches[b]
        items = []
        for i in idx:
            raw = self._sample(int(self.rows[int(i)]))
            if self.train and "exo" in raw:
                rng = np.random.default_rng([self.seed, self.epoch, int(i)])
                items.append({"clip": make_view(raw["exo"], self.view, train=True, rng=rng, mean=self.teacher.arch.mean,
                                                std=self.teacher.arch.std)})
            else:
                item = self.teacher.preprocess(raw)
                if self.train and "skeleton" in item:
                    item["skeleton"] = train_clip(item["skeleton"], np.random.default_rng([self.seed, self.epoch, int(i)]))
                items.append(item)
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        batch["label"] = torch.as_tensor(self.labels[idx], dtype=torch.long)
        batch["index"] = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return batch


def train_clip(clips: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """[nc, M, T, V, C] ST-GCN input clips -> one of them, [1, M, T, V, C], drawn by `rng`. The
    cached clips are pyskl test-mode UniformSample draws; pyskl's training pipeline takes one
    random UniformSample clip per epoch, so one of them, drawn anew each epoch, stands for it
    (from nc draws rather than every possible one)."""
    c = int(rng.integers(len(clips)))
    return clips[c:c + 1]


@dataclasses.dataclass(frozen=True)
class TeacherView:
    """What `make_view` needs: the crop size and the short-side jitter range."""
    input_size: int
    train_jitter: tuple[int, int]


def view_settings_for(teacher, student_input: int, student_jitter) -> TeacherView:
    """The teacher's train view: the student's jitter range (relative to its crop) scaled to
    the teacher's input size."""
    lo, hi = student_jitter
    size = teacher.input_size
    return TeacherView(size, (max(size, round(size * lo / student_input)), max(size, round(size * hi / student_input))))


@torch.inference_mode()
def evaluate_teacher(model: TaskTeacher, clip_stores, rows, labels, *, device, precision: str, batch_size: int = 8,
                     workers: int = 0) -> np.ndarray:
    """Logits [N, C] of the given rows with the extraction preprocessing."""
    batches = [np.arange(i, min(i + batch_size, len(rows))) for i in range(0, len(rows), batch_size)]
    data = TeacherBatches(clip_stores, rows, labels, model.teacher, None, batches, epoch=0, seed=0, train=False)
    model.eval().to(device)
    out = []
    for batch in DataLoader(data, batch_size=None, collate_fn=whole_batches, num_workers=workers):
        with autocast_for(device, precision):
            out.append(model({k: v.to(device) for k, v in batch.items()}).float().cpu())
    return torch.cat(out).numpy()


def train_task_teacher(manifest: str, clip_stores: dict[str, str], out: str, settings: dict, *,
                       compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    """Train teacher `settings["teacher"]["key"]` on the train split; write `out`."""
    ts = from_dict(TeacherSettings, settings["teacher"], where=f"teachers.{settings['teacher'].get('key')}")
    train_s, seed = parse_train(settings["train"]), settings["seed"]
    teacher = build_teacher(ts, seed=seed)
    if teacher.arch.family not in TRAINABLE_FAMILIES:
        raise UniegoError(f"teachers.{ts.key}: {teacher.arch.family} teachers are frozen foundation models; only "
                          f"{', '.join(TRAINABLE_FAMILIES)} teachers can be trained on the task", stage="train_teacher")
    missing = [v for v in teacher.inputs if v not in clip_stores]
    if missing:
        raise UniegoError(f"teacher {ts.key} needs clip caches {missing}", stage="train_teacher")
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    positions = {}
    for view in teacher.inputs:  # row of each manifest sample in every cache (refuses stale caches)
        g = open_store(clip_stores[view], manifest_sha256=sha, expect={"kind": "clips", "view": view}, stage="train_teacher")
        ids = strings(g["sample"][:])
        positions[view] = {s: i for i, s in enumerate(ids)}
    first = positions[teacher.inputs[0]]
    for view in teacher.inputs[1:]:
        if positions[view] != first:
            raise UniegoError(f"clip caches {list(clip_stores.values())} hold different sample orders", stage="train_teacher")
    lacking = [s for s in table.sample_id if s not in first]
    if lacking:
        raise UniegoError(f"clip cache {clip_stores[teacher.inputs[0]]} lacks samples {lacking[:5]}", stage="train_teacher")
    split = table.split.to_numpy()
    rows = {s: np.array([first[x] for x in table.sample_id[split == s]]) for s in ("train", "val")}
    labels = {s: table.label.to_numpy()[split == s] for s in ("train", "val")}
    teacher.train().requires_grad_(True)
    torch.manual_seed(seed)
    model = TaskTeacher(teacher, len(classes))
    view = view_settings_for(teacher, settings["input_size"], settings["train_jitter"])
    stores = {v: str(clip_stores[v]) for v in teacher.inputs}
    identity = {"task_teacher": ts.__dict__, "manifest": sha, "view": view.__dict__}
    device = resolve_device(compute)
    run = fit(_CETask(model), lambda batches, epoch: TeacherBatches(stores, rows["train"], labels["train"], teacher, view,
                                                                   batches, epoch=epoch, seed=seed, train=True),
              len(rows["train"]), train_s, out=out, identity=identity, seed=seed, code_version=code_version, compute=compute,
              desc=f"task teacher {ts.key}")
    val = evaluate_teacher(model, stores, rows["val"], labels["val"], device=device, precision=compute.precision,
                           batch_size=compute.batch_size, workers=compute.workers) if len(rows["val"]) else None
    val_top1 = None if val is None else topk_accuracy(val, labels["val"], 1)
    meta = checkpoint_meta("task_teacher", seed=seed, manifest_sha256=sha, code_version=code_version, run=run,
                           teacher=ts.key, architecture=ts.arch, init_weights=ts.weights, classes=classes,
                           train=train_s.__dict__, view=view.__dict__, val_top1=val_top1)
    top1 = "not measured (no val clips)" if val_top1 is None else f"{val_top1:.2f} %"
    print(f"[train_teacher] {ts.key}: val top-1 {top1}", flush=True)
    model.cpu()
    return save_checkpoint(out, {"state_dict": teacher.model.state_dict(), "head": model.head.state_dict()}, meta)
