"""Analyses of what the teachers and proxies learned (paper Figures 3-6, Tables 9, 11, 12).

Linear CKA (Kornblith et al. 2019) compares two representations of the same samples; it is
1 for identical ones, unchanged by rotations and isotropic scaling of either, and near 0 for
unrelated ones. A linear probe measures what a frozen representation knows about the task: a
softmax regression on the train split's features, scored on the test split.
"""

from __future__ import annotations

import numpy as np
import torch

from uniego.io import atomic_write_json
from uniego.metrics import per_class_accuracy


def linear_cka(x, y) -> float:
    """Linear CKA of x [N, D1] and y [N, D2] (rows: the same N samples), feature-space form:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with columns centred, in float64."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"linear_cka needs x [N, D1] and y [N, D2] with the same N >= 2, got {tuple(x.shape)}, {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("linear_cka: the features contain NaN or Inf")
    x, y = x - x.mean(0), y - y.mean(0)
    denom = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if denom == 0:
        raise ValueError("linear_cka: one representation is constant over the samples")
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / denom)


def cka_matrix(features: dict[str, np.ndarray]) -> np.ndarray:
    """Pairwise linear CKA of named representations of the same samples -> [R, R] (symmetric,
    ones on the diagonal)."""
    names = list(features)
    out = np.eye(len(names))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = linear_cka(features[names[i]], features[names[j]])
    return out


# --- Figure 3: representation similarity of teachers and of proxies ----------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, out) -> None:
    import os
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, out)


def _mean_offdiag(m: np.ndarray) -> float:
    return float(m[~np.eye(len(m), dtype=bool)].mean()) if len(m) > 1 else float("nan")


def cka_analysis(manifest: str, teachers: dict[str, str], proxies: dict[str, str], out_json: str, out_png: str, *,
                 max_samples: int, seed: int) -> dict:
    """Linear CKA between every pair of teachers (their stored features) and every pair of
    proxies (their CLS on the train split), on the same train samples; also each proxy
    against its own teacher. Heatmap as the paper's Figure 3: teachers below the diagonal,
    proxies above."""
    from uniego.cache import read_array
    from uniego.errors import UniegoError
    from uniego.manifest import manifest_sha256, read_manifest

    names = list(teachers)
    if names != list(proxies):
        raise UniegoError(f"CKA needs the same teachers and proxies in the same order: {names} vs {list(proxies)}",
                          stage="analysis")
    table, _ = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    train = table.sample_id[table.split == "train"].tolist()
    pick = np.sort(np.random.default_rng(seed).permutation(len(train))[:max_samples])
    ids = [train[i] for i in pick]
    t_feats, p_feats, a_feats = {}, {}, {}
    row_of = {sid: i for i, sid in enumerate(table.sample_id)}
    pos = np.array([row_of[i] for i in ids])
    for name in names:
        values, _ = read_array(teachers[name], manifest_sha256=sha, sample_ids=table.sample_id, stage="analysis")
        values = values.astype(np.float64)
        t_feats[name] = values.mean(axis=1)[pos] if values.ndim == 3 else values[pos]
        feats, _ = read_array(proxies[name], "feature", manifest_sha256=sha, sample_ids=train, stage="analysis")
        p_feats[name] = feats[pick].astype(np.float64)
        aligned, _ = read_array(proxies[name], "aligned", manifest_sha256=sha, sample_ids=train, stage="analysis")
        a_feats[name] = aligned[pick].astype(np.float64)
    t_cka, p_cka = cka_matrix(t_feats), cka_matrix(p_feats)
    own = {n: linear_cka(t_feats[n], p_feats[n]) for n in names}
    # every proxy against every teacher: does each proxy end closest to its own teacher? (issue 19)
    cross = np.array([[linear_cka(p_feats[p], t_feats[t]) for t in names] for p in names])
    closest = {p: names[int(np.argmax(cross[i]))] for i, p in enumerate(names)}
    # the same in the space eq. 1 aligns: proj(CLS) for a student-side projection, else the CLS
    cross_aligned = np.array([[linear_cka(a_feats[p], t_feats[t]) for t in names] for p in names])
    closest_aligned = {p: names[int(np.argmax(cross_aligned[i]))] for i, p in enumerate(names)}
    result = {"teachers": names, "samples": len(ids), "split": "train", "teacher_cka": t_cka.tolist(),
              "proxy_cka": p_cka.tolist(), "proxy_vs_own_teacher": own, "proxy_vs_teacher": cross.tolist(),
              "closest_teacher": closest, "closest_is_own": sum(closest[p] == p for p in names),
              "aligned_vs_teacher": cross_aligned.tolist(), "closest_teacher_aligned": closest_aligned,
              "closest_is_own_aligned": sum(closest_aligned[p] == p for p in names),
              "mean_offdiagonal_teachers": _mean_offdiag(t_cka), "mean_offdiagonal_proxies": _mean_offdiag(p_cka),
              "note": "linear CKA (feature-space form, centred, float64); teacher features averaged over frames; "
                      "proxy features: the CLS, and `aligned` the side of eq. 1's cosine term (proj(CLS) for a "
                      "student-side projection)"}
    plt = _plt()
    grid = np.full((len(names), len(names)), np.nan)
    lower, upper = np.tril_indices(len(names), -1), np.triu_indices(len(names), 1)
    grid[lower], grid[upper] = t_cka[lower], p_cka[upper]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(names), 0.6 + 0.7 * len(names)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j:
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_title(f"Linear CKA on {len(ids)} train clips\nbelow diagonal: teachers "
                 f"(mean {result['mean_offdiagonal_teachers']:.2f}); above: proxies "
                 f"(mean {result['mean_offdiagonal_proxies']:.2f})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save_png(fig, out_png)
    atomic_write_json(out_json, result)
    return result


# --- linear probes: what each frozen teacher knows about the task --------------------------


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, num_classes: int, *, weight_decays=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
                 iterations: int = 300) -> dict:
    """Softmax regression on standardised features (float64, full-batch L-BFGS), its L2 weight
    picked on the val split from `weight_decays`; returns test top-1 (%), per-class test
    accuracy (%) and the chosen weight. Deterministic: no random initialisation (zeros)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xs = [torch.from_numpy((x - mean) / std).double() for x in (x_train, x_val, x_test)]
    ys = [torch.from_numpy(np.asarray(y)).long() for y in (y_train, y_val, y_test)]

    def fit(wd):
        w = torch.zeros(xs[0].shape[1], num_classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(xs[0] @ w + b, ys[0]) + wd * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach(), b.detach()

    def accuracy(wb, i):
        return float(((xs[i] @ wb[0] + wb[1]).argmax(1) == ys[i]).double().mean() * 100)

    if len(ys[1]) == 0:   # no val split (e.g. Ego-Exo4D's val serves as test): the grid's middle weight
        weight_decays = (weight_decays[len(weight_decays) // 2],)
    fits = {wd: fit(wd) for wd in weight_decays}
    best = max(weight_decays, key=lambda wd: (accuracy(fits[wd], 1) if len(ys[1]) else 0.0, -wd))  # ties: stronger decay
    logits = xs[2] @ fits[best][0] + fits[best][1]
    return {"top1": accuracy(fits[best], 2), "val_top1": accuracy(fits[best], 1) if len(ys[1]) else None,
            "weight_decay": best,
            "per_class": per_class_accuracy(logits, ys[2], num_classes)}


def probe_analysis(manifest: str, teachers: dict[str, str], out_json: str) -> dict:
    """A linear probe per teacher store (features averaged over frames): train split -> test split."""
    from uniego.cache import open_store, read_array
    from uniego.manifest import manifest_sha256, read_manifest

    table, classes = read_manifest(manifest)
    sha = manifest_sha256(manifest)
    split = table.split.to_numpy()
    y = table.label.to_numpy()
    result = {"classes": classes, "chance": 100.0 / len(classes),
              "samples": {s: int((split == s).sum()) for s in ("train", "val", "test")}, "teachers": {}}
    for name, path in teachers.items():
        values, _ = read_array(path, manifest_sha256=sha, sample_ids=table.sample_id, stage="analysis")
        x = values.astype(np.float64)
        x = x.mean(axis=1) if x.ndim == 3 else x
        r = linear_probe(*(a for s in ("train", "val", "test") for a in (x[split == s], y[split == s])), len(classes))
        attrs = dict(open_store(path, manifest_sha256=sha, stage="analysis").attrs)
        r.update(view=attrs.get("view"), stand_in=attrs.get("stand_in"), trained_on=(attrs.get("trained_on") or {}).get("objective"),
                 weights=attrs.get("weights"))
        result["teachers"][name] = r
    atomic_write_json(out_json, result)
    return result


# --- Figure 6, Tables 11-12: which proxies SPD selected ----------------------------------


def selection_analysis(checkpoint: str, out_json: str, out_png: str) -> dict:
    """Selection frequency of every proxy during SPD (the counts the SPD run recorded, summed
    over epochs): overall as a fraction of the samples seen, and per class as a fraction of
    that class's samples."""

    from uniego.errors import UniegoError
    from uniego.io import read_checkpoint

    obj = read_checkpoint(checkpoint, stage="analysis")
    meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
    sel = meta.get("selection")
    if meta.get("method") != "uniego" or not sel:
        raise UniegoError(f"{checkpoint} is not an SPD result with selection counts", stage="analysis")
    teachers, classes = meta["teachers"], meta["classes"]
    per_class = np.asarray(sel["per_class"], dtype=np.float64)          # [C, R] counts
    seen = sel["samples_seen"]
    overall = {t: sel["per_proxy"][t] / seen for t in teachers}
    result = {"teachers": teachers, "classes": classes, "samples_seen": seen, "epochs": meta["train"]["epochs"],
              "k": meta["spd"]["k"], "mode": meta["spd"]["mode"], "overall_fraction": overall,
              "per_class_counts": per_class.tolist(),
              "per_class_share": (per_class / np.maximum(per_class.sum(1, keepdims=True), 1)).tolist()}
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(6 + 0.5 * len(teachers), 1.5 + 0.35 * len(classes)),
                                 gridspec_kw={"width_ratios": [1, 1.4]})
    a1.barh(range(len(teachers)), [overall[t] for t in teachers], color="tab:blue")
    a1.set_yticks(range(len(teachers)), teachers, fontsize=8)
    a1.invert_yaxis()
    a1.set_xlabel("fraction of SPD samples selecting the proxy")
    a1.set_title(f"overall (K={result['k']}, {result['mode']})", fontsize=9)
    share = np.asarray(result["per_class_share"])
    im = a2.imshow(share, vmin=0, vmax=1, cmap="magma", aspect="auto")
    a2.set_xticks(range(len(teachers)), teachers, rotation=45, ha="right", fontsize=7)
    a2.set_yticks(range(len(classes)), classes, fontsize=7)
    a2.set_title("share of each class's selections", fontsize=9)
    fig.colorbar(im, ax=a2, fraction=0.046)
    _save_png(fig, out_png)
    atomic_write_json(out_json, result)
    return result


# --- Figures 4-5: gradient conflict per epoch ----------------------------------------------


def conflict_analysis(models: dict[str, str], out_json: str, out_png: str) -> dict:
    """The per-epoch gradient-conflict probe records (`uniego.engine.gradient_conflict`) of
    trained models (naive MTD, SPD over all proxies, SPD), from their checkpoints' history."""
    from uniego.errors import UniegoError
    from uniego.io import read_checkpoint

    curves = {}
    for name, path in models.items():
        obj = read_checkpoint(path, stage="analysis")
        history = (obj.get("meta", {}) if isinstance(obj, dict) else {}).get("history") or []
        rows = [h for h in history if "grad_conflict_rate" in h]
        if not rows:
            raise UniegoError(f"{path} ({name}) has no gradient-conflict records: it was trained with "
                              "analysis.probe_samples = 0 or before the probe existed; retrain it", stage="analysis")
        curves[name] = {"epoch": [h["epoch"] for h in rows], "conflict_rate": [h["grad_conflict_rate"] for h in rows],
                        "cosine_mean": [h["grad_cosine_mean"] for h in rows],
                        "distilled": [h.get("grad_probe_distilled") for h in rows]}
    result = {"models": curves,
              "mean_conflict_rate": {m: float(np.mean(c["conflict_rate"])) for m, c in curves.items()},
              "note": "cos(grad of the weighted CE term, grad of the weighted distillation term) over the encoder "
                      "parameters, per probe clip, after every epoch (model in eval mode)"}
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, c in curves.items():
        a1.plot(c["epoch"], c["conflict_rate"], marker="o", ms=3, label=name)
        a2.plot(c["epoch"], [np.nan if v is None else v for v in c["cosine_mean"]], marker="o", ms=3, label=name)
    a1.set(xlabel="epoch", ylabel="fraction of probe clips with cos < 0", title="gradient conflict rate", ylim=(-0.02, 1.02))
    a2.set(xlabel="epoch", ylabel="mean cos(grad CE, grad KD)", title="gradient cosine")
    a2.axhline(0, color="grey", lw=0.8)
    fig.legend(*a1.get_legend_handles_labels(), loc="lower center", ncol=len(curves), fontsize=8, bbox_to_anchor=(0.5, -0.08))
    _save_png(fig, out_png)
    atomic_write_json(out_json, result)
    return result
