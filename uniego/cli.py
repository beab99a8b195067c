"""The `uniego` command. Snakemake rules call it; so can you. Each command takes its settings
either as `--settings JSON` (the config sub-tree a rule passes) or from `--config FILE
--dataset DS`; throughput options (--workers, --batch-size, --device) never change results."""

from __future__ import annotations

import argparse
import json
import sys

from uniego.errors import UniegoError
from uniego.names import BASELINES, STRATEGIES, VIEWS
from uniego.stages import stage_settings_from_args


def _common(p, *, dataset=True):
    p.add_argument("--settings", help="the stage's config sub-tree as JSON (what the Snakemake rule passes)")
    p.add_argument("--config", help="read settings from this config.yaml instead")
    if dataset:
        p.add_argument("--dataset", help="dataset key in the config (default: config's `dataset`)")
    p.add_argument("--code-version", default="", help="recorded in the output's provenance")


def cmd_demo_data(args):
    from uniego.config import DemoPreset, from_dict
    from uniego.demo.generate import generate

    s = stage_settings_from_args(args, "demo_data")
    preset = from_dict(DemoPreset, s["preset"], where="demo_presets")
    generate(args.out, preset, seed=s["seed"], workers=args.workers, code_version=args.code_version)


def cmd_manifest(args):
    from uniego.datasets import build_manifest
    from uniego.manifest import write_manifest

    s = stage_settings_from_args(args, "manifest")
    built = build_manifest(s, s["dataset"])
    table, classes = built.table, built.classes
    write_manifest(table, classes, args.out, extra={"dataset": s["dataset"], "adapter": s["adapter"], "root": s["root"],
                                                    "options": s.get("options") or {}, "sources": built.sources,
                                                    "left_out": {"unpaired": len(built.unpaired),
                                                                 **{k: len(v) for k, v in built.dropped.items()}},
                                                    "code_version": args.code_version})
    print(f"{args.out}: {len(table)} clips, {len(classes)} classes, splits "
          + ", ".join(f"{k} {v}" for k, v in table.split.value_counts().sort_index().items()))


def cmd_check_data(args):
    from uniego.check_data import check_data, summary

    s = stage_settings_from_args(args, "check_data")
    print(summary(check_data(s, s["dataset"], args.out, skeletons=s["skeletons"])))


def cmd_body_pose(args):
    from uniego.datasets.ee4d_body_pose import write_body_pose

    s = stage_settings_from_args(args, "manifest")
    out = write_body_pose(s, s["dataset"], args.out)
    print(f"{out}: {sum(1 for _ in out.glob('*.npz'))} clip keypoint files")


def cmd_import_features(args):
    from uniego.import_features import import_features

    out = import_features(args.manifest, args.teacher, args.folder, args.out, dim=args.dim, code_version=args.code_version)
    print(f"{out}: {args.teacher} features imported from {args.folder}")


def cmd_import_checkpoint(args):
    from uniego.student import import_official_checkpoint

    out = import_official_checkpoint(args.checkpoint, args.manifest, args.out, stage_settings_from_args(args, "evaluate"),
                                     code_version=args.code_version)
    print(f"{out}: {args.checkpoint} as a uniego student checkpoint")


def cmd_clips(args):
    from uniego.clips import build_clip_cache
    from uniego.config import ClipSettings, from_dict

    settings = from_dict(ClipSettings, stage_settings_from_args(args, "clips", view=args.view), where="clips")
    build_clip_cache(args.manifest, args.view, args.out, settings, workers=args.workers, code_version=args.code_version,
                     temporal_views=args.temporal_views)


