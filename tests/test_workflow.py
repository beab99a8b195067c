"""The DAG end to end on the tiny demo, as a user runs it from a fresh clone."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from tests.conftest import copy_workflow
from uniego.teachers import TEACHERS

pytestmark = pytest.mark.slow


def snakemake(workdir, *args, overlays=()):
    """Run snakemake in `workdir` with the tiny config, the shared overlay of the `built` tests
    when there is one, and overlay config files (the --configfile option is last: it takes
    every following word as a file)."""
    shared = [SHARED_OVERLAY] if (Path(workdir) / SHARED_OVERLAY).is_file() else []
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", "tests/configs/tiny.yaml", *shared,
           *map(str, overlays)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def planned_jobs(result) -> dict:
    """{rule: count} from a dry run's job stats."""
    m = re.search(r"Job stats:\n(.*?)\n\n", result.stdout + "\n\n", re.S)
    if not m:
        return {}
    rows = [line.split() for line in m.group(1).splitlines()[2:]]
    return {r[0]: int(r[1]) for r in rows if len(r) == 2 and r[0] != "total"}


STORES = [f"results/tiny/features/{t}.zarr" for t in TEACHERS]
# Every test on the `built` workflow runs with this overlay (its own overlays add to it), so no
# test's settings retrain what another test built: the task teachers train under `train`.
SHARED_OVERLAY = "tests/configs/shared.yaml"
SHARED = {"train": {"epochs": 1}}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("clone")
    copy_workflow(work, "tests")
    (work / SHARED_OVERLAY).write_text(yaml.safe_dump(SHARED))
    r = snakemake(work, *STORES)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work


# The tests below share one built workflow and pass in any order: a test that changes a store
# puts it back, and a test that needs models builds them (a no-op when another test already did).


def test_demo_dag_builds_every_store(built):
    res = built / "results" / "tiny"
    assert (res / "manifest.parquet").is_file()
    for view in ("ego", "exo", "skeleton"):
        assert (res / "clips" / f"{view}.zarr" / "zarr.json").is_file()
    for teacher in TEACHERS:
        ds = xr.open_zarr(res / "features" / f"{teacher}.zarr")
        assert ds["features"].dims[0] == "sample" and ds["features"].dims[-1] == "channel"
        assert ds.sizes["sample"] == 36 and "sample" in ds.indexes
        assert ds.attrs["complete"] is True and ds.attrs["teacher"] == teacher
        assert np.isfinite(ds["features"].values.astype(np.float32)).all()
    assert not list(res.rglob("*.partial"))


def test_task_teachers_are_trained_then_extracted(built):
    for t in ("exo_rgb", "exo_skl"):
        ck = torch.load(built / f"results/tiny/teachers/{t}.pt", weights_only=True)
        assert ck["meta"]["kind"] == "task_teacher" and ck["meta"]["teacher"] == t
        attrs = xr.open_zarr(built / f"results/tiny/features/{t}.zarr").attrs
        assert attrs["weights"] == f"results/tiny/teachers/{t}.pt"
        assert attrs["task_teacher"]["val_top1"] == ck["meta"]["val_top1"]
        assert attrs["stand_in"] is True and "tiny test architecture" in attrs["stand_in_reason"]
    assert xr.open_zarr(built / "results/tiny/features/ego_dino.zarr").attrs["task_teacher"] is None


def test_second_run_does_nothing(built):
    r = snakemake(built, *STORES, "-n")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-2000:]


def test_changing_one_teacher_reruns_only_its_store(built):
    overlay = built / "tests" / "configs" / "changed.yaml"
    overlay.write_text(yaml.safe_dump({"teachers": {"exo_dino": {"arch": "dinov2_test", "weights": "random", "input_size": 28}}}))
    dry = snakemake(built, *STORES, "-n", overlays=[overlay])
    assert dry.returncode == 0, dry.stderr
    assert planned_jobs(dry) == {"extract": 1}, dry.stdout
    assert "teacher=exo_dino" in dry.stdout
    others = {t: (built / f"results/tiny/features/{t}.zarr/zarr.json").stat().st_mtime_ns for t in TEACHERS if t != "exo_dino"}
    run = snakemake(built, *STORES, overlays=[overlay])
    assert run.returncode == 0, run.stderr[-2000:]
    assert xr.open_zarr(built / "results/tiny/features/exo_dino.zarr").attrs["input_size"] == 28
    for t, mtime in others.items():
        assert (built / f"results/tiny/features/{t}.zarr/zarr.json").stat().st_mtime_ns == mtime, t
    back = snakemake(built, *STORES)   # the config's exo_dino again, for the other tests
    assert back.returncode == 0, back.stderr[-2000:]
    assert xr.open_zarr(built / "results/tiny/features/exo_dino.zarr").attrs.get("input_size") != 28


