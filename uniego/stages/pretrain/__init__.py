"""Stage `pretrain` (workflow/rules/pretrain.smk): the demo's pretraining corpus, the stand-in
teachers trained on it, and the shared student start (issue 18). This module holds the stage's
`uniego` commands (torch-free until one runs); the runners are in `train`.

  uniego demo-corpus  -> data/corpus_{name}/          (uniego.demo.corpus)
  uniego pretrain     -> results/pretrain/{name}/{arch}.pth   a stand-in teacher, in the real
                         model's checkpoint format (uniego.standins), with {arch}.pth.json
                         beside it: what it was trained on, how, and its losses per epoch
                      -> results/pretrain/{name}/student.pt   the student start every proxy,
                         baseline and SPD run fine-tunes from (the ImageNet analogue)
"""

from __future__ import annotations


def cmd_demo_corpus(args):
    from uniego.config import from_dict
    from uniego.demo.corpus import CorpusPreset, generate_corpus
    from uniego.stages import stage_settings_from_args

    s = stage_settings_from_args(args, "demo_corpus", pretrain=args.name)
    generate_corpus(args.out, from_dict(CorpusPreset, s["corpus"], where=f"pretrain.{s['name']}.corpus"),
                    seed=s["seed"], workers=args.workers, code_version=args.code_version)


def cmd_pretrain(args):
    import torch

    from uniego.stages import stage_settings_from_args
    from uniego.stages.pretrain.train import run_pretrain

    s = stage_settings_from_args(args, "pretrain", pretrain=args.name)
    torch.set_num_threads(max(1, args.threads))
    out = run_pretrain(args.corpus, args.target, args.out, s, code_version=args.code_version)
    print(f"{out}: {args.target} trained on {args.corpus}")


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    from uniego.stages import common_args

    p = sub.add_parser("demo-corpus", help="render the demo's pretraining corpus (disjoint from the demo dataset)")
    common_args(p, dataset=False)
    p.add_argument("--name", default="demo", help="the config's pretrain.<name> entry (with --config)")
    p.add_argument("--out", required=True, help="corpus folder to write (staged, then moved)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo_corpus)

    p = sub.add_parser("pretrain", help="train a demo stand-in teacher (in its real checkpoint format) or the "
                       "shared student start on the corpus")
    common_args(p, dataset=False)
    p.add_argument("--name", default="demo", help="the config's pretrain.<name> entry (with --config)")
    p.add_argument("--corpus", required=True, help="the corpus folder (uniego demo-corpus)")
    p.add_argument("--target", required=True, help="a tiny teacher architecture (dinov2_test, depth_anything_test, "
                   "siglip_test, skego_standin_test) or `student`")
    p.add_argument("--out", required=True, help="the checkpoint to write ({out}.json beside it)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (throughput only)")
    p.set_defaults(func=cmd_pretrain)
