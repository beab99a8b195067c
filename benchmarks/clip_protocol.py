"""10. The students' clips at the paper's sizes (issue 19): what keeping the whole frame width
(`clips.width`) costs against the centre square. Clip stores of 8 frames at 256 x 455 (16:9) and
at 256 x 256, written by uniego's clip-cache writer (zstd + crc32c chunks, one clip per chunk)
from the same frames, then read by the training loader (`ClipBatches`: the chunk read, the
short-side jitter to 256-320, a random 224 crop anywhere in the frame, flip, normalise) in one
process on one core. Reported: bytes per clip on disk, loader clips/s per core, and the projected
cache size and loader cores of EgoExo-Fitness, Assembly101 and Ego-Exo4D (the paper's clip
counts). Frames: the demo renderer's ego video upscaled to 256 px, which compresses better than
camera video; the raw size (no compression) is the upper bound and is given too.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, demo_dataset

FULL = dict(clips=48, repeats=3)
SMOKE = dict(clips=6, repeats=1)
PAPER = dict(num_frames=8, size=256, width=455, input_size=224, train_jitter=(256, 320), pool=16)
CLIPS = {"EgoExo-Fitness": 3522 + 912, "Assembly101": 46202 + 15307, "Ego-Exo4D": 30660 + 9356}   # train + test, paper
GPU_CLIPS_PER_S = 100.0   # assumed TimeSformer-B training rate of one GPU (benchmarks/gpu.py measures it where a GPU is lent)


def _frames(d: dict, n: int, width: int) -> list[np.ndarray]:
    from uniego.manifest import read_manifest
    from uniego.video import read_frames, resize_crop
    table, _ = read_manifest(d["manifest"])
    out = []
    for r in table.head(n).itertuples():
        frames, _ = read_frames(r.ego_video, r.sample_id, r.start, r.end, PAPER["num_frames"])
        out.append(resize_crop(frames, PAPER["size"], width))
    return out


def _store(path: Path, clips: list[np.ndarray], width: int) -> int:
    """The clip cache of these clips (uniego's writer); its bytes on disk."""
    from uniego.cache import StoreWriter
    from uniego.config import ClipSettings
    from uniego.stages.data.clips import clip_arrays
    n = len(clips)
    settings = ClipSettings(num_frames=PAPER["num_frames"], size=PAPER["size"], width=width, sampling="uniform", stride=2)
    w = StoreWriter(path, sample_ids=[f"c{i:04d}" for i in range(n)], splits=["train"] * n, labels=[0] * n,
                    arrays=clip_arrays("ego", settings), attrs={"kind": "clips", "view": "ego", "settings": settings.used(),
                                                               "manifest_sha256": "bench"}, chunk_samples=1, stage="bench")
    for i in range(n):
        w.write(i, i + 1, frames=clips[i][None], frame_time=np.zeros((1, PAPER["num_frames"]), np.float32))
    w.finalize()
    return sum(f.stat().st_size for f in (path / "frames").rglob("*") if f.is_file())


def _loader_rate(path: Path, n: int, repeats: int) -> float:
    """Training views per second, one process, one thread."""
    import torch

    from uniego.config import parse_student
    from uniego.data import ClipBatches, ClipSource
    student = parse_student({"arch": "timesformer_test", "init": "random", "input_size": PAPER["input_size"],
                             "train_jitter": list(PAPER["train_jitter"])})
    source = ClipSource(str(path), [f"c{i:04d}" for i in range(n)], manifest_sha256="bench")
    batches = [np.arange(i, min(i + 8, n)) for i in range(0, n, 8)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for epoch in range(repeats):
            data = ClipBatches(source, np.zeros(n, np.int64), student, batches, epoch=epoch, seed=0, train=True)
            t = time.perf_counter()
            for b in range(len(data)):
                data[b]
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return n / best


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    n, repeats = (SMOKE if smoke else FULL).values()
    d = demo_dataset(work, clips_per_class=max(SMOKE_CLIPS_PER_CLASS, -(-n // 9)))
    wide, square = _frames(d, n, PAPER["width"]), _frames(d, n, PAPER["size"])
    n = len(wide)
    b_wide = _store(work / "wide.zarr", wide, PAPER["width"]) / n
    b_square = _store(work / "square.zarr", square, PAPER["size"]) / n
    r_wide = _loader_rate(work / "wide.zarr", n, repeats)
    r_square = _loader_rate(work / "square.zarr", n, repeats)
    raw = PAPER["num_frames"] * PAPER["size"] * PAPER["width"] * 3
    ego = (PAPER["num_frames"] + PAPER["pool"]) / PAPER["num_frames"]   # the test clip and the training pool
    projection = "; ".join(f"{name} {count:,} clips: {count * b_wide / 2**30:.1f} GiB as measured, <= {count * raw / 2**30:.0f} GiB "
                           f"raw (the ego cache with clips.pool {PAPER['pool']}: {ego * count * b_wide / 2**30:.1f} GiB, "
                           f"<= {ego * count * raw / 2**30:.0f} GiB)" for name, count in CLIPS.items())
    cores = GPU_CLIPS_PER_S / r_wide
    return [Result("clip cache bytes per clip, whole width (256 x 455) vs centre square (256 x 256)", b_wide / b_square, "<= 1.8",
                   b_wide / b_square <= 1.8,
                   f"{b_wide / 2**20:.2f} vs {b_square / 2**20:.2f} MiB per 8-frame clip on disk (raw {raw / 2**20:.2f} MiB); "
                   f"projected caches: {projection}"),
            Result("training loader clips/s per core, whole width vs centre square", r_wide / r_square, ">= 0.5", r_wide / r_square >= 0.5,
                   f"{r_wide:.1f} vs {r_square:.1f} clips/s on one core (read + jitter 256-320 + 224 crop + flip); at an assumed "
                   f"{GPU_CLIPS_PER_S:.0f} training clips/s per GPU (not measured here: no GPU), one GPU needs {cores:.1f} loader cores")]
