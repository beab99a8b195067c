"""4. SPD cost: one SPD epoch (eq. 4-6 against the proxies' cached outputs: selection, feature and
logit distillation) vs one ego-baseline epoch (CE only), same student, loader and batches,
both through `uniego.engine.train`. Target <= 1.15x. (There is no online-proxy mode: proxies
are exported once by `proxy-outputs`, as in the official code.)"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch

from benchmarks.common import SMOKE_CLIPS_PER_CLASS, Result, best_of_pair, training_setup

FULL = dict(clips_per_class=24, repeats=3)
SMOKE = dict(clips_per_class=SMOKE_CLIPS_PER_CLASS, repeats=1)


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.config import SPDSettings
    from uniego.engine import train
    from uniego.stages.level2.baselines import EgoTask
    from uniego.stages.level2.distillation import SPDModel, SPDTask
    from uniego.student import build_student

    clips_per_class, repeats = (SMOKE if smoke else FULL).values()
    t = training_setup(work, clips_per_class=clips_per_class)
    labels, classes, s, ts = t.labels, t.classes, t.student, t.train
    encoder = build_student(s, len(classes), num_frames=8, seed=0)
    g = torch.Generator().manual_seed(0)
    R, n = 9, len(labels)
    h_p = torch.randn(R, n, encoder.embed_dim, generator=g)
    z_p = torch.randn(R, n, len(classes), generator=g) + 4 * torch.nn.functional.one_hot(torch.as_tensor(labels), len(classes))
    spd = SPDSettings(init="model", k=1, mode="topk", beta_feat=5.0, beta_logit=1.0, beta_cls=1.0, tau=1.0,
                      student_ce_filter=False, ce_cap=None, normalize="paper", micro_batch=None, feature_projection=False)
    views = ["exo", "exo", "exo", "ego", "exo", "ego", "exo", "exo", "ego"]
    data = t.loader

    def epoch(task, name):
        run_dir = work / name
        shutil.rmtree(run_dir, ignore_errors=True)
        train(task, data, n, ts, run_dir, seed=0, identity={}, workers=1, desc=name)

    def spd_epoch():
        epoch(SPDTask(SPDModel(copy.deepcopy(encoder), False), h_p, z_p, views, spd, len(classes)), "spd")

    def ego_epoch():
        epoch(EgoTask(copy.deepcopy(encoder)), "ego")

    spd_epoch(), ego_epoch()
    t_spd, t_ego = best_of_pair(spd_epoch, ego_epoch, repeats)
    ratio = t_spd / t_ego
    detail = f"{n} train clips, batch 8, demo student: SPD epoch {t_spd:.2f} s, ego-baseline epoch {t_ego:.2f} s"
    return [Result("SPD epoch vs ego-baseline epoch", ratio, "<= 1.15x", ratio <= 1.15, detail)]
