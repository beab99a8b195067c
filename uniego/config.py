"""config.yaml: safe loading, schema validation with key paths, per-dataset views, and the
frozen per-stage settings each stage receives (no module reads a global config)."""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import yaml

from uniego.errors import UniegoError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def load_yaml(path: str | Path) -> dict:
    """Parse a YAML file with the safe loader; a missing or malformed file is a UniegoError."""
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise UniegoError(f"config file {path} does not exist", stage="config") from None
    except yaml.YAMLError as e:
        raise UniegoError(f"config file {path} is not valid YAML: {e}", stage="config") from None
    if not isinstance(data, dict):
        raise UniegoError(f"config file {path} must hold a mapping at top level", stage="config")
    return data


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Check `config` against the JSON schema; every violation is reported with its key path.

    Also checks the cross-references the schema cannot express (dataset -> preset, arch names).
    Returns the config unchanged so it can be chained.
    """
    import jsonschema

    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            for key in extra:
                where = ".".join([*map(str, err.absolute_path), key])
                problems.append(f"{where}: unknown key (allowed: {', '.join(sorted(err.schema.get('properties', {}))) or 'see the schema'})")
            if extra:
                continue
        problems.append(f"{_key_path(err)}: {err.message}")
    if not problems:
        problems.extend(_cross_checks(config))
    if problems:
        raise UniegoError("invalid config:\n  " + "\n  ".join(problems) + f"\n(schema: {schema_path})", stage="config")
    return config


def coerce_command_line_values(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Type nested `snakemake --config` values in place, e.g. `--config spd='{k: 2}'`.

    Snakemake reads a nested --config value with YAML's BaseLoader, so every number and
    boolean inside it arrives as a string ('2'). Where the schema refuses such a string but
    accepts what YAML reads from it (2), the value is replaced; anything else is left for
    `validate_config` to report. Returns the config so it can be chained.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_yaml(schema_path))
    for _ in range(1000):   # one value per pass: fixing one can reveal errors below it
        for err in validator.iter_errors(config):
            if not (isinstance(err.instance, str) and err.absolute_path):
                continue
            try:
                value = yaml.safe_load(err.instance)
                fits = not isinstance(value, str) and validator.evolve(schema=err.schema).is_valid(value)
            except (yaml.YAMLError, jsonschema.exceptions.RefResolutionError, LookupError):
                continue
            if fits:
                *parents, last = err.absolute_path
                node = config
                for key in parents:
                    node = node[key]
                node[last] = value
                break
        else:
            return config
    return config


def _cross_checks(config: dict) -> list[str]:
    from uniego.teachers.registry import ARCHS, TEACHERS

    problems, per_dataset = [], {}
    if config["dataset"] not in config["datasets"]:
        problems.append(f"dataset: {config['dataset']!r} is not a key of datasets ({', '.join(config['datasets'])})")
    for name, ds in config["datasets"].items():
        seeds = ds.get("repeat_seeds", [])
        if config["seed"] in seeds or len(set(seeds)) != len(seeds):
            problems.append(f"datasets.{name}.repeat_seeds: {seeds} must be distinct and differ from seed ({config['seed']})")
        if ds["adapter"] != "demo":
            from uniego.datasets import adapter_options
            try:
                adapter_options(ds, name)
            except UniegoError as e:
                problems.append(str(e).replace("[config] ", ""))
        if ds["adapter"] == "demo" and ds.get("preset", "demo") not in config["demo_presets"]:
            problems.append(f"datasets.{name}.preset: {ds.get('preset')!r} is not a key of demo_presets ({', '.join(config['demo_presets'])})")
        teachers = _merge(config["teachers"], ds.get("overrides", {}).get("teachers", {}))
        for key, t in teachers.items():
            where = f"datasets.{name}.overrides.teachers.{key}" if key in ds.get("overrides", {}).get("teachers", {}) else f"teachers.{key}"
            arch = ARCHS.get(t.get("arch"))
            if arch is None:
                known = sorted(a for a, s in ARCHS.items() if s.family == TEACHERS[key].family)
                problems.append(f"{where}.arch: unknown architecture {t.get('arch')!r}; known for {key}: {', '.join(known)}")
            elif arch.family != TEACHERS[key].family:
                problems.append(f"{where}.arch: {t['arch']!r} is a {arch.family} architecture but teacher {key} needs {TEACHERS[key].family}")
            elif t.get("finetune") and arch.family not in ("timesformer", "stgcn"):
                problems.append(f"{where}.finetune: only the task teachers (TimeSformer, ST-GCN) are trained on the task; "
                                f"{key} is a frozen {arch.family} model")
            elif t.get("finetune") and str(t.get("weights", "")).startswith("import:"):
                problems.append(f"{where}: weights import:<folder> brings finished features; set finetune: false")
            elif t.get("patch_size") is not None and arch.family != "timesformer":
                problems.append(f"{where}.patch_size: only TimeSformer teachers take a patch size")
            elif t.get("frames_from") == "video" and not arch.per_frame:
                problems.append(f"{where}.frames_from: video is for the image teachers; {key} ({arch.name}) reads the clip "
                                "cache it is trained on (remove the key)")
            elif (m := pretrained_output(str(t.get("weights", "")))) is not None:
                problems.extend(_check_pretrained(config, m, f"{where}.weights", arch=t["arch"]))
        student = _merge(config["student"], ds.get("overrides", {}).get("student", {}))
        if (m := pretrained_output(str(student.get("init", "")))) is not None:
            clips = _merge(config["clips"], ds.get("overrides", {}).get("clips", {}))
            problems.extend(_check_pretrained(config, m, f"datasets.{name}: student.init", student=student,
                                              num_frames=clips["num_frames"]))
        for problem in _section_checks(apply_fidelity(_merge(config, ds.get("overrides", {})))):
            per_dataset.setdefault(problem, []).append(name)
    problems += [f"{problem} (dataset{'s' if len(names) > 1 else ''} {', '.join(names)}, overrides included)"
                 for problem, names in per_dataset.items()]
    return problems


def _section_checks(c: dict) -> list[str]:
    """Cross-field checks of one dataset's settings (top-level sections with its overrides), so
    that a setting that cannot work fails when the DAG is built, not at epoch 2 or the merge."""
    from uniego.names import BASELINES

    problems = []
    for section in ("train", "segmentation"):
        t = c.get(section) or {}
        if "lr_steps" not in t:
            continue
        if len(t["lr_steps"]) != len(t.get("lr_factors", [])):
            problems.append(f"{section}.lr_steps {t['lr_steps']} and {section}.lr_factors {t.get('lr_factors')} must "
                            "have the same length: one factor per step")
        elif t["lr_steps"][:1] != [0] or any(b <= a for a, b in zip(t["lr_steps"], t["lr_steps"][1:])):
            problems.append(f"{section}.lr_steps {t['lr_steps']} must start at 0 and increase")
    clips = c.get("clips") or {}
    if clips.get("pool") is not None:
        P, T = clips["pool"], clips["num_frames"]
        if clips["sampling"] == "uniform" and P % T:
            problems.append(f"clips.pool {P} must be a multiple of clips.num_frames {T} with uniform sampling: the training "
                            "clip takes every (pool / num_frames)-th pool frame from a random first one")
        if clips["sampling"] == "stride" and (P < T or (P - T) % 2):
            problems.append(f"clips.pool {P} must be clips.num_frames {T} plus an even number with stride sampling: the "
                            "pool's centred window is the test clip")
    lo, hi = c["student"]["train_jitter"]
    if lo > hi:
        problems.append(f"student.train_jitter {[lo, hi]}: the short side's range must be [low, high]")
    elif lo < c["student"]["input_size"]:
        problems.append(f"student.train_jitter {[lo, hi]}: the short side must be at least the crop, "
                        f"student.input_size {c['student']['input_size']}")
    proxies = c["level1"]["teachers"]
    if not proxies:
        problems.append("level1.teachers is empty: Level I needs at least one teacher to train a proxy for")
    if proxies and (k_problem := spd_k_problem(c["spd"], proxies)):
        problems.append(f"spd: {k_problem}")
    for name, spd in [("spd", c["spd"])] + [(f"ablations.{a}", {**c["spd"], **o}) for a, o in (c.get("ablations") or {}).items()]:
        m = spd.get("micro_batch")
        if m is None:
            continue
        if spd["normalize"] != "official":
            problems.append(f"{name}.micro_batch {m} normalises per micro-batch: it needs spd.normalize: official")
        batch, probe = c["train"]["batch_size"], (c.get("analysis") or {}).get("probe_samples", 0)
        if batch % m or (probe and probe % m):
            problems.append(f"{name}.micro_batch {m} must divide train.batch_size ({batch}) and analysis.probe_samples "
                            f"({probe}): every batch is whole micro-batches")
    known = ["uniego"] + [f"baseline_{b}" for b in BASELINES] + [f"ablation_{a}" for a in c.get("ablations") or {}]
    for m in (c.get("analysis") or {}).get("conflict_models", []):
        if m not in known:
            problems.append(f"analysis.conflict_models: {m!r} is not a model with a gradient-conflict probe; "
                            f"known: {', '.join(known)}")
    return problems


def pretrained_output(path: str) -> tuple[str, str] | None:
    """(name, target) if `path` is an output of the pretrain stage:
    results/pretrain/{name}/{arch}.pth (a stand-in teacher) or results/pretrain/{name}/student.pt."""
    parts = path.split("/")
    if len(parts) != 4 or parts[:2] != ["results", "pretrain"]:
        return None
    stem, _, ext = parts[3].rpartition(".")
    if (stem == "student") != (ext == "pt") or ext not in ("pt", "pth"):
        return None
    return parts[2], stem


def _check_pretrained(config: dict, m: tuple[str, str], where: str, *, arch: str | None = None,
                      student: dict | None = None, num_frames: int | None = None) -> list[str]:
    """A pretrain output used as weights or init must name a pretrain entry, and fit what uses it."""
    name, target = m
    entries = config.get("pretrain") or {}
    if name not in entries:
        return [f"{where}: results/pretrain/{name}/ needs an entry pretrain.{name} (config.pretrain has: "
                f"{', '.join(entries) or 'none'})"]
    if arch is not None and target != arch:
        return [f"{where}: results/pretrain/{name}/{target}.pth is a {target} checkpoint, the teacher's arch is {arch}"]
    if student is not None:
        p = entries[name]["student"]
        diff = [f"{k} {student.get(k)} vs {p.get(k)}" for k in ("arch", "input_size", "patch_size") if student.get(k) != p.get(k)]
        if num_frames != p["num_frames"]:
            diff.append(f"clips.num_frames {num_frames} vs num_frames {p['num_frames']}")
        if diff:
            return [f"{where}: the student start results/pretrain/{name}/student.pt is trained with other settings than "
                    f"this student ({'; '.join(diff)}): make pretrain.{name}.student agree"]
    return []


def merge_overlay(base: dict, over: dict) -> dict:
    """`over` merged into a copy of `base` key by key (how `snakemake --configfile` merges overlays)."""
    return _merge(base, over)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


# What `fidelity: official` changes: the official code's values where it departs from the paper
# (reference/official_uniego.md §9). Applied after the per-dataset overrides.
OFFICIAL = {
    ("level1", "lambda_feat"): 1.0,        # LOSS_WEIGHT in every released stage-1 config
    ("level1", "projection"): "student",   # Linear(768 -> D_teacher) on the student CLS
    ("merge", "lr"): 0.01,                 # the paper's 0.02 / 0.01 are commented out
    ("merge", "weight_decay"): 0.0,
    ("merge", "starts"): ["uniform"],      # zero-initialised logits only
    ("spd", "student_ce_filter"): True,    # proxy CE must be below the student's current CE
    ("spd", "ce_cap"): 4.0,                # DIST_THRESHOLD
    ("spd", "normalize"): "official",      # / #samples with a selected proxy, per micro-batch
    ("spd", "micro_batch"): 2,             # the per-GPU batch: TRAIN.BATCH_SIZE 8 over NUM_GPUS 4
    ("spd", "feature_projection"): True,   # proj_768x768(CLS), freshly initialised
}
OFFICIAL_EFFECTIVE_BATCH = 64             # GLOBAL_BATCH_SIZE: gradients accumulated to 64 clips


def apply_fidelity(c: dict) -> dict:
    if c.get("fidelity") != "official":
        return c
    c = copy.deepcopy(c)
    for (section, key), value in OFFICIAL.items():
        if section in c:
            c[section][key] = value
    if "train" in c:
        c["train"]["accumulate"] = max(1, OFFICIAL_EFFECTIVE_BATCH // c["train"]["batch_size"])
    return c


def repeat_name(ds: str, seed: int) -> str:
    """The dataset name of seed `seed`'s repeat of `ds` (results/{ds}_seed{N}/...)."""
    return f"{ds}_seed{seed}"


