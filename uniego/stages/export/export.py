"""Export a trained encoder as a self-contained folder (issue 22), for someone who does not run
this pipeline or for a serving stack:

    DIR/model.safetensors   the encoder's weights (the classifier head included)
    DIR/config.json         architecture, preprocessing, class names, provenance, metrics
    DIR/README.md           the model card: the recognition / retrieval / segmentation results
                            from the pipeline's own report files
    DIR/model.onnx          the same network, input [B, 3, T, I, I] -> (features, logits); checked
                            against PyTorch at export (the error is recorded in config.json)

`uniego.load_encoder(DIR)` loads it without the rest of the pipeline (no manifest, no config).
The folder is written beside DIR and moved into place once whole.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uniego.encoder import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, load_encoder
from uniego.errors import UniegoError
from uniego.io import read_json
from uniego.teachers.base import file_sha256
from uniego.version import __version__

ONNX_RTOL = 1e-4   # ONNX against PyTorch: max |difference| / max |PyTorch output|, per output


class FeaturesAndLogits(nn.Module):
    """What the ONNX file computes for one crop view: (CLS feature [B, D], logits [B, C])."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, clip: torch.Tensor):
        h = self.encoder.forward_features(clip)
        return h, self.encoder.head(h)


def _metrics(recognition: str | None, retrieval: str | None, segmentation: str | None) -> dict:
    """The headline numbers of the pipeline's own report files for this model."""
    out = {}
    for kind, path, keys in (("recognition", recognition, ("top1", "top5", "n", "views")),
                             ("retrieval", retrieval, ("mAP", "R@1", "n", "views")),
                             ("segmentation", segmentation, ("F1@10", "F1@25", "F1@50", "Edit", "Acc", "test_videos"))):
        if not path:
            continue
        data = read_json(path, stage="export", rebuild=f"rebuild it (snakemake --forcerun {path})")
        out[kind] = {k: data[k] for k in keys if k in data}
        out[kind]["file"] = str(path)
    return out


def preprocessing(enc) -> dict:
    """What a user must do to a video before the network (config.json's `preprocessing`)."""
    from uniego.student import student_norm

    mean, std = student_norm(enc.student.arch)
    resize = max(enc.student.train_jitter[0], enc.student.input_size)
    return {"clips": dict(enc.clips.__dict__), "input_size": enc.student.input_size, "eval_resize": resize,
            "mean": list(mean), "std": list(std), "crops": enc.crops,
            "steps": [f"sample clips.num_frames frames over the clip ({enc.clips.sampling}), resize them to "
                      f"{enc.clips.size}x{enc.clips.width or enc.clips.size} (uniego.video.resize_crop: cover, then centre crop)",
                      f"scale to [0, 1], resize the short side to {resize}, the long side in proportion (bilinear, antialiased)",
                      f"crop {enc.student.input_size}x{enc.student.input_size}: centred across the long side; first, centre "
                      "and last along it (left, centre, right: 3 crops) or the centre only (1 crop)",
                      "normalise with mean / std per RGB channel; layout [B, 3, T, I, I]",
                      "feature: the mean over the crops of the CLS after the final norm; logits: their sum"]}


