"""Runners of stage `pretrain`: decode the corpus, train a stand-in teacher or the student
start on it (objectives: uniego.standins), write the checkpoint and its `.json` sidecar.

Only the corpus's train split is trained on; its val split gives the loss the sidecar reports.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from uniego import standins as S
from uniego.errors import UniegoError

STAGE = "pretrain"
FAMILIES = ("dinov2", "depth_anything", "siglip", "skego")


# ------------------------------------------------------------------ the corpus, decoded
@dataclasses.dataclass
class Corpus:
    """The corpus's clips of one split, decoded at `size` x `size` (short side, centre crop)."""
    clip_ids: list[str]
    attributes: list[dict]
    frames: dict[str, np.ndarray]      # view -> uint8 [N, F, S, S, 3] at the dense (depth) frames
    disparity: dict[str, np.ndarray]   # view -> float32 [N, F, s, s] (1 / metres), same crop
    skeleton: np.ndarray               # float32 [N, F, 17, 3] exo pixel x, y (original video), 1
    joints: np.ndarray                 # float32 [N, F, 17, 3] world joints (pose captions)
    video_hw: tuple[int, int]
    clips: dict[str, np.ndarray]       # view -> uint8 [N, T, S, S, 3], T frames uniform over the clip
    words: list[list[str]]             # per clip: its caption's attributes and every pose of its frames
    parts: dict[str, np.ndarray]       # view -> uint8 [N, F, s, s] body-part index (render.PARTS), same crop

    def frame_captions(self, *, placement: bool = True) -> list[list[str]]:
        """Caption words of every dense frame, clip-major [N * F] (standins.frame_caption)."""
        return [S.frame_caption(a, j, placement=placement) for a, js in zip(self.attributes, self.joints) for j in js]


def _crop_square(a: np.ndarray) -> np.ndarray:
    """[..., H, W] -> the centred square [..., m, m], m = min(H, W) (the resize_crop geometry)."""
    H, W = a.shape[-2:]
    m = min(H, W)
    top, left = (H - m) // 2, (W - m) // 2
    return a[..., top:top + m, left:left + m]


