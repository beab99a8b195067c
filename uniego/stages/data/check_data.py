"""`uniego check-data`: look at every clip before anything trains.

Builds the dataset's rows with its adapter, then opens every ego and exo video once and every
skeleton file, and reports by name: counts per split and class, unreadable videos, segments
that end after their video, missing skeleton files, ego clips without an exo partner and rows
the adapter left out. Problems make it fail (exit 2) and write nothing to `out`; the full
report then goes to `<out>.failed.json` for reading. The manifest rule depends on `out`.
"""

from __future__ import annotations

import os
from pathlib import Path

from uniego.errors import UniegoError
from uniego.io import atomic_write_json


def _probe(path: str) -> tuple[int, float] | str:
    """(frames, fps) or why the video cannot be read."""
    from uniego.video import open_video
    if not os.path.isfile(path):
        return "the file does not exist"
    try:
        _, n, fps = open_video(path, "-", stage="check-data")
    except UniegoError as e:
        return str(e).split("): ", 1)[-1]
    if n <= 0 or fps <= 0:
        return f"{n} frames at {fps} fps"
    return n, fps


def changed_videos(root: str | Path) -> list[str]:
    """Videos whose decoded frames differ from the digests recorded when they were made
    (`<root>/digests.csv`, written by `uniego demo-data`), each named with both digests.
    A different PyAV/libx264 or decord build, or an edited file, shows up here."""
    import pandas as pd

    from uniego.video import DIGESTS, decoded_digest

    root = Path(root)
    if not (root / DIGESTS).is_file():
        return []
    changed = []
    for r in pd.read_csv(root / DIGESTS, dtype=str).itertuples(index=False):
        try:
            now = decoded_digest(str(root / r.video), Path(r.video).stem, stage="check-data")
        except UniegoError as e:
            now = f"unreadable ({e})"
        if now != r.frames_sha256:
            changed.append(f"{r.video}: frames {now}, recorded {r.frames_sha256}")
    return changed


def split_problems(table) -> list[str]:
    """The splits the pipeline cannot do without (train, test), when empty."""
    return [f"split {s} has no clips: training and testing need both (check the annotations' split column "
            "or the adapter's split options)" for s in ("train", "test") if not (table.split == s).any()]


def class_warnings(table, classes) -> list[str]:
    """Classes no model can learn here: tested but never trained on, or with no clip at all.
    Listed, not fatal: some releases have classes that occur only in val or test."""
    trained, present = set(table.class_name[table.split == "train"]), set(table.class_name)
    out = [f"class {c} has no training clip ({int((table.class_name == c).sum())} clip(s) in other splits): no model "
           "can learn it, and it counts against every model's test accuracy" for c in classes if c in present and c not in trained]
    return out + [f"class {c} has no clip in any split" for c in classes if c not in present]


