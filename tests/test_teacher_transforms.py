"""Each teacher sees its original's eval transform (issue 19, item 2), on non-square frames.

Reference values are written down from the original transforms, run on the same frames:
- DINOv2: `make_classification_eval_transform` in facebookresearch/dinov2, dinov2/data/transforms.py
  (Resize(256, BICUBIC), CenterCrop(224), ToTensor, Normalize(ImageNet)); torchvision 0.29.1, PIL.
- Depth Anything V2: `DepthAnythingV2.image2tensor` in DepthAnything/Depth-Anything-V2,
  depth_anything_v2/dpt.py and util/transform.py (commit 8def443): Resize(width=height=S,
  keep_aspect_ratio, ensure_multiple_of=14, lower_bound, cv2.INTER_CUBIC) of the image / 255.0,
  NormalizeImage(ImageNet), PrepareForNet; run with opencv-python-headless 5.1.0.
- open_clip: the eval transform `create_model_and_transforms` builds from the model's pretrained
  config (`image_transform_v2(PreprocessCfg(**get_pretrained_cfg(name, tag)))`).
"""

import dataclasses

import numpy as np
import pytest
import torch

from uniego.config import TeacherSettings
from uniego.teachers import build_teacher, get_arch
from uniego.teachers.registry import IMAGENET_MEAN, IMAGENET_STD
from uniego.teachers.transforms import depth_anything_eval, depth_anything_size, dinov2_eval


def frame(h, w):
    """A deterministic non-smooth uint8 RGB frame [h, w, 3]."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((y * 37 + x * 11 + c * 71 + (x * y) % 13 * 7) % 256).astype(np.uint8)


def points(H, W):
    return [(0, 0, 0), (1, H // 2, W // 3), (2, H - 1, W - 1), (0, H // 3, W - 2)]


# (frame h, w, input size S) -> (output shape, mean, values at `points`), from the original code
DEPTH_ANYTHING = {
    (45, 80, 56): ((3, 56, 98), 0.2212508512114914, [-2.166152238845825, 0.7973614931106567, 0.27438077330589294, -0.28128665685653687]),
    (90, 160, 56): ((3, 56, 98), 0.22709461872750514, [-1.9161344766616821, -1.548223614692688, -0.20343777537345886, -2.36515212059021]),
    (256, 455, 518): ((3, 518, 924), 0.2267378207453481, [-2.203603744506836, 0.13970741629600525, -2.070482015609741, 1.515114188194275]),
    (80, 45, 56): ((3, 98, 56), 0.2246348014811036, [-2.164774179458618, 1.0411982536315918, -2.249870538711548, 0.6296181678771973]),
}
DINOV2 = {
    (96, 170, 224): ((3, 224, 224), 0.22717690325812545, [-0.13143253326416016, -0.7577030062675476, -1.5430065393447876, 0.14256364107131958]),
    (170, 96, 224): ((3, 224, 224), 0.22951725459828667, [0.348060667514801, -0.33753496408462524, 1.785969614982605, -2.1179039478302]),
}


@pytest.mark.parametrize("case", list(DEPTH_ANYTHING))
def test_depth_anything_transform_equals_the_original(case):
    h, w, S = case
    shape, mean, values = DEPTH_ANYTHING[case]
    assert depth_anything_size(h, w, S) == shape[1:]
    x = depth_anything_eval(frame(h, w)[None], S, IMAGENET_MEAN, IMAGENET_STD)[0]
    assert tuple(x.shape) == shape
    # cv2's bicubic on the float64 image and torch's agree to ~1e-5 of a grey level
    assert float(x.double().mean()) == pytest.approx(mean, abs=1e-6)
    np.testing.assert_allclose([float(x[p]) for p in points(*shape[1:])], values, atol=1e-4)


@pytest.mark.parametrize("case", list(DINOV2))
def test_dinov2_transform_equals_the_original(case):
    from PIL import Image
    from torchvision import transforms as T
    h, w, S = case
    shape, mean, values = DINOV2[case]
    x = dinov2_eval(frame(h, w)[None], S, IMAGENET_MEAN, IMAGENET_STD)[0]
    assert tuple(x.shape) == shape and float(x.double().mean()) == pytest.approx(mean, abs=1e-7)
    np.testing.assert_allclose([float(x[p]) for p in points(*shape[1:])], values, atol=1e-6)
    original = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                          T.ToTensor(), T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    assert torch.equal(x, original(Image.fromarray(frame(h, w))))


@pytest.mark.parametrize("arch,model,tag", [("siglip_so400m_384", "ViT-SO400M-14-SigLIP-384", "webli"),
                                            ("siglip_so400m_224", "ViT-SO400M-14-SigLIP", "webli"),
                                            ("skego_standin_vitb16", "ViT-B-16", "openai")])
def test_open_clip_teachers_use_the_models_own_eval_transform(arch, model, tag):
    """The transform a real open_clip teacher applies equals what open_clip builds for that model's
    pretrained weights (size, resize mode, kernel, mean/std), on a wide and a tall frame."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from uniego.teachers.base import Teacher
    from uniego.teachers.registry import get_teacher
    a = get_arch(arch)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    pp = PreprocessCfg(size=a.input_size, mean=cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN,
                       std=cfg.get("std") or open_clip.OPENAI_DATASET_STD,
                       interpolation=cfg.get("interpolation", "bicubic"), resize_mode=cfg.get("resize_mode", "shortest"))
    assert tuple(pp.mean) == pytest.approx(a.mean) and tuple(pp.std) == pytest.approx(a.std)
    assert a.transform == f"open_clip_{pp.resize_mode}" and pp.interpolation == "bicubic"
    original = image_transform_v2(pp, is_train=False)
    key = "exo_skego" if "skego" in arch else "ego_siglip"
    t = Teacher(get_teacher(key), a, TeacherSettings(key, arch, "random"))
    for h, w in ((120, 213), (213, 120)):
        got = t.transform(frame(h, w)[None])[0]
        assert got.shape == (3, a.input_size, a.input_size)
        assert torch.equal(got, original(Image.fromarray(frame(h, w))))


