"""Level I (workflow/rules/level1.smk): one proxy per teacher, trained on the ego clips to learn
the labels and its teacher's embedding (eq. 1), then its outputs on the train split exported as
SPD's targets. Runners in `proxies`. Commands: `uniego train-proxy`, `uniego proxy-outputs`."""

from __future__ import annotations

from uniego.errors import UniegoError
from uniego.stages import common_args, compute_args, compute_from_args, stage_settings_from_args, train_args


def cmd_train_proxy(args):
    from uniego.stages.level1.proxies import train_proxy

    s = stage_settings_from_args(args, "train_proxy", teacher=args.teacher)
    if s["teacher"] != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {s['teacher']}", stage="level1")
    train_proxy(args.manifest, args.clips, args.features, args.out, s, compute=compute_from_args(args),
                code_version=args.code_version)


def cmd_proxy_outputs(args):
    from uniego.stages.level1.proxies import export_proxy_outputs

    export_proxy_outputs(args.manifest, args.clips, args.proxy, args.out, stage_settings_from_args(args, "proxy_outputs"),
                         compute=compute_from_args(args), code_version=args.code_version)


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("train-proxy", help="Level I: train one teacher's proxy on the ego clips (eq. 1)")
    common_args(p)
    p.add_argument("--teacher", required=True)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True, help="the ego clip cache")
    p.add_argument("--features", required=True, help="the teacher's feature store")
    p.add_argument("--out", required=True, help="proxy checkpoint (.pt); its run folder <out stem>.run/ holds checkpoints and metrics")
    compute_args(p)
    train_args(p)
    p.set_defaults(func=cmd_train_proxy)

    p = sub.add_parser("proxy-outputs", help="export a proxy's CLS features and logits on the train split")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--proxy", required=True)
    p.add_argument("--out", required=True)
    compute_args(p)
    p.set_defaults(func=cmd_proxy_outputs)
