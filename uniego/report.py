"""`results/{ds}/report.md`: paper-style tables from the evaluation JSON files.

With several seeds (the dataset's `repeat_seeds`), every model gets one top-1 column per
seed, the mean and the sample standard deviation, and the report states whether the
paper's ordering UNIEGO > naive MTD > ego baseline holds in mean top-1.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from uniego.errors import UniegoError
from uniego.io import atomic_write_text, read_json

GROUPS = [("UNIEGO", ("uniego",)), ("Baselines", ("baseline_",)), ("Merged initialisations (before SPD)", ("merge_",)),
          ("Level-I proxies", ("proxy_",)), ("SPD ablations", ("ablation_",))]


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


def metric_table(runs: dict, keys: list[str], *, scale: float = 1.0, digits: int = 2) -> str:
    """runs: seed -> [result dicts with "model"]; one row per model: the mean over seeds of each
    key (± the sample sd with several seeds)."""
    by_model: dict[str, list[dict]] = {}
    for results in runs.values():
        for r in results:
            by_model.setdefault(r["model"], []).append(r)
    n = len(runs)
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for title, models in _grouped(by_model):
        lines.append(f"| **{title}** |" + " |" * len(keys))
        for m in models:
            rs = by_model[m]
            if len(rs) != n:
                raise UniegoError(f"model {m} has {len(rs)} results for {n} seeds", stage="report")
            cells = []
            for k in keys:
                if any(r[k] is None for r in rs):
                    cells.append("n/a")
                    continue
                v = [r[k] * scale for r in rs]
                cell = f"{statistics.fmean(v):.{digits}f}"
                cells.append(cell + (f" ± {statistics.stdev(v):.{digits}f}" if n > 1 else ""))
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _load(items: list[str]) -> dict:
    return {seed: [read_json(p, stage="report") for p in files] for seed, files in parse_runs(items).items()}


def probe_section(items: list[str]) -> list[str]:
    """Linear probes of every teacher's frozen features, per seed, with the mean and sd."""
    runs = {seed: read_json(files[0], stage="report") for seed, files in parse_runs(items).items()}
    first = next(iter(runs.values()))
    seeds = list(runs)
    head = "| teacher | view | stand-in trained by | " + " | ".join(f"seed {s}" if s is not None else "top-1" for s in seeds)
    head += " | mean | sd |" if len(seeds) > 1 else " |"
    lines = [head, "|---|---|---|" + "---:|" * (len(seeds) + (2 if len(seeds) > 1 else 0))]
    for s in seeds:
        if set(runs[s]["teachers"]) != set(first["teachers"]):
            raise UniegoError(f"the linear probes of seed {s} cover teachers {sorted(runs[s]['teachers'])}, the "
                              f"first seed's {sorted(first['teachers'])}: rerun every seed with one config",
                              stage="report")
    for t, r in first["teachers"].items():
        v = [runs[s]["teachers"][t]["top1"] for s in seeds]
        how = r.get("trained_on") or ("the task's train split" if "teachers/" in str(r.get("weights")) else
                                      "nothing (random weights)" if r.get("weights") == "random" else r.get("weights") or "")
        row = f"| {t} | {r.get('view') or ''} | {how} | " + " | ".join(f"{x:.1f}" for x in v)
        row += f" | {statistics.fmean(v):.1f} | {statistics.stdev(v):.1f} |" if len(v) > 1 else " |"
        lines.append(row)
    n = first["samples"]
    return ["## What the teachers know: linear probes of their frozen features", "",
            f"Softmax regression on each teacher's features (mean over frames) of the {n['train']} train clips, its "
            f"weight decay chosen on the {n['val']} val clips, top-1 % on the {n['test']} test clips. Chance "
            f"{first['chance']:.1f} %.", "", "\n".join(lines), ""]


# alpha is a softmax: it reaches a vertex of the simplex only in the limit (a logit 9 above the
# others leaves 1e-3 of weight elsewhere), so "no higher" is read to within this many nats.
PROPOSITION_1_TOLERANCE = 1e-3


def _starts_kept(rs: list[dict]) -> str:
    """`best_proxy 2 of 3, uniform 1 of 3`: which of eq. 2's starts each seed kept."""
    kept = [r["merge"].get("start") for r in rs if r["merge"].get("start")]
    if not kept or rs[0]["merge"]["strategy"] not in ("model", "layer", "parameter"):
        return "-"
    return ", ".join(f"{s} {kept.count(s)} of {len(rs)}" for s in sorted(set(kept)))


