"""Export (workflow/rules/export.smk): a trained encoder as a self-contained folder,
results/{ds}/export/ (model.safetensors, config.json, the model card README.md, model.onnx),
that `uniego.load_encoder(DIR)` loads without the pipeline. Command: `uniego export`; the
writer is `export.export_model`."""

from __future__ import annotations


def cmd_export(args):
    from uniego.stages.export.export import export_model

    out = export_model(args.model, args.out, dataset=args.dataset, name=args.name, recognition=args.recognition,
                       retrieval=args.retrieval, segmentation=args.segmentation, config_sha256=args.config_sha256,
                       onnx=not args.no_onnx)
    print(f"{out}: " + ", ".join(sorted(f.name for f in out.iterdir())))


def add_commands(sub) -> None:
    """This stage's `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("export", help="write a trained encoder as a self-contained folder (safetensors, config.json, "
                       "model card, ONNX) that uniego.load_encoder(DIR) loads without the pipeline",
                       description="Example: uniego export --model results/demo/uniego.pt --dataset demo --recognition "
                       "results/demo/eval/uniego/recognition.json --out results/demo/export (the Snakemake target "
                       "results/{ds}/export/ passes the report files itself)")
    p.add_argument("--model", required=True, help="a model checkpoint: uniego.pt, a proxy, merge or baseline")
    p.add_argument("--out", required=True, help="the folder to write (written beside it, then moved into place)")
    p.add_argument("--dataset", required=True, help="the dataset the model was trained on (for the model card)")
    p.add_argument("--name", default=None, help="the model's name in the card (default: the checkpoint's stem)")
    p.add_argument("--recognition", default=None, help="the model's recognition.json (top-1 / top-5 in the card)")
    p.add_argument("--retrieval", default=None, help="its retrieval.json")
    p.add_argument("--segmentation", default=None, help="its segmentation.json")
    p.add_argument("--config-sha256", default=None, help="the sha256 of the config it was trained with (provenance)")
    p.add_argument("--no-onnx", action="store_true", help="skip model.onnx (it needs onnx, onnxscript, onnxruntime)")
    p.set_defaults(func=cmd_export)
