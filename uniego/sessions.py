"""Long untrimmed ego videos for temporal action segmentation.

`results/{ds}/sessions.parquet`: one row per session (session_id, split, video, labels: a .npy of
one integer label per session frame, fps, n_frames, start_frame: the video frame the session
starts at, so a session can be the annotated span of a longer video, dataset); the
segmentation class list travels
in its metadata like the manifest's. `results/{ds}/clips/sessions.zarr`: the sliding windows,
decoded once for every encoder: window w of a session is centred on frame w x stride and
samples `num_frames` frames `frame_step` apart (clamped to the video), resized like the clip
cache. Sample ids are `<session>@<centre frame>`; `label` is the centre frame's label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from uniego.cache import ArraySpec, StoreWriter
from uniego.engine import whole_batches
from uniego.errors import UniegoError
from uniego.manifest import SPLITS, manifest_sha256, read_manifest, write_manifest
from uniego.video import decode_frames, open_video, resize_crop

COLUMNS = ["session_id", "split", "video", "labels", "fps", "n_frames", "start_frame", "dataset"]


def build_demo_sessions(root: str | Path, dataset: str) -> tuple[pd.DataFrame, list[str]]:
    """The demo's long sessions (sessions.csv); classes: the action classes, then `idle`."""
    import json

    root = Path(root)
    table_file, info_file = root / "sessions.csv", root / "demo.json"
    for f in (table_file, info_file):
        if not f.is_file():
            raise UniegoError(f"{f} does not exist: generate the demo data first", stage="sessions")
    info = json.loads(info_file.read_text())
    classes = list(info["classes"]) + ["idle"]
    if info.get("idle_label") != len(info["classes"]):
        raise UniegoError(f"{info_file}: idle_label {info.get('idle_label')} is not after the classes", stage="sessions")
    table = pd.read_csv(table_file, dtype={"session_id": str, "split": str})
    missing = [c for c in COLUMNS if c not in table.columns and c not in ("dataset", "start_frame")]
    if missing:
        raise UniegoError(f"{table_file}: missing column(s) {', '.join(missing)}", stage="sessions")
    for col in ("video", "labels"):
        table[col] = [str(root / p) for p in table[col]]
    table["dataset"] = dataset
    table["start_frame"] = 0
    validate_sessions(table, classes, source=str(table_file))
    return table[COLUMNS].reset_index(drop=True), classes


