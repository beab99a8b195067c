"""8. GPU benchmark, one prepared script for a CUDA machine (ready for an H200):

  python benchmarks/gpu.py                # the real sizes, about 3 minutes on an H200
  python benchmarks/gpu.py --smoke        # tiny sizes, runs anywhere (CPU too): checks the script

- TimeSformer-B (8 x 224) training clips/s: fp32 eager attention vs bf16 autocast with fused
  attention (SDPA), and bf16 + torch.compile when it compiles;
- DINOv2-L/14 extraction frames/s in bf16 (the ego/exo_dino teachers at 224 px), and the
  fraction of the measured bf16 matmul peak its FLOPs reach.
Prints a Markdown table and writes benchmarks/gpu_latest.json. Random weights (speed only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, *, warmup: int, iters: int) -> float:
    """Seconds per call (mean over `iters` after `warmup`)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


def matmul_peak(device, n: int, iters: int) -> float:
    """Measured bf16 matmul TFLOP/s on n x n matrices."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    t = timed(lambda: a @ b, device, warmup=3, iters=iters)
    return 2 * n ** 3 / t / 1e12


def timesformer_training(device, *, batch, size, frames, smoke, iters) -> list[dict]:
    from uniego.models import timesformer as tsf

    builder = tsf.timesformer_test if smoke else tsf.timesformer_base
    rows = []
    for name, bf16, fused, compiled in (("fp32, eager attention", False, False, False),
                                        ("bf16 autocast, fused attention", True, True, False),
                                        ("bf16 autocast, fused attention, torch.compile", True, True, True)):
        torch.manual_seed(0)
        model = builder(img_size=size, num_frames=frames, num_classes=24).to(device)
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = fused
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, 3, frames, size, size, device=device)
        y = torch.randint(0, 24, (batch,), device=device)
        step_model = torch.compile(model) if compiled else model
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 and device.type == "cuda" else nullcontext()

        def step():
            with amp:
                loss = F.cross_entropy(step_model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        try:
            t = timed(step, device, warmup=3 if not compiled else 5, iters=iters)
        except Exception as e:  # torch.compile may not support this setup: report, do not hide
            rows.append({"what": f"TimeSformer training, {name}", "value": None, "unit": "clips/s",
                         "note": f"failed: {type(e).__name__}: {str(e)[:120]}"})
            continue
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        rows.append({"what": f"TimeSformer training, {name}", "value": batch / t, "unit": "clips/s",
                     "note": f"batch {batch}, {frames} x {size} px; peak memory {peak:.1f} GiB"})
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
    return rows


def dinov2_extraction(device, *, batch, smoke, iters, peak_tflops) -> list[dict]:
    import timm

    name = "vit_small_patch14_dinov2" if smoke else "vit_large_patch14_dinov2"
    size = 56 if smoke else 224
    model = timm.create_model(name, pretrained=False, img_size=size, num_classes=0).to(device).eval()
    x = torch.randn(batch, 3, size, size, device=device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def fwd():
        with torch.inference_mode(), amp:
            model(x)
    t = timed(fwd, device, warmup=3, iters=iters)
    tokens = (size // 14) ** 2 + 1
    params = sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks."))
    depth, dim = len(model.blocks), model.embed_dim
    flops = batch * (2 * params * tokens + depth * 4 * tokens * tokens * dim)   # linear layers + attention matmuls
    achieved = flops / t / 1e12
    return [{"what": f"DINOv2 {'S' if smoke else 'L'}/14 extraction, bf16", "value": batch / t, "unit": "frames/s",
             "note": f"batch {batch} at {size} px: {achieved:.0f} TFLOP/s = {achieved / peak_tflops:.2f} of the measured "
                     f"matmul peak {peak_tflops:.0f} TFLOP/s"}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (any device): check that the script runs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "gpu_latest.json"))
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        ap.error("no CUDA device: run with --smoke to check the script on CPU")
    torch.backends.cuda.matmul.allow_tf32 = False   # fp32 means fp32
    smoke = args.smoke
    iters = 2 if smoke else 20
    peak = matmul_peak(device, 512 if smoke else 8192, iters)
    rows = [{"what": "matmul peak, bf16" if device.type == "cuda" else "matmul, fp32 (CPU)", "value": peak,
             "unit": "TFLOP/s", "note": f"{512 if smoke else 8192}^3"}]
    rows += timesformer_training(device, batch=2 if smoke else 16, size=64 if smoke else 224, frames=8, smoke=smoke, iters=iters)
    rows += dinov2_extraction(device, batch=4 if smoke else 256, smoke=smoke, iters=iters, peak_tflops=peak)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}{' (smoke sizes)' if smoke else ''}\n")
    print("| measurement | value | unit | note |\n|---|---:|---|---|")
    for r in rows:
        value = "-" if r["value"] is None else f"{r['value']:.1f}"
        print(f"| {r['what']} | {value} | {r['unit']} | {r['note']} |")
    Path(args.out).write_text(json.dumps({"device": name, "torch": torch.__version__, "smoke": smoke,
                                          "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
