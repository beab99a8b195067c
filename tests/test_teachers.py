"""Every teacher builds on its real architecture and yields its documented feature size;
checkpoints in each family's foreign format load strictly."""

import numpy as np
import open_clip
import pytest
import timm
import torch

from uniego.config import TeacherSettings
from uniego.errors import UniegoError
from uniego.models.stgcn import stgcn_coco
from uniego.models.timesformer import timesformer_base
from uniego.teachers import ARCHS, TEACHERS, build_teacher, get_arch, get_teacher
from uniego.teachers.base import load_state_file
from uniego.teachers.registry import ArchSpec, register_arch

TEST_ARCH = {"dinov2": "dinov2_test", "depth_anything": "depth_anything_test", "siglip": "siglip_test",
             "timesformer": "timesformer_test", "stgcn": "stgcn_test", "skego": "skego_standin_test"}


def sample(T=4, S=48, seed=0):
    rng = np.random.default_rng(seed)
    sk = np.concatenate([rng.uniform([20, 10], [60, 60], (16, 17, 2)), rng.uniform(0.5, 1, (16, 17, 1))], -1)
    return {"ego": rng.integers(0, 255, (T, S, S, 3), dtype=np.uint8), "exo": rng.integers(0, 255, (T, S, S, 3), dtype=np.uint8),
            "skeleton": sk.astype(np.float32), "skeleton_img_hw": np.array([64, 84]), "skeleton_clips": 1}


def run(teacher, s):
    batch = {k: v[None] for k, v in teacher.preprocess(s).items()}
    with torch.no_grad():
        return teacher(batch)


def test_registry_has_the_nine_table1_teachers():
    assert sorted(TEACHERS) == sorted(["ego_dino", "exo_dino", "ego_siglip", "exo_siglip", "ego_depth", "exo_depth",
                                       "exo_rgb", "exo_skl", "exo_skego"])
    assert TEACHERS["exo_skego"].stand_in and not TEACHERS["exo_dino"].stand_in
    with pytest.raises(ValueError, match="twice"):
        register_arch(ArchSpec("dinov2_test", "dinov2", {}, 1, 1, (0,) * 3, (1,) * 3, True, "cls", ("cls",)))
    with pytest.raises(UniegoError, match="known teachers: ego_dino"):
        get_teacher("exo_flow")
    with pytest.raises(UniegoError, match="dinov2_vitl14"):
        get_arch("dinov3")


@pytest.mark.parametrize("key", sorted(TEACHERS))
def test_every_teacher_builds_and_yields_its_feature_dim(key):
    spec = get_teacher(key)
    arch = ARCHS[TEST_ARCH[spec.family]]
    t = build_teacher(TeacherSettings(key, arch.name, "random"))
    out = run(t, sample())
    expected = (1, 4, arch.feature_dim) if arch.per_frame else (1, arch.feature_dim)
    assert tuple(out.shape) == expected and torch.isfinite(out).all()
    prov = t.provenance()
    assert prov["stand_in"] is True and "random" in prov["stand_in_reason"]  # random weights are labelled
    assert prov["feature_dim"] == arch.feature_dim and len(prov["state_sha256"]) == 64
    # deterministic: same seed, same weights and features; another seed, other weights
    again = build_teacher(TeacherSettings(key, arch.name, "random"))
    torch.testing.assert_close(run(again, sample()), out)
    assert build_teacher(TeacherSettings(key, arch.name, "random"), seed=1).provenance()["state_sha256"] != prov["state_sha256"]


