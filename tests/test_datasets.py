"""Dataset adapters on fixtures in each official format, the data check, the feature and
checkpoint imports from the official code."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tests import official_formats as F
from tests.conftest import REPO, TINY_CLIPS, copy_workflow
from uniego.datasets import build_manifest
from uniego.errors import UniegoError
from uniego.io import read_json
from uniego.manifest import write_manifest
from uniego.stages.data.check_data import check_data

CSV_OPTIONS = {"csv_dir": "vclip", "video_prefix": "videos_subaction", "num_classes": 3}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("official")
    return {"eef": F.make_eef(base / "eef"), "a101": F.make_a101(base / "a101"), "ee4d": F.make_ee4d(base / "ee4d"),
            "uniego-csv": F.make_uniego_csv(base / "csv")}


def spec(fixtures, adapter, tmp_path=None, **options):
    root = fixtures[adapter]
    if tmp_path is not None:  # a private copy to edit
        root = shutil.copytree(root, tmp_path / "root")
    opts = {**(CSV_OPTIONS if adapter == "uniego-csv" else {}), **options}
    return {"adapter": adapter, "root": str(root), "options": opts}


def test_egoexo_fitness_pairs_ego_m_with_exo_m_by_action(fixtures):
    b = build_manifest(spec(fixtures, "eef", skeletons="skeletons"), "eef")
    t = b.table
    assert len(b.classes) == 12 and b.classes[0] == "Clap Jacks"
    assert len(t) == 8 and dict(t.split.value_counts()) == {"train": 6, "test": 2}
    r = t.set_index("sample_id").loc["ACT01_2-1-1_001"]
    assert r.ego_video.endswith("videos/ACT01_2-1-1_ego_m.mp4") and r.exo_video.endswith("videos/ACT01_2-1-1_exo_m.mp4")
    assert (r.start, r.end, r.class_name, r.label) == (2.0, 3.2, "Kneeling Right-side Torso Twist", 3)
    assert r.skeleton.endswith("skeletons/ACT01_2-1-1_001.npz")
    other = build_manifest(spec(fixtures, "eef", ego_view="ego_l"), "eef").table   # views are options
    assert other.ego_video.str.endswith("_ego_l.mp4").all() and other.skeleton.isna().all()


def test_assembly101_verbs_pairing_30fps_frames_and_monochrome_ego(fixtures, tmp_path):
    b = build_manifest(spec(fixtures, "a101"), "a101")
    t = b.table.set_index("sample_id")
    assert len(b.classes) == 24 and b.classes[8] == "position screw on"
    assert list(t.index) == ["train_0", "train_3", "train_6", "test_9", "test_12"]
    assert t.loc["train_3", "class_name"] == "unscrew" and t.loc["train_3", "label"] == 4
    # frames 45..80 inclusive at 30 fps, whatever the 60 fps video
    assert t.loc["train_3", "start"] == pytest.approx(45 / 30) and t.loc["train_3", "end"] == pytest.approx(81 / 30)
    assert t.ego_video.str.endswith("HMC_21179183_mono10bit.mp4").all() and t.exo_video.str.endswith("C10118_rgb.mp4").all()
    assert len(b.unpaired) == 1 and b.unpaired[0].startswith("test_15")
    with pytest.raises(UniegoError, match=r"1 ego clip\(s\) have no exo partner:\n  test_15 .*frames 85-110"):
        build_manifest(spec(fixtures, "a101", unpaired="error"), "a101")
    # the monochrome ego camera decodes to three equal channels
    from uniego.stages.data.clips import build_clip_cache
    m = tmp_path / "manifest.parquet"
    write_manifest(b.table, b.classes, m)
    import zarr
    g = zarr.open_group(str(build_clip_cache(m, "ego", tmp_path / "ego.zarr", TINY_CLIPS, workers=0)), mode="r")
    frames = np.asarray(g["frames"][:])
    assert frames.shape[-1] == 3 and (frames[..., 0] == frames[..., 1]).all() and (frames[..., 1] == frames[..., 2]).all()


def test_egoexo4d_keysteps_best_exo_and_official_splits(fixtures):
    b = build_manifest(spec(fixtures, "ee4d"), "ee4d")
    t = b.table.set_index("sample_id")
    assert b.classes == ["101 Get bowl", "102 Crack egg", "103 Whisk"]
    assert dict(t.split.value_counts()) == {"train": 3, "test": 1}          # val takes are the test split
    r = t.loc["upenn_0711_Cooking_3_000"]
    assert r.ego_video.endswith("takes/upenn_0711_Cooking_3/frame_aligned_videos/aria01_214-1.mp4")
    assert r.exo_video.endswith("frame_aligned_videos/cam02.mp4") and (r.start, r.end, r.label) == (0.2, 1.1, 1)
    assert [u.split(":")[0] for u in b.unpaired] == [f"upenn_0711_Cooking_2_{i:03d}" for i in range(3)]  # best_exo null
    assert b.dropped == {"step not among the training classes": ["upenn_0711_Cooking_3_001 (step 104)"]}


def test_uniego_csv_keys_exo_partners_and_whole_clips(fixtures):
    b = build_manifest(spec(fixtures, "uniego-csv"), "csv")
    t = b.table.set_index("sample_id")
    assert list(t.index[:2]) == ["P00_squat_ego", "P01_squat_ego"] and dict(t.split.value_counts()) == {"train": 5, "val": 2, "test": 2}
    assert t.loc["P03_squat_ego", "exo_video"].endswith("videos_subaction/P03_squat_exo.mp4")
    assert t.loc["P03_squat_ego", "label"] == 0 and t.loc["P03_squat_ego", "end"] == pytest.approx(1.3)
    named = build_manifest(spec(fixtures, "uniego-csv", classes=["squat", "lunge", "jump"], num_classes=None), "csv")
    assert named.classes == ["squat", "lunge", "jump"] and named.table.class_name.iloc[1] == "lunge"


def _edit_json(path, fn):
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize("adapter, edit, message", [
    ("eef", lambda r: _edit_json(r / "annotations/subaction_level_annotations_ant13_style_v1.json",
                                 lambda o: o["database"]["ACT01_2-1-1_ego_m"].pop("subset")),
     r"subaction_level_annotations_ant13_style_v1.json: database\['ACT01_2-1-1_ego_m'\]: missing field\(s\) subset"),
    ("eef", lambda r: _edit_json(r / "annotations/subaction_level_annotations_ant13_style_v1.json",
                                 lambda o: o["database"]["ACT00_1-1-1_ego_m"]["annotations"][1].update(label="Burpee")),
     r"database\['ACT00_1-1-1_ego_m'\].annotations\[1\]: label 'Burpee' differs from 'ACT00_1-1-1_exo_m'"),
    ("a101", lambda r: pd.read_csv(r / "fine-grained-annotations/train.csv").drop(columns="verb_id")
     .to_csv(r / "fine-grained-annotations/train.csv", index=False),
     r"train.csv: missing field\(s\) verb_id"),
    ("a101", lambda r: pd.read_csv(r / "fine-grained-annotations/train.csv").assign(verb_id=lambda d: d.verb_id.where(d.id != 3, 30))
     .to_csv(r / "fine-grained-annotations/train.csv", index=False),
     r"train.csv row 5 \(id 3\): verb_id 30 is not one of the 24 verbs"),
    ("ee4d", lambda r: _edit_json(r / "takes.json", lambda o: o[1].pop("best_exo")),
     r"takes.json\[1\]: missing field\(s\) best_exo"),
    ("ee4d", lambda r: _edit_json(r / "annotations/keystep_train.json",
                                  lambda o: o["annotations"]["uid-0000"]["segments"][2].pop("end_time")),
     r"keystep_train.json: annotations\['uid-0000'\].segments\[2\]: missing field\(s\) end_time"),
    ("uniego-csv", lambda r: (r / "vclip/train.csv").write_text("path,label\n" + (r / "vclip/train.csv").read_text()),
     r"vclip/train.csv line 1: label 'label' is not an integer in 0..2"),
    ("uniego-csv", lambda r: (r / "vclip/val.csv").write_text("P05_squat_ego.mp4,2,extra\n"),
     r"vclip/val.csv line 1: .* is not 'relative_video_path,label'"),
])
def test_a_wrong_or_missing_field_names_file_and_field(fixtures, tmp_path, adapter, edit, message):
    s = spec(fixtures, adapter, tmp_path)
    from pathlib import Path
    edit(Path(s["root"]))
    with pytest.raises(UniegoError, match=message):
        build_manifest(s, adapter)


def test_missing_dataset_names_the_config_key_and_layout(tmp_path):
    from uniego.datasets import annotation_files
    with pytest.raises(UniegoError, match=r"(?s)datasets\.a101\.root = .*nowhere.* does not exist\. The a101 adapter "
                                          r"expects:\n  fine-grained-annotations/train.csv"):
        annotation_files({"adapter": "a101", "root": str(tmp_path / "nowhere")}, "a101")
    with pytest.raises(UniegoError, match=r"datasets\.x\.options: unknown key\(s\) ego_cam for adapter 'a101'"):
        annotation_files({"adapter": "a101", "root": str(tmp_path), "options": {"ego_cam": "e4"}}, "x")


def test_check_data_counts_and_names_every_problem(fixtures, tmp_path):
    s = spec(fixtures, "eef", tmp_path, skeletons="skeletons")
    out = tmp_path / "data_check.json"
    report = check_data(s, "eef", out, skeletons=True)
    assert report["clips"] == 8 and report["per_split"] == {"test": 2, "train": 6} and report["videos"] == 8
    assert report["per_split_class"]["test"] == {"Left-side Knee Raise And Abdominal Muscles Contract": 1, "Push-ups": 1}
    assert read_json(out, stage="check-data") == report
    out.unlink()
    from pathlib import Path
    root = Path(s["root"])
    _edit_json(root / "annotations/subaction_level_annotations_ant13_style_v1.json",
               lambda o: o["database"]["ACT02_3-1-1_ego_m"]["annotations"][1].update(segment=[2.0, 5.5]))
    video = root / "videos/ACT03_4-1-1_exo_m.mp4"
    video.write_bytes(video.read_bytes()[:200])                         # truncated
    (root / "skeletons/ACT00_1-1-1_001.npz").unlink()
    with pytest.raises(UniegoError) as e:
        check_data(s, "eef", out, skeletons=True)
    msg = str(e.value)
    assert "5 problem(s) in dataset eef" in msg      # ego and exo past the end, 2 clips of the broken video, 1 skeleton
    assert "sample ACT02_3-1-1_001: segment [2.000, 5.500) s ends after ego_video" in msg
    assert "sample ACT03_4-1-1_000: exo_video" in msg and "ACT03_4-1-1_exo_m.mp4 is unreadable" in msg
    assert "sample ACT00_1-1-1_001: skeleton file" in msg
    assert not out.exists() and json.loads((tmp_path / "data_check.json.failed.json").read_text())["problems"]


def test_import_features_round_trips_and_refuses_gaps(fixtures, tmp_path):
    from uniego.cache import read_array
    from uniego.stages.teachers.import_features import import_features
    b = build_manifest(spec(fixtures, "uniego-csv"), "csv")
    m = tmp_path / "manifest.parquet"
    write_manifest(b.table, b.classes, m)
    rng = np.random.default_rng(0)
    folder = tmp_path / "distillation" / "exo_skl"
    folder.mkdir(parents=True)
    expected = []
    for i, sid in enumerate(b.table.sample_id):
        key = sid.replace("ego", "exo")                      # exo_* teachers: the official ego -> exo key
        x = rng.standard_normal((256,) if i % 3 == 0 else (12, 256)).astype(np.float32)
        np.save(folder / f"{key}.npy", x if i % 3 != 2 else x.T)   # [D], [T, D] and [D, T] as the official loader takes
        expected.append(x if x.ndim == 1 else x[np.floor(np.linspace(0, 11, 8)).astype(int)].astype(np.float64).mean(0))
    out = import_features(str(m), "exo_skl", str(folder), str(tmp_path / "exo_skl.zarr"))
    values, ids = read_array(out, sample_ids=b.table.sample_id)
    np.testing.assert_allclose(values, np.stack(expected), rtol=1e-6)
    assert values.shape == (9, 256) and list(ids) == list(b.table.sample_id)
    for f in ("P04_squat_exo.npy", "P07_squat_exo.npy"):
        (folder / f).unlink()
    np.save(folder / "P05_squat_exo.npy", np.zeros(100, np.float32))
    with pytest.raises(UniegoError, match=r"(?s)2 sample\(s\) have no feature file in .*exo_skl:\n  P04_squat_ego "
                                          r"\(P04_squat_exo.npy\)\n  P07_squat_ego .*P05_squat_ego: .*has shape \[100\], expected \[256\]"):
        import_features(str(m), "exo_skl", str(folder), str(tmp_path / "again.zarr"))
    assert not (tmp_path / "again.zarr").exists()


def test_official_uniego_checkpoint_loads_with_the_same_logits(fixtures, tmp_path):
    """A random model saved as the official stage-2 `.pyth` (model_state, `model.` prefix,
    the 768x768-style proj_layer) imports into our student and gives the source's logits,
    and `uniego evaluate` scores it."""
    from uniego.checkpoints import encoder_from_checkpoint, load_model
    from uniego.config import StudentSettings
    from uniego.stages.data.clips import build_clip_cache
    from uniego.stages.evaluate.official import import_official_checkpoint
    from uniego.stages.evaluate.recognition import evaluate_recognition
    from uniego.student import build_student
    b = build_manifest(spec(fixtures, "uniego-csv"), "csv")
    m = tmp_path / "manifest.parquet"
    write_manifest(b.table, b.classes, m)
    student = {"arch": "timesformer_test", "init": "random", "input_size": 48, "train_jitter": [48, 56], "patch_size": 8}
    source = build_student(StudentSettings(**{**student, "train_jitter": (48, 56)}), 3, num_frames=4, seed=3).eval()
    d = source.embed_dim
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state.update({"model.proj_layer.weight": torch.randn(d, d), "model.proj_layer.bias": torch.zeros(d)})
    pyth = tmp_path / "checkpoint_epoch_00015.pyth"
    torch.save({"epoch": 15, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []},
                "cfg": "MODEL:\n  MODEL_NAME: uniego_vit\n"}, pyth)
    out = import_official_checkpoint(str(pyth), str(m), str(tmp_path / "official.pt"), {"student": student})
    obj = load_model(str(out))
    assert obj["meta"]["method"] == "official_uniego" and set(obj["official_proj"]) == {"proj_layer.weight", "proj_layer.bias"}
    ours = encoder_from_checkpoint(obj, StudentSettings(**{**student, "train_jitter": (48, 56)})).eval()
    clip = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        assert torch.equal(ours(clip), source(clip))
    import uniego

    # issue 22: load_encoder takes an imported official checkpoint (its clip settings given)
    enc = uniego.load_encoder(out, clips={"num_frames": 4, "size": 48, "sampling": "uniform", "stride": 2})
    with torch.no_grad():
        assert enc.classes == ["0", "1", "2"] and torch.equal(enc.model(clip), source(clip))
    clips = build_clip_cache(m, "ego", tmp_path / "ego.zarr", TINY_CLIPS, workers=0)
    r = evaluate_recognition(str(m), str(clips), str(out), str(tmp_path / "recognition.json"),
                             {"student": student, "eval": {"spatial_crops": 1, "temporal_clips": 1}})
    assert r["n"] == 2 and r["method"] == "official_uniego" and 0.0 <= r["top1"] <= 100.0
    bad = tmp_path / "manifest4.parquet"
    write_manifest(b.table.assign(class_name="3"), ["0", "1", "2", "3"], bad)
    with pytest.raises(UniegoError, match=r"classifier has 3 classes but the manifest .* has 4"):
        import_official_checkpoint(str(pyth), str(bad), str(tmp_path / "x.pt"), {"student": student})


def _workflow_copy(tmp_path):
    work = tmp_path / "clone"
    work.mkdir()
    copy_workflow(work)
    return work


def _fake_checkpoints(work):
    """The local teacher checkpoints the paper configs name (contents unread by a dry run)."""
    (work / "checkpoints").mkdir(exist_ok=True)
    for f in ("depth_anything_vitl14.pth", "TimeSformer_divST_8x32_224_K400.pyth", "stgcn_pyskl_ntu60_hrnet.pth"):
        (work / "checkpoints" / f).write_bytes(b"weights the user downloaded")


def _dry_run(work, target, *overlays):
    cmd = [sys.executable, "-m", "snakemake", target, "-n", "--cores", "4", "--resources", "gpu=4"]
    if overlays:
        cmd += ["--configfile", *map(str, overlays)]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True)


def test_eef_target_plans_the_full_dag_with_data_and_names_the_key_without(fixtures, tmp_path):
    from tests.test_workflow import planned_jobs
    work = _workflow_copy(tmp_path)
    r = _dry_run(work, "results/eef/uniego.pt")
    assert r.returncode != 0
    assert "datasets.eef.root = 'data/EgoExo-Fitness': data/EgoExo-Fitness does not exist. The eef adapter expects:" in r.stderr
    assert "annotations/subaction_level_annotations_ant13_style_v1.json" in r.stderr
    overlay = tmp_path / "data.yaml"
    overlay.write_text(f"datasets:\n  eef:\n    root: {fixtures['eef']}\n")
    _fake_checkpoints(work)
    r = _dry_run(work, "results/eef/uniego.pt", overlay)
    assert r.returncode == 0, r.stderr[-3000:]
    assert planned_jobs(r) == {"check_data": 1, "manifest": 1, "clips": 3, "train_teacher": 2, "extract": 9,
                               "train_proxy": 9, "proxy_outputs": 9, "merge": 1, "spd": 1}


@pytest.mark.parametrize("ds", ["a101", "ee4d"])
def test_a101_and_ee4d_targets_plan_with_their_paper_settings(fixtures, tmp_path, ds):
    from tests.test_workflow import planned_jobs
    from uniego.config import dataset_config, load_yaml, validate_config
    c = dataset_config(validate_config(load_yaml(REPO / "config.yaml")), ds)
    assert (c["spd"]["k"], c["spd"]["beta_logit"], c["eval"]["temporal_clips"]) == {"a101": (1, 5.0, 1), "ee4d": (2, 1.0, 10)}[ds]
    work = _workflow_copy(tmp_path)
    overlay = tmp_path / "data.yaml"
    overlay.write_text(f"datasets:\n  {ds}:\n    root: {fixtures[ds]}\n")
    _fake_checkpoints(work)
    r = _dry_run(work, f"results/{ds}/eval/uniego/recognition.json", overlay)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = planned_jobs(r)
    assert jobs["spd"] == 1 and jobs["train_proxy"] == 9 and jobs["recognition"] == 1
    assert jobs.get("test_views", 0) == (1 if ds == "ee4d" else 0)   # Ego-Exo4D: 10 temporal views at test


@pytest.mark.slow
def test_imported_features_through_the_dag_and_an_annotation_edit_reruns_them(fixtures, tmp_path):
    """A `weights: import:<folder>` teacher is imported by its features rule; editing the
    annotation CSV reruns exactly the data check, the manifest and that store, and the old
    store is refused against the new manifest (its provenance)."""
    from tests.test_workflow import planned_jobs
    from uniego.cache import read_array
    from uniego.errors import UniegoError
    work = _workflow_copy(tmp_path)
    root = shutil.copytree(fixtures["uniego-csv"], tmp_path / "csv")
    folder = tmp_path / "distillation" / "exo_dino"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    feats = {f"P{i:02d}_squat_ego": rng.standard_normal(64).astype(np.float32) for i in range(9)}
    for sid, v in feats.items():
        np.save(folder / f"{sid.replace('ego', 'exo')}.npy", v)
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(f"""dataset: mine
datasets:
  mine:
    adapter: uniego-csv
    root: {root}
    options: {{csv_dir: vclip, video_prefix: videos_subaction, num_classes: 3}}
    overrides:
      teachers: {{exo_dino: {{arch: dinov2_test, weights: "import:{folder}"}}}}
      level1: {{teachers: [exo_dino, ego_dino]}}
