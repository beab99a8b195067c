"""Using a trained encoder (issue 22), outside the DAG:

  uniego embed INPUT... --model M --out X.zarr   features (and logits) of videos, a folder of
                                                 videos or a manifest, into a store of the cache
                                                 contract (resumable); --dense --stride N: one
                                                 feature per N frames of each video, with times
  uniego predict VIDEO... --model M              top-k classes and probabilities

The encoder and its preprocessing are `uniego.encoder` (`uniego.load_encoder`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from uniego.errors import UniegoError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
EMBED_CHUNK = 32   # samples per store chunk: the unit of progress, of resuming and of a loader item


def embed_inputs(inputs, *, split: str | None = None):
    """The clips to embed: a table (sample_id, video, start, end, split, label) from video files,
    folders of videos (searched recursively; ids relative to the folder) and manifests (.parquet:
    their segments, ids and labels; `split` keeps one split). Start/end NaN: the whole video."""
    import pandas as pd

    from uniego.manifest import read_manifest

    rows, classes = [], None
    for item in inputs:
        path = Path(item)
        if path.suffix == ".parquet":
            table, classes = read_manifest(path)
            if split:
                table = table[table.split == split]
            rows += [(r.sample_id, r.ego_video, float(r.start), float(r.end), r.split, int(r.label)) for r in table.itertuples()]
        elif path.is_dir():
            videos = sorted(v for v in path.rglob("*") if v.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise UniegoError(f"folder {path} holds no videos ({', '.join(VIDEO_SUFFIXES)})", stage="embed")
            rows += [(str(v.relative_to(path)), str(v), np.nan, np.nan, "", -1) for v in videos]
        elif path.is_file():
            rows.append((str(item), str(path), np.nan, np.nan, "", -1))
        else:
            raise UniegoError(f"input {item} does not exist (give video files, folders of videos, or a manifest .parquet)",
                              stage="embed")
    table = pd.DataFrame(rows, columns=["sample_id", "video", "start", "end", "split", "label"])
    dup = table.sample_id[table.sample_id.duplicated()]
    if len(dup):
        raise UniegoError(f"sample {dup.iloc[0]} is given twice: embed each video once", stage="embed")
    if table.empty:
        raise UniegoError(f"no clips to embed in {' '.join(map(str, inputs))}" + (f" (split {split})" if split else ""), stage="embed")
    return table, classes


class _Decode:
    """Loader item i: the clips of store chunk `ranges[i]` (decoded in the loader's workers)."""

    def __init__(self, table, ranges, clips, dense: tuple[int, int] | None):
        self.table, self.ranges, self.clips, self.dense = table, ranges, clips, dense

    def __len__(self):
        return len(self.ranges)

    def __getitem__(self, i):
        from uniego.encoder import decode_clip

        start, stop = self.ranges[i]
        part = self.table.iloc[start:stop]
        if self.dense is None:
            clips = [decode_clip(r.video, self.clips, start=0.0 if np.isnan(r.start) else r.start,
                                 end=None if np.isnan(r.end) else r.end, sample_id=r.sample_id) for r in part.itertuples()]
        else:   # sliding windows: each video's windows of this chunk decoded together
            from uniego.encoder import decode_windows

            clips = [w for (video, vid), rows in part.groupby(["video", "video_id"], sort=False)
                     for w in decode_windows(video, self.clips, rows.centre.to_numpy(), frame_step=self.dense[1], sample_id=vid)]
        return start, stop, np.stack(clips)


def dense_windows(table, *, stride: int):
    """One row per sliding window of every video: (sample_id `<id>@<centre>`, video, centre, time)."""
    import pandas as pd

    from uniego.sessions import window_centres
    from uniego.video import open_video

    rows = []
    for r in table.itertuples():
        _, n, fps = open_video(r.video, r.sample_id, stage="embed")
        rows += [(f"{r.sample_id}@{int(c):06d}", r.sample_id, r.video, int(c), float(c / fps), r.split, -1)
                 for c in window_centres(n, stride)]
    return pd.DataFrame(rows, columns=["sample_id", "video_id", "video", "centre", "time", "split", "label"])


def _table_sha256(table) -> str:
    """What is embedded (ids, videos, segments or windows): a store resumes only for the same."""
    import hashlib

    cols = [c for c in ("sample_id", "video", "start", "end", "centre") if c in table]
    return hashlib.sha256(table[cols].to_csv(index=False).encode()).hexdigest()


def embed(inputs, model: str, out: str, *, split: str | None = None, dense: tuple[int, int] | None = None, crops: int = 3,
          device: str = "cpu", batch_size: int = 8, workers: int = 0, logits: bool = True) -> Path:
    """Write the encoder's features of every input clip (or, with dense=(stride, frame_step), of
    every sliding window) to the store `out`. Resumable: a rerun with the same inputs and model
    keeps the chunks already written."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from uniego.cache import ArraySpec, StoreWriter
    from uniego.encoder import load_encoder
    from uniego.engine import whole_batches
    from uniego.teachers.base import file_sha256

    table, manifest_classes = embed_inputs(inputs, split=split)
    enc = load_encoder(model, crops=1 if dense else crops, device=device)
    enc.batch_size = batch_size
    model_sha = file_sha256(Path(model) / "model.safetensors") if Path(model).is_dir() else file_sha256(model)
    arrays = {"features": ArraySpec((int(enc.model.embed_dim),), "float32", ("channel",))}
    if logits:
        arrays["logits"] = ArraySpec((len(enc.classes),), "float32", ("class",))
    if dense:
        table = dense_windows(table, stride=dense[0])
        arrays.update({"centre": ArraySpec((), "int32", ()), "time": ArraySpec((), "float32", ())})
    attrs = {"kind": "embeddings", "model": str(model), "model_sha256": model_sha, "model_kind": enc.meta.get("kind"),
             "classes": enc.classes, "manifest_classes": manifest_classes, "clips": dict(enc.clips.__dict__),
             "student": dict(enc.student.__dict__), "crops": enc.crops,
             "feature": "CLS after the final norm" + (", centre crop" if dense or enc.crops == 1 else ", mean over the left / centre / right crops"),
             "inputs": [str(i) for i in inputs], "split": split, "inputs_sha256": _table_sha256(table),
             "dense": None if not dense else {"stride": dense[0], "frame_step": dense[1]}}
    writer = StoreWriter(out, sample_ids=table.sample_id, splits=table.split, labels=table.label, arrays=arrays, attrs=attrs,
                         chunk_samples=EMBED_CHUNK, stage="embed")
    ranges = writer.pending()
    loader = DataLoader(_Decode(table, ranges, enc.clips, dense), batch_size=None, collate_fn=whole_batches,
                        num_workers=min(workers, len(ranges) - 1))   # one chunk: decode here, no process to start
    for start, stop, clips in tqdm(loader, total=len(ranges), desc=f"embed {Path(model).name}", unit="chunk", disable=None):
        feats, z = enc.forward_clips(clips)
        if not np.isfinite(feats).all():
            raise UniegoError(f"model {model} produced NaN/Inf features for samples {table.sample_id.iloc[start:stop].tolist()[:5]}",
                              stage="embed")
        data = {"features": feats.astype(np.float32)}
        if logits:
            data["logits"] = z.astype(np.float32)
        if dense:
            part = table.iloc[start:stop]
            data.update({"centre": part.centre.to_numpy(np.int32), "time": part.time.to_numpy(np.float32)})
        writer.write(start, stop, **data)
    return writer.finalize()


def cmd_embed(args):
    import torch

    torch.set_num_threads(max(1, args.threads))
    out = embed(args.inputs, args.model, args.out, split=args.split, dense=(args.stride, args.frame_step) if args.dense else None,
                crops=args.crops, device="cuda" if args.device == "cuda" else "cpu", batch_size=args.batch_size, workers=args.workers)
    print(f"{out}: embeddings of {' '.join(args.inputs)} by {args.model}")


def predict_inputs(inputs, model: str, *, k: int = 5, split: str | None = None, crops: int = 3, device: str = "cpu",
                   workers: int = 2) -> list[dict]:
    """Per clip of `inputs` (as `uniego embed` takes them): {"sample", "video", "top": [{class,
    probability}], and "label" (the class name) when a manifest gives one}."""
    from torch.utils.data import DataLoader

    from uniego.encoder import load_encoder
    from uniego.engine import whole_batches

    table, classes = embed_inputs(inputs, split=split)
    enc = load_encoder(model, crops=crops, device=device)
    if classes is not None and list(classes) != enc.classes:
        raise UniegoError(f"the manifest has {len(classes)} classes ({', '.join(classes[:4])} ...) but {model} predicts "
                          f"{len(enc.classes)} ({', '.join(enc.classes[:4])} ...): it was trained on another class list",
                          stage="predict")
    ranges = [(a, min(a + EMBED_CHUNK, len(table))) for a in range(0, len(table), EMBED_CHUNK)]
    loader = DataLoader(_Decode(table, ranges, enc.clips, None), batch_size=None, collate_fn=whole_batches,
                        num_workers=min(workers, len(ranges) - 1))   # one chunk: decode here, no process to start
    results = []
    for start, stop, clips in loader:
        for r, top in zip(table.iloc[start:stop].itertuples(), enc.predict(clips, k=k)):
            results.append({"sample": r.sample_id, "video": r.video, "top": [{"class": c, "probability": q} for c, q in top],
                            **({"label": classes[r.label]} if classes is not None else {})})
    return results


def cmd_predict(args):
    results = predict_inputs(args.videos, args.model, k=args.k, split=args.split, crops=args.crops,
                             device="cuda" if args.device == "cuda" else "cpu", workers=args.workers)
    labelled = [r for r in results if "label" in r]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(len(r["sample"]) for r in results)
        for r in results:
            print(f"{r['sample']:<{width}}  " + "   ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
                  + (f"   (label: {r['label']})" if "label" in r else ""))
    if labelled:   # on stderr, so --json stays one JSON document
        top1 = 100.0 * sum(r["top"][0]["class"] == r["label"] for r in labelled) / len(labelled)
        print(f"top-1 {top1:.2f} over {len(labelled)} labelled clips", file=sys.stderr)


def add_commands(sub) -> None:
    """These `uniego` commands (cli.build_parser calls it)."""
    p = sub.add_parser("embed", help="embed videos, a folder of videos or a manifest with a trained model into a Zarr store",
                       description="Each video (or manifest segment) is one clip, decoded and viewed as the evaluation does; "
                       "the store has `features` [N, D] (and `logits`), the sample ids, and the model's sha256 in its "
                       "provenance, and resumes an interrupted run. --dense: one feature per --stride frames of each whole "
                       "video (centre crop, as the segmentation's dense features), with `centre` frames and `time` seconds. "
                       "Example: uniego embed videos/ --model results/demo/uniego.pt --out embeddings.zarr")
    p.add_argument("inputs", nargs="+", help="video files, folders of videos, or a manifest .parquet")
    p.add_argument("--model", required=True, help="a model checkpoint (uniego.pt, a proxy, merge or baseline) or an export folder")
    p.add_argument("--out", required=True, help="the store to write, e.g. embeddings.zarr")
    p.add_argument("--split", default=None, help="with a manifest: embed only this split (train, val, test)")
    p.add_argument("--dense", action="store_true", help="sliding windows over each whole video instead of one clip per video")
    p.add_argument("--stride", type=int, default=2, help="--dense: frames between window centres (segmentation.stride)")
    p.add_argument("--frame-step", type=int, default=4, help="--dense: frames between a window's frames (segmentation.frame_step)")
    p.add_argument("--crops", type=int, default=3, choices=[1, 3], help="test crops (the evaluation's eval.spatial_crops); "
                   "--dense always uses the centre crop")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("predict", help="classify videos with a trained model: the top classes and their probabilities",
                       description="Each video is one clip, decoded and viewed as the evaluation does (the clip settings "
                       "and student settings come from the checkpoint). Example: uniego predict clip.mp4 --model "
                       "results/demo/uniego.pt; uniego predict results/demo/manifest.parquet --split test --model "
                       "results/demo/uniego.pt gives the evaluation's top-1")
    p.add_argument("videos", nargs="+", help="video files (each one clip), folders of videos, or a manifest .parquet "
                   "(its segments; the top-1 against its labels is printed)")
    p.add_argument("--split", default=None, help="with a manifest: only this split (train, val, test)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (a single chunk of 32 clips decodes in the main one)")
    p.add_argument("--model", required=True, help="a model checkpoint: uniego.pt, a proxy, merge or baseline")
    p.add_argument("-k", type=int, default=5, help="classes to show per video")
    p.add_argument("--crops", type=int, default=3, choices=[1, 3], help="test crops (the evaluation's eval.spatial_crops)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    p.set_defaults(func=cmd_predict)
