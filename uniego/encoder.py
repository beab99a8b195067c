"""Use the encoder (issue 22): `uniego.load_encoder(path)` turns any model checkpoint the
pipeline writes (a proxy, a merge, a baseline, UNIEGO, an imported official checkpoint) into an
`Encoder` whose preprocessing travels with its weights: the student settings (architecture,
input size, eval resize) and the ego clip settings (frames, sampling, cache size) recorded in
the checkpoint's `meta`, no config file needed.

    enc = uniego.load_encoder("results/demo/uniego.pt")
    features = enc.embed(["clip1.mp4", "clip2.mp4"])        # [2, D]: CLS, averaged over the test crops
    for top in enc.predict("clip1.mp4", k=3):                # [(class name, probability), ...]
        print(top)

`path` may also be a folder written by `uniego export` (model.safetensors + config.json), which
loads without the rest of the pipeline.

A video is one clip, decoded as the clip cache decodes a segment (`uniego.video.read_frames`,
`resize_crop`); features and logits are computed as the evaluation computes them
(`uniego.checkpoints.predict` over the left / centre / right crops, features averaged, logits
summed), so the same clip gives the evaluation's numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uniego.config import ClipSettings, StudentSettings, parse_student
from uniego.errors import UniegoError

EXPORT_FORMAT = "uniego-encoder"   # config.json's `format` in a `uniego export` folder
EXPORT_FORMAT_VERSION = 1


class FramesSource:
    """Clips already in memory ([T, S, S, 3] uint8 each), in the shape `checkpoints.predict` reads."""

    def __init__(self, clips):
        self.clips = list(clips)
        self.num_frames = self.clips[0].shape[0] if self.clips else 0

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return self.clips[i]


def decode_clip(video: str | Path, clips: ClipSettings, *, start: float = 0.0, end: float | None = None,
                sample_id: str | None = None, stage: str = "embed") -> np.ndarray:
    """One clip ([start, end) seconds of `video`; default the whole video) decoded as the clip
    cache decodes a segment: uint8 [clips.num_frames, clips.size, clips.width or clips.size, 3]. A video or
    segment shorter than the clip is a named error."""
    from uniego.video import open_video, read_frames, resize_crop

    video, sid = str(video), sample_id or Path(video).stem
    _, n, fps = open_video(video, sid, stage=stage)
    end = n / fps if end is None else end
    have = int(round((end - start) * fps))
    if have < clips.num_frames:
        raise UniegoError(f"video {video} (sample {sid}): {have} frames in [{start:g}, {end:g}) s, but this encoder takes "
                          f"{clips.num_frames}-frame clips; give a longer video or segment", stage=stage)
    frames, _ = read_frames(video, sid, start, end, clips.num_frames, sampling=clips.sampling, stride=clips.stride, stage=stage)
    return resize_crop(frames, clips.size, clips.width)


def decode_windows(video: str | Path, clips: ClipSettings, centres, *, frame_step: int, sample_id: str | None = None,
                   stage: str = "embed") -> np.ndarray:
    """The sliding windows centred on frames `centres` of a whole video, decoded as the session
    window cache decodes them (`clips.num_frames` frames `frame_step` apart, clamped to the
    video): uint8 [len(centres), T, S, S, 3]."""
    from uniego.sessions import window_indices
    from uniego.video import decode_frames, open_video, resize_crop

    video, sid = str(video), sample_id or Path(video).stem
    vr, n, _ = open_video(video, sid, stage=stage)
    idx = np.stack([window_indices(int(c), n, clips.num_frames, frame_step) for c in centres])
    need = np.unique(idx)
    decoded = resize_crop(decode_frames(vr, need, video, sid, stage=stage), clips.size)
    return decoded[np.searchsorted(need, idx)]


class Encoder:
    """A trained ego encoder with its preprocessing. `embed` and `predict` take a video path,
    a list of paths, or decoded clips (uint8 [T, S, S, 3] or [N, T, S, S, 3])."""

    def __init__(self, model: torch.nn.Module, *, student: StudentSettings, clips: ClipSettings, classes: list[str],
                 crops: int = 3, source: str = "", device: str = "cpu", batch_size: int = 8, meta: dict | None = None):
        self.model, self.student, self.clips, self.classes = model.eval(), student, clips, list(classes)
        self.crops, self.source, self.device, self.batch_size = crops, source, torch.device(device), batch_size
        self.meta = meta or {}   # the checkpoint's meta, or the export's config.json

    def decode(self, video: str | Path, *, start: float = 0.0, end: float | None = None) -> np.ndarray:
        """One clip of `video` ([start, end) seconds; default the whole video) as the clip cache holds it."""
        return decode_clip(video, self.clips, start=start, end=end)

    def _clips(self, x) -> list[np.ndarray]:
        if isinstance(x, (str, Path)):
            return [self.decode(x)]
        if isinstance(x, np.ndarray):
            return [x] if x.ndim == 4 else list(x)
        return [c for item in x for c in self._clips(item)]

    def forward_clips(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, D], logits [N, C]) over the test crops, as the evaluation computes them."""
        from uniego.checkpoints import predict

        clips = self._clips(x)
        width = self.clips.width or self.clips.size
        bad = [c.shape for c in clips if c.shape != (self.clips.num_frames, self.clips.size, width, 3)]
        if bad:
            raise UniegoError(f"clips of shape {bad[0]}: this encoder takes {self.clips.num_frames} frames of "
                              f"{self.clips.size}x{width} (decode them with Encoder.decode)", stage="embed")
        source = FramesSource(clips)
        views = (1,) if self.crops == 1 else (0, 1, 2)
        outputs = [predict(self.model, source, self.student, device=self.device, batch_size=self.batch_size, crop=c)
                   for c in views]
        return sum(h for h, _ in outputs) / len(outputs), sum(z for _, z in outputs)

    def embed(self, x) -> np.ndarray:
        """The CLS feature after the final norm [N, D], averaged over the test crops."""
        return self.forward_clips(x)[0]

    def predict(self, x, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per clip, the top-k classes with their probabilities (softmax of the summed logits)."""
        logits = torch.from_numpy(self.forward_clips(x)[1]).double()
        probs = logits.softmax(-1)
        top = probs.topk(min(k, probs.shape[1]), dim=-1)
        return [[(self.classes[int(i)], float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]


def load_encoder(path: str | Path, *, clips: dict | None = None, crops: int = 3, device: str = "cpu",
                 stage: str = "embed") -> Encoder:
    """The encoder of a model checkpoint written by the pipeline, or of a `uniego export` folder,
    with its preprocessing from the checkpoint's meta (the folder's config.json). `clips`
    (num_frames, size, sampling, stride) is needed only for a checkpoint that does not record its
    clip settings (one written before they were recorded)."""
    if Path(path).is_dir():
        return _load_export(Path(path), crops=crops, device=device, stage=stage)
    from uniego.checkpoints import encoder_from_checkpoint, load_model

    obj = load_model(str(path), stage=stage)
    meta = obj["meta"]
    if not isinstance(meta.get("student"), dict):
        raise UniegoError(f"{path} does not record its student settings (meta.student): it predates uniego's "
                          "recording them; retrain it, or load it with uniego.checkpoints", stage=stage)
    clip_settings = clips or meta.get("clips")
    if not clip_settings:
        raise UniegoError(f"{path} does not record the clip settings it was trained on (meta.clips); pass "
                          "load_encoder(..., clips={'num_frames': ..., 'size': ..., 'sampling': ..., 'stride': ...}) "
                          "with the config's `clips` values", stage=stage)
    student = parse_student(meta["student"])
    model = encoder_from_checkpoint(obj, student)
    return Encoder(model, student=student, clips=ClipSettings(**clip_settings), classes=meta["classes"], crops=crops,
                   source=str(path), device=device, meta={**meta, "clips": dict(clip_settings)})


def _load_export(folder: Path, *, crops: int, device: str, stage: str) -> Encoder:
    """A `uniego export` folder: config.json (format, architecture, preprocessing, classes) and
    model.safetensors, checked against the config's sha256 and class count before loading."""
    import json

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from uniego.checkpoints import encoder_from_checkpoint
    from uniego.teachers.base import file_sha256

    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise UniegoError(f"{folder} is not a uniego export: it needs config.json and model.safetensors (write one with "
                          "`uniego export --model M --out DIR`)", stage=stage)
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise UniegoError(f"{cfg_path} is not valid JSON ({e}): export the model again", stage=stage) from None
    if not isinstance(cfg, dict) or cfg.get("format") != EXPORT_FORMAT:
        raise UniegoError(f"{cfg_path} is not a uniego export's config (format {cfg.get('format') if isinstance(cfg, dict) else None!r}, "
                          f"expected {EXPORT_FORMAT!r})", stage=stage)
    if cfg.get("format_version", 0) > EXPORT_FORMAT_VERSION:
        raise UniegoError(f"{folder} is export format {cfg['format_version']}; this uniego reads up to "
                          f"{EXPORT_FORMAT_VERSION}: upgrade uniego", stage=stage)
    want = (cfg.get("files") or {}).get("model.safetensors")
    if not want:
        raise UniegoError(f"{cfg_path} records no sha256 for model.safetensors (files): export the model again", stage=stage)
    if file_sha256(weights) != want:
        raise UniegoError(f"{weights} does not match the sha256 config.json records for it: the file was changed or "
                          "damaged; export the model again", stage=stage)
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise UniegoError(f"{weights} cannot be read as safetensors ({e}): export the model again", stage=stage) from None
    arch, classes = cfg["architecture"], list(cfg["classes"])
    head = state.get("head.weight")
    if head is not None and head.shape[0] != len(classes):
        raise UniegoError(f"{folder}: config.json lists {len(classes)} classes but the weights' head predicts "
                          f"{head.shape[0]}: the two files come from different models; export the model again", stage=stage)
    student = parse_student(arch["student"])
    model = encoder_from_checkpoint({"encoder": state, "meta": {"classes": classes, "num_frames": arch["num_frames"],
                                                                 "student": arch["student"]}}, student)
    return Encoder(model, student=student, clips=ClipSettings(**cfg["preprocessing"]["clips"]), classes=classes, crops=crops,
                   source=str(folder), device=device, meta=cfg)
