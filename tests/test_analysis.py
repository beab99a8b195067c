"""The analyses of results/{ds}/analysis/: CKA of teachers and proxies, SPD selection."""


import numpy as np
import pytest
import torch

from uniego.analysis import cka_analysis, linear_cka, selection_analysis
from uniego.cache import ArraySpec, StoreWriter
from uniego.errors import UniegoError
from uniego.io import read_json
from uniego.manifest import manifest_sha256


def _store(path, ids, splits, labels, sha, **arrays):
    specs = {k: ArraySpec(v.shape[1:], "float32", tuple(f"d{i}" for i in range(v.ndim - 1))) for k, v in arrays.items()}
    w = StoreWriter(path, sample_ids=ids, splits=splits, labels=labels, arrays=specs,
                    attrs={"manifest_sha256": sha}, stage="test")
    w.write(0, len(ids), **arrays)
    return str(w.finalize())


def test_cka_analysis_matches_direct_cka_on_the_train_samples(tiny_data, tmp_path):
    table, sha = tiny_data["table"], manifest_sha256(tiny_data["manifest"])
    train = table.split == "train"
    rng = np.random.default_rng(0)
    base = rng.normal(size=(len(table), 6))
    teachers, proxies, raw = {}, {}, {}
    for k, name in enumerate(["a", "b", "c"]):
        t = (base @ rng.normal(size=(6, 5 + k)) + rng.normal(size=(len(table), 5 + k)) * k).astype(np.float32)
        t3 = np.stack([t - 1, t + 1], axis=1)                       # per-frame features: the mean is t
        p = (t[train.to_numpy()] @ rng.normal(size=(5 + k, 8))).astype(np.float32)
        aligned = (p @ rng.normal(size=(8, 4))).astype(np.float32)          # a student-side proj(CLS)
        teachers[name] = _store(tmp_path / f"{name}.zarr", table.sample_id, table.split, table.label, sha, features=t3)
        proxies[name] = _store(tmp_path / f"{name}.out.zarr", table.sample_id[train], table.split[train], table.label[train],
                               sha, feature=p, logits=rng.normal(size=(int(train.sum()), 9)).astype(np.float32),
                               aligned=aligned)
        raw[name] = (t[train.to_numpy()], p, aligned)
    r = cka_analysis(str(tiny_data["manifest"]), teachers, proxies, str(tmp_path / "cka.json"), str(tmp_path / "cka.png"),
                     max_samples=10_000, seed=0)
    assert r["samples"] == int(train.sum())
    assert r["teacher_cka"][0][1] == pytest.approx(linear_cka(raw["a"][0], raw["b"][0]), rel=1e-4)
    assert r["proxy_cka"][1][2] == pytest.approx(linear_cka(raw["b"][1], raw["c"][1]), rel=1e-4)
    assert r["proxy_vs_own_teacher"]["a"] == pytest.approx(linear_cka(raw["a"][0], raw["a"][1]), rel=1e-4)
    # every proxy against every teacher (issue 19: does each proxy end closest to its own teacher?)
    assert r["proxy_vs_teacher"][2][0] == pytest.approx(linear_cka(raw["c"][1], raw["a"][0]), rel=1e-4)
    assert [r["proxy_vs_teacher"][i][i] for i in range(3)] == pytest.approx([r["proxy_vs_own_teacher"][n] for n in "abc"])
    best = {p: "abc"[int(np.argmax(r["proxy_vs_teacher"][i]))] for i, p in enumerate("abc")}
    assert r["closest_teacher"] == best and r["closest_is_own"] == sum(best[p] == p for p in "abc")
    from uniego.report import cka_section
    text = "\n".join(cka_section(str(tmp_path / "cka.json"), tmp_path))
    # and in eq. 1's space (the stored `aligned` feature)
    assert r["aligned_vs_teacher"][1][0] == pytest.approx(linear_cka(raw["b"][2], raw["a"][0]), rel=1e-4)
    best_aligned = {p: "abc"[int(np.argmax(r["aligned_vs_teacher"][i]))] for i, p in enumerate("abc")}
    assert r["closest_teacher_aligned"] == best_aligned
    assert r["closest_is_own_aligned"] == sum(best_aligned[p] == p for p in "abc")
    assert (f"{r['closest_is_own']} of 3 proxies by the CLS, {r['closest_is_own_aligned']} of 3 in the space eq. 1 "
            "aligns") in text
    assert f"| a | {r['proxy_vs_own_teacher']['a']:.3f} | {best['a']} (" in text
    assert read_json(tmp_path / "cka.json", stage="analysis") == r
    assert (tmp_path / "cka.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a subset is a seeded choice of train clips
    r2 = cka_analysis(str(tiny_data["manifest"]), teachers, proxies, str(tmp_path / "c2.json"), str(tmp_path / "c2.png"),
                      max_samples=8, seed=0)
    assert r2["samples"] == 8 and 0 <= r2["mean_offdiagonal_proxies"] <= 1
    with pytest.raises(UniegoError, match="same teachers"):
        cka_analysis(str(tiny_data["manifest"]), teachers, {"a": proxies["a"]}, str(tmp_path / "x.json"),
                     str(tmp_path / "x.png"), max_samples=8, seed=0)


def test_selection_analysis_fractions(tmp_path):
    meta = {"kind": "student", "method": "uniego", "teachers": ["p", "q"], "classes": ["c0", "c1", "c2"],
            "spd": {"k": 1, "mode": "topk"}, "train": {"epochs": 2},
            "selection": {"per_proxy": {"p": 30, "q": 10}, "per_class": [[10, 0], [15, 5], [5, 5]], "samples_seen": 50}}
    ck = tmp_path / "uniego.pt"
    torch.save({"encoder": {}, "meta": meta}, ck)
    r = selection_analysis(str(ck), str(tmp_path / "s.json"), str(tmp_path / "s.png"))
    assert r["overall_fraction"] == {"p": 0.6, "q": 0.2}
    assert r["per_class_share"] == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5]]
    assert (tmp_path / "s.png").stat().st_size > 1000
    torch.save({"encoder": {}, "meta": {**meta, "method": "naive_mtd"}}, ck)
    with pytest.raises(UniegoError, match="not an SPD result"):
        selection_analysis(str(ck), str(tmp_path / "s.json"), str(tmp_path / "s.png"))


