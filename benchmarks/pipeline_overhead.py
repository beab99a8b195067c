"""6. Pipeline overhead: a no-op `snakemake` on the finished demo (all three seeds to report.md)
<= 5 s, and a dry run planning every configured dataset (the demo's report and the paper
datasets' reports, on the test fixtures of each official format) <= 10 s. Absolute times, the
only non-ratio targets: they are what a user waits for before anything runs.

"Finished" is made without running the demo: every output the DAG lists (`--summary`) is
created empty and `snakemake --touch` dates them in order; Snakemake then has nothing to do,
which is all a no-op run measures (DAG building, input functions, file checks)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result

REPO = Path(__file__).resolve().parent.parent
FULL = dict(repeats=3)
SMOKE = dict(repeats=1)


def _snakemake(work: Path, *args) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=work, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0, r


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    (repeats,) = (SMOKE if smoke else FULL).values()
    sys.path.insert(0, str(REPO))
    from tests import official_formats as F

    for item in ("Snakefile", "config.yaml", "workflow", "envs"):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, work / item)
    _, summary = _snakemake(work, "--summary", "results/demo/report.md")
    for line in summary.stdout.splitlines()[1:]:
        f, _, rule, *_ = line.split("\t")
        p = work / f
        if f.endswith(".zarr") or rule.startswith("demo_data"):
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
    _snakemake(work, "--touch", "results/demo/report.md")
    noop = []
    for _ in range(repeats):
        t, r = _snakemake(work, "results/demo/report.md")
        if "Nothing to be done" not in r.stdout + r.stderr:
            raise RuntimeError("the no-op run planned jobs:\n" + (r.stdout + r.stderr)[-2000:])
        noop.append(t)
    overlay = work / "fixtures.yaml"
    lines = ["datasets:"]
    make_a101 = lambda root: F.make_a101_coarse(F.make_a101(root))   # noqa: E731  with the coarse (segmentation) files
    for ds, make in (("eef", F.make_eef), ("a101", make_a101), ("ee4d", F.make_ee4d)):
        lines += [f"  {ds}:", f"    root: {make(work / 'fixtures' / ds)}"]
    overlay.write_text("\n".join(lines) + "\n")
    (work / "checkpoints").mkdir()
    for f in ("depth_anything_vitl14.pth", "TimeSformer_divST_8x32_224_K400.pyth", "stgcn_pyskl_ntu60_hrnet.pth"):
        (work / "checkpoints" / f).write_bytes(b"placeholder")
    targets = ["results/demo/report.md"] + [f"results/{ds}/report.md" for ds in ("eef", "a101", "ee4d")]
    dry = []
    for _ in range(repeats):
        t, r = _snakemake(work, "-n", *targets, "--configfile", str(overlay))
        dry.append(t)
    jobs = next((line.split()[-1] for line in r.stdout.splitlines() if line.startswith("total")), "?")
    return [Result("no-op snakemake on the finished demo (s)", min(noop), "<= 5 s", min(noop) <= 5,
                   f"3 seeds to report.md, best of {repeats} runs: {', '.join(f'{t:.1f}' for t in noop)} s"),
            Result("dry run of every configured dataset (s)", min(dry), "<= 10 s", min(dry) <= 10,
                   f"{jobs} jobs (demo x 3 seeds + EEF, A101, EE4D fixtures), best of {repeats}: {', '.join(f'{t:.1f}' for t in dry)} s")]
