"""Level II, eq. 2: the proxies merged by a learned convex combination of their weights, from
one or more starts, with the objective recorded against every proxy (Proposition 1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from uniego.cache import read_array
from uniego.checkpoints import check_checkpoint_fits, encoder_from_checkpoint, load_model, predict
from uniego.config import (
    ComputeSettings,
    TrainSettings,
    parse_merge,
    parse_student,
)
from uniego.data import ClipBatches
from uniego.device import resolve_device
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest
from uniego.merge import MergeWeights, blend, stack_states, start_logits
from uniego.metrics import topk_accuracy
from uniego.stages.runner import checkpoint_meta, fit, save_checkpoint, split_source

LEARNED = ("model", "layer", "parameter")


class MergeTask:
    """Eq. 2 learned: CE of the merged model, alpha the only trainable tensor; the R proxy
    weights are stacked once and blended into one state dict per step (functional_call)."""

    def __init__(self, base: nn.Module, stacked: dict, weights: MergeWeights):
        self.model, self.base, self.stacked = weights, base.eval().requires_grad_(False), stacked
        self._device = None

    def step(self, batch: dict) -> dict:
        dev = batch["clip"].device
        if self._device != dev:
            self.stacked = {k: v.to(dev) for k, v in self.stacked.items()}
            self.base.to(dev)
            self._device = dev
        logits = functional_call(self.base, blend(self.stacked, self.model.per_key()), (batch["clip"],))
        ce = F.cross_entropy(logits, batch["label"])
        return {"loss": ce, "cls_loss": ce.detach()}


def _proxies(paths: dict, teachers: list[str], sha: str, classes: list[str]) -> list[dict]:
    """The proxies of `teachers`, in that order: exactly those (a proxy given but not listed, or
    listed but not given, is an error rather than silently left out), each of its own teacher."""
    extra, missing = sorted(set(paths) - set(teachers)), [t for t in teachers if t not in paths]
    if extra or missing:
        raise UniegoError(f"the merge is given the proxies of {sorted(paths)} but level1.teachers lists {teachers}"
                          + (f": {extra} not listed" if extra else "") + (f": {missing} missing" if missing else "")
                          + "; give exactly the listed teachers' proxies", stage="merge")
    objs = []
    for t in teachers:
        obj = load_model(paths[t])
        if obj["meta"]["manifest_sha256"] != sha:
            raise UniegoError(f"proxy {paths[t]} was trained on another manifest; retrain it", stage="merge")
        if obj["meta"].get("teacher") not in (None, t):
            raise UniegoError(f"{paths[t]} is the proxy of {obj['meta']['teacher']}, given as {t}'s", stage="merge")
        check_checkpoint_fits(obj, paths[t], classes=classes, stage="merge")
        objs.append(obj)
    return objs


def proxy_train_ce(teachers: list[str], outputs: dict, labels: np.ndarray, ids: list[str], sha: str) -> dict[str, float]:
    """Each proxy's train CE on the eval view (from its exported logits): eq. 2's objective at
    the simplex's vertices."""
    y = torch.from_numpy(labels).long()
    ce = {}
    for t in teachers:
        z, _ = read_array(outputs[t], "logits", manifest_sha256=sha, sample_ids=ids, stage="merge")
        ce[t] = float(F.cross_entropy(torch.from_numpy(np.asarray(z)).float(), y))
    return ce


def merge_objective(merged: dict, objs: list[dict], source, labels: np.ndarray, proxy_ce: dict,
                    student, compute: ComputeSettings) -> dict:
    """Eq. 2's objective at the end, for Proposition 1 (the learned merge is no worse than the
    best single proxy, a vertex of the simplex): train-split CE of the merged model and of each
    proxy, all on the same deterministic eval view (the proxies' from their exported logits)."""
    encoder = encoder_from_checkpoint({"encoder": merged, "meta": objs[0]["meta"]}, student)
    _, logits = predict(encoder, source, student, device=resolve_device(compute), batch_size=compute.batch_size,
                        workers=compute.workers)
    best = min(proxy_ce, key=proxy_ce.get)
    merged_ce = float(F.cross_entropy(torch.from_numpy(logits).float(), torch.from_numpy(labels).long()))
    return {"split": "train", "samples": int(len(labels)), "view": "eval: resize to train_jitter[0], centre crop",
            "merged_ce": merged_ce, "proxy_ce": proxy_ce, "best_proxy": best, "best_proxy_ce": proxy_ce[best],
            "merged_top1": topk_accuracy(logits, labels)}