def test_switching_off_a_task_teacher_reruns_only_its_extraction(built):
    overlay = built / "tests" / "configs" / "frozen_skl.yaml"
    overlay.write_text(yaml.safe_dump({"teachers": {"exo_skl": {"arch": "stgcn_test", "weights": "random", "finetune": False}}}))
    def skl_command(result):
        lines = [x for x in result.stdout.splitlines() if "uniego extract" in x and "--teacher exo_skl" in x]
        assert len(lines) == 1, result.stdout
        return lines[0]

    forced = snakemake(built, "results/tiny/features/exo_skl.zarr", "-n", "-p", "-f")
    assert "--task-teacher results/tiny/teachers/exo_skl.pt" in skl_command(forced)
    dry = snakemake(built, *STORES, "-n", "-p", overlays=[overlay])
    assert dry.returncode == 0, dry.stderr
    assert "train_teacher" not in planned_jobs(dry) and "--task-teacher" not in skl_command(dry)


def test_bad_config_fails_when_the_dag_is_built(built):
    overlay = built / "tests" / "configs" / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"clips": {"num_frame": 8}}))
    r = snakemake(built, "-n", overlays=[overlay])
    assert r.returncode != 0
    assert "clips.num_frame: unknown key" in r.stdout + r.stderr


def test_level1_proxy_through_the_dag(built):
    overlay = built / "tests" / "configs" / "level1.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 1}}))
    target = "results/tiny/proxies/exo_skl.outputs.zarr"
    r = snakemake(built, target, overlays=[overlay])
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ds = xr.open_zarr(built / target)
    assert ds.sizes["sample"] == int((ds["split"].values == "train").sum()) > 0
    assert ds.attrs["teacher"] == "exo_skl" and ds["logits"].shape[1] == 9
    # a Level-I setting reruns the proxy and its outputs, nothing upstream
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 1}, "level1": {"lambda_feat": 2.0}}))
    dry = snakemake(built, target, "-n", overlays=[overlay])
    assert planned_jobs(dry) == {"train_proxy": 1, "proxy_outputs": 1}, dry.stdout


