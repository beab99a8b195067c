"""3. Training input pipeline: proxy-training (eq. 1) steps per second with the real loader
(clip cache -> random resize/crop/flip -> normalise, in a DataLoader worker, as `train-proxy`
runs) vs the same batches already in memory. Target >= 0.9. And the loader alone over several
epochs, as `uniego.engine.train` runs it (one DataLoader over every epoch, its workers started
once, `AllEpochs`) vs a DataLoader per epoch (workers started every epoch, as before). Target >= 1.0."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, best_of_pair, training_setup

FULL = dict(clips_per_class=24, repeats=3)
SMOKE = dict(clips_per_class=SMOKE_CLIPS_PER_CLASS, repeats=1)


class _InMemory(torch.utils.data.Dataset):
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.config import Level1Settings
    from uniego.engine import epoch_batches, train
    from uniego.stages.level1.proxies import ProxyTask
    from uniego.student import ProxyModel, build_student

    clips_per_class, repeats = (SMOKE if smoke else FULL).values()
    t = training_setup(work, clips_per_class=clips_per_class)
    classes, s, ts, n = t.classes, t.student, t.train, len(t.labels)
    targets = torch.randn(n, 64, generator=torch.Generator().manual_seed(0))
    lv = Level1Settings(lambda_feat=5.0, lambda_cls=1.0, projection="teacher")
    real = t.loader
    memory = real(epoch_batches(n, ts.batch_size, seed=0, epoch=0), 0)
    memory = _InMemory([memory[i] for i in range(len(memory))])

    def epoch(data, workers, name):
        run_dir = work / name
        shutil.rmtree(run_dir, ignore_errors=True)
        model = ProxyModel(build_student(s, len(classes), num_frames=8, seed=0), 64, "teacher")
        train(ProxyTask(model, targets, lv), data, n, ts, run_dir, seed=0, identity={}, workers=workers, desc=name)

    run_real = lambda: epoch(real, 1, "real")                     # noqa: E731  the demo config's loader worker
    run_memory = lambda: epoch(lambda b, e: memory, 0, "memory")  # noqa: E731
    run_real(), run_memory()
    t_real, t_mem = best_of_pair(run_real, run_memory, repeats)
    steps = len(memory)
    ratio = t_mem / t_real
    detail = (f"{steps} steps of batch 8 (demo student, 64 px): real loader {steps / t_real:.2f} steps/s, "
              f"in memory {steps / t_mem:.2f} steps/s")
    results = [Result("proxy training, real loader vs in memory", ratio, ">= 0.9", ratio >= 0.9, detail)]
    return results + [_loader_per_run_vs_per_epoch(real, n, ts.batch_size, epochs=2 if smoke else 10, repeats=repeats)]


def _loader_per_run_vs_per_epoch(make, n, batch_size, *, epochs, repeats, workers=2) -> Result:
    from torch.utils.data import DataLoader

    from uniego.engine import AllEpochs, epoch_batches, whole_batches

    datasets = [make(epoch_batches(n, batch_size, seed=0, epoch=e), e) for e in range(epochs)]

    def per_epoch():
        for d in datasets:
            for _ in DataLoader(d, batch_size=None, collate_fn=whole_batches, num_workers=workers):
                pass

    def per_run():
        for _ in DataLoader(AllEpochs(datasets), batch_size=None, collate_fn=whole_batches, num_workers=workers):
            pass

    per_epoch(), per_run()
    t_epoch, t_run = best_of_pair(per_epoch, per_run, repeats)
    ratio = t_epoch / t_run
    detail = (f"{epochs} epochs of {len(datasets[0])} batches, {workers} workers: a loader per epoch {t_epoch / epochs:.3f} s "
              f"per epoch, one loader for the run {t_run / epochs:.3f} s per epoch")
    return Result("training loader, one per run vs one per epoch", ratio, ">= 1.0", ratio >= 1.0, detail)
