"""Temporal action segmentation (paper Table 4): an encoder's dense features of the long ego
videos, a fixed temporal model (MS-TCN) trained on the train videos' features, and the
MS-TCN evaluation (F1@{10,25,50}, Edit, Acc) on the test videos.

Dense features: the encoder's CLS (centre crop) on every sliding window of
`clips/sessions.zarr`, one feature per `stride` frames, into
`eval/{model}/dense_features.zarr`. The temporal model runs at that rate; its predictions are
spread to every video frame (each frame takes its nearest window) and scored against the
frame labels. Only the temporal model is trained here; the encoder stays frozen.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from uniego.cache import ArraySpec, StoreWriter, open_store, read_array, strings
from uniego.checkpoints import check_checkpoint_fits, encoder_from_checkpoint, load_model, predict
from uniego.config import ComputeSettings, SegmentationSettings, TrainSettings, parse_segmentation, parse_student
from uniego.data import ClipSource
from uniego.device import resolve_device
from uniego.errors import UniegoError
from uniego.io import atomic_write_json
from uniego.manifest import manifest_sha256
from uniego.metrics import segmentation_scores
from uniego.models.mstcn import MSTCN, mstcn_loss
from uniego.sessions import frame_labels, frames_to_windows, read_sessions
from uniego.stages.runner import fit


def dense_features(sessions: str, windows: str, model: str, out: str, settings: dict, *,
                   compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> Path:
    """The frozen encoder's CLS on every session window -> `features` [W, D] (+ `centre`)."""
    student = parse_student(settings["student"])
    sha = manifest_sha256(sessions)
    g = open_store(windows, manifest_sha256=sha, expect={"kind": "session_windows"}, stage="segmentation")
    ids, splits, labels = strings(g["sample"][:]), strings(g["split"][:]), np.asarray(g["label"][:])
    centre = np.asarray(g["centre"][:])
    obj = load_model(model, stage="segmentation")
    source = ClipSource(windows, list(ids), manifest_sha256=sha, expect={"kind": "session_windows"}, stage="segmentation")
    check_checkpoint_fits(obj, model, num_frames=source.num_frames, stage="segmentation")
    encoder = encoder_from_checkpoint(obj, student)
    feats, _ = predict(encoder, source, student, device=resolve_device(compute), batch_size=compute.batch_size,
                       workers=compute.workers)
    if not np.isfinite(feats).all():
        raise UniegoError(f"model {model} produced NaN/Inf features on the session windows", stage="segmentation")
    writer = StoreWriter(out, sample_ids=ids, splits=splits, labels=labels,
                         arrays={"features": ArraySpec((feats.shape[1],), "float32", ("channel",)),
                                 "centre": ArraySpec((), "int32", ())},
                         attrs={"kind": "dense_features", "model": str(model), "model_meta_kind": obj["meta"].get("kind"),
                                "windows": str(windows), "window_settings": dict(g.attrs["settings"]),
                                "manifest_sha256": sha, "feature": "CLS after the final norm, centre crop",
                                "code_version": code_version}, stage="segmentation")
    writer.write(0, len(ids), features=feats, centre=centre)
    return writer.finalize()


class _Sequences(torch.utils.data.Dataset):
    def __init__(self, seqs, batches):
        self.seqs, self.batches = seqs, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, b):
        (i,) = self.batches[b]           # batch size 1: one video per step, as MS-TCN
        x, y = self.seqs[int(i)]
        return {"x": torch.from_numpy(x.T[None]), "label": torch.from_numpy(y[None])}


class SegmentationTask:
    def __init__(self, model: MSTCN, s: SegmentationSettings):
        self.model, self.s = model, s

    def step(self, batch: dict) -> dict:
        z = self.model(batch["x"])
        return {"loss": mstcn_loss(z, batch["label"], smooth_weight=self.s.smooth_weight, tau=self.s.smooth_tau)}