def cmd_extract(args):
    from uniego.config import TeacherSettings, from_dict
    from uniego.extract import extract

    s = stage_settings_from_args(args, "extract", teacher=args.teacher)
    teacher = from_dict(TeacherSettings, s["teacher"], where=f"teachers.{args.teacher}")
    if teacher.key != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {teacher.key}", stage="extract")
    if teacher.weights.startswith("import:"):  # official-layout features instead of a model
        from uniego.import_features import import_features
        from uniego.teachers.registry import ARCHS

        if args.clips != ["none"] or args.task_teacher:
            raise UniegoError(f"teachers.{teacher.key}.weights is {teacher.weights}: its features are imported, "
                              "so it takes no clip caches and no task teacher (--clips none)", stage="extract")
        import_features(args.manifest, teacher.key, teacher.weights[len("import:"):], args.out,
                        architecture=teacher.arch, dim=ARCHS[teacher.arch].feature_dim, code_version=args.code_version)
        return
    extract(args.manifest, _pairs(args.clips), args.out, teacher, compute=_compute(args), seed=s["seed"],
            code_version=args.code_version, chunk_samples=args.chunk_samples, task_teacher=args.task_teacher)


def cmd_train_teacher(args):
    from uniego.task_teacher import train_task_teacher

    s = stage_settings_from_args(args, "train_teacher", teacher=args.teacher)
    if s["teacher"]["key"] != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {s['teacher']['key']}", stage="train_teacher")
    train_task_teacher(args.manifest, _pairs(args.clips), args.out, s, compute=_compute(args), code_version=args.code_version)


def _compute(args):
    from uniego.config import ComputeSettings
    return ComputeSettings(device=args.device, precision=args.precision, workers=args.workers, batch_size=args.batch_size)


def cmd_train_proxy(args):
    from uniego.proxy import train_proxy

    s = stage_settings_from_args(args, "train_proxy", teacher=args.teacher)
    if s["teacher"] != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {s['teacher']}", stage="level1")
    train_proxy(args.manifest, args.clips, args.features, args.out, s, compute=_compute(args), code_version=args.code_version)


def cmd_proxy_outputs(args):
    from uniego.proxy import export_proxy_outputs

    s = stage_settings_from_args(args, "proxy_outputs")
    export_proxy_outputs(args.manifest, args.clips, args.proxy, args.out, s, compute=_compute(args), code_version=args.code_version)


def _pairs(items) -> dict:
    return {v.split("=", 1)[0]: v.split("=", 1)[1] for v in items}


def cmd_merge(args):
    from uniego.level2 import run_merge

    run_merge(args.manifest, args.clips, _pairs(args.proxies), args.strategy, args.out, stage_settings_from_args(args, "merge"),
              compute=_compute(args), code_version=args.code_version,
              outputs=_pairs(args.proxy_outputs) if args.proxy_outputs else None)


def cmd_spd(args):
    from uniego.level2 import run_spd

    run_spd(args.manifest, args.clips, args.init, _pairs(args.outputs), args.out, stage_settings_from_args(args, "spd"),
            compute=_compute(args), code_version=args.code_version)


def cmd_baseline(args):
    from uniego.baselines import run_baseline

    run_baseline(args.name, args.manifest, args.clips, _pairs(args.features), args.out, stage_settings_from_args(args, "baseline"),
                 compute=_compute(args), code_version=args.code_version)


def cmd_evaluate(args):
    from uniego.evaluate import evaluate_recognition

    r = evaluate_recognition(args.manifest, args.clips, args.model, args.out, stage_settings_from_args(args, "evaluate"),
                             compute=_compute(args), name=args.name, retrieval_out=args.retrieval_out,
                             code_version=args.code_version)
    print(f"{r['model']}: top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  ({r['n']} test clips, {r['views']} views)")
    if "retrieval" in r:
        m, r1 = r["retrieval"]["mAP"], r["retrieval"]["R@1"]
        print(f"{r['model']}: retrieval " + ("undefined (no test class has two clips)" if m is None else f"mAP {m:.3f}  R@1 {r1:.3f}"))


def cmd_sessions(args):
    from uniego.sessions import build_sessions, write_sessions

    s = stage_settings_from_args(args, "manifest")
    table, classes = build_sessions(s, s["dataset"], args.labels)
    write_sessions(table, classes, args.out, extra={"dataset": s["dataset"], "kind": "sessions", "code_version": args.code_version})
    print(f"{args.out}: {len(table)} sessions, {int(table.n_frames.sum())} frames, {len(classes)} classes")


