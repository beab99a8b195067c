"""Recognition and retrieval on the test split with the multi-view protocol: logits summed
over `eval.temporal_clips` temporal views x `eval.spatial_crops` crops (one temporal view: the
cached clip; several: the temporal-views cache `clips/ego.views{V}.zarr`); top-1 and top-5
in percent. Retrieval (paper Table 3) uses the same forward pass: each clip's feature is
the encoder's CLS averaged over the same views; `uniego.metrics.retrieval_scores` then
ranks every other test clip by cosine similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from uniego.checkpoints import check_checkpoint_fits, encoder_from_checkpoint, load_model, predict
from uniego.config import ComputeSettings, parse_eval, parse_student
from uniego.data import ClipSource
from uniego.device import resolve_device
from uniego.errors import UniegoError
from uniego.io import atomic_write_json
from uniego.manifest import manifest_sha256, read_manifest
from uniego.metrics import per_class_accuracy, retrieval_scores, topk_accuracy


def merge_summary(meta: dict) -> dict:
    """A merged checkpoint's eq. 2 record for the report: its strategy, each proxy's mean alpha
    (over the layer / parameter groups), the objective at the end (Proposition 1) and which of
    eq. 2's starts was kept."""
    alpha = np.asarray(meta["alpha"]["alpha"], dtype=np.float64)
    mean = alpha.reshape(-1, alpha.shape[-1]).mean(0)
    return {"strategy": meta["strategy"], "alpha_mean": dict(zip(meta["teachers"], mean.round(6).tolist())),
            "objective": meta.get("objective"), "start": meta.get("start"), "starts": meta.get("starts")}


def evaluate_recognition(manifest: str, clips: str, model: str, out: str, settings: dict, *,
                         compute: ComputeSettings = ComputeSettings(), name: str = "",
                         retrieval_out: str | None = None, code_version: str = "") -> dict:
    student, views_s = parse_student(settings["student"]), parse_eval(settings["eval"])
    crops, temporal = views_s.spatial_crops, views_s.temporal_clips
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    obj = load_model(model, stage="evaluate")
    if obj["meta"].get("manifest_sha256") != sha:
        raise UniegoError(f"{model} was trained on another manifest (or records none); retrain it", stage="evaluate")
    rows = np.flatnonzero(table.split.to_numpy() == "test")
    if len(rows) == 0:
        raise UniegoError("the manifest has no test samples", stage="evaluate")
    ids = list(table.sample_id.iloc[rows])
    sources = [ClipSource(clips, ids, manifest_sha256=sha, temporal_view=None if temporal == 1 else v,
                          clip_settings=settings.get("clips"), stage="evaluate")
               for v in range(temporal)]
    check_checkpoint_fits(obj, model, classes=classes, num_frames=sources[0].num_frames, stage="evaluate")
    encoder = encoder_from_checkpoint(obj, student)
    views = (1,) if crops == 1 else (0, 1, 2)
    outputs = [predict(encoder, source, student, device=resolve_device(compute), batch_size=compute.batch_size,
                       workers=compute.workers, crop=c) for source in sources for c in views]
    logits = sum(z for _, z in outputs)
    y = table.label.to_numpy()[rows]
    result = {"model": name or Path(model).stem, "checkpoint": str(model), "top1": topk_accuracy(logits, y, 1),
              "top5": topk_accuracy(logits, y, 5), "n": int(len(rows)), "views": f"{temporal}x{len(views)}",
              "method": obj["meta"].get("method") or obj["meta"].get("kind"), "seed": obj["meta"].get("seed"),
              "per_class": dict(zip(classes, per_class_accuracy(logits, y, len(classes)))), "code_version": code_version}
    if obj["meta"].get("kind") == "merged":
        result["merge"] = merge_summary(obj["meta"])
    if isinstance(obj["meta"].get("spd"), dict):   # what SPD ran with: the report's ablation table shows it
        result["spd"] = obj["meta"]["spd"]
    if retrieval_out:
        features = sum(h for h, _ in outputs) / len(outputs)
        if np.bincount(y).max() > 1:
            scores = retrieval_scores(features, y)
        else:  # undefined, not zero: say so (the report prints n/a)
            scores = {"mAP": None, "R@1": None, "queries": 0, "queries_without_relevant": int(len(y)),
                      "note": "no test class has two clips: no query has a relevant clip"}
        retrieval = {"model": result["model"], "checkpoint": str(model), **scores,
                     "n": int(len(rows)), "views": result["views"], "feature": "CLS after the final norm, mean over views",
                     "similarity": "cosine", "protocol": "each test clip queries all other test clips; relevant = same class"}
        atomic_write_json(retrieval_out, retrieval)
        result["retrieval"] = {k: retrieval[k] for k in ("mAP", "R@1")}
    atomic_write_json(out, {k: v for k, v in result.items() if k != "retrieval"})
    return result

