"""Evaluation metrics. Tensors or numpy arrays in, Python floats (percent) out."""

from __future__ import annotations

import numpy as np
import torch


def _tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.array(x))


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Percentage of samples whose label is among the k highest logits. [N, C], [N] -> float.
    Ties are broken towards the lower class index (torch.topk on CPU is stable for equal values
    only by index order after a stable sort, which we do explicitly)."""
    logits, labels = _tensor(logits).float(), _tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"topk_accuracy needs logits [N, C] and labels [N], got {tuple(logits.shape)}, {tuple(labels.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy of an empty set")
    k = min(k, logits.shape[1])
    top = torch.sort(-logits, dim=1, stable=True).indices[:, :k]
    return float((top == labels[:, None]).any(1).float().mean() * 100)


def per_class_accuracy(logits, labels, num_classes: int) -> list[float | None]:
    """Top-1 (%) within each class's samples, [N, C], [N] -> [num_classes]; None for a class
    with no sample. Ties as in `topk_accuracy` (towards the lower class index)."""
    logits, labels = _tensor(logits).float(), _tensor(labels).long()
    pred = torch.sort(-logits, dim=1, stable=True).indices[:, 0]
    return [float((pred[labels == c] == c).float().mean() * 100) if (labels == c).any() else None
            for c in range(num_classes)]


def _block_ap(scores: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """Average precision and precision@1 of one ranking, every group of equal scores taken as
    one threshold (scikit-learn's `average_precision_score` policy), so the result does not
    depend on how ties would be ordered. `relevant` must hold at least one True."""
    order = np.argsort(-scores, kind="stable")
    s, rel = scores[order], relevant[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last index of every tie block
    cum_rel = np.cumsum(rel)[ends]
    gain = np.diff(np.concatenate([[0], cum_rel]))
    precision = cum_rel / (ends + 1)
    return float(np.sum(gain * precision) / rel.sum()), float(precision[0])


def retrieval_scores(features, labels) -> dict:
    """Class-based video retrieval on one set of clips (paper Table 3): every clip queries all
    the others (itself excluded); a gallery clip is relevant when it has the query's label;
    similarity is the cosine of the features. mAP is the mean non-interpolated average
    precision, R@1 the fraction of queries whose best match is relevant, both as fractions in
    [0, 1] like the paper. Ties: a group of gallery clips with equal similarity counts as one
    rank (R@1 of a tied top group is the fraction of it that is relevant). Queries whose class
    has no other clip cannot be scored and are left out; their number is returned."""
    x = _tensor(features).double()
    y = _tensor(labels).long().numpy()
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"retrieval_scores needs features [N, D] and labels [N], got {tuple(x.shape)}, {y.shape}")
    if not torch.isfinite(x).all():
        raise ValueError("retrieval_scores: the features contain NaN or Inf")
    norms = x.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"retrieval_scores: feature rows {torch.flatnonzero(norms[:, 0] == 0).tolist()[:10]} are all zeros")
    sim = (x / norms) @ (x / norms).T
    sim = sim.numpy()
    aps, hits, skipped = [], [], 0
    for q in range(len(y)):
        gallery = np.arange(len(y)) != q
        rel = y[gallery] == y[q]
        if not rel.any():
            skipped += 1
            continue
        ap, p1 = _block_ap(sim[q, gallery], rel)
        aps.append(ap)
        hits.append(p1)
    if not aps:
        raise ValueError("retrieval_scores: no query has a relevant clip (every class occurs once)")
    return {"mAP": float(np.mean(aps)), "R@1": float(np.mean(hits)), "queries": len(aps),
            "queries_without_relevant": skipped}


# --- temporal action segmentation (the MS-TCN evaluation) --------------------------------


def segments(frame_labels, background=()) -> tuple[list, list, list]:
    """Runs of equal labels as half-open [start, end) segments; runs of a background label are
    dropped (not merged with their neighbours), as in MS-TCN's `get_labels_start_end_time`."""
    seq = list(np.asarray(frame_labels).tolist())
    labels, starts, ends = [], [], []
    i = 0
    while i < len(seq):
        j = i
        while j < len(seq) and seq[j] == seq[i]:
            j += 1
        if seq[i] not in background:
            labels.append(seq[i]), starts.append(i), ends.append(j)
        i = j
    return labels, starts, ends


def _levenshtein(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, z in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != z))
    return row[-1]


def edit_score(pred, gt, background=()) -> float:
    """Segmental edit score of one video: (1 - Levenshtein(P, Y) / max(|P|, |Y|)) x 100 over the
    segment label sequences. Both empty (every frame background) scores 100, where the
    reference divides 0 by 0."""
    p, y = segments(pred, background)[0], segments(gt, background)[0]
    if not p and not y:
        return 100.0
    return (1 - _levenshtein(p, y) / max(len(p), len(y))) * 100


def f1_counts(pred, gt, overlap: float, background=()) -> tuple[int, int, int]:
    """(tp, fp, fn) of one video at IoU threshold `overlap`, MS-TCN's greedy matching: each
    predicted segment, in temporal order, takes the ground-truth segment of highest IoU (same
    label only, first on ties); a hit needs IoU >= overlap and that segment still unmatched,
    otherwise it is a false positive (so over-segmentation costs false positives). With no
    ground-truth segment every prediction is a false positive."""
    pl, ps, pe = segments(pred, background)
    gl, gs, ge = (np.asarray(v) for v in segments(gt, background))
    matched = np.zeros(len(gl), bool)
    tp = fp = 0
    for label, s, e in zip(pl, ps, pe):
        if len(gl) == 0:
            fp += 1
            continue
        inter = np.minimum(e, ge) - np.maximum(s, gs)
        union = np.maximum(e, ge) - np.minimum(s, gs)
        iou = inter / union * (gl == label)
        best = int(np.argmax(iou))
        if iou[best] >= overlap and not matched[best]:
            tp += 1
            matched[best] = True
        else:
            fp += 1
    return tp, fp, int(len(gl) - matched.sum())


def segmentation_scores(preds, gts, background=()) -> dict:
    """Temporal action segmentation over a set of videos, as the MS-TCN evaluation: F1@{10,25,50}
    from tp/fp/fn summed over all videos (micro), Edit averaged over videos, Acc = correct frames
    over all frames (background frames counted). Percentages. Predictions and ground truth are
    frame-wise integer labels of equal length; an empty video is an error."""
    if len(preds) != len(gts) or not len(gts):
        raise ValueError(f"segmentation_scores needs one prediction per video, got {len(preds)} for {len(gts)}")
    background = tuple(background)
    out, correct, frames, edits = {}, 0, 0, []
    counts = {k: np.zeros(3) for k in (10, 25, 50)}
    for i, (p, g) in enumerate(zip(preds, gts)):
        p, g = np.asarray(p).ravel(), np.asarray(g).ravel()
        if len(g) == 0 or len(p) != len(g):
            raise ValueError(f"video {i}: prediction has {len(p)} frames, ground truth {len(g)} (must be equal and > 0)")
        correct += int((p == g).sum())
        frames += len(g)
        edits.append(edit_score(p, g, background))
        for k in counts:
            counts[k] += f1_counts(p, g, k / 100, background)
    for k, (tp, fp, fn) in counts.items():
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        out[f"F1@{k}"] = 200 * precision * recall / (precision + recall) if precision + recall else 0.0
    out["Edit"] = float(np.mean(edits))
    out["Acc"] = 100 * correct / frames
    return out