def test_uniego_through_the_dag_and_spd_k_reruns_only_spd(built):
    overlay = built / "tests" / "configs" / "level2.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 1}, "merge": {"epochs": 1},
                                       "level1": {"teachers": ["exo_skl", "ego_dino"]}}))
    targets = ["results/tiny/eval/uniego/recognition.json", "results/tiny/eval/baseline_ego/recognition.json"]
    r = snakemake(built, *targets, overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import json

    for t in targets:
        res = json.loads((built / t).read_text())
        assert 0 <= res["top1"] <= res["top5"] <= 100 and res["n"] == 9 and res["views"] == "1x3"
        assert len(res["code_version"]) == 12   # the rule passes the evaluation's code version
    ck = torch.load(built / "results/tiny/uniego.pt", weights_only=True)
    assert ck["meta"]["teachers"] == ["exo_skl", "ego_dino"] and ck["meta"]["init"].endswith("merge/model.pt")
    overlay.write_text(yaml.safe_dump({"train": {"epochs": 1}, "merge": {"epochs": 1}, "spd": {"k": 2},
                                       "level1": {"teachers": ["exo_skl", "ego_dino"]}}))
    dry = snakemake(built, *targets, "-n", overlays=[overlay])
    assert planned_jobs(dry) == {"spd": 1, "recognition": 1}, dry.stdout
    assert "output: results/tiny/eval/uniego/recognition.json" in dry.stdout
    assert "output: results/tiny/eval/baseline_ego/recognition.json" not in dry.stdout


def test_segmentation_and_retrieval_through_the_dag(built):
    """The Level-II overlay of the test above: its models, built here if that test has not run."""
    import json
    base = {"train": {"epochs": 1}, "merge": {"epochs": 1}, "level1": {"teachers": ["exo_skl", "ego_dino"]}}
    overlay = built / "tests" / "configs" / "segmentation.yaml"
    overlay.write_text(yaml.safe_dump({**base, "segmentation": {"models": ["baseline_ego", "uniego"]}}))
    models = snakemake(built, "results/tiny/uniego.pt", "results/tiny/baselines/ego.pt", "results/tiny/eval/uniego/retrieval.json",
                       overlays=[overlay])
    assert models.returncode == 0, models.stdout[-3000:] + models.stderr[-3000:]
    targets = [f"results/tiny/eval/{m}/segmentation.json" for m in ("baseline_ego", "uniego")]
    dry = snakemake(built, *targets, "-n", overlays=[overlay])
    assert planned_jobs(dry) == {"sessions": 1, "session_clips": 1, "dense_features": 2, "segmentation": 2}, dry.stdout
    r = snakemake(built, *targets, overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for t in targets:
        res = json.loads((built / t).read_text())
        assert res["test_videos"] == 1 and res["train_videos"] == 1 and res["feature_stride"] == 4
        assert all(0 <= res[k] <= 100 for k in ("F1@10", "F1@25", "F1@50", "Edit", "Acc"))
    ret = json.loads((built / "results/tiny/eval/uniego/retrieval.json").read_text())
    assert ret["mAP"] is None and "no test class" in ret["note"]   # tiny: one test clip per class
    # the export target: the encoder with the numbers of its own report files (issue 22)
    r = snakemake(built, "results/tiny/export", overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    export = built / "results/tiny/export"
    files = sorted(f.name for f in export.iterdir() if not f.name.startswith("."))   # Snakemake adds .snakemake_timestamp
    assert files == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    cfg = json.loads((export / "config.json").read_text())
    rec, seg = (json.loads((built / f"results/tiny/eval/uniego/{k}.json").read_text()) for k in ("recognition", "segmentation"))
    assert cfg["metrics"]["recognition"]["top1"] == rec["top1"] and cfg["metrics"]["segmentation"]["F1@10"] == seg["F1@10"]
    assert cfg["dataset"] == "tiny" and len(cfg["provenance"]["config_sha256"]) == 64
    card = (export / "README.md").read_text()
    assert f"| {rec['top1']:.2f} |" in card and f"| {seg['F1@10']:.1f} |" in card
    # a temporal-model setting reruns only the segmentation jobs; the report plans every table
    overlay.write_text(yaml.safe_dump({**base, "segmentation": {"models": ["baseline_ego", "uniego"], "epochs": 3}}))
    dry = snakemake(built, *targets, "-n", overlays=[overlay])
    assert planned_jobs(dry) == {"segmentation": 2}, dry.stdout
    dry = snakemake(built, "results/tiny/report.md", "-n", overlays=[overlay])
    jobs = planned_jobs(dry)
    assert jobs["report"] == 1 and jobs["segmentation"] == 2 and "dense_features" not in jobs, dry.stdout


def test_paths_with_shell_metacharacters_are_quoted(built):
    """A data root with spaces, quotes and command substitutions is data, never a command."""
    import pandas as pd
    root = "data/evil dir; touch PWNED1 && $(touch PWNED2) `touch PWNED3` 'q'"
    overlay = built / "tests" / "configs" / "evil.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"evil": {"adapter": "demo", "root": root, "preset": "tiny"}}}))
    r = snakemake(built, "results/evil/manifest.parquet", overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert not list(built.rglob("PWNED*"))
    assert (built / root / "annotations.csv").is_file()
    table = pd.read_parquet(built / "results/evil/manifest.parquet")
    assert len(table) == 36 and table.ego_video.str.startswith(root).all()


def test_two_runs_from_scratch_give_identical_results(tmp_path):
    """Determinism on CPU: the whole tiny DAG to report.md, twice from scratch in two clones;
    every metric and analysis JSON, the report, every training log, checkpoint and store are identical."""
    from uniego.reproduce import compare_runs, list_outputs
    overlay = {"train": {"epochs": 1}, "merge": {"epochs": 1}, "level1": {"teachers": ["exo_skl", "ego_dino"]},
               "segmentation": {"epochs": 2}}
    runs = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        copy_workflow(work, "tests")
        (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        r = snakemake(work, "results/tiny/report.md", overlays=[work / "overlay.yaml"])
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        runs.append(work / "results" / "tiny")
    outputs = list_outputs(runs[0])
    metric_json = [f for f, kind in outputs.items() if kind == "metrics" and f.suffix == ".json"
                   and ("eval" in f.parts or "analysis" in f.parts)]
    # 10 models x (recognition, retrieval) + 3 segmentation + 4 analyses (report.md: no ablation evaluations)
    assert len(metric_json) >= 27 and sum(f.name == "segmentation.json" for f in metric_json) == 3
    # every metric, log, table, figure, checkpoint and store, compared by content (uniego compare-runs)
    c = compare_runs(runs[0], runs[1])
    assert c.identical, "\n".join(c.differences[:40])
    assert c.compared["metrics"] == sum(k == "metrics" for k in outputs.values()) >= 50
    # the finished models (2 task teachers, 2 proxies, 5 merges, 2 baselines, UNIEGO, the SPD ablation);
    # no `.run/last.pt` is left once a training has finished (issue 20: a forced rerun retrains)
    assert not [f for f in outputs if f.name == "last.pt"], outputs
    assert c.compared["checkpoints"] == sum(k == "checkpoints" for k in outputs.values()) >= 12, c.compared
    # every model checkpoint follows the one stage runner's schema (issue 21), and every trained one has its history
    from uniego.stages.runner import CHECKPOINT_META, KINDS
    models = [f for f in runs[0].rglob("*.pt") if ".run" not in f.parent.name]
    assert len(models) >= 12, models
    for f in models:
        meta = torch.load(f, weights_only=True)["meta"]
        assert list(meta)[:len(CHECKPOINT_META)] == list(CHECKPOINT_META) and meta["kind"] in KINDS, (f, list(meta))
        trained = meta["kind"] != "merged" or meta["strategy"] in ("model", "layer", "parameter")
        assert bool(meta["history"]) == trained and (meta["final_metrics"] == meta["history"][-1] if trained else True), f
    assert c.compared["stores"] >= 10, c.compared
    # every teacher's linear probe is in the report (issue 18), the stand-ins' training named
    probes = json.loads((runs[0] / "analysis" / "probes.json").read_text())
    assert list(probes["teachers"]) == overlay["level1"]["teachers"] and probes["samples"]["test"] > 0
    assert all(0 <= p["top1"] <= 100 for p in probes["teachers"].values())
    report = (runs[0] / "report.md").read_text()
    assert "## What the teachers know: linear probes" in report
    assert "| ego_dino | ego | DINO self-distillation" in report and "| exo_skl | exo | the task's train split |" in report
    # eq. 2's objective per merge against the best proxy (Proposition 1), and the exo-cue classes per class
    assert re.search(r"\| merge_model \| [\d.]+ \| [\d.]+ \| [\d.]+ \((exo_skl|ego_dino)\) \| [01] of 1 \|", report), report
    assert "| arm_circle_kickback |" in report and "probe of exo_skl" in report
    # the pretraining ran once for both clones' seeds, from the same corpus: identical checkpoints
    for t in ("dinov2_test.pth", "student.pt"):
        a, b = (torch.load(r.parent.parent / "results" / "pretrain" / "tiny" / t, weights_only=True) for r in runs)
        a, b = (x["encoder"] if "encoder" in x else x for x in (a, b))
        assert all(torch.equal(a[k], b[k]) for k in a), t


def test_a_video_replaced_in_place_reruns_what_depends_on_it(built):
    """The data check's parameters carry a hash of every dataset file's content (issue 20): a video
    replaced in place reruns the check, the manifest and the clip caches; nothing else changes. A
    video only touched reruns nothing."""
    import os
    import shutil

    import pandas as pd
    overlay = built / "tests" / "configs" / "replaced.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"replaced": {"adapter": "demo", "root": "data/replaced", "preset": "tiny"}}}))
    target = "results/replaced/clips/ego.zarr"
    r = snakemake(built, target, overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Nothing to be done" in snakemake(built, target, "-n", overlays=[overlay]).stdout
    ann = pd.read_csv(built / "data/replaced/annotations.csv")
    os.utime(built / "data/replaced" / ann.ego_video[0])   # touched, content unchanged: nothing to rerun
    assert "Nothing to be done" in snakemake(built, target, "-n", overlays=[overlay]).stdout
    shutil.copyfile(built / "data/replaced" / ann.ego_video[1], built / "data/replaced" / ann.ego_video[0])   # another clip's video
    dry = snakemake(built, target, "-n", overlays=[overlay])
    assert planned_jobs(dry) == {"check_data": 1, "manifest": 1, "clips": 1}, dry.stdout
    assert "Params have changed since last execution" in dry.stdout


def test_a_damaged_clip_cache_fails_its_job_with_the_message_on_the_terminal(built):
    """A chunk damaged after the cache was built: the extraction reading it fails with the store,
    array, chunk and sample named, on the terminal (a failed job's last log lines go to stderr),
    and leaves no feature store."""
    overlay = built / "tests" / "configs" / "damaged.yaml"
    cached = {"teachers": {"ego_dino": {"frames_from": "cache"}}}   # ego_dino reads the cached frames
    overlay.write_text(yaml.safe_dump({"datasets": {"damaged": {"adapter": "demo", "root": "data/damaged", "preset": "tiny",
                                                                "overrides": cached}}}))
    r = snakemake(built, "results/damaged/clips/ego.zarr", overlays=[overlay])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    chunk = next(f for f in sorted((built / "results/damaged/clips/ego.zarr/frames/c/2").rglob("*")) if f.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    r = snakemake(built, "results/damaged/features/ego_dino.zarr", overlays=[overlay])
    assert r.returncode != 0
    assert "is damaged: `frames` chunk 2 (rows 2-2: demo_00002) cannot be read" in r.stdout + r.stderr
    assert not (built / "results/damaged/features/ego_dino.zarr").exists()
