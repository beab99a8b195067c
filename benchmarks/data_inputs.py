"""9. What watching the dataset costs (issue 20): the input signature, computed at every DAG build so
that a video replaced in place reruns the data check, against the data check it guards (every
video opened, every skeleton file's header read), per 1,000 files.

- warm: every file's content hash is in the cache and its stat key unchanged: one `stat` per file
  (what every DAG build after the first costs). Target: <= 5 % of the data check, per file.
- cold: no cache (the first build, or a dataset copied to another disk): every file's content hash
  is read, 1 MiB of it at most, on files of 4 MiB here. Target: <= the data check, per file.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, best_of, demo_dataset

FULL = dict(clips_per_class=8, files=20_000, cold_files=250, repeats=3)
SMOKE = dict(clips_per_class=SMOKE_CLIPS_PER_CLASS, files=200, cold_files=20, repeats=1)
FILE_BYTES = 4 * 1024 * 1024   # a cold-run file: larger than the 1 MiB a content hash reads


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    import os

    from uniego.datasets import input_signature
    from uniego.stages.data.check_data import check_data

    clips_per_class, files, cold_files, repeats = (SMOKE if smoke else FULL).values()
    d = demo_dataset(work, clips_per_class=clips_per_class)
    root = Path(d["manifest"]).parent / "data"
    spec = {"adapter": "demo", "root": str(root)}
    videos = sum(1 for _ in (root / "videos").rglob("*.mp4"))
    t_check = best_of(lambda: check_data(spec, "bench", work / "check.json", skeletons=True, num_frames=8), repeats)

    # warm: an Assembly101-sized tree of files, their hashes cached (only stat is done)
    tree = work / "tree"
    for i in range(files):
        folder = tree / f"seq{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"cam{i % 100:02d}.mp4").write_bytes(b"")
    cache = work / "hashes.json"
    input_signature({"adapter": "demo", "root": str(tree)}, "bench", cache=cache)   # fills the cache, warms the dentry cache
    t_warm = best_of(lambda: input_signature({"adapter": "demo", "root": str(tree)}, "bench", cache=cache), repeats)

    # cold: files of 4 MiB, no cache (page cache dropped where the OS lets us; else they are read from memory)
    big = work / "big"
    big.mkdir()
    block = os.urandom(FILE_BYTES)
    for i in range(cold_files):
        (big / f"v{i:05d}.mp4").write_bytes(block[i % 97:] + block[:i % 97])
    os.sync()
    dropped = _drop_page_cache()
    t_cold = best_of(lambda: input_signature({"adapter": "demo", "root": str(big)}, "bench"), 1)   # once: a repeat reads memory

    per_check, per_warm, per_cold = t_check / videos * 1000, t_warm / files * 1000, t_cold / cold_files * 1000
    detail = (f"data check: {videos} demo videos (+ skeleton headers) in {t_check:.2f} s = {per_check:.2f} s per 1,000 videos; "
              f"warm signature: {files} files in {t_warm * 1e3:.0f} ms = {per_warm * 1e3:.1f} ms per 1,000 files")
    cold = (f"cold signature: {cold_files} files of {FILE_BYTES >> 20} MiB in {t_cold:.2f} s = {per_cold:.2f} s per 1,000 files "
            f"({'page cache dropped' if dropped else 'page cache not dropped: files read from memory'}); "
            f"data check {per_check:.2f} s per 1,000 videos")
    return [Result("input signature (warm) vs data check, per file", per_warm / per_check, "<= 0.05", per_warm / per_check <= 0.05,
                   detail),
            Result("input signature (cold: content read) vs data check, per file", per_cold / per_check, "<= 1", per_cold / per_check <= 1,
                   cold)]


def _drop_page_cache() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False
