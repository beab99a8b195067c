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


class _DropoutTask:
    """A classifier with dropout (it draws from torch's RNG at every step)."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 3))

    def step(self, batch):
        return {"loss": nn.functional.cross_entropy(self.model(batch["x"]), batch["y"])}


class _EpochBatches(torch.utils.data.Dataset):
    def __init__(self, batches, epoch):
        self.batches, self.epoch = batches, epoch

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, b):
        idx = self.batches[b]
        g = torch.Generator().manual_seed(int(self.epoch * 1000 + idx[0]))
        return {"x": torch.randn(len(idx), 6, generator=g), "y": torch.as_tensor(idx % 3)}


@pytest.mark.parametrize("workers", [0, 1])
def test_one_loader_for_every_epoch_trains_what_a_loader_per_epoch_did(tmp_path, workers):
    """uniego.engine.train starts its DataLoader once per run (`AllEpochs`); each later epoch
    still draws the one number from torch's RNG that a new DataLoader iterator draws, so the
    dropout masks and the weights are those of the loop with a DataLoader per epoch, transcribed
    here as the engine ran it before."""
    from uniego.config import parse_train
    from uniego.engine import epoch_batches, train, whole_batches

    ts = parse_train({"epochs": 3, "lr": 0.1, "lr_steps": [0, 2], "lr_factors": [1.0, 0.1], "momentum": 0.9,
                      "nesterov": True, "weight_decay": 1e-4, "batch_size": 4, "accumulate": 2})
    n, seed = 22, 5
    task = _DropoutTask()
    train(task, _EpochBatches, n, ts, tmp_path / "run", seed=seed, identity={}, workers=workers)

    ref = _DropoutTask()
    opt = torch.optim.SGD(ref.model.parameters(), lr=ts.lr, momentum=ts.momentum, nesterov=ts.nesterov,
                          weight_decay=ts.weight_decay)
    torch.manual_seed(seed)
    with torch.inference_mode(False):
        for epoch in range(ts.epochs):
            for group in opt.param_groups:
                group["lr"] = ts.lr_at(epoch)
            loader = torch.utils.data.DataLoader(_EpochBatches(epoch_batches(n, ts.batch_size, seed=seed, epoch=epoch), epoch),
                                                 batch_size=None, collate_fn=whole_batches, num_workers=workers)
            ref.model.train()
            opt.zero_grad(set_to_none=True)
            for step, batch in enumerate(loader):
                (ref.step(batch)["loss"] / ts.accumulate).backward()
                if (step + 1) % ts.accumulate == 0:
                    opt.step()
                    opt.zero_grad(set_to_none=True)
    for (name, a), b in zip(task.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert epoch_batches(n, ts.batch_size, seed=seed, epoch=0)[0].tolist() != epoch_batches(n, ts.batch_size, seed=seed, epoch=1)[0].tolist()
