"""The command line's rough edges: config overlays and nested --config values, the target
list and mistyped targets, inspect on a non-store, help texts, rounded log lines."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO, copy_workflow
from uniego.cli import main
from uniego.config import coerce_command_line_values, load_yaml, validate_config


def test_nested_command_line_values_are_typed_by_the_schema():
    config = load_yaml(REPO / "config.yaml")
    config["spd"] = {**config["spd"], "k": "2"}                      # --config spd='{k: 2}'
    config["train"] = {**config["train"], "lr_steps": ["0", "3", "9"]}   # --config train='{lr_steps: [0, 3, 9]}'
    config["compute"] = {**config["compute"], "workers": "0", "device": "cpu"}
    config["datasets"]["demo"]["root"] = "2024"                       # a string value stays a string
    validate_config(coerce_command_line_values(config))
    assert config["datasets"]["demo"]["root"] == "2024"
    assert config["spd"]["k"] == 2 and config["train"]["lr_steps"] == [0, 3, 9] and config["compute"]["workers"] == 0
    config["spd"]["k"] = "two"
    coerce_command_line_values(config)
    assert config["spd"]["k"] == "two"   # left for validate_config to report


def test_validate_config_takes_overlays_and_names_the_bad_key(tmp_path, capsys):
    assert main(["validate-config", str(REPO / "config.yaml"), str(REPO / "tests/configs/tiny.yaml")]) == 0
    assert "tiny.yaml: valid" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("spd:\n  k: two\n")
    assert main(["validate-config", str(REPO / "config.yaml"), str(bad)]) == 2
    assert "spd.k: 'two' is not of type 'integer'" in capsys.readouterr().err


def test_targets_lists_every_file_target_of_a_dataset(capsys):
    assert main(["targets", str(REPO / "config.yaml"), "--dataset", "demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    paths = [line.split()[0] for line in lines]
    assert "results/demo/uniego.pt" in paths and "results/demo/report.md" in paths and "results/demo/study.md" in paths
    assert "results/demo/features/exo_skl.zarr" in paths and "results/demo/teachers/exo_skl.pt" in paths
    assert "results/demo/eval/ablation_k2/recognition.json" in paths
    assert not any("teachers/ego_dino.pt" in p for p in paths)   # frozen teachers are not trained
    assert all(p.startswith("results/demo/") for p in paths)
    assert main(["targets", str(REPO / "config.yaml"), "--dataset", "nope"]) == 2
    # without --dataset: every dataset, and the demo's pretraining (shared by all of them)
    assert main(["targets", str(REPO / "config.yaml")]) == 0
    paths = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"data/corpus_demo", "results/pretrain/demo/dinov2_test.pth", "results/pretrain/demo/student.pt"} <= set(paths)


def test_a_mistyped_target_gets_the_closest_real_ones(tmp_path):
    copy_workflow(tmp_path)
    r = subprocess.run([sys.executable, "-m", "snakemake", "results/demo/uniego.pth", "-n"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "no rule makes 'results/demo/uniego.pth'. Did you mean results/demo/uniego.pt" in r.stderr
    assert "uniego targets" in r.stderr and "Traceback" not in r.stderr


def test_the_default_target_is_one_seed_and_the_study_every_seed(tmp_path):
    """`snakemake --cores all` builds report.md of the configured seed only, the pretraining
    included; study.md adds the repeat seeds (each a whole run: its own data, teachers, proxies)
    and the SPD ablations."""
    copy_workflow(tmp_path)
    jobs = {}
    for target in ([], ["results/demo/study.md"]):
        r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *target], cwd=tmp_path,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        stats = r.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]
        jobs[bool(target)] = {row.split()[0]: int(row.split()[1]) for row in stats}
    one, study = jobs[False], jobs[True]
    seeds = 1 + len(load_yaml(REPO / "config.yaml")["datasets"]["demo"]["repeat_seeds"])
    assert one["report"] == study["report"] == 1 and one["train_proxy"] == 9 and study["train_proxy"] == 9 * seeds
    assert one["demo_data_demo"] == 1 and study["merge"] == 5 * seeds
    # the pretraining is part of the default run, and every seed shares it (as ImageNet weights)
    assert one["demo_corpus"] == study["demo_corpus"] == 1 and one["pretrain"] == study["pretrain"] == 5
    ablations = len(load_yaml(REPO / "config.yaml")["ablations"])
    assert one["spd_ablation"] == 1 and study["spd_ablation"] == ablations   # all_proxies: the conflict analysis


def test_inspect_on_a_file_is_one_named_error(tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_bytes(b"not a store")
    assert main(["inspect", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"{other} is a file, not a Zarr store" in err and "Traceback" not in err
    checkpoint = tmp_path / "uniego.pt"   # a .pt is inspected as a checkpoint: this one cannot be read
    checkpoint.write_bytes(b"not a checkpoint")
    assert main(["inspect", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {checkpoint}" in err and "Traceback" not in err


def test_help_texts_explain_the_commands(capsys):
    for command, words in (("inspect", "provenance"), ("validate-config", "overlays"), ("targets", "file target")):
        try:
            main([command, "--help"])
        except SystemExit as e:
            assert e.code == 0
        assert words in capsys.readouterr().out


def test_log_lines_round_numbers():
    from uniego.engine import _epoch_line

    line = _epoch_line({"epoch": 2, "lr": 0.005, "steps": 7, "loss": 2.302585092994046, "top1": 11.111111640930176,
                        "selected_per_proxy": [1, 2]}, 5)
    assert line == "epoch 2/5  lr 0.005  loss 2.303  top1 11.11"


def test_demo_generation_reports_progress(capsys):
    from uniego.demo.generate import _with_progress

    assert _with_progress(iter(range(25)), 25, "clips") == list(range(25))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "uniego demo-data: 2/25 clips rendered" and lines[-1] == "uniego demo-data: 25/25 clips rendered"
    assert len(lines) == 13


def test_the_ablations_without_a_merge_and_from_the_parameter_merge_are_planned(tmp_path):
    """The paper's "without merge" row starts SPD from the student's pretrained start (its
    file is the input, `--init none`); init_parameter from the parameter-level merge (issue 19)."""
    copy_workflow(tmp_path)
    for ablation, init, start in (("no_merge", "--init none", "results/pretrain/demo/student.pt"),
                                  ("init_parameter", "--init results/demo/merge/parameter.pt", "results/demo/merge/parameter.pt")):
        r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", f"results/demo/ablations/{ablation}.pt"], cwd=tmp_path,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        job = r.stdout[r.stdout.index("rule spd_ablation:"):]
        assert init in job and start in job.split("output:")[0], job[:2000]
