"""Level I: the proxy objective wired to the model, the engine's schedule and resume."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import zarr

from tests.conftest import PROXY_SETTINGS as SETTINGS
from uniego.config import ComputeSettings, TeacherSettings, TrainSettings, stage_settings
from uniego.engine import epoch_batches
from uniego.errors import UniegoError
from uniego.models.timesformer import timesformer_test
from uniego.stages.teachers.extract import extract
from uniego.student import ProxyModel


@pytest.fixture(scope="module")
def skl_features(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("feat") / "exo_skl.zarr"
    return str(extract(tiny_data["manifest"], tiny_data["clips"], out, TeacherSettings("exo_skl", "stgcn_test", "random"),
                       compute=ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)))


def _train(tiny_data, features, out, env=None):
    cmd = [sys.executable, "-m", "uniego", "train-proxy", "--settings", json.dumps(SETTINGS), "--teacher", "exo_skl",
           "--manifest", str(tiny_data["manifest"]), "--clips", tiny_data["clips"]["ego"], "--features", features,
           "--out", str(out), "--workers", "1", "--device", "cpu", "--precision", "fp32"]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)


def test_killed_training_resumes_to_the_same_weights(tiny_data, skl_features, tmp_path):
    full = _train(tiny_data, skl_features, tmp_path / "full.pt")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = _train(tiny_data, skl_features, tmp_path / "resumed.pt", env={"UNIEGO_TEST_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "resumed.pt").exists() and (tmp_path / "resumed.run" / "last.pt").exists()
    # a crash between the epoch's log line and its checkpoint: the log is one epoch ahead (issue 20)
    log = tmp_path / "resumed.run" / "metrics.jsonl"
    log.write_text(log.read_text() + json.dumps({"epoch": 2, "lr": 0.005, "steps": 1, "loss": 9.0}) + "\n")
    # one process per run folder: a second one is refused, naming the holder
    import fcntl
    with open(tmp_path / "resumed.run" / "lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write("process 4242 on testhost\n")
        held.flush()
        second = _train(tiny_data, skl_features, tmp_path / "resumed.pt")
    assert second.returncode == 2 and "is in use by process 4242 on testhost" in second.stderr, second.stderr[-2000:]
    assert "Traceback" not in second.stderr and not (tmp_path / "resumed.pt").exists()
    resumed = _train(tiny_data, skl_features, tmp_path / "resumed.pt")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stderr and "after epoch 1" in resumed.stderr
    # finished: no resume state is left, so a forced rerun retrains rather than "resuming" at the end
    assert not (tmp_path / "resumed.run" / "last.pt").exists() and not (tmp_path / "full.run" / "last.pt").exists()
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for part in ("encoder", "proj"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    logs = [(p / "metrics.jsonl").read_text().splitlines() for p in (tmp_path / "full.run", tmp_path / "resumed.run")]
    assert logs[0] == logs[1] and len(logs[0]) == 3
    epochs = [json.loads(line) for line in logs[0]]
    assert [e["lr"] for e in epochs] == pytest.approx([0.005, 0.005, 0.0005])
    assert all({"loss", "cls_loss", "feat_loss"} <= set(e) for e in epochs)
    meta = a["meta"]
    assert meta["teacher"] == "exo_skl" and meta["teacher_store"]["architecture"] == "stgcn_test"


def test_proxy_outputs_store(tiny_data, skl_features, tmp_path):
    assert _train(tiny_data, skl_features, tmp_path / "p.pt").returncode == 0
    r = subprocess.run([sys.executable, "-m", "uniego", "proxy-outputs", "--settings", json.dumps({"student": SETTINGS["student"]}),
                        "--manifest", str(tiny_data["manifest"]), "--clips", tiny_data["clips"]["ego"], "--proxy", str(tmp_path / "p.pt"),
                        "--out", str(tmp_path / "p.outputs.zarr"), "--workers", "0", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    g = zarr.open_group(str(tmp_path / "p.outputs.zarr"), mode="r")
    n_train = int((tiny_data["table"].split == "train").sum())
    assert g["feature"].shape == (n_train, 64) and g["logits"].shape == (n_train, 9)
    assert g.attrs["complete"] is True and g.attrs["teacher"] == "exo_skl"
    # the stored logits are the proxy's head applied to the stored features
    obj = torch.load(tmp_path / "p.pt", weights_only=True)
    f = torch.from_numpy(np.asarray(g["feature"][:]))
    torch.testing.assert_close(f @ obj["encoder"]["head.weight"].T + obj["encoder"]["head.bias"],
                               torch.from_numpy(np.asarray(g["logits"][:])), atol=1e-5, rtol=1e-5)
    # eq. 1's side of the cosine: the CLS itself for a teacher-side projection ...
    assert np.array_equal(np.asarray(g["aligned"][:]), np.asarray(g["feature"][:]))
    # ... and proj(CLS) for a student-side one
    from uniego.stages.level1.proxies import aligned_features
    model = ProxyModel(timesformer_test(num_classes=9), 16, "student")
    student = {"proj": model.proj.state_dict(), "meta": {"level1": {"projection": "student"}}}
    torch.testing.assert_close(torch.from_numpy(aligned_features(student, f.numpy(), "p.pt")),
                               model.proj(f).detach(), atol=1e-5, rtol=1e-5)
    with pytest.raises(UniegoError, match="has no `proj`; retrain it"):
        aligned_features({"meta": student["meta"]}, f.numpy(), "p.pt")


def test_projection_sides():
    enc = timesformer_test(num_classes=5)
    h, t = torch.randn(2, 64), torch.randn(2, 256)
    paper = ProxyModel(enc, 256, "teacher")
    assert tuple(paper.proj.weight.shape) == (64, 256) and [x.shape[-1] for x in paper.align(h, t)] == [64, 64]
    official = ProxyModel(enc, 256, "student")
    assert tuple(official.proj.weight.shape) == (256, 64) and [x.shape[-1] for x in official.align(h, t)] == [256, 256]
    # frozen teacher side: the paper's side at its seeded random init, never trained (issue 19, item 7)
    torch.manual_seed(0)
    frozen = ProxyModel(enc, 256, "teacher_frozen")
    before = frozen.proj.weight.clone()
    a, b = frozen.align(h, t)
    assert torch.equal(a, h) and torch.equal(b, frozen.proj(t)) and not frozen.proj.weight.requires_grad
    opt = torch.optim.SGD([q for q in frozen.parameters() if q.requires_grad], lr=1.0)
    frozen_h, _ = frozen(torch.randn(1, 3, 8, 64, 64))
    (1 - torch.cosine_similarity(*frozen.align(frozen_h, t[:1]))).sum().backward()
    opt.step()
    assert torch.equal(frozen.proj.weight, before)


def test_schedule_batches_and_fidelity(config):
    s = TrainSettings(epochs=15, lr=0.005, lr_steps=(0, 11, 14), lr_factors=(1, 0.1, 0.01), momentum=0.9,
                      nesterov=True, weight_decay=1e-4, batch_size=8)
    assert [s.lr_at(e) for e in (0, 10, 11, 13, 14)] == pytest.approx([5e-3, 5e-3, 5e-4, 5e-4, 5e-5])
    b = epoch_batches(27, 8, seed=0, epoch=0)
    assert len(b) == 3 and all(len(x) == 8 for x in b) and len(set(np.concatenate(b))) == 24
    assert not np.array_equal(b[0], epoch_batches(27, 8, seed=0, epoch=1)[0])
    paper = stage_settings(config, "eef", "train_proxy", teacher="exo_rgb")   # eef: the paper's setup, no Level-I overrides
    config["fidelity"] = "official"
    official = stage_settings(config, "eef", "train_proxy", teacher="exo_rgb")
    assert paper["level1"]["lambda_feat"] == 5.0 and official["level1"]["lambda_feat"] == 1.0
    assert paper["level1"]["projection"] == "student" == official["level1"]["projection"]   # by evidence (docs/method.md)
    assert official["train"]["accumulate"] == 64 // config["train"]["batch_size"]


def test_student_patch_size_option():
    from uniego.config import parse_student
    from uniego.errors import UniegoError
    from uniego.student import build_student
    s = parse_student({**SETTINGS["student"], "patch_size": 8})
    m = build_student(s, 9, num_frames=4).eval()
    assert tuple(m.patch_embed.proj.weight.shape) == (64, 3, 8, 8) and m.pos_embed.shape[1] == 1 + 16
    with torch.no_grad():
        assert m(torch.randn(1, 3, 4, 32, 32)).shape == (1, 9)
    assert build_student(parse_student(SETTINGS["student"]), 9, num_frames=4).patch_embed.proj.weight.shape[-1] == 16
    with pytest.raises(UniegoError, match="multiple of the patch size"):
        build_student(parse_student({**SETTINGS["student"], "patch_size": 7}), 9, num_frames=4)


def test_adamw_option_matches_a_direct_adamw_loop(tmp_path):
    """train.optimizer: adamw runs torch's AdamW on the engine's batches (the demo's choice)."""
    from uniego.engine import train

    torch.manual_seed(0)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))

    class Task:
        def __init__(self, model):
            self.model = model

        def step(self, b):
            loss = torch.nn.functional.cross_entropy(self.model(b["x"]), b["y"])
            return {"loss": loss}

    class Epoch(torch.utils.data.Dataset):
        def __init__(self, batches):
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            idx = torch.as_tensor(self.batches[i])
            return {"x": x[idx], "y": y[idx]}

    s = TrainSettings(epochs=2, lr=0.01, lr_steps=(0,), lr_factors=(1.0,), momentum=0.9, nesterov=True,
                      weight_decay=0.05, batch_size=4, optimizer="adamw")
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 2)
    ref = torch.nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    train(Task(model), lambda b, e: Epoch(b), 10, s, tmp_path, seed=0, identity={})
    opt = torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.05)
    for epoch in range(2):
        for idx in epoch_batches(10, 4, seed=0, epoch=epoch):
            idx = torch.as_tensor(idx)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[idx]), y[idx]).backward()
            opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
