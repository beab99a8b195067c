"""Retrieval, segmentation and CKA on hand-computed cases (reference/eval_and_datasets.md §1-3)."""

import numpy as np
import pytest

from uniego.analysis import cka_matrix, linear_cka
from uniego.metrics import f1_counts, retrieval_scores, segmentation_scores, segments

# --- temporal action segmentation: golden cases of the MS-TCN evaluation (§1.7) ------------

A_GT, A_PRED = [0, 0, 1, 1, 1, 2, 2, 0, 0, 3, 3, 3], [0, 1, 1, 1, 1, 2, 0, 0, 0, 3, 3, 1]
B_GT, B_PRED = [1] * 6 + [2] + [1] * 5, [1, 1, 1, 3, 1, 1, 1, 1, 4, 4, 4, 4]
C_GT, C_PRED = [1] * 10, [1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
D_GT, D_PRED = [1] * 10 + [2] * 10, [1] * 3 + [2] * 17


@pytest.mark.parametrize("gt, pred, bg, expect", [
    (A_GT, A_PRED, (), (90.9091, 90.9091, 90.9091, 83.3333, 75.0)),
    (A_GT, A_PRED, (0,), (85.7143, 85.7143, 85.7143, 75.0, 75.0)),
    (B_GT, B_PRED, (), (28.5714, 28.5714, 28.5714, 50.0, 50.0)),    # greedy matching
    (C_GT, C_PRED, (), (50.0, 50.0, 50.0, 33.3333, 90.0)),           # over-segmentation
    (D_GT, D_PRED, (), (100.0, 100.0, 50.0, 100.0, 65.0)),
])
def test_segmentation_golden_cases(gt, pred, bg, expect):
    s = segmentation_scores([np.array(pred)], [np.array(gt)], background=bg)
    got = (s["F1@10"], s["F1@25"], s["F1@50"], s["Edit"], s["Acc"])
    assert got == pytest.approx(expect, abs=1e-4)


def test_segments_drop_background_runs_without_merging():
    assert segments([1, 1, 2, 2, 2, 0, 0, 3], background=(0,)) == ([1, 2, 3], [0, 2, 7], [2, 5, 8])
    assert segments([1, 0, 1], background=(0,)) == ([1, 1], [0, 2], [1, 3])
    assert segments([5]) == ([5], [0], [1])


def test_greedy_matching_counts():
    """An already-matched best GT turns the prediction into a false positive even though another
    unmatched GT of its label passes the 10 % threshold."""
    assert f1_counts(B_PRED, B_GT, 0.10) == (1, 3, 2)
    assert f1_counts(C_PRED, C_GT, 0.10) == (1, 2, 0)
    assert f1_counts([1] * 10 + [2] * 10, [1] * 10 + [2] * 10, 0.5) == (2, 0, 0)
    assert f1_counts([1] * 5 + [2] * 5, [1] * 5 + [2] * 5, 1.0) == (2, 0, 0)   # IoU exactly at the threshold


def test_ground_truth_all_background_and_empty_cases():
    # every GT frame background but predictions present: all predicted segments are FP, no FN
    assert f1_counts([1, 1, 2], [0, 0, 0], 0.1, background=(0,)) == (0, 2, 0)
    s = segmentation_scores([np.array([1, 1, 2])], [np.array([0, 0, 0])], background=(0,))
    assert s["F1@50"] == 0.0 and s["Edit"] == 0.0 and s["Acc"] == 0.0
    # both all background: identical (Edit 100, where the reference divides 0 by 0); F1 has nothing to count
    s = segmentation_scores([np.array([0, 0])], [np.array([0, 0])], background=(0,))
    assert s["Edit"] == 100.0 and s["Acc"] == 100.0 and s["F1@10"] == 0.0
    with pytest.raises(ValueError, match="video 1"):
        segmentation_scores([np.array([1]), np.array([], int)], [np.array([1]), np.array([], int)])
    with pytest.raises(ValueError, match="video 0"):
        segmentation_scores([np.array([1, 1])], [np.array([1, 1, 1])])


def test_segmentation_micro_f1_and_macro_edit_over_videos():
    s = segmentation_scores([np.array(A_PRED), np.array(C_PRED)], [np.array(A_GT), np.array(C_GT)])
    tp, fp, fn = 5 + 1, 1 + 2, 0 + 0
    p, r = tp / (tp + fp), tp / (tp + fn)
    assert s["F1@50"] == pytest.approx(200 * p * r / (p + r))
    assert s["Edit"] == pytest.approx((83.33333333 + 33.33333333) / 2)
    assert s["Acc"] == pytest.approx(100 * (9 + 9) / 22)


# --- retrieval ----------------------------------------------------------------------------


def test_retrieval_hand_case():
    # 1-d features, cosine = sign products: use 2-d to get graded similarities
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9]])
    y = np.array([0, 1, 0, 1])
    r = retrieval_scores(x, y)
    # query 0: ranking 1 (rel? no), 3 (no), 2 (yes) -> AP 1/3, R@1 0
    # query 1: 0 (no), 3 (yes), 2 (no) -> AP 1/2, R@1 0
    # query 2: 3 (no), 1 (no), 0 (yes) -> AP 1/3
    # query 3: 2 (no), 1 (yes), 0 (no) -> AP 1/2
    assert r["mAP"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    assert r["R@1"] == 0.0 and r["queries"] == 4 and r["queries_without_relevant"] == 0


def test_retrieval_ties_count_as_one_rank_and_self_is_excluded():
    # query 0 has identical copies 1 (same class) and 2 (other class): one tied block at the top
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    r = retrieval_scores(x, y)
    # q0: block {1,2} -> precision 1/2, AP 1/2, R@1 1/2; q1 same; q2: block {0,1} no rel, then 3 -> AP 1/3, R@1 0
    # q3: block {0,1,2} holds its one relevant -> AP 1/3, R@1 1/3
    assert r["mAP"] == pytest.approx((0.5 + 0.5 + 1 / 3 + 1 / 3) / 4)
    assert r["R@1"] == pytest.approx((0.5 + 0.5 + 0 + 1 / 3) / 4)
    # the order of the samples does not change anything
    perm = np.array([2, 0, 3, 1])
    assert retrieval_scores(x[perm], y[perm]) == pytest.approx(r)


def test_retrieval_equals_rank_ap_without_ties_and_skips_singletons():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), np.r_[rng.integers(0, 3, 29), 7]   # class 7 occurs once
    r = retrieval_scores(x, y)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    aps, r1 = [], []
    for q in range(29):
        others = [i for i in np.argsort(-(xn @ xn[q])) if i != q]
        rel = (y[others] == y[q]).astype(float)
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        aps.append((prec * rel).sum() / rel.sum())
        r1.append(rel[0])
    assert r["mAP"] == pytest.approx(np.mean(aps)) and r["R@1"] == pytest.approx(np.mean(r1))
    assert r["queries"] == 29 and r["queries_without_relevant"] == 1
    with pytest.raises(ValueError, match="NaN"):
        retrieval_scores(np.full((3, 2), np.nan), [0, 0, 1])
    with pytest.raises(ValueError, match="no query"):
        retrieval_scores(rng.normal(size=(3, 2)), [0, 1, 2])


