import pytest

from tests.conftest import REPO
from uniego.config import code_version, dataset_config, load_yaml, stage_settings, validate_config
from uniego.errors import UniegoError


def test_repository_config_is_valid(config):
    assert config["dataset"] == "demo"
    assert set(config["teachers"]) == {"ego_dino", "exo_dino", "ego_siglip", "exo_siglip", "ego_depth",
                                       "exo_depth", "exo_rgb", "exo_skl", "exo_skego"}


@pytest.mark.parametrize("mutate, path", [
    (lambda c: c["teachers"]["exo_dino"].update(weigths="random"), "teachers.exo_dino.weigths"),
    (lambda c: c["clips"].update(num_frames="eight"), "clips.num_frames"),
    (lambda c: c.update(fidelity="faithful"), "fidelity"),
    (lambda c: c.update(learning_rate=0.1), "learning_rate"),
    (lambda c: c["datasets"]["demo"].update(adaptor="demo"), "datasets.demo.adaptor"),
    (lambda c: c["compute"].update(batch_size=0), "compute.batch_size"),
    (lambda c: c["teachers"]["exo_dino"].update(arch="dinov3_huge"), "teachers.exo_dino.arch"),
    (lambda c: c["teachers"]["exo_rgb"].update(arch="dinov2_test"), "teachers.exo_rgb.arch"),
    (lambda c: c["teachers"].update(exo_flow={"arch": "x", "weights": "random"}), "teachers.exo_flow"),
    (lambda c: c["teachers"]["exo_dino"].update(frames_from="disk"), "teachers.exo_dino.frames_from"),
    (lambda c: c["teachers"]["exo_rgb"].update(frames_from="video"), "teachers.exo_rgb.frames_from: video is for the image teachers"),
])
def test_schema_rejects_bad_config_naming_the_key(config, mutate, path):
    mutate(config)
    with pytest.raises(UniegoError) as e:
        validate_config(config)
    assert path in str(e.value)


def test_per_dataset_overrides_and_stage_settings(config):
    config["datasets"]["demo"]["overrides"] = {"teachers": {"exo_dino": {"input_size": 28}}}
    validate_config(config)
    assert dataset_config(config, "demo")["teachers"]["exo_dino"] == {"arch": "dinov2_test", "weights": "random", "input_size": 28}
    s = stage_settings(config, "demo", "extract", teacher="exo_dino")
    assert s == {"teacher": {"key": "exo_dino", "arch": "dinov2_test", "weights": "random", "input_size": 28}, "seed": 0}
    # the skeleton cache does not depend on the RGB clip settings, and vice versa
    assert stage_settings(config, "demo", "clips", view="skeleton") == {"skeleton_frames": 32, "skeleton_clips": 1, "skeleton_sampling": "uniform"}
    assert "skeleton_frames" not in stage_settings(config, "demo", "clips", view="ego")


def test_code_version_is_stable_and_module_specific():
    assert code_version("uniego.demo") == code_version("uniego.demo")
    assert code_version("uniego.demo") != code_version("uniego.manifest")
    assert len(code_version("uniego.teachers", "uniego.models")) == 12


def test_code_version_follows_the_imports():
    """A rule's code version covers every uniego module its runner imports (lazy imports too),
    so editing the learning-rate schedule (uniego.config) or the data-parallel normalisation
    (uniego.distributed) reruns the stages that use them (issue 20), and nothing unrelated."""
    from uniego.config import code_files
    names = lambda m: {str(f).split("uniego/", 1)[1] for f in code_files(m)}  # noqa: E731
    level1, level2 = names("uniego.stages.level1"), names("uniego.stages.level2")
    assert {"config.py", "engine.py", "distributed.py", "device.py", "losses.py", "models/timesformer.py"} <= level1
    assert {"config.py", "distributed.py", "spd.py", "merge.py", "stages/level1/proxies.py", "checkpoints.py", "stages/runner.py"} <= level2
    assert "cli.py" not in level1 | level2 and "report.py" not in level1 | level2
    assert names("uniego.report") >= {"report.py", "errors.py"} and "models/timesformer.py" not in names("uniego.report")
    import pytest
    with pytest.raises(ValueError, match="not a uniego module"):
        code_files("uniego.no_such_module")