def dataset_names(config: dict) -> list[str]:
    """Every dataset the DAG knows: config.datasets and their `repeat_seeds` repeats."""
    return [n for ds, d in config["datasets"].items() for n in [ds] + [repeat_name(ds, s) for s in d.get("repeat_seeds", [])]]


def seed_runs(config: dict, ds: str) -> list[tuple[int, str]]:
    """[(seed, dataset name)] of `ds` and its repeats, the configured seed first."""
    if ds not in config["datasets"]:  # a repeat itself
        return [(dataset_config(config, ds)["seed"], ds)]
    return [(config["seed"], ds)] + [(s, repeat_name(ds, s)) for s in config["datasets"][ds].get("repeat_seeds", [])]


def dataset_config(config: dict, ds: str) -> dict:
    """The config as dataset `ds` sees it: top-level sections overlaid by its `overrides`,
    then the fidelity table applied. A repeat `{base}_seed{N}` (N in the base's
    `repeat_seeds`) is the base with seed N and its own data root `{root}_seed{N}`: an
    independent rerun of the whole pipeline (data generation, random teacher weights,
    training order and initialisation)."""
    if ds not in config["datasets"]:
        for base, d in config["datasets"].items():
            for seed in d.get("repeat_seeds", []):
                if ds == repeat_name(base, seed):
                    entry = {**{k: v for k, v in d.items() if k != "repeat_seeds"}, "root": f"{d['root']}_seed{seed}"}
                    return dataset_config({**config, "seed": seed, "datasets": {**config["datasets"], ds: entry}}, ds)
        raise UniegoError(f"unknown dataset {ds!r}; config.datasets has: {', '.join(dataset_names(config))}", stage="config")
    return apply_fidelity(_merge(config, config["datasets"][ds].get("overrides", {})))


