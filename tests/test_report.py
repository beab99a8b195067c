from uniego.io import atomic_write_json
from uniego.report import recognition_table, write_report


def test_report_groups_models(tmp_path):
    rows = {"uniego": 60.0, "baseline_ego": 40.0, "merge_model": 50.0, "proxy_exo_skl": 45.5}
    paths = []
    for name, top1 in rows.items():
        p = tmp_path / f"{name}.json"
        atomic_write_json(p, ({"model": name, "top1": top1, "top5": 90.0, "n": 54, "views": "1x3"}))
        paths.append(str(p))
    out = write_report("demo", paths, tmp_path / "report.md")
    text = out.read_text()
    assert "| uniego | 60.00 | 90.00 | 54 | 1x3 |" in text and "| proxy_exo_skl | 45.50 |" in text
    order = [text.index(s) for s in ("**UNIEGO**", "**Baselines**", "**Merged", "**Level-I proxies**")]
    assert order == sorted(order)
    assert recognition_table([]).count("\n") == 1


def _write(tmp_path, seed, rows):
    paths = []
    for name, top1 in rows.items():
        p = tmp_path / f"s{seed}_{name}.json"
        atomic_write_json(p, ({"model": name, "top1": top1, "top5": top1 + 10, "n": 54, "views": "1x3"}))
        paths.append(f"{seed}={p}")
    return paths


def test_report_gives_every_seed_and_the_mean(tmp_path):
    import pytest

    from uniego.errors import UniegoError
    runs = {0: {"uniego": 50.0, "baseline_naive_mtd": 40.0, "baseline_ego": 30.0},
            1: {"uniego": 60.0, "baseline_naive_mtd": 42.0, "baseline_ego": 35.0},
            2: {"uniego": 55.0, "baseline_naive_mtd": 38.0, "baseline_ego": 40.0}}
    paths = [p for s, rows in runs.items() for p in _write(tmp_path, s, rows)]
    text = write_report("demo", paths, tmp_path / "report.md").read_text()
    assert "| seed 0 | seed 1 | seed 2 | mean top-1 | sd | mean top-5 |" in text
    assert "| uniego | 50.00 | 60.00 | 55.00 | 55.00 | 5.00 | 65.00 |" in text
    assert "| baseline_ego | 30.00 | 35.00 | 40.00 | 35.00 | 5.00 | 45.00 |" in text
    assert "55.00 / 40.00 / 35.00 -> holds" in text
    runs[1]["baseline_ego"] = 80.0
    paths = [p for s, rows in runs.items() for p in _write(tmp_path, s, rows)]
    assert "does NOT hold" in write_report("demo", paths, tmp_path / "r2.md").read_text()
    with pytest.raises(UniegoError, match="no recognition result for seed"):
        write_report("demo", paths[:-1], tmp_path / "r3.md")


def test_report_retrieval_and_segmentation_tables(tmp_path):
    rec, ret, seg = [], [], []
    for seed, (u_map, e_map, u_f1) in enumerate([(0.50, 0.30, 40.0), (0.60, 0.40, 50.0)]):
        for name, m, f1 in (("uniego", u_map, u_f1), ("baseline_ego", e_map, 20.0)):
            for kind, obj, bucket in (
                    ("rec", {"model": name, "top1": 50.0, "top5": 90.0, "n": 54, "views": "1x3"}, rec),
                    ("ret", {"model": name, "mAP": m, "R@1": m + 0.1, "feature": "CLS", "views": "1x3"}, ret),
                    ("seg", {"model": name, "F1@10": f1, "F1@25": f1, "F1@50": f1 - 10, "Edit": 60.0, "Acc": 70.0,
                             "feature_stride": 2, "temporal_model": "MS-TCN 4x10x64", "train_videos": 4,
                             "test_videos": 2, "frames": 600, "background": []}, seg)):
                p = tmp_path / f"{kind}{seed}{name}.json"
                atomic_write_json(p, (obj))
                bucket.append(f"{seed}={p}")
    text = write_report("demo", rec, tmp_path / "r.md", retrieval=ret, segmentation=seg).read_text()
    assert "## Video retrieval" in text and "| mAP | R@1 |" in text
    assert "| uniego | 0.550 ± 0.071 | 0.650 ± 0.071 |" in text
    assert "| baseline_ego | 0.350 ± 0.071 | 0.450 ± 0.071 |" in text
    assert "## Temporal action segmentation" in text and "MS-TCN 4x10x64 trained on 4 train videos" in text
    assert "| uniego | 45.0 ± 7.1 | 45.0 ± 7.1 | 35.0 ± 7.1 | 60.0 ± 0.0 | 70.0 ± 0.0 |" in text
    # an undefined retrieval (no class with two test clips) prints n/a, never a number
    p = tmp_path / "none.json"
    atomic_write_json(p, ({"model": "uniego", "mAP": None, "R@1": None, "feature": "CLS", "views": "1x3"}))
    text = write_report("demo", [rec[0]], tmp_path / "r2.md", retrieval=[f"0={p}"]).read_text()
    assert "| uniego | n/a | n/a |" in text


