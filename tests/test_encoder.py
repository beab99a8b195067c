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


@pytest.fixture(scope="module")
def exported(tiny_data, proxy, tmp_path_factory):
    """`uniego export` of the proxy, with its recognition and retrieval reports."""
    from uniego.stages.evaluate.recognition import evaluate_recognition
    base = tmp_path_factory.mktemp("export")
    settings = {"student": PROXY_SETTINGS["student"], "eval": {"spatial_crops": 3, "temporal_clips": 1}}
    r = evaluate_recognition(tiny_data["manifest"], tiny_data["clips"]["ego"], str(proxy), str(base / "rec.json"), settings,
                             compute=CPU, retrieval_out=str(base / "ret.json"))
    out = base / "export"
    p = subprocess.run([sys.executable, "-m", "uniego", "export", "--model", str(proxy), "--out", str(out), "--dataset", "tiny",
                        "--recognition", str(base / "rec.json"), "--retrieval", str(base / "ret.json"), "--config-sha256", "ab" * 32],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return out, r


def test_export_round_trip_and_onnx(tiny_data, proxy, exported):
    out, r = exported
    assert sorted(f.name for f in out.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    assert not out.with_name("export.partial").exists()
    cfg = json.loads((out / "config.json").read_text())
    table, classes = read_manifest(tiny_data["manifest"])
    assert cfg["format"] == "uniego-encoder" and cfg["classes"] == classes and cfg["dataset"] == "tiny"
    assert cfg["metrics"]["recognition"]["top1"] == r["top1"] and cfg["provenance"]["config_sha256"] == "ab" * 32
    from uniego.teachers.base import file_sha256
    assert cfg["provenance"]["checkpoint_sha256"] == file_sha256(proxy)
    assert cfg["files"]["model.safetensors"] == file_sha256(out / "model.safetensors")
    assert f"| tiny test | {r['top1']:.2f} |" in (out / "README.md").read_text()   # the card's numbers are the report's
    # load_encoder(DIR) gives the checkpoint's features and logits, bit for bit
    test = table[table.split == "test"]
    ref, enc = uniego.load_encoder(proxy), uniego.load_encoder(out)
    clips = np.stack([ref.decode(row.ego_video, start=row.start, end=row.end) for row in test.itertuples()])
    f0, z0 = ref.forward_clips(clips)
    f1, z1 = enc.forward_clips(clips)
    assert np.array_equal(f0, f1) and np.array_equal(z0, z1) and enc.classes == classes and enc.clips == ref.clips
    # the ONNX file computes one crop view; on the same preprocessed batch it matches PyTorch within 1e-4 relative
    import onnxruntime as ort

    from uniego.data import make_view
    from uniego.student import student_norm
    mean, std = student_norm(enc.student.arch)
    x = torch.stack([make_view(c, enc.student, train=False, crop=1, mean=mean, std=std) for c in clips])
    got = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"clip": x.numpy()})
    with torch.inference_mode():
        h = enc.model.forward_features(x)
        want = [h.numpy(), enc.model.head(h).numpy()]
    for g, w in zip(got, want):
        assert g.shape == w.shape and np.abs(g - w).max() <= 1e-4 * np.abs(w).max()
    assert cfg["onnx"]["max_relative_error"] <= 1e-4


