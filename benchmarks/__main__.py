"""`python -m benchmarks [name ...]`: run the benchmarks (all by default) on CPU, print the
table of measured ratios beside their targets, and write benchmarks/latest.json.

`--smoke` runs the same code on tiny sizes, once each, to check that every benchmark still
runs (a minute or so): its numbers are not timings, no target is judged, and it writes a JSON
file only when --out is given."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

NAMES = ["cache_reads", "merge_step", "spd_cost", "input_pipeline", "extraction", "memory", "pipeline_overhead", "data_inputs", "clip_protocol"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(NAMES)}")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: check that the benchmarks run "
                    "(nothing judged; writes no JSON unless --out is given)")
    ap.add_argument("--out", help="where to write the results (default: benchmarks/latest.json; none with --smoke)")
    args = ap.parse_args(argv)
    out = args.out or (None if args.smoke else Path(__file__).parent / "latest.json")
    os.environ.setdefault("TQDM_DISABLE", "1")   # progress bars would bury the results
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    results, started = [], time.time()
    with tempfile.TemporaryDirectory(prefix="uniego-bench-") as tmp:
        for name in args.names or NAMES:
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.time()
            print(f"[{name}] running ...", file=sys.stderr, flush=True)
            for r in importlib.import_module(f"benchmarks.{name}").run(work, smoke=args.smoke):
                r = replace(r, ok=None) if args.smoke else r   # tiny sizes: the targets do not apply
                results.append((name, r))
                print(f"[{name}] {r.name}: {r.value:.2f} (target {r.target}) {_met(r.ok, 'ok', 'MISSED')}  -- {r.detail}",
                      file=sys.stderr, flush=True)
            print(f"[{name}] {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    if args.smoke:
        print("\nSmoke run: tiny sizes, one repeat; the numbers are not timings and no target is judged.")
    print("\n| benchmark | result | measured | target | met |\n|---|---|---:|---|---|")
    for name, r in results:
        print(f"| {name} | {r.name} | {r.value:.2f} | {r.target} | {_met(r.ok, 'yes', '**no**')} |")
    if out:
        info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - started),
                "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
                "smoke": args.smoke, "results": [{"benchmark": name, **asdict(r)} for name, r in results]}
        Path(out).write_text(json.dumps(info, indent=2) + "\n")
    return 0


def _met(ok, yes: str, no: str) -> str:
    return "smoke: not judged" if ok is None else yes if ok else no


if __name__ == "__main__":
    sys.exit(main())