def cmd_session_clips(args):
    from uniego.sessions import build_window_cache

    build_window_cache(args.sessions, args.out, stage_settings_from_args(args, "session_clips"), workers=args.workers,
                       code_version=args.code_version)


def cmd_dense_features(args):
    from uniego.segmentation import dense_features

    dense_features(args.sessions, args.windows, args.model, args.out, stage_settings_from_args(args, "evaluate"),
                   compute=_compute(args), code_version=args.code_version)


def cmd_cka(args):
    from uniego.analysis import cka_analysis

    s = stage_settings_from_args(args, "cka")
    r = cka_analysis(args.manifest, _pairs(args.features), _pairs(args.proxy_outputs), args.out, args.png,
                     max_samples=s["analysis"]["cka_samples"], seed=s["seed"])
    print(f"mean pairwise CKA: teachers {r['mean_offdiagonal_teachers']:.3f}, proxies {r['mean_offdiagonal_proxies']:.3f} "
          f"({r['samples']} train clips)")


def cmd_selection(args):
    from uniego.analysis import selection_analysis

    r = selection_analysis(args.model, args.out, args.png)
    print("selection frequency: " + ", ".join(f"{t} {v:.2f}" for t, v in r["overall_fraction"].items()))


def cmd_conflict(args):
    from uniego.analysis import conflict_analysis

    r = conflict_analysis(_pairs(args.models), args.out, args.png)
    print("mean gradient-conflict rate: " + ", ".join(f"{m} {v:.2f}" for m, v in r["mean_conflict_rate"].items()))


def cmd_segment(args):
    from uniego.segmentation import train_and_score

    r = train_and_score(args.sessions, args.features, args.out, stage_settings_from_args(args, "segment"), name=args.name,
                        compute=_compute(args), code_version=args.code_version)
    print(f"{r['model']}: F1@10/25/50 {r['F1@10']:.1f}/{r['F1@25']:.1f}/{r['F1@50']:.1f}  Edit {r['Edit']:.1f}  "
          f"Acc {r['Acc']:.1f}  ({r['test_videos']} test videos)")


def cmd_report(args):
    from uniego.report import write_report

    write_report(args.dataset or "dataset", args.recognition, args.out, retrieval=args.retrieval or [],
                 segmentation=args.segmentation or [], cka=args.cka, selection=args.selection,
                 conflict=args.conflict, ablations=args.ablations or [], probes=args.probes or [],
                 exo_cue_classes=args.exo_cue_classes or [])


def _compute_args(p):
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="inference batch (training batch is train.batch_size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])


def _train_args(p):
    p.add_argument("--procs", type=int, default=1,
                   help="processes (one per GPU) for data-parallel training; >1 restarts the command under torchrun")


def cmd_gpu_slots(args):
    from uniego.gpus import run_on_gpus

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    run_on_gpus(command, gpus=args.gpus, ids=args.ids, lock_dir=args.lock_dir)


def cmd_inspect(args):
    from pathlib import Path

    from uniego.inspect_store import describe, format_report

    path = Path(args.store)
    if path.is_file():
        raise UniegoError(f"{path} is a file, not a Zarr store (a folder such as results/demo/features/exo_dino.zarr). "
                          "Checkpoints (.pt) open with torch.load(path, weights_only=True); `uniego targets` lists the "
                          "stores a run makes", stage="inspect")

    info = describe(args.store)
    print(json.dumps(info, indent=2, default=str) if args.json else format_report(info))


def cmd_compare_runs(args):
    from uniego.reproduce import compare_runs, format_comparison

    kinds = ("metrics",) if args.metrics_only else ("metrics", "checkpoints", "stores")
    result = compare_runs(args.a, args.b, kinds=kinds, rtol=args.rtol)
    print(format_comparison(result, args.a, args.b))
    return 0 if result.identical else 1


def _load_configs(paths) -> dict:
    """config.yaml plus overlays, merged key by key as `snakemake --configfile` merges them."""
    from uniego.config import load_yaml, merge_overlay

    config = load_yaml(paths[0])
    for overlay in paths[1:]:
        config = merge_overlay(config, load_yaml(overlay))
    return config


