"""`uniego import-features`: a folder of official-layout `.npy` teacher features -> a feature store.

The official UNIEGO code reads one `.npy` per clip and teacher, named by the clip's key (the
ego base name up to its first "."; manifests built by the `uniego-csv` adapter use it as the
sample id) with every "ego" replaced by "exo" for the exo_* teachers. Shapes [D], [T, D] or
[D, T] are accepted as the official loader accepts them, and a 2-D feature becomes one vector
the official way: rows floor(linspace(0, T-1, 8)) averaged. Unlike the official loader,
nothing missing or misshaped becomes zeros: the import refuses and lists every such sample.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from uniego.cache import ArraySpec, StoreWriter, chunk_samples_for
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest

# PROXY_DISTILL_DIM_MAP of the official code (the Table-1 teachers' embedding sizes)
OFFICIAL_DIMS = {"exo_rgb": 768, "exo_skl": 256, "exo_siglip": 1152, "ego_siglip": 1152, "exo_skego": 512,
                 "ego_depth": 1024, "exo_depth": 1024, "exo_dino": 1024, "ego_dino": 1024}
OFFICIAL_ROWS = 8


def feature_key(sample_id: str, teacher: str) -> str:
    """The official file name (without .npy) of a clip's feature for `teacher`."""
    return sample_id.replace("ego", "exo") if teacher.startswith("exo_") else sample_id


def clip_vector(x: np.ndarray, dim: int) -> np.ndarray | str:
    """[D] from an official feature array, or why it cannot be one."""
    if x.size == 0:
        return "is empty"
    if x.ndim == 2 and x.shape[0] == dim and x.shape[1] != dim:
        x = x.T
    if x.ndim == 1 and x.shape[0] != dim:
        return f"has shape {list(x.shape)}, expected [{dim}]"
    if x.size % dim:
        return f"has shape {list(x.shape)}: not [{dim}], [T, {dim}] or [{dim}, T]"
    x = x.reshape(-1, dim).astype(np.float64)
    rows = np.floor(np.linspace(0, len(x) - 1, OFFICIAL_ROWS)).astype(np.int64)
    v = x[rows].mean(axis=0) if len(x) > 1 else x[0]
    if not np.isfinite(v).all():
        return "contains NaN or Inf"
    return v.astype(np.float32)


def import_features(manifest: str, teacher: str, folder: str, out: str, *, dim: int | None = None,
                    architecture: str | None = None, code_version: str = "") -> Path:
    """Write the feature store of `teacher` from `folder`; `architecture`: the configured teacher
    architecture the features came from (recorded, so its feature size is checked downstream)."""
    table, classes = read_manifest(manifest)
    if dim is None:
        if teacher not in OFFICIAL_DIMS:
            raise UniegoError(f"unknown teacher {teacher!r} ({', '.join(OFFICIAL_DIMS)}); give --dim for another one",
                              stage="import-features")
        dim = OFFICIAL_DIMS[teacher]
    folder = Path(folder)
    if not folder.is_dir():
        raise UniegoError(f"feature folder {folder} does not exist", stage="import-features")
    missing, bad, values = [], [], np.empty((len(table), dim), np.float32)
    digest = hashlib.sha256()
    for i, sid in enumerate(table.sample_id):
        f = folder / f"{feature_key(sid, teacher)}.npy"
        if not f.is_file():
            missing.append(f"{sid} ({f.name})")
            continue
        try:
            x = np.load(f, allow_pickle=False)
        except (OSError, ValueError) as e:
            bad.append(f"{sid}: {f} cannot be read ({type(e).__name__}: {e})")
            continue
        v = clip_vector(np.asarray(x), dim)
        if isinstance(v, str):
            bad.append(f"{sid}: {f} {v}")
            continue
        values[i] = v
        digest.update(f.name.encode() + f.read_bytes())
    if missing or bad:
        lines = ([f"{len(missing)} sample(s) have no feature file in {folder}:"] + [f"  {m}" for m in missing[:20]]
                 + (["  ..."] if len(missing) > 20 else []) + bad[:20] + (["..."] if len(bad) > 20 else []))
        raise UniegoError(f"cannot import {teacher} features (nothing written):\n" + "\n".join(lines), stage="import-features")
    arrays = {"features": ArraySpec((dim,), "float32", ("channel",))}
    attrs = {"kind": "features", "teacher": teacher, "view": teacher.split("_")[0], "architecture": architecture or "imported",
             "imported_from": str(folder), "files_sha256": digest.hexdigest(), "feature_dim": dim, "per_frame": False,
             "reduction": f"official: [T, D] -> mean of rows floor(linspace(0, T-1, {OFFICIAL_ROWS}))",
             "stand_in": False, "dtype": "float32", "manifest_sha256": manifest_sha256(manifest), "manifest": str(manifest),
             "classes": classes, "code_version": code_version}
    writer = StoreWriter(out, sample_ids=table.sample_id, splits=table.split, labels=table.label, arrays=arrays,
                         attrs=attrs, chunk_samples=chunk_samples_for(arrays, len(table)), stage="import-features")
    for start, stop in writer.pending():
        writer.write(start, stop, features=values[start:stop])
    return writer.finalize()
