"""The glue that runs the pipeline's stages (issue 21's layout): one module per rule file,
each holding its runners and its `uniego` commands (`add_commands(sub)`, which `uniego.cli`
calls). The library they call (equations, models, caches) stays in the `uniego` package above.
The helpers below are what every command shares."""


def common_args(p, *, dataset: bool = True) -> None:
    """--settings / --config / --dataset / --code-version: where a command's settings come from."""
    p.add_argument("--settings", help="the stage's config sub-tree as JSON (what the Snakemake rule passes)")
    p.add_argument("--config", help="read settings from this config.yaml instead")
    if dataset:
        p.add_argument("--dataset", help="dataset key in the config (default: config's `dataset`)")
    p.add_argument("--code-version", default="", help="recorded in the output's provenance")


def compute_args(p) -> None:
    """Throughput options: they never change a result."""
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8, help="inference batch (training batch is train.batch_size)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])


def train_args(p) -> None:
    p.add_argument("--procs", type=int, default=1,
                   help="processes (one per GPU) for data-parallel training; >1 restarts the command under torchrun")


def compute_from_args(args):
    from uniego.config import ComputeSettings
    return ComputeSettings(device=args.device, precision=args.precision, workers=args.workers, batch_size=args.batch_size)


def pairs(items) -> dict[str, str]:
    """[`KEY=PATH`, ...] -> {KEY: PATH} (teachers' stores and checkpoints on the command line)."""
    from uniego.errors import UniegoError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UniegoError(f"expected NAME=PATH, got {item!r}")
        out[name] = path
    return out


def stage_settings_from_args(args, stage: str, **kw) -> dict:
    """A command's stage settings: `--settings` JSON (what a rule passes) or `--config` + `--dataset`."""
    import json

    from uniego import config as C
    from uniego.errors import UniegoError

    if args.settings:
        try:
            return json.loads(args.settings)
        except json.JSONDecodeError as e:
            raise UniegoError(f"--settings is not valid JSON: {e}") from None
    if not args.config:
        raise UniegoError("give --settings JSON or --config FILE (with --dataset)")
    cfg = C.validate_config(C.load_yaml(args.config))
    return C.stage_settings(cfg, args.dataset or cfg["dataset"], stage, **kw)
