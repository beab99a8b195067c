"""7. Memory: peak RSS of `uniego extract` (a fresh process each) on a dataset and on the same
dataset grown 4x (every clip repeated under new ids, 128 px clip caches). Target: < 1.2x
(extraction streams chunks; it never holds the dataset)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, demo_dataset

FULL = dict(clips_per_class=12, size=128)
SMOKE = dict(clips_per_class=SMOKE_CLIPS_PER_CLASS, size=64)

_CHILD = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
          "sys.stderr.write(r.stderr[-2000:]) if r.returncode else None; "
          "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def _grown(manifest: str, out: Path, times: int) -> Path:
    import pandas as pd

    from uniego.manifest import read_manifest, write_manifest

    table, classes = read_manifest(manifest)
    grown = pd.concat([table.assign(sample_id=table.sample_id + f"_r{r}") for r in range(times)], ignore_index=True)
    write_manifest(grown, classes, out)
    return out


def _peak_rss_mb(manifest: Path, clips: Path, out: Path) -> float:
    teacher = '{"teacher": {"key": "ego_dino", "arch": "dinov2_test", "weights": "random"}, "seed": 0}'
    cmd = [sys.executable, "-m", "uniego", "extract", "--settings", teacher, "--teacher", "ego_dino", "--manifest", str(manifest),
           "--clips", f"ego={clips}", "--out", str(out), "--device", "cpu", "--workers", "0", "--batch-size", "8"]
    rc, kb = subprocess.run([sys.executable, "-c", _CHILD, *cmd], capture_output=True, text=True, check=True).stdout.split()
    if rc != "0":
        raise RuntimeError(f"uniego extract failed ({rc})")
    return int(kb) / 1024


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.config import ClipSettings
    from uniego.stages.data.clips import build_clip_cache

    clips_per_class, size = (SMOKE if smoke else FULL).values()
    d = demo_dataset(work, clips_per_class=clips_per_class, size=64)
    settings = ClipSettings(num_frames=8, size=size, sampling="uniform", stride=2, skeleton_frames=16, skeleton_clips=1, skeleton_sampling="uniform")
    rss = {}
    for times in (1, 4):
        m = _grown(d["manifest"], work / f"manifest{times}.parquet", times)
        clips = build_clip_cache(m, "ego", work / f"ego{times}.zarr", settings, workers=2)
        rss[times] = _peak_rss_mb(m, clips, work / f"features{times}.zarr")
    n = clips_per_class * 9
    ratio = rss[4] / rss[1]
    frames_mb = 4 * n * 8 * size * size * 3 / 2**20
    detail = (f"{n} vs {4 * n} clips (8 x {size} x {size} frames: {frames_mb:.0f} MiB decoded at 4x): peak RSS "
              f"{rss[1]:.0f} MiB vs {rss[4]:.0f} MiB")
    return [Result("extraction peak RSS, dataset x4", ratio, "< 1.2x", ratio < 1.2, detail)]
