"""`results/{ds}/report.md`: paper-style tables from the evaluation JSON files."""

from __future__ import annotations

import json
import os
from pathlib import Path

GROUPS = [("UNIEGO", ("uniego",)), ("Baselines", ("baseline_",)), ("Merged initialisations (before SPD)", ("merge_",)),
          ("Level-I proxies", ("proxy_",))]


def recognition_table(results: list[dict]) -> str:
    lines = ["| model | top-1 | top-5 | test clips | views |", "|---|---:|---:|---:|---|"]
    for title, prefixes in GROUPS:
        rows = [r for r in results if r["model"].startswith(prefixes)]
        if not rows:
            continue
        lines.append(f"| **{title}** | | | | |")
        for r in sorted(rows, key=lambda r: r["model"]):
            lines.append(f"| {r['model']} | {r['top1']:.2f} | {r['top5']:.2f} | {r['n']} | {r['views']} |")
    return "\n".join(lines)


def write_report(dataset: str, recognition: list[str], out: str, *, notes: str = "") -> Path:
    results = [json.loads(Path(p).read_text()) for p in recognition]
    text = [f"# uniego report: {dataset}", "",
            "## Recognition (test split, top-1 / top-5 %, logits summed over the views)", "",
            recognition_table(results), ""]
    if notes:
        text += [notes, ""]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_text("\n".join(text))
    os.replace(tmp, out)
    return out