def test_full_size_architectures_have_the_documented_dims():
    """The paper-size networks, built on the meta device (no memory, no weights)."""
    dims = {}
    for name, arch in ARCHS.items():
        if arch.test:
            continue
        if arch.family in ("dinov2", "depth_anything"):
            with torch.device("meta"):
                m = timm.create_model(arch.kwargs["timm_name"], pretrained=False, num_classes=0, img_size=arch.input_size)
                dims[name] = m.forward_features(torch.empty(1, 3, arch.input_size, arch.input_size))[:, 0].shape[-1]
        elif arch.family in ("siglip", "skego"):
            m = open_clip.create_model(arch.kwargs["model_name"], pretrained=None, device="meta")
            dims[name] = m.visual(torch.empty(1, 3, arch.input_size, arch.input_size, device="meta")).shape[-1]
        elif arch.family == "timesformer":
            with torch.device("meta"):
                dims[name] = timesformer_base()(torch.empty(1, 3, 8, 224, 224)).shape[-1]
        else:
            dims[name] = stgcn_coco().eval()(torch.randn(1, 1, 32, 17, 3)).shape[-1]
        assert dims[name] == arch.feature_dim, name
    assert dims == {"dinov2_vitl14": 1024, "dinov2_vitb14": 768, "dinov2_vits14": 384, "depth_anything_vitl": 1024,
                    "depth_anything_vits": 384, "siglip_so400m_384": 1152, "siglip_so400m_224": 1152,
                    "timesformer_base": 768, "stgcn_coco": 256, "skego_standin_vitb16": 512}


def _tiny_dinov2_original(img_size, depth):
    """An original-format (facebookresearch/dinov2) state dict: timm names plus mask_token."""
    m = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=img_size,
                          embed_dim=64, depth=depth, num_heads=2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m, {**m.state_dict(), "mask_token": torch.zeros(1, 64)}


def test_dinov2_original_checkpoint_loads_exactly(tmp_path):
    ref, state = _tiny_dinov2_original(56, 2)
    torch.save(state, tmp_path / "dinov2_tiny_pretrain.pth")
    t = build_teacher(TeacherSettings("exo_dino", "dinov2_test", str(tmp_path / "dinov2_tiny_pretrain.pth")))
    s = sample(S=56)
    x = t.preprocess(s)["frames"]
    with torch.no_grad():
        torch.testing.assert_close(run(t, s)[0], ref.eval().forward_features(x)[:, 0], rtol=0, atol=0)
    prov = t.provenance()
    assert prov["weights_sha256"] and prov["stand_in"] is True  # real weights, but a tiny architecture
    from uniego.teachers.registry import get_teacher
    assert prov["stand_in_reason"] == f"tiny test architecture dinov2_test, not {get_teacher('exo_dino').paper_model}"


def test_full_architecture_with_real_weights_is_no_stand_in():
    from uniego.teachers.base import Teacher
    from uniego.teachers.registry import get_arch, get_teacher
    full = Teacher(get_teacher("exo_dino"), get_arch("dinov2_vitl14"), TeacherSettings("exo_dino", "dinov2_vitl14", "hub:x"))
    assert full._stand_in_reason() is None
    skego = Teacher(get_teacher("exo_skego"), get_arch("skego_standin_vitb16"),
                    TeacherSettings("exo_skego", "skego_standin_vitb16", "hub:openai"))
    assert "STAND-IN for Sk-Ego" in skego._stand_in_reason()


def test_dinov2_pos_embed_is_resized_the_dinov2_way(tmp_path):
    _, state = _tiny_dinov2_original(98, 2)  # trained at a 7x7 grid, used at 4x4
    state["pos_embed"] = torch.cat([state["pos_embed"][:, :1], torch.full((1, 49, 64), 0.25)], 1)
    torch.save(state, tmp_path / "big.pth")
    t = build_teacher(TeacherSettings("ego_dino", "dinov2_test", str(tmp_path / "big.pth")))
    pos = t.model.pos_embed
    assert pos.shape == (1, 17, 64)
    torch.testing.assert_close(pos[:, 1:], torch.full((1, 16, 64), 0.25))  # bicubic keeps a constant
    torch.testing.assert_close(pos[:, 0], state["pos_embed"][:, 0])


