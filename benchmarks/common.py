"""Shared helpers: a best-of-k timer and a small demo dataset with its clip caches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


def best_of(fn, repeats: int = 3) -> float:
    """The fastest of `repeats` wall-clock timings of fn() in seconds (after one warm-up call
    the caller makes if it needs one): on a shared, noisy machine the minimum is the estimate."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_of_pair(fa, fb, repeats: int = 3) -> tuple[float, float]:
    """Best-of timings of two things measured alternately (a, b, a, b, ...), so that a slow
    spell of the shared machine hits both, not one side of the ratio."""
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(ta), min(tb)


@dataclass
class Result:
    name: str
    value: float
    target: str
    ok: bool | None   # None: not judged (a --smoke run)
    detail: str


SMOKE_CLIPS_PER_CLASS = 3   # --smoke: the one demo dataset every benchmark shares (9 train, 27 clips)


def demo_dataset(work: Path, *, clips_per_class: int = 4, size: int = 64, seconds: float = 1.5,
                 num_frames: int = 8, views=("ego",)) -> dict:
    """A small demo dataset (9 classes), its manifest and clip caches, shared by the benchmarks
    of one run that ask for the same one (built next to `work`)."""
    from uniego.config import ClipSettings, DemoPreset
    from uniego.datasets.demo import read_annotations
    from uniego.demo.generate import generate
    from uniego.manifest import write_manifest
    from uniego.stages.data.clips import build_clip_cache

    work = Path(work).parent / f"demo_{clips_per_class}x{size}px_{num_frames}f"
    work.mkdir(exist_ok=True)
    manifest = work / "manifest.parquet"
    settings = ClipSettings(num_frames=num_frames, size=size, sampling="uniform", stride=2, skeleton_frames=16, skeleton_clips=1,
                            skeleton_sampling="uniform")
    if not manifest.exists():
        preset = DemoPreset(clips_per_class=clips_per_class, size=size, fps=12, seconds=seconds, sessions=0,
                            actions_per_session=2)
        root = generate(work / "data", preset, seed=0, workers=2)
        table, classes = read_annotations(root, "bench")
        write_manifest(table, classes, manifest)
    clips = {}
    for v in views:
        path = work / "clips" / f"{v}.zarr"
        if not path.exists():
            build_clip_cache(manifest, v, path, settings, workers=2)
        clips[v] = str(path)
    return {"manifest": str(manifest), "clips": clips, "settings": settings}


@dataclass
class TrainingSetup:
    """The demo student's one-epoch training on a demo train split, as the benchmarks of the
    training stages use it: clip source, labels, classes, student and train settings, loader."""
    source: object
    labels: object
    classes: list
    student: object
    train: object

    def loader(self, batches, epoch):
        from uniego.data import ClipBatches
        return ClipBatches(self.source, self.labels, self.student, batches, epoch=epoch, seed=0, train=True)


def training_setup(work: Path, *, clips_per_class: int = 24) -> TrainingSetup:
    import numpy as np

    from uniego.config import StudentSettings, TrainSettings
    from uniego.data import ClipSource
    from uniego.manifest import manifest_sha256, read_manifest

    d = demo_dataset(work, clips_per_class=clips_per_class)
    table, classes = read_manifest(d["manifest"])
    rows = np.flatnonzero(table.split.to_numpy() == "train")
    source = ClipSource(d["clips"]["ego"], list(table.sample_id.iloc[rows]), manifest_sha256=manifest_sha256(d["manifest"]))
    student = StudentSettings(arch="timesformer_test", init="random", input_size=64, train_jitter=(64, 80), patch_size=8)
    train = TrainSettings(epochs=1, lr=1e-3, lr_steps=(0,), lr_factors=(1.0,), momentum=0.9, nesterov=True,
                          weight_decay=0.05, batch_size=8, optimizer="adamw")
    return TrainingSetup(source, table.label.to_numpy()[rows], classes, student, train)
