"""Zarr v3 stores: the decoded-clip caches and the teacher feature cache (DESIGN §4).

A store is a group a stranger can open with `zarr.open_group` or `xarray.open_zarr`:
  data arrays with `dimension_names` (e.g. features (sample, frame, channel)), chunked by
  samples, zstd; coordinates `sample` (the sample ids: the index), `split`, `label`; a `done`
  mask per sample; group attributes with the provenance and `complete: true` written last.
Every chunk of every array is written (even one equal to the fill value) and ends with a crc32c
checksum (Zarr v3's codec), so a damaged chunk fails its read, and a missing chunk file is found
when the store is opened: neither is ever read as fill values.

Writing goes to `<target>.partial` (never the declared output: Snakemake deletes a failed
job's outputs) and is resumable: a rerun with the same provenance fingerprint keeps the chunks
already marked done. `finalize` marks the store complete, consolidates metadata and moves
it into place. Readers refuse incomplete stores and stores built from another manifest.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

from uniego.errors import UniegoError
from uniego.provenance import environment
from uniego.version import __version__

FORMAT = "uniego-store"
FORMAT_VERSION = 2   # 2: every chunk written and checksummed (crc32c)
VOLATILE_ATTRS = ("created_at", "finished_at", "complete", "fingerprint")
TARGET_CHUNK_BYTES = 2 << 20


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """A per-sample data array: shape after the sample axis, dtype and dimension names."""
    tail: tuple[int, ...]
    dtype: str
    dims: tuple[str, ...]


def zarr_module():
    import zarr
    # Snakemake drops a `.snakemake_timestamp` file into directory outputs; it is not ours.
    warnings.filterwarnings("ignore", message="Object at .snakemake_timestamp is not recognized")
    # Write every chunk, also one that equals the fill value (zarr skips those by default), so
    # that a chunk file missing from a finished store always means damage.
    zarr.config.set({"array.write_empty_chunks": True})
    return zarr


def codecs(zarr, *, compress: bool) -> list:
    """The bytes codecs of every array: zstd (unless `compress` is false), then a crc32c
    checksum over the stored bytes."""
    crc = zarr.codecs.Crc32cCodec()
    return [zarr.codecs.ZstdCodec(level=3), crc] if compress else [crc]


def chunk_samples_for(arrays: dict[str, ArraySpec], n: int) -> int:
    """Samples per chunk so the largest array's chunk is ~2 MiB uncompressed."""
    per_sample = max(int(np.prod(a.tail, dtype=np.int64)) * np.dtype(a.dtype).itemsize for a in arrays.values())
    return int(max(1, min(n, TARGET_CHUNK_BYTES // max(per_sample, 1))))


def fingerprint(attrs: dict) -> str:
    stable = {k: v for k, v in attrs.items() if k not in VOLATILE_ATTRS}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


_EXPONENT = {2: (np.uint16, 0x7C00), 4: (np.uint32, 0x7F800000), 8: (np.uint64, 0x7FF0000000000000)}


def all_finite(values: np.ndarray) -> bool:
    """No NaN or Inf in a float array: no element has all exponent bits set (a bit test, several
    times faster than np.isfinite on float16)."""
    values = np.ascontiguousarray(values)
    if values.size == 0:
        return True
    uint, mask = _EXPONENT[values.dtype.itemsize]
    flat, mask = values.reshape(-1).view(uint), uint(mask)
    block = 1 << 18   # cache-sized blocks: one pass over memory, no full-size temporary
    return all((flat[i:i + block] & mask).max() != mask for i in range(0, flat.size, block))


def strings(values) -> np.ndarray:
    """A zarr string array (numpy StringDType) as a plain numpy str array."""
    return np.array([str(v) for v in np.asarray(values)], dtype=str)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StoreWriter:
    """Resumable writer of one store. Use: `pending()`, `write(start, stop, **arrays)`, `finalize()`."""

    def __init__(self, target: str | Path, *, sample_ids, splits, labels, arrays: dict[str, ArraySpec],
                 attrs: dict, chunk_samples: int | None = None, stage: str = "cache"):
        zarr = zarr_module()
        self.target = Path(target)
        self.staging = self.target.with_name(self.target.name + ".partial")
        self.stage = stage
        self.n = len(sample_ids)
        self.arrays = arrays
        self.chunk = int(chunk_samples or chunk_samples_for(arrays, self.n))
        attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "uniego_version": __version__,
                 "chunk_samples": self.chunk, "environment": environment(), **attrs}
        self.fp = fingerprint(attrs)
        if self.staging.exists() and self._resumable():
            self.group = zarr.open_group(str(self.staging), mode="r+")
            self.resumed = int(np.asarray(self.group["done"][:]).sum())
            print(f"[{stage}] resuming {self.staging}: {self.resumed} of {self.n} samples already done", file=sys.stderr)
            return
        if self.staging.exists():
            print(f"[{stage}] discarding {self.staging}: it was started with other settings", file=sys.stderr)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.resumed = 0
        g = zarr.open_group(str(self.staging), mode="w")
        for name, spec in arrays.items():
            floats = np.dtype(spec.dtype).kind == "f"
            fill = np.nan if floats else 0
            # Float arrays (features, logits) are stored raw: zstd saves 5-15 % on teacher features
            # but halves the read speed (benchmarks/cache_reads.py); uint8 frames compress well.
            g.create_array(name, shape=(self.n, *spec.tail), chunks=(self.chunk, *spec.tail), dtype=spec.dtype,
                           dimension_names=("sample", *spec.dims), compressors=codecs(zarr, compress=not floats), fill_value=fill,
                           attributes={"coordinates": "split label"})
        coord_chunk = max(self.n, 1)
        for name, values, dtype in (("sample", sample_ids, str), ("split", splits, str), ("label", labels, "int32")):
            arr = g.create_array(name, shape=(self.n,), chunks=(coord_chunk,), dtype=dtype, dimension_names=("sample",),
                                 compressors=codecs(zarr, compress=True))
            arr[:] = np.array([str(v) for v in values]) if dtype is str else np.asarray(values, dtype)
        g.create_array("done", shape=(self.n,), chunks=(coord_chunk,), dtype="bool", dimension_names=("sample",),
                       fill_value=False, compressors=codecs(zarr, compress=True))
        g.attrs.update({**attrs, "fingerprint": self.fp, "created_at": _now(), "complete": False})
        self.group = g

    def _resumable(self) -> bool:
        try:
            g = zarr_module().open_group(str(self.staging), mode="r")
            return g.attrs.get("fingerprint") == self.fp and "done" in g and g["done"].shape == (self.n,)
        except Exception:
            return False

    def pending(self) -> list[tuple[int, int]]:
        """Chunk-aligned [start, stop) ranges not yet done."""
        done = np.asarray(self.group["done"][:])
        return [(a, min(a + self.chunk, self.n)) for a in range(0, self.n, self.chunk)
                if not done[a:min(a + self.chunk, self.n)].all()]

    def write(self, start: int, stop: int, **data: np.ndarray) -> None:
        """Write rows [start, stop) of every data array, then mark them done."""
        if set(data) != set(self.arrays):
            raise ValueError(f"write needs arrays {sorted(self.arrays)}, got {sorted(data)}")
        for name, values in data.items():
            self.group[name][start:stop] = values
        self.group["done"][start:stop] = True

    def finalize(self, extra_attrs: dict | None = None) -> Path:
        """Check every sample is done, write `complete` last, consolidate, move into place."""
        done = np.asarray(self.group["done"][:])
        if not done.all():
            ids = strings(self.group["sample"][:])[~done]
            raise UniegoError(f"{self.staging}: {len(ids)} samples were not written (first: {[str(i) for i in ids[:5]]})", stage=self.stage)
        self.group.attrs.update({**(extra_attrs or {}), "finished_at": _now()})
        self.group.attrs["complete"] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zarr_module().consolidate_metadata(str(self.staging))
        if self.target.exists():
            shutil.rmtree(self.target)
        os.replace(self.staging, self.target)
        return self.target


def open_store(path: str | Path, *, manifest_sha256: str | None = None, expect: dict | None = None, stage: str = "read"):
    """Open a finished store read-only; refuse a missing, incomplete, stale or damaged one
    (a chunk file missing), or one whose attributes differ from `expect` (e.g. {"kind":
    "clips", "view": "ego"}), naming both sides."""
    zarr = zarr_module()
    path = Path(path)
    if not path.exists():
        hint = f" (an interrupted run left {path}.partial; rerun the rule to resume it)" if Path(f"{path}.partial").exists() else ""
        raise UniegoError(f"store {path} does not exist{hint}", stage=stage)
    try:
        g = zarr.open_group(str(path), mode="r", use_consolidated=False)
    except Exception as e:
        raise UniegoError(f"{path} is not a readable Zarr store: {e}", stage=stage) from None
    if g.attrs.get("format") != FORMAT:
        raise UniegoError(f"{path} is not a uniego store (format attribute {g.attrs.get('format')!r})", stage=stage)
    if g.attrs.get("complete") is not True:
        raise UniegoError(f"store {path} is incomplete (`complete` is not true): it was never finished. "
                          "Delete it and rerun the rule that builds it.", stage=stage)
    if g.attrs.get("format_version") != FORMAT_VERSION:
        raise UniegoError(f"store {path} has store format {g.attrs.get('format_version')}, written by an older uniego "
                          f"(this one reads format {FORMAT_VERSION}: checksummed chunks). Delete it and rerun the rule "
                          "that builds it.", stage=stage)
    if manifest_sha256 is not None and g.attrs.get("manifest_sha256") != manifest_sha256:
        raise UniegoError(f"store {path} was built from another manifest (sha256 {str(g.attrs.get('manifest_sha256'))[:12]}… "
                          f"vs {manifest_sha256[:12]}…): it is stale. Rebuild it (snakemake reruns it when the manifest "
                          "changes).", stage=stage)
    for key, want in (expect or {}).items():
        have = g.attrs.get(key)
        if isinstance(want, dict) and isinstance(have, dict):   # settings: the keys the reader depends on
            have = {k: have.get(k) for k in want}
        if have != want:
            raise UniegoError(f"store {path} has {key} {have!r}, but {stage} expects {want!r}: "
                              f"{_EXPECT_HINT.get(key, 'pass the store built for it')}", stage=stage)
    missing = missing_chunks(g, path)
    if missing:
        raise UniegoError(f"store {path} is damaged: {len(missing)} chunk file(s) are missing ({'; '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}). Delete it and rerun the rule that builds it.", stage=stage)
    return g


_EXPECT_HINT = {"kind": "pass the kind of store it reads (clips/*.zarr, features/*.zarr, proxies/*.outputs.zarr)",
                "view": "pass the clip cache of that view, e.g. results/{ds}/clips/ego.zarr",
                "settings": "the store was built with other clip settings; rebuild it with this config (snakemake does)",
                "teacher": "pass that teacher's store, results/{ds}/features/{teacher}.zarr"}


def _chunk_key(path: Path, name: str, index: tuple[int, ...]) -> Path:
    return path / name / "c" / "/".join(map(str, index))


def missing_chunks(g, path: str | Path) -> list[str]:
    """The chunk files of `g`'s arrays that are not on disk, each named with its array, chunk
    index and samples (a finished store has every one; see `zarr_module`)."""
    import itertools

    path, out = Path(path), []
    ids = None
    for name in sorted(g.array_keys()):
        a = g[name]
        if a.nchunks_initialized == a.nchunks:
            continue
        for index in itertools.product(*(range(n) for n in a.cdata_shape)):
            if not _chunk_key(path, name, index).is_file():
                if ids is None:
                    try:
                        ids = strings(g["sample"][:])
                    except Exception:
                        ids = np.array([], dtype=str)
                out.append(f"`{name}` chunk {index} ({_samples_of(ids, index[0], a.chunks[0])})")
    return out


def _samples_of(ids: np.ndarray, chunk: int, size: int) -> str:
    lo, hi = chunk * size, (chunk + 1) * size
    names = [str(i) for i in ids[lo:hi][:3]]
    return f"rows {lo}-{hi - 1}" + (f": {', '.join(names)}{' ...' if hi - lo > 3 else ''}" if names else "")


def read_rows(array, sel, *, store: str | Path, stage: str) -> np.ndarray:
    """`array[sel]`, or a named error when a chunk it reads is damaged: the store, the array,
    the chunk and its samples (a chunk whose bytes fail the crc32c checksum written with them,
    or cannot be decoded)."""
    try:
        return np.asarray(array[sel])
    except (ValueError, RuntimeError) as e:
        raise damaged_chunk_error(array, sel, store=store, stage=stage, cause=e) from None


def damaged_chunk_error(array, sel, *, store: str | Path, stage: str, cause: Exception) -> UniegoError:
    """Which chunk of `array[sel]` fails to decode, as the one message a user sees."""
    rows = range(array.shape[0])[sel[0] if isinstance(sel, tuple) else sel]
    rows = [rows] if isinstance(rows, int) else list(rows)
    size = array.chunks[0]
    name = array.path or array.name
    for chunk in sorted({r // size for r in rows}):
        try:
            array[chunk * size:(chunk + 1) * size]
        except (ValueError, RuntimeError) as e:
            try:
                ids = strings(zarr_module().open_group(str(store), mode="r", use_consolidated=False)["sample"][:])
            except Exception:
                ids = np.array([], dtype=str)
            return UniegoError(f"store {store} is damaged: `{name}` chunk {chunk} ({_samples_of(ids, chunk, size)}) cannot be "
                               f"read: {str(e).rstrip('.')}. Delete the store and rerun the rule that builds it.", stage=stage)
    return UniegoError(f"store {store}: reading `{name}` failed: {cause}", stage=stage)


def verify_store(path: str | Path, *, stage: str = "inspect") -> dict:
    """Read every chunk of every array of a store: {"chunks": read, "missing": [...], "damaged": [...]}."""
    import itertools

    zarr, path = zarr_module(), Path(path)
    g = zarr.open_group(str(path), mode="r", use_consolidated=False)
    missing, damaged, read = missing_chunks(g, path), [], 0
    try:
        ids = strings(g["sample"][:])
    except Exception:
        ids = np.array([], dtype=str)
    for name in sorted(g.array_keys()):
        a = g[name]
        for index in itertools.product(*(range(n) for n in a.cdata_shape)):
            if not _chunk_key(path, name, index).is_file():
                continue
            sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, a.chunks))
            try:
                a[sel]
                read += 1
            except (ValueError, RuntimeError) as e:
                damaged.append(f"`{name}` chunk {index} ({_samples_of(ids, index[0], a.chunks[0])}): {e}")
    return {"store": str(path), "chunks": read, "missing": missing, "damaged": damaged}


def read_array(path: str | Path, name: str = "features", *, manifest_sha256: str | None = None,
               sample_ids=None, expect: dict | None = None, stage: str = "read", group=None) -> tuple[np.ndarray, np.ndarray]:
    """(values, sample ids) of one array, checked: the store is what `expect` says (see
    `open_store`), its values are finite and cover exactly `sample_ids`, in order, when given.
    `group`: the store as `open_store(path, ...)` already returned it (its checks done), so that a
    caller that also needs the attributes opens and lists it once."""
    g = group if group is not None else open_store(path, manifest_sha256=manifest_sha256, expect=expect, stage=stage)
    ids = strings(g["sample"][:])
    if sample_ids is not None:
        want = strings(sample_ids)
        if len(want) != len(ids) or (want != ids).any():
            missing = sorted(map(str, set(want) - set(ids)))[:5]
            extra = sorted(map(str, set(ids) - set(want)))[:5]
            raise UniegoError(f"store {path} does not hold the manifest's samples in order "
                              f"(missing {missing}, unexpected {extra}); rebuild it", stage=stage)
    values = read_rows(g[name], slice(None), store=path, stage=stage)
    if values.dtype.kind == "f" and not all_finite(values):
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise UniegoError(f"store {path}: `{name}` has NaN or Inf for samples {[str(i) for i in ids[bad][:5]]}", stage=stage)
    return values, ids
