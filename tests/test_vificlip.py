"""The ViFi-CLIP student backbone: CLIP frame encoder, mean over frames, through Level I and the merge."""

import json
import subprocess
import sys

import pytest
import torch

from uniego.config import parse_student
from uniego.errors import UniegoError
from uniego.merge import layer_group
from uniego.models.vificlip import CLIP_MEAN, vificlip_state_dict
from uniego.student import ProxyModel, build_student, student_norm

TINY = {"arch": "vificlip_test", "init": "random", "input_size": 32, "train_jitter": [32, 40]}


def test_feature_is_the_mean_frame_embedding():
    m = build_student(parse_student(TINY), 9, num_frames=4, seed=0).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        h = m.forward_features(x)
        per_frame = torch.stack([m.visual(x[:, :, t]) for t in range(4)], 1)
        torch.testing.assert_close(h, per_frame.mean(1))
        torch.testing.assert_close(m(x), m.head(h))
    assert h.shape == (2, 32) and m.embed_dim == 32 and tuple(m.head.weight.shape) == (9, 32)
    assert student_norm("vificlip_test")[0] == CLIP_MEAN and student_norm("timesformer_test")[0] != CLIP_MEAN
    # OpenAI layer names, grouped per residual block for the layer-wise merge
    keys = list(m.state_dict())
    assert "visual.transformer.resblocks.1.attn.in_proj_weight" in keys and "visual.conv1.weight" in keys
    assert layer_group("visual.transformer.resblocks.1.mlp.c_fc.weight") == "visual.transformer.resblocks.1"
    assert layer_group("blocks.3.attn.qkv.weight") == "blocks.3" and layer_group("visual.conv1.weight") == "visual.conv1"


def test_vificlip_checkpoint_is_a_prefix_rename(tmp_path):
    src = build_student(parse_student(TINY), 9, num_frames=4, seed=1)
    vifi = {"model": {"module.image_encoder." + k[len("visual."):]: v for k, v in src.state_dict().items() if k.startswith("visual.")}}
    vifi["model"]["module.text_encoder.token_embedding.weight"] = torch.zeros(3, 2)
    vifi["model"]["module.logit_scale"] = torch.tensor(4.6)
    torch.save(vifi, tmp_path / "vifi.pth")
    m = build_student(parse_student({**TINY, "init": str(tmp_path / "vifi.pth")}), 5, num_frames=8, seed=2)
    for k, v in src.state_dict().items():
        if k.startswith("visual."):
            assert torch.equal(m.state_dict()[k], v), k
    assert tuple(m.head.weight.shape) == (5, 32)
    with pytest.raises(UniegoError, match="no image-encoder weights"):
        vificlip_state_dict({"model": {"module.text_encoder.x": torch.zeros(1)}})
    with pytest.raises(UniegoError, match="TimeSformer students only"):
        build_student(parse_student({**TINY, "patch_size": 8}), 5, num_frames=4)