# ---------------------------------------------------------------- per-stage frozen settings
# The `clips` keys each clip-cache view depends on (so a skeleton setting reruns only the skeleton cache)
VIEW_KEYS = {"ego": ("num_frames", "size", "width", "sampling", "stride", "pool"), "exo": ("num_frames", "size", "width", "sampling", "stride"),
             "skeleton": ("skeleton_frames", "skeleton_clips", "skeleton_sampling")}


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """The `clips` section. A view's rule passes only the keys that view uses (RGB views:
    num_frames, size, sampling, stride; skeleton: skeleton_frames); the rest stay None."""
    num_frames: int | None = None
    size: int | None = None
    width: int | None = None   # cached frame width (RGB views); None: `size`, the centre square
    pool: int | None = None    # ego view: frames kept for the students' random training clips; None: the fixed clip
    sampling: str | None = None
    stride: int | None = None
    skeleton_frames: int | None = None
    skeleton_clips: int | None = None      # clips per sample (pyskl's test num_clips)
    skeleton_sampling: str | None = None   # uniform | pyskl

    def used(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class TeacherSettings:
    key: str
    arch: str
    weights: str
    pooling: str | None = None
    input_size: int | None = None
    finetune: bool = False       # train on the task's train split before extraction (exo_rgb, exo_skl)
    patch_size: int | None = None  # TimeSformer teachers only; None: the architecture's own
    frames_from: str | None = None  # image teachers: `video` (decoded from the source video at its own resolution) or
                                 #   `cache` (the clip cache's resized frames); None: video. Video / skeleton teachers: cache


@dataclasses.dataclass(frozen=True)
class ComputeSettings:
    device: str = "auto"
    precision: str = "auto"
    workers: int = 2
    batch_size: int = 8


@dataclasses.dataclass(frozen=True)
class StudentSettings:
    arch: str
    init: str
    input_size: int
    train_jitter: tuple[int, int]
    patch_size: int | None = None  # None: the architecture's own (16)
    drop_path_rate: float | None = None  # None: the architecture's own (TimeSformer 0.1, the official value)


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    epochs: int
    lr: float
    lr_steps: tuple[int, ...]
    lr_factors: tuple[float, ...]
    momentum: float
    nesterov: bool
    weight_decay: float
    batch_size: int
    accumulate: int = 1
    optimizer: str = "sgd"   # sgd (the paper, momentum + Nesterov) | adamw (from-scratch tiny students)

    def lr_at(self, epoch: int) -> float:
        """Step schedule: lr * lr_factors[i] from epoch lr_steps[i] on."""
        i = max(j for j, start in enumerate(self.lr_steps) if start <= epoch) if epoch >= self.lr_steps[0] else 0
        return self.lr * self.lr_factors[i]


@dataclasses.dataclass(frozen=True)
class Level1Settings:
    lambda_feat: float
    lambda_cls: float
    projection: str


@dataclasses.dataclass(frozen=True)
class MergeSettings:
    """Eq. 2's optimisation (config `merge`)."""
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    starts: tuple[str, ...] = ("uniform",)   # uniform | best_proxy; the start that ends lowest is kept
    best_start_alpha: float = 0.9


@dataclasses.dataclass(frozen=True)
class SPDSettings:
    """Selective Proxy Distillation, eq. 4-6 (config `spd`, or an ablation's overlay of it)."""
    init: str                 # the merge strategy SPD starts from
    k: int
    mode: str                 # topk | all | ego_exo
    beta_feat: float
    beta_logit: float
    beta_cls: float
    tau: float
    student_ce_filter: bool
    ce_cap: float | None
    normalize: str            # paper | official
    micro_batch: int | None   # official: normalise per micro-batch of this many clips (null: per batch)
    feature_projection: bool


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Test views (config `eval`): spatial crops x temporal clips, logits summed."""
    spatial_crops: int
    temporal_clips: int = 1


@dataclasses.dataclass(frozen=True)
class SegmentationSettings:
    """The temporal model on dense features (config `segmentation`, paper Table 4): MS-TCN
    trained with CE plus the truncated smoothing MSE. The section's other keys are not the
    segment stage's: `models` (which encoders) is the DAG's, `stride` and `frame_step` are the
    window cache's (stage session_clips)."""
    background: tuple[str, ...]
    stages: int
    layers: int
    channels: int
    dropout: float
    smooth_weight: float
    smooth_tau: float
    lr: float
    epochs: int


@dataclasses.dataclass(frozen=True)
class DemoPreset:
    clips_per_class: int
    size: int
    fps: int
    seconds: float
    sessions: int
    actions_per_session: int
    participants: int = 0    # 0: every clip its own actor and room; N: N recurring actors/rooms


def from_dict(cls, data: dict, *, where: str):
    """Build a frozen settings dataclass, rejecting unknown or missing keys with their path."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UniegoError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}", stage="config")
    try:
        return cls(**data)
    except TypeError as e:
        raise UniegoError(f"{where}: {e}", stage="config") from None


def module_files(name: str, root: Path, *, whole: bool = False) -> list[Path]:
    """The source file of uniego module `name`; for a package its `__init__.py`, or with
    `whole` all of its files."""
    head, *parts = name.split(".")
    path = root.joinpath(*parts)
    if head != "uniego":
        return []
    if path.is_dir():
        return sorted(path.rglob("*.py")) if whole else [path / "__init__.py"]
    return [path.with_suffix(".py")] if path.with_suffix(".py").is_file() else []


@functools.lru_cache(maxsize=None)   # every rule's code version walks the same files at each DAG build
def module_imports(file: Path, root: Path) -> frozenset[str]:
    """The uniego modules a source file under `root` (the uniego package folder) imports, at the
    top or inside functions."""
    import ast

    names = set()
    package = ".".join(("uniego", *file.relative_to(root).with_suffix("").parts))
    if file.name == "__init__.py":
        package = package.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + (file.name == "__init__.py")]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:   # `from uniego.pkg import x`: module x, or a name defined in uniego.pkg
                names.add(f"{base}.{a.name}" if module_files(f"{base}.{a.name}", root, whole=False) else base)
    return frozenset(n for n in names if n.split(".")[0] == "uniego")


def code_files(*modules: str) -> list[Path]:
    """The source files of `modules` and of every uniego module they import, transitively."""
    root = Path(__file__).resolve().parent
    seen, todo = set(), []
    for name in modules:
        files = module_files(name, root, whole=True)
        if not files:
            raise ValueError(f"code_version: {name!r} is not a uniego module or package")
        todo += files
    while todo:
        f = todo.pop()
        if f not in seen:
            seen.add(f)
            todo.extend(g for m in module_imports(f, root) for g in module_files(m, root, whole=False))
    return sorted(seen)


def code_version(*modules: str) -> str:
    """sha256 (12 hex) of the source files of the given uniego modules or packages and of
    every uniego module they import (followed through the source, lazy imports included).

    Rules pass it through `params:` so that editing the code a rule runs reruns that rule
    (Snakemake's own code trigger only sees the shell line). Files are found without importing
    the modules (importing them would load torch each time Snakemake builds the DAG).
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in code_files(*modules):
        h.update(str(f.relative_to(root.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def canonical_json(obj) -> str:
    """Stable JSON text of a config sub-tree (what rules pass on the command line)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------- what each stage receives
def spd_k_problem(spd: dict, proxies: list[str]) -> str | None:
    """Why `spd.k` cannot select k proxies per sample from `proxies`, or None. (A k above the
    proxies would silently act as `mode: all`; we refuse it rather than clamp it.)"""
    if spd.get("mode") == "all":
        return None
    views = {v: [t for t in proxies if t.startswith(v + "_")] for v in ("ego", "exo")}
    limit = min(len(v) for v in views.values()) if spd.get("mode") == "ego_exo" else len(proxies)
    if spd["k"] <= limit:
        return None
    per = "proxies of each view" if spd.get("mode") == "ego_exo" else "proxies"
    return f"k = {spd['k']} is more than the {limit} {per} of level1.teachers ({', '.join(proxies)})"


def ablation_spd(c: dict, name: str) -> dict:
    """The `spd` section with ablation `name`'s overlay applied; checked against the proxies
    when the ablation is asked for (the study), not when the config is read."""
    from uniego.errors import UniegoError

    if name not in c.get("ablations", {}):
        raise UniegoError(f"ablation {name!r} is not in the config's `ablations` ({', '.join(c.get('ablations', {})) or 'none'})")
    spd = {**c["spd"], **c["ablations"][name]}
    if c["level1"]["teachers"] and (problem := spd_k_problem(spd, c["level1"]["teachers"])):
        raise UniegoError(f"ablations.{name}: {problem}: drop the ablation or list more teachers", stage="config")
    return spd


def stage_settings(config: dict, ds: str, stage: str, *, view: str | None = None, teacher: str | None = None,
                   ablation: str | None = None, pretrain: str | None = None) -> dict:
    """The config sub-tree that affects `stage`'s result for dataset `ds` (rules pass it through
    `params:`, so editing it reruns exactly the jobs that depend on it)."""
    if stage in ("demo_corpus", "pretrain"):   # dataset-independent: config.pretrain.{name}
        entries = config.get("pretrain") or {}
        if pretrain not in entries:
            raise UniegoError(f"pretrain.{pretrain}: no such entry (config.pretrain has: {', '.join(entries) or 'none'})",
                              stage="config")
        p = entries[pretrain]
        return ({"name": pretrain, "seed": p["seed"], "corpus": p["corpus"]} if stage == "demo_corpus"
                else {"name": pretrain, **p})
    c = dataset_config(config, ds)
    d = c["datasets"][ds]
    if stage == "demo_data":
        return {"preset": c["demo_presets"][d.get("preset", "demo")], "seed": c["seed"]}
    if stage in ("manifest", "check_data"):
        out = {"adapter": d["adapter"], "root": d["root"], "dataset": ds, **({"options": d["options"]} if d.get("options") else {}),
               **({"paths_outside_root": True} if d.get("paths_outside_root") else {})}
        if stage == "check_data":
            from uniego.teachers.registry import TEACHERS
            out["skeletons"] = any("skeleton" in TEACHERS[t].inputs for t in c["level1"]["teachers"])
            out["num_frames"] = c["clips"]["num_frames"]   # a clip shorter than this would repeat frames
        return out
    if stage == "clips":
        return {k: c["clips"][k] for k in VIEW_KEYS[view]}
    if stage == "extract":
        return {"teacher": {"key": teacher, **c["teachers"][teacher]}, "seed": c["seed"]}
    if stage == "train_teacher":
        return {"teacher": {"key": teacher, **c["teachers"][teacher]}, "seed": c["seed"], "train": c["train"],
                "train_jitter": c["student"]["train_jitter"], "input_size": c["student"]["input_size"]}
    # the student stages also get the ego clip settings: their readers refuse a clip cache built otherwise
    ego = {k: c["clips"][k] for k in VIEW_KEYS["ego"]}
    if stage == "train_proxy":
        lv = {k: v for k, v in c["level1"].items() if k != "teachers"}
        return {"student": c["student"], "train": c["train"], "level1": lv, "seed": c["seed"], "teacher": teacher, "clips": ego}
    if stage == "proxy_outputs":
        return {"student": c["student"], "clips": ego}
    if stage == "merge":
        return {"student": c["student"], "merge": c["merge"], "teachers": c["level1"]["teachers"], "seed": c["seed"], "clips": ego}
    if stage == "spd":
        out = {"student": c["student"], "train": c["train"], "spd": c["spd"], "teachers": c["level1"]["teachers"],
               "seed": c["seed"], "probe_samples": c["analysis"]["probe_samples"], "clips": ego}
        if ablation is not None:
            out.update(spd=ablation_spd(c, ablation), ablation=ablation)
        return out
    if stage == "baseline":
        return {"student": c["student"], "train": c["train"], "level1": c["level1"], "seed": c["seed"],
                "probe_samples": c["analysis"]["probe_samples"], "clips": ego}
    if stage == "evaluate":
        return {"student": c["student"], "eval": c["eval"], "clips": ego}
    if stage == "session_clips":
        seg = c["segmentation"]
        return {"num_frames": c["clips"]["num_frames"], "size": c["clips"]["size"], "stride": seg["stride"],
                "frame_step": seg["frame_step"]}
    if stage == "cka":
        return {"analysis": {"cka_samples": c["analysis"]["cka_samples"]}, "seed": c["seed"]}
    if stage == "segment":
        keep = ("background", "stages", "layers", "channels", "dropout", "smooth_weight", "smooth_tau", "lr", "epochs")
        return {"segmentation": {k: c["segmentation"][k] for k in keep}, "seed": c["seed"]}
    raise ValueError(f"unknown stage {stage!r}")


def full_clip_settings(config: dict, ds: str) -> ClipSettings:
    return from_dict(ClipSettings, dataset_config(config, ds)["clips"], where="clips")


def parse_student(d: dict) -> StudentSettings:
    return from_dict(StudentSettings, {**d, "train_jitter": tuple(d["train_jitter"])}, where="student")


def parse_merge(d: dict) -> MergeSettings:
    return from_dict(MergeSettings, {**d, "starts": tuple(d.get("starts", ("uniform",)))}, where="merge")


def parse_spd(d: dict) -> SPDSettings:
    return from_dict(SPDSettings, d, where="spd")


def parse_eval(d: dict) -> EvalSettings:
    return from_dict(EvalSettings, d, where="eval")


def parse_segmentation(d: dict) -> SegmentationSettings:
    return from_dict(SegmentationSettings, {**d, "background": tuple(d["background"])}, where="segmentation")


def parse_train(d: dict) -> TrainSettings:
    return from_dict(TrainSettings, {**d, "lr_steps": tuple(d["lr_steps"]), "lr_factors": tuple(d["lr_factors"])}, where="train")