def merge_section(runs: dict) -> list[str]:
    """Eq. 2 per merge: mean test top-1, the objective at the end (train CE on the eval view)
    against the best single proxy's (Proposition 1: a learned merge can do no worse, every proxy
    being a vertex of the simplex), and where alpha went. Only merges that record the objective."""
    models = {s: {r["model"]: r for r in res} for s, res in runs.items()}
    merges = [m for m, r in next(iter(models.values())).items() if (r.get("merge") or {}).get("objective")]
    if not merges:
        return []
    seeds = list(models)
    mean = lambda vals: statistics.fmean(vals)  # noqa: E731
    best_proxy = mean(max(r["top1"] for m, r in models[s].items() if m.startswith("proxy_")) for s in seeds)
    lines = ["| merge | test top-1 | train CE of the merge | best proxy's train CE (proxy) | Proposition 1 holds | "
             "largest mean alpha | start kept |", "|---|---:|---:|---:|---:|---|---|"]
    for m in merges:
        rs = [models[s][m] for s in seeds]
        objs = [r["merge"]["objective"] for r in rs]
        holds = sum(o["merged_ce"] <= o["best_proxy_ce"] + PROPOSITION_1_TOLERANCE for o in objs)
        holds = f"{holds} of {len(objs)}" if rs[0]["merge"]["strategy"] in ("model", "layer", "parameter") else "(not learned)"
        alpha = {t: mean(r["merge"]["alpha_mean"][t] for r in rs) for t in rs[0]["merge"]["alpha_mean"]}
        top = max(alpha, key=alpha.get)
        names = sorted({o["best_proxy"] for o in objs})
        lines.append(f"| {m} | {mean(r['top1'] for r in rs):.1f} | {mean(o['merged_ce'] for o in objs):.3f} | "
                     f"{mean(o['best_proxy_ce'] for o in objs):.3f} ({', '.join(names)}) | {holds} | "
                     f"{top} {alpha[top]:.2f} | {_starts_kept(rs)} |")
    n = objs[0]["samples"]
    return [f"## The merge (eq. 2; mean over {len(seeds)} seed(s))", "",
            f"Train CE on the {n} train clips (eval view) at the end of the merge, against the best single proxy's: "
            "a learned merge (model / layer / parameter) minimises it over the simplex, whose vertices are the "
            f"proxies, so it should be no higher (Proposition 1; to within {PROPOSITION_1_TOLERANCE} nats, alpha being a "
            f"softmax that reaches a vertex only in the limit). The best proxy's test top-1: {best_proxy:.1f} "
            "(mean over seeds of each seed's best). Eq. 2 is a local search: it runs from each of `merge.starts` "
            "(uniform alpha; alpha leaning on the proxy with the lowest train CE) and keeps the start that ends lower.",
            "", "\n".join(lines), ""]


EXO_CUE_MODELS = ("baseline_ego", "baseline_naive_mtd", "uniego")


def exo_cue_verdict(uniego: float, baseline: float) -> str:
    """The sentence on the exo-cue classes, compared at the table's precision (0.1 point): equal
    per-class means summed in another order differ in the last bits, and that is a tie, not a win."""
    if f"{uniego:.1f}" == f"{baseline:.1f}":
        return "UNIEGO ties the ego baseline on them"
    return "UNIEGO beats the ego baseline on them" if uniego > baseline else "UNIEGO does not beat the ego baseline on them"


