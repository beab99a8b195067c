"""Using a trained encoder (issue 22), outside the DAG: `uniego predict VIDEO... --model M`.
The encoder and its preprocessing are `uniego.encoder` (`uniego.load_encoder`)."""

from __future__ import annotations

import json


def cmd_predict(args):
    from uniego.encoder import load_encoder

    enc = load_encoder(args.model, crops=args.crops, device="cuda" if args.device == "cuda" else "cpu")
    results = [{"video": v, "top": [{"class": c, "probability": p} for c, p in top]}
               for v, top in zip(args.videos, enc.predict(list(args.videos), k=args.k))]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    width = max(len(v) for v in args.videos)
    for r in results:
        print(f"{r['video']:<{width}}  " + "   ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"]))


def add_commands(sub) -> None:
    """These `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("predict", help="classify videos with a trained model: the top classes and their probabilities",
                       description="Each video is one clip, decoded and viewed as the evaluation does (the clip settings "
                       "and student settings come from the checkpoint). Example: uniego predict clip.mp4 --model "
                       "results/demo/uniego.pt")
    p.add_argument("videos", nargs="+", help="video files, each one clip")
    p.add_argument("--model", required=True, help="a model checkpoint: uniego.pt, a proxy, merge or baseline")
    p.add_argument("-k", type=int, default=5, help="classes to show per video")
    p.add_argument("--crops", type=int, default=3, choices=[1, 3], help="test crops (the evaluation's eval.spatial_crops)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=cmd_predict)
