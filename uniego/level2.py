"""Level II: merge the proxies (eq. 2), then Selective Proxy Distillation (eq. 4-6)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from uniego import distributed
from uniego.cache import read_array
from uniego.config import ComputeSettings, SPDSettings, TrainSettings, parse_merge, parse_spd, parse_student, parse_train
from uniego.data import ClipBatches, ClipSource, probe_batch
from uniego.device import resolve_device
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest
from uniego.merge import MergeWeights, blend, stack_states, start_logits
from uniego.metrics import topk_accuracy
from uniego.proxy import encoder_from_checkpoint, load_proxy, predict
from uniego.spd import select_proxies, spd_loss
from uniego.stages.runner import checkpoint_meta, fit, run_folder, save_checkpoint
from uniego.teachers.registry import get_teacher

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


def _proxies(paths: dict, teachers: list[str], sha: str) -> list[dict]:
    """The proxies of `teachers`, in that order: exactly those (a proxy given but not listed, or
    listed but not given, is an error rather than silently left out), each of its own teacher."""
    extra, missing = sorted(set(paths) - set(teachers)), [t for t in teachers if t not in paths]
    if extra or missing:
        raise UniegoError(f"the merge is given the proxies of {sorted(paths)} but level1.teachers lists {teachers}"
                          + (f": {extra} not listed" if extra else "") + (f": {missing} missing" if missing else "")
                          + "; give exactly the listed teachers' proxies", stage="merge")
    objs = []
    for t in teachers:
        obj = load_proxy(paths[t])
        if obj["meta"]["manifest_sha256"] != sha:
            raise UniegoError(f"proxy {paths[t]} was trained on another manifest; retrain it", stage="merge")
        if obj["meta"].get("teacher") not in (None, t):
            raise UniegoError(f"{paths[t]} is the proxy of {obj['meta']['teacher']}, given as {t}'s", stage="merge")
        objs.append(obj)
    return objs


def _split_source(table, split: str, clips: str, sha: str):
    rows = np.flatnonzero(table.split.to_numpy() == split)
    if len(rows) == 0:
        raise UniegoError(f"the manifest has no {split} samples", stage="level2")
    return rows, ClipSource(clips, list(table.sample_id.iloc[rows]), manifest_sha256=sha)


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
    objs = _proxies(proxies, teachers, sha)
    stacked = stack_states([o["encoder"] for o in objs])
    base = encoder_from_checkpoint(objs[0], student)
    keys = [k for k, v in stacked.items() if v.is_floating_point()]
    device = resolve_device(compute)
    out = Path(out)
    best, val_acc = None, None
    if strategy == "best":
        rows, source = _split_source(table, "val", clips, sha)
        y = table.label.to_numpy()[rows]
        val_acc = [topk_accuracy(predict(encoder_from_checkpoint(o, student), source, student, device=device,
                                         batch_size=compute.batch_size, workers=compute.workers)[1], y) for o in objs]
        best = int(np.argmax(val_acc))
    rows, source = _split_source(table, "train", clips, sha)
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
        num_frames=objs[0]["meta"]["num_frames"], merge=dataclasses.asdict(m))
    return save_checkpoint(out, {"encoder": {k: v.contiguous() for k, v in chosen["merged"].items()}}, meta)


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
        if s.normalize == "official":  # the global batch's count of distilled samples, per rank
            count, ranks = distributed.total((sel.sum(1) > 0).sum())
            distilled = max(count, 1) / ranks
        out = spd_loss(u, z, h_p, z_p, y, sel, beta_feat=s.beta_feat, beta_logit=s.beta_logit, beta_cls=s.beta_cls,
                       tau=s.tau, normalize=s.normalize, distilled=distilled)
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
    """SPD from the merged initialisation against the proxies' cached outputs; write `out`."""
    student, train_s = parse_student(settings["student"]), parse_train(settings["train"])
    spd, teachers, seed = parse_spd(settings["spd"]), settings["teachers"], settings["seed"]
    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    rows, source = _split_source(table, "train", clips, sha)
    ids = list(table.sample_id.iloc[rows])
    feats, logits = [], []
    for t in teachers:
        f, _ = read_array(outputs[t], "feature", manifest_sha256=sha, sample_ids=ids, stage="spd")
        z, _ = read_array(outputs[t], "logits", manifest_sha256=sha, sample_ids=ids, stage="spd")
        feats.append(f)
        logits.append(z)
    h_p, z_p = torch.from_numpy(np.stack(feats)).float(), torch.from_numpy(np.stack(logits)).float()
    init = load_proxy(merged)
    if init["meta"].get("manifest_sha256") != sha:
        raise UniegoError(f"{merged} was built from another manifest; rebuild it", stage="spd")
    model = SPDModel(encoder_from_checkpoint(init, student), spd.feature_projection)
    task = SPDTask(model, h_p, z_p, [get_teacher(t).view for t in teachers], spd, len(classes))
    labels = table.label.to_numpy()[rows]
    identity = {"merged": init["meta"].get("alpha"), "teachers": teachers, "spd": dataclasses.asdict(spd), "manifest": sha}
    probe = probe_batch(source, labels, student, settings.get("probe_samples", 0))
    run = fit(task, lambda b, e: ClipBatches(source, labels, student, b, epoch=e, seed=seed, train=True), len(rows), train_s,
              out=out, identity=identity, seed=seed, code_version=code_version, compute=compute, desc="spd", probe=probe)
    epochs = [json.loads(line) for line in (run_folder(out) / "metrics.jsonl").read_text().splitlines()]
    per_proxy = np.sum([e["selected_per_proxy"] for e in epochs], axis=0).tolist()
    per_class = np.sum([e["selected_per_class"] for e in epochs], axis=0).tolist()
    meta = checkpoint_meta("student", seed=seed, manifest_sha256=sha, code_version=code_version, run=run, method="uniego",
                           teachers=teachers, classes=classes, num_frames=init["meta"]["num_frames"], init=str(merged),
                           spd=dataclasses.asdict(spd), train=train_s.__dict__, ablation=settings.get("ablation"),
                           selection={"per_proxy": dict(zip(teachers, per_proxy)), "per_class": per_class,
                                      "samples_seen": int(sum(e["samples_seen"] for e in epochs))})
    tensors = {"encoder": model.encoder.cpu().state_dict()}
    if model.proj is not None:
        tensors["proj"] = model.proj.cpu().state_dict()
    return save_checkpoint(out, tensors, meta)
