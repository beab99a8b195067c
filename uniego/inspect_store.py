"""`uniego inspect STORE`: what is in a feature store or clip cache, for a human."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uniego.cache import missing_chunks, strings, zarr_module
from uniego.errors import UniegoError

SKIP_ATTRS = ("classes",)


def _stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "zarr.json")


def describe(path: str | Path, *, max_samples_for_stats: int = 100_000) -> dict:
    zarr = zarr_module()
    path = Path(path)
    if not path.exists():
        raise UniegoError(f"{path} does not exist", stage="inspect")
    g = zarr.open_group(str(path), mode="r", use_consolidated=False)
    info = {"store": str(path), "complete": g.attrs.get("complete") is True, "attrs": dict(g.attrs), "arrays": {},
            "missing_chunks": missing_chunks(g, path)}
    n = g["sample"].shape[0] if "sample" in g else 0
    if "split" in g:
        splits, counts = np.unique(strings(g["split"][:]), return_counts=True)
        info["splits"] = {str(s): int(c) for s, c in zip(splits, counts)}
    if "done" in g:
        info["done"] = int(np.asarray(g["done"][:]).sum())
    info["samples"] = n
    for name in sorted(g.array_keys()):
        if name in ("sample", "split", "label", "done"):
            continue
        a = g[name]
        raw = a.nbytes
        stored = _stored_bytes(path / name)
        entry = {"shape": list(a.shape), "dtype": str(a.dtype), "chunks": list(a.chunks),
                 "dims": list(a.metadata.dimension_names or ()), "uncompressed_bytes": int(raw),
                 "stored_bytes": int(stored), "compression_ratio": round(raw / stored, 3) if stored else None}
        if a.dtype.kind == "f" and not info["missing_chunks"]:
            x = np.asarray(a[:max_samples_for_stats], dtype=np.float32)
            finite = np.isfinite(x)
            vecs = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x[:, None]
            ok = np.isfinite(vecs).all(axis=1)
            norms = np.linalg.norm(vecs[ok], axis=1) if ok.any() else np.array([np.nan])
            entry["stats"] = {"nan": int(np.isnan(x).sum()), "inf": int(np.isinf(x).sum()),
                              "norm_mean": float(norms.mean()), "norm_std": float(norms.std()),
                              "mean": float(x[finite].mean()) if finite.any() else None,
                              "std": float(x[finite].std()) if finite.any() else None}
        info["arrays"][name] = entry
    return info


def format_report(info: dict) -> str:
    attrs = info["attrs"]
    lines = [f"store      {info['store']}",
             f"complete   {info['complete']}" + ("" if info["complete"] else "   <-- unfinished: readers refuse it"),
             f"kind       {attrs.get('kind')}   samples {info['samples']}   done {info.get('done')}",
             *([f"DAMAGED    {len(info['missing_chunks'])} chunk file(s) missing, e.g. {info['missing_chunks'][0]}   "
                "<-- readers refuse it"] if info.get("missing_chunks") else []),
             "splits     " + ", ".join(f"{k} {v}" for k, v in info.get("splits", {}).items())]
    if attrs.get("stand_in"):
        lines.append(f"STAND-IN   {attrs.get('stand_in_reason')}")
    for name, a in info["arrays"].items():
        lines.append(f"array      {name} {tuple(a['shape'])} {a['dtype']} dims {tuple(a['dims'])} chunks {tuple(a['chunks'])}")
        lines.append(f"           {a['uncompressed_bytes']:,} B raw, {a['stored_bytes']:,} B stored, "
                     f"compression x{a['compression_ratio']}")
        if "stats" in a:
            s = a["stats"]
            lines.append(f"           norm mean {s['norm_mean']:.4g} std {s['norm_std']:.4g}; "
                         f"value mean {s['mean']:.4g} std {s['std']:.4g}; NaN {s['nan']} Inf {s['inf']}")
    lines.append("provenance")
    for k, v in attrs.items():
        if k in SKIP_ATTRS:
            v = f"{len(v)} classes" if isinstance(v, list) else v
        lines.append(f"  {k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return "\n".join(lines)


def format_verification(result: dict) -> str:
    """`uniego inspect --verify`: every chunk read, and what failed."""
    bad = result["missing"] + result["damaged"]
    lines = [f"verify     {result['chunks']} chunks read and checked (crc32c)" + (": all intact" if not bad else "")]
    lines += [f"MISSING    {m}" for m in result["missing"]] + [f"DAMAGED    {d}" for d in result["damaged"]]
    return "\n".join(lines)


def describe_checkpoint(path: str | Path, *, verify: bool = False) -> dict:
    """`uniego inspect CHECKPOINT.pt`: its meta (kind, seed, manifest, code version, training) and
    tensors. verify: every record of torch's zip checked against its CRC-32, then the whole file
    loaded (weights only); a failure is one named error."""
    import zipfile

    from uniego.io import read_checkpoint

    path = Path(path)
    info = {"checkpoint": str(path), "bytes": path.stat().st_size}
    if verify:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
                info["records"] = len(z.infolist())
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise UniegoError(f"checkpoint {path} is damaged: {type(e).__name__}: {e}. Delete it and rerun the rule that "
                              "builds it", stage="inspect") from None
        if bad is not None:
            raise UniegoError(f"checkpoint {path} is damaged: record {bad} fails its CRC-32. Delete it and rerun the rule "
                              "that builds it", stage="inspect")
    obj = read_checkpoint(path, stage="inspect")
    if not isinstance(obj, dict):
        raise UniegoError(f"{path} holds a {type(obj).__name__}, not a uniego checkpoint (a dict with `meta`)", stage="inspect")
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    info["meta"] = {k: v for k, v in meta.items() if k not in ("history", "environment", "classes")}
    info["classes"] = len(meta.get("classes") or [])
    info["epochs"] = len(meta.get("history") or [])
    groups = {}
    for key, value in obj.items():
        if isinstance(value, dict) and value and all(hasattr(t, "numel") for t in value.values()):
            groups[key] = {"tensors": len(value), "parameters": int(sum(t.numel() for t in value.values()))}
    info["tensor_groups"] = groups
    if verify:
        info["verified"] = f"{info['records']} zip records pass their CRC-32; the file loads with weights_only=True"
    return info


def describe_export(path: str | Path, *, verify: bool = False) -> dict:
    """`uniego inspect EXPORT_DIR`: the export's config.json; verify: every file's sha256 against it."""
    from uniego.encoder import EXPORT_FORMAT
    from uniego.teachers.base import file_sha256

    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("format") != EXPORT_FORMAT:
        raise UniegoError(f"{path}/config.json is not a uniego export's config", stage="inspect")
    info = {"export": str(path), **{k: cfg[k] for k in ("name", "dataset", "architecture", "provenance", "metrics", "files")
                                    if k in cfg}, "classes": len(cfg.get("classes", []))}
    if verify:
        bad = [f for f, sha in cfg.get("files", {}).items() if not (path / f).is_file() or file_sha256(path / f) != sha]
        if bad:
            raise UniegoError(f"export {path} is damaged: {', '.join(bad)} missing or not matching config.json's sha256. "
                              "Export the model again", stage="inspect")
        info["verified"] = f"{len(cfg.get('files', {}))} files match config.json's sha256"
    return info
