"""Registry of teacher keys (the paper's Table 1) and of architectures (full and *_test).

The teacher key fixes what the teacher sees (view, modality, clip caches) and which family
of models may serve it; the architecture fixes the network, its input size, preprocessing
(mean/std travel with the architecture, as timm's pretrained cfgs do) and its feature size.
config.yaml picks an architecture and weights per teacher; nothing else can be overridden.
"""

from __future__ import annotations

import dataclasses

from uniego.errors import UniegoError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    key: str
    view: str                 # ego | exo
    modality: str             # rgb | depth | skeleton
    family: str               # dinov2 | depth_anything | siglip | timesformer | stgcn | skego
    inputs: tuple[str, ...]   # clip caches it reads: ego, exo, skeleton
    paper_model: str          # as Table 1 names it
    stand_in: bool = False    # not the paper's model (its code or weights are unreleased)


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str
    kwargs: dict              # what the family's builder needs (timm / open_clip names, sizes)
    feature_dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    per_frame: bool           # features [T, D] per clip (else one [D] per clip)
    pooling: str              # default pooling
    poolings: tuple[str, ...]
    test: bool = False        # tiny variant for tests and the demo (random weights are fine)
    description: str = ""
    transform: str = "square"  # the original's eval transform (uniego.teachers.transforms)


TEACHERS: dict[str, TeacherSpec] = {}
ARCHS: dict[str, ArchSpec] = {}


def register_teacher(spec: TeacherSpec) -> TeacherSpec:
    if spec.key in TEACHERS:
        raise ValueError(f"teacher {spec.key!r} is registered twice")
    TEACHERS[spec.key] = spec
    return spec


def register_arch(spec: ArchSpec) -> ArchSpec:
    if spec.name in ARCHS:
        raise ValueError(f"architecture {spec.name!r} is registered twice")
    ARCHS[spec.name] = spec
    return spec


def get_teacher(key: str) -> TeacherSpec:
    if key not in TEACHERS:
        raise UniegoError(f"unknown teacher {key!r}; known teachers: {', '.join(TEACHERS)}")
    return TEACHERS[key]


def get_arch(name: str) -> ArchSpec:
    if name not in ARCHS:
        raise UniegoError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    return ARCHS[name]


# ------------------------------------------------------------------ the nine teachers
for view in ("ego", "exo"):
    register_teacher(TeacherSpec(f"{view}_dino", view, "rgb", "dinov2", (view,), "DINOv2 ViT-L/14"))
    register_teacher(TeacherSpec(f"{view}_siglip", view, "rgb", "siglip", (view,), "SigLIP so400m/14"))
    register_teacher(TeacherSpec(f"{view}_depth", view, "depth", "depth_anything", (view,), "Depth Anything ViT-L"))
register_teacher(TeacherSpec("exo_rgb", "exo", "rgb", "timesformer", ("exo",), "TimeSformer-B (exo)"))
register_teacher(TeacherSpec("exo_skl", "exo", "skeleton", "stgcn", ("skeleton",), "ST-GCN (pyskl)"))
register_teacher(TeacherSpec("exo_skego", "exo", "rgb", "skego", ("exo", "skeleton"), "Sk-Ego (Reilly et al. 2025)",
                             stand_in=True))

# ------------------------------------------------------------------ architectures
_VIT_POOL = ("cls", "patch_mean")
for name, timm_name, dim in [("dinov2_vitl14", "vit_large_patch14_dinov2", 1024),
                             ("dinov2_vitb14", "vit_base_patch14_dinov2", 768),
                             ("dinov2_vits14", "vit_small_patch14_dinov2", 384)]:
    register_arch(ArchSpec(name, "dinov2", {"timm_name": timm_name}, dim, 224, IMAGENET_MEAN, IMAGENET_STD,
                           True, "cls", _VIT_POOL, description=f"timm {timm_name} (DINOv2, original or timm weights)",
                           transform="dinov2"))