def test_vificlip_proxy_trains_through_the_cli(tiny_data, tmp_path):
    """Level I with the ViFi-CLIP student, end to end on the tiny demo (one epoch)."""
    from uniego.config import ComputeSettings, TeacherSettings
    from uniego.stages.teachers.extract import extract
    feats = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / "exo_skl.zarr", TeacherSettings("exo_skl", "stgcn_test", "random"),
                    compute=ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4))
    settings = {"student": TINY, "train": {"epochs": 1, "lr": 0.01, "lr_steps": [0], "lr_factors": [1.0], "momentum": 0.9,
                                           "nesterov": True, "weight_decay": 1e-4, "batch_size": 4, "accumulate": 1},
                "level1": {"lambda_feat": 5.0, "lambda_cls": 1.0, "projection": "student"}, "seed": 0, "teacher": "exo_skl"}
    r = subprocess.run([sys.executable, "-m", "uniego", "train-proxy", "--settings", json.dumps(settings), "--teacher", "exo_skl",
                        "--manifest", str(tiny_data["manifest"]), "--clips", tiny_data["clips"]["ego"], "--features", str(feats),
                        "--out", str(tmp_path / "p.pt"), "--workers", "0", "--device", "cpu", "--precision", "fp32"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(tmp_path / "p.pt", weights_only=True)
    assert "visual.transformer.resblocks.0.ln_1.weight" in ck["encoder"] and tuple(ck["proj"]["weight"].shape) == (16, 32)
    assert ProxyModel(build_student(parse_student(TINY), 9, num_frames=4), 16, "student").proj.weight.shape == (16, 32)
    # issue 22: load_encoder takes the ViFi-CLIP proxy; its features are the mean over the three test crops
    import numpy as np
    import zarr

    import uniego
    from uniego.data import make_view
    enc = uniego.load_encoder(tmp_path / "p.pt", clips={"num_frames": 4, "size": 48, "sampling": "uniform", "stride": 2})
    clips = np.asarray(zarr.open_group(tiny_data["clips"]["ego"], mode="r")["frames"][:3])
    feats, logits = enc.forward_clips(clips)
    assert feats.shape == (3, 32) and logits.shape == (3, 9)
    with torch.inference_mode():
        views = [torch.stack([make_view(c, enc.student, train=False, crop=k, mean=CLIP_MEAN, std=student_norm("vificlip_test")[1])
                              for c in clips]) for k in range(3)]
        want = torch.stack([enc.model.forward_features(v) for v in views]).mean(0)
    np.testing.assert_allclose(feats, want.numpy(), rtol=1e-5, atol=1e-6)


def test_vificlip_students_merge_layerwise_and_distil(tiny_data, tmp_path):
    from uniego.config import ComputeSettings, TeacherSettings
    from uniego.stages.level1.proxies import export_proxy_outputs, train_proxy
    from uniego.stages.level2.distillation import run_spd
    from uniego.stages.level2.merging import run_merge
    from uniego.stages.teachers.extract import extract
    cpu = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)
    train = {"epochs": 1, "lr": 0.01, "lr_steps": [0], "lr_factors": [1.0], "momentum": 0.9, "nesterov": True,
             "weight_decay": 1e-4, "batch_size": 4, "accumulate": 1}
    paths, outputs = {}, {}
    for i, (t, arch) in enumerate((("exo_skl", "stgcn_test"), ("ego_dino", "dinov2_test"))):
        feats = extract(tiny_data["manifest"], tiny_data["clips"], tmp_path / f"{t}.zarr", TeacherSettings(t, arch, "random"), compute=cpu)
        s = {"student": TINY, "train": train, "level1": {"lambda_feat": 5.0, "lambda_cls": 1.0, "projection": "teacher"},
             "seed": i, "teacher": t}
        paths[t] = str(train_proxy(tiny_data["manifest"], tiny_data["clips"]["ego"], str(feats), str(tmp_path / f"{t}.pt"), s, compute=cpu))
        outputs[t] = str(export_proxy_outputs(tiny_data["manifest"], tiny_data["clips"]["ego"], paths[t],
                                              str(tmp_path / f"{t}.outputs.zarr"), {"student": TINY}, compute=cpu))
    merged = run_merge(tiny_data["manifest"], tiny_data["clips"]["ego"], paths, "layer", tmp_path / "layer.pt",
                       {"student": TINY, "merge": {"lr": 0.02, "weight_decay": 0.01, "epochs": 1, "batch_size": 4},
                        "teachers": list(paths), "seed": 0}, compute=cpu)
    groups = torch.load(merged, weights_only=True)["meta"]["alpha"]["groups"]
    assert "visual.transformer.resblocks.0" in groups and "visual.transformer.resblocks.1" in groups and "head" in groups
    spd = {"init": "layer", "k": 1, "mode": "topk", "beta_feat": 5.0, "beta_logit": 1.0, "beta_cls": 1.0, "tau": 1.0,
           "student_ce_filter": False, "ce_cap": None, "normalize": "paper", "micro_batch": None, "feature_projection": False}
    out = torch.load(run_spd(tiny_data["manifest"], tiny_data["clips"]["ego"], str(merged), outputs, tmp_path / "uniego.pt",
                             {"student": TINY, "train": train, "spd": spd, "teachers": list(paths), "seed": 0}, compute=cpu),
                     weights_only=True)
    assert out["meta"]["method"] == "uniego" and "visual.ln_post.weight" in out["encoder"]


def test_vificlip_student_exports_to_onnx(tmp_path):
    """Issue 22: the ONNX export's own check (another batch size, onnxruntime against PyTorch) holds for the
    ViFi-CLIP student too, and the file's outputs are the student's features and logits."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort

    from uniego.config import ClipSettings
    from uniego.encoder import Encoder
    from uniego.stages.export.export import ONNX_RTOL, export_onnx

    student = parse_student(TINY)
    model = build_student(student, 5, num_frames=4, seed=3)
    enc = Encoder(model, student=student, clips=ClipSettings(num_frames=4, size=32, sampling="uniform", stride=2),
                  classes=[f"c{i}" for i in range(5)])
    check = export_onnx(enc, tmp_path / "model.onnx", seed=0)
    assert check["max_relative_error"] <= ONNX_RTOL and check["checked_batch"] == 3 and check["outputs"] == ["features", "logits"]
    x = torch.randn(4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(9))
    features, logits = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"clip": x.numpy()})
    with torch.inference_mode():
        h = model.eval().forward_features(x)
        z = model.head(h)
    assert features.shape == (4, 32) and logits.shape == (4, 5)
    assert np.abs(features - h.numpy()).max() <= 1e-4 * np.abs(h.numpy()).max()
    assert np.abs(logits - z.numpy()).max() <= 1e-4 * np.abs(z.numpy()).max()
