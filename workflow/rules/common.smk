# Helpers shared by the rules: config validation at DAG-build time, per-rule settings
# (the result-affecting config sub-tree, passed through params so edits rerun exactly the
# dependent jobs), code versions, input functions and target lists.
import shlex
from pathlib import Path
import sys

from uniego.config import (
    canonical_json,
    code_version,
    coerce_command_line_values,
    dataset_config,
    dataset_names,
    seed_runs,
    stage_settings,
    validate_config,
)
from uniego.errors import UniegoError
from uniego.names import BASELINES, STRATEGIES, VIEWS
from uniego.targets import unknown_target_message
from uniego.teachers.registry import TEACHERS, get_teacher

try:
    validate_config(coerce_command_line_values(config))  # --config spd='{k: 2}': '2' -> 2
except UniegoError as _e:
    sys.exit(f"uniego: {_e}")


wildcard_constraints:
    ds="|".join(dataset_names(config)),
    teacher="|".join(TEACHERS),
    view="|".join(VIEWS),
    strategy="|".join(STRATEGIES),
    baseline="|".join(BASELINES),
    model="uniego|(baseline|proxy|merge|ablation)_[a-z0-9_]+",
    ablation="[a-z0-9_]+",
    name="[a-z0-9_]+",
    doc="report|study",
    target="(dinov2_test|depth_anything_test|siglip_test|skego_standin_test)\\.pth|student\\.pt",


def settings(stage, **kw):
    """params function: the stage's settings as canonical JSON."""
    return lambda wc: canonical_json(stage_settings(config, wc.ds, stage, **{k: getattr(wc, v) for k, v in kw.items()}))


def pretrain_setting(stage):
    """params function of the pretraining jobs (no {ds}: the configured dataset, corpus {name})."""
    return lambda wc: canonical_json(stage_settings(config, config["dataset"], stage, pretrain=wc.name))


def pretrain_threads(wc):
    return dataset_config(config, config["dataset"])["compute"]["threads"]


# Each rule's code version: the sha256 of the module that runs it and of every uniego module it
# imports, followed through the source (uniego.config.code_files), so editing any of them reruns it.
CODE = {
    "demo_corpus": code_version("uniego.demo"),
    "pretrain": code_version("uniego.stages.pretrain"),
    "demo_data": code_version("uniego.demo"),
    "manifest": code_version("uniego.manifest", "uniego.datasets"),
    "check_data": code_version("uniego.stages.data.check_data"),
    "clips": code_version("uniego.stages.data.clips"),
    "extract": code_version("uniego.stages.teachers.extract", "uniego.stages.teachers.import_features", "uniego.teachers", "uniego.models"),
    "level2": code_version("uniego.stages.level2"),
    "report": code_version("uniego.report"),
    "analysis": code_version("uniego.analysis", "uniego.stages.analysis"),
    "sessions": code_version("uniego.sessions"),
    "segmentation": code_version("uniego.stages.segmentation.segment"),
    "task_teacher": code_version("uniego.stages.teachers.task_teacher"),
    "evaluate": code_version("uniego.stages.evaluate.recognition"),
    "level1": code_version("uniego.stages.level1"),
    "export": code_version("uniego.stages.export.export"),
}


def compute_setting(key):
    """resources/threads function: a `compute` value (throughput only; never triggers a rerun)."""
    return lambda wc: dataset_config(config, wc.ds)["compute"][key]


def loader_workers(wc, threads):
    """resources function: DataLoader workers of a job (compute.workers; `auto`: the job's threads)."""
    w = dataset_config(config, wc.ds)["compute"]["workers"]
    return threads if w == "auto" else w


def gpus_per_job(wc):
    """resources function: GPUs (and torchrun processes) of one training job."""
    return dataset_config(config, wc.ds)["compute"].get("gpus_per_job", 1)


def gpu_ids(wc):
    value = dataset_config(config, wc.ds)["compute"].get("gpu_ids", "auto")
    return ",".join(map(str, value)) if isinstance(value, list) else "auto"


def gpu_lock_dir(wc):
    return dataset_config(config, wc.ds)["compute"].get("gpu_lock_dir", "auto")


# A GPU job: `resources: **gpu_resources(...)` and `shell: gpu_shell(...)`, with the same flags.
# Its command runs through `uniego gpu-slots`, which gives the job its own device(s)
# (CUDA_VISIBLE_DEVICES) from compute.gpu_ids, or stands aside under SLURM.
GPU_SLOTS = "uniego gpu-slots --gpus {resources.gpu} --ids {resources.gpu_ids} --lock-dir {resources.gpu_lock_dir:q} --"


