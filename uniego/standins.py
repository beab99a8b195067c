"""The demo's stand-in teachers and shared student start (issue 18): the objectives that train
them on the pretraining corpus, and the checkpoint formats of the real models they stand in for.

Each objective mirrors what its real counterpart was trained with, at demo scale:

  dinov2          `dino_loss`: DINO self-distillation between two augmented views of a frame
                  (EMA teacher, centring and sharpening; DINOv2's image-level loss, without
                  its iBOT patch loss and KoLeo regulariser)
  depth_anything  `ssi_depth_loss`: Depth Anything's affine-invariant loss on disparity
  siglip          `sigmoid_loss` (SigLIP's pairwise sigmoid) between frames and their captions
                  (`frame_caption`: the pose in that frame, where the actor stands and faces)
  skego           `contrastive_loss` (CLIP's InfoNCE) between skeleton-guided exo crops and
                  their captions: Sk-Ego's image encoder is CLIP-pretrained
                  (both count every pair with the same caption as positive: corpus captions
                  repeat; with distinct captions they equal open_clip's SigLipLoss / ClipLoss)
  student         the paper's recipe in miniature: an image ViT of the student's size, trained
                  on corpus frames (the ImageNet analogue; never the demo's classes) to tell
                  each patch's body parts (`part_loss` against `part_histograms` of the
                  rendered part masks) and the frame's pose words from its CLS
                  (`attribute_loss`), then inflated into the TimeSformer as ImageNet ViTs are

Checkpoints are written in the real models' formats, so the demo loads them through the
loaders real weights use (uniego.teachers): original DINOv2 names (+ `mask_token`), Depth
Anything's `pretrained.*` encoder + `depth_head.*`, and open_clip state dicts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uniego.demo.corpus import LIMBS, SPEEDS

# Caption words, in a fixed order: the vocabulary of the caption tokenizer and the student's
# multi-label targets. The corpus's clip captions say which limbs move, how fast, where the
# actor stands and faces; `pose_words` adds what the body does in one frame (from its 3-D joints).
WHERE = ("on the left", "in the middle", "on the right")
DISTANCE = ("near the camera", "mid-room", "far from the camera")
FACING = ("turned to its left", "facing the camera", "turned to its right")
HAND_LEVELS = ("above the head", "at shoulder height", "down")
POSE = (*(f"{side} hand {level}" for side in ("left", "right") for level in HAND_LEVELS),
        "left knee raised", "right knee raised", "crouching")
ATTRIBUTES = (*LIMBS, *SPEEDS, *WHERE, *DISTANCE, *FACING, *POSE)
J = {name: i for i, name in enumerate(["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
                                       "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                                       "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle"])}


def pose_words(joints: np.ndarray) -> list[str]:
    """What the body does in one frame, from its 3-D COCO-17 joints [17, 3] (world, y up):
    each hand's level, a raised knee (thigh lifted past ~50 degrees), crouching (hips lowered
    to under 80 % of the legs' length)."""
    y = joints[:, 1]
    words = []
    for side in ("left", "right"):
        wrist, shoulder = y[J[f"{side}_wrist"]], y[J[f"{side}_shoulder"]]
        level = "above the head" if wrist > y[J["nose"]] else "at shoulder height" if wrist > shoulder - 0.15 else "down"
        words.append(f"{side} hand {level}")
    for side in ("left", "right"):
        hip, knee = joints[J[f"{side}_hip"]], joints[J[f"{side}_knee"]]
        if knee[1] > hip[1] - 0.65 * np.linalg.norm(hip - knee):
            words.append(f"{side} knee raised")
    legs = np.mean([np.linalg.norm(joints[J[f"{s}_hip"]] - joints[J[f"{s}_knee"]])
                    + np.linalg.norm(joints[J[f"{s}_knee"]] - joints[J[f"{s}_ankle"]]) for s in ("left", "right")])
    hips = (y[J["left_hip"]] + y[J["right_hip"]]) / 2 - min(y[J["left_ankle"]], y[J["right_ankle"]])
    if hips < 0.8 * legs:
        words.append("crouching")
    return words


def frame_caption(attrs: dict, joints: np.ndarray, *, placement: bool = True) -> list[str]:
    """One frame's caption words: its pose, then where the actor stands and faces (`placement`
    False: facing only, for crops centred on the actor, which show neither where nor how far)."""
    return pose_words(joints) + ([attrs["where"], attrs["distance"]] if placement else []) + [attrs["facing"]]