def check_data(spec: dict, ds: str, out: str | Path, *, skeletons: bool = False, num_frames: int | None = None) -> dict:
    """The report dict; raises UniegoError (after writing `<out>.failed.json`) on any problem.
    `skeletons`: the configured teachers read skeletons, so every clip needs a readable file.
    `num_frames`: clips.num_frames; a segment with fewer frames is a problem.
    Problems (exit 2, nothing written to `out`): unreadable videos, segments past a video's end
    or shorter than num_frames, missing or malformed skeleton files (fps <= 0, no img_shape), an
    empty train or test split. Warnings (listed, not fatal): an empty val split, a class with no
    training clip or no clip at all, unpaired and dropped clips, changed videos."""
    from uniego.datasets import build_manifest
    from uniego.video import skeleton_file_problem

    built = build_manifest(spec, ds, check_files=False)  # files are checked below, all problems at once
    t = built.table
    problems: list[str] = []
    videos: dict[str, tuple[int, float] | str] = {}
    for col in ("ego_video", "exo_video"):
        for path in t[col].unique():
            videos[path] = _probe(path)
    for r in t.itertuples(index=False):
        for col in ("ego_video", "exo_video"):
            info = videos[getattr(r, col)]
            if isinstance(info, str):
                problems.append(f"sample {r.sample_id}: {col} {getattr(r, col)} is unreadable: {info}")
                continue
            n, fps = info
            if r.end > n / fps + 1.0 / fps + 1e-6:
                problems.append(f"sample {r.sample_id}: segment [{r.start:.3f}, {r.end:.3f}) s ends after {col} "
                                f"{getattr(r, col)} ({n} frames at {fps:g} fps = {n / fps:.3f} s)")
            if num_frames and round((r.end - r.start) * fps) < num_frames:
                problems.append(f"sample {r.sample_id}: segment [{r.start:.3f}, {r.end:.3f}) s of {col} {getattr(r, col)} "
                                f"has {round((r.end - r.start) * fps)} frames at {fps:g} fps, fewer than clips.num_frames "
                                f"{num_frames}: its clip would repeat frames")
        if (skeletons or r.skeleton is not None) and (r.skeleton is None or not os.path.isfile(r.skeleton)):
            problems.append(f"sample {r.sample_id}: skeleton file {r.skeleton} does not exist (the exo_skl / exo_skego "
                            f"teachers need one per clip: datasets.{ds}.options.skeletons)")
        elif r.skeleton is not None and (why := skeleton_file_problem(r.skeleton)):
            problems.append(f"sample {r.sample_id}: skeleton file {r.skeleton} {why}")
    counts = {split: {c: int(n) for c, n in g.class_name.value_counts().sort_index().items()}
              for split, g in t.groupby("split")}
    problems += split_problems(t)
    warnings = [f"split {s} has no clips" for s in ("val",) if s not in counts] + class_warnings(t, built.classes)
    report = {"dataset": ds, "adapter": spec["adapter"], "root": spec["root"], "sources": built.sources,
              "clips": int(len(t)), "classes": len(built.classes),
              "per_split": {s: int(n) for s, n in t.split.value_counts().sort_index().items()},
              "per_split_class": counts, "videos": len(videos),
              "unpaired": built.unpaired, "dropped": built.dropped, "problems": problems, "warnings": warnings,
              "changed_videos": changed_videos(spec["root"])}
    out = Path(out)
    failed = out.with_name(out.name + ".failed.json")
    if problems:
        atomic_write_json(failed, report)
        shown = problems[:30] + ([f"... and {len(problems) - 30} more"] if len(problems) > 30 else [])
        raise UniegoError(f"{len(problems)} problem(s) in dataset {ds} (full report: {failed}):\n  " + "\n  ".join(shown),
                          stage="check-data")
    failed.unlink(missing_ok=True)
    atomic_write_json(out, report)
    return report


def summary(report: dict) -> str:
    lines = [f"{report['dataset']}: {report['clips']} clips, {report['classes']} classes, {report['videos']} videos; "
             + ", ".join(f"{s} {n}" for s, n in report["per_split"].items())]
    for w in report.get("warnings", []):
        lines.append(f"WARNING: {w}")
    if report.get("changed_videos"):
        changed = report["changed_videos"]
        lines.append(f"WARNING: {len(changed)} video(s) decode to other frames than when they were rendered "
                     f"(digests.csv): results will differ from runs made with the recorded data. A different "
                     f"PyAV/libx264 or decord build does this (install requirements/lock.txt), or an edited file:")
        lines += [f"  {c}" for c in changed[:20]] + ([f"  ... and {len(changed) - 20} more"] if len(changed) > 20 else [])
    if report["unpaired"]:
        lines.append(f"{len(report['unpaired'])} ego clip(s) without an exo partner left out:")
        lines += [f"  {u}" for u in report["unpaired"][:20]] + (["  ..."] if len(report["unpaired"]) > 20 else [])
    for reason, ids in report["dropped"].items():
        lines.append(f"{len(ids)} clip(s) left out ({reason}): " + ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""))
    return "\n".join(lines)
