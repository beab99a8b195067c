"""The baselines, trained with the same runner and budget as the proxies and SPD: ego-only (CE
on the ego clips) and naive multi-teacher distillation (one student, every teacher's eq.-1
feature term at once, one projection per teacher, their mean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uniego.config import (
    ComputeSettings,
    Level1Settings,
    from_dict,
    parse_student,
    parse_train,
)
from uniego.data import ClipBatches, ClipSource, probe_batch
from uniego.errors import UniegoError
from uniego.losses import cosine_distance
from uniego.manifest import manifest_sha256, read_manifest
from uniego.names import BASELINES
from uniego.stages.level1.proxies import teacher_targets
from uniego.stages.runner import checkpoint_meta, fit, save_checkpoint
from uniego.student import ProxyModel, build_student


class EgoTask:
    def __init__(self, model: nn.Module):
        self.model = model

    def step(self, batch):
        ce = F.cross_entropy(self.model(batch["clip"]), batch["label"])
        return {"loss": ce, "cls_loss": ce.detach()}


class NaiveMTDTask:
    """CE + lambda_feat * mean over teachers of (1 - cos) after each teacher's projection."""

    def __init__(self, model: nn.ModuleDict, targets: dict[str, torch.Tensor], lv: Level1Settings):
        self.model, self.targets, self.lv = model, targets, lv

    def _terms(self, batch):
        first = next(iter(self.model.values()))
        h = first.encoder.forward_features(batch["clip"])
        z = first.encoder.head(h)
        terms = []
        for t, pm in self.model.items():
            a, b = pm.align(h, self.targets[t].to(h.device)[batch["index"]])
            terms.append(cosine_distance(a, b).mean())
        return F.cross_entropy(z, batch["label"]), torch.stack(terms).mean()

    def step(self, batch):
        ce, feat = self._terms(batch)
        return {"loss": self.lv.lambda_cls * ce + self.lv.lambda_feat * feat, "cls_loss": ce.detach(), "feat_loss": feat.detach()}

    def gradient_terms(self, batch):
        ce, feat = self._terms(batch)
        return self.lv.lambda_cls * ce, self.lv.lambda_feat * feat

    def shared_parameters(self):
        return next(iter(self.model.values())).encoder.parameters()


def run_baseline(name: str, manifest: str, clips: str, features: dict, out: str, settings: dict, *,
                 compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    if name not in BASELINES:
        raise UniegoError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}", stage="baselines")
    student, train_s, seed = parse_student(settings["student"]), parse_train(settings["train"]), settings["seed"]
    lv = from_dict(Level1Settings, {k: v for k, v in settings["level1"].items() if k != "teachers"}, where="level1")
    teachers = settings["level1"]["teachers"]
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    rows = np.flatnonzero(table.split.to_numpy() == "train")
    source = ClipSource(clips, list(table.sample_id.iloc[rows]), manifest_sha256=sha, clip_settings=settings.get("clips"),
                        stage="baseline")
    encoder = build_student(student, len(classes), num_frames=source.num_frames, seed=seed)
    if name == "ego":
        task = EgoTask(encoder)
    else:
        missing = [t for t in teachers if t not in features]
        if missing:
            raise UniegoError(f"naive MTD needs the feature stores of {missing}", stage="baselines")
        targets = {t: teacher_targets(features[t], table, sha, t, stage="baseline")[0][rows] for t in teachers}
        task = NaiveMTDTask(nn.ModuleDict({t: ProxyModel(encoder, targets[t].shape[1], lv.projection) for t in teachers}),
                            targets, lv)
    labels = table.label.to_numpy()[rows]
    probe = probe_batch(source, labels, student, settings.get("probe_samples", 0)) if name != "ego" else None
    distilled = teachers if name != "ego" else []
    identity = {"baseline": name, "manifest": sha, "student": student.__dict__, "level1": lv.__dict__, "teachers": distilled}
    run = fit(task, lambda b, e: ClipBatches(source, labels, student, b, epoch=e, seed=seed, train=True), len(rows), train_s,
              out=out, identity=identity, seed=seed, code_version=code_version, compute=compute, desc=f"baseline {name}",
              probe=probe)
    meta = checkpoint_meta("student", seed=seed, manifest_sha256=sha, code_version=code_version, run=run, method=name,
                           classes=classes, num_frames=source.num_frames, teachers=distilled, train=train_s.__dict__,
                           student=student.__dict__, clips=settings.get("clips"))
    return save_checkpoint(out, {"encoder": encoder.cpu().state_dict()}, meta)