def clip_words(attrs: dict, joints: np.ndarray) -> list[str]:
    """A clip's words: its caption's attributes and every pose word of any of its frames [T, 17, 3]."""
    words = [*attrs["limbs"], attrs["speed"], attrs["where"], attrs["distance"], attrs["facing"]]
    return words + [w for w in POSE if any(w in pose_words(j) for j in joints)]


def attribute_targets(words: list[str]) -> torch.Tensor:
    """float [len(ATTRIBUTES)]: 1 for each attribute word given."""
    unknown = [w for w in words if w not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"caption words {unknown} are not in the corpus vocabulary")
    y = torch.zeros(len(ATTRIBUTES))
    y[[ATTRIBUTES.index(w) for w in words]] = 1.0
    return y


class CaptionTokenizer:
    """Caption words (phrases of ATTRIBUTES) -> token ids for the tiny open_clip text towers.

    One token per phrase, then the end-of-text token, then padding (0). The end token has the
    largest id, as in CLIP's tokenizer: CLIP's text tower pools at the argmax token, SigLIP's at
    the last position (it attends both ways, so padding there is fine)."""

    def __init__(self, context_length: int = 16, vocab_size: int = 100):
        if len(ATTRIBUTES) + 2 > vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is too small for {len(ATTRIBUTES)} attributes")
        self.context_length, self.eot = context_length, vocab_size - 1

    def __call__(self, captions: list[list[str]]) -> torch.Tensor:
        out = torch.zeros(len(captions), self.context_length, dtype=torch.long)
        for i, words in enumerate(captions):
            unknown = [w for w in words if w not in ATTRIBUTES]
            if unknown:
                raise ValueError(f"caption words {unknown} are not in the corpus vocabulary")
            ids = [1 + ATTRIBUTES.index(w) for w in words] + [self.eot]
            if len(ids) > self.context_length:
                raise ValueError(f"caption {words} needs {len(ids)} tokens > {self.context_length}")
            out[i, :len(ids)] = torch.tensor(ids)
        return out


# ------------------------------------------------------------------ SigLIP and Sk-Ego stand-ins
def same_caption(tokens: torch.Tensor) -> torch.Tensor:
    """float [B, B]: 1 where two captions are the same words. Corpus captions repeat (a frame's
    pose and place take few values), so a batch holds true pairs off the diagonal."""
    return (tokens[:, None, :] == tokens[None, :, :]).all(-1).float()


def sigmoid_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, logit_bias: torch.Tensor,
                 same: torch.Tensor) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss, -1/B sum_ij log sigmoid(z_ij (t x_i . y_j + b)), with
    z_ij = +1 for every pair with the same caption (open_clip's SigLipLoss: the diagonal only)."""
    logits = logit_scale * image @ text.T + logit_bias
    return -F.logsigmoid((2 * same - 1) * logits).sum() / image.shape[0]


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE, the target spread evenly over the pairs with the same caption
    (open_clip's ClipLoss: the diagonal only)."""
    logits = logit_scale * image @ text.T
    target = same / same.sum(1, keepdim=True)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T)) / 2


# ------------------------------------------------------------------ DINOv2 stand-in
class DINOHead(nn.Module):
    """DINO's projection head: MLP -> bottleneck -> l2-normalised -> weight-normalised prototypes."""

    def __init__(self, dim: int, prototypes: int = 256, hidden: int = 256, bottleneck: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, prototypes, bias=False))
        self.last.parametrizations.weight.original0.data.fill_(1.0)
        self.last.parametrizations.weight.original0.requires_grad_(False)   # DINO's norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(x), dim=-1))


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor, *,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO's self-distillation loss: for every pair of different views (a, b), the cross-entropy
    between the centred, sharpened teacher softmax of view a and the student softmax of view b.
    `student` and `teacher` are prototype logits [B, K] per view; the teacher's carry no gradient."""
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=-1) for t in teacher]
    terms = [-(q * F.log_softmax(s / student_temp, dim=-1)).sum(-1).mean()
             for a, q in enumerate(targets) for b, s in enumerate(student) if a != b]
    return torch.stack(terms).mean()


