"""Level II on real (tiny) proxies: the merge strategies and SPD's bookkeeping."""

import numpy as np
import pytest
import torch

from tests.conftest import CPU, SPD, TEACHERS, merge_settings
from tests.conftest import PROXY_SETTINGS as SETTINGS
from uniego.errors import UniegoError
from uniego.merge import start_logits
from uniego.stages.level2.distillation import run_spd
from uniego.stages.level2.merging import run_merge


def test_average_best_and_learned_merges(tiny_data, proxies, tmp_path):
    base, paths, _ = proxies
    enc = [torch.load(paths[t], weights_only=True)["encoder"] for t in TEACHERS]
    avg = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "average.pt",
                               merge_settings(), compute=CPU), weights_only=True)
    for k in enc[0]:
        torch.testing.assert_close(avg["encoder"][k], (enc[0][k] + enc[1][k]) / 2)
    best = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "best", tmp_path / "best.pt",
                                merge_settings(), compute=CPU), weights_only=True)
    winner = TEACHERS.index(best["meta"]["best_by_val_top1"])
    assert winner == int(np.argmax(best["meta"]["val_top1"]))
    for k in enc[0]:
        assert torch.equal(best["encoder"][k], enc[winner][k]), k
    learned = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "layer", tmp_path / "layer.pt",
                                   merge_settings(), compute=CPU), weights_only=True)
    alpha = np.array(learned["meta"]["alpha"]["alpha"])
    assert alpha.shape == (len(learned["meta"]["alpha"]["groups"]), 2)
    assert np.allclose(alpha.sum(1), 1) and (alpha > 0).all() and not np.allclose(alpha, 0.5)  # moved, on the simplex
    assert (tmp_path / "layer.run" / "metrics.jsonl").exists()


def test_merge_records_its_objective_against_every_proxy(tiny_data, proxies, tmp_path):
    """Proposition 1's measurement: the train CE (eval view) of the merged model and of each
    proxy. The `best` merge IS a proxy, so its CE equals that proxy's, from the exported logits."""
    _, paths, outputs = proxies
    from uniego.stages.evaluate.recognition import merge_summary
    best = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "best", tmp_path / "best.pt",
                                merge_settings(), compute=CPU, outputs=outputs), weights_only=True)["meta"]
    o = best["objective"]
    train = int((tiny_data["table"].split == "train").sum())
    assert o["samples"] == train and set(o["proxy_ce"]) == set(TEACHERS) and o["best_proxy"] in TEACHERS
    assert o["merged_ce"] == pytest.approx(o["proxy_ce"][best["best_by_val_top1"]], rel=1e-5)
    assert o["best_proxy_ce"] == min(o["proxy_ce"].values())
    summary = merge_summary(best)
    assert summary["strategy"] == "best" and summary["alpha_mean"][best["best_by_val_top1"]] == 1.0
    avg = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "avg.pt",
                               merge_settings(), compute=CPU), weights_only=True)["meta"]
    assert avg["objective"] is None   # without the proxies' outputs: not measured
    assert merge_summary(avg)["alpha_mean"] == {t: 0.5 for t in TEACHERS}


def test_merge_from_two_starts_keeps_the_lower_objective(tiny_data, proxies, tmp_path):
    """merge.starts [uniform, best_proxy]: eq. 2 runs from both starts (two run folders); the
    kept merge is the one whose train CE (eval view) is lower, and both are recorded."""
    _, paths, outputs = proxies
    meta = torch.load(run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "model", tmp_path / "model.pt",
                                merge_settings(starts=["uniform", "best_proxy"], best_start_alpha=0.8), compute=CPU,
                                outputs=outputs), weights_only=True)["meta"]
    starts = {r["start"]: r for r in meta["starts"]}
    assert list(starts) == ["uniform", "best_proxy"]
    assert meta["start"] == min(starts, key=lambda s: starts[s]["merged_ce"])
    assert meta["objective"]["merged_ce"] == starts[meta["start"]]["merged_ce"]
    assert meta["alpha"]["alpha"][0] == pytest.approx(list(starts[meta["start"]]["alpha_mean"].values()))
    assert (tmp_path / "model.run" / "metrics.jsonl").exists() and (tmp_path / "model.best_proxy.run" / "metrics.jsonl").exists()
    # the best_proxy start leans on the proxy with the lowest train CE, and one epoch moves it only a little
    lowest = meta["objective"]["best_proxy"]
    assert starts["best_proxy"]["alpha_mean"][lowest] > 0.6 > starts["uniform"]["alpha_mean"][lowest]
    with pytest.raises(UniegoError, match="exported outputs"):   # no outputs: no best proxy to start from
        run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "model", tmp_path / "m2.pt",
                  merge_settings(starts=["best_proxy"]), compute=CPU)


