"""Evaluation (workflow/rules/evaluate.smk): recognition top-1/top-5 and retrieval of a trained
encoder on the test split (`recognition`); an official UNIEGO checkpoint imported to be scored
the same way (`official`). Commands: `uniego evaluate`, `uniego import-checkpoint`."""

from __future__ import annotations

from uniego.stages import common_args, compute_args, compute_from_args, stage_settings_from_args


def cmd_evaluate(args):
    from uniego.stages.evaluate.recognition import evaluate_recognition

    r = evaluate_recognition(args.manifest, args.clips, args.model, args.out, stage_settings_from_args(args, "evaluate"),
                             compute=compute_from_args(args), name=args.name, retrieval_out=args.retrieval_out,
                             code_version=args.code_version)
    print(f"{r['model']}: top-1 {r['top1']:.2f}  top-5 {r['top5']:.2f}  ({r['n']} test clips, {r['views']} views)")
    if "retrieval" in r:
        m, r1 = r["retrieval"]["mAP"], r["retrieval"]["R@1"]
        print(f"{r['model']}: retrieval " + ("undefined (no test class has two clips)" if m is None else f"mAP {m:.3f}  R@1 {r1:.3f}"))


def cmd_import_checkpoint(args):
    from uniego.stages.evaluate.official import import_official_checkpoint

    out = import_official_checkpoint(args.checkpoint, args.manifest, args.out, stage_settings_from_args(args, "evaluate"),
                                     code_version=args.code_version)
    print(f"{out}: {args.checkpoint} as a uniego student checkpoint")




def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("evaluate", help="recognition top-1/top-5 of a trained encoder on the test split")
    common_args(p)
    p.add_argument("--manifest", required=True)
    p.add_argument("--clips", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="recognition.json")
    p.add_argument("--retrieval-out", help="also write retrieval.json (mAP, R@1) from the same forward pass")
    compute_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("import-checkpoint", help="an official UNIEGO .pyth checkpoint -> a uniego student checkpoint "
                       "that `uniego evaluate` reads")
    common_args(p)
    p.add_argument("--checkpoint", required=True, help="e.g. EgoExo_Fitness_UNIEGO_gen2.pyth")
    p.add_argument("--manifest", required=True, help="the manifest whose classes the checkpoint's labels index")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import_checkpoint)