def _result(tmp_path, seed, model, top1, **extra):
    p = tmp_path / f"s{seed}_{model}.json"
    atomic_write_json(p, ({"model": model, "top1": top1, "top5": 99.0, "n": 54, "views": "1x3", **extra}))
    return f"{seed}={p}"


def test_report_compares_exo_cue_classes_and_checks_proposition_1(tmp_path):
    """Per-class accuracy of the ego baseline, naive MTD and UNIEGO on the exo-cue classes with
    the best exo teacher's probe (means over seeds), and the merge table: train CE of each merge
    against the best proxy's, and where alpha went."""
    classes = ["squat", "arm_circle", "arm_circle_kickback"]
    paths, probes = [], []
    for seed, (ego, uni) in enumerate([((100.0, 40.0, 60.0), (100.0, 80.0, 70.0)), ((100.0, 50.0, 50.0), (100.0, 70.0, 90.0))]):
        for model, pc in (("baseline_ego", ego), ("baseline_naive_mtd", ego), ("uniego", uni)):
            paths.append(_result(tmp_path, seed, model, 60.0, per_class=dict(zip(classes, pc))))
        paths.append(_result(tmp_path, seed, "proxy_exo_skl", 55.0 + seed))
        for strategy, ce, alpha in (("model", 0.9, [0.8, 0.2]), ("average", 1.5, [0.5, 0.5])):
            objective = {"merged_ce": ce, "best_proxy_ce": 1.0, "best_proxy": "exo_skl", "samples": 162}
            paths.append(_result(tmp_path, seed, f"merge_{strategy}", 50.0, merge={
                "strategy": strategy, "alpha_mean": {"exo_skl": alpha[0], "ego_dino": alpha[1]}, "objective": objective,
                "start": ["uniform", "best_proxy"][seed]}))
        p = tmp_path / f"probes{seed}.json"
        atomic_write_json(p, ({"classes": classes, "chance": 33.3, "samples": {"train": 9, "val": 3, "test": 3},
                                 "teachers": {"exo_skl": {"top1": 90.0, "view": "exo", "per_class": [100.0, 90.0, 80.0]},
                                              "ego_dino": {"top1": 50.0, "view": "ego", "per_class": [100.0, 0.0, 0.0]}}}))
        probes.append(f"{seed}={p}")
    text = write_report("demo", paths, tmp_path / "report.md", probes=probes,
                        exo_cue_classes=["arm_circle", "arm_circle_kickback"]).read_text()
    assert "UNIEGO beats the ego baseline on them (77.5 vs 50.0)" in text
    assert "| arm_circle | 45.0 | 45.0 | 75.0 | 90.0 |" in text and "| **mean** | **50.0** | **50.0** | **77.5** | **85.0** |" in text
    assert "probe of exo_skl" in text
    assert "| merge_model | 50.0 | 0.900 | 1.000 (exo_skl) | 2 of 2 | exo_skl 0.80 | best_proxy 1 of 2, uniform 1 of 2 |" in text
    assert "| merge_average | 50.0 | 1.500 | 1.000 (exo_skl) | (not learned) | exo_skl 0.50 | - |" in text
    assert "The best proxy's test top-1: 55.5" in text
    import pytest

    from uniego.errors import UniegoError
    with pytest.raises(UniegoError, match="not classes of the dataset"):
        write_report("demo", paths, tmp_path / "r.md", probes=probes, exo_cue_classes=["kickback"])


