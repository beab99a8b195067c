"""The glue that runs the pipeline's stages (issue 21's layout): one module per rule file,
each holding its runners and its `uniego` commands (`add_commands`). The library they call
(equations, models, caches) stays in the `uniego` package above."""


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
