"""Dataset adapters: an official annotation release -> manifest rows.

One module per dataset, each with
  DEFAULTS   its options (`datasets.<ds>.options` in the config overrides them),
  LAYOUT     the files it expects under `datasets.<ds>.root`, for error messages,
  annotation_files(root, opts)  the annotation files it reads (Snakemake inputs, so an edit
             reruns the manifest and everything built from it),
  build(root, opts, ds) -> Built  the rows, the class list and what it left out and why.

Rows carry the manifest columns (`uniego.manifest.COLUMNS`); times are seconds in the
videos' own clock, whatever the annotation's frame rate. Clips without an exo partner are
reported by name in `Built.unpaired` and either dropped (`unpaired: drop`, the paper's
protocol where a dataset's views do not all cover every segment) or an error (`unpaired: error`).
"""

from __future__ import annotations

from pathlib import Path

from uniego.datasets.common import Built
from uniego.errors import UniegoError


def adapters() -> dict:
    from uniego.datasets import assembly101, demo, egoexo4d, egoexo_fitness, uniego_csv
    return {"demo": demo, "eef": egoexo_fitness, "a101": assembly101, "ee4d": egoexo4d, "uniego-csv": uniego_csv}


def adapter(name: str):
    table = adapters()
    if name not in table:
        raise UniegoError(f"unknown dataset adapter {name!r}; choose from {', '.join(table)}", stage="manifest")
    return table[name]


def adapter_options(spec: dict, ds: str) -> dict:
    """The adapter's DEFAULTS overlaid with `datasets.<ds>.options`; unknown keys are errors."""
    mod = adapter(spec["adapter"])
    given = spec.get("options") or {}
    unknown = sorted(set(given) - set(mod.DEFAULTS))
    if unknown:
        raise UniegoError(f"datasets.{ds}.options: unknown key(s) {', '.join(unknown)} for adapter {spec['adapter']!r}; "
                          f"known: {', '.join(mod.DEFAULTS) or 'none'}", stage="config")
    return {**mod.DEFAULTS, **given}


def annotation_files(spec: dict, ds: str) -> list[str]:
    """The annotation files the adapter reads; any missing one is an error naming the config
    key and the expected layout (raised when the DAG is built)."""
    mod = adapter(spec["adapter"])
    root = Path(spec["root"])
    opts = adapter_options(spec, ds)
    files = [Path(f) for f in mod.annotation_files(root, opts)]
    if getattr(mod, "GENERATED", False):
        return [str(f) for f in files]
    missing = [f for f in files if not f.is_file()]
    if not root.is_dir() or missing:
        what = f"{root} does not exist" if not root.is_dir() else "missing " + ", ".join(map(str, missing))
        raise UniegoError(f"datasets.{ds}.root = {str(root)!r}: {what}. The {spec['adapter']} adapter expects:\n"
                          + mod.LAYOUT.rstrip() + f"\nDownload the dataset there, or point datasets.{ds}.root "
                          "(and datasets.{ds}.options) at it.".replace("{ds}", ds), stage="manifest")
    return [str(f) for f in files]


def skeleton_source(spec: dict, ds: str) -> str | None:
    """Where the exo 2-D body keypoints come from, or None when the dataset has none."""
    mod = adapter(spec["adapter"])
    return mod.skeleton_source(Path(spec["root"]), adapter_options(spec, ds))


def has_sessions(spec: dict, ds: str) -> bool:
    """Whether the dataset has long annotated videos for temporal action segmentation: the
    demo, and adapters with `build_sessions` whose options enable them (Assembly101: coarse)."""
    if spec["adapter"] == "demo":
        return True
    mod = adapter(spec["adapter"])
    return hasattr(mod, "build_sessions") and bool(adapter_options(spec, ds).get("coarse"))


def session_files(spec: dict, ds: str) -> list[str]:
    """The annotation files the sessions are read from (the demo: its generated folder); a
    missing one is an error naming the config key."""
    mod = adapter(spec["adapter"])
    if getattr(mod, "GENERATED", False):
        return [spec["root"]]
    files = mod.session_files(Path(spec["root"]), adapter_options(spec, ds))
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UniegoError(f"datasets.{ds}.options.coarse: missing {', '.join(missing)} (segmentation sessions; set "
                          f"options.coarse: null to go without). The {spec['adapter']} adapter expects:\n{mod.LAYOUT}",
                          stage="sessions")
    return [str(f) for f in files]


def build(spec: dict, ds: str) -> Built:
    mod = adapter(spec["adapter"])
    root = Path(spec["root"])
    opts = adapter_options(spec, ds)
    if not getattr(mod, "GENERATED", False):
        annotation_files(spec, ds)
    built = mod.build(root, opts, ds)
    built.table["dataset"] = ds
    if not spec.get("paths_outside_root"):
        outside = paths_outside(built.table, root)
        if outside:
            raise UniegoError(f"{len(outside)} video path(s) of dataset {ds} lie outside its root {root}:\n  "
                              + "\n  ".join(outside[:10]) + (f"\n  ... and {len(outside) - 10} more" if len(outside) > 10 else "")
                              + f"\nFix the annotations, or set datasets.{ds}.paths_outside_root: true if the videos "
                              "really live elsewhere", stage="manifest")
    if built.unpaired and opts.get("unpaired", "error") == "error":
        shown = built.unpaired[:20] + ([f"... and {len(built.unpaired) - 20} more"] if len(built.unpaired) > 20 else [])
        raise UniegoError(f"{len(built.unpaired)} ego clip(s) have no exo partner:\n  " + "\n  ".join(shown)
                          + f"\nFix the data, or set datasets.{ds}.options.unpaired: drop to leave them out "
                          "(they are then listed in the data check)", stage="manifest")
    return built


