"""The benchmark suite still runs: `python -m benchmarks --smoke` (every benchmark's real code on
tiny sizes, nothing judged, no JSON written) exits 0 and prints a row for each result."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.__main__ import NAMES

REPO = Path(__file__).resolve().parent.parent
# results per benchmark, 1 where not listed
ROWS = {"cache_reads": 3, "pipeline_overhead": 2, "data_inputs": 2, "clip_protocol": 2, "input_pipeline": 2}


@pytest.mark.slow   # about a minute on 2 cores: a demo dataset, two extraction processes, four Snakemake runs
def test_smoke_run_prints_every_benchmark():
    latest = (REPO / "benchmarks" / "latest.json").read_bytes()
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines() if line.startswith("| ")]
    assert rows[0] == ["benchmark", "result", "measured", "target", "met"]
    rows = rows[1:]
    assert Counter(row[0] for row in rows) == {name: ROWS.get(name, 1) for name in NAMES}
    assert all(row[4] == "smoke: not judged" for row in rows)
    assert (REPO / "benchmarks" / "latest.json").read_bytes() == latest   # a smoke run writes no results


def test_compare_studies_reads_two_studies_side_by_side(tmp_path):
    """benchmarks/compare_studies.py on the published study and a copy with UNIEGO's row changed."""
    from benchmarks.compare_studies import compare, read_study

    a = REPO / "docs/published/demo-study/study.md"
    text = a.read_text()
    old = "| uniego | 64.81 | 57.41 | 62.96 | 61.73 | 3.85 | 100.00 |"
    assert old in text
    b = tmp_path / "study.md"
    b.write_text(text.replace(old, "| uniego | 80.00 | 70.00 | 75.00 | 75.00 | 5.00 | 100.00 |"))
    s = read_study(a)
    assert s["models"]["uniego"] == (61.73, 3.85, [64.81, 57.41, 62.96]) and s["exo_cue"]["uniego"] == 37.5
    out = compare(a, b, ("without", "with"))
    assert "| **uniego** | 61.73 ± 3.85 | 75.00 ± 5.00 | +13.27 | yes |" in out
    assert "| **baseline_ego** | 57.41 ± 11.26 | 57.41 ± 11.26 | +0.00 | no |" in out
    assert "- with: 75.00 / 51.23 / 57.41: the ordering does NOT hold; gaps +23.77 (sd 15.53) and -6.18 (sd 15.53)" in out