def test_seed_repeats_are_datasets_of_their_own(config):
    from uniego.config import dataset_names, seed_runs
    from uniego.errors import UniegoError
    config["datasets"]["demo"]["repeat_seeds"] = [1, 2]
    assert dataset_names(config) == ["demo", "demo_seed1", "demo_seed2", "eef", "a101", "ee4d"]
    assert seed_runs(config, "demo") == [(0, "demo"), (1, "demo_seed1"), (2, "demo_seed2")]
    rep = dataset_config(config, "demo_seed2")
    assert rep["seed"] == 2 and rep["datasets"]["demo_seed2"]["root"] == "data/demo_seed2"
    assert rep["train"] == dataset_config(config, "demo")["train"]  # the demo's overrides carry over
    assert stage_settings(config, "demo_seed2", "demo_data")["seed"] == 2
    assert stage_settings(config, "demo_seed1", "manifest") == {"adapter": "demo", "root": "data/demo_seed1", "dataset": "demo_seed1"}
    assert seed_runs(config, "demo_seed1") == [(1, "demo_seed1")]
    with pytest.raises(UniegoError, match="unknown dataset 'demo_seed3'"):
        dataset_config(config, "demo_seed3")
    config["datasets"]["demo"]["repeat_seeds"] = [0, 1]
    with pytest.raises(UniegoError, match="repeat_seeds"):
        validate_config(config)


def test_yaml_with_python_tags_is_refused_not_run(tmp_path):
    """config.yaml is parsed with the safe loader: a tag that would run code is an error."""
    import pytest

    from uniego.config import load_yaml
    from uniego.errors import UniegoError
    bad = tmp_path / "config.yaml"
    marker = tmp_path / "PWNED"
    bad.write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UniegoError, match="config.yaml"):
        load_yaml(bad)
    assert not marker.exists()


def test_every_checkpoint_load_is_weights_only():
    """No torch.load in the package without weights_only=True (a pickle with code is refused:
    tests/test_teachers.py::test_pickle_with_code_is_refused)."""
    import re

    from tests.conftest import REPO
    calls = [(p.name, line) for p in (REPO / "uniego").rglob("*.py") for line in p.read_text().splitlines()
             if re.search(r"\btorch\.load\(", line)]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


