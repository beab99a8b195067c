"""5. Merge step: one training step of the learned merge (eq. 2: the 9 proxies' weights blended
by alpha into one state dict, forward through `torch.func.functional_call`, backward to alpha)
vs a plain forward + backward of the same student on the same batch. Target <= 1.5x."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import Result, best_of_pair

FULL = dict(R=9, B=8, T=8, SIZE=64, repeats=5)   # 9 proxies; the demo's student and batch
SMOKE = dict(R=2, B=2, T=4, SIZE=32, repeats=1)


def run(work: Path, *, smoke: bool = False) -> list[Result]:
    from uniego.config import StudentSettings
    from uniego.merge import MergeWeights, stack_states
    from uniego.stages.level2.merging import MergeTask
    from uniego.student import build_student

    R, B, T, SIZE, repeats = (SMOKE if smoke else FULL).values()
    s = StudentSettings(arch="timesformer_test", init="random", input_size=SIZE, train_jitter=(SIZE, SIZE + 16), patch_size=8)
    states = [build_student(s, 9, num_frames=T, seed=i).state_dict() for i in range(R)]
    stacked = stack_states(states)
    keys = [k for k, v in stacked.items() if v.is_floating_point()]
    base = build_student(s, 9, num_frames=T, seed=0)
    merge = MergeTask(base, stacked, MergeWeights(keys, R, "model"))
    plain = build_student(s, 9, num_frames=T, seed=0).train()
    g = torch.Generator().manual_seed(0)
    batch = {"clip": torch.randn(B, 3, T, SIZE, SIZE, generator=g), "label": torch.randint(0, 9, (B,), generator=g)}

    def merged_step():
        merge.model.zero_grad(set_to_none=True)
        merge.step(batch)["loss"].backward()

    def plain_step():
        plain.zero_grad(set_to_none=True)
        F.cross_entropy(plain(batch["clip"]), batch["label"]).backward()

    for f in (merged_step, plain_step):
        f()
    t_merge, t_plain = best_of_pair(merged_step, plain_step, repeats)
    ratio = t_merge / t_plain
    detail = (f"timesformer_test {SIZE} px x {T} frames, batch {B}, {R} proxies: merged {t_merge * 1e3:.0f} ms, "
              f"plain {t_plain * 1e3:.0f} ms per step")
    return [Result("merge step vs plain step", ratio, "<= 1.5x", ratio <= 1.5, detail)]
