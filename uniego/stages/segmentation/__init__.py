"""Temporal action segmentation (workflow/rules/segmentation.smk, paper Table 4): the long
session videos and their sliding windows (`uniego.sessions`), a frozen encoder's dense features
on them, and an MS-TCN trained on those and scored (`segment`).
Commands: `uniego sessions`, `uniego session-clips`, `uniego dense-features`, `uniego segment`."""

from __future__ import annotations

from uniego.stages import common_args, compute_args, compute_from_args, stage_settings_from_args


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
    from uniego.stages.segmentation.segment import dense_features

    dense_features(args.sessions, args.windows, args.model, args.out, stage_settings_from_args(args, "evaluate"),
                   compute=compute_from_args(args), code_version=args.code_version)


def cmd_segment(args):
    from uniego.stages.segmentation.segment import train_and_score

    r = train_and_score(args.sessions, args.features, args.out, stage_settings_from_args(args, "segment"), name=args.name,
                        compute=compute_from_args(args), code_version=args.code_version)
    print(f"{r['model']}: F1@10/25/50 {r['F1@10']:.1f}/{r['F1@25']:.1f}/{r['F1@50']:.1f}  Edit {r['Edit']:.1f}  "
          f"Acc {r['Acc']:.1f}  ({r['test_videos']} test videos)")




def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("sessions", help="build results/{ds}/sessions.parquet: the long videos for segmentation")
    common_args(p)
    p.add_argument("--labels", required=True, help="folder for the per-frame label files the adapter writes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sessions)

    p = sub.add_parser("session-clips", help="decode the sliding windows of every session into a clip store")
    common_args(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_session_clips)

    p = sub.add_parser("dense-features", help="a trained encoder's CLS feature on every session window")
    common_args(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--windows", required=True, help="clips/sessions.zarr")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    compute_args(p)
    p.set_defaults(func=cmd_dense_features)

    p = sub.add_parser("segment", help="train MS-TCN on dense features, score F1@k / Edit / Acc on the test videos")
    common_args(p)
    p.add_argument("--sessions", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="segmentation.json")
    compute_args(p)
    p.set_defaults(func=cmd_segment)
