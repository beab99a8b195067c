"""Each teacher's eval transform as its original code applies it (issue 19, item 2): uint8
frames [T, H, W, 3] of any aspect -> normalised float [T, 3, h, w].

  dinov2          DINOv2's `make_classification_eval_transform` (dinov2/data/transforms.py):
                  PIL bicubic resize of the short side to 256, centre crop 224 (for another input
                  size S: short side round(S * 256 / 224), crop S), ToTensor, ImageNet mean/std.
  depth_anything  Depth Anything V2's `image2tensor` (depth_anything_v2/dpt.py, util/transform.py):
                  keep the aspect ratio, scale so both sides are >= S (518 there), each side
                  rounded to a multiple of 14 (up if rounding fell below S), bicubic on the
                  float image (cv2.INTER_CUBIC; torch's bicubic equals it to 5e-6), ImageNet
                  mean/std. The output is not square: the ViT then runs on a non-square grid.
  open_clip_squash    open_clip's eval `image_transform` with resize_mode 'squash' (SigLIP).
  open_clip_shortest  open_clip's eval `image_transform`, resize_mode 'shortest': short side to S
                  and centre crop S (the OpenAI ViT-B/16 of the Sk-Ego stand-in).
  square          the centre square resized to S (bicubic, antialiased): the transform the demo's
                  corpus-trained stand-ins were trained with (`uniego pretrain`), so theirs.

The torchvision / open_clip transforms are called, not rewritten, so they are the originals'.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from uniego.errors import UniegoError

TRANSFORMS = ("dinov2", "depth_anything", "open_clip_squash", "open_clip_shortest", "square")


def centre_square(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] -> its centred square [T, m, m, 3], m = min(H, W): what a `square`-transform
    teacher sees of a clip cache that keeps the whole frame width (`clips.width`)."""
    H, W = frames.shape[1:3]
    m = min(H, W)
    top, left = (H - m) // 2, (W - m) // 2
    return frames[:, top:top + m, left:left + m]


def frames_to_tensor(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> normalised float [T, 3, size, size] (bicubic, antialiased). A clip's
    frames are given as their `centre_square`; a crop (Sk-Ego's skeleton box) as it is."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def _pil_frames(frames: np.ndarray, transform) -> torch.Tensor:
    from PIL import Image

    return torch.stack([transform(Image.fromarray(np.ascontiguousarray(f))) for f in frames])


@functools.lru_cache(maxsize=None)
def _dinov2_compose(size: int, mean: tuple, std: tuple):
    from torchvision import transforms as T

    resize = int(round(size * 256 / 224))
    return T.Compose([T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                      T.ToTensor(), T.Normalize(mean, std)])


@functools.lru_cache(maxsize=None)
def _open_clip_compose(size: int, mean: tuple, std: tuple, resize_mode: str):
    from open_clip.transform import image_transform

    return image_transform(size, is_train=False, mean=mean, std=std, resize_mode=resize_mode, interpolation="bicubic")


def dinov2_eval(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """DINOv2's classification eval transform at input size `size` (256 / 224 at 224)."""
    return _pil_frames(frames, _dinov2_compose(size, tuple(mean), tuple(std)))


def depth_anything_size(height: int, width: int, size: int, multiple: int = 14) -> tuple[int, int]:
    """Depth Anything's `Resize(keep_aspect_ratio, lower_bound, ensure_multiple_of)` output (h, w)."""
    scale = max(size / height, size / width)

    def constrain(x: float) -> int:
        y = int(np.round(x / multiple) * multiple)
        return y if y >= size else int(math.ceil(x / multiple) * multiple)

    return constrain(scale * height), constrain(scale * width)


def depth_anything_eval(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """Depth Anything V2's `image2tensor` with input_size `size` (518 there)."""
    h, w = depth_anything_size(frames.shape[1], frames.shape[2], size)
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).double() / 255.0
    if (h, w) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
    x = (x - torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return x.float()


def open_clip_eval(frames: np.ndarray, size: int, mean, std, resize_mode: str) -> torch.Tensor:
    """open_clip's own eval `image_transform` (bicubic, the given resize mode)."""
    return _pil_frames(frames, _open_clip_compose(size, tuple(mean), tuple(std), resize_mode))


def square(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    return frames_to_tensor(centre_square(frames), size, mean, std)


def apply(name: str, frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """Transform `name` (one of TRANSFORMS) of uint8 frames [T, H, W, 3]."""
    if name == "dinov2":
        return dinov2_eval(frames, size, mean, std)
    if name == "depth_anything":
        return depth_anything_eval(frames, size, mean, std)
    if name in ("open_clip_squash", "open_clip_shortest"):
        return open_clip_eval(frames, size, mean, std, name.split("_")[-1])
    if name == "square":
        return square(frames, size, mean, std)
    raise UniegoError(f"unknown teacher transform {name!r}; known: {', '.join(TRANSFORMS)}")