for name, timm_name, dim in [("depth_anything_vitl", "vit_large_patch14_dinov2", 1024),
                             ("depth_anything_vits", "vit_small_patch14_dinov2", 384)]:
    # input 518: the original's `image2tensor(image, input_size=518)` (run.py), the short side at 518
    register_arch(ArchSpec(name, "depth_anything", {"timm_name": timm_name}, dim, 518, IMAGENET_MEAN, IMAGENET_STD,
                           True, "patch_mean", _VIT_POOL,
                           description="Depth Anything (V1/V2) DINOv2 encoder in timm; `pretrained.*` keys of the depth checkpoint",
                           transform="depth_anything"))
_TINY_VIT = {"timm_name": "vit_small_patch14_dinov2", "embed_dim": 64, "num_heads": 2}
register_arch(ArchSpec("dinov2_test", "dinov2", {**_TINY_VIT, "depth": 2}, 64, 56, IMAGENET_MEAN, IMAGENET_STD,
                       True, "cls", _VIT_POOL, test=True, description="tiny DINOv2-architecture ViT (tests, demo)"))
register_arch(ArchSpec("depth_anything_test", "depth_anything", {**_TINY_VIT, "depth": 4}, 64, 56, IMAGENET_MEAN,
                       IMAGENET_STD, True, "patch_mean", _VIT_POOL, test=True,
                       description="tiny Depth-Anything-encoder ViT (tests, demo)"))

register_arch(ArchSpec("siglip_so400m_384", "siglip", {"model_name": "ViT-SO400M-14-SigLIP-384"}, 1152, 384, HALF, HALF,
                       True, "map", ("map",), description="open_clip ViT-SO400M-14-SigLIP-384 encode_image",
                       transform="open_clip_squash"))
register_arch(ArchSpec("siglip_so400m_224", "siglip", {"model_name": "ViT-SO400M-14-SigLIP"}, 1152, 224, HALF, HALF,
                       True, "map", ("map",), description="open_clip ViT-SO400M-14-SigLIP encode_image",
                       transform="open_clip_squash"))
register_arch(ArchSpec("siglip_test", "siglip", {"model_name": "ViT-B-16-SigLIP", "tiny": True}, 64, 56, HALF, HALF,
                       True, "map", ("map",), test=True,
                       description="tiny SigLIP-architecture open_clip model (MAP-pooled timm trunk)"))

register_arch(ArchSpec("timesformer_base", "timesformer", {"builder": "timesformer_base"}, 768, 224,
                       KINETICS_MEAN, KINETICS_STD, False, "cls", ("cls",),
                       description="TimeSformer-B divided space-time 8x224 (official .pyth or ImageNet ViT init)"))
register_arch(ArchSpec("timesformer_test", "timesformer", {"builder": "timesformer_test"}, 64, 64,
                       KINETICS_MEAN, KINETICS_STD, False, "cls", ("cls",), test=True,
                       description="tiny TimeSformer (dim 64, depth 2)"))

register_arch(ArchSpec("stgcn_coco", "stgcn", {"builder": "stgcn_coco"}, 256, 0, (0.0,) * 3, (1.0,) * 3,
                       False, "gcn", ("gcn",), description="pyskl ST-GCN, COCO-17 2-D keypoints"))
register_arch(ArchSpec("stgcn_test", "stgcn", {"builder": "stgcn_test"}, 16, 0, (0.0,) * 3, (1.0,) * 3,
                       False, "gcn", ("gcn",), test=True, description="tiny ST-GCN (4 stages, 16-d)"))

_SKEGO = "STAND-IN for Sk-Ego (code and weights unreleased): skeleton-guided crop of the exo frames through "
register_arch(ArchSpec("skego_standin_vitb16", "skego", {"model_name": "ViT-B-16"}, 512, 224,
                       (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711),
                       True, "cls", ("cls",), description=_SKEGO + "open_clip ViT-B/16 encode_image (512-d)",
                       transform="open_clip_shortest"))
register_arch(ArchSpec("skego_standin_test", "skego", {"model_name": "ViT-B-16", "tiny": True}, 32, 32,
                       (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711),
                       True, "cls", ("cls",), test=True, description=_SKEGO + "a tiny open_clip ViT-B/16-architecture model"))
