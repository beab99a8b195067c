"""1. Cache reads: a teacher store into memory (`uniego.cache.read_array`, as Level I loads its
targets) vs one `.npy` per sample (the official layout) vs one contiguous `np.load` (the limit).
Target: >= 10x the per-sample layout and >= 0.5x the limit."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.common import Result, best_of

# EgoExo-Fitness (3,522 + 912 clips), a per-frame 1024-d teacher (DINOv2-L), float16: 69 MiB
FULL = dict(N=4434, T=8, D=1024, repeats=3)
SMOKE = dict(N=64, T=2, D=32, repeats=1)


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.cache import ArraySpec, StoreWriter, chunk_samples_for, read_array

    N, T, D, repeats = (SMOKE if smoke else FULL).values()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, D)).astype(np.float16)
    ids = [f"s{i:05d}" for i in range(N)]
    arrays = {"features": ArraySpec((T, D), "float16", ("frame", "channel"))}
    w = StoreWriter(work / "features.zarr", sample_ids=ids, splits=["train"] * N, labels=np.zeros(N, int), arrays=arrays,
                    attrs={"kind": "features", "manifest_sha256": "bench"}, chunk_samples=chunk_samples_for(arrays, N))
    for a, b in w.pending():
        w.write(a, b, features=x[a:b])
    store = w.finalize()
    per = work / "npy"
    per.mkdir()
    for i, sid in enumerate(ids):
        np.save(per / f"{sid}.npy", x[i])
    np.save(work / "all.npy", x)
    os.sync()   # let the kernel write the ~140 MiB back now, not during the timings (it triples them)

    def store_read():
        v, _ = read_array(store, sample_ids=ids)
        assert v.shape == (N, T, D)

    def per_sample():
        v = np.stack([np.load(per / f"{sid}.npy") for sid in ids])
        assert v.shape == (N, T, D)

    def contiguous():
        assert np.load(work / "all.npy").shape == (N, T, D)

    for f in (store_read, per_sample, contiguous):   # warm the page cache
        f()
    t_store, t_per, t_all = best_of(store_read, repeats), best_of(per_sample, repeats), best_of(contiguous, repeats)
    detail = (f"{N} x {T} x {D} float16: store {t_store * 1e3:.0f} ms (raw float chunks, finiteness and sample-order checks), "
              f"per-sample .npy {t_per * 1e3:.0f} ms, contiguous np.load {t_all * 1e3:.0f} ms")
    return [Result("cache read vs per-sample .npy", t_per / t_store, ">= 10x", t_per / t_store >= 10, detail),
            Result("cache read vs contiguous np.load", t_all / t_store, ">= 0.5x", t_all / t_store >= 0.5, detail)]
