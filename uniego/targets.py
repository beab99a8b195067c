"""The workflow's file targets (torch-free: the Snakefile, the CLI and `uniego targets` import
it); the name lists they use are in `uniego.names`.

`uniego targets` prints what `snakemake <target>` can build for a config; the Snakefile uses
`unknown_target_message` to answer a mistyped target with the closest real ones.
"""

from __future__ import annotations

import difflib

from uniego.names import ANALYSES, BASELINES, STRATEGIES, VIEWS

# (pattern, what it is). {ds} dataset, {view} VIEWS, {teacher} teacher keys, {strategy}
# STRATEGIES, {baseline} BASELINES, {model} evaluated models, {ablation} config `ablations`.
PATTERNS = [
    ("results/{ds}/report.md", "paper-style tables and figures of one run (the configured seed)"),
    ("results/{ds}/study.md", "the same tables over the configured seed and every repeat_seeds run: mean and sd"),
    ("results/{ds}/uniego.pt", "the unified ego encoder (Level II, SPD)"),
    ("results/{ds}/data_check.json", "the data check"),
    ("results/{ds}/manifest.parquet", "one row per clip"),
    ("results/{ds}/clips/{view}.zarr", "decoded clips of one view"),
    ("results/{ds}/features/{teacher}.zarr", "one teacher's feature store"),
    ("results/{ds}/teachers/{teacher}.pt", "a task teacher trained on the train split (finetune: true teachers)"),
    ("results/{ds}/proxies/{teacher}.pt", "a Level-I proxy (eq. 1)"),
    ("results/{ds}/proxies/{teacher}.outputs.zarr", "a proxy's features and logits on the train split"),
    ("results/{ds}/merge/{strategy}.pt", "a merged initialisation (eq. 2)"),
    ("results/{ds}/baselines/{baseline}.pt", "a baseline encoder"),
    ("results/{ds}/ablations/{ablation}.pt", "an SPD ablation"),
    ("results/{ds}/eval/{model}/recognition.json", "top-1/top-5 of a model"),
    ("results/{ds}/eval/{model}/retrieval.json", "mAP/R@1 of a model"),
    ("results/{ds}/eval/{model}/segmentation.json", "temporal action segmentation (datasets with sessions)"),
    ("results/{ds}/analysis/{analysis}.json", "CKA, gradient conflict, SPD selection (with a .png)"),
    ("results/{ds}/export", "the UNIEGO encoder as a self-contained folder: safetensors, config.json, model card, ONNX"),
]
PRETRAIN_TARGETS = [(f"{arch}.pth", "a stand-in teacher trained on the corpus, in its real checkpoint format")
                    for arch in ("dinov2_test", "depth_anything_test", "siglip_test", "skego_standin_test")]
PRETRAIN_TARGETS.append(("student.pt", "the shared student start, pretrained on the corpus"))


def model_names(teachers: list[str], ablations: list[str]) -> list[str]:
    """The {model} names eval/ knows: uniego, baseline_*, proxy_*, merge_*, ablation_*."""
    return (["uniego"] + [f"baseline_{b}" for b in BASELINES] + [f"proxy_{t}" for t in teachers]
            + [f"merge_{s}" for s in STRATEGIES] + [f"ablation_{a}" for a in ablations])


def list_targets(config: dict, datasets: list[str] | None = None) -> list[tuple[str, str]]:
    """(path, what) of every file target of `datasets` (default: every dataset of the config)."""
    from uniego.config import dataset_config, dataset_names
    from uniego.datasets import has_sessions
    from uniego.teachers.registry import TEACHERS

    out = []
    for ds in datasets or dataset_names(config):
        c = dataset_config(config, ds)
        teachers = c["level1"]["teachers"]
        ablations = list(c.get("ablations", {})) if ds in config["datasets"] else []
        values = {"ds": [ds], "view": VIEWS, "strategy": STRATEGIES, "baseline": BASELINES,
                  "model": model_names(teachers, ablations), "ablation": ablations, "analysis": ANALYSES}
        for pattern, what in PATTERNS:
            if pattern.endswith("features/{teacher}.zarr"):   # every registered teacher has a store
                values["teacher"] = list(TEACHERS)
            elif pattern.startswith("results/{ds}/teachers/"):
                values["teacher"] = [t for t in TEACHERS if c["teachers"][t].get("finetune")]
            else:
                values["teacher"] = teachers
            if pattern.endswith("segmentation.json"):
                if not has_sessions(c["datasets"][ds], ds):
                    continue
                values["model"] = c["segmentation"]["models"]
            else:
                values["model"] = model_names(teachers, ablations)
            out += [(p, what) for p in _expand(pattern, values)]
    for name in (config.get("pretrain") or {}) if datasets is None else ():   # shared by datasets and seeds
        out.append((f"data/corpus_{name}", "the pretraining corpus (uniego demo-corpus)"))
        out += [(f"results/pretrain/{name}/{t}", what) for t, what in PRETRAIN_TARGETS]
    return out


def _expand(pattern: str, values: dict) -> list[str]:
    paths = [pattern]
    for key, options in values.items():
        if "{" + key + "}" in pattern:
            paths = [p.replace("{" + key + "}", v) for p in paths for v in options]
    return paths


def unknown_target_message(target: str, config: dict) -> str:
    """What to say when no rule makes `target`: the closest real targets and where the list is."""
    known = [p for p, _ in list_targets(config)]
    close = difflib.get_close_matches(target, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return (f"uniego: no rule makes {target!r}.{hint} `uniego targets` lists every file target "
            "(`uniego targets --dataset DS` for one dataset).")