def run_merge(manifest: str, clips: str, proxies: dict, strategy: str, out: str, settings: dict, *,
              compute: ComputeSettings = ComputeSettings(), code_version: str = "", outputs: dict | None = None) -> Path:
    """Merge the proxies of settings['teachers'] (in that order) with `strategy`; write `out`.

    A learned strategy runs eq. 2 from each of merge.starts (`uniform`: the official zero
    logits; `best_proxy`: alpha leaning on the proxy with the lowest train CE) and keeps the
    start whose merged model ends with the lowest train CE (eval view): a local search over the
    simplex from more than one point, so that Proposition 1's vertex is within reach. With the
    proxies' exported outputs (`outputs`) the objective at the end is recorded for the merged
    model and every proxy (`meta.objective`, `meta.starts`)."""
    student, m, teachers, seed = parse_student(settings["student"]), parse_merge(settings["merge"]), settings["teachers"], settings["seed"]
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    objs = _proxies(proxies, teachers, sha, classes)
    stacked = stack_states([o["encoder"] for o in objs])
    base = encoder_from_checkpoint(objs[0], student)
    keys = [k for k, v in stacked.items() if v.is_floating_point()]
    device = resolve_device(compute)
    out = Path(out)
    best, val_acc = None, None
    if strategy == "best":
        rows, source = split_source(table, "val", clips, sha, clip_settings=settings.get("clips"), stage="merge")
        y = table.label.to_numpy()[rows]
        val_acc = [topk_accuracy(predict(encoder_from_checkpoint(o, student), source, student, device=device,
                                         batch_size=compute.batch_size, workers=compute.workers)[1], y) for o in objs]
        best = int(np.argmax(val_acc))
    rows, source = split_source(table, "train", clips, sha, clip_settings=settings.get("clips"), stage="merge")
    labels, ids = table.label.to_numpy()[rows], list(table.sample_id.iloc[rows])
    proxy_ce = proxy_train_ce(teachers, outputs, labels, ids, sha) if outputs else None
    starts = list(m.starts) if strategy in LEARNED else ["uniform"]
    lowest = teachers.index(min(proxy_ce, key=proxy_ce.get)) if proxy_ce else None
    runs = []
    for start in starts:
        init = start_logits(start, len(objs), best=lowest, weight=m.best_start_alpha)
        weights = MergeWeights(keys, len(objs), strategy, best=best, init=init)
        run = None
        if strategy in LEARNED:
            s = TrainSettings(epochs=m.epochs, lr=m.lr, lr_steps=(0,), lr_factors=(1.0,), momentum=0.0, nesterov=False,
                              weight_decay=m.weight_decay, batch_size=m.batch_size)
            identity = {"strategy": strategy, "start": start, "proxies": [o["meta"].get("final_metrics") for o in objs],
                        "manifest": sha, "teachers": teachers}
            run = fit(MergeTask(base, stacked, weights),
                      lambda b, e: ClipBatches(source, labels, student, b, epoch=e, seed=seed, train=True),
                      len(rows), s, out=out, identity=identity, seed=seed, code_version=code_version, compute=compute,
                      desc=f"merge {strategy} ({start} start)", optimizer="adam",
                      run_suffix="" if start == "uniform" else start)
        merged = blend({k: v.cpu() for k, v in stacked.items()}, {k: a.detach().cpu() for k, a in weights.per_key().items()})
        objective = merge_objective(merged, objs, source, labels, proxy_ce, student, compute) if proxy_ce else None
        runs.append({"start": start, "weights": weights.cpu(), "merged": merged, "objective": objective, "run": run})
    chosen = min(runs, key=lambda r: r["objective"]["merged_ce"]) if proxy_ce else runs[0]
    meta = checkpoint_meta(
        "merged", seed=seed, manifest_sha256=sha, code_version=code_version, run=chosen["run"], strategy=strategy,
        teachers=teachers, alpha=chosen["weights"].to_json(), objective=chosen["objective"], start=chosen["start"],
        starts=[{"start": r["start"], "merged_ce": None if r["objective"] is None else r["objective"]["merged_ce"],
                 "alpha_mean": dict(zip(teachers, r["weights"].alpha().detach().mean(0).tolist()))} for r in runs],
        best_by_val_top1=None if best is None else teachers[best], val_top1=val_acc, classes=classes,
        student=settings["student"], clips=settings.get("clips"),
        num_frames=objs[0]["meta"]["num_frames"], merge=dataclasses.asdict(m))
    return save_checkpoint(out, {"encoder": {k: v.contiguous() for k, v in chosen["merged"].items()}}, meta)


