"""Level I's runners: one proxy per teacher (eq. 1), and the export of its outputs on the train
split (the SPD targets: CLS feature and logits from one deterministic view per clip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uniego.cache import ArraySpec, StoreWriter, open_store, read_array
from uniego.checkpoints import check_checkpoint_fits, encoder_from_checkpoint, load_model, predict
from uniego.config import ComputeSettings, Level1Settings, from_dict, parse_student, parse_train
from uniego.data import ClipBatches, ClipSource
from uniego.device import resolve_device
from uniego.errors import UniegoError
from uniego.losses import proxy_loss
from uniego.manifest import manifest_sha256, read_manifest
from uniego.stages.runner import checkpoint_meta, fit, save_checkpoint
from uniego.student import ProxyModel, build_student


class ProxyTask:
    """Eq. 1 on a batch: the proxy sees only the ego clip; the teacher's feature is the target."""

    def __init__(self, model: ProxyModel, targets: torch.Tensor, settings: Level1Settings):
        self.model, self.targets, self.s = model, targets, settings

    def step(self, batch: dict) -> dict:
        h, z = self.model(batch["clip"])
        teacher = self.targets.to(h.device)[batch["index"]]
        h_s, h_t = self.model.align(h, teacher)
        return proxy_loss(h_s, z, h_t, batch["label"], lambda_feat=self.s.lambda_feat, lambda_cls=self.s.lambda_cls)


def teacher_targets(features: str, table, sha: str, teacher: str, *, stage: str = "level1") -> tuple[torch.Tensor, dict]:
    """One target vector per manifest sample from `teacher`'s feature store: per-frame teacher
    features are averaged over frames (as the official loader averages its sampled rows)."""
    g = open_store(features, manifest_sha256=sha, expect={"kind": "features", "teacher": teacher}, stage=stage)
    attrs = dict(g.attrs)
    values, _ = read_array(features, sample_ids=table.sample_id, stage=stage, group=g)
    check_feature_dim(features, values.shape[-1], attrs, stage=stage)
    values = values.astype(np.float32)
    if values.ndim == 3:
        values = values.mean(axis=1)
    return torch.from_numpy(values), attrs


def check_feature_dim(path: str, dim: int, attrs: dict, *, stage: str) -> None:
    """A store's channel count must be the one it records and its architecture produces."""
    from uniego.teachers.registry import ARCHS

    expected = {"the store's feature_dim attribute": attrs.get("feature_dim")}
    arch = ARCHS.get(attrs.get("architecture"))
    if arch is not None:
        expected[f"architecture {arch.name}"] = arch.feature_dim
    wrong = {k: v for k, v in expected.items() if v is not None and v != dim}
    if wrong:
        raise UniegoError(f"store {path} (teacher {attrs.get('teacher')}) has {dim}-d features, but "
                          + ", ".join(f"{k} says {v}" for k, v in wrong.items()) + "; rebuild or re-import it", stage=stage)


