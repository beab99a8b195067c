"""`python -m benchmarks [name ...]`: run the benchmarks (all by default) on CPU, print the
table of measured ratios beside their targets, and write benchmarks/latest.json."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

NAMES = ["cache_reads", "merge_step", "spd_cost", "input_pipeline", "extraction", "memory", "pipeline_overhead"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(NAMES)}")
    ap.add_argument("--out", default=str(Path(__file__).parent / "latest.json"))
    args = ap.parse_args(argv)
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
            for r in importlib.import_module(f"benchmarks.{name}").run(work):
                results.append(r)
                print(f"[{name}] {r.name}: {r.value:.2f} (target {r.target}) {'ok' if r.ok else 'MISSED'}  -- {r.detail}",
                      file=sys.stderr, flush=True)
            print(f"[{name}] {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    print("\n| benchmark | measured | target | met |\n|---|---:|---|---|")
    for r in results:
        print(f"| {r.name} | {r.value:.2f} | {r.target} | {'yes' if r.ok else '**no**'} |")
    info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "seconds": round(time.time() - started),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
            "results": [asdict(r) for r in results]}
    Path(args.out).write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
