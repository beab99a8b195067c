"""`uniego compare-runs A B`: did two runs of the pipeline produce the same results?

A and B are two workflow folders (or their `results/` folders). Every file under results/ is
compared by what it holds, not by its bytes where bytes carry noise:

- metrics and logs: `*.json` (parsed), `*.jsonl` (line by line), `*.md` (text), `*.npz` and
  `*.parquet` (arrays, tables), `*.png` (bytes);
- checkpoints `*.pt`: every tensor bit for bit, every other field equal (loaded with
  `weights_only=True`);
- Zarr stores `*.zarr` (clip caches, teacher features, proxy outputs): every array, and the
  provenance attributes except the volatile ones (creation time, `complete`, fingerprint).

On one machine, the same code and config give identical files (the pipeline is deterministic on
CPU given a seed), so the default tolerance is zero. Across machines or BLAS builds, floats
may differ in the last bits: `--rtol` allows that for numbers, tensors and arrays.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uniego.errors import UniegoError

METRIC_SUFFIXES = (".json", ".jsonl", ".md", ".npz", ".parquet", ".png")
MAX_DIFFS_PER_FILE = 5


@dataclass
class Comparison:
    """What `compare_runs` looked at (files per kind) and every difference it found."""
    compared: dict[str, int] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def results_root(folder: str | Path) -> Path:
    folder = Path(folder)
    root = folder / "results" if (folder / "results").is_dir() else folder
    if not root.is_dir():
        raise UniegoError(f"{folder} is not a workflow folder or a results folder", stage="compare-runs")
    return root


def _kind(rel: Path) -> str | None:
    if rel.name in (".snakemake_timestamp", ".input-hashes.json"):   # markers and the dataset watch's cache (paths, inodes)
        return None
    if rel.suffix == ".pt":
        return "checkpoints"
    if rel.suffix in METRIC_SUFFIXES:
        return "metrics"
    return None


def list_outputs(root: Path) -> dict[Path, str]:
    """Relative path -> kind ("metrics", "checkpoints", "stores") of every comparable output."""
    found: dict[Path, str] = {}
    stores = sorted(p for p in root.rglob("*.zarr") if p.is_dir())
    for s in stores:
        found[s.relative_to(root)] = "stores"
    for p in root.rglob("*"):
        if not p.is_file() or any(part.endswith((".zarr", ".partial")) for part in p.relative_to(root).parts):
            continue
        kind = _kind(p.relative_to(root))
        if kind:
            found[p.relative_to(root)] = kind
    return found


# ---------------------------------------------------------------------------- value comparison
def _close(a: float, b: float, rtol: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or (rtol > 0 and math.isclose(a, b, rel_tol=rtol, abs_tol=0.0))


def diff_values(a, b, where: str = "", *, rtol: float = 0.0) -> list[str]:
    """Differences between two JSON-like values, each as `key.path: A != B`."""
    here = where or "(top)"
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{_key(where, k)}: only in {'A' if k in a else 'B'}" for k in sorted(set(a) ^ set(b), key=str)]
        for k in a:
            if k in b:
                out += diff_values(a[k], b[k], _key(where, k), rtol=rtol)
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{here}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_values(x, y, f"{where}[{i}]", rtol=rtol)]
    if isinstance(a, bool) != isinstance(b, bool):
        return [f"{here}: {a!r} != {b!r}"]
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and not isinstance(b, bool):
        return [] if _close(float(a), float(b), rtol) else [f"{here}: {a!r} != {b!r}"]
    return [] if a == b else [f"{here}: {_short(a)} != {_short(b)}"]


def _key(where: str, k) -> str:
    return f"{where}.{k}" if where else str(k)


def _short(v) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def diff_arrays(a: np.ndarray, b: np.ndarray, where: str, *, rtol: float = 0.0) -> list[str]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return [f"{where}: {a.dtype}{list(a.shape)} != {b.dtype}{list(b.shape)}"]
    if a.dtype.kind in "fc":
        same = np.isclose(a, b, rtol=rtol, atol=0.0, equal_nan=True) if rtol > 0 else \
            (a == b) | (np.isnan(a) & np.isnan(b))
    else:
        same = a == b
    if bool(np.all(same)):
        return []
    bad = np.argwhere(~np.asarray(same))
    first = tuple(int(i) for i in bad[0])
    return [f"{where}: {len(bad)} of {a.size} values differ, first at {list(first)}: "
            f"{a[first].item()!r} != {b[first].item()!r}"]


# ------------------------------------------------------------------------------- per file kind
def _without_checksum(obj):
    from uniego.io import CHECKSUM_KEY
    return {k: v for k, v in obj.items() if k != CHECKSUM_KEY} if isinstance(obj, dict) else obj


def _diff_metric_file(a: Path, b: Path, rtol: float) -> list[str]:
    if a.suffix == ".json":   # a report's checksum differs whenever a value does: compare the values
        return diff_values(*(_without_checksum(json.loads(f.read_text())) for f in (a, b)), rtol=rtol)
    if a.suffix == ".jsonl":
        la, lb = a.read_text().splitlines(), b.read_text().splitlines()
        if len(la) != len(lb):
            return [f"{len(la)} lines != {len(lb)} lines"]
        return [d for i, (x, y) in enumerate(zip(la, lb))
                for d in diff_values(json.loads(x), json.loads(y), f"line {i + 1}", rtol=rtol)]
    if a.suffix == ".md":
        la, lb = a.read_text().splitlines(), b.read_text().splitlines()
        return [f"line {i + 1}: {_short(x)} != {_short(y)}" for i, (x, y) in enumerate(zip(la, lb)) if x != y] + \
            ([f"{len(la)} lines != {len(lb)} lines"] if len(la) != len(lb) else [])
    if a.suffix == ".npz":
        with np.load(a) as za, np.load(b) as zb:
            if set(za.files) != set(zb.files):
                return [f"arrays {sorted(za.files)} != {sorted(zb.files)}"]
            return [d for k in sorted(za.files) for d in diff_arrays(za[k], zb[k], k, rtol=rtol)]
    if a.suffix == ".parquet":
        import pandas as pd
        ta, tb = pd.read_parquet(a), pd.read_parquet(b)
        if list(ta.columns) != list(tb.columns) or len(ta) != len(tb):
            return [f"table {list(ta.columns)} x {len(ta)} != {list(tb.columns)} x {len(tb)}"]
        return [d for c in ta.columns for d in diff_arrays(ta[c].to_numpy(), tb[c].to_numpy(), f"column {c}", rtol=rtol)]
    return [] if a.read_bytes() == b.read_bytes() else ["bytes differ"]   # figures


def _diff_checkpoint(a: Path, b: Path, rtol: float) -> list[str]:
    import torch

    def walk(x, y, where):
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.dtype != y.dtype or x.shape != y.shape:
                return [f"{where}: {x.dtype}{list(x.shape)} != {y.dtype}{list(y.shape)}"]
            if x.dtype.is_floating_point or x.dtype.is_complex:
                return diff_arrays(x.float().numpy() if x.dtype == torch.bfloat16 else x.numpy(),
                                   y.float().numpy() if y.dtype == torch.bfloat16 else y.numpy(), where, rtol=rtol)
            return [] if torch.equal(x, y) else [f"{where}: tensors differ"]
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return [f"{where}: {type(x).__name__} != {type(y).__name__}"]
        if isinstance(x, dict) and isinstance(y, dict):
            if where.endswith("meta"):   # where a checkpoint was made is not part of its result
                x, y = ({k: v for k, v in d.items() if k != "environment"} for d in (x, y))
            out = [f"{_key(where, k)}: only in {'A' if k in x else 'B'}" for k in sorted(set(x) ^ set(y), key=str)]
            return out + [d for k in x if k in y for d in walk(x[k], y[k], _key(where, k))]
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)) and len(x) == len(y):
            return [d for i, (u, v) in enumerate(zip(x, y)) for d in walk(u, v, f"{where}[{i}]")]
        return diff_values(x, y, where, rtol=rtol)

    return walk(torch.load(a, map_location="cpu", weights_only=True),
                torch.load(b, map_location="cpu", weights_only=True), "")


def _diff_store(a: Path, b: Path, rtol: float) -> list[str]:
    from uniego.cache import VOLATILE_ATTRS, zarr_module

    zarr = zarr_module()
    ga = zarr.open_group(str(a), mode="r", use_consolidated=False)
    gb = zarr.open_group(str(b), mode="r", use_consolidated=False)
    strip = lambda g: {k: v for k, v in g.attrs.items() if k not in VOLATILE_ATTRS + ("environment",)}  # noqa: E731
    out = diff_values(strip(ga), strip(gb), "attrs", rtol=rtol)
    names_a, names_b = set(ga.array_keys()), set(gb.array_keys())
    out += [f"array {n}: only in {'A' if n in names_a else 'B'}" for n in sorted(names_a ^ names_b)]
    for n in sorted(names_a & names_b):
        x, y = ga[n][:], gb[n][:]
        if np.asarray(x).dtype.kind in "OTU" or np.asarray(y).dtype.kind in "OTU":   # string coordinates
            x, y = np.array([str(v) for v in np.asarray(x)]), np.array([str(v) for v in np.asarray(y)])
        out += diff_arrays(x, y, f"array {n}", rtol=rtol)
    return out


DIFFERS = {"metrics": _diff_metric_file, "checkpoints": _diff_checkpoint, "stores": _diff_store}


def compare_runs(a: str | Path, b: str | Path, *, kinds=("metrics", "checkpoints", "stores"),
                 rtol: float = 0.0) -> Comparison:
    """Compare every output of two runs (see the module docstring); files present in only one
    run are differences too."""
    ra, rb = results_root(a), results_root(b)
    fa, fb = list_outputs(ra), list_outputs(rb)
    result = Comparison(compared={k: 0 for k in kinds})
    for rel in sorted(set(fa) | set(fb)):
        kind = fa.get(rel) or fb.get(rel)
        if kind not in kinds:
            continue
        if rel not in fa or rel not in fb:
            result.differences.append(f"{rel}: only in {'A' if rel in fa else 'B'}")
            continue
        try:
            diffs = DIFFERS[kind](ra / rel, rb / rel, rtol)
        except Exception as e:   # an unreadable file is a difference worth naming, not a crash
            diffs = [f"cannot compare: {type(e).__name__}: {e}"]
        result.compared[kind] += 1
        shown = diffs[:MAX_DIFFS_PER_FILE]
        more = len(diffs) - len(shown)
        result.differences += [f"{rel}: {d}" for d in shown] + ([f"{rel}: ... and {more} more"] if more else [])
    return result


def format_comparison(c: Comparison, a, b) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in c.compared.items())
    if c.identical:
        return f"identical: {a} and {b} ({counts} compared)"
    return "\n".join([f"{len(c.differences)} differences between {a} (A) and {b} (B) ({counts} compared):",
                      *(f"  {d}" for d in c.differences)])
