"""`results/{ds}/report.md`: paper-style tables from the evaluation JSON files.

With several seeds (the dataset's `repeat_seeds`), every model gets one top-1 column per
seed, the mean and the sample standard deviation, and the report states whether the
paper's ordering UNIEGO > naive MTD > ego baseline holds in mean top-1.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from uniego.errors import UniegoError

GROUPS = [("UNIEGO", ("uniego",)), ("Baselines", ("baseline_",)), ("Merged initialisations (before SPD)", ("merge_",)),
          ("Level-I proxies", ("proxy_",))]


def _grouped(models):
    for title, prefixes in GROUPS:
        rows = sorted(m for m in models if m.startswith(prefixes))
        if rows:
            yield title, rows


def recognition_table(results: list[dict]) -> str:
    lines = ["| model | top-1 | top-5 | test clips | views |", "|---|---:|---:|---:|---|"]
    by_model = {r["model"]: r for r in results}
    for title, models in _grouped(by_model):
        lines.append(f"| **{title}** | | | | |")
        for m in models:
            r = by_model[m]
            lines.append(f"| {m} | {r['top1']:.2f} | {r['top5']:.2f} | {r['n']} | {r['views']} |")
    return "\n".join(lines)


def seeds_table(runs: dict[int, dict[str, dict]]) -> tuple[str, dict[str, float]]:
    """runs: seed -> model -> result. Returns the markdown table and model -> mean top-1."""
    seeds = sorted(runs)
    models = set.union(*(set(r) for r in runs.values()))
    head = "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean top-1 | sd | mean top-5 |"
    lines = [head, "|---|" + "---:|" * (len(seeds) + 3)]
    means = {}
    for title, names in _grouped(models):
        lines.append(f"| **{title}** |" + " |" * (len(seeds) + 3))
        for m in names:
            missing = [s for s in seeds if m not in runs[s]]
            if missing:
                raise UniegoError(f"model {m} has no recognition result for seed(s) {missing}", stage="report")
            top1 = [runs[s][m]["top1"] for s in seeds]
            top5 = [runs[s][m]["top5"] for s in seeds]
            means[m] = statistics.fmean(top1)
            sd = statistics.stdev(top1) if len(top1) > 1 else 0.0
            lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in top1)
                         + f" | {means[m]:.2f} | {sd:.2f} | {statistics.fmean(top5):.2f} |")
    return "\n".join(lines), means


def ordering_line(means: dict[str, float]) -> str:
    keys = ("uniego", "baseline_naive_mtd", "baseline_ego")
    if not all(k in means for k in keys):
        return ""
    u, n, e = (means[k] for k in keys)
    holds = u > n > e
    return (f"Paper's ordering UNIEGO > naive MTD > ego baseline (mean top-1): {u:.2f} / {n:.2f} / {e:.2f} -> "
            f"{'holds' if holds else 'does NOT hold'}.")


def parse_runs(items: list[str]) -> dict[int | None, list[str]]:
    """`SEED=FILE` or `FILE` (one run, seed unknown) -> {seed: [files]}."""
    runs: dict[int | None, list[str]] = {}
    for item in items:
        head, sep, tail = item.partition("=")
        seed, path = (int(head), tail) if sep and head.isdigit() else (None, item)
        runs.setdefault(seed, []).append(path)
    return runs


def write_report(dataset: str, recognition: list[str], out: str, *, notes: str = "") -> Path:
    runs = {seed: [json.loads(Path(p).read_text()) for p in files] for seed, files in parse_runs(recognition).items()}
    text = [f"# uniego report: {dataset}", ""]
    if len(runs) == 1:
        (seed, results), = runs.items()
        text += ["## Recognition (test split, top-1 / top-5 %, logits summed over the views)", "",
                 *( [f"Seed {seed}.", ""] if seed is not None else []), recognition_table(results), ""]
    else:
        if None in runs:
            raise UniegoError("several runs given: name each file's seed as SEED=FILE", stage="report")
        table, means = seeds_table({s: {r["model"]: r for r in res} for s, res in runs.items()})
        views = sorted({r["views"] for res in runs.values() for r in res})
        clips = sorted({r["n"] for res in runs.values() for r in res})
        text += [f"## Recognition over {len(runs)} seeds (test split, top-1 %, views {', '.join(views)}, "
                 f"test clips per seed {', '.join(map(str, clips))})", "",
                 "Each seed is an independent run of the whole pipeline.", "", table, "", ordering_line(means), ""]
    if notes:
        text += [notes, ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text("\n".join(text))
    os.replace(tmp, out)
    return out