def test_depth_anything_checkpoint_encoder_keys(tmp_path):
    ref, state = _tiny_dinov2_original(56, 4)
    ckpt = {"pretrained." + k: v for k, v in state.items()}
    ckpt.update({"depth_head.projects.0.weight": torch.zeros(8, 64, 1, 1), "depth_head.scratch.output_conv2.0.bias": torch.zeros(4)})
    torch.save(ckpt, tmp_path / "depth_anything_v2_tiny.pth")
    t = build_teacher(TeacherSettings("ego_depth", "depth_anything_test", str(tmp_path / "depth_anything_v2_tiny.pth")))
    s = sample(S=56)
    with torch.no_grad():
        tokens = ref.eval().forward_features(t.preprocess(s)["frames"])
    torch.testing.assert_close(run(t, s)[0], tokens[:, 1:].mean(1))  # patch_mean pooling
    torch.save(state, tmp_path / "not_depth.pth")
    with pytest.raises(UniegoError, match="pretrained"):
        build_teacher(TeacherSettings("ego_depth", "depth_anything_test", str(tmp_path / "not_depth.pth")))


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, state = _tiny_dinov2_original(56, 3)  # depth 3, arch expects 2
    torch.save(state, tmp_path / "deeper.pth")
    with pytest.raises(UniegoError, match=r"deeper.pth.*unexpected keys: blocks\.2\."):
        build_teacher(TeacherSettings("exo_dino", "dinov2_test", str(tmp_path / "deeper.pth")))


def test_stgcn_teacher_loads_pyskl_checkpoint(tmp_path):
    from uniego.models.stgcn import stgcn_test
    src = stgcn_test(num_classes=9)
    with torch.no_grad():
        for p in src.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    torch.save({"meta": {}, "state_dict": {("backbone." + k if not k.startswith("cls_head") else k): v
                                           for k, v in src.state_dict().items()}}, tmp_path / "stgcn.pth")
    t = build_teacher(TeacherSettings("exo_skl", "stgcn_test", str(tmp_path / "stgcn.pth")))
    s = sample()
    x = t.preprocess(s)["skeleton"]
    assert x[..., :2].abs().max() <= 1.0  # PreNormalize2D
    with torch.no_grad():
        torch.testing.assert_close(run(t, s)[0], src.eval().forward_features(x)[0])   # x: [1 clip, M, T, V, C]


