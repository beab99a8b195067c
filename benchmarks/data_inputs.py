"""9. What watching the dataset costs (issue 20): the input signature (one stat per file under the
dataset root, computed at every DAG build so that a video replaced in place reruns the data
check) against the data check it guards (every video opened, every skeleton file's header
read), both per 1,000 files. Target: the signature <= 5 % of the data check, per file."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, best_of, demo_dataset

FULL = dict(clips_per_class=8, files=20_000, repeats=3)
SMOKE = dict(clips_per_class=SMOKE_CLIPS_PER_CLASS, files=200, repeats=1)


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.datasets import input_signature
    from uniego.stages.data.check_data import check_data

    clips_per_class, files, repeats = (SMOKE if smoke else FULL).values()
    d = demo_dataset(work, clips_per_class=clips_per_class)
    root = Path(d["manifest"]).parent / "data"
    spec = {"adapter": "demo", "root": str(root)}
    videos = sum(1 for _ in (root / "videos").rglob("*.mp4"))
    t_check = best_of(lambda: check_data(spec, "bench", work / "check.json", skeletons=True, num_frames=8), repeats)

    # an Assembly101-sized tree of files for the walk (their size does not matter: only stat is done)
    tree = work / "tree"
    for i in range(files):
        folder = tree / f"seq{i // 100:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"cam{i % 100:02d}.mp4").write_bytes(b"")
    input_signature({"adapter": "demo", "root": str(tree)}, "bench")   # warm the dentry cache
    t_sig = best_of(lambda: input_signature({"adapter": "demo", "root": str(tree)}, "bench"), repeats)

    per_check, per_sig = t_check / videos * 1000, t_sig / files * 1000
    detail = (f"data check: {videos} demo videos (+ skeleton headers) in {t_check:.2f} s = {per_check:.2f} s per 1,000 videos; "
              f"input signature: {files} files in {t_sig * 1e3:.0f} ms = {per_sig * 1e3:.1f} ms per 1,000 files")
    return [Result("input signature vs data check, per file", per_sig / per_check, "<= 0.05", per_sig / per_check <= 0.05,
                   detail)]
