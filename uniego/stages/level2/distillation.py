"""Level II, eq. 4-6: Selective Proxy Distillation from the merged initialisation against the
proxies' exported outputs, counting which proxies each sample distils from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uniego import distributed
from uniego.cache import read_array
from uniego.checkpoints import check_checkpoint_fits, encoder_from_checkpoint, load_model
from uniego.config import (
    ComputeSettings,
    SPDSettings,
    parse_spd,
    parse_student,
    parse_train,
)
from uniego.data import ClipBatches, probe_batch
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest
from uniego.spd import select_proxies, spd_loss
from uniego.stages.runner import checkpoint_meta, fit, run_folder, save_checkpoint, split_source
from uniego.student import build_student
from uniego.teachers.registry import get_teacher


class SPDModel(nn.Module):
    def __init__(self, encoder: nn.Module, feature_projection: bool):
        super().__init__()
        self.encoder = encoder
        d = encoder.embed_dim
        self.proj = nn.Linear(d, d) if feature_projection else None
        if self.proj is not None:
            nn.init.trunc_normal_(self.proj.weight, std=0.02)
            nn.init.zeros_(self.proj.bias)

    def forward(self, clip):
        h = self.encoder.forward_features(clip)
        return (h if self.proj is None else self.proj(h)), self.encoder.head(h)


class SPDTask:
    """Eq. 4-6 on a batch, against the proxies' cached outputs; counts the selections."""

    def __init__(self, model: SPDModel, h_p: torch.Tensor, z_p: torch.Tensor, views: list[str], spd: SPDSettings,
                 num_classes: int):
        self.model, self.h_p, self.z_p, self.views, self.s = model, h_p, z_p, views, spd
        self.counts = torch.zeros(h_p.shape[0])
        self.class_counts = torch.zeros(num_classes, h_p.shape[0])
        self.samples = 0

    def _loss(self, batch: dict, *, count: bool) -> tuple[dict, torch.Tensor]:
        u, z = self.model(batch["clip"])
        idx, y = batch["index"], batch["label"]
        h_p, z_p = self.h_p.to(u.device)[:, idx], self.z_p.to(u.device)[:, idx]
        s = self.s
        student_ce = F.cross_entropy(z.detach().float(), y, reduction="none") if s.student_ce_filter else None
        sel = select_proxies(z_p, y, s.k, mode=s.mode, views=self.views, student_ce=student_ce, ce_cap=s.ce_cap)
        if count:
            self.counts += sel.sum(0).float().cpu()
            self.class_counts.index_add_(0, y.cpu(), sel.float().cpu())
            self.samples += len(y)
        distilled = None
        if s.normalize == "official" and s.micro_batch is None:  # the global batch's count of distilled samples, per rank
            count, ranks = distributed.total((sel.sum(1) > 0).sum())
            distilled = max(count, 1) / ranks
        out = spd_loss(u, z, h_p, z_p, y, sel, beta_feat=s.beta_feat, beta_logit=s.beta_logit, beta_cls=s.beta_cls,
                       tau=s.tau, normalize=s.normalize, distilled=distilled, micro_batch=s.micro_batch)
        return out, s.beta_cls * F.cross_entropy(z, y)

    def step(self, batch: dict) -> dict:
        return self._loss(batch, count=True)[0]

    def gradient_terms(self, batch: dict):
        """(beta_cls CE, the distillation part of eq. 6) on a batch, for the conflict probe."""
        out, cls = self._loss(batch, count=False)
        return cls, out["loss"] - cls

    def shared_parameters(self):
        return self.model.encoder.parameters()

    def epoch_end(self) -> dict:
        out = {"selected_per_proxy": self.counts.tolist(), "selected_per_class": self.class_counts.tolist(),
               "samples_seen": self.samples}
        self.counts.zero_()
        self.class_counts.zero_()
        self.samples = 0
        return out


def run_spd(manifest: str, clips: str, merged: str, outputs: dict, out: str, settings: dict, *,
            compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    """SPD from the merged initialisation (or, with spd.init none and merged "none", from the
    student's own start) against the proxies' cached outputs; write `out`."""
    student, train_s = parse_student(settings["student"]), parse_train(settings["train"])
    spd, teachers, seed = parse_spd(settings["spd"]), settings["teachers"], settings["seed"]
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    rows, source = split_source(table, "train", clips, sha, clip_settings=settings.get("clips"), stage="spd")
    ids = list(table.sample_id.iloc[rows])
    feats, logits = [], []
    for t in teachers:
        f, _ = read_array(outputs[t], "feature", manifest_sha256=sha, sample_ids=ids, stage="spd",
                          expect={"kind": "proxy_outputs", "teacher": t})
        z, _ = read_array(outputs[t], "logits", manifest_sha256=sha, sample_ids=ids, stage="spd")
        feats.append(f)
        logits.append(z)
    h_p, z_p = torch.from_numpy(np.stack(feats)).float(), torch.from_numpy(np.stack(logits)).float()
    if (spd.init == "none") != (str(merged) == "none"):
        raise UniegoError(f"spd.init is {spd.init!r} but the start given is {merged}: give --init none exactly when "
                          "spd.init is none (SPD from the student's own start, without a merge)", stage="spd")
    if spd.init == "none":   # the paper's "without merge" row: the student's start (student.init), as every proxy's
        encoder = build_student(student, len(classes), num_frames=source.num_frames, seed=seed)
        start = {"merged": None, "student_init": student.init}
    else:
        init = load_model(merged)
        if init["meta"].get("manifest_sha256") != sha:
            raise UniegoError(f"{merged} was built from another manifest; rebuild it", stage="spd")
        check_checkpoint_fits(init, merged, classes=classes, num_frames=source.num_frames, stage="spd")
        encoder = encoder_from_checkpoint(init, student)
        start = {"merged": init["meta"].get("alpha")}
    model = SPDModel(encoder, spd.feature_projection)
    task = SPDTask(model, h_p, z_p, [get_teacher(t).view for t in teachers], spd, len(classes))
    labels = table.label.to_numpy()[rows]
    identity = {**start, "teachers": teachers, "spd": dataclasses.asdict(spd), "manifest": sha}
    probe = probe_batch(source, labels, student, settings.get("probe_samples", 0))
    run = fit(task, lambda b, e: ClipBatches(source, labels, student, b, epoch=e, seed=seed, train=True), len(rows), train_s,
              out=out, identity=identity, seed=seed, code_version=code_version, compute=compute, desc="spd", probe=probe)
    epochs = [json.loads(line) for line in (run_folder(out) / "metrics.jsonl").read_text().splitlines()]
    per_proxy = np.sum([e["selected_per_proxy"] for e in epochs], axis=0).tolist()
    per_class = np.sum([e["selected_per_class"] for e in epochs], axis=0).tolist()
    meta = checkpoint_meta("student", seed=seed, manifest_sha256=sha, code_version=code_version, run=run, method="uniego",
                           teachers=teachers, classes=classes, num_frames=source.num_frames,
                           init=str(merged) if spd.init != "none" else f"student.init: {student.init}",
                           spd=dataclasses.asdict(spd), train=train_s.__dict__, ablation=settings.get("ablation"),
                           student=student.__dict__, clips=settings.get("clips"),
                           selection={"per_proxy": dict(zip(teachers, per_proxy)), "per_class": per_class,
                                      "samples_seen": int(sum(e["samples_seen"] for e in epochs))})
    tensors = {"encoder": model.encoder.cpu().state_dict()}
    if model.proj is not None:
        tensors["proj"] = model.proj.cpu().state_dict()
    return save_checkpoint(out, tensors, meta)