def test_start_logits():
    """alpha = softmax(start logits): uniform 1/R, or `weight` on the chosen proxy."""
    assert torch.equal(start_logits("uniform", 4), torch.zeros(4))
    a = torch.softmax(start_logits("best_proxy", 4, best=2, weight=0.9), 0)
    torch.testing.assert_close(a, torch.tensor([0.1 / 3, 0.1 / 3, 0.9, 0.1 / 3]))
    for bad in ({"best": None}, {"best": 0, "weight": 1.0}):
        with pytest.raises(UniegoError):
            start_logits("best_proxy", 4, **bad)
    with pytest.raises(UniegoError, match="unknown"):
        start_logits("vertex", 4)


def test_spd_records_selections(tiny_data, proxies, tmp_path):
    base, paths, outputs = proxies
    merged = run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "avg.pt", merge_settings(), compute=CPU)
    settings = {"student": SETTINGS["student"], "train": {**SETTINGS["train"], "epochs": 2}, "spd": SPD, "teachers": TEACHERS,
                "seed": 0, "probe_samples": 3}
    out = torch.load(run_spd(tiny_data["manifest"], tiny_data["clips"]["ego"], str(merged), outputs, tmp_path / "uniego.pt",
                             settings, compute=CPU), weights_only=True)
    sel = out["meta"]["selection"]
    bs = SETTINGS["train"]["batch_size"]
    assert sel["samples_seen"] == 2 * (9 // bs) * bs            # the probe is not counted as training samples
    history = out["meta"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["grad_conflict_rate"] <= 1 and 0 <= h["grad_probe_distilled"] <= 1 for h in history)
    # the conflict figure reads that history
    from uniego.analysis import conflict_analysis
    r = conflict_analysis({"uniego": str(tmp_path / "uniego.pt")}, str(tmp_path / "c.json"), str(tmp_path / "c.png"))
    assert r["models"]["uniego"]["conflict_rate"] == [h["grad_conflict_rate"] for h in history]
    per_class = np.array(sel["per_class"])
    assert per_class.shape == (9, 2)
    assert per_class.sum(0).tolist() == [sel["per_proxy"][t] for t in TEACHERS]
    assert sum(sel["per_proxy"].values()) <= sel["samples_seen"]  # k = 1: at most one proxy per sample
    assert out["meta"]["method"] == "uniego" and "proj" not in out


def test_spd_without_a_merge_starts_from_the_students_own_start(tiny_data, proxies, tmp_path):
    """spd.init none (the paper's "without merge" row): the start is build_student's (student.init),
    not a merged checkpoint; --init must then be `none`, and only then."""
    from uniego.config import parse_student
    from uniego.student import build_student
    _, paths, outputs = proxies
    settings = {"student": SETTINGS["student"], "train": {**SETTINGS["train"], "epochs": 1, "lr": 1e-9}, "spd": {**SPD, "init": "none"},
                "teachers": TEACHERS, "seed": 5}
    out = torch.load(run_spd(tiny_data["manifest"], tiny_data["clips"]["ego"], "none", outputs, tmp_path / "nomerge.pt", settings,
                             compute=CPU), weights_only=True)
    assert out["meta"]["init"] == "student.init: random" and out["meta"]["spd"]["init"] == "none"
    start = build_student(parse_student(SETTINGS["student"]), 9, num_frames=4, seed=5).state_dict()
    moved = max((out["encoder"][k].float() - v.float()).abs().max().item() for k, v in start.items())
    assert moved < 1e-5   # lr 1e-9: the encoder is still its start
    with pytest.raises(UniegoError, match="give --init none exactly when spd.init is none"):
        run_spd(tiny_data["manifest"], tiny_data["clips"]["ego"], paths["exo_skl"], outputs, tmp_path / "x.pt", settings, compute=CPU)


def test_gradient_probe_leaves_training_untouched(tiny_data, proxies, tmp_path):
    """The conflict probe (analysis.probe_samples) only measures: SPD with and without it ends
    with bit-identical weights and selections."""
    _, paths, outputs = proxies
    merged = run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "avg.pt", merge_settings(), compute=CPU)
    runs = {}
    for n in (0, 3):
        settings = {"student": SETTINGS["student"], "train": {**SETTINGS["train"], "epochs": 2}, "spd": SPD, "teachers": TEACHERS,
                    "seed": 0, "probe_samples": n}
        runs[n] = torch.load(run_spd(tiny_data["manifest"], tiny_data["clips"]["ego"], str(merged), outputs, tmp_path / f"p{n}.pt",
                                     settings, compute=CPU), weights_only=True)
    assert "grad_conflict_rate" in runs[3]["meta"]["history"][-1] and "grad_conflict_rate" not in runs[0]["meta"]["history"][-1]
    for k, v in runs[0]["encoder"].items():
        assert torch.equal(v, runs[3]["encoder"][k]), k
    assert runs[0]["meta"]["selection"] == runs[3]["meta"]["selection"]