def gpu_resources(gpus=1, *, workers=True, batch_size=True, precision=True):
    """The resources of a GPU job: its GPUs (1, or gpus_per_job for the training jobs), what
    `uniego gpu-slots` reads, and the compute settings its command takes. Machine settings
    only: none of them reruns a job."""
    res = {"workers": loader_workers} if workers else {}
    res.update(gpu=gpus, gpu_ids=gpu_ids, gpu_lock_dir=gpu_lock_dir)
    if batch_size:
        res["batch_size"] = compute_setting("batch_size")
    res["device"] = compute_setting("device")
    if precision:
        res["precision"] = compute_setting("precision")
    return res


def gpu_shell(command, *, workers=True, batch_size=True, procs=False, precision=True):
    """The shell command of a GPU job: `command` through `uniego gpu-slots`, then the options
    from gpu_resources (procs: one torchrun process per GPU), the code version and the log (on
    failure its last lines, the uniego error, also go to the terminal)."""
    options = {
        "--workers {resources.workers}": workers,
        "--batch-size {resources.batch_size}": batch_size,
        "--procs {resources.gpu}": procs,
        "--device {resources.device}": True,
        "--precision {resources.precision}": precision,
        "--code-version {params.code:q} > {log:q} 2>&1 || (s=$?; tail -n 3 {log:q} >&2; exit $s)": True,
    }
    return " ".join([GPU_SLOTS, command, *(o for o, on in options.items() if on)])


def dataset_root(wc):
    return dataset_config(config, wc.ds)["datasets"][wc.ds]["root"]


def annotation_inputs(ds):
    """The annotation files the dataset's adapter reads (the demo: its generated folder). A
    missing file fails here, when the DAG is built, naming datasets.<ds>.root and the layout."""
    from uniego.datasets import adapter, annotation_files

    spec = dataset_config(config, ds)["datasets"][ds]
    if getattr(adapter(spec["adapter"]), "GENERATED", False):
        return [spec["root"]]
    try:
        return annotation_files(spec, ds)
    except UniegoError as e:
        sys.exit(f"uniego: {e}")


def body_pose_output(ds):
    """Ego-Exo4D with options.body_pose: the keypoint folder the body_pose rule writes, or None."""
    from uniego.datasets import skeleton_source

    spec = dataset_config(config, ds)["datasets"][ds]
    if spec["adapter"] != "ee4d" or not (spec.get("options") or {}).get("body_pose"):
        return None
    try:
        return skeleton_source(spec, ds)
    except UniegoError as e:
        sys.exit(f"uniego: datasets.{ds}: {e}")


def dataset_inputs(wc):
    """What the data check and the manifest read: the annotation files, and the keypoint
    folder when the body_pose rule writes it."""
    generated = body_pose_output(wc.ds)
    return annotation_inputs(wc.ds) + ([generated] if generated else [])


def data_signature(wc):
    """The content of every file of the dataset (uniego.datasets.input_signature; each file read
    again only when its size, mtime, ctime or inode changes, the hashes kept in
    results/{ds}/.input-hashes.json): a video replaced in place reruns the data check and
    everything built after it."""
    from uniego.datasets import input_signature

    return input_signature(dataset_config(config, wc.ds)["datasets"][wc.ds], wc.ds, cache=f"results/{wc.ds}/.input-hashes.json")


def clip_view_inputs(wc):
    """The manifest; for the skeleton view, first check the dataset has a body-pose source."""
    if wc.view == "skeleton":
        from uniego.datasets import skeleton_source

        spec = dataset_config(config, wc.ds)["datasets"][wc.ds]
        if skeleton_source(spec, wc.ds) is None:
            sys.exit(
                f"uniego: results/{wc.ds}/clips/skeleton.zarr needs exo body keypoints, and dataset {wc.ds} "
                f"({spec['adapter']}) has none: set datasets.{wc.ds}.options.skeletons to a folder of "
                '<sample_id>.npz files (docs/datasets.md, "Skeletons"), or drop exo_skl and exo_skego from level1.teachers'
            )
    return f"results/{wc.ds}/manifest.parquet"


def imported(ds, teacher):
    """`weights: import:<folder>`: the teacher's features come from official-layout .npy files."""
    return dataset_config(config, ds)["teachers"][teacher]["weights"].startswith("import:")


def clip_inputs(wc):
    if imported(wc.ds, wc.teacher):
        return {}
    return {v: f"results/{wc.ds}/clips/{v}.zarr" for v in get_teacher(wc.teacher).inputs}


def clip_args(wc, input):
    if imported(wc.ds, wc.teacher):
        return "none"
    return " ".join(shlex.quote(f"{v}={input[v]}") for v in get_teacher(wc.teacher).inputs)


def finetuned(ds, teacher):
    return bool(dataset_config(config, ds)["teachers"][teacher].get("finetune"))


