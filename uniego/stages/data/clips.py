"""`uniego clips`: the decoded-clip cache `results/{ds}/clips/{view}.zarr` (decode once, read many).

view ego / exo: `frames` (sample, frame, y, x, rgb) uint8 (clips.size high, clips.width wide: the
whole frame, or the centre square when width is null), one clip per chunk, plus
`frame_time` (s). view skeleton: `keypoints` (sample, frame, joint, coord) float32 (x, y in
exo-video pixels, score) and `img_hw` (the exo frame size the pixels refer to).
Decoding runs in DataLoader workers; the main process writes. Resumable per chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uniego.cache import ArraySpec, StoreWriter
from uniego.config import VIEW_KEYS, ClipSettings
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest
from uniego.video import read_frames, read_skeleton, resize_crop

VIEWS = ("ego", "exo", "skeleton")


def _as_is(item):
    """DataLoader collate for batch_size=None that keeps numpy arrays (no torch conversion)."""
    return item




def clip_arrays(view: str, settings: ClipSettings, temporal_views: int = 0) -> dict[str, ArraySpec]:
    missing = [k for k in VIEW_KEYS[view] if getattr(settings, k) is None and k not in ("width", "pool")]   # optional
    if missing:
        raise UniegoError(f"clips settings for view {view} lack {', '.join(missing)}", stage="clips")
    if view == "skeleton":
        T = settings.skeleton_frames * settings.skeleton_clips   # the clips one after the other
        return {"keypoints": ArraySpec((T, 17, 3), "float32", ("frame", "joint", "coord")),
                "img_hw": ArraySpec((2,), "int32", ("hw",)),
                "frame_time": ArraySpec((T,), "float32", ("frame",))}
    T, S, W = settings.num_frames, settings.size, settings.width or settings.size
    if temporal_views:
        V = temporal_views
        return {"frames": ArraySpec((V, T, S, W, 3), "uint8", ("temporal_view", "frame", "y", "x", "rgb")),
                "frame_time": ArraySpec((V, T), "float32", ("temporal_view", "frame"))}
    arrays = {"frames": ArraySpec((T, S, W, 3), "uint8", ("frame", "y", "x", "rgb")),
              "frame_time": ArraySpec((T,), "float32", ("frame",))}
    if view == "ego" and settings.pool:   # the students' training clips are drawn from these
        P = settings.pool
        arrays |= {"pool_frames": ArraySpec((P, S, W, 3), "uint8", ("pool_frame", "y", "x", "rgb")),
                   "pool_time": ArraySpec((P,), "float32", ("pool_frame",))}
    return arrays


class _Decode(Dataset):
    def __init__(self, table, view: str, settings: ClipSettings, ranges, temporal_views: int = 0):
        self.table, self.view, self.s, self.ranges, self.views = table, view, settings, ranges, temporal_views

    def __len__(self):
        return len(self.ranges)

    def __getitem__(self, i):
        start, stop = self.ranges[i]
        out = {}
        for j in range(start, stop):
            row = self.table.iloc[j]
            if self.view == "skeleton":
                kp, hw, t = read_skeleton(row.skeleton, row.sample_id, row.start, row.end, self.s.skeleton_frames,
                                          clips=self.s.skeleton_clips, sampling=self.s.skeleton_sampling)
                item = {"keypoints": kp, "img_hw": hw, "frame_time": t}
            elif self.views:
                decoded = [read_frames(getattr(row, f"{self.view}_video"), row.sample_id, row.start, row.end,
                                       self.s.num_frames, sampling=self.s.sampling, stride=self.s.stride, view=v,
                                       views=self.views) for v in range(self.views)]
                item = {"frames": np.stack([resize_crop(f, self.s.size, self.s.width) for f, _ in decoded]),
                        "frame_time": np.stack([t for _, t in decoded])}
            else:
                frames, t = read_frames(getattr(row, f"{self.view}_video"), row.sample_id, row.start, row.end,
                                        self.s.num_frames, sampling=self.s.sampling, stride=self.s.stride)
                item = {"frames": resize_crop(frames, self.s.size, self.s.width), "frame_time": t}
                if self.view == "ego" and self.s.pool:
                    pool, pt = read_frames(row.ego_video, row.sample_id, row.start, row.end, self.s.pool,
                                           sampling=self.s.sampling, stride=self.s.stride)
                    item |= {"pool_frames": resize_crop(pool, self.s.size, self.s.width), "pool_time": pt}
            for k, v in item.items():
                out.setdefault(k, []).append(v)
        return start, stop, {k: np.stack(v) for k, v in out.items()}


def build_clip_cache(manifest: str | Path, view: str, out: str | Path, settings: ClipSettings, *,
                     workers: int = 2, code_version: str = "", chunk_samples: int | None = None,
                     temporal_views: int = 0) -> Path:
    """Decode every manifest clip's `view` into the store at `out` (resuming a staged one).
    temporal_views = V > 0: the test split only, V temporal views per clip (`frames` gains a
    `temporal_view` dimension): the multi-view test protocol's cache."""
    from tqdm import tqdm

    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}")
    table, classes = read_manifest(manifest)
    if temporal_views:
        if view == "skeleton":
            raise UniegoError("temporal test views are for the RGB views", stage="clips")
        table = table[table.split == "test"].reset_index(drop=True)
        if len(table) == 0:
            raise UniegoError(f"manifest {manifest} has no test samples", stage="clips")
    arrays = clip_arrays(view, settings, temporal_views)
    attrs = {"kind": "clips", "view": view, "settings": settings.used(), "manifest_sha256": manifest_sha256(manifest),
             "temporal_views": temporal_views or None, "split": "test" if temporal_views else None,
             "manifest": str(manifest), "classes": classes, "code_version": code_version,
             "decoder": "decord" if view != "skeleton" else "numpy",
             "resize": "cover size x width, aspect kept (bilinear, antialias), centre crop" if view != "skeleton" else None}
    writer = StoreWriter(out, sample_ids=table.sample_id, splits=table.split, labels=table.label, arrays=arrays,
                         attrs=attrs, chunk_samples=chunk_samples or (1 if view != "skeleton" else None), stage="clips")
    ranges = writer.pending()
    loader = DataLoader(_Decode(table, view, settings, ranges, temporal_views), batch_size=None, collate_fn=_as_is, num_workers=workers,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for start, stop, data in tqdm(loader, total=len(ranges), desc=f"clips {view}", leave=False, disable=None):
        writer.write(start, stop, **data)
    return writer.finalize()