# --- CKA ----------------------------------------------------------------------------------


def test_linear_cka_golden_value_and_invariances():
    rng = np.random.RandomState(1337)          # the reference notebook's legacy RNG
    x = rng.randn(100, 10)
    y = rng.randn(100, 10) + x
    assert linear_cka(x, y) == pytest.approx(0.55761, abs=1e-5)
    assert linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(10, 10)))
    assert linear_cka(x @ q, y) == pytest.approx(linear_cka(x, y))
    assert linear_cka(3.7 * x + 2.0, y) == pytest.approx(linear_cka(x, y))
    a = np.random.default_rng(2).normal(size=(10, 10))
    assert abs(linear_cka(x @ a, y) - linear_cka(x, y)) > 0.01
    # different widths are fine; the matrix is symmetric with a unit diagonal
    m = cka_matrix({"x": x, "y": y, "z": x[:, :3]})
    assert m.shape == (3, 3) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1)
    with pytest.raises(ValueError, match="same N"):
        linear_cka(x, y[:50])


def test_per_class_accuracy():
    import torch

    from uniego.metrics import per_class_accuracy
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 0, 1, 2])
    # sample 2 ties 0 and 1: broken towards class 0, as topk_accuracy does; class 1 then has 0 of 1
    assert per_class_accuracy(logits, labels, 4) == [50.0, 0.0, 100.0, None]