def task_teacher_input(wc):
    """A `finetune: true` teacher is extracted from its task-trained checkpoint."""
    return {"task_teacher": f"results/{wc.ds}/teachers/{wc.teacher}.pt"} if finetuned(wc.ds, wc.teacher) else {}


def task_teacher_arg(wc, input):
    return f"--task-teacher {shlex.quote(input.task_teacher)}" if finetuned(wc.ds, wc.teacher) else ""


def weights_file(wc):
    """The teacher's local weights file, so replacing it reruns the extraction."""
    w = dataset_config(config, wc.ds)["teachers"][wc.teacher]["weights"]
    if w.startswith("import:"):
        return [w[len("import:") :]]  # the folder of .npy files (its mtime: files added or removed)
    return [] if w == "random" or w.startswith("hub:") else [w]


def student_init_file(wc):
    """The student's start when it is a local file (a pretrained start), so replacing it reruns training."""
    init = dataset_config(config, wc.ds)["student"]["init"]
    return [] if init == "random" or init.startswith("hub:") else [init]


def level1_teachers(ds):
    return dataset_config(config, ds)["level1"]["teachers"]


def proxy_inputs(wc):
    return {f"proxy_{t}": f"results/{wc.ds}/proxies/{t}.pt" for t in level1_teachers(wc.ds)}


def proxy_output_inputs(wc):
    return {f"outputs_{t}": f"results/{wc.ds}/proxies/{t}.outputs.zarr" for t in level1_teachers(wc.ds)}


def feature_inputs(wc):
    return {f"features_{t}": f"results/{wc.ds}/features/{t}.zarr" for t in level1_teachers(wc.ds)}


def baseline_inputs(wc):
    return {} if wc.baseline == "ego" else feature_inputs(wc)


def pairs(kind):
    """params function: TEACHER=PATH words for the CLI, in the configured teacher order."""
    return lambda wc, input: " ".join(f"{t}={input[f'{kind}_{t}']}" for t in level1_teachers(wc.ds) if f"{kind}_{t}" in input.keys())


def spd_init(wc):
    return init_checkpoint(wc, dataset_config(config, wc.ds)["spd"]["init"])


def init_checkpoint(wc, init):
    """SPD's start: the merge `init` (results/{ds}/merge/{init}.pt), or `none` (no merge: the
    student's own start, student.init)."""
    return "none" if init == "none" else f"results/{wc.ds}/merge/{init}.pt"


def spd_start_inputs(init):
    """What SPD's start is read from: the merge checkpoint, or (init none) the student's start file, if any."""
    return lambda wc: student_init_file(wc) if init(wc) == "none" else [init(wc)]


def spd_inputs(init):
    """input function of spd and spd_ablation: every proxy's outputs (the SPD targets), the
    ego clips, and the start checkpoint init(wc)."""
    return lambda wc: {
        **proxy_output_inputs(wc),
        "manifest": f"results/{wc.ds}/manifest.parquet",
        "clips": f"results/{wc.ds}/clips/ego.zarr",
        "init": spd_start_inputs(init)(wc),
    }


def model_checkpoint(wc):
    """eval/{model}: uniego, baseline_<name>, proxy_<teacher>, merge_<strategy>, ablation_<name>."""
    return checkpoint_of(wc.ds, wc.model)


def checkpoint_of(ds, model):
    if model == "uniego":
        return f"results/{ds}/uniego.pt"
    kind, name = model.split("_", 1)
    folder = {"baseline": "baselines", "proxy": "proxies", "merge": "merge", "ablation": "ablations"}[kind]
    return f"results/{ds}/{folder}/{name}.pt"


def export_inputs(wc):
    """The UNIEGO checkpoint and its report files (segmentation only when the dataset has sessions and scores it)."""
    files = {"model": checkpoint_of(wc.ds, "uniego")}
    files.update({k: f"results/{wc.ds}/eval/uniego/{k}.json" for k in ("recognition", "retrieval")})
    if "results/{wc.ds}/eval/uniego/segmentation.json".format(wc=wc) in recognition_targets(wc.ds, "segmentation"):
        files["segmentation"] = f"results/{wc.ds}/eval/uniego/segmentation.json"
    return files


def config_sha256(wc):
    """params function: sha256 of the dataset's resolved config without `compute` (the export's provenance)."""
    import hashlib

    c = {k: v for k, v in dataset_config(config, wc.ds).items() if k != "compute"}
    return hashlib.sha256(canonical_json(c).encode()).hexdigest()


def ablation_names(ds):
    """SPD ablations run on a configured dataset, not on its seed repeats."""
    return list(dataset_config(config, ds).get("ablations", {})) if ds in config["datasets"] else []


def ablation_init(wc):
    from uniego.config import ablation_spd

    return init_checkpoint(wc, ablation_spd(dataset_config(config, wc.ds), wc.ablation)["init"])