def _sequences(features: str, sessions, sha: str):
    """session id -> (features [W, D], window labels [W]) in window order."""
    values, ids = read_array(features, manifest_sha256=sha, stage="segmentation")
    g = open_store(features, stage="segmentation")
    labels, centre = np.asarray(g["label"][:]).astype(np.int64), np.asarray(g["centre"][:])
    owner = np.array([i.rsplit("@", 1)[0] for i in ids])
    stride = g.attrs["window_settings"]["stride"]
    out = {}
    for s in sessions.itertuples(index=False):
        rows = np.flatnonzero(owner == s.session_id)
        if len(rows) == 0:
            raise UniegoError(f"{features} has no windows of session {s.session_id}; rebuild it", stage="segmentation")
        rows = rows[np.argsort(centre[rows])]
        expect = np.arange(0, s.n_frames, stride)
        if not np.array_equal(centre[rows], expect):
            raise UniegoError(f"{features}: session {s.session_id} windows do not cover its {s.n_frames} frames "
                              f"every {stride}; rebuild it", stage="segmentation")
        out[s.session_id] = (values[rows].astype(np.float32), labels[rows])
    return out, stride


def train_and_score(sessions_path: str, features: str, out: str, settings: dict, *, name: str = "",
                    compute: ComputeSettings = ComputeSettings(), code_version: str = "") -> dict:
    """Train MS-TCN on the train sessions' features, predict the test sessions, score them.
    Writes `out` (JSON) and `<out stem>.predictions.npz` (frame predictions per test video)."""
    s, seed = parse_segmentation(settings["segmentation"]), settings["seed"]
    sessions, classes = read_sessions(sessions_path)
    sha = manifest_sha256(sessions_path)
    seqs, stride = _sequences(features, sessions, sha)
    train_ids = sessions.session_id[sessions.split == "train"].tolist()
    test = sessions[sessions.split == "test"]
    if not train_ids or test.empty:
        raise UniegoError(f"{sessions_path} needs train and test sessions (has {len(train_ids)} / {len(test)})",
                          stage="segmentation")
    unknown = [b for b in s.background if b not in classes]
    if unknown:
        raise UniegoError(f"segmentation.background: {unknown} are not classes ({', '.join(classes)})", stage="segmentation")
    dim = next(iter(seqs.values()))[0].shape[1]
    torch.manual_seed(seed)
    model = MSTCN(dim, len(classes), stages=s.stages, layers=s.layers, channels=s.channels, dropout=s.dropout)
    train_seqs = [seqs[i] for i in train_ids]
    ts = TrainSettings(epochs=s.epochs, lr=s.lr, lr_steps=(0,), lr_factors=(1.0,), momentum=0.0, nesterov=False,
                       weight_decay=0.0, batch_size=1)
    device = resolve_device(compute)
    out = Path(out)
    identity = {"features": dict(open_store(features, stage="segmentation").attrs).get("fingerprint"),
                "sessions": sha, "segmentation": settings["segmentation"]}
    fit(SegmentationTask(model, s), lambda batches, epoch: _Sequences(train_seqs, batches), len(train_seqs), ts, out=out,
        identity=identity, seed=seed, code_version=code_version, compute=dataclasses.replace(compute, workers=0),
        desc="segmentation", optimizer="adam", precision="fp32")   # the sequences are in memory: no loader workers
    model.eval()
    preds, gts, names = [], [], []
    with torch.inference_mode():
        for row in test.itertuples(index=False):
            x, _ = seqs[row.session_id]
            z = model(torch.from_numpy(x.T[None]).to(device))[-1, 0]        # last stage [C, W]
            window_pred = z.argmax(0).cpu().numpy()
            preds.append(window_pred[frames_to_windows(row.n_frames, stride)])
            gts.append(frame_labels(row))
            names.append(row.session_id)
    bg = tuple(classes.index(b) for b in s.background)
    scores = segmentation_scores(preds, gts, background=bg)
    result = {"model": name or out.parent.name, "features": str(features), **scores, "test_videos": len(names),
              "train_videos": len(train_ids), "frames": int(sum(len(g) for g in gts)), "feature_stride": stride,
              "temporal_model": f"MS-TCN {s.stages}x{s.layers}x{s.channels}", "background": list(s.background),
              "seed": seed}
    tmp = out.with_name(out.stem + ".predictions.partial.npz")
    np.savez(tmp, **{f"pred/{n}": p for n, p in zip(names, preds)}, **{f"gt/{n}": g for n, g in zip(names, gts)},
             classes=np.array(classes))
    os.replace(tmp, out.with_name(out.stem + ".predictions.npz"))
    atomic_write_json(out, result)
    return result