CONTENT_BLOCK = 64 * 1024   # bytes read per sample of a file's content
CONTENT_BLOCKS = 16          # samples spread over a file larger than CONTENT_BLOCK * CONTENT_BLOCKS


def content_digest(path: str | Path) -> str:
    """A fast content hash of one file: the whole file up to 1 MiB; beyond, its size and 16 blocks of
    64 KiB spread evenly from its first to its last byte (1 MiB read per file, whatever its size). A
    re-encoded or other video differs in every block; an edit confined to bytes between the blocks of
    a same-size file is not seen."""
    import hashlib
    import os

    h = hashlib.blake2b(digest_size=16)
    size = os.path.getsize(path)
    h.update(f"{size}\n".encode())
    with open(path, "rb") as f:
        if size <= CONTENT_BLOCK * CONTENT_BLOCKS:
            h.update(f.read())
        else:
            step = (size - CONTENT_BLOCK) / (CONTENT_BLOCKS - 1)
            for i in range(CONTENT_BLOCKS):
                f.seek(round(i * step))
                h.update(f.read(CONTENT_BLOCK))
    return h.hexdigest()


def input_signature(spec: dict, ds: str, *, cache: str | Path | None = None) -> str:
    """A digest of the content of every file under the dataset root (and its skeleton folder when
    that lies outside): a video or skeleton file replaced, added or removed changes it. The
    check_data rule passes it as a parameter, so such a change reruns the data check and everything
    built after it.

    Each file's `content_digest` is kept in `cache` (a JSON file) under its stat key (size, mtime,
    ctime, inode) and computed again only when that key changes. A DAG build then costs one `stat`
    per file; a file replaced in place changes its ctime even when `cp -p` keeps its size and mtime,
    and is read again. A file only touched, or the dataset copied to another disk, is read again
    but, its content being the same, reruns nothing. Without `cache` every file is read at each
    call. benchmarks/data_inputs.py measures both. "absent" while the root does not exist yet (a
    generated dataset before its rule has run)."""
    import hashlib
    import json
    import os

    root = Path(spec["root"])
    if not root.is_dir():
        return "absent"
    folders = [root]
    skeletons = skeleton_source(spec, ds)
    if skeletons and Path(skeletons).is_dir() and not Path(os.path.abspath(skeletons)).is_relative_to(os.path.abspath(root)):
        folders.append(Path(skeletons))
    known: dict = {}
    if cache is not None and Path(cache).is_file():
        try:
            known = json.loads(Path(cache).read_text())
        except (OSError, ValueError):
            known = {}   # a damaged cache only costs reading the files again
    seen, changed = {}, False
    h = hashlib.sha256()
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if name.startswith(".snakemake"):
                    continue   # Snakemake's own marker in directory outputs
                path = os.path.join(top, name)
                st = os.stat(path)
                key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                entry = known.get(os.path.abspath(path))
                if entry is None or entry[0] != key:
                    entry, changed = [key, content_digest(path)], True
                seen[os.path.abspath(path)] = entry
                h.update(f"{os.path.relpath(path, folder)}\0{entry[1]}\n".encode())
    if cache is not None and (changed or seen.keys() != known.keys()):
        from uniego.io import atomic_write_text

        try:
            atomic_write_text(cache, json.dumps(seen))
        except OSError:
            pass   # a read-only results folder, or another DAG build writing it now: the next build reads the files again
    return h.hexdigest()[:16]


def paths_outside(table, root: Path) -> list[str]:
    """Rows whose video paths leave `root` (`../`, or an absolute path elsewhere), read as
    written: a symlink inside the root may point anywhere."""
    import os

    base = os.path.normpath(os.path.abspath(root))
    out = []
    for r in table.itertuples(index=False):
        for col in ("ego_video", "exo_video"):
            p = os.path.normpath(os.path.abspath(getattr(r, col)))
            if os.path.commonpath([base, p]) != base:
                out.append(f"sample {r.sample_id}: {col} {getattr(r, col)}")
    return out


def build_manifest(spec: dict, ds: str, *, check_files: bool = True):
    """`datasets.<ds>` -> the adapter's validated rows, labelled, in the manifest's columns."""
    from uniego.manifest import COLUMNS, validate_rows

    built = build(spec, ds)
    if built.table.empty:
        raise UniegoError(f"datasets.{ds}: the {spec['adapter']} adapter found no clips in {spec['root']}", stage="manifest")
    validate_rows(built.table, built.classes, source=f"{spec['adapter']} annotations under {spec['root']}", csv_rows=False,
                  check_files=check_files)
    built.table["label"] = [built.classes.index(c) for c in built.table.class_name]
    built.table = built.table[COLUMNS].reset_index(drop=True)
    return built