def model_card(config: dict) -> str:
    """README.md of the export, from config.json (whose metrics come from the report files)."""
    p, m, pre = config["provenance"], config["metrics"], config["preprocessing"]
    lines = [f"# {config['name']}: a UNIEGO ego video encoder ({config['dataset']})", "",
             f"A {config['architecture']['student']['arch']} ego encoder trained by the uniego pipeline "
             f"({p['kind']}{', ' + p['method'] if p.get('method') else ''}, seed {p['seed']}), exported by uniego "
             f"{config['exported_by']}. It takes {pre['clips']['num_frames']} frames at {pre['input_size']}x{pre['input_size']} "
             f"and predicts {len(config['classes'])} classes; its feature is {config['architecture']['embed_dim']}-d.", "",
             "## Use", "", "```python", "import uniego", "", "enc = uniego.load_encoder(\"THIS_FOLDER\")",
             "features = enc.embed([\"clip.mp4\"])      # [1, D]", "print(enc.predict(\"clip.mp4\", k=3))   # [[(class, probability), ...]]",
             "```", "", "`model.onnx` computes one crop view: input `clip` [B, 3, T, I, I] (preprocessed as config.json's "
             "`preprocessing.steps` say), outputs `features` [B, D] and `logits` [B, C].", ""]
    lines += ["## Results (from the pipeline's report files)", ""]
    if not m:
        lines += ["No report files were given to the export.", ""]
    if "recognition" in m:
        r = m["recognition"]
        lines += ["| recognition | top-1 | top-5 | test clips | views |", "|---|---|---|---|---|",
                  f"| {config['dataset']} test | {r.get('top1', float('nan')):.2f} | {r.get('top5', float('nan')):.2f} | "
                  f"{r.get('n', '')} | {r.get('views', '')} |", ""]
    if "retrieval" in m:
        r = m["retrieval"]
        lines += ["| retrieval | mAP | R@1 |", "|---|---|---|", f"| {config['dataset']} test | {_fmt(r.get('mAP'))} | "
                  f"{_fmt(r.get('R@1'))} |", ""]
    if "segmentation" in m:
        r = m["segmentation"]
        keys = [k for k in ("F1@10", "F1@25", "F1@50", "Edit", "Acc") if k in r]
        lines += ["| segmentation | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|",
                  f"| {config['dataset']} test sessions | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |", ""]
    lines += ["## Provenance", ""] + [f"- {k}: `{v}`" for k, v in p.items()] + [
        "- files: " + ", ".join(f"`{k}` sha256 `{v}`" for k, v in config["files"].items()), ""]
    if "onnx" in config:
        lines += [f"ONNX (opset {config['onnx']['opset']}) matches PyTorch within {config['onnx']['max_relative_error']:.1e} "
                  f"relative on a random batch of {config['onnx']['checked_batch']} (limit {ONNX_RTOL:g}).", ""]
    lines += [f"Classes: {', '.join(config['classes'])}", ""]
    return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def export_onnx(enc, path: Path, *, seed: int = 0) -> dict:
    """Write the ONNX file (dynamic batch) and check it against PyTorch on a batch of another size."""
    try:
        import onnxruntime as ort
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError as e:
        raise UniegoError(f"the ONNX export needs onnx, onnxscript and onnxruntime ({e}): pip install 'uniego[export]', "
                          "or pass --no-onnx", stage="export") from None
    import warnings

    wrapper = FeaturesAndLogits(enc.model).eval()
    c = enc.clips.num_frames
    size = enc.student.input_size
    # batch 2, not 1: torch.export specialises a dimension of size 1, and the file must take any batch
    example = torch.randn(2, 3, c, size, size, generator=torch.Generator().manual_seed(seed))
    opset = 18
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(path), input_names=["clip"], output_names=["features", "logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), dynamo=True, opset_version=opset,
                          verbose=False, external_data=False)
    check = torch.randn(3, 3, c, size, size, generator=torch.Generator().manual_seed(seed + 1))   # another batch size
    try:
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": check.numpy()})
    except Exception as e:   # onnxruntime's errors are its own classes
        raise UniegoError(f"the ONNX export does not run in onnxruntime ({type(e).__name__}: {str(e).splitlines()[0]}): "
                          "export without it (--no-onnx) and report the architecture", stage="export") from None
    with torch.inference_mode():
        want = [t.numpy() for t in wrapper(check)]
    err = max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12)) for g, w in zip(got, want))
    if not err <= ONNX_RTOL:
        raise UniegoError(f"the ONNX export differs from PyTorch by {err:.2e} (relative; limit {ONNX_RTOL:g}): "
                          "export without it (--no-onnx) and report the architecture", stage="export")
    return {"opset": opset, "max_relative_error": err, "checked_batch": int(check.shape[0]), "input": "clip",
            "outputs": ["features", "logits"]}


def export_model(model: str, out: str | Path, *, dataset: str, name: str | None = None, recognition: str | None = None,
                 retrieval: str | None = None, segmentation: str | None = None, config_sha256: str | None = None,
                 onnx: bool = True) -> Path:
    """Write the export folder of a model checkpoint (see the module docstring); returns `out`."""
    from safetensors.torch import save_file

    out = Path(out)
    enc = load_encoder(model, stage="export")
    meta = enc.meta
    metrics = _metrics(recognition, retrieval, segmentation)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        state = {k: v.detach().contiguous().clone() for k, v in enc.model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": EXPORT_FORMAT})
        config = {"format": EXPORT_FORMAT, "format_version": EXPORT_FORMAT_VERSION, "name": name or Path(model).stem, "dataset": dataset,
                  "exported_by": __version__,
                  "architecture": {"student": dict(meta["student"]), "num_frames": meta["num_frames"],
                                   "num_classes": len(enc.classes), "embed_dim": int(enc.model.embed_dim)},
                  "preprocessing": preprocessing(enc), "classes": enc.classes,
                  "provenance": {"checkpoint": str(model), "checkpoint_sha256": file_sha256(model), "kind": meta.get("kind"),
                                 "method": meta.get("method"), "seed": meta.get("seed"),
                                 "manifest_sha256": meta.get("manifest_sha256"), "config_sha256": config_sha256,
                                 "code_version": meta.get("code_version"), "uniego_version": meta.get("uniego_version")},
                  "metrics": metrics}
        if onnx:
            config["onnx"] = export_onnx(enc, tmp / "model.onnx")
        config["files"] = {f.name: file_sha256(f) for f in sorted(tmp.iterdir())}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(config))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
