"""1. Cache reads: a teacher store into memory (`uniego.cache.read_array`, as Level I loads its
targets) vs one `.npy` per sample (the official layout) vs one contiguous `np.load` (the limit),
and what the chunks' crc32c checksums cost: the same store written without them.
Target: >= 10x the per-sample layout, >= 0.5x the limit, checksums >= 0.8x the read speed without."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.common import Result, best_of

# EgoExo-Fitness (3,522 + 912 clips), a per-frame 1024-d teacher (DINOv2-L), float16: 69 MiB
FULL = dict(N=4434, T=8, D=1024, repeats=3)
SMOKE = dict(N=64, T=2, D=32, repeats=1)


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego import cache
    from uniego.cache import ArraySpec, StoreWriter, chunk_samples_for, read_array

    N, T, D, repeats = (SMOKE if smoke else FULL).values()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, T, D)).astype(np.float16)
    ids = [f"s{i:05d}" for i in range(N)]
    arrays = {"features": ArraySpec((T, D), "float16", ("frame", "channel"))}

    def write(path):
        w = StoreWriter(path, sample_ids=ids, splits=["train"] * N, labels=np.zeros(N, int), arrays=arrays,
                        attrs={"kind": "features", "manifest_sha256": "bench"}, chunk_samples=chunk_samples_for(arrays, N))
        for a, b in w.pending():
            w.write(a, b, features=x[a:b])
        return w.finalize()

    store = write(work / "features.zarr")
    real_codecs = cache.codecs   # the same store without the checksum codec, for its cost
    cache.codecs = lambda zarr, *, compress: [zarr.codecs.ZstdCodec(level=3)] if compress else []
    try:
        plain = write(work / "plain.zarr")
    finally:
        cache.codecs = real_codecs
    per = work / "npy"
    per.mkdir()
    for i, sid in enumerate(ids):
        np.save(per / f"{sid}.npy", x[i])
    np.save(work / "all.npy", x)
    os.sync()   # let the kernel write the ~140 MiB back now, not during the timings (it triples them)

    def store_read():
        v, _ = read_array(store, sample_ids=ids)
        assert v.shape == (N, T, D)

    def plain_read():
        v, _ = read_array(plain, sample_ids=ids)
        assert v.shape == (N, T, D)

    def per_sample():
        v = np.stack([np.load(per / f"{sid}.npy") for sid in ids])
        assert v.shape == (N, T, D)

    def contiguous():
        assert np.load(work / "all.npy").shape == (N, T, D)

    for f in (store_read, plain_read, per_sample, contiguous):   # warm the page cache
        f()
    t_store, t_per, t_all = best_of(store_read, repeats), best_of(per_sample, repeats), best_of(contiguous, repeats)
    t_plain = best_of(plain_read, repeats)
    detail = (f"{N} x {T} x {D} float16: store {t_store * 1e3:.0f} ms (raw float chunks with crc32c, finiteness and "
              f"sample-order checks), without checksums {t_plain * 1e3:.0f} ms, per-sample .npy {t_per * 1e3:.0f} ms, "
              f"contiguous np.load {t_all * 1e3:.0f} ms")
    return [Result("cache read vs per-sample .npy", t_per / t_store, ">= 10x", t_per / t_store >= 10, detail),
            Result("cache read vs contiguous np.load", t_all / t_store, ">= 0.5x", t_all / t_store >= 0.5, detail),
            Result("checksummed read vs without checksums", t_plain / t_store, ">= 0.8x", t_plain / t_store >= 0.8, detail)]