def build_sessions(spec: dict, ds: str, labels_dir: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """The dataset's sessions: the demo's generated ones, or those its adapter reads from
    segment annotations (labels written to `labels_dir`)."""
    from uniego.datasets import adapter, adapter_options, has_sessions

    labels_dir = Path(labels_dir)
    labels_dir.mkdir(parents=True, exist_ok=True)
    if spec["adapter"] == "demo":
        return build_demo_sessions(spec["root"], ds)
    mod = adapter(spec["adapter"])
    opts = adapter_options(spec, ds)
    if not has_sessions(spec, ds):
        raise UniegoError(f"dataset {ds} ({spec['adapter']}) has no segmentation sessions"
                          + (" (options.coarse is null)" if spec["adapter"] == "a101" else ""), stage="sessions")
    table, classes = mod.build_sessions(Path(spec["root"]), opts, ds, labels_dir)
    validate_sessions(table, classes, source=f"dataset {ds}")
    return table[COLUMNS].reset_index(drop=True), classes



def validate_sessions(table: pd.DataFrame, classes: list[str], *, source: str) -> None:
    problems = []
    for i, row in enumerate(table.itertuples(index=False)):
        where = f"{source} row {i + 2} (session {row.session_id!r})"
        if row.split not in SPLITS:
            problems.append(f"{where}: split {row.split!r} is not one of {', '.join(SPLITS)}")
        for col in ("video", "labels"):
            if not Path(getattr(row, col)).is_file():
                problems.append(f"{where}: {col} file {getattr(row, col)} does not exist")
        if Path(row.labels).is_file():
            y = np.load(row.labels)
            if y.ndim != 1 or len(y) != row.n_frames:
                problems.append(f"{where}: {row.labels} holds {y.shape} labels, expected one per frame ({row.n_frames})")
            elif len(y) and (y.min() < 0 or y.max() >= len(classes)):
                problems.append(f"{where}: {row.labels} has labels outside 0..{len(classes) - 1}")
    dup = table.session_id[table.session_id.duplicated()].tolist()
    if dup:
        problems.append(f"{source}: duplicate session ids {dup[:5]}")
    if problems:
        raise UniegoError("bad session annotations:\n  " + "\n  ".join(problems[:20]), stage="sessions")


write_sessions = write_manifest   # same parquet + class-list metadata format
read_sessions = read_manifest


def frame_labels(row) -> np.ndarray:
    return np.load(row.labels).astype(np.int64)


def window_centres(n_frames: int, stride: int) -> np.ndarray:
    return np.arange(0, n_frames, stride)


def window_indices(centre: int, n_frames: int, num: int, step: int) -> np.ndarray:
    """The `num` frames of the window centred on `centre`, `step` apart, clamped to the video."""
    return np.clip(np.floor(centre + (np.arange(num) - (num - 1) / 2) * step).astype(np.int64), 0, n_frames - 1)


def frames_to_windows(n_frames: int, stride: int) -> np.ndarray:
    """For every frame, the window whose centre is nearest (ties to the earlier one)."""
    n_windows = len(window_centres(n_frames, stride))
    return np.minimum(np.floor(np.arange(n_frames) / stride + 0.5 - 1e-9).astype(np.int64), n_windows - 1)


def window_table(sessions: pd.DataFrame, stride: int) -> pd.DataFrame:
    rows = []
    for s in sessions.itertuples(index=False):
        y = frame_labels(s)
        for c in window_centres(s.n_frames, stride):
            rows.append((f"{s.session_id}@{c:06d}", s.session_id, s.split, int(c), int(y[c])))
    return pd.DataFrame(rows, columns=["sample_id", "session_id", "split", "centre", "label"])


class _DecodeWindows(Dataset):
    def __init__(self, sessions, windows, ranges, num, step, size):
        self.sessions = {s.session_id: s for s in sessions.itertuples(index=False)}
        self.windows, self.ranges, self.num, self.step, self.size = windows, ranges, num, step, size

    def __len__(self):
        return len(self.ranges)

    def __getitem__(self, i):
        start, stop = self.ranges[i]
        frames, times = [], []
        part = self.windows.iloc[start:stop]
        for sid, group in part.groupby("session_id", sort=False):
            s = self.sessions[sid]
            vr, n, fps = open_video(s.video, sid, stage="sessions")
            if s.start_frame + s.n_frames > n:
                raise UniegoError(f"video {s.video} (session {sid}) has {n} frames, its labels cover frames "
                                  f"{s.start_frame}-{s.start_frame + s.n_frames - 1}", stage="sessions")
            idx = np.stack([window_indices(c, s.n_frames, self.num, self.step) for c in group.centre]) + s.start_frame
            need = np.unique(idx)
            decoded = resize_crop(decode_frames(vr, need, s.video, sid, stage="sessions"), self.size)
            frames.append(decoded[np.searchsorted(need, idx)])
            times.append((idx / fps).astype(np.float32))
        return start, stop, {"frames": np.concatenate(frames), "frame_time": np.concatenate(times),
                             "centre": part.centre.to_numpy(np.int32)}


def build_window_cache(sessions_path: str, out: str, settings: dict, *, workers: int = 2, code_version: str = "") -> Path:
    """Decode every session's sliding windows into `out` (resumable, staged like every store)."""
    from tqdm import tqdm

    sessions, classes = read_sessions(sessions_path)
    num, size, stride, step = settings["num_frames"], settings["size"], settings["stride"], settings["frame_step"]
    windows = window_table(sessions, stride)
    arrays = {"frames": ArraySpec((num, size, size, 3), "uint8", ("frame", "y", "x", "rgb")),
              "frame_time": ArraySpec((num,), "float32", ("frame",)), "centre": ArraySpec((), "int32", ())}
    attrs = {"kind": "session_windows", "settings": settings, "manifest_sha256": manifest_sha256(sessions_path),
             "sessions": str(sessions_path), "classes": classes, "code_version": code_version,
             "temporal_views": None, "decoder": "decord",
             "resize": "short side -> size (bilinear, antialias), centre crop"}
    writer = StoreWriter(out, sample_ids=windows.sample_id, splits=windows.split, labels=windows.label, arrays=arrays,
                         attrs=attrs, chunk_samples=16, stage="sessions")
    ranges = writer.pending()
    loader = DataLoader(_DecodeWindows(sessions, windows, ranges, num, step, size), batch_size=None,
                        collate_fn=whole_batches, num_workers=workers)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for start, stop, data in tqdm(loader, total=len(ranges), desc="session windows", leave=False, disable=None):
        writer.write(start, stop, **data)
    return writer.finalize()