def test_gradient_conflict_on_a_toy_task():
    """cls term grad = x, kd term grad = sign * x: cos = sign; a zero kd term has no gradient."""
    from uniego.engine import gradient_conflict

    class Toy:
        model = torch.nn.Linear(3, 1, bias=False)

        def gradient_terms(self, batch):
            out = self.model(batch["x"]).sum()
            return out, batch["sign"].sum() * out

        def shared_parameters(self):
            return self.model.parameters()

    probe = {"x": torch.randn(4, 3), "sign": torch.tensor([1.0, -1.0, -2.0, 0.0]), "label": torch.zeros(4, dtype=torch.long)}
    r = gradient_conflict(Toy(), probe, torch.device("cpu"))
    assert r["grad_conflict_rate"] == pytest.approx(2 / 4)           # two of four clips conflict
    assert r["grad_cosine_mean"] == pytest.approx((1 - 1 - 1) / 3)   # over the three with both gradients
    assert r["grad_probe_distilled"] == pytest.approx(3 / 4)
    assert Toy.model.weight.grad is None                              # nothing accumulated into .grad


def test_linear_probe_reads_what_the_features_hold():
    from uniego.analysis import linear_probe

    rng = np.random.default_rng(0)
    def split(n, informative):
        y = rng.integers(0, 4, n)
        x = rng.normal(size=(n, 8))
        if informative:
            x[:, :4] += 3 * np.eye(4)[y]      # the class is linearly readable
        return x, y
    data = [a for n in (200, 60, 80) for a in split(n, True)]
    r = linear_probe(*data, 4)
    assert r["top1"] > 90 and r["val_top1"] > 90 and len(r["per_class"]) == 4 and min(r["per_class"]) > 80
    assert r["weight_decay"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    noise = [a for n in (200, 60, 400) for a in split(n, False)]
    assert abs(linear_probe(*noise, 4)["top1"] - 25) < 10    # nothing to read: chance
    assert linear_probe(*data, 4) == r                        # deterministic
    # no val split: the middle weight decay, no val score
    empty = linear_probe(data[0], data[1], data[2][:0], data[3][:0], data[4], data[5], 4)
    assert empty["weight_decay"] == 1e-2 and empty["val_top1"] is None and empty["top1"] > 90
