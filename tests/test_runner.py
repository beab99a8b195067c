"""The one stage runner and checkpoint schema (uniego.stages.runner, issue 21)."""

import json

import pytest
import torch
from torch import nn

from uniego.config import ComputeSettings, TrainSettings
from uniego.errors import UniegoError
from uniego.stages.runner import CHECKPOINT_META, checkpoint_meta, fit, run_folder, save_checkpoint


def test_run_folder_names():
    assert str(run_folder("results/demo/merge/model.pt")) == "results/demo/merge/model.run"
    assert str(run_folder("results/demo/merge/model.pt", "best_proxy")) == "results/demo/merge/model.best_proxy.run"


class _Regression:
    """y = 2x by least squares: a task in the engine's protocol."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)

    def step(self, batch):
        loss = ((self.model(batch["x"]) - 2 * batch["x"]) ** 2).mean()
        return {"loss": loss}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return {"x": torch.from_numpy(self.batches[i]).float()[:, None] / 8}


def test_fit_trains_in_the_run_folder_and_returns_the_history(tmp_path):
    out = tmp_path / "model.pt"
    settings = TrainSettings(epochs=3, lr=0.1, lr_steps=(0,), lr_factors=(1.0,), momentum=0.0, nesterov=False,
                             weight_decay=0.0, batch_size=4)
    run = fit(_Regression(), lambda b, e: _Batches(b), 8, settings, out=out, identity={"what": "test"}, seed=0,
              code_version="abc", compute=ComputeSettings(device="cpu", precision="fp32", workers=0), desc="test")
    log = [json.loads(line) for line in (tmp_path / "model.run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in run["history"]] == [1, 2, 3] == [h["epoch"] for h in log]
    assert run["final_metrics"] == run["history"][-1] and log[-1]["loss"] < log[0]["loss"]
    assert not (tmp_path / "model.run" / "last.pt").exists()


def test_checkpoint_meta_and_save(tmp_path):
    meta = checkpoint_meta("proxy", seed=3, manifest_sha256="m", code_version="c", run=None, teacher="exo_skl")
    assert list(meta)[:len(CHECKPOINT_META)] == list(CHECKPOINT_META)
    assert meta["history"] == [] and meta["final_metrics"] is None and meta["teacher"] == "exo_skl"
    path = save_checkpoint(tmp_path / "p.pt", {"encoder": {"w": torch.ones(2)}}, {**meta, "shape": (1, 2)})
    obj = torch.load(path, weights_only=True)
    assert obj["meta"]["shape"] == [1, 2] and "environment" in obj["meta"] and torch.equal(obj["encoder"]["w"], torch.ones(2))
    with pytest.raises(UniegoError, match="unknown"):
        checkpoint_meta("teacher", seed=0, manifest_sha256="m", code_version="c")
    with pytest.raises(UniegoError, match="set by the schema"):
        checkpoint_meta("proxy", seed=0, manifest_sha256="m", code_version="c", history=[1])
    with pytest.raises(UniegoError, match="lacks"):
        save_checkpoint(tmp_path / "q.pt", {}, {"kind": "proxy"})
    assert not (tmp_path / "q.pt").exists()
