"""Analyses (workflow/rules/analysis.smk): what the teachers know (linear probes), how alike the
teachers and proxies are (CKA), which proxies SPD selected, and the gradient conflict; the
computations are in uniego.analysis. Commands: `uniego probe`, `uniego cka`, `uniego selection`,
`uniego conflict`."""

from __future__ import annotations

from uniego.stages import common_args, pairs, stage_settings_from_args


def cmd_probe(args):
    from uniego.analysis import probe_analysis

    r = probe_analysis(args.manifest, pairs(args.features), args.out)
    print(f"linear probes, test top-1 % (chance {r['chance']:.1f}): "
          + ", ".join(f"{t} {v['top1']:.1f}" for t, v in r["teachers"].items()))


def cmd_cka(args):
    from uniego.analysis import cka_analysis

    s = stage_settings_from_args(args, "cka")
    r = cka_analysis(args.manifest, pairs(args.features), pairs(args.proxy_outputs), args.out, args.png,
                     max_samples=s["analysis"]["cka_samples"], seed=s["seed"])
    print(f"mean pairwise CKA: teachers {r['mean_offdiagonal_teachers']:.3f}, proxies {r['mean_offdiagonal_proxies']:.3f} "
          f"({r['samples']} train clips)")


def cmd_selection(args):
    from uniego.analysis import selection_analysis

    r = selection_analysis(args.model, args.out, args.png)
    print("selection frequency: " + ", ".join(f"{t} {v:.2f}" for t, v in r["overall_fraction"].items()))


def cmd_conflict(args):
    from uniego.analysis import conflict_analysis

    r = conflict_analysis(pairs(args.models), args.out, args.png)
    print("mean gradient-conflict rate: " + ", ".join(f"{m} {v:.2f}" for m, v in r["mean_conflict_rate"].items()))


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("probe", help="linear probe of every teacher's frozen features: train split -> test split "
                       "(what each teacher knows about the task)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--features", nargs="+", required=True, help="TEACHER=features/TEACHER.zarr")
    p.add_argument("--out", required=True, help="probes.json")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("cka", help="linear CKA of every pair of teachers and of proxies (Figure 3)")
    common_args(p)
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