def test_export_bad_inputs_are_named_and_write_nothing(tiny_data, proxy, exported, tmp_path):
    import shutil
    out, _ = exported
    # a folder that is not an export
    (tmp_path / "empty").mkdir()
    with pytest.raises(UniegoError, match="is not a uniego export"):
        uniego.load_encoder(tmp_path / "empty")
    # config and weights of different models: a class-count mismatch
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "classes": cfg["classes"][:-1]}))
    with pytest.raises(UniegoError, match=r"lists \d+ classes but the weights' head predicts \d+"):
        uniego.load_encoder(bad)
    # a config without the weights' sha256 is refused, not loaded unchecked
    (bad / "config.json").write_text(json.dumps({**cfg, "files": {}}))
    with pytest.raises(UniegoError, match="records no sha256"):
        uniego.load_encoder(bad)
    # weights changed after the export
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(UniegoError, match="does not match the sha256"):
        uniego.load_encoder(bad)
    # a report that cannot be read: exit 2, one message, no folder and no partial left
    r = subprocess.run([sys.executable, "-m", "uniego", "export", "--model", str(proxy), "--out", str(tmp_path / "x"),
                        "--dataset", "tiny", "--recognition", str(tmp_path / "missing.json"), "--no-onnx"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "missing.json" in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()
    # a model file that is not a uniego checkpoint
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    r = subprocess.run([sys.executable, "-m", "uniego", "export", "--model", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "y"),
                        "--dataset", "tiny", "--no-onnx"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "junk.pt" in r.stderr and not (tmp_path / "y").exists()


def test_a_video_shorter_than_a_clip_is_named(tiny_data, proxy, tmp_path):
    from uniego.demo.generate import write_video
    write_video(tmp_path / "short.mp4", np.zeros((2, 48, 48, 3), np.uint8), 10)
    r = subprocess.run([sys.executable, "-m", "uniego", "predict", str(tmp_path / "short.mp4"), "--model", str(proxy)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "short.mp4" in r.stderr and "4-frame clips" in r.stderr


def test_embed_a_manifest_gives_the_evaluations_features(tiny_data, proxy, tmp_path):
    """`uniego embed MANIFEST --split test`: the store holds, per test clip, the features the
    evaluation computes for the same clips and views, bit for bit; a rerun resumes."""
    import zarr

    from uniego.cache import open_store, strings
    from uniego.checkpoints import predict
    from uniego.data import ClipSource
    from uniego.manifest import manifest_sha256
    from uniego.stages.use import embed
    from uniego.teachers.base import file_sha256
    table, classes = read_manifest(tiny_data["manifest"])
    test = table[table.split == "test"]
    out = embed([tiny_data["manifest"]], str(proxy), str(tmp_path / "emb.zarr"), split="test", workers=0)
    g = open_store(out, expect={"kind": "embeddings"}, stage="test")
    assert list(strings(g["sample"][:])) == list(test.sample_id) and g.attrs["model_sha256"] == file_sha256(proxy)
    enc = uniego.load_encoder(proxy)
    source = ClipSource(tiny_data["clips"]["ego"], list(test.sample_id), manifest_sha256=manifest_sha256(tiny_data["manifest"]))
    outs = [predict(enc.model, source, enc.student, device=torch.device("cpu"), batch_size=enc.batch_size, crop=c) for c in (0, 1, 2)]
    assert np.array_equal(g["features"][:], sum(h for h, _ in outs) / 3)
    assert np.array_equal(g["logits"][:], sum(z for _, z in outs))
    assert g["features"].shape == (len(test), enc.model.embed_dim) and list(g["label"][:]) == list(test.label)
    # the command line writes the same store; an interrupted run (a .partial with some chunks) resumes
    r = subprocess.run([sys.executable, "-m", "uniego", "embed", tiny_data["manifest"], "--split", "test", "--model", str(proxy),
                        "--out", str(tmp_path / "cli.zarr"), "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    c = zarr.open_group(str(tmp_path / "cli.zarr"), mode="r")
    np.testing.assert_allclose(c["features"][:], g["features"][:], rtol=1e-5, atol=1e-6)
    # videos and folders: one clip per whole video, ids from the paths
    videos = sorted({str(v) for v in test.ego_video})[:2]
    out2 = embed(videos, str(proxy), str(tmp_path / "videos.zarr"), workers=0)
    g2 = zarr.open_group(str(out2), mode="r")
    assert list(strings(g2["sample"][:])) == videos
    np.testing.assert_array_equal(g2["features"][:], enc.embed(videos))
    with pytest.raises(UniegoError, match="does not exist"):
        embed([str(tmp_path / "nope.mp4")], str(proxy), str(tmp_path / "x.zarr"))
    assert not (tmp_path / "x.zarr").exists()


def test_predict_a_manifest_reproduces_the_evaluations_top1(tiny_data, proxy, exported):
    _, r = exported   # the evaluation's recognition.json of the same proxy
    p = subprocess.run([sys.executable, "-m", "uniego", "predict", tiny_data["manifest"], "--split", "test", "--model", str(proxy),
                        "-k", "1", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out) == r["n"]
    top1 = 100.0 * sum(o["top"][0]["class"] == o["label"] for o in out) / len(out)
    assert top1 == pytest.approx(r["top1"], abs=1e-4) and f"top-1 {r['top1']:.2f} over {r['n']} labelled clips" in p.stderr