def conflict_inputs(wc):
    models = [
        m
        for m in dataset_config(config, wc.ds)["analysis"]["conflict_models"]
        if not m.startswith("ablation_") or m.split("_", 1)[1] in ablation_names(wc.ds)
    ]
    return {m: checkpoint_of(wc.ds, m) for m in models}


def eval_clips(wc):
    """The ego clip cache (one temporal view) or the temporal-views test cache."""
    v = dataset_config(config, wc.ds)["eval"].get("temporal_clips", 1)
    return f"results/{wc.ds}/clips/ego.zarr" if v == 1 else f"results/{wc.ds}/clips/ego.views{v}.zarr"


def eval_models(ds):
    return ["uniego"] + [f"baseline_{b}" for b in BASELINES] + [f"proxy_{t}" for t in level1_teachers(ds)] + [f"merge_{s}" for s in STRATEGIES]


def has_sessions(ds):
    """Datasets with long annotated videos get the segmentation benchmark (the demo, Assembly101's coarse labels)."""
    from uniego.datasets import has_sessions as _has

    return _has(dataset_config(config, ds)["datasets"][ds], ds)


def session_inputs(wc):
    from uniego.datasets import session_files

    try:
        return session_files(dataset_config(config, wc.ds)["datasets"][wc.ds], wc.ds)
    except UniegoError as e:
        sys.exit(f"uniego: {e}")


def recognition_targets(ds, kind="recognition"):
    """kind: recognition | retrieval (every model) or segmentation (segmentation.models)."""
    if kind == "segmentation":
        models = dataset_config(config, ds)["segmentation"]["models"] if has_sessions(ds) else []
    else:
        models = eval_models(ds)
    return [f"results/{ds}/eval/{m}/{kind}.json" for m in models]


def report_seeds(wc):
    """[(seed, dataset name)] a document covers: report.md the configured seed's run only,
    study.md that run and every repeat (`repeat_seeds`), each an independent run. The SPD
    ablations (paper Tables 6-8) are part of the study only."""
    runs = seed_runs(config, wc.ds)
    return runs if wc.doc == "study" else runs[:1]


def report_inputs(wc):
    runs = report_seeds(wc)
    files = {kind: [f for _, name in runs for f in recognition_targets(name, kind)] for kind in ("recognition", "retrieval", "segmentation")}
    files["ablations"] = [f"results/{wc.ds}/eval/ablation_{a}/recognition.json" for a in ablation_names(wc.ds)] if wc.doc == "study" else []
    analysis = {f"{a}_{ext}": f"results/{wc.ds}/analysis/{a}.{ext}" for a in ("cka", "selection", "conflict") for ext in ("json", "png")}
    probes = {f"probes_{name}": f"results/{name}/analysis/probes.json" for _, name in runs}
    return {**files, **analysis, **probes}


def report_probes(wc, input):
    """params function: `SEED=FILE` for the linear probes of the document's runs."""
    return " ".join(shlex.quote(f"{seed}={input[f'probes_{name}']}") for seed, name in report_seeds(wc))


def exo_cue_classes(wc):
    """params function: analysis.exo_cue_classes, quoted words."""
    return " ".join(shlex.quote(c) for c in dataset_config(config, wc.ds)["analysis"].get("exo_cue_classes", []))


def report_runs(kind):
    """params function: `SEED=FILE` for every `kind` file of the document's runs."""
    return lambda wc: " ".join(shlex.quote(f"{seed}={f}") for seed, name in report_seeds(wc) for f in recognition_targets(name, kind))


def dataset_targets(ds):
    return (
        [f"results/{ds}/manifest.parquet"]
        + [f"results/{ds}/clips/{v}.zarr" for v in VIEWS]
        + [f"results/{ds}/features/{t}.zarr" for t in TEACHERS]
        + [f"results/{ds}/report.md"]
    )


def requested_targets():
    """The targets on Snakemake's command line. The Snakefile is read before Snakemake stores
    them, so they are parsed again here, with Snakemake's own parser."""
    if Path(sys.argv[0]).name not in ("snakemake", "__main__.py"):
        return []
    try:
        from snakemake.cli import get_argument_parser

        return list(get_argument_parser().parse_known_args(sys.argv[1:])[0].targets or [])
    except (Exception, SystemExit):  # an odd command line: leave it to Snakemake
        return []


def check_targets(workflow):
    """A mistyped file target gets the closest real ones (Snakemake alone says only
    MissingRuleException). Called by the Snakefile once every rule is defined."""
    names = {r.name for r in workflow.rules}
    for target in requested_targets():
        if target in names or Path(target).exists() or any(r.is_producer(target) for r in workflow.rules):
            continue
        sys.exit(unknown_target_message(target, config))
