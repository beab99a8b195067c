"""Use the encoder (issue 22): `uniego.load_encoder` on a checkpoint the pipeline wrote gives the
evaluation's features and logits for the same clips, and `uniego predict` its top-1."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import uniego
from tests.conftest import CPU, PROXY_SETTINGS, TINY_CLIPS
from uniego.errors import UniegoError
from uniego.manifest import read_manifest


@pytest.fixture(scope="module")
def proxy(tiny_data, tmp_path_factory):
    """A tiny proxy trained with the ego clip settings in its settings (as the DAG passes them)."""
    from uniego.config import TeacherSettings
    from uniego.stages.level1.proxies import train_proxy
    from uniego.stages.teachers.extract import extract
    base = tmp_path_factory.mktemp("encoder")
    feats = extract(tiny_data["manifest"], tiny_data["clips"], base / "exo_skl.zarr", TeacherSettings("exo_skl", "stgcn_test", "random"),
                    compute=CPU)
    clips = {k: getattr(TINY_CLIPS, k) for k in ("num_frames", "size", "sampling", "stride")}
    settings = {**PROXY_SETTINGS, "train": {**PROXY_SETTINGS["train"], "epochs": 2}, "clips": clips}
    return train_proxy(tiny_data["manifest"], tiny_data["clips"]["ego"], str(feats), str(base / "exo_skl.pt"), settings, compute=CPU)


def test_the_encoder_gives_the_evaluations_numbers(tiny_data, proxy, tmp_path):
    from uniego.stages.evaluate.recognition import evaluate_recognition
    settings = {"student": PROXY_SETTINGS["student"], "eval": {"spatial_crops": 3, "temporal_clips": 1}}
    r = evaluate_recognition(tiny_data["manifest"], tiny_data["clips"]["ego"], str(proxy), str(tmp_path / "rec.json"), settings,
                             compute=CPU, retrieval_out=str(tmp_path / "ret.json"))
    enc = uniego.load_encoder(proxy)
    assert enc.clips == TINY_CLIPS.__class__(num_frames=4, size=48, sampling="uniform", stride=2)
    table, classes = read_manifest(tiny_data["manifest"])
    test = table[table.split == "test"]
    # decoding each test video's segment as the clip cache does gives the cached frames, bit for bit
    import zarr
    cached = zarr.open_group(tiny_data["clips"]["ego"], mode="r")["frames"]
    rows = np.flatnonzero(table.split.to_numpy() == "test")
    clips = [enc.decode(row.ego_video, start=row.start, end=row.end) for row in test.itertuples()]
    assert all(np.array_equal(c, cached[i]) for c, i in zip(clips, rows))
    feats, logits = enc.forward_clips(np.stack(clips))
    from uniego.metrics import topk_accuracy
    assert topk_accuracy(logits, test.label.to_numpy(), 1) == r["top1"]
    # the features are the ones retrieval ranks: the same bits as the evaluation's pass
    from uniego.checkpoints import predict
    from uniego.data import ClipSource
    from uniego.manifest import manifest_sha256
    source = ClipSource(tiny_data["clips"]["ego"], list(test.sample_id), manifest_sha256=manifest_sha256(tiny_data["manifest"]))
    outs = [predict(enc.model, source, enc.student, device=torch.device("cpu"), batch_size=enc.batch_size, crop=c) for c in (0, 1, 2)]
    assert np.array_equal(feats, sum(h for h, _ in outs) / 3) and np.array_equal(logits, sum(z for _, z in outs))
    top = enc.predict(np.stack(clips), k=len(classes))
    assert [t[0][0] for t in top] == [classes[i] for i in logits.argmax(1)]
    expected = torch.from_numpy(logits).double().softmax(-1).numpy()
    for t, p in zip(top, expected):   # every class once, in falling probability, the softmax of the summed logits
        assert sorted(c for c, _ in t) == sorted(classes) and [q for _, q in t] == sorted(p.tolist(), reverse=True)


def test_predict_on_the_command_line(tiny_data, proxy):
    table, classes = read_manifest(tiny_data["manifest"])
    video = str(table.ego_video.iloc[0])
    r = subprocess.run([sys.executable, "-m", "uniego", "predict", video, "--model", str(proxy), "-k", "2", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out[0]["video"] == video and len(out[0]["top"]) == 2 and out[0]["top"][0]["class"] in classes
    r = subprocess.run([sys.executable, "-m", "uniego", "predict", "nope.mp4", "--model", str(proxy)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "nope.mp4" in r.stderr


def test_a_checkpoint_without_clip_settings_needs_them(tiny_data, proxy, tmp_path):
    obj = torch.load(proxy, weights_only=True)
    obj["meta"].pop("clips")
    torch.save(obj, tmp_path / "old.pt")
    with pytest.raises(UniegoError, match="does not record the clip settings"):
        uniego.load_encoder(tmp_path / "old.pt")
    enc = uniego.load_encoder(tmp_path / "old.pt", clips={"num_frames": 4, "size": 48, "sampling": "uniform", "stride": 2})
    assert enc.clips.size == 48
