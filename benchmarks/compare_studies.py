"""Two three-seed studies side by side (issue 19: the demo with and without the training-clip
jitter): each model's mean test top-1 and sd in either, the change, and whether the change is
larger than the seeds' spread; the paper's ordering and the exo-cue classes' mean in each.

Reads the studies' own `study.md` (as `uniego report` writes it, or published unchanged by
`uniego publish`): their recognition table over seeds and their exo-cue table. Not a timing.

    python benchmarks/compare_studies.py docs/published/demo-study/study.md results/demo/study.md \\
        --labels "without jitter" "with jitter" --out docs/published/demo-jitter-effect.md
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ORDER = ("uniego", "baseline_naive_mtd", "baseline_ego")


def _rows(lines: list[str], heading: str) -> list[list[str]]:
    """The table rows (cells) of the section whose heading starts with `heading`."""
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## {heading}")), None)
    if start is None:
        raise SystemExit(f"compare_studies: no section '## {heading}' in the study")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def read_study(path: Path) -> dict:
    """{model: (mean top-1, sd, per-seed values)}, the exo-cue means per model and the seeds."""
    lines = path.read_text().splitlines()
    rows = _rows(lines, "Recognition over")
    header = rows[0]
    if "mean top-1" not in header or "sd" not in header:
        raise SystemExit(f"compare_studies: {path} has no recognition table over seeds (a study.md, not a report.md)")
    m, s = header.index("mean top-1"), header.index("sd")
    seeds = [h for h in header if h.startswith("seed ")]
    models = {}
    for r in rows[1:]:
        if r[0].startswith("**") or not r[m]:
            continue
        models[r[0]] = (float(r[m]), float(r[s]), [float(r[header.index(k)]) for k in seeds])
    cue = {}
    cue_rows = _rows(lines, "Exo-cue classes")
    for r in cue_rows:
        if r[0] == "**mean**":
            cue = {name: float(v.strip("*")) for name, v in zip(cue_rows[0][1:], r[1:])}
    return {"models": models, "exo_cue": cue, "seeds": seeds}


def compare(a: Path, b: Path, labels: tuple[str, str]) -> str:
    A, B = read_study(a), read_study(b)
    la, lb = labels
    out = [f"# Two studies side by side: {la} vs {lb}", "",
           f"Written by `benchmarks/compare_studies.py` from {la}: `{a}` (sha256 {_sha(a)}) and {lb}: `{b}` "
           f"(sha256 {_sha(b)}), each a three-seed study (`results/demo/study.md`). Test top-1 %, mean over the "
           f"seeds ({', '.join(A['seeds'])}) and its sd. The change is larger than the seeds' spread when "
           "|change| > the larger sd.", "",
           f"| model | {la} | {lb} | change | larger than the sd |", "|---|---:|---:|---:|---|"]
    for name in [n for n in A["models"] if n in B["models"]]:
        (ma, sa, _), (mb, sb, _) = A["models"][name], B["models"][name]
        bold = "**" if name in ORDER else ""
        out.append(f"| {bold}{name}{bold} | {ma:.2f} ± {sa:.2f} | {mb:.2f} ± {sb:.2f} | {mb - ma:+.2f} | "
                   f"{'yes' if abs(mb - ma) > max(sa, sb) else 'no'} |")
    out += ["", "The paper's ordering UNIEGO > naive MTD > ego baseline (mean top-1), and each gap against the larger sd of its pair:", ""]
    for label, S in ((la, A), (lb, B)):
        vals = [S["models"][n] for n in ORDER]
        holds = vals[0][0] > vals[1][0] > vals[2][0]
        gaps = [(vals[i][0] - vals[i + 1][0], max(vals[i][1], vals[i + 1][1])) for i in range(2)]
        out.append(f"- {label}: {' / '.join(f'{v[0]:.2f}' for v in vals)}: the ordering {'holds' if holds else 'does NOT hold'}; "
                   f"gaps {gaps[0][0]:+.2f} (sd {gaps[0][1]:.2f}) and {gaps[1][0]:+.2f} (sd {gaps[1][1]:.2f})")
    if A["exo_cue"] and B["exo_cue"]:
        out += ["", "Exo-cue classes (`analysis.exo_cue_classes`), mean test top-1 % over their classes and the seeds:", "",
                f"| model | {la} | {lb} |", "|---|---:|---:|"]
        for name in [n for n in A["exo_cue"] if n in B["exo_cue"]]:
            out.append(f"| {name} | {A['exo_cue'][name]:.1f} | {B['exo_cue'][name]:.1f} |")
    return "\n".join(out) + "\n"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("--labels", nargs=2, default=("A", "B"))
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    text = compare(args.a, args.b, tuple(args.labels))
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
