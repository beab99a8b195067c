"""The paper's equations, each against a direct transcription or hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from uniego.errors import UniegoError
from uniego.losses import proxy_loss
from uniego.merge import MergeWeights, layer_group, merge_states
from uniego.metrics import topk_accuracy
from uniego.spd import select_proxies, spd_loss


def logits_for(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------------------ eq. 1
def test_proxy_loss_is_eq1():
    g = torch.Generator().manual_seed(0)
    h, ht = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    z, y = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 1, 2])
    out = proxy_loss(h, z, ht, y, lambda_feat=5.0, lambda_cls=1.0)
    ce = np.mean([-math.log(math.exp(z[i, y[i]]) / sum(math.exp(v) for v in z[i])) for i in range(5)])
    cos = np.mean([float(h[i] @ ht[i] / (h[i].norm() * ht[i].norm())) for i in range(5)])
    assert out["cls_loss"].item() == pytest.approx(ce, rel=1e-5)
    assert out["feat_loss"].item() == pytest.approx(1 - cos, rel=1e-5)
    assert out["loss"].item() == pytest.approx(ce + 5.0 * (1 - cos), rel=1e-5)


# ------------------------------------------------------------------------------------ eq. 4
def test_select_proxies_hand_built():
    # 4 proxies, 3 samples, 3 classes; labels 0, 1, 2
    labels = torch.tensor([0, 1, 2])
    z = torch.stack([
        logits_for([3.0, 0, 0], [0, 1.0, 0], [2.0, 0, 0]),    # proxy 0: right, right (weakly), wrong
        logits_for([1.0, 0, 0], [0, 5.0, 0], [0, 3.0, 0]),    # proxy 1: right (weakly), right (strongly), wrong
        logits_for([0, 2.0, 0], [0, 2.0, 0], [0, 0, -1.0]),   # proxy 2: wrong, right, wrong (argmax ties -> class 0)
        logits_for([5.0, 0, 0], [3.0, 0, 0], [1.0, 0, 0]),    # proxy 3: right (strongest), wrong, wrong
    ])
    sel = select_proxies(z, labels, k=1)
    assert sel.tolist() == [[False, False, False, True],   # lowest CE among correct {0, 1, 3}: proxy 3
                            [False, True, False, False],   # correct {0, 1, 2}: proxy 1 has the lowest CE
                            [False, False, False, False]]  # nobody is right: no distillation
    sel2 = select_proxies(z, labels, k=2)
    assert sel2[0].tolist() == [True, False, False, True] and sel2[1].tolist() == [False, True, True, False]
    assert select_proxies(z, labels, k=9, mode="all").tolist() == [[True, True, False, True],
                                                                   [True, True, True, False], [False] * 4]
    # ego + exo: the best ego proxy and the best exo proxy
    views = ["exo", "exo", "ego", "ego"]
    assert select_proxies(z, labels, k=1, mode="ego_exo", views=views).tolist() == [
        [True, False, False, True], [False, True, True, False], [False] * 4]
    # official filters: the proxy must beat the student's current CE, and CE <= cap
    student_ce = torch.tensor([0.05, 10.0, 10.0])
    off = select_proxies(z, labels, k=1, student_ce=student_ce)
    # sample 0: the best proxy (3) has CE log(1 + 2e^-5) = 0.0134 < 0.05, so it stays selected;
    # with a student CE of 0.01 no proxy beats the student and nothing is selected
    assert off.tolist() == sel.tolist()
    assert not select_proxies(z, labels, k=1, student_ce=torch.tensor([0.01, 10.0, 10.0]))[0].any()
    capped = select_proxies(z, labels, k=1, mode="all", ce_cap=0.5)
    assert capped[1].tolist() == [False, True, True, False]  # proxy 0's CE log(1 + 2/e) = 0.55 > 0.5


def test_select_ties_prefer_lower_index():
    z = torch.zeros(3, 2, 4)
    z[:, :, 1] = 2.0
    sel = select_proxies(z, torch.tensor([1, 1]), k=2)
    assert sel.tolist() == [[True, True, False], [True, True, False]]


# ---------------------------------------------------------------------------------- eq. 5-6
def transcription(h_u, z_u, h_p, z_p, y, S, bf, bl, bc, tau, normalize):
    B, R = S.shape
    total_cls, total_distill, n_nonempty = 0.0, 0.0, 0
    for i in range(B):
        p_u = torch.softmax(z_u[i] / tau, 0)
        total_cls += -math.log(torch.softmax(z_u[i], 0)[y[i]])
        chosen = [r for r in range(R) if S[i, r]]
        if not chosen:
            continue
        n_nonempty += 1
        d = 0.0
        for r in chosen:
            cos = float(h_u[i] @ h_p[r, i] / (h_u[i].norm() * h_p[r, i].norm()))
            p_r = torch.softmax(z_p[r, i] / tau, 0)
            kl = float((p_r * (p_r.log() - p_u.log())).sum())
            d += (bf * (1 - cos) + bl * kl) / len(chosen)
        total_distill += d
    denom = B if normalize == "paper" else max(n_nonempty, 1)
    return bc * total_cls / B + total_distill / denom


def spd_inputs(seed, B, R, D, C):
    """Random student and proxy features and logits, labels and a selection for eq. 5-6."""
    g = torch.Generator().manual_seed(seed)
    h_u, z_u = torch.randn(B, D, generator=g), torch.randn(B, C, generator=g)
    h_p, z_p = torch.randn(R, B, D, generator=g), torch.randn(R, B, C, generator=g) * 2
    y = torch.randint(0, C, (B,), generator=g)
    return h_u, z_u, h_p, z_p, y, torch.rand(B, R, generator=g) > 0.5


@pytest.mark.parametrize("normalize", ["paper", "official"])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_spd_loss_is_eq5_eq6(normalize, tau):
    h_u, z_u, h_p, z_p, y, S = spd_inputs(1, B=6, R=4, D=8, C=5)
    S[0] = False  # one sample without a teacher
    out = spd_loss(h_u, z_u, h_p, z_p, y, S, beta_feat=5.0, beta_logit=2.0, beta_cls=1.0, tau=tau, normalize=normalize)
    ref = transcription(h_u, z_u, h_p, z_p, y, S, 5.0, 2.0, 1.0, tau, normalize)
    assert out["loss"].item() == pytest.approx(ref, rel=1e-5)
    assert out["distilled"].item() == pytest.approx(S.any(1).float().mean().item())


def test_official_micro_batch_normalisation_is_the_per_gpu_transcription():
    """The official code (reference/official_uniego.md §4.4, §5.1): each GPU's micro-batch of 2 clips
    divides its distillation sum by its own count of samples with a selected proxy; the accumulated
    update is the mean of the micro-batch losses. Transcribed micro-batch by micro-batch."""
    B = 8
    h_u, z_u, h_p, z_p, y, S = spd_inputs(4, B=B, R=3, D=6, C=5)
    S[0], S[2], S[3] = False, False, False   # micro-batch 1: one distilled sample; micro-batch 2: none
    S[4, 0] = S[5, 1] = True
    per_gpu = [transcription(h_u[a:a + 2], z_u[a:a + 2], h_p[:, a:a + 2], z_p[:, a:a + 2], y[a:a + 2], S[a:a + 2], 5.0, 2.0, 1.0, 1.0,
                             "official") for a in range(0, B, 2)]
    out = spd_loss(h_u, z_u, h_p, z_p, y, S, beta_feat=5.0, beta_logit=2.0, beta_cls=1.0, normalize="official", micro_batch=2)
    assert out["loss"].item() == pytest.approx(sum(per_gpu) / len(per_gpu), rel=1e-5)
    whole = spd_loss(h_u, z_u, h_p, z_p, y, S, beta_feat=5.0, beta_logit=2.0, beta_cls=1.0, normalize="official")
    assert abs(whole["loss"].item() - out["loss"].item()) > 1e-3   # per batch is not per micro-batch
    with pytest.raises(ValueError, match="not whole micro-batches"):
        spd_loss(h_u[:7], z_u[:7], h_p[:, :7], z_p[:, :7], y[:7], S[:7], beta_feat=5.0, beta_logit=2.0, beta_cls=1.0,
                 normalize="official", micro_batch=2)


def test_spd_without_any_selection_is_plain_ce():
    z_u, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    out = spd_loss(torch.randn(3, 5), z_u, torch.randn(2, 3, 5), torch.randn(2, 3, 4), y, torch.zeros(3, 2, dtype=torch.bool),
                   beta_feat=5, beta_logit=1, beta_cls=1)
    assert out["loss"].item() == pytest.approx(torch.nn.functional.cross_entropy(z_u, y).item(), rel=1e-6)


# ------------------------------------------------------------------------------------ eq. 2
def _states(R=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"blocks.0.attn.qkv.weight": torch.randn(6, 2, generator=g), "blocks.1.norm1.bias": torch.randn(2, generator=g),
             "pos_embed": torch.randn(1, 3, 2, generator=g), "head.weight": torch.randn(4, 2, generator=g),
             "gcn.0.gcn.A": torch.ones(2, 2), "steps": torch.tensor(3)} for _ in range(R)]


def test_merge_one_hot_returns_that_proxy_and_uniform_the_average():
    states = _states()
    for r in range(3):
        m = merge_states(states, torch.nn.functional.one_hot(torch.tensor(r), 3).float())
        for k, v in states[r].items():
            assert torch.equal(m[k], v), k
    avg = merge_states(states, torch.full((3,), 1 / 3))
    for k in states[0]:
        if states[0][k].is_floating_point():
            torch.testing.assert_close(avg[k], sum(s[k] for s in states) / 3)
    states[1]["steps"] = torch.tensor(4)
    with pytest.raises(UniegoError, match="steps"):
        merge_states(states, torch.full((3,), 1 / 3))


def test_learned_alpha_stays_on_the_simplex_and_groups():
    states = _states()
    keys = [k for k in states[0] if states[0][k].is_floating_point() and k != "gcn.0.gcn.A"]  # A: equal in all
    for strategy, n_groups in (("model", 1), ("layer", 4), ("parameter", 4)):
        mw = MergeWeights(keys, 3, strategy)
        assert mw.alpha().shape == (n_groups, 3)
        torch.testing.assert_close(mw.alpha(), torch.full((n_groups, 3), 1 / 3))  # uniform start
        opt = torch.optim.Adam(mw.parameters(), lr=0.5)
        target = states[2]
        for _ in range(30):
            merged = merge_states([{k: s[k] for k in keys} for s in states], mw.per_key())
            loss = sum(((merged[k] - target[k]) ** 2).sum() for k in keys)
            opt.zero_grad()
            loss.backward()
            opt.step()
            a = mw.alpha()
            assert (a >= 0).all() and torch.allclose(a.sum(-1), torch.ones(n_groups))
        assert (mw.alpha()[:, 2] > 0.6).all()  # moved towards the target proxy
    assert layer_group("blocks.11.temporal_fc.weight") == "blocks.11"
    assert layer_group("patch_embed.proj.weight") == "patch_embed.proj" and layer_group("pos_embed") == "pos_embed"
    best = MergeWeights(keys, 3, "best", best=1)
    torch.testing.assert_close(best.alpha(), torch.tensor([[0.0, 1.0, 0.0]]))
    assert not MergeWeights(keys, 3, "average").logits.requires_grad


def test_topk_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]])
    labels = np.array([1, 1, 0, 1])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(25.0)  # the tie [0.5, 0.5] goes to class 0
    assert topk_accuracy(logits, labels, 2) == pytest.approx(75.0)
    assert topk_accuracy(torch.tensor(logits), torch.tensor(labels), 3) == pytest.approx(100.0)