def test_evaluation_refuses_a_model_from_another_manifest(tiny_data, proxies, tmp_path):
    from uniego.errors import UniegoError
    from uniego.stages.evaluate.recognition import evaluate_recognition
    _, paths, _ = proxies
    settings = {"student": SETTINGS["student"], "eval": {"spatial_crops": 3}}
    r = evaluate_recognition(tiny_data["manifest"], tiny_data["clips"]["ego"], paths["exo_skl"], tmp_path / "ok.json", settings, compute=CPU)
    assert r["n"] == 9 and r["views"] == "1x3" and 0 <= r["top1"] <= r["top5"] <= 100
    obj = torch.load(paths["exo_skl"], weights_only=True)
    obj["meta"]["manifest_sha256"] = "0" * 64
    torch.save(obj, tmp_path / "stale.pt")
    with pytest.raises(UniegoError, match="another manifest"):
        evaluate_recognition(tiny_data["manifest"], tiny_data["clips"]["ego"], str(tmp_path / "stale.pt"), tmp_path / "x.json",
                             settings, compute=CPU)
    assert not (tmp_path / "x.json").exists()


def test_killed_spd_resumes_to_the_same_weights(tiny_data, proxies, tmp_path):
    """kill -9 after an epoch of SPD; the rerun resumes from its checkpoint and ends where an
    uninterrupted run ends (CPU), selection counts included."""
    import json
    import os
    import subprocess
    import sys
    _, paths, outputs = proxies
    merged = run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "average", tmp_path / "avg.pt", merge_settings(), compute=CPU)
    settings = {"student": SETTINGS["student"], "train": {**SETTINGS["train"], "epochs": 3}, "spd": SPD, "teachers": TEACHERS,
                "seed": 0, "probe_samples": 2}

    def run(out, env=None):
        cmd = [sys.executable, "-m", "uniego", "spd", "--settings", json.dumps(settings), "--manifest", str(tiny_data["manifest"]),
               "--clips", tiny_data["clips"]["ego"], "--init", str(merged), "--outputs", *[f"{t}={outputs[t]}" for t in TEACHERS],
               "--out", str(out), "--workers", "0", "--device", "cpu", "--precision", "fp32"]
        return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)

    killed = run(tmp_path / "resumed.pt", {"UNIEGO_TEST_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -9 and not (tmp_path / "resumed.pt").exists()
    assert (tmp_path / "resumed.run" / "last.pt").exists()
    resumed = run(tmp_path / "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr
    assert run(tmp_path / "straight.pt").returncode == 0
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("resumed", "straight"))
    assert all(torch.equal(a["encoder"][k], b["encoder"][k]) for k in b["encoder"])
    assert a["meta"]["selection"] == b["meta"]["selection"]
    assert [h["grad_conflict_rate"] for h in a["meta"]["history"]] == [h["grad_conflict_rate"] for h in b["meta"]["history"]]


def test_the_merge_takes_exactly_the_listed_proxies(tiny_data, proxies, tmp_path):
    """A proxy given but not in level1.teachers, one missing, or one of another teacher given
    in its place is a named error, never silently left out (issue 20)."""
    from uniego.errors import UniegoError
    _, paths, _ = proxies
    run = lambda p: run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], p, "average",  # noqa: E731
                              tmp_path / "avg.pt", merge_settings(), compute=CPU)
    with pytest.raises(UniegoError, match=r"\['exo_dino'\] not listed"):
        run({**paths, "exo_dino": paths["ego_dino"]})
    with pytest.raises(UniegoError, match=r"\['ego_dino'\] missing"):
        run({"exo_skl": paths["exo_skl"]})
    with pytest.raises(UniegoError, match="is the proxy of exo_skl, given as ego_dino's"):
        run({"exo_skl": paths["exo_skl"], "ego_dino": paths["exo_skl"]})
    assert not (tmp_path / "avg.pt").exists()
