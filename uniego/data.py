"""Training and evaluation clips from the ego clip cache, with TimeSformer-style augmentation.

Train view: the cached clip (S high, the frame's width or S wide) with its short side resized to
J, J uniform in `train_jitter` (the official 256-320 short-side jitter, scaled), a random
`input_size` crop anywhere in it, horizontal flip p = 0.5.
Eval view: short side resized to train_jitter[0], then the centre crop (1 crop), or the left /
centre / right crops along the long side (3 crops), as TimeSformer's `uniform_crop`.
Randomness comes from (seed, epoch, sample), so it does not depend on workers or on resuming.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from uniego.cache import open_store, read_rows, strings, zarr_module
from uniego.config import StudentSettings
from uniego.errors import UniegoError
from uniego.student import MEAN, STD, student_norm

EGO_CLIPS = {"kind": "clips", "view": "ego"}   # what every student stage reads


class ClipSource:
    """Reads clips [T, S, S, 3] uint8 of the given manifest rows from a clip cache, lazily;
    from a temporal-views cache (`uniego clips --temporal-views`), temporal view `temporal_view`.
    The store must hold what the caller expects (`expect`: its attributes, by default an ego
    clip cache; `clip_settings`: the clip settings it was built with, when the caller knows
    them), and a damaged chunk is a named error (`uniego.cache.read_rows`)."""

    def __init__(self, clips_path: str, sample_ids, *, manifest_sha256: str, temporal_view: int | None = None,
                 expect: dict | None = EGO_CLIPS, clip_settings: dict | None = None, stage: str = "train"):
        expect = {**(expect or {}), **({"settings": clip_settings} if clip_settings is not None else {})}
        g = open_store(clips_path, manifest_sha256=manifest_sha256, expect=expect, stage=stage)
        ids = strings(g["sample"][:])
        pos = {s: i for i, s in enumerate(ids)}
        missing = [s for s in sample_ids if s not in pos]
        if missing:
            raise UniegoError(f"clip cache {clips_path} lacks samples {missing[:5]}", stage=stage)
        self.path, self.rows, self.stage = clips_path, np.array([pos[s] for s in sample_ids]), stage
        views = g.attrs.get("temporal_views")
        if (temporal_view is None) != (views is None) or (views is not None and not 0 <= temporal_view < views):
            raise UniegoError(f"clip cache {clips_path} has temporal views {views}; asked for view {temporal_view}", stage=stage)
        self.temporal_view = temporal_view
        self.num_frames = g["frames"].shape[1 if views is None else 2]
        self.pool = g["pool_frames"].shape[1] if "pool_frames" in g else None   # training clips drawn from it
        self.sampling = (g.attrs.get("settings") or {}).get("sampling")
        if self.pool is not None and self.sampling not in ("uniform", "stride"):
            raise UniegoError(f"clip cache {clips_path} has a training pool but records no clip sampling (uniform | stride) "
                              "in its settings: rebuild it", stage=stage)
        self._frames = self._pool = None

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        if self._frames is None:  # opened per worker process
            self._frames = zarr_module().open_group(self.path, mode="r", use_consolidated=False)["frames"]
        row = int(self.rows[i])
        return read_rows(self._frames, row if self.temporal_view is None else (row, self.temporal_view), store=self.path,
                         stage=self.stage)

    def train_clip(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """A training clip of sample i drawn anew from its pool (`clips.pool`), [T, S, W, 3]:
        - stride sampling: a random window of T consecutive pool frames (the pool's frames are
          `stride` apart) among the windows that lie inside the segment (no frame repeated by the
          clamp at its ends); a segment shorter than one window gives the centred window, which is
          the test clip;
        - uniform sampling: every m-th pool frame (m = pool / T) from a random first one in
          [0, m): one frame from each of the T equal bins of the segment, at a random place in it.
        Without a pool: the fixed clip (`self[i]`)."""
        if self.pool is None:
            return self[i]
        if self._pool is None:   # opened per worker process
            g = zarr_module().open_group(self.path, mode="r", use_consolidated=False)
            self._pool, self._pool_time = g["pool_frames"], g["pool_time"]
        row, T, P = int(self.rows[i]), self.num_frames, self.pool
        if self.sampling == "uniform":
            m = P // T
            first = int(rng.integers(0, m))
            return read_rows(self._pool, (row, slice(first, first + m * T, m)), store=self.path, stage=self.stage)
        times = read_rows(self._pool_time, row, store=self.path, stage=self.stage)
        distinct = np.diff(times) > 0   # False where the clamp repeated a frame
        inside = [s for s in range(P - T + 1) if distinct[s:s + T - 1].all()]
        s = int(inside[rng.integers(0, len(inside))]) if inside else (P - T) // 2
        return read_rows(self._pool, (row, slice(s, s + T)), store=self.path, stage=self.stage)


def make_view(frames: np.ndarray, settings: StudentSettings, *, train: bool, rng: np.random.Generator | None = None,
              crop: int = 1, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> normalised float [3, T, I, I]. The short side is resized to J (train:
    uniform in train_jitter; eval: its low end), the long side in proportion. Train: a random I x I
    crop anywhere in the frame, then a flip with p 0.5. Eval crop 0 / 1 / 2: first, centre, last
    along the long side (left / centre / right of a landscape frame), centred across it, with the
    centre at ceil((J' - I) / 2) as TimeSformer's `uniform_crop` (facebookresearch/TimeSformer,
    timesformer/datasets/transform.py)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)
    I = settings.input_size
    lo, hi = settings.train_jitter
    J = int(rng.integers(lo, hi + 1)) if train else lo
    J = max(J, I)
    H, W = x.shape[-2:]
    h, w = (J, max(J, round(J * W / H))) if H <= W else (max(J, round(J * H / W)), J)
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    if train:
        top, left = int(rng.integers(0, h - I + 1)), int(rng.integers(0, w - I + 1))
        x = x[..., top:top + I, left:left + I]
        if rng.random() < 0.5:
            x = x.flip(-1)
    else:
        top, left = math.ceil((h - I) / 2), math.ceil((w - I) / 2)
        if w >= h:
            left = (0, left, w - I)[crop]
        else:
            top = (0, top, h - I)[crop]
        x = x[..., top:top + I, left:left + I]
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.transpose(0, 1).contiguous()


class ClipBatches(Dataset):
    """Item i = batch i of an epoch: {"clip" [B,3,T,I,I], "label" [B], "index" [B]}."""

    def __init__(self, source: ClipSource, labels, settings: StudentSettings, batches, *, epoch: int, seed: int, train: bool,
                 crop: int = 1):
        self.source, self.labels, self.s = source, np.asarray(labels), settings
        self.batches, self.epoch, self.seed, self.train, self.crop = batches, epoch, seed, train, crop

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, b: int) -> dict:
        idx = self.batches[b]
        mean, std = student_norm(self.s.arch)
        clips = []
        for i in idx:
            rng = np.random.default_rng([self.seed, self.epoch, int(i)]) if self.train else None
            frames = self.source.train_clip(int(i), rng) if self.train else self.source[int(i)]
            clips.append(make_view(frames, self.s, train=self.train, rng=rng, crop=self.crop, mean=mean, std=std))
        return {"clip": torch.stack(clips), "label": torch.as_tensor(self.labels[idx], dtype=torch.long),
                "index": torch.as_tensor(np.asarray(idx), dtype=torch.long)}


def probe_batch(source: ClipSource, labels, settings: StudentSettings, n: int) -> dict | None:
    """The first n samples (eval view, centre crop) as one fixed batch: the gradient-conflict
    probe. None when n is 0."""
    if not n:
        return None
    idx = np.arange(min(n, len(source)))
    return ClipBatches(source, labels, settings, [idx], epoch=0, seed=0, train=False)[0]
