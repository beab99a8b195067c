"""The `uniego` command. Snakemake rules call it; so can you. Each command takes its settings
either as `--settings JSON` (the config sub-tree a rule passes) or from `--config FILE
--dataset DS`; throughput options (--workers, --batch-size, --device) never change results."""

from __future__ import annotations

import argparse
import errno
import json
import sys

from uniego.errors import UniegoError


def cmd_gpu_slots(args):
    from uniego.gpus import run_on_gpus

    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    run_on_gpus(command, gpus=args.gpus, ids=args.ids, lock_dir=args.lock_dir)


def cmd_inspect(args):
    from pathlib import Path

    from uniego.inspect_store import describe, format_report

    path = Path(args.store)
    if path.is_file() or (path / "config.json").is_file():   # a checkpoint, or an export folder
        from uniego.inspect_store import describe_checkpoint, describe_export

        if path.is_file() and path.suffix not in (".pt", ".pth", ".pyth"):
            raise UniegoError(f"{path} is a file, not a Zarr store (a folder such as results/demo/features/exo_dino.zarr) "
                              "nor a checkpoint (.pt); `uniego targets` lists what a run makes", stage="inspect")
        info = describe_checkpoint(path, verify=args.verify) if path.is_file() else describe_export(path, verify=args.verify)
        print(json.dumps(info, indent=2, default=str) if args.json else
              "\n".join(f"{k:<15}{json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}" for k, v in info.items()))
        return

    info = describe(args.store)
    if args.verify:
        from uniego.cache import verify_store
        from uniego.inspect_store import format_verification

        info["verify"] = verify_store(args.store)
    print(json.dumps(info, indent=2, default=str) if args.json else
          format_report(info) + ("\n" + format_verification(info["verify"]) if args.verify else ""))
    if args.verify and (info["verify"]["missing"] or info["verify"]["damaged"]):
        bad = info["verify"]["missing"] + info["verify"]["damaged"]
        raise UniegoError(f"store {args.store} is damaged: {len(bad)} chunk(s) missing or failing their checksum (first: "
                          f"{bad[0]}). Delete it and rerun the rule that builds it.", stage="inspect")


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

    from uniego.stages import analysis, data, evaluate, export, level1, level2, pretrain, report, segmentation, teachers, use
    for stage in (data, pretrain, teachers, level1, level2, evaluate, segmentation, analysis, report, export, use):
        stage.add_commands(sub)

    p = sub.add_parser("inspect", help="shape, chunks, compression, provenance and statistics of a store",
                       description="Describe a Zarr store the pipeline wrote (features/*.zarr, clips/*.zarr, "
                       "proxies/*.outputs.zarr): whether it is complete, its provenance (teacher, weights, manifest "
                       "hash, code version), every array's shape, chunks and compression, and feature statistics "
                       "(NaN/Inf counts, norms). Example: uniego inspect results/demo/features/exo_skl.zarr")
    p.add_argument("store", help="the store's folder, e.g. results/demo/features/exo_skl.zarr")
    p.add_argument("--json", action="store_true", help="print the description as JSON (for scripts)")
    p.add_argument("--verify", action="store_true", help="read every chunk and check its crc32c checksum (exit 2 if any is "
                   "missing or damaged)")
    p.set_defaults(func=cmd_inspect)

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


def user_message(e: UniegoError) -> str:
    """The error's own message. One raised in a DataLoader worker reaches the main process as
    "Caught UniegoError in DataLoader worker process N. Original Traceback ..." (torch re-raises
    it with the worker's traceback as text): keep only the original message."""
    text = str(e)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()
    for i in range(len(last) - 1, -1, -1):   # the message may span lines: from its "UniegoError: " line on
        if "UniegoError: " in last[i]:
            return "\n".join([last[i].split("UniegoError: ", 1)[1], *last[i + 1:]])
    return text


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "procs", 1) > 1:
        from uniego.distributed import relaunch_under_torchrun
        relaunch_under_torchrun(args.procs, sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args) or 0   # a command returns None (success) or its exit status
    except UniegoError as e:
        print(f"uniego {args.command}: error: {user_message(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        print(f"uniego {args.command}: error: the disk is full (writing {e.filename or 'a result'}): free space there "
              "(or move results/ to a larger disk) and rerun: finished work is kept and an interrupted run resumes",
              file=sys.stderr)
        return 2
    except BrokenPipeError:   # `uniego targets | head`: the reader has what it wanted
        sys.stderr.close()
        return 0