def train_proxy(manifest: str, clips: str, features: str, out: str, settings: dict, *,
                compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    """Train the proxy of `settings['teacher']` on the train split; write `out` (.pt)."""
    student, train_s = parse_student(settings["student"]), parse_train(settings["train"])
    lv = from_dict(Level1Settings, settings["level1"], where="level1")
    seed, teacher = settings["seed"], settings["teacher"]
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    targets, t_attrs = teacher_targets(features, table, sha, teacher)
    rows = np.flatnonzero(table.split.to_numpy() == "train")
    if len(rows) == 0:
        raise UniegoError(f"manifest {manifest} has no train samples", stage="level1")
    source = ClipSource(clips, list(table.sample_id.iloc[rows]), manifest_sha256=sha, clip_settings=settings.get("clips"),
                        stage="level1")
    encoder = build_student(student, len(classes), num_frames=source.num_frames, seed=seed)
    model = ProxyModel(encoder, targets.shape[1], lv.projection)
    task = ProxyTask(model, targets[rows], lv)
    labels = table.label.to_numpy()[rows]
    identity = {"teacher": teacher, "manifest": sha, "features": t_attrs.get("fingerprint"), "student": student.__dict__,
                "level1": lv.__dict__}
    run = fit(task, lambda batches, epoch: ClipBatches(source, labels, student, batches, epoch=epoch, seed=seed, train=True),
              len(rows), train_s, out=out, identity=identity, seed=seed, code_version=code_version, compute=compute,
              desc=f"proxy {teacher}")
    meta = checkpoint_meta("proxy", seed=seed, manifest_sha256=sha, code_version=code_version, run=run,
                           teacher=teacher, classes=classes, num_frames=source.num_frames, student=student.__dict__, clips=settings.get("clips"),
                           train=train_s.__dict__, level1=lv.__dict__,
                           teacher_store={k: t_attrs.get(k) for k in ("architecture", "weights", "state_sha256", "stand_in",
                                                                      "fingerprint")})
    save_checkpoint(out, {"encoder": model.encoder.cpu().state_dict(), "proj": model.proj.cpu().state_dict()}, meta)
    return Path(out)


def export_proxy_outputs(manifest: str, clips: str, proxy: str, out: str, settings: dict, *,
                         compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    """Write `feature` [N_train, D] and `logits` [N_train, C] of a proxy into a store."""
    student = parse_student(settings["student"])
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    obj = load_model(proxy, stage="level1")
    if obj["meta"]["manifest_sha256"] != sha:
        raise UniegoError(f"proxy {proxy} was trained on another manifest; retrain it", stage="level1")
    rows = np.flatnonzero(table.split.to_numpy() == "train")
    ids = list(table.sample_id.iloc[rows])
    source = ClipSource(clips, ids, manifest_sha256=sha, clip_settings=settings.get("clips"), stage="level1")
    check_checkpoint_fits(obj, proxy, classes=classes, num_frames=source.num_frames, stage="level1")
    encoder = encoder_from_checkpoint(obj, student)
    feats, logits = predict(encoder, source, student, device=resolve_device(compute), batch_size=compute.batch_size,
                            workers=compute.workers)
    if not (np.isfinite(feats).all() and np.isfinite(logits).all()):
        raise UniegoError(f"proxy {proxy} produced NaN/Inf outputs", stage="level1")
    aligned = aligned_features(obj, feats, proxy)
    arrays = {"feature": ArraySpec((feats.shape[1],), "float32", ("channel",)),
              "logits": ArraySpec((logits.shape[1],), "float32", ("class",)),
              "aligned": ArraySpec((aligned.shape[1],), "float32", ("aligned_channel",))}   # teacher width: its own dim
    writer = StoreWriter(out, sample_ids=ids, splits=["train"] * len(ids), labels=table.label.to_numpy()[rows], arrays=arrays,
                         attrs={"kind": "proxy_outputs", "teacher": obj["meta"]["teacher"], "proxy": str(proxy),
                                "view": "eval: resize to train_jitter[0], centre crop", "manifest_sha256": sha,
                                "classes": classes, "code_version": code_version}, stage="level1")
    writer.write(0, len(ids), feature=feats, logits=logits, aligned=aligned)
    return writer.finalize()


def aligned_features(obj: dict, feats: np.ndarray, proxy) -> np.ndarray:
    """The proxy's side of eq. 1's cosine term: proj(CLS) where the projection is on the student
    (`level1.projection: student`), else the CLS itself (the teacher side is projected). This is
    the feature eq. 1 pulls toward the teacher, so the one to compare with it (analysis.cka)."""
    mode = obj["meta"].get("level1", {}).get("projection")
    if mode is None:
        raise UniegoError(f"proxy {proxy} records no level1.projection in its meta; retrain it", stage="level1")
    if mode != "student":
        return feats
    if "proj" not in obj:
        raise UniegoError(f"proxy {proxy} was trained with level1.projection: student but has no `proj`; retrain it",
                          stage="level1")
    w = obj["proj"]["weight"].double().numpy()
    b = obj["proj"]["bias"].double().numpy() if "bias" in obj["proj"] else 0.0
    return (feats.astype(np.float64) @ w.T + b).astype(np.float32)