def test_real_architectures_name_their_originals_transform():
    assert {n: get_arch(n).transform for n in ("dinov2_vitl14", "depth_anything_vitl", "siglip_so400m_384",
                                               "skego_standin_vitb16", "dinov2_test")} == {
        "dinov2_vitl14": "dinov2", "depth_anything_vitl": "depth_anything", "siglip_so400m_384": "open_clip_squash",
        "skego_standin_vitb16": "open_clip_shortest", "dinov2_test": "square"}
    # Depth Anything V2's run.py: `image2tensor(raw_image, args.input_size)`, input_size default 518
    assert get_arch("depth_anything_vitl").input_size == get_arch("depth_anything_vits").input_size == 518


def test_depth_anything_runs_on_the_non_square_grid_as_dinov2_does(tmp_path):
    """A wide frame keeps its aspect (56 x 98 -> a 4 x 7 grid). The tokens equal a transcription of
    the original's forward (dinov2.py prepare_tokens_with_masks: patch embedding, CLS, and
    interpolate_pos_encoding from the checkpoint's grid with scale ((h + 0.1) / M, (w + 0.1) / M),
    bicubic, no antialias; then the blocks and the final norm)."""
    import torch.nn.functional as F

    from uniego.teachers.registry import ARCHS
    arch = dataclasses.replace(get_arch("depth_anything_test"), name="depth_anything_test_original",
                               transform="depth_anything")
    ARCHS[arch.name] = arch
    try:
        torch.manual_seed(0)
        import timm
        kwargs = {k: v for k, v in arch.kwargs.items() if k != "timm_name"}
        src = timm.create_model(arch.kwargs["timm_name"], pretrained=False, num_classes=0, img_size=98, **kwargs)  # 7x7
        with torch.no_grad():
            for p in src.parameters():
                p.copy_(torch.randn_like(p) * 0.1)
        state = {"pretrained." + k: v for k, v in src.state_dict().items()}
        torch.save(state, tmp_path / "depth_anything_tiny.pth")
        t = build_teacher(TeacherSettings("ego_depth", arch.name, str(tmp_path / "depth_anything_tiny.pth")))
        clip = np.stack([frame(45, 80), frame(45, 80)[::-1].copy()])
        x = t.preprocess({"ego": clip})["frames"]
        assert x.shape == (2, 3, 56, 98)
        with torch.no_grad():
            got = t.tokens(x)
            pos = src.pos_embed
            M = 7
            patch = pos[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)
            patch = F.interpolate(patch, scale_factor=((4 + 0.1) / M, (7 + 0.1) / M), mode="bicubic", antialias=False)
            pos_hw = torch.cat([pos[:, :1], patch.permute(0, 2, 3, 1).reshape(1, 28, -1)], 1)
            tok = src.patch_embed.proj(x).flatten(2).transpose(1, 2)
            tok = torch.cat([src.cls_token.expand(2, -1, -1), tok], 1) + pos_hw
            want = src.norm(src.blocks(tok))
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
            feat = t({"frames": x[None]})
        torch.testing.assert_close(feat[0], want[:, 1:].mean(1), rtol=0, atol=1e-6)   # patch_mean pooling
        assert t.provenance()["transform"] == "depth_anything"
    finally:
        ARCHS.pop(arch.name)
