"""4. SPD cost: one SPD epoch (eq. 4-6 against the proxies' cached outputs: selection, feature and
logit distillation) vs one ego-baseline epoch (CE only), same student, loader and batches,
both through `uniego.engine.train`. Target <= 1.15x. (There is no online-proxy mode: proxies
are exported once by `proxy-outputs`, as in the official code.)"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Result, best_of_pair, demo_dataset


def run(work: Path) -> list[Result]:
    from uniego.baselines import EgoTask
    from uniego.config import StudentSettings, TrainSettings
    from uniego.data import ClipBatches, ClipSource
    from uniego.engine import train
    from uniego.level2 import SPDModel, SPDTask
    from uniego.manifest import manifest_sha256, read_manifest
    from uniego.student import build_student

    d = demo_dataset(work, clips_per_class=24)
    table, classes = read_manifest(d["manifest"])
    rows = np.flatnonzero(table.split.to_numpy() == "train")
    source = ClipSource(d["clips"]["ego"], list(table.sample_id.iloc[rows]), manifest_sha256=manifest_sha256(d["manifest"]))
    labels = table.label.to_numpy()[rows]
    s = StudentSettings(arch="timesformer_test", init="random", input_size=64, train_jitter=(64, 80), patch_size=8)
    ts = TrainSettings(epochs=1, lr=1e-3, lr_steps=(0,), lr_factors=(1.0,), momentum=0.9, nesterov=True, weight_decay=0.05,
                       batch_size=8, optimizer="adamw")
    encoder = build_student(s, len(classes), num_frames=8, seed=0)
    g = torch.Generator().manual_seed(0)
    R, n = 9, len(rows)
    h_p = torch.randn(R, n, encoder.embed_dim, generator=g)
    z_p = torch.randn(R, n, len(classes), generator=g) + 4 * torch.nn.functional.one_hot(torch.as_tensor(labels), len(classes))
    spd = {"k": 1, "mode": "topk", "beta_feat": 5.0, "beta_logit": 1.0, "beta_cls": 1.0, "tau": 1.0,
           "student_ce_filter": False, "ce_cap": None, "normalize": "paper"}
    views = ["exo", "exo", "exo", "ego", "exo", "ego", "exo", "exo", "ego"]
    data = lambda b, e: ClipBatches(source, labels, s, b, epoch=e, seed=0, train=True)  # noqa: E731

    def epoch(task, name):
        run_dir = work / name
        shutil.rmtree(run_dir, ignore_errors=True)
        train(task, data, n, ts, run_dir, seed=0, identity={}, workers=1, desc=name)

    def spd_epoch():
        epoch(SPDTask(SPDModel(copy.deepcopy(encoder), False), h_p, z_p, views, spd, len(classes)), "spd")

    def ego_epoch():
        epoch(EgoTask(copy.deepcopy(encoder)), "ego")

    spd_epoch(), ego_epoch()
    t_spd, t_ego = best_of_pair(spd_epoch, ego_epoch)
    ratio = t_spd / t_ego
    detail = f"{n} train clips, batch 8, demo student: SPD epoch {t_spd:.2f} s, ego-baseline epoch {t_ego:.2f} s"
    return [Result("SPD epoch vs ego-baseline epoch", ratio, "<= 1.15x", ratio <= 1.15, detail)]
