"""The teachers (workflow/rules/teachers.smk): the task teachers trained on the train split
(`task_teacher`), every teacher's embeddings of every clip into its feature store (`extract`),
or official-layout features imported instead (`import_features`).
Commands: `uniego train-teacher`, `uniego extract`, `uniego import-features`."""

from __future__ import annotations

from uniego.errors import UniegoError
from uniego.stages import common_args, compute_args, compute_from_args, pairs, stage_settings_from_args


def cmd_import_features(args):
    from uniego.stages.teachers.import_features import import_features

    out = import_features(args.manifest, args.teacher, args.folder, args.out, dim=args.dim, code_version=args.code_version)
    print(f"{out}: {args.teacher} features imported from {args.folder}")


def cmd_extract(args):
    from uniego.config import TeacherSettings, from_dict
    from uniego.stages.teachers.extract import extract

    s = stage_settings_from_args(args, "extract", teacher=args.teacher)
    teacher = from_dict(TeacherSettings, s["teacher"], where=f"teachers.{args.teacher}")
    if teacher.key != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {teacher.key}", stage="extract")
    if teacher.weights.startswith("import:"):  # official-layout features instead of a model
        from uniego.stages.teachers.import_features import import_features
        from uniego.teachers.registry import ARCHS

        if args.clips != ["none"] or args.task_teacher:
            raise UniegoError(f"teachers.{teacher.key}.weights is {teacher.weights}: its features are imported, "
                              "so it takes no clip caches and no task teacher (--clips none)", stage="extract")
        import_features(args.manifest, teacher.key, teacher.weights[len("import:"):], args.out,
                        architecture=teacher.arch, dim=ARCHS[teacher.arch].feature_dim, code_version=args.code_version)
        return
    extract(args.manifest, pairs(args.clips), args.out, teacher, compute=compute_from_args(args), seed=s["seed"],
            code_version=args.code_version, chunk_samples=args.chunk_samples, task_teacher=args.task_teacher)


def cmd_train_teacher(args):
    from uniego.stages.teachers.task_teacher import train_task_teacher

    s = stage_settings_from_args(args, "train_teacher", teacher=args.teacher)
    if s["teacher"]["key"] != args.teacher:
        raise UniegoError(f"--teacher {args.teacher} but the settings are for {s['teacher']['key']}", stage="train_teacher")
    train_task_teacher(args.manifest, pairs(args.clips), args.out, s, compute=compute_from_args(args), code_version=args.code_version)


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("import-features", help="official-layout .npy teacher features -> a feature store")
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--folder", required=True, help="one <key>.npy per clip (the official distillation/<teacher>/ folder)")
    p.add_argument("--out", required=True, help="results/{ds}/features/{teacher}.zarr")
    p.add_argument("--dim", type=int, help="feature size (default: the official size of the teacher)")
    p.add_argument("--code-version", default="")
    p.set_defaults(func=cmd_import_features)

    p = sub.add_parser("extract", help="compute one teacher's features into a Zarr feature store")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--clips", nargs="+", default=[], metavar="VIEW=STORE",
                   help="clip caches, e.g. exo=results/demo/clips/exo.zarr (`none` for a teacher with weights import:<folder>)")
    p.add_argument("--out", required=True)
    compute_args(p)
    p.add_argument("--chunk-samples", type=int, default=None, help="samples per store chunk (default: ~2 MiB chunks)")
    p.add_argument("--task-teacher", default=None, help="the task-trained checkpoint of a `finetune: true` teacher")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("train-teacher", help="train a task teacher (exo_rgb, exo_skl) on the train split before extraction")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--clips", nargs="+", default=[], metavar="VIEW=STORE", help="clip caches, e.g. skeleton=results/demo/clips/skeleton.zarr")
    p.add_argument("--out", required=True, help="checkpoint (.pt); its run folder <out stem>.run/ holds checkpoints and metrics")
    compute_args(p)
    p.set_defaults(func=cmd_train_teacher)
