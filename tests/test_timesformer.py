"""TimeSformer: key contract with the official checkpoints, equivalence with a naive
reference written here with explicit loops, and the ImageNet-inflation invariant."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from uniego.errors import UniegoError
from uniego.models.timesformer import TimeSformer, load_imagenet_vit, load_official_checkpoint, timesformer_base, timesformer_test

TINY = dict(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=2, num_frames=4)


def randomise(model, seed=0):
    """Every parameter random (temporal_fc and time_embed too, which start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.ndim > 1 else 0.5) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def test_base_key_contract():
    """Facts from the official VisionTransformer: 249 tensors, 121,566,352 parameters with
    a 400-class head, these names and shapes."""
    with torch.device("meta"):
        m = timesformer_base(num_classes=400)
    sd = m.state_dict()
    assert len(sd) == 249
    assert sum(t.numel() for t in sd.values()) == 121_566_352
    expect = {"cls_token": (1, 1, 768), "pos_embed": (1, 197, 768), "time_embed": (1, 8, 768),
              "patch_embed.proj.weight": (768, 3, 16, 16), "blocks.0.attn.qkv.weight": (2304, 768),
              "blocks.11.temporal_attn.qkv.weight": (2304, 768), "blocks.11.temporal_fc.weight": (768, 768),
              "blocks.5.temporal_norm1.bias": (768,), "blocks.3.mlp.fc1.weight": (3072, 768),
              "blocks.3.mlp.fc2.weight": (768, 3072), "norm.weight": (768,), "head.weight": (400, 768)}
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    per_block = {k.split(".", 2)[2] for k in sd if k.startswith("blocks.0.")}
    assert per_block == {f"{m}.{p}" for m in ("norm1", "attn.qkv", "attn.proj", "temporal_norm1", "temporal_attn.qkv",
                                              "temporal_attn.proj", "temporal_fc", "norm2", "mlp.fc1", "mlp.fc2")
                         for p in ("weight", "bias")}


def test_temporal_branch_starts_at_zero():
    m = timesformer_test()
    for blk in m.blocks:
        assert blk.temporal_fc.weight.abs().sum() == 0 and blk.temporal_fc.bias.abs().sum() == 0
    assert m.time_embed.abs().sum() == 0


def test_strict_load_of_official_format_checkpoint(tmp_path):
    src = randomise(TimeSformer(**TINY, num_classes=5), seed=1)
    path = tmp_path / "TimeSformer_divST_tiny.pyth"
    torch.save({"epoch": 15, "model_state": {"model." + k: v for k, v in src.state_dict().items()},
                "optimizer_state": {}, "cfg": "TRAIN:\n  ENABLE: True\n"}, path)
    dst = load_official_checkpoint(TimeSformer(**TINY, num_classes=5), path)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    # a feature extractor (no head) drops only the head
    feat = load_official_checkpoint(TimeSformer(**TINY, num_classes=0), path)
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(feat.eval()(x), src.eval().forward_features(x))
    # a checkpoint of another architecture is refused, naming file and keys
    with pytest.raises(UniegoError, match=r"TimeSformer_divST_tiny.pyth.*(missing|unexpected|shape)"):
        load_official_checkpoint(TimeSformer(**{**TINY, "depth": 3}, num_classes=5), path)


