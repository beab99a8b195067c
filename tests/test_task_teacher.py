"""Task teachers: trained on the train split with CE, then extracted from their checkpoint."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from uniego.config import ComputeSettings, TeacherSettings
from uniego.errors import UniegoError
from uniego.stages.teachers.extract import extract
from uniego.stages.teachers.task_teacher import TaskTeacher, TeacherBatches, train_task_teacher, view_settings_for
from uniego.teachers import build_teacher

TRAIN = {"epochs": 2, "lr": 0.01, "lr_steps": [0], "lr_factors": [1.0], "momentum": 0.9, "nesterov": True,
         "weight_decay": 1e-4, "batch_size": 4, "accumulate": 1}
CPU = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)


def _settings(key, arch, **kw):
    return {"teacher": {"key": key, "arch": arch, "weights": "random", "finetune": True, **kw}, "seed": 1,
            "train": TRAIN, "train_jitter": [32, 40], "input_size": 32}


@pytest.fixture(scope="module")
def skl_teacher(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tt") / "exo_skl.pt"
    return train_task_teacher(str(tiny_data["manifest"]), tiny_data["clips"], str(out), _settings("exo_skl", "stgcn_test"),
                              compute=CPU)


def test_task_teacher_checkpoint_holds_a_trained_backbone(skl_teacher, tiny_data):
    ck = torch.load(skl_teacher, weights_only=True)
    meta = ck["meta"]
    assert meta["kind"] == "task_teacher" and meta["teacher"] == "exo_skl" and meta["init_weights"] == "random"
    n_val = int((tiny_data["table"].split == "val").sum())
    assert n_val > 0 and 0 <= meta["val_top1"] <= 100 and round(meta["val_top1"] * n_val / 100, 4) % 1 == 0
    assert tuple(ck["head"]["weight"].shape) == (9, 16)
    log = [json.loads(x) for x in (skl_teacher.with_name("exo_skl.run") / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2] and all(np.isfinite(e["cls_loss"]) for e in log)
    # training changed the backbone away from the seeded random init
    init = build_teacher(TeacherSettings("exo_skl", "stgcn_test", "random"), seed=1).model.state_dict()
    changed = [k for k, v in ck["state_dict"].items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert changed and set(ck["state_dict"]) == set(init)


def test_val_top1_is_the_checkpoint_models_accuracy(skl_teacher, tiny_data):
    ck = torch.load(skl_teacher, weights_only=True)
    teacher = build_teacher(TeacherSettings("exo_skl", "stgcn_test", str(skl_teacher)))
    model = TaskTeacher(teacher, 9).eval()
    model.head.load_state_dict(ck["head"])
    table = tiny_data["table"]
    val = np.flatnonzero(table.split.to_numpy() == "val")
    ids = list(zarr.open_group(tiny_data["clips"]["skeleton"], mode="r")["sample"][:])
    rows = [ids.index(s) for s in table.sample_id.iloc[val]]
    data = TeacherBatches({"skeleton": tiny_data["clips"]["skeleton"]}, rows, table.label.to_numpy()[val], teacher, None,
                          [np.arange(len(rows))], epoch=0, seed=0, train=False)
    with torch.no_grad():
        pred = model(data[0]).argmax(1).numpy()
    assert 100 * float((pred == table.label.to_numpy()[val]).mean()) == pytest.approx(ck["meta"]["val_top1"])


def test_extraction_uses_the_task_checkpoint(skl_teacher, tiny_data, tmp_path):
    ts = TeacherSettings("exo_skl", "stgcn_test", "random", finetune=True)
    with pytest.raises(UniegoError, match="finetune is true: train it first"):
        extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "a.zarr", ts, compute=CPU)
    with pytest.raises(UniegoError, match="finetune is false"):
        extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "b.zarr", TeacherSettings("exo_skl", "stgcn_test", "random"),
                compute=CPU, task_teacher=skl_teacher)
    with pytest.raises(UniegoError, match="not a task-teacher checkpoint of exo_rgb"):
        extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "c.zarr",
                TeacherSettings("exo_rgb", "timesformer_test", "random", finetune=True), compute=CPU, task_teacher=skl_teacher)
    out = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "d.zarr", ts, compute=CPU, task_teacher=skl_teacher)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["weights"] == str(skl_teacher) and g.attrs["task_teacher"]["checkpoint"] == str(skl_teacher)
    # the stored features are the trained backbone's
    ck = torch.load(skl_teacher, weights_only=True)
    teacher = build_teacher(TeacherSettings("exo_skl", "stgcn_test", "random"))
    teacher.model.load_state_dict(ck["state_dict"])
    sk = zarr.open_group(tiny_data["clips"]["skeleton"], mode="r")
    x = teacher.preprocess({"skeleton": sk["keypoints"][0], "skeleton_img_hw": sk["img_hw"][0], "skeleton_clips": 1})
    with torch.no_grad():
        f = teacher({"skeleton": x["skeleton"][None]})[0].numpy()
    np.testing.assert_allclose(np.asarray(g["features"][0], np.float32), f, rtol=2e-3, atol=2e-3)


def test_rgb_task_teacher_trains_through_the_cli(tiny_data, tmp_path):
    s = _settings("exo_rgb", "timesformer_test", patch_size=8, input_size=32)
    r = subprocess.run([sys.executable, "-m", "uniego", "train-teacher", "--settings", json.dumps(s), "--teacher", "exo_rgb",
                        "--manifest", str(tiny_data["manifest"]), "--clips", f"exo={tiny_data['clips']['exo']}",
                        "--out", str(tmp_path / "exo_rgb.pt"), "--workers", "0", "--device", "cpu", "--precision", "fp32"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(tmp_path / "exo_rgb.pt", weights_only=True)
    assert tuple(ck["state_dict"]["patch_embed.proj.weight"].shape) == (64, 3, 8, 8)
    assert ck["meta"]["view"] == {"input_size": 32, "train_jitter": [32, 40]}


def test_frozen_teachers_cannot_be_finetuned(tiny_data, tmp_path, config):
    with pytest.raises(UniegoError, match="frozen foundation models"):
        train_task_teacher(str(tiny_data["manifest"]), tiny_data["clips"], str(tmp_path / "x.pt"),
                           _settings("ego_dino", "dinov2_test"), compute=CPU)
    from uniego.config import validate_config
    config["teachers"]["ego_dino"]["finetune"] = True
    config["teachers"]["exo_skl"]["patch_size"] = 8
    with pytest.raises(UniegoError) as e:
        validate_config(config)
    assert "teachers.ego_dino.finetune" in str(e.value) and "teachers.exo_skl.patch_size" in str(e.value)


def test_teacher_view_scales_the_student_jitter():
    class T:
        input_size = 224
    v = view_settings_for(T(), 224, (256, 320))
    assert v.input_size == 224 and v.train_jitter == (256, 320)
    T.input_size = 32
    assert view_settings_for(T(), 64, (64, 80)).train_jitter == (32, 40)
