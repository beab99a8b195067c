"""Level II (workflow/rules/level2.smk): the proxies merged into one initialisation (eq. 2,
`merging`), Selective Proxy Distillation from it (eq. 4-6, `distillation`), and the baselines
trained the same way (`baselines`); `official` imports an official stage-2 checkpoint.
Commands: `uniego merge`, `uniego spd`, `uniego baseline`."""

from __future__ import annotations

from uniego.names import BASELINES, STRATEGIES
from uniego.stages import common_args, compute_args, compute_from_args, pairs, stage_settings_from_args, train_args


def cmd_merge(args):
    from uniego.stages.level2.merging import run_merge

    run_merge(args.manifest, args.clips, pairs(args.proxies), args.strategy, args.out, stage_settings_from_args(args, "merge"),
              compute=compute_from_args(args), code_version=args.code_version,
              outputs=pairs(args.proxy_outputs) if args.proxy_outputs else None)


def cmd_spd(args):
    from uniego.stages.level2.distillation import run_spd

    run_spd(args.manifest, args.clips, args.init, pairs(args.outputs), args.out, stage_settings_from_args(args, "spd"),
            compute=compute_from_args(args), code_version=args.code_version)


def cmd_baseline(args):
    from uniego.stages.level2.baselines import run_baseline

    run_baseline(args.name, args.manifest, args.clips, pairs(args.features), args.out,
                 stage_settings_from_args(args, "baseline"), compute=compute_from_args(args), code_version=args.code_version)


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("merge", help="Level II: merge the proxies into one initialisation (eq. 2)")
    common_args(p)
    p.add_argument("--strategy", required=True, choices=STRATEGIES)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--proxies", nargs="+", required=True, metavar="TEACHER=PROXY.pt")
    p.add_argument("--proxy-outputs", nargs="*", metavar="TEACHER=OUTPUTS.zarr",
                   help="the proxies' exported train outputs: record eq. 2's objective for the merge and each proxy (Proposition 1)")
    p.add_argument("--out", required=True)
    compute_args(p)
    train_args(p)
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("spd", help="Level II: Selective Proxy Distillation from a merged initialisation (eq. 4-6)")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--init", required=True, help="merged checkpoint, or `none` with spd.init none (from the student's start)")
    p.add_argument("--outputs", nargs="+", required=True, metavar="TEACHER=OUTPUTS.zarr")
    p.add_argument("--out", required=True)
    compute_args(p)
    train_args(p)
    p.set_defaults(func=cmd_spd)

    p = sub.add_parser("baseline", help="train a baseline: ego (CE only) or naive_mtd (all teachers at once)")
    common_args(p)
    p.add_argument("--name", required=True, choices=BASELINES)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--features", nargs="*", default=[], metavar="TEACHER=STORE")
    p.add_argument("--out", required=True)
    compute_args(p)
    train_args(p)
    p.set_defaults(func=cmd_baseline)