def test_the_demo_merge_can_move_alpha_as_far_as_the_papers(config):
    """Adam moves each alpha logit by about lr per step, so steps x lr bounds how far eq. 2's
    alpha can travel. The paper: 2 epochs of EgoExo-Fitness at batch 8, about 880 steps, lr 0.02."""
    from uniego.demo.body import CLASSES
    from uniego.demo.generate import SPLIT_FRACTIONS

    c = dataset_config(config, "demo")
    preset = config["demo_presets"][config["datasets"]["demo"]["preset"]]
    per_class = preset["clips_per_class"]
    train = len(CLASSES) * (per_class - 2 * max(1, round(per_class * SPLIT_FRACTIONS[1])))
    steps = c["merge"]["epochs"] * (train // c["merge"]["batch_size"])   # full batches only
    assert train == 162 and steps == 120
    assert steps * c["merge"]["lr"] >= 880 * 0.02


@pytest.mark.parametrize("overlay, message", [
    ({"train": {"lr_steps": [0, 5]}}, r"train.lr_steps \[0, 5\] and train.lr_factors \[1.0, 0.1, 0.01\] must have the same length"),
    ({"datasets": {"demo": {"overrides": {"train": {"lr_steps": [0, 9, 5]}}}}},
     r"train.lr_steps \[0, 9, 5\] must start at 0 and increase \(dataset demo"),
    ({"student": {"train_jitter": [80, 64]}}, r"student.train_jitter \[80, 64\]: the short side's range must be \[low, high\]"),
    ({"student": {"train_jitter": [48, 80]}}, "the short side must be at least the crop, student.input_size 64"),
    ({"level1": {"teachers": []}}, "level1.teachers is empty"),
    ({"spd": {"k": 10}}, r"spd: k = 10 is more than the 9 proxies of level1.teachers"),
    ({"analysis": {"conflict_models": ["uniego", "ablation_al_proxies"]}}, "'ablation_al_proxies' is not a model with a gradient-conflict probe"),
    ({"spd": {"micro_batch": 2}}, "spd.micro_batch 2 normalises per micro-batch: it needs spd.normalize: official"),
    ({"spd": {"micro_batch": 3, "normalize": "official"}}, r"spd.micro_batch 3 must divide train.batch_size \(8\)"),
])
def test_cross_field_settings_fail_at_validation(overlay, message):
    """Settings that used to fail late (IndexError at epoch 2, a ValueError at the first batch, an
    argparse error at the merge) or silently (k above the proxies, a mistyped model dropped) are
    refused when the config is read, naming the key and the datasets (issue 20)."""
    from uniego.config import merge_overlay
    with pytest.raises(UniegoError, match=message):
        validate_config(merge_overlay(load_yaml(REPO / "config.yaml"), overlay))


def test_an_ablation_asking_for_more_proxies_than_there_are_fails_when_planned():
    from uniego.config import ablation_spd, dataset_config, merge_overlay
    c = dataset_config(validate_config(merge_overlay(load_yaml(REPO / "config.yaml"),
                                                     {"level1": {"teachers": ["exo_skl", "ego_dino"]}})), "demo")
    assert ablation_spd(c, "k2")["k"] == 2
    with pytest.raises(UniegoError, match="ablations.k3: k = 3 is more than the 2 proxies"):
        ablation_spd(c, "k3")


def test_schema_settings_and_stage_settings_agree(config):
    """One shape per section (issue 21): the JSON schema's keys are the settings dataclass's
    fields (less the stated exceptions), every field without a default is required, and what
    `stage_settings` hands each stage parses into its dataclass for every shipped dataset."""
    import dataclasses

    from uniego import config as C

    schema = load_yaml(C.SCHEMA_PATH)
    defs, top = schema["$defs"], schema["properties"]
    # section -> (dataclass, fields that are not config keys, config keys the dataclass does not take, and why)
    sections = {
        "clips": (C.ClipSettings, set(), set()),
        "teacher": (C.TeacherSettings, {"key"}, set()),                       # key: the teacher's name, from its place
        "student": (C.StudentSettings, set(), set()),
        "train": (C.TrainSettings, set(), set()),
        "level1": (C.Level1Settings, set(), {"teachers"}),                    # the proxies to train: the DAG's, not a stage's
        "merge": (C.MergeSettings, set(), set()),
        "spd": (C.SPDSettings, set(), set()),
        "eval": (C.EvalSettings, set(), set()),
        "segmentation": (C.SegmentationSettings, set(), {"models", "stride", "frame_step"}),   # the DAG's and the window cache's
        "compute": (C.ComputeSettings, set(), {"threads", "gpus_per_job", "gpu_ids", "gpu_lock_dir"}),   # Snakemake resources
    }
    # Sections no stage takes whole: teachers (one `teacher` each), ablations (each an `spd`),
    # analysis (each key a single value: cka_samples to cka, probe_samples to spd and baselines,
    # conflict_models to the DAG, exo_cue_classes to the report).
    assert set(defs) == set(sections) | {"teachers", "ablations", "analysis"}, sorted(defs)
    for name, (cls, not_keys, dag_only) in sections.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        keys = set(defs[name]["properties"])
        assert keys - dag_only == set(fields) - not_keys, (name, sorted(keys ^ set(fields)))
        assert dag_only <= keys, (name, dag_only - keys)
        section = top.get(name) or top["teachers"]
        required = set(section.get("required", [])) | set(section.get("patternProperties", {}).get(".*", {}).get("required", []))
        if name == "teacher":
            required = set(top["teachers"]["patternProperties"][".*"]["required"])
        no_default = {n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert no_default - not_keys <= required, (name, sorted(no_default - not_keys - required))
    preset = top["demo_presets"]["additionalProperties"]
    assert set(preset["properties"]) == {f.name for f in dataclasses.fields(C.DemoPreset)}
    # a pretrain entry: PretrainSettings plus its corpus (CorpusPreset) and student parts
    from uniego.demo.corpus import CorpusPreset
    from uniego.stages.pretrain.train import PretrainSettings
    entry = top["pretrain"]["additionalProperties"]["properties"]
    assert set(entry) - {"corpus", "student"} == {f.name for f in dataclasses.fields(PretrainSettings)}
    assert set(entry["corpus"]["properties"]) == {f.name for f in dataclasses.fields(CorpusPreset)}
    for ds in C.dataset_names(config):
        for fidelity in ("paper", "official"):
            cfg = {**config, "fidelity": fidelity}
            s = stage_settings(cfg, ds, "merge")
            C.parse_merge(s["merge"]), C.parse_student(s["student"])
            C.parse_spd(stage_settings(cfg, ds, "spd")["spd"])
            for ablation in cfg["ablations"]:
                C.parse_spd(stage_settings(cfg, ds, "spd", ablation=ablation)["spd"])
            C.parse_eval(stage_settings(cfg, ds, "evaluate")["eval"])
            C.parse_segmentation(stage_settings(cfg, ds, "segment")["segmentation"])
            C.parse_train(stage_settings(cfg, ds, "train_proxy", teacher="ego_dino")["train"])
            C.from_dict(C.Level1Settings, stage_settings(cfg, ds, "train_proxy", teacher="ego_dino")["level1"], where="level1")
            for t in cfg["teachers"]:
                C.from_dict(C.TeacherSettings, stage_settings(cfg, ds, "extract", teacher=t)["teacher"], where=t)