def test_publish_copies_a_report_and_its_figures_unchanged(tmp_path, capsys):
    from uniego.cli import main
    from uniego.stages.report import GENERATED

    run = tmp_path / "results/demo"
    (run / "analysis").mkdir(parents=True)
    (run / "analysis/cka.png").write_bytes(b"\x89PNG fake")
    text = "# uniego report: demo\n\n![CKA of teachers and proxies](analysis/cka.png)\n\n| model | top-1 |\n"
    (run / "study.md").write_text(text)
    assert main(["publish", str(run / "study.md"), "--out", str(tmp_path / "docs")]) == 0
    out = (tmp_path / "docs/study.md").read_text()
    assert out.startswith(GENERATED) and "![CKA of teachers and proxies](figures/cka.png)" in out
    assert out.endswith(text.replace("analysis/cka.png", "figures/cka.png"))
    assert (tmp_path / "docs/figures/cka.png").read_bytes() == b"\x89PNG fake"
    (run / "notes.md").write_text("| UNIEGO | 99 |\n")   # not a report: refused
    assert main(["publish", str(run / "notes.md"), "--out", str(tmp_path / "docs")]) == 2
    assert "is not a report that `uniego report` wrote" in capsys.readouterr().err


def test_report_names_exo_cue_classes_without_test_clips_and_mismatched_probes(tmp_path):
    """A configured exo-cue class with no test clip, and probes of different teachers across
    seeds, are named errors rather than a TypeError or KeyError deep in the report."""

    import pytest

    from uniego.errors import UniegoError
    classes = ["squat", "arm_circle"]
    paths, probes = [], []
    for seed in (0, 1):
        for model in ("baseline_ego", "baseline_naive_mtd", "uniego"):
            paths.append(_result(tmp_path, seed, model, 60.0, per_class={"squat": 100.0, "arm_circle": None}))
        p = tmp_path / f"probes{seed}.json"
        teachers = {"exo_skl": {"top1": 90.0, "view": "exo", "per_class": [100.0, None]}}
        if seed == 1:
            teachers["ego_dino"] = {"top1": 50.0, "view": "ego", "per_class": [100.0, None]}
        atomic_write_json(p, ({"classes": classes, "chance": 50.0, "samples": {"train": 9, "val": 3, "test": 3},
                                 "teachers": teachers}))
        probes.append(f"{seed}={p}")
    with pytest.raises(UniegoError, match=r"\['arm_circle'\], which have no test clip in seed 0"):
        write_report("demo", paths, tmp_path / "r.md", exo_cue_classes=["arm_circle"])
    with pytest.raises(UniegoError, match="the linear probes of seed 1 cover teachers"):
        write_report("demo", paths, tmp_path / "r.md", probes=probes)


def test_exo_cue_verdict_calls_a_tie_a_tie():
    """The published study's case: per-class accuracies are stored as float32 (16.666667938232422 for
    1/6), so the ego baseline's mean over the exo-cue classes came to 37.50000159 and UNIEGO's to
    37.50000191. Both show as 37.5: that is a tie, not a win."""
    from uniego.report import exo_cue_verdict
    assert exo_cue_verdict(37.50000190734863, 37.50000158945719) == "UNIEGO ties the ego baseline on them"
    assert exo_cue_verdict(37.50000158945719, 37.50000190734863) == "UNIEGO ties the ego baseline on them"
    assert exo_cue_verdict(37.6, 37.5) == "UNIEGO beats the ego baseline on them"
    assert exo_cue_verdict(37.4, 37.5) == "UNIEGO does not beat the ego baseline on them"


def test_the_ablation_table_says_what_each_spd_run_used():
    """Issue 19: each SPD ablation row shows the start, k and rule, and the filters and normalisation
    it ran with (from the evaluation JSON, which copies the checkpoint's `spd`), so the filters of
    `fidelity: official` are visible where they apply."""
    import tempfile
    from pathlib import Path

    from uniego.report import ablation_section
    paper = {"init": "model", "k": 1, "mode": "topk", "student_ce_filter": False, "ce_cap": None, "normalize": "paper", "micro_batch": None}
    official = {**paper, "student_ce_filter": True, "ce_cap": 4.0, "normalize": "official", "micro_batch": 2}
    with tempfile.TemporaryDirectory() as d:
        files = []
        for name, spd in (("ablation_k2", {**paper, "k": 2}), ("ablation_all_proxies", {**official, "mode": "all"})):
            p = Path(d) / f"{name}.json"
            atomic_write_json(p, ({"model": name, "top1": 50.0, "top5": 90.0, "spd": spd}))
            files.append(str(p))
        text = "\n".join(ablation_section(files, {"uniego": {"top1": 60.0, "top5": 95.0, "spd": paper}}))
    assert "| uniego (as configured) | 60.00 | 95.00 | model | 1 topk | no | - | paper |" in text
    assert "| ablation_k2 | 50.00 | 90.00 | model | 2 topk | no | - | paper |" in text
    assert "| ablation_all_proxies | 50.00 | 90.00 | model | 1 all | yes | 4 | official / 2 clips |" in text
