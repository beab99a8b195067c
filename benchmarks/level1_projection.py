"""Which side of eq. 1's cosine term to project (issue 19, item 7): the evidence, from the demo.

For each (`level1.projection`, `lambda_feat`) given, trains the nine proxies of a finished demo run
(its manifest, ego clip cache, teacher stores and pretrained student start, seed as configured)
through the `uniego` CLI, writes their outputs and test scores, and measures, on the train split,
the linear CKA of each proxy with every teacher: by its CLS (what SPD distils and what the
encoder keeps) and in eq. 1's space (the stored `aligned` feature: proj(CLS) for a student-side
projection). Writes a markdown table. Not a timing: a measurement of what each choice learns.

    python benchmarks/level1_projection.py --project . --work /tmp/level1 \\
        --runs student:1 teacher:1 teacher_frozen:1 student:5 teacher:5 teacher_frozen:5 --out level1_projection.md

`--project` is the folder the demo ran in (results/demo/ below it). Proxies, outputs and scores
already in `--work` are reused, so an interrupted measurement resumes. About 8 min per run on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from uniego.analysis import linear_cka
from uniego.cache import open_store, read_array
from uniego.config import canonical_json, load_yaml, merge_overlay, stage_settings
from uniego.manifest import manifest_sha256, read_manifest


def run_name(mode: str, lam: float) -> str:
    return f"{mode}_l{lam:g}"


def build(project: Path, work: Path, config: dict, mode: str, lam: float, teachers: list[str], jobs: int) -> Path:
    """Train the nine proxies (skipping finished ones), their outputs and their test scores."""
    res = project / "results/demo"
    c = merge_overlay(config, {"datasets": {"demo": {"overrides": {"level1": {"projection": mode, "lambda_feat": lam}}}}})
    out = work / run_name(mode, lam)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--manifest", res / "manifest.parquet", "--clips", res / "clips/ego.zarr"]

    def one(t: str) -> None:
        log = open(out / f"{t}.log", "a")

        def cli(*args):
            subprocess.run(["uniego", *map(str, args)], check=True, stdout=log, stderr=subprocess.STDOUT, cwd=project)
        if not (out / f"{t}.pt").exists():
            cli("train-proxy", "--settings", canonical_json(stage_settings(c, "demo", "train_proxy", teacher=t)),
                "--teacher", t, *common, "--features", res / f"features/{t}.zarr", "--out", out / f"{t}.pt")
        store = out / f"{t}.outputs.zarr"
        if store.exists() and "aligned" not in open_store(store, stage="benchmark"):
            import shutil
            shutil.rmtree(store)   # written before outputs kept eq. 1's side
        if not store.exists():
            cli("proxy-outputs", "--settings", canonical_json(stage_settings(c, "demo", "proxy_outputs")), *common,
                "--proxy", out / f"{t}.pt", "--out", store)
        if not (out / f"{t}.eval.json").exists():
            cli("evaluate", "--settings", canonical_json(stage_settings(c, "demo", "evaluate")), *common,
                "--model", out / f"{t}.pt", "--name", t, "--out", out / f"{t}.eval.json",
                "--retrieval-out", out / f"{t}.retrieval.json")
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, teachers))
    return out


def measure(project: Path, folder: Path, teachers: list[str]) -> dict:
    res = project / "results/demo"
    table, _ = read_manifest(res / "manifest.parquet")
    sha = manifest_sha256(res / "manifest.parquet")
    train = table.sample_id[table.split == "train"].tolist()
    row = {s: i for i, s in enumerate(table.sample_id)}
    pos = np.array([row[s] for s in train])
    teacher = {}
    for t in teachers:
        v, _ = read_array(res / f"features/{t}.zarr", manifest_sha256=sha, sample_ids=table.sample_id, stage="benchmark")
        v = v.astype(np.float64)
        teacher[t] = v.mean(1)[pos] if v.ndim == 3 else v[pos]
    out = {"cls": {}, "aligned": {}, "top1": {}}
    for p in teachers:
        for kind, array in (("cls", "feature"), ("aligned", "aligned")):
            f, _ = read_array(folder / f"{p}.outputs.zarr", array, manifest_sha256=sha, sample_ids=train, stage="benchmark")
            out[kind][p] = [linear_cka(f.astype(np.float64), teacher[t]) for t in teachers]
        out["top1"][p] = json.loads((folder / f"{p}.eval.json").read_text())["top1"]
    return out


def summary(name: str, m: dict, teachers: list[str]) -> str:
    def closest(kind):
        return sum(int(np.argmax(m[kind][p])) == i for i, p in enumerate(teachers))

    def own(kind):
        return statistics.fmean(m[kind][p][i] for i, p in enumerate(teachers))
    return (f"| {name} | {closest('cls')} of {len(teachers)} | {own('cls'):.3f} | {closest('aligned')} of {len(teachers)} | "
            f"{own('aligned'):.3f} | {statistics.fmean(m['top1'].values()):.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, default=Path("."))
    ap.add_argument("--config", type=Path, default=None, help="default: PROJECT/config.yaml")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--runs", nargs="+", default=["student:1", "teacher:1", "teacher_frozen:1"],
                    help="projection:lambda_feat pairs")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    config = merge_overlay(load_yaml(a.config or a.project / "config.yaml"), {"compute": {"threads": 1}})
    teachers = config["level1"]["teachers"]
    lines = ["| level1.projection, lambda_feat | closest to own teacher (CLS) | mean CKA with own teacher (CLS) | "
             "closest to own teacher (eq. 1's space) | mean CKA with own teacher (eq. 1's space) | mean test top-1 of the nine proxies |",
             "|---|---:|---:|---:|---:|---:|"]
    per_proxy = []
    for spec in a.runs:
        mode, lam = spec.split(":")
        folder = build(a.project.resolve(), a.work.resolve(), config, mode, float(lam), teachers, a.jobs)
        m = measure(a.project.resolve(), folder, teachers)
        lines.append(summary(f"{mode}, {float(lam):g}", m, teachers))
        per_proxy.append(f"| {mode}, {float(lam):g} | " + " | ".join(
            f"{m['cls'][p][i]:.2f} / {m['aligned'][p][i]:.2f}" for i, p in enumerate(teachers)) + " |")
    text = ["# Level I: which side of eq. 1 to project (demo, seed 0, train split, linear CKA)", "",
            "\n".join(lines), "", "CKA of each proxy with its own teacher, CLS / eq. 1's space:", "",
            "| run | " + " | ".join(teachers) + " |", "|---|" + "---:|" * len(teachers), "\n".join(per_proxy), ""]
    a.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