# ---------------------------------------------------------------- naive reference (loops)
def _ln(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _mhsa(seq, sd, prefix, heads):
    """seq: list of [D] tokens -> list of outputs, one head and one query at a time."""
    X = torch.stack(seq)
    D = X.shape[1]
    hd = D // heads
    qkv = X @ sd[prefix + ".qkv.weight"].T + sd[prefix + ".qkv.bias"]
    q, k, v = qkv[:, :D], qkv[:, D:2 * D], qkv[:, 2 * D:]
    out = torch.zeros_like(X)
    for h in range(heads):
        sl = slice(h * hd, (h + 1) * hd)
        for i in range(len(seq)):
            scores = torch.tensor([float(q[i, sl] @ k[j, sl]) / math.sqrt(hd) for j in range(len(seq))], dtype=X.dtype)
            w = torch.softmax(scores, 0)
            out[i, sl] = sum(w[j] * v[j, sl] for j in range(len(seq)))
    out = out @ sd[prefix + ".proj.weight"].T + sd[prefix + ".proj.bias"]
    return list(out)


def reference_forward(sd, x, *, patch, heads, depth):
    """TimeSformer divided space-time, one clip at a time, token by token."""
    B, C, T, H, W = x.shape
    gh, gw = H // patch, W // patch
    N = gh * gw
    outs = []
    for b in range(B):
        tok = {}
        for t in range(T):
            for n in range(N):
                i, j = divmod(n, gw)
                pv = x[b, :, t, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch]
                e = (sd["patch_embed.proj.weight"] * pv).sum(dim=(1, 2, 3)) + sd["patch_embed.proj.bias"]
                tok[n, t] = e + sd["pos_embed"][0, 1 + n] + sd["time_embed"][0, t]
        cls = sd["cls_token"][0, 0] + sd["pos_embed"][0, 0]
        for d in range(depth):
            p = f"blocks.{d}"
            for n in range(N):  # temporal attention per spatial position
                seq = [_ln(tok[n, t], sd[p + ".temporal_norm1.weight"], sd[p + ".temporal_norm1.bias"]) for t in range(T)]
                res = _mhsa(seq, sd, p + ".temporal_attn", heads)
                for t in range(T):
                    tok[n, t] = tok[n, t] + res[t] @ sd[p + ".temporal_fc.weight"].T + sd[p + ".temporal_fc.bias"]
            cls_res = []
            for t in range(T):  # spatial attention per frame, with the clip's CLS
                seq = [_ln(v, sd[p + ".norm1.weight"], sd[p + ".norm1.bias"]) for v in [cls] + [tok[n, t] for n in range(N)]]
                res = _mhsa(seq, sd, p + ".attn", heads)
                cls_res.append(res[0])
                for n in range(N):
                    tok[n, t] = tok[n, t] + res[1 + n]
            cls = cls + sum(cls_res) / T
            def mlp(v):
                h = _ln(v, sd[p + ".norm2.weight"], sd[p + ".norm2.bias"])
                h = F.gelu(h @ sd[p + ".mlp.fc1.weight"].T + sd[p + ".mlp.fc1.bias"])
                return v + h @ sd[p + ".mlp.fc2.weight"].T + sd[p + ".mlp.fc2.bias"]
            cls = mlp(cls)
            tok = {key: mlp(v) for key, v in tok.items()}
        feat = _ln(cls, sd["norm.weight"], sd["norm.bias"])
        outs.append(feat @ sd["head.weight"].T + sd["head.bias"])
    return torch.stack(outs)


def test_matches_naive_reference_with_all_parameters_random():
    torch.manual_seed(0)
    m = randomise(TimeSformer(**TINY, num_classes=3), seed=2).double().eval()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    sd = {k: v.detach() for k, v in m.state_dict().items()}
    assert sd["time_embed"].abs().sum() > 0 and sd["blocks.0.temporal_fc.weight"].abs().sum() > 0
    ref = reference_forward(sd, x, patch=16, heads=2, depth=2)
    with torch.no_grad():
        out = m(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # float32 too, within the same tolerance on the same inputs
    with torch.no_grad():
        out32 = m.float()(x.float())
    torch.testing.assert_close(out32.double(), ref, atol=1e-4, rtol=1e-4)


def test_imagenet_init_on_identical_frames_equals_2d_vit():
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, embed_dim=64, depth=2,
                            num_heads=2, num_classes=5)
    randomise(vit, seed=3)
    m = load_imagenet_vit(TimeSformer(**TINY, num_classes=5), vit.state_dict())
    sd = m.state_dict()
    for d in range(2):
        assert torch.equal(sd[f"blocks.{d}.temporal_attn.qkv.weight"], sd[f"blocks.{d}.attn.qkv.weight"])
        assert torch.equal(sd[f"blocks.{d}.temporal_norm1.weight"], sd[f"blocks.{d}.norm1.weight"])
        assert sd[f"blocks.{d}.temporal_fc.weight"].abs().sum() == 0
    assert sd["time_embed"].abs().sum() == 0
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = vit.eval()(frame)
        for T in (1, 4, 7):
            clip = frame[:, :, None].expand(2, 3, T, 32, 32)
            torch.testing.assert_close(m.eval()(clip), expected, atol=1e-5, rtol=1e-5)


def test_other_input_sizes_use_resized_embeddings():
    m = timesformer_test(num_classes=0).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 6, 64, 48)).shape == (1, 64)