""")
    run = lambda *a: subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *a, "--configfile", str(overlay)],  # noqa: E731
                                    cwd=work, capture_output=True, text=True)
    store = "results/mine/features/exo_dino.zarr"
    r = run(store)
    assert r.returncode == 0, r.stderr[-3000:]
    values, ids = read_array(work / store)
    np.testing.assert_array_equal(values, np.stack([feats[i] for i in ids]))
    assert json.loads((work / "results/mine/data_check.json").read_text())["per_split"] == {"test": 2, "train": 5, "val": 2}
    assert planned_jobs(run(store, "-n")) == {}
    shutil.copytree(work / store, tmp_path / "old.zarr")
    csv = root / "vclip" / "train.csv"
    csv.write_text(csv.read_text().replace("P01_squat_ego.mp4,1", "P01_squat_ego.mp4,2"))
    assert planned_jobs(run(store, "-n")) == {"check_data": 1, "manifest": 1, "extract": 1}
    assert run(store).returncode == 0
    from uniego.manifest import manifest_sha256
    with pytest.raises(UniegoError, match="built from another manifest"):
        read_array(tmp_path / "old.zarr", manifest_sha256=manifest_sha256(work / "results/mine/manifest.parquet"))
    (folder / "P04_squat_exo.npy").unlink()
    r = run(store, "--forcerun", "extract")
    assert r.returncode != 0 and not (work / store).exists()
    assert "P04_squat_ego (P04_squat_exo.npy)" in (work / "logs/mine/extract/exo_dino.log").read_text()