def koleo_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """DINOv2's KoLeo regulariser: -mean log distance of each l2-normalised feature to its
    nearest neighbour in the batch; it spreads the features out (against collapse)."""
    x = F.normalize(x, dim=-1)
    d = torch.cdist(x, x)
    d = d + torch.eye(len(x), dtype=x.dtype) * 1e3   # not itself
    return -torch.log(d.min(dim=1).values + eps).mean()


@torch.no_grad()
def update_center(center: torch.Tensor, teacher: list[torch.Tensor], momentum: float = 0.9) -> torch.Tensor:
    """DINO's centre: an EMA of the teacher's mean logits (with sharpening, prevents collapse)."""
    return center * momentum + torch.cat(teacher).mean(0, keepdim=True) * (1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def dinov2_checkpoint(vit: nn.Module) -> dict:
    """A timm DINOv2 ViT -> the original DINOv2 backbone format (the same names, plus
    `mask_token`, which the released dinov2_vit*14 weights carry for iBOT)."""
    state = {k: v.detach().clone() for k, v in vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])
    return state


# ------------------------------------------------------------------ Depth Anything stand-in
class DepthHead(nn.Module):
    """Stand-in for Depth Anything's DPT head: each final-norm patch token -> the (affine-invariant)
    disparity of its patch's pixels by one linear map, plus a learned map over the output pixels
    (the DPT head's convolutions see where a pixel is; one linear map per token cannot). No ReLU:
    the loss ignores scale and shift, and a ReLU's dead outputs would get no gradient."""

    def __init__(self, dim: int, patch: int, grid: int):
        super().__init__()
        self.patch, self.grid = patch, grid
        self.proj = nn.Linear(dim, patch * patch)
        self.position = nn.Parameter(torch.zeros(grid * patch, grid * patch))
        # small outputs at the start: the loss normalises the prediction's scale away, so each
        # optimiser step then moves the normalised map as far as it moves the weights
        nn.init.normal_(self.proj.weight, std=1e-3)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, grid*grid, D] -> disparity [B, grid*patch, grid*patch]."""
        B, p, g = tokens.shape[0], self.patch, self.grid
        x = self.proj(tokens).reshape(B, g, g, p, p)
        return x.permute(0, 1, 3, 2, 4).reshape(B, g * p, g * p) + self.position


def _ssi_normalise(d: torch.Tensor) -> torch.Tensor:
    """Per image: subtract the median, divide by the mean absolute deviation (MiDaS / Depth Anything)."""
    flat = d.flatten(1)
    t = flat.median(dim=1, keepdim=True).values
    s = (flat - t).abs().mean(dim=1, keepdim=True).clamp_min(1e-6)
    return (flat - t) / s


def ssi_depth_loss(pred: torch.Tensor, disparity: torch.Tensor) -> torch.Tensor:
    """Depth Anything's affine-invariant loss: both disparity maps [B, H, W] are shifted by their
    median and scaled by their mean absolute deviation, then compared by mean absolute error."""
    return (_ssi_normalise(pred) - _ssi_normalise(disparity)).abs().mean()


def depth_anything_checkpoint(vit: nn.Module, head: DepthHead) -> dict:
    """Depth Anything's checkpoint layout: the DINOv2 encoder under `pretrained.*` (original
    names) and the head under `depth_head.*` (here the stand-in head's own names)."""
    state = {f"pretrained.{k}": v for k, v in dinov2_checkpoint(vit).items()}
    state.update({f"depth_head.{k}": v.detach().clone() for k, v in head.state_dict().items()})
    return state


# ------------------------------------------------------------------ student start
def attribute_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label binary cross-entropy over the caption attributes [B, len(ATTRIBUTES)]."""
    return F.binary_cross_entropy_with_logits(logits, targets)


def part_histograms(parts: torch.Tensor, grid: int, num_parts: int) -> torch.Tensor:
    """Body-part masks [B, s, s] (part indices, uniego.demo.render.PARTS) -> the share of each
    part in each cell of a grid x grid patch grid [B, grid * grid, num_parts] (rows sum to 1)."""
    onehot = F.one_hot(parts.long(), num_parts).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, grid).flatten(2).transpose(1, 2)


def part_loss(logits: torch.Tensor, histograms: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-patch part logits [B, P, K] against the patches' part histograms."""
    return -(histograms * F.log_softmax(logits, dim=-1)).sum(-1).mean()