def test_siglip_teacher_loads_open_clip_checkpoint(tmp_path):
    from uniego.teachers.clip_frames import create_open_clip
    arch = ARCHS["siglip_test"]
    model = create_open_clip(arch, TeacherSettings("ego_siglip", "siglip_test", "random"), 56)
    torch.save(model.state_dict(), tmp_path / "siglip_tiny.pt")
    t = build_teacher(TeacherSettings("ego_siglip", "siglip_test", str(tmp_path / "siglip_tiny.pt")))
    s = sample(S=56)
    with torch.no_grad():
        ref = model.eval().encode_image(t.preprocess(s)["frames"])
    torch.testing.assert_close(run(t, s)[0], ref)


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    torch.save({"state_dict": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UniegoError, match="weights_only"):
        build_teacher(TeacherSettings("exo_skl", "stgcn_test", str(tmp_path / "evil.pth")))


def test_missing_weights_file_names_the_config_key(tmp_path):
    with pytest.raises(UniegoError, match=r"teachers\.exo_rgb\.weights: file .*nope.pyth does not exist"):
        build_teacher(TeacherSettings("exo_rgb", "timesformer_test", str(tmp_path / "nope.pyth")))


def test_skego_crop_follows_the_skeleton():
    from uniego.teachers.clip_frames import skeleton_box
    sk = np.zeros((4, 17, 3), np.float32)
    sk[..., 0], sk[..., 1], sk[..., 2] = 42.0, 32.0, 1.0  # all joints at the image centre (84x64 px)
    sk[0, 0, :2] = (42, 12)
    sk[0, 15, :2] = (42, 52)
    t, l, b, r = skeleton_box(sk, (64, 84), 48)
    # joints span y 12..52 px of a 64x84 frame -> 9..39 in the 48-px crop; x is the centre (24)
    assert t <= 9 - 3 and b >= 39 + 3 and l < 24 < r  # covers head to ankles with a margin
    assert (b - t) == (r - l)  # square (not clipped here)
    # a wide cache (clips.width): the box sits over the joints anywhere in the whole frame, here at the
    # right edge of a 64 x 112 video cached at 32 x 56 (scale 1/2), outside the centre 32 x 32 square
    sk[..., 0], sk[..., 1] = 100.0, 32.0
    sk[0, 0, :2], sk[0, 15, :2] = (100, 20), (100, 44)
    t, l, b, r = skeleton_box(sk, (64, 112), (32, 56))
    # joints at x 50, y 10..22 of the cache: half-side 6 * 1.15 + 2 = 8.9 around (50, 16), clipped at the
    # right edge; the centre square spans x 12..44, so the old square-only box could not reach them
    assert (t, l, b, r) == (7, 41, 25, 56)
    sk[..., 2] = 0.1
    with pytest.raises(UniegoError, match="confidence"):
        skeleton_box(sk, (64, 84), 48)


def test_a_pyskl_style_checkpoint_with_numpy_metadata_loads(tmp_path):
    """mmcv / pyskl checkpoints keep numpy scalars and arrays in `meta` (e.g. hook_msgs' best
    score), pickled under numpy 1's names (numpy.core.multiarray.*) or numpy 2's: they load with
    weights_only=True, whose allowlist then holds just those numpy objects (issue 19)."""
    import zipfile

    from uniego.models.stgcn import stgcn_test
    state = {f"backbone.{k}": v for k, v in stgcn_test().state_dict().items()}
    meta = {"epoch": np.int64(16), "hook_msgs": {"best_score": np.float64(0.87)}, "flops": np.float32(1.5),
            "hist": np.arange(4), "mmcv_version": "1.5.0", "CLASSES": ["a", "b"]}
    torch.save({"meta": meta, "state_dict": state}, tmp_path / "numpy2.pth")
    # the same file as numpy 1 writes it: GLOBAL opcodes name `numpy.core.multiarray` (newline-terminated, so a
    # byte replacement keeps the pickle valid)
    with zipfile.ZipFile(tmp_path / "numpy2.pth") as src, zipfile.ZipFile(tmp_path / "numpy1.pth", "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            dst.writestr(item, data)
    for name in ("numpy2.pth", "numpy1.pth"):
        obj = load_state_file(tmp_path / name, key="exo_skl")
        assert obj["meta"]["hook_msgs"]["best_score"] == np.float64(0.87) and obj["meta"]["hist"].tolist() == [0, 1, 2, 3]
        teacher = build_teacher(TeacherSettings("exo_skl", "stgcn_test", str(tmp_path / name)))
        assert teacher.spec.key == "exo_skl"


def test_dinov2_from_the_hub_equals_the_same_weights_from_a_file(tmp_path, monkeypatch):
    """`hub:<timm DINOv2>` resizes the positional embedding as DINOv2 does (bicubic, +0.1
    offset), like a checkpoint file: same weights, same features, bit for bit (issue 19). The
    hub download is replaced by the same weights from a local file (timm's pretrained_cfg file)."""
    from uniego.teachers.vit_frames import dinov2_resize_pos_embed
    arch = get_arch("dinov2_test")
    kwargs = {k: v for k, v in arch.kwargs.items() if k != "timm_name"}
    native = timm.create_model(arch.kwargs["timm_name"], pretrained=False, num_classes=0, **kwargs)   # 518 px: 37x37
    with torch.no_grad():
        for p in native.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    torch.save(native.state_dict(), tmp_path / "weights.pth")
    real_create = timm.create_model

    def create(name, pretrained=False, **kw):   # "download" = the file above
        return real_create(name, pretrained=pretrained, **kw,
                           **({"pretrained_cfg_overlay": {"file": str(tmp_path / "weights.pth")}} if pretrained else {}))
    monkeypatch.setattr(timm, "create_model", create)
    hub = build_teacher(TeacherSettings("exo_dino", "dinov2_test", f"hub:{arch.kwargs['timm_name']}"))
    path = build_teacher(TeacherSettings("exo_dino", "dinov2_test", str(tmp_path / "weights.pth")))
    grid = hub.input_size // 14
    assert grid != 37   # the demo size: the embedding is resized
    for a, b in zip(hub.model.state_dict().values(), path.model.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(hub.model.pos_embed, dinov2_resize_pos_embed(native.pos_embed.detach(), grid))
    frames = torch.rand(1, 2, 3, hub.input_size, hub.input_size)
    with torch.no_grad():
        assert torch.equal(hub({"frames": frames}), path({"frames": frames}))