def exo_cue_section(classes: list[str], runs: dict, probe_items: list[str]) -> list[str]:
    """Per-class test top-1 on the classes whose cue is weak in the ego view and obvious in the
    exo view (the config's `analysis.exo_cue_classes`): the ego baseline, naive MTD and UNIEGO,
    and the best exo teacher's linear probe, each the mean over seeds. Distillation transferred
    exo knowledge where UNIEGO beats the ego baseline here."""
    models = {s: {r["model"]: r for r in res} for s, res in runs.items()}
    for s, by_model in models.items():
        for m in EXO_CUE_MODELS:
            if "per_class" not in by_model.get(m, {}):
                raise UniegoError(f"the recognition result of {m} (seed {s}) has no per-class accuracy: "
                                  "rerun its evaluation", stage="report")
            unknown = [c for c in classes if c not in by_model[m]["per_class"]]
            if unknown:
                raise UniegoError(f"analysis.exo_cue_classes names {unknown}, which are not classes of the "
                                  f"dataset ({', '.join(by_model[m]['per_class'])})", stage="report")
            empty = [c for c in classes if by_model[m]["per_class"][c] is None]
            if empty:
                raise UniegoError(f"analysis.exo_cue_classes names {empty}, which have no test clip in seed {s}: "
                                  "choose classes present in the test split", stage="report")
    probes = [read_json(files[0], stage="report") for files in parse_runs(probe_items).values()]
    exo = [t for t, r in probes[0]["teachers"].items() if r.get("view") in ("exo", "skeleton")] if probes else []

    def probe_mean(t, c):
        vals = [v for p in probes if (v := p["teachers"][t]["per_class"][p["classes"].index(c)]) is not None]
        return statistics.fmean(vals) if vals else float("nan")

    best = max(exo, key=lambda t: statistics.fmean(probe_mean(t, c) for c in classes)) if exo else None
    cols = list(EXO_CUE_MODELS) + ([f"probe of {best}"] if best else [])
    lines = ["| class | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    means = {col: [] for col in cols}
    for c in classes:
        cells = []
        for m in EXO_CUE_MODELS:
            v = statistics.fmean(models[s][m]["per_class"][c] for s in models)
            means[m].append(v)
            cells.append(f"{v:.1f}")
        if best:
            means[cols[-1]].append(probe_mean(best, c))
            cells.append(f"{means[cols[-1]][-1]:.1f}")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    mean = {col: statistics.fmean(v) for col, v in means.items()}
    lines.append("| **mean** | " + " | ".join(f"**{mean[col]:.1f}**" for col in cols) + " |")
    verdict = exo_cue_verdict(mean["uniego"], mean["baseline_ego"])
    return [f"## Exo-cue classes (test top-1 % per class, mean over {len(models)} seed(s))", "",
            "Classes whose cue is weak in the ego view and obvious in the exo view and the skeleton "
            f"(`analysis.exo_cue_classes`): {verdict} ({mean['uniego']:.1f} vs {mean['baseline_ego']:.1f})."
            + (f" The best exo teacher's linear probe on its frozen features: {best}." if best else ""), "",
            "\n".join(lines), ""]


def cka_section(path: str, out_dir: Path) -> list[str]:
    r = read_json(path, stage="report")
    png = os.path.relpath(Path(path).with_suffix(".png"), out_dir)
    names = r["teachers"]
    if "proxy_vs_teacher" in r:
        def closest_cell(row, p):
            best = max(range(len(names)), key=lambda j: row[j])
            return f"{names[best]} ({row[best]:.3f})" + (" (own)" if names[best] == p else "")
        lines = ["| proxy | CLS: CKA with its own teacher | CLS: closest teacher | eq. 1's space: CKA with its own teacher "
                 "| eq. 1's space: closest teacher |", "|---|---:|---|---:|---|"]
        for i, p in enumerate(names):
            a = r["aligned_vs_teacher"][i]
            lines.append(f"| {p} | {r['proxy_vs_own_teacher'][p]:.3f} | {closest_cell(r['proxy_vs_teacher'][i], p)} | "
                         f"{a[i]:.3f} | {closest_cell(a, p)} |")
        closest = (f" Closest to their own teacher of all {len(names)} teachers: {r['closest_is_own']} of {len(names)} "
                   f"proxies by the CLS, {r['closest_is_own_aligned']} of {len(names)} in the space eq. 1 aligns "
                   "(proj(CLS) for a student-side projection, else the CLS).")
    else:
        lines = ["| proxy | CKA with its own teacher |", "|---|---:|"]
        lines += [f"| {t} | {v:.3f} |" for t, v in r["proxy_vs_own_teacher"].items()]
        closest = ""
    return [f"## Representation similarity (paper Figure 3; {r['samples']} train clips)", "",
            f"Mean pairwise linear CKA: teachers {r['mean_offdiagonal_teachers']:.3f}, proxies "
            f"{r['mean_offdiagonal_proxies']:.3f} (below the diagonal: teachers; above: proxies).{closest}", "",
            f"![CKA of teachers and proxies]({png})", "", "\n".join(lines), ""]


def selection_section(path: str, out_dir: Path) -> list[str]:
    r = read_json(path, stage="report")
    png = os.path.relpath(Path(path).with_suffix(".png"), out_dir)
    teachers = r["teachers"]
    overall = ["| proxy | " + " | ".join(teachers) + " |", "|---|" + "---:|" * len(teachers),
               "| selected (fraction of samples) | " + " | ".join(f"{r['overall_fraction'][t]:.3f}" for t in teachers) + " |"]
    per_class = ["| class | " + " | ".join(teachers) + " |", "|---|" + "---:|" * len(teachers)]
    per_class += [f"| {c} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for c, row in zip(r["classes"], r["per_class_share"])]
    return [f"## Proxy selection in SPD (paper Figure 6, Tables 11-12; K = {r['k']}, mode {r['mode']}, "
            f"{r['samples_seen']} samples over {r['epochs']} epochs)", "", f"![SPD proxy selection]({png})", "",
            "\n".join(overall), "", "Share of each class's selections per proxy:", "", "\n".join(per_class), ""]


def conflict_section(path: str, out_dir: Path) -> list[str]:
    r = read_json(path, stage="report")
    png = os.path.relpath(Path(path).with_suffix(".png"), out_dir)
    lines = ["| model | mean conflict rate | first epoch | last epoch | mean cosine (last epoch) |", "|---|---:|---:|---:|---:|"]
    for m, c in r["models"].items():
        last_cos = c["cosine_mean"][-1]
        lines.append(f"| {m} | {r['mean_conflict_rate'][m]:.3f} | {c['conflict_rate'][0]:.3f} | {c['conflict_rate'][-1]:.3f} | "
                     + ("n/a" if last_cos is None else f"{last_cos:.3f}") + " |")
    return ["## Gradient conflict (paper Figures 4-5)", "", "Per probe clip and epoch: cos(grad CE, grad distillation) over "
            "the encoder's parameters; conflict = negative cosine.", "", f"![gradient conflict]({png})", "",
            "\n".join(lines), ""]


def spd_cells(spd: dict | None) -> str:
    """What an SPD run selected with and how it normalised: start, k, rule, the official filters."""
    if not spd:
        return "| - | - | - | - | - |"
    cap = "-" if spd.get("ce_cap") is None else f"{spd['ce_cap']:g}"
    norm = spd.get("normalize", "-") + (f" / {spd['micro_batch']} clips" if spd.get("micro_batch") else "")
    return (f"| {spd.get('init', '-')} | {spd.get('k', '-')} {spd.get('mode', '')} | "
            f"{'yes' if spd.get('student_ce_filter') else 'no'} | {cap} | {norm} |")


def ablation_section(files: list[str], main: dict) -> list[str]:
    rows = [read_json(f, stage="report") for f in files]
    lines = ["| SPD variant | top-1 | top-5 | start | k, rule | student-CE filter | CE cap | normalisation |",
             "|---|---:|---:|---|---|---|---|---|"]
    if "uniego" in main:
        u = main["uniego"]
        lines.append(f"| uniego (as configured) | {u['top1']:.2f} | {u['top5']:.2f} " + spd_cells(u.get("spd")))
    lines += [f"| {r['model']} | {r['top1']:.2f} | {r['top5']:.2f} " + spd_cells(r.get("spd")) for r in rows]
    return ["## SPD ablations (paper Tables 6-8; the main seed only)", "",
            "Each variant reruns SPD with the `ablations` entry overlaid on the `spd` section: the initialisation "
            "(init_*), the number of proxies per sample (k*), the selection rule (all_proxies, ego_exo). The last "
            "columns are the settings each run recorded, so the filters `fidelity: official` adds show where they apply.", "",
            "\n".join(lines), ""]


def write_report(dataset: str, recognition: list[str], out: str, *, retrieval: list[str] = (),
                 segmentation: list[str] = (), cka: str | None = None, selection: str | None = None,
                 conflict: str | None = None, ablations: list[str] = (), probes: list[str] = (),
                 exo_cue_classes: list[str] = (), notes: str = "") -> Path:
    runs = _load(recognition)
    out_dir = Path(out).parent
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
    seeds = f"mean over {len(runs)} seeds ± sd" if len(runs) > 1 else "one run"
    if retrieval:
        rr = _load(retrieval)
        r0 = next(iter(rr.values()))[0]
        text += [f"## Video retrieval (paper Table 3; test split, {seeds})", "",
                 f"Each test clip queries all other test clips; relevant = same class; cosine of the {r0['feature']} "
                 f"({r0['views']} views). mAP and R@1 as fractions; ties count as one rank; queries whose class has "
                 "no other test clip are left out.", "", metric_table(rr, ["mAP", "R@1"], digits=3), ""]
    if segmentation:
        sr = _load(segmentation)
        s0 = next(iter(sr.values()))[0]
        bg = ", ".join(s0["background"]) or "none"
        text += [f"## Temporal action segmentation (paper Table 4; {seeds})", "",
                 f"Frozen encoder, dense CLS features every {s0['feature_stride']} frames, {s0['temporal_model']} trained "
                 f"on {s0['train_videos']} train videos, scored on {s0['test_videos']} test videos ({s0['frames']} frames) "
                 f"with the MS-TCN evaluation; background classes: {bg}.", "",
                 metric_table(sr, ["F1@10", "F1@25", "F1@50", "Edit", "Acc"], digits=1), ""]
    text += merge_section(runs)
    if probes:
        text += probe_section(probes)
    if exo_cue_classes:
        text += exo_cue_section(list(exo_cue_classes), runs, probes)
    if ablations:
        main_run = next(iter(runs.values()))   # the configured seed comes first
        text += ablation_section(ablations, {r["model"]: r for r in main_run})
    if cka:
        text += cka_section(cka, out_dir)
    if selection:
        text += selection_section(selection, out_dir)
    if conflict:
        text += conflict_section(conflict, out_dir)
    if notes:
        text += [notes, ""]
    from uniego.provenance import environment, markdown
    text += ["## Environment", "", "Package versions and machine of the job that wrote this report "
             "(each checkpoint and store records its own under `environment`):", "", *markdown(environment()), ""]
    return atomic_write_text(out, "\n".join(text))