def cmd_validate_config(args):
    from uniego.config import validate_config

    validate_config(_load_configs(args.config))
    print(" + ".join(args.config) + ": valid")


def cmd_targets(args):
    from uniego.config import dataset_names, validate_config
    from uniego.targets import list_targets

    config = validate_config(_load_configs(args.config))
    known = dataset_names(config)
    if args.dataset and args.dataset not in known:
        raise UniegoError(f"--dataset {args.dataset}: the config has {', '.join(known)}", stage="targets")
    rows = list_targets(config, [args.dataset] if args.dataset else None)
    width = max(len(p) for p, _ in rows)
    for path, what in rows:
        print(f"{path:<{width}}  {what}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="uniego", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo-data", help="generate the built-in synthetic ego-exo demo dataset")
    _common(p)
    p.add_argument("--out", required=True, help="dataset root to write (staged, then moved)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo_data)

    from uniego.stages import analysis, pretrain, report
    pretrain.add_commands(sub, _common)
    analysis.add_commands(sub, _common)
    report.add_commands(sub, _common)

    p = sub.add_parser("manifest", help="build and validate results/{ds}/manifest.parquet")
    _common(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("check-data", help="check every clip of a dataset before anything trains (counts, "
                       "unreadable videos, segments past the end, unpaired clips)")
    _common(p)
    p.add_argument("--out", required=True, help="the report, results/{ds}/data_check.json (written only when clean)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("import-features", help="official-layout .npy teacher features -> a feature store")
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--folder", required=True, help="one <key>.npy per clip (the official distillation/<teacher>/ folder)")
    p.add_argument("--out", required=True, help="results/{ds}/features/{teacher}.zarr")
    p.add_argument("--dim", type=int, help="feature size (default: the official size of the teacher)")
    p.add_argument("--code-version", default="")
    p.set_defaults(func=cmd_import_features)

    p = sub.add_parser("import-checkpoint", help="an official UNIEGO .pyth checkpoint -> a uniego student checkpoint "
                       "that `uniego evaluate` reads")
    _common(p)
    p.add_argument("--checkpoint", required=True, help="e.g. EgoExo_Fitness_UNIEGO_gen2.pyth")
    p.add_argument("--manifest", required=True, help="the manifest whose classes the checkpoint's labels index")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import_checkpoint)

    p = sub.add_parser("clips", help="decode a view of every clip into a Zarr clip cache")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--view", required=True, choices=VIEWS)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--temporal-views", type=int, default=0,
                   help="V > 0: test split only, V temporal views per clip (the multi-view test cache)")
    p.set_defaults(func=cmd_clips)

    p = sub.add_parser("extract", help="compute one teacher's features into a Zarr feature store")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--clips", nargs="+", default=[], metavar="VIEW=STORE",
                   help="clip caches, e.g. exo=results/demo/clips/exo.zarr (`none` for a teacher with weights import:<folder>)")
    p.add_argument("--out", required=True)
    _compute_args(p)
    p.add_argument("--chunk-samples", type=int, default=None, help="samples per store chunk (default: ~2 MiB chunks)")
    p.add_argument("--task-teacher", default=None, help="the task-trained checkpoint of a `finetune: true` teacher")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("train-teacher", help="train a task teacher (exo_rgb, exo_skl) on the train split before extraction")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--clips", nargs="+", default=[], metavar="VIEW=STORE", help="clip caches, e.g. skeleton=results/demo/clips/skeleton.zarr")
    p.add_argument("--out", required=True, help="checkpoint (.pt); its run folder <out stem>.run/ holds checkpoints and metrics")
    _compute_args(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("train-proxy", help="Level I: train one teacher's proxy on the ego clips (eq. 1)")
    _common(p)
    p.add_argument("--teacher", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True, help="the ego clip cache")
    p.add_argument("--features", required=True, help="the teacher's feature store")
    p.add_argument("--out", required=True, help="proxy checkpoint (.pt); its run folder <out stem>.run/ holds checkpoints and metrics")
    _compute_args(p)
    _train_args(p)
    p.set_defaults(func=cmd_train_proxy)

    p = sub.add_parser("proxy-outputs", help="export a proxy's CLS features and logits on the train split")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--out", required=True)
    _compute_args(p)
    p.set_defaults(func=cmd_proxy_outputs)

    p = sub.add_parser("merge", help="Level II: merge the proxies into one initialisation (eq. 2)")
    _common(p)
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--proxies", nargs="+", required=True, metavar="TEACHER=PROXY.pt")
    p.add_argument("--proxy-outputs", nargs="*", metavar="TEACHER=OUTPUTS.zarr",
                   help="the proxies' exported train outputs: record eq. 2's objective for the merge and each proxy (Proposition 1)")
    p.add_argument("--out", required=True)
    _compute_args(p)
    _train_args(p)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("spd", help="Level II: Selective Proxy Distillation from a merged initialisation (eq. 4-6)")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--init", required=True, help="merged checkpoint")
    p.add_argument("--outputs", nargs="+", required=True, metavar="TEACHER=OUTPUTS.zarr")
    p.add_argument("--out", required=True)
    _compute_args(p)
    _train_args(p)
    p.set_defaults(func=cmd_spd)

    p = sub.add_parser("baseline", help="train a baseline: ego (CE only) or naive_mtd (all teachers at once)")
    _common(p)
    p.add_argument("--name", required=True, choices=BASELINES)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--features", nargs="*", default=[], metavar="TEACHER=STORE")
    p.add_argument("--out", required=True)
    _compute_args(p)
    _train_args(p)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("evaluate", help="recognition top-1/top-5 of a trained encoder on the test split")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="recognition.json")
    p.add_argument("--retrieval-out", help="also write retrieval.json (mAP, R@1) from the same forward pass")
    _compute_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sessions", help="build results/{ds}/sessions.parquet: the long videos for segmentation")
    _common(p)
    p.add_argument("--labels", required=True, help="folder for the per-frame label files the adapter writes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("session-clips", help="decode the sliding windows of every session into a clip store")
    _common(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_session_clips)

    p = sub.add_parser("dense-features", help="a trained encoder's CLS feature on every session window")
    _common(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--windows", required=True, help="clips/sessions.zarr")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    _compute_args(p)
    p.set_defaults(func=cmd_dense_features)

    p = sub.add_parser("cka", help="linear CKA of every pair of teachers and of proxies (Figure 3)")
    _common(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--features", nargs="+", required=True, help="TEACHER=features/TEACHER.zarr")
    p.add_argument("--proxy-outputs", nargs="+", required=True, help="TEACHER=proxies/TEACHER.outputs.zarr")
    p.add_argument("--out", required=True, help="cka.json")
    p.add_argument("--png", required=True, help="cka.png")
    p.set_defaults(func=cmd_cka)

    p = sub.add_parser("selection", help="SPD proxy selection frequency, overall and per class (Figure 6)")
    p.add_argument("--model", required=True, help="uniego.pt")
    p.add_argument("--out", required=True, help="selection.json")
    p.add_argument("--png", required=True, help="selection.png")
    p.set_defaults(func=cmd_selection)

    p = sub.add_parser("conflict", help="gradient-conflict rate and cosine per epoch (Figures 4-5)")
    p.add_argument("--models", nargs="+", required=True, help="NAME=checkpoint.pt (trained with analysis.probe_samples > 0)")
    p.add_argument("--out", required=True, help="conflict.json")
    p.add_argument("--png", required=True, help="conflict.png")
    p.set_defaults(func=cmd_conflict)

    p = sub.add_parser("segment", help="train MS-TCN on dense features, score F1@k / Edit / Acc on the test videos")
    _common(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="segmentation.json")
    _compute_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("report", help="write results/{ds}/report.md from the evaluation files")
    p.add_argument("--dataset", default="")
    p.add_argument("--recognition", nargs="+", required=True, help="recognition.json files, or SEED=FILE for several seeds")
    p.add_argument("--retrieval", nargs="*", help="retrieval.json files (FILE or SEED=FILE)")
    p.add_argument("--segmentation", nargs="*", help="segmentation.json files (FILE or SEED=FILE)")
    p.add_argument("--cka", help="analysis/cka.json (its .png is linked)")
    p.add_argument("--selection", help="analysis/selection.json (its .png is linked)")
    p.add_argument("--conflict", help="analysis/conflict.json (its .png is linked)")
    p.add_argument("--ablations", nargs="*", help="recognition.json of the SPD ablations (main seed)")
    p.add_argument("--probes", nargs="*", help="analysis/probes.json files (FILE or SEED=FILE), the teachers' linear probes")
    p.add_argument("--exo-cue-classes", nargs="*", help="classes whose cue is weak in the ego view and obvious in the exo "
                   "view (analysis.exo_cue_classes): a per-class table of the ego baseline, naive MTD and UNIEGO")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("inspect", help="shape, chunks, compression, provenance and statistics of a store",
                       description="Describe a Zarr store the pipeline wrote (features/*.zarr, clips/*.zarr, "
                       "proxies/*.outputs.zarr): whether it is complete, its provenance (teacher, weights, manifest "
                       "hash, code version), every array's shape, chunks and compression, and feature statistics "
                       "(NaN/Inf counts, norms). Example: uniego inspect results/demo/features/exo_skl.zarr")
    p.add_argument("store", help="the store's folder, e.g. results/demo/features/exo_skl.zarr")
    p.add_argument("--json", action="store_true", help="print the description as JSON (for scripts)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("body-pose", help="Ego-Exo4D: per-clip exo keypoint files from the dataset's body-pose annotations")
    _common(p)
    p.add_argument("--out", required=True, help="the folder to write (options.skeletons)")
    p.set_defaults(func=cmd_body_pose)

    p = sub.add_parser("gpu-slots", help="run a command on K free local GPUs (sets CUDA_VISIBLE_DEVICES; every GPU rule uses it)")
    p.add_argument("--gpus", type=int, default=1, help="slots to take (the rule's gpu resource)")
    p.add_argument("--ids", default="auto", help="`auto` (every /dev/nvidiaN) or device ids `0,1` (compute.gpu_ids)")
    p.add_argument("--lock-dir", default=None, help="folder of the slot locks (compute.gpu_lock_dir; default: one per machine in the temp dir)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command to run")
    p.set_defaults(func=cmd_gpu_slots)

    p = sub.add_parser("compare-runs", help="are two runs the same? metrics, checkpoints and stores compared "
                       "(exit 0 identical, 1 different)")
    p.add_argument("a", help="a workflow folder (or its results/)")
    p.add_argument("b")
    p.add_argument("--metrics-only", action="store_true", help="only the metric, log, table and figure files")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default 0: bit for bit)")
    p.set_defaults(func=cmd_compare_runs)

    p = sub.add_parser("validate-config", help="check a config.yaml (plus overlays) against the schema",
                       description="Check a config against workflow/schemas/config.schema.yaml and the cross-checks "
                       "(presets, architectures, adapter options), as Snakemake does when it builds the DAG. Every "
                       "problem is listed with its key path; exit 0 valid, 2 invalid. Overlays are merged key by key, "
                       "as `snakemake --configfile OVERLAY` merges them. Example: uniego validate-config config.yaml "
                       "tests/configs/tiny.yaml")
    p.add_argument("config", nargs="*", default=["config.yaml"], help="config.yaml, then overlays (default: config.yaml)")
    p.set_defaults(func=cmd_validate_config)

    p = sub.add_parser("targets", help="list the file targets `snakemake TARGET` can build",
                       description="Every file target of the workflow for a config (plus overlays), one per line with "
                       "what it is. Example: uniego targets --dataset demo")
    p.add_argument("config", nargs="*", default=["config.yaml"], help="config.yaml, then overlays (default: config.yaml)")
    p.add_argument("--dataset", help="only this dataset (default: every dataset, seed repeats included)")
    p.set_defaults(func=cmd_targets)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "procs", 1) > 1:
        from uniego.distributed import relaunch_under_torchrun
        relaunch_under_torchrun(args.procs, sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args) or 0   # a command returns None (success) or its exit status
    except UniegoError as e:
        print(f"uniego {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # `uniego targets | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
