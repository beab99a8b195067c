"""The data (workflow/rules/data.smk): the demo dataset generated, every clip checked before
anything trains (`check_data`), the manifest built by the dataset's adapter, and each view
decoded once into its clip cache (`clips`). Commands: `uniego demo-data`, `uniego check-data`,
`uniego manifest`, `uniego clips`, `uniego body-pose`."""

from __future__ import annotations

from uniego.names import VIEWS
from uniego.stages import common_args, stage_settings_from_args


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
    from uniego.stages.data.check_data import check_data, summary

    s = stage_settings_from_args(args, "check_data")
    print(summary(check_data(s, s["dataset"], args.out, skeletons=s["skeletons"], num_frames=s.get("num_frames"))))


def cmd_body_pose(args):
    from uniego.datasets.ee4d_body_pose import write_body_pose

    s = stage_settings_from_args(args, "manifest")
    out = write_body_pose(s, s["dataset"], args.out)
    print(f"{out}: {sum(1 for _ in out.glob('*.npz'))} clip keypoint files")


def cmd_clips(args):
    from uniego.config import ClipSettings, from_dict
    from uniego.stages.data.clips import build_clip_cache

    settings = from_dict(ClipSettings, stage_settings_from_args(args, "clips", view=args.view), where="clips")
    build_clip_cache(args.manifest, args.view, args.out, settings, workers=args.workers, code_version=args.code_version,
                     temporal_views=args.temporal_views)


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("demo-data", help="generate the built-in synthetic ego-exo demo dataset")
    common_args(p)
    p.add_argument("--out", required=True, help="dataset root to write (staged, then moved)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("manifest", help="build and validate results/{ds}/manifest.parquet")
    common_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_manifest)

    p = sub.add_parser("check-data", help="check every clip of a dataset before anything trains (counts, "
                       "unreadable videos, segments past the end, unpaired clips)")
    common_args(p)
    p.add_argument("--out", required=True, help="the report, results/{ds}/data_check.json (written only when clean)")
    p.set_defaults(func=cmd_check_data)

    p = sub.add_parser("clips", help="decode a view of every clip into a Zarr clip cache")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--view", required=True, choices=VIEWS)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--temporal-views", type=int, default=0,
                   help="V > 0: test split only, V temporal views per clip (the multi-view test cache)")
    p.set_defaults(func=cmd_clips)

    p = sub.add_parser("body-pose", help="Ego-Exo4D: per-clip exo keypoint files from the dataset's body-pose annotations")
    common_args(p)
    p.add_argument("--out", required=True, help="the folder to write (options.skeletons)")
    p.set_defaults(func=cmd_body_pose)
