"""Stage `analysis` (workflow/rules/analysis.smk): its `uniego` commands. (Issue 21 moves the
other analysis commands here from uniego/cli.py; the computations stay in uniego.analysis.)"""

from __future__ import annotations


def _pairs(items: list[str]) -> dict[str, str]:
    from uniego.errors import UniegoError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UniegoError(f"expected TEACHER=PATH, got {item!r}", stage="analysis")
        out[name] = path
    return out


def cmd_probe(args):
    from uniego.analysis import probe_analysis

    r = probe_analysis(args.manifest, _pairs(args.features), args.out)
    print(f"linear probes, test top-1 % (chance {r['chance']:.1f}): "
          + ", ".join(f"{t} {v['top1']:.1f}" for t, v in r["teachers"].items()))


def add_commands(sub, common) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("probe", help="linear probe of every teacher's frozen features: train split -> test split "
                       "(what each teacher knows about the task)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--features", nargs="+", required=True, help="TEACHER=features/TEACHER.zarr")
    p.add_argument("--out", required=True, help="probes.json")
    p.set_defaults(func=cmd_probe)