def load_corpus(root: str | Path, split: str, *, size: int, frames: int, num_frames: int) -> Corpus:
    """Decode split `split` of the corpus at `root`: `frames` dense frames per clip and view
    (spread over those with depth maps) and a `num_frames` clip per view for the student."""
    from uniego.video import decode_frames, open_video, resize_crop

    root = Path(root)
    table_path = root / "captions.csv"
    if not table_path.is_file():
        raise UniegoError(f"{table_path} does not exist: build the corpus first (uniego demo-corpus)", stage=STAGE)
    table = pd.read_csv(table_path)
    table = table[table.split == split].reset_index(drop=True)
    if table.empty:
        raise UniegoError(f"{table_path}: no clip in split {split!r}", stage=STAGE)
    out = {"frames": {"ego": [], "exo": []}, "disparity": {"ego": [], "exo": []}, "clips": {"ego": [], "exo": []},
           "parts": {"ego": [], "exo": []}, "skeleton": [], "joints": [], "words": []}
    hw = None
    for row in table.itertuples():
        with np.load(root / row.dense) as z:
            dense = {k: z[k] for k in ("dense_frames", "depth_ego", "depth_exo", "parts_ego", "parts_exo",
                                       "joints2d_exo", "joints3d")}
        if len(dense["dense_frames"]) < frames:
            raise UniegoError(f"{root / row.dense} (clip {row.clip_id}): {len(dense['dense_frames'])} frames with depth, "
                              f"pretrain.frames asks for {frames}", stage=STAGE)
        pick = np.linspace(0, len(dense["dense_frames"]) - 1, frames).round().astype(int)
        idx = dense["dense_frames"][pick]
        for view in ("ego", "exo"):
            path = str(root / getattr(row, f"{view}_video"))
            vr, n, _ = open_video(path, row.clip_id, stage=STAGE)
            whole = decode_frames(vr, np.arange(n), path, row.clip_id, stage=STAGE)
            hw = whole.shape[1:3]
            out["frames"][view].append(resize_crop(whole[idx], size))
            t = np.floor((np.arange(num_frames) + 0.5) * n / num_frames).astype(int)
            out["clips"][view].append(resize_crop(whole[t], size))
            depth = torch.from_numpy(_crop_square(dense[f"depth_{view}"][pick].astype(np.float32)))
            disp = 1.0 / depth.clamp_min(1e-3)
            out["disparity"][view].append(F.interpolate(disp[:, None], size=(size // 2, size // 2), mode="bilinear",
                                                        antialias=True, align_corners=False)[:, 0].numpy())
            out["parts"][view].append(_crop_square(dense[f"parts_{view}"][pick]).astype(np.uint8))
        sk = dense["joints2d_exo"][idx].copy()
        sk[..., 2] = 1.0
        out["skeleton"].append(sk)
        out["joints"].append(dense["joints3d"][idx])
        out["words"].append(S.clip_words(json.loads(row.attributes), dense["joints3d"]))
    return Corpus(list(table.clip_id), [json.loads(a) for a in table.attributes],
                  {v: np.stack(x) for v, x in out["frames"].items()}, {v: np.stack(x) for v, x in out["disparity"].items()},
                  np.stack(out["skeleton"]).astype(np.float32), np.stack(out["joints"]).astype(np.float32), tuple(hw),
                  {v: np.stack(x) for v, x in out["clips"].items()}, out["words"],
                  {v: np.stack(x) for v, x in out["parts"].items()})


# ------------------------------------------------------------------ augmentation
def augment(x: torch.Tensor, gen: torch.Generator, *, scale=(0.35, 1.0), jitter: float = 0.3) -> torch.Tensor:
    """DINO-style view of each image of [B, 3, H, W]: random resized crop (area `scale`), flip,
    brightness and contrast jitter; the output keeps H x W."""
    B, _, H, W = x.shape
    out = []
    for i in range(B):
        r = torch.rand(6, generator=gen)
        area = scale[0] + (scale[1] - scale[0]) * r[0].item()
        ch, cw = max(2, round(H * math.sqrt(area))), max(2, round(W * math.sqrt(area)))
        top, left = int(r[1] * (H - ch + 1)), int(r[2] * (W - cw + 1))
        v = F.interpolate(x[i:i + 1, :, top:top + ch, left:left + cw], size=(H, W), mode="bilinear", align_corners=False)
        if r[3] < 0.5:
            v = v.flip(-1)
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        v = (v - mean) * (1 + jitter * (2 * r[4].item() - 1)) + mean + jitter * (2 * r[5].item() - 1)
        out.append(v)
    return torch.cat(out)


def _normalise(frames: np.ndarray, size: int, mean, std) -> torch.Tensor:
    """uint8 [..., S, S, 3] -> float [N, 3, size, size], as the teachers preprocess (frames_to_tensor)."""
    from uniego.teachers.transforms import frames_to_tensor
    flat = frames.reshape(-1, *frames.shape[-3:])
    return frames_to_tensor(flat, size, mean, std)


# ------------------------------------------------------------------ the training loop
@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """One `pretrain.{name}` entry of config.yaml (without its corpus and student parts)."""
    size: int
    frames: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int


def fit(step, params, n: int, settings: PretrainSettings, *, epochs: int, seed: int, val_step=None, log=print,
        after_step=None) -> list[dict]:
    """AdamW with a linear warm-up (one epoch) and cosine decay over `epochs`; `step(idx, gen,
    progress)` returns the loss of the batch of sample indices `idx` (progress: the share of the
    training done, 0 to 1); `after_step(progress)`
    runs after each optimiser step. Returns the per-epoch history (epoch 0: validation before training)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    per_epoch = max(1, n // settings.batch_size)
    total = per_epoch * epochs
    history = []
    def validate() -> dict:
        with torch.no_grad():
            out = val_step()
        return {k: round(float(v), 6) for k, v in (out.items() if isinstance(out, dict) else [("val_loss", out)])}

    if val_step is not None:   # epoch 0: the untrained model, what the training improves on
        history.append({"epoch": 0, **validate()})
        log("before training " + " ".join(f"{k} {v:.4f}" for k, v in history[0].items() if k != "epoch"))
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        losses = []
        for b in range(per_epoch):
            it = epoch * per_epoch + b
            lr = settings.lr * min(1.0, (it + 1) / per_epoch) * 0.5 * (1 + math.cos(math.pi * it / total))
            for g in opt.param_groups:
                g["lr"] = lr
            loss = step(order[b * settings.batch_size:(b + 1) * settings.batch_size], gen, it / max(1, total - 1))
            if not torch.isfinite(loss):
                raise UniegoError(f"pretraining loss became {loss.item()} at epoch {epoch + 1}; lower pretrain lr", stage=STAGE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(it / max(1, total - 1))
            losses.append(loss.item())
        record = {"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 6)}
        if val_step is not None:
            record.update(validate())
        history.append(record)
        log(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
    return history


def _both_views(corpus: Corpus, arch) -> torch.Tensor:
    """Every dense frame of both views, preprocessed for `arch`: float [N * 2 * F, 3, I, I]."""
    return torch.cat([_normalise(corpus.frames[v], arch.input_size, arch.mean, arch.std) for v in ("ego", "exo")])


KOLEO = 0.1   # DINOv2's KoLeo weight


def train_dinov2(train: Corpus, val: Corpus, arch, s: PretrainSettings, log=print):
    """DINO self-distillation of the arch's timm ViT on frames of both views, with DINOv2's KoLeo
    regulariser on the student's CLS. -> (state, history)."""
    import copy

    from uniego.config import TeacherSettings
    from uniego.teachers.build import build_teacher

    vit = build_teacher(TeacherSettings("ego_dino", arch.name, "random"), seed=s.seed).model.train().requires_grad_(True)
    head = S.DINOHead(arch.feature_dim)
    student = torch.nn.ModuleDict({"vit": vit, "head": head})
    teacher = copy.deepcopy(student).requires_grad_(False)
    center = torch.zeros(1, head.last.out_features)
    x, xv = _both_views(train, arch), _both_views(val, arch)

    def embed(model, imgs):
        return model["head"](model["vit"].forward_features(imgs)[:, 0])

    def step(idx, gen, progress):
        nonlocal center
        views = [augment(x[idx], gen), augment(x[idx], gen)]
        with torch.no_grad():
            t_out = [embed(teacher, v) for v in views]
        cls = [student["vit"].forward_features(v)[:, 0] for v in views]
        loss = S.dino_loss([student["head"](c) for c in cls], t_out, center)
        loss = loss + KOLEO * sum(S.koleo_loss(c) for c in cls) / len(cls)
        center = S.update_center(center, t_out)
        return loss

    def after_step(progress):
        S.ema_update(teacher, student, 1 - (1 - 0.99) * (math.cos(math.pi * progress) + 1) / 2)  # 0.99 -> 1, cosine

    def val_step():
        """The loss, and view retrieval: how often the teacher's CLS feature of one augmented view
        of a held-out frame is nearest to that of its other view (DINO's invariance; the loss
        alone says little, it moves with the teacher's sharpening)."""
        g = torch.Generator().manual_seed(0)
        views = [augment(xv, g), augment(xv, g)]
        loss = S.dino_loss([embed(student, v) for v in views], [embed(teacher, v) for v in views], center)
        a, b = (F.normalize(teacher["vit"].forward_features(v)[:, 0], dim=-1) for v in views)
        return {"val_loss": loss, "val_view_top1": ((a @ b.T).argmax(1) == torch.arange(len(a))).float().mean()}

    history = fit(step, student.parameters(), len(x), s, epochs=s.epochs, seed=s.seed, val_step=val_step, log=log,
                  after_step=after_step)
    # DINO evaluates (and releases) the teacher: the EMA of the student
    return S.dinov2_checkpoint(teacher["vit"]), history


def train_depth_anything(train: Corpus, val: Corpus, arch, s: PretrainSettings, log=print):
    """The encoder and a per-patch head trained on the affine-invariant disparity loss. -> (state, history)."""
    from uniego.config import TeacherSettings
    from uniego.teachers.build import build_teacher

    vit = build_teacher(TeacherSettings("ego_depth", arch.name, "random"), seed=s.seed).model.train().requires_grad_(True)
    patch, grid = 14, arch.input_size // 14
    head = S.DepthHead(arch.feature_dim, patch, grid)
    x, xv = _both_views(train, arch), _both_views(val, arch)

    def targets(c: Corpus) -> torch.Tensor:
        d = torch.from_numpy(np.concatenate([c.disparity[v] for v in ("ego", "exo")]).reshape(-1, *c.disparity["ego"].shape[-2:]))
        return F.interpolate(d[:, None], size=(grid * patch,) * 2, mode="bilinear", align_corners=False)[:, 0]

    y, yv = targets(train), targets(val)

    def predict(imgs):
        return head(vit.forward_features(imgs)[:, vit.num_prefix_tokens:])

    def step(idx, gen, progress):
        flip = torch.rand(len(idx), generator=gen) < 0.5
        imgs, tgt = x[idx].clone(), y[idx].clone()
        imgs[flip], tgt[flip] = imgs[flip].flip(-1), tgt[flip].flip(-1)
        return S.ssi_depth_loss(predict(imgs), tgt)

    history = fit(step, [*vit.parameters(), *head.parameters()], len(x), s, epochs=s.epochs, seed=s.seed,
                  val_step=lambda: S.ssi_depth_loss(predict(xv), yv), log=log)
    return S.depth_anything_checkpoint(vit, head), history


def _open_clip_model(arch, seed: int):
    from uniego.config import TeacherSettings
    from uniego.teachers.clip_frames import create_open_clip

    torch.manual_seed(seed)
    key = "exo_skego" if arch.family == "skego" else "ego_siglip"
    return create_open_clip(arch, TeacherSettings(key, arch.name, "random"), arch.input_size)


def _skego_crops(c: Corpus, arch) -> torch.Tensor:
    """Sk-Ego's input: each exo frame cropped to the box around its skeleton (as the teacher crops)."""
    from uniego.teachers.clip_frames import skeleton_box

    out = []
    for frames, sk in zip(c.frames["exo"], c.skeleton):
        t, l, b, r = skeleton_box(sk, c.video_hw, frames.shape[1])
        out.append(_normalise(frames[:, t:b, l:r], arch.input_size, arch.mean, arch.std))
    return torch.cat(out)


def train_contrastive(train: Corpus, val: Corpus, arch, s: PretrainSettings, log=print):
    """SigLIP (sigmoid loss, frames of both views) or the Sk-Ego image encoder (CLIP loss,
    skeleton-guided exo crops), against each frame's caption (standins.frame_caption).
    Validation: the loss over batches of the training size, and zero-shot caption retrieval
    (the share of held-out frames whose own caption is the nearest of the val set's distinct
    captions). -> (state, history)"""
    model = _open_clip_model(arch, s.seed).train()
    tokenizer = S.CaptionTokenizer(model.context_length, model.vocab_size)
    if arch.family == "siglip":   # views stacked after one another, each clip-major
        x, xv = _both_views(train, arch), _both_views(val, arch)
        t, tv = (c.frame_captions() * 2 for c in (train, val))
        loss_fn = S.sigmoid_loss
    else:
        x, xv = _skego_crops(train, arch), _skego_crops(val, arch)
        t, tv = (c.frame_captions(placement=False) for c in (train, val))
        loss_fn = S.contrastive_loss
    tok, tok_v = tokenizer(t), tokenizer(tv)
    assert len(tok) == len(x) and len(tok_v) == len(xv)
    distinct = sorted(set(map(tuple, tv)))
    own = torch.tensor([distinct.index(tuple(c)) for c in tv])
    tok_distinct = tokenizer([list(c) for c in distinct])

    def step(idx, gen, progress):
        flip = torch.rand(len(idx), generator=gen) < 0.5
        imgs = x[idx].clone()
        imgs[flip] = imgs[flip].flip(-1)
        return loss_fn(*model(imgs, tok[idx]), S.same_caption(tok[idx]))

    def val_step():
        model.eval()
        try:
            b = s.batch_size
            losses = [loss_fn(*model(xv[i:i + b], tok_v[i:i + b]), S.same_caption(tok_v[i:i + b]))
                      for i in range(0, len(xv), b) if len(xv[i:i + b]) > 1]
            img = F.normalize(model.encode_image(xv), dim=-1)
            txt = F.normalize(model.encode_text(tok_distinct), dim=-1)
            top1 = ((img @ txt.T).argmax(1) == own).float().mean()
            return {"val_loss": torch.stack(losses).mean(), "val_caption_top1": top1,
                    "val_caption_chance": torch.tensor(1.0 / len(distinct))}
        finally:
            model.train()

    history = fit(step, model.parameters(), len(x), s, epochs=s.epochs, seed=s.seed, val_step=val_step, log=log)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history


TRAINERS = {"dinov2": train_dinov2, "depth_anything": train_depth_anything, "siglip": train_contrastive,
            "skego": train_contrastive}
OBJECTIVES = {"dinov2": "DINO self-distillation of two augmented views per frame (EMA teacher, centring; KoLeo)",
              "depth_anything": "affine-invariant disparity loss against the rendered depth maps",
              "siglip": "SigLIP sigmoid loss between frames and their captions (pose, place, facing)",
              "skego": "CLIP loss between skeleton-guided exo crops and their captions (pose, facing)",
              "student": "image ViT on ego and exo frames: body parts per patch and pose words, inflated into the TimeSformer"}


def train_student(train: Corpus, val: Corpus, student: dict, s: PretrainSettings, log=print):
    """The shared student start, as the paper's is made: an image ViT of the student's size
    (timm's VisionTransformer), trained on the corpus's frames of both views to tell each
    patch's body parts and the frame's pose words, then inflated into the student TimeSformer
    the way ImageNet ViTs are (`load_imagenet_vit`). -> (TimeSformer state, history)."""
    import timm

    from uniego.config import parse_student
    from uniego.demo.render import PARTS
    from uniego.models.timesformer import TimeSformer, load_imagenet_vit
    from uniego.student import build_student, student_norm

    settings = parse_student({k: v for k, v in student.items() if k not in ("num_frames", "epochs")} | {"init": "random"})
    model = build_student(settings, len(S.ATTRIBUTES), num_frames=student["num_frames"], seed=s.seed)
    if not isinstance(model, TimeSformer):
        raise UniegoError(f"pretrain.student.arch {settings.arch}: the student start is made for TimeSformer students",
                          stage=STAGE)
    patch = model.patch_embed.proj.kernel_size[0]
    grid = settings.input_size // patch
    blk = model.blocks[0]
    vit = timm.models.vision_transformer.VisionTransformer(
        img_size=settings.input_size, patch_size=patch, embed_dim=model.embed_dim, depth=len(model.blocks),
        num_heads=blk.attn.num_heads, mlp_ratio=blk.mlp.fc1.out_features / model.embed_dim, qkv_bias=True,
        num_classes=len(S.ATTRIBUTES))
    part_head = torch.nn.Linear(model.embed_dim, len(PARTS))
    mean, std = student_norm(settings.arch)

    def frames(c: Corpus):
        x = torch.cat([_normalise(c.frames[v], settings.input_size, mean, std) for v in ("ego", "exo")])
        hist = torch.cat([S.part_histograms(torch.from_numpy(c.parts[v]).flatten(0, 1), grid, len(PARTS))
                          for v in ("ego", "exo")])
        words = torch.stack([S.attribute_targets(w) for w in c.frame_captions()] * 2)
        return x, hist, words

    x, hist, words = frames(train)
    xv, hv, wv = frames(val)

    def losses(xb, hb, wb):
        tokens = vit.forward_features(xb)
        return S.part_loss(part_head(tokens[:, vit.num_prefix_tokens:]), hb), S.attribute_loss(vit.forward_head(tokens), wb)

    def step(idx, gen, progress):
        xb, hb = x[idx], hist[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5      # the image and its part grid together
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        hb = torch.where(flip[:, None, None], hb.reshape(-1, grid, grid, len(PARTS)).flip(2).flatten(1, 2), hb)
        lp, lw = losses(xb, hb, words[idx])
        return lp + lw

    def val_step():
        vit.eval()
        try:
            lp, lw = losses(xv, hv, wv)
            return {"val_loss": lp + lw, "val_parts": lp, "val_words": lw}
        finally:
            vit.train()

    history = fit(step, [*vit.parameters(), *part_head.parameters()], len(x), s, epochs=student["epochs"], seed=s.seed,
                  val_step=val_step, log=log)
    load_imagenet_vit(model, vit.state_dict(), source="the corpus-trained image ViT")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, history


def corpus_summary(root: Path) -> dict:
    meta = json.loads((root / "corpus.json").read_text())
    table = pd.read_csv(root / "captions.csv")
    return {"path": str(root), "seed": meta["seed"], "preset": meta["preset"], "clips": len(table),
            "train_clips": int((table.split == "train").sum()), "code_version": meta.get("code_version", "")}


def run_pretrain(corpus: str | Path, target: str, out: str | Path, settings: dict, *, code_version: str = "",
                 log=print) -> Path:
    """Train `target` (a stand-in teacher architecture name, or `student`) on the corpus; write
    its checkpoint (atomically) and `{out}.json`, what it was trained on and how."""
    from uniego.config import from_dict
    from uniego.io import atomic_torch_save, atomic_write_json
    from uniego.provenance import environment
    from uniego.teachers.registry import get_arch

    corpus, out = Path(corpus), Path(out)
    s = from_dict(PretrainSettings, {k: settings[k] for k in ("size", "frames", "epochs", "batch_size", "lr",
                                                              "weight_decay", "seed")}, where=f"pretrain.{settings['name']}")
    student = settings["student"]
    torch.manual_seed(s.seed)
    load = dict(size=s.size, frames=s.frames, num_frames=student["num_frames"])
    train, val = load_corpus(corpus, "train", **load), load_corpus(corpus, "val", **load)
    log(f"corpus {corpus}: {len(train.clip_ids)} train clips, {len(val.clip_ids)} val clips")
    if target == "student":
        state, history = train_student(train, val, student, s, log=log)
        family, obj = "student", {"encoder": state, "meta": {"stage": STAGE, "target": "student", "code_version": code_version}}
    else:
        arch = get_arch(target)
        if arch.family not in TRAINERS:
            raise UniegoError(f"pretrain: no stand-in objective for {target} ({arch.family}); pretrainable families: "
                              f"{', '.join(FAMILIES)}", stage=STAGE)
        if not arch.test:
            raise UniegoError(f"pretrain: {target} is a full-size architecture; the corpus trains the demo's tiny "
                              "stand-ins only (use the real weights for full-size teachers)", stage=STAGE)
        state, history = TRAINERS[arch.family](train, val, arch, s, log=log)
        family, obj = arch.family, state
    record = {"stand_in": True, "target": target, "family": family, "objective": OBJECTIVES[family],
              "trained_on": corpus_summary(corpus), "settings": settings, "history": history,
              "code_version": code_version, "environment": environment()}
    atomic_write_json(out.with_name(out.name + ".json"), record)
    atomic_torch_save(obj, out)   # last: the checkpoint is the rule's output, so it marks the stage done
    return out
