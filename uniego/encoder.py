"""Use the encoder (issue 22): `uniego.load_encoder(path)` turns any model checkpoint the
pipeline writes (a proxy, a merge, a baseline, UNIEGO, an imported official checkpoint) into an
`Encoder` whose preprocessing travels with its weights: the student settings (architecture,
input size, eval resize) and the ego clip settings (frames, sampling, cache size) recorded in
the checkpoint's `meta`, no config file needed.

    enc = uniego.load_encoder("results/demo/uniego.pt")
    features = enc.embed(["clip1.mp4", "clip2.mp4"])        # [2, D]: CLS, averaged over the test crops
    for top in enc.predict("clip1.mp4", k=3):                # [(class name, probability), ...]
        print(top)

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


class FramesSource:
    """Clips already in memory ([T, S, S, 3] uint8 each), in the shape `checkpoints.predict` reads."""

    def __init__(self, clips):
        self.clips = list(clips)
        self.num_frames = self.clips[0].shape[0] if self.clips else 0

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        return self.clips[i]


class Encoder:
    """A trained ego encoder with its preprocessing. `embed` and `predict` take a video path,
    a list of paths, or decoded clips (uint8 [T, S, S, 3] or [N, T, S, S, 3])."""

    def __init__(self, model: torch.nn.Module, *, student: StudentSettings, clips: ClipSettings, classes: list[str],
                 crops: int = 3, source: str = "", device: str = "cpu", batch_size: int = 8):
        self.model, self.student, self.clips, self.classes = model.eval(), student, clips, list(classes)
        self.crops, self.source, self.device, self.batch_size = crops, source, torch.device(device), batch_size

    def decode(self, video: str | Path, *, start: float = 0.0, end: float | None = None) -> np.ndarray:
        """One clip of `video` ([start, end) seconds; default the whole video) as the clip cache holds it."""
        from uniego.video import open_video, read_frames, resize_crop

        video = str(video)
        if end is None:
            _, n, fps = open_video(video, Path(video).stem, stage="embed")
            end = n / fps
        frames, _ = read_frames(video, Path(video).stem, start, end, self.clips.num_frames, sampling=self.clips.sampling,
                                stride=self.clips.stride, stage="embed")
        return resize_crop(frames, self.clips.size)

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
        bad = [c.shape for c in clips if c.shape != (self.clips.num_frames, self.clips.size, self.clips.size, 3)]
        if bad:
            raise UniegoError(f"clips of shape {bad[0]}: this encoder takes {self.clips.num_frames} frames of "
                              f"{self.clips.size}x{self.clips.size} (decode them with Encoder.decode)", stage="embed")
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


def load_encoder(path: str | Path, *, clips: dict | None = None, crops: int = 3, device: str = "cpu") -> Encoder:
    """The encoder of a model checkpoint written by the pipeline, with its preprocessing from
    the checkpoint's meta. `clips` (num_frames, size, sampling, stride) is needed only for a
    checkpoint that does not record its clip settings (one written before they were recorded)."""
    from uniego.checkpoints import encoder_from_checkpoint, load_model

    obj = load_model(str(path), stage="embed")
    meta = obj["meta"]
    if not isinstance(meta.get("student"), dict):
        raise UniegoError(f"{path} does not record its student settings (meta.student): it predates uniego's "
                          "recording them; retrain it, or load it with uniego.checkpoints", stage="embed")
    clip_settings = clips or meta.get("clips")
    if not clip_settings:
        raise UniegoError(f"{path} does not record the clip settings it was trained on (meta.clips); pass "
                          "load_encoder(..., clips={'num_frames': ..., 'size': ..., 'sampling': ..., 'stride': ...}) "
                          "with the config's `clips` values", stage="embed")
    student = parse_student(meta["student"])
    model = encoder_from_checkpoint(obj, student)
    return Encoder(model, student=student, clips=ClipSettings(**clip_settings), classes=meta["classes"], crops=crops,
                   source=str(path), device=device)
