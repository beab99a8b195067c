"""Trustworthy caches and inputs (issue 20): each fault injected on the tiny data, then the exact
error (store / array / chunk / sample / file named), exit status 2 and no traceback where a
command is run, and nothing left that a rerun would take as done."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import TINY_CLIPS
from uniego.cache import ArraySpec, StoreWriter, open_store, read_array, verify_store
from uniego.data import ClipSource
from uniego.errors import UniegoError
from uniego.manifest import manifest_sha256, read_manifest

STUDENT = {"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [32, 40]}


def _uniego(*args):
    return subprocess.run([sys.executable, "-m", "uniego", *map(str, args)], capture_output=True, text=True)


def _chunk(store: Path, array: str, index: int) -> Path:
    """The chunk file of `array` holding chunk `index` along the sample axis."""
    files = sorted((store / array / "c" / str(index)).rglob("*"))
    return next(f for f in files if f.is_file())


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def ego(tiny_data, tmp_path):
    """A copy of the tiny ego clip cache (one clip per chunk), the manifest and its ids."""
    store = Path(shutil.copytree(tiny_data["clips"]["ego"], tmp_path / "ego.zarr"))
    table, _ = read_manifest(tiny_data["manifest"])
    return store, tiny_data["manifest"], manifest_sha256(tiny_data["manifest"]), list(table.sample_id)


def _features(path: Path, ids, sha: str, teacher: str = "ego_dino") -> Path:
    w = StoreWriter(path, sample_ids=ids, splits=["train"] * len(ids), labels=[0] * len(ids),
                    arrays={"features": ArraySpec((16,), "float32", ("channel",))},
                    attrs={"kind": "features", "teacher": teacher, "manifest_sha256": sha}, chunk_samples=4)
    w.write(0, len(ids), features=np.random.default_rng(0).normal(size=(len(ids), 16)).astype(np.float32))
    return w.finalize()


def test_every_chunk_is_written_and_checksummed(ego):
    store, _, sha, ids = ego
    meta = json.loads((store / "frames" / "zarr.json").read_text())
    assert [c["name"] for c in meta["codecs"]][-2:] == ["zstd", "crc32c"]
    result = verify_store(store)
    assert result["missing"] == [] and result["damaged"] == [] and result["chunks"] >= len(ids)
    r = _uniego("inspect", "--verify", store)
    assert r.returncode == 0, r.stderr
    assert "all intact" in r.stdout


def test_a_deleted_clip_chunk_is_an_error_never_black_frames(ego):
    store, _, sha, ids = ego
    _chunk(store, "frames", 3).unlink()
    with pytest.raises(UniegoError) as e:
        ClipSource(str(store), ids, manifest_sha256=sha)
    msg = str(e.value)
    assert f"store {store} is damaged" in msg and "`frames` chunk (3, 0, 0, 0, 0)" in msg and ids[3] in msg
    r = _uniego("inspect", "--verify", store)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "DAMAGED    1 chunk file(s) missing" in r.stdout and f"MISSING    `frames` chunk (3, 0, 0, 0, 0) (rows 3-3: {ids[3]})" in r.stdout


def test_a_flipped_byte_in_a_clip_chunk_fails_its_read(ego):
    store, _, sha, ids = ego
    _flip(_chunk(store, "frames", 5))
    source = ClipSource(str(store), ids, manifest_sha256=sha)   # every chunk is there
    assert source[4].shape == (TINY_CLIPS.num_frames, TINY_CLIPS.size, TINY_CLIPS.size, 3)
    with pytest.raises(UniegoError) as e:
        source[5]
    msg = str(e.value)
    assert f"store {store} is damaged: `frames` chunk 5 (rows 5-5: {ids[5]}) cannot be read" in msg and "checksum" in msg
    r = _uniego("inspect", "--verify", store)
    assert r.returncode == 2 and f"DAMAGED    `frames` chunk (5, 0, 0, 0, 0) (rows 5-5: {ids[5]})" in r.stdout


def test_a_damaged_feature_store_is_named(ego, tmp_path):
    _, _, sha, ids = ego
    feats = _features(tmp_path / "ego_dino.zarr", ids, sha)
    values, _ = read_array(feats, manifest_sha256=sha, sample_ids=ids)
    assert values.shape == (len(ids), 16)
    flipped = Path(shutil.copytree(feats, tmp_path / "flipped.zarr"))
    _flip(_chunk(flipped, "features", 1))   # features are stored raw: a flipped bit would read as another float
    with pytest.raises(UniegoError, match=r"`features` chunk 1 \(rows 4-7: .*\) cannot be read: Stored and computed checksum"):
        read_array(flipped, manifest_sha256=sha, sample_ids=ids)
    _chunk(feats, "features", 2).unlink()
    with pytest.raises(UniegoError, match=r"is damaged: 1 chunk file\(s\) are missing \(`features` chunk \(2, 0\) \(rows 8-11"):
        read_array(feats, manifest_sha256=sha, sample_ids=ids)


def test_the_wrong_store_is_refused_with_both_sides_named(tiny_data, ego, tmp_path):
    store, _, sha, ids = ego
    with pytest.raises(UniegoError, match=r"has view 'exo', but train expects 'ego': pass the clip cache of that view"):
        ClipSource(tiny_data["clips"]["exo"], ids, manifest_sha256=sha)
    other = {"num_frames": 8, "size": 32, "sampling": "uniform", "stride": 2}
    with pytest.raises(UniegoError) as e:
        ClipSource(str(store), ids, manifest_sha256=sha, clip_settings=other)
    assert "has settings {'num_frames': 4, 'size': 48" in str(e.value) and "expects {'num_frames': 8, 'size': 32" in str(e.value)
    feats = _features(tmp_path / "exo_dino.zarr", ids, sha, teacher="exo_dino")
    from uniego.stages.level1.proxies import teacher_targets
    table, _ = read_manifest(tiny_data["manifest"])
    with pytest.raises(UniegoError, match="has teacher 'exo_dino', but level1 expects 'ego_dino'"):
        teacher_targets(str(feats), table, sha, "ego_dino")


def test_an_old_format_store_is_refused(ego):
    store, _, sha, ids = ego
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 1
    (store / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(UniegoError, match="has store format 1, written by an older uniego"):
        open_store(store)


def test_bad_checkpoints_are_named_errors_on_the_command_line(tiny_data, tmp_path):
    table, classes = read_manifest(tiny_data["manifest"])
    sha = manifest_sha256(tiny_data["manifest"])
    settings = json.dumps({"student": STUDENT, "eval": {"spatial_crops": 1, "temporal_clips": 1}})

    def evaluate(model):
        r = _uniego("evaluate", "--settings", settings, "--manifest", tiny_data["manifest"], "--clips", tiny_data["clips"]["ego"],
                    "--model", model, "--out", tmp_path / "out.json", "--workers", "0", "--device", "cpu")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "out.json").exists()
        return r.stderr

    from uniego.config import parse_student
    from uniego.student import build_student
    good = {"encoder": build_student(parse_student(STUDENT), len(classes), num_frames=4).state_dict(),
            "meta": {"kind": "proxy", "classes": classes, "num_frames": 4, "manifest_sha256": sha}}
    torch.save(good, tmp_path / "good.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:5000])
    assert f"cannot read checkpoint {tmp_path / 'truncated.pt'}" in evaluate(tmp_path / "truncated.pt")
    torch.save({**good, "encoder": {"other.weight": torch.zeros(2)}}, tmp_path / "arch.pt")
    assert "does not fit student.arch timesformer_test" in evaluate(tmp_path / "arch.pt")
    torch.save({**good, "meta": {**good["meta"], "classes": ["a", "b"]}}, tmp_path / "classes.pt")
    assert f"predicts 2 classes (a, b), but the manifest has {len(classes)}" in evaluate(tmp_path / "classes.pt")
    torch.save({**good, "meta": {**good["meta"], "num_frames": 8}}, tmp_path / "frames.pt")
    assert "takes 8-frame clips, but the clip cache has 4 frames per clip" in evaluate(tmp_path / "frames.pt")
    # `uniego inspect --verify` checks every record of the checkpoint's zip against its CRC-32
    r = _uniego("inspect", "--verify", tmp_path / "good.pt", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["meta"]["kind"] == "proxy" and info["classes"] == len(classes) and info["tensor_groups"]["encoder"]["tensors"] > 0
    import zipfile
    with zipfile.ZipFile(tmp_path / "good.pt") as z:   # flip a byte inside the largest record's data
        big = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray((tmp_path / "good.pt").read_bytes())
    at = big.header_offset
    at += 30 + int.from_bytes(data[at + 26:at + 28], "little") + int.from_bytes(data[at + 28:at + 30], "little") + big.file_size // 2
    data[at] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(bytes(data))
    r = _uniego("inspect", "--verify", tmp_path / "flipped.pt")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "fails its CRC-32" in r.stderr, r.stderr


def test_an_error_in_a_loader_worker_reaches_the_terminal_as_one_line(tiny_data, ego):
    """A damaged chunk read inside a DataLoader worker: the message, not the worker's traceback."""
    store, _, _, ids = ego
    _flip(_chunk(store, "frames", 2))
    settings = json.dumps({"teacher": {"key": "ego_dino", "arch": "dinov2_test", "weights": "random", "frames_from": "cache"},
                           "seed": 0})
    out = store.parent / "feats.zarr"
    r = _uniego("extract", "--settings", settings, "--manifest", tiny_data["manifest"], "--teacher", "ego_dino",
                "--clips", f"ego={store}", "--out", out, "--workers", "1", "--device", "cpu")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Caught UniegoError" not in r.stderr
    line = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line and line[0].startswith(f"uniego extract: error: [extract] store {store} is damaged: `frames` chunk 2 (rows 2-2: {ids[2]})")
    assert not out.exists()


def test_a_full_disk_is_named(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as "file write failed": the message says what it is."""
    from uniego.io import atomic_torch_save

    def full(obj, path):
        Path(path).write_bytes(b"x")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1 << 30, (1 << 30) - (1 << 20), 1 << 20))
    with pytest.raises(UniegoError, match=r"the disk is full: writing .*last.pt failed with 1.0 MiB free"):
        atomic_torch_save({"x": 1}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())   # no .partial left


def test_a_manifest_label_out_of_range_is_named(tiny_data, tmp_path):
    table, classes = read_manifest(tiny_data["manifest"])
    table.loc[2, "label"] = 99
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pq.read_table(tiny_data["manifest"])
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(t.schema.metadata), tmp_path / "m.parquet")
    with pytest.raises(UniegoError, match=rf"1 row\(s\) have a label outside 0..8 .* sample {table.sample_id[2]} label 99"):
        read_manifest(tmp_path / "m.parquet")


def test_the_data_check_names_empty_splits_short_clips_and_bad_skeletons_and_lists_untrained_classes(tiny_data, tmp_path):
    from uniego.stages.data.check_data import check_data

    root = Path(shutil.copytree(tiny_data["root"], tmp_path / "demo"))
    ann = pd.read_csv(root / "annotations.csv")
    first = ann.class_name[0]
    ann.loc[(ann.class_name == first) & (ann.split == "train"), "split"] = "val"     # a class never trained on
    short = ann.index[ann.split == "test"][1]
    ann.loc[short, "end"] = ann.start[short] + 2 / 12                                  # 2 frames at 12 fps
    ann.to_csv(root / "annotations.csv", index=False)
    skl = root / ann.skeleton[5]
    with np.load(skl) as z:
        data = dict(z)
    np.savez(skl, **{**data, "fps": np.float32(0)})
    out = tmp_path / "check.json"
    with pytest.raises(UniegoError) as e:
        check_data({"adapter": "demo", "root": str(root)}, "tiny", out, skeletons=True, num_frames=4)
    msg = str(e.value)
    assert f"sample {ann.sample_id[short]}: segment" in msg and "has 2 frames at 12 fps, fewer than clips.num_frames 4" in msg
    assert f"sample {ann.sample_id[5]}: skeleton file {skl} fps 0.0 is not a frame rate" in msg
    assert not out.exists() and out.with_name("check.json.failed.json").is_file()
    failed = json.loads(out.with_name("check.json.failed.json").read_text())
    assert f"class {first} has no training clip (3 clip(s) in other splits)" in failed["warnings"][0]   # listed, not fatal

    ann.loc[ann.split == "test", "split"] = "val"                                      # no test split at all
    ann.to_csv(root / "annotations.csv", index=False)
    with pytest.raises(UniegoError, match="split test has no clips"):
        check_data({"adapter": "demo", "root": str(root)}, "tiny", out, num_frames=4)


def test_video_paths_stay_inside_the_dataset_root(tiny_data, tmp_path):
    from uniego.datasets import build_manifest

    root = Path(shutil.copytree(tiny_data["root"], tmp_path / "demo"))
    ann = pd.read_csv(root / "annotations.csv")
    os.makedirs(tmp_path / "elsewhere")
    shutil.copy(root / ann.ego_video[0], tmp_path / "elsewhere" / "x.mp4")
    ann.loc[0, "ego_video"] = "../elsewhere/x.mp4"
    ann.to_csv(root / "annotations.csv", index=False)
    spec = {"adapter": "demo", "root": str(root)}
    with pytest.raises(UniegoError, match=rf"1 video path\(s\) of dataset tiny lie outside its root .*\n  sample {ann.sample_id[0]}: "
                                          r"ego_video .*elsewhere/x.mp4(.|\n)*paths_outside_root: true"):
        build_manifest(spec, "tiny")
    assert len(build_manifest({**spec, "paths_outside_root": True}, "tiny").table) == len(ann)


def test_input_signature_sees_content_not_timestamps(tmp_path):
    """Issue 20: the dataset watch hashes content. A same-size replacement that keeps the mtime (as
    `cp -p` does) changes the signature; a file only touched does not; the cache spares reading
    unchanged files, and a damaged cache only costs reading them again."""
    from uniego.datasets import CONTENT_BLOCK, content_digest, input_signature
    root = tmp_path / "data"
    (root / "videos").mkdir(parents=True)
    small, big = root / "videos" / "a.mp4", root / "videos" / "b.mp4"
    small.write_bytes(bytes(range(256)) * 40)
    big.write_bytes(np.random.default_rng(0).integers(0, 256, 3 * 1024 * 1024, dtype=np.uint8).tobytes())
    spec, cache = {"adapter": "demo", "root": str(root)}, tmp_path / "results" / ".input-hashes.json"
    sig = input_signature(spec, "t", cache=cache)
    assert sig == input_signature(spec, "t") and len(json.loads(cache.read_text())) == 2

    def replace_keeping_mtime(path, offset):
        st = os.stat(path)
        data = bytearray(path.read_bytes())
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns

    os.utime(small, ns=(1, 10**18))   # touched: read again, same content, same signature
    assert input_signature(spec, "t", cache=cache) == sig
    replace_keeping_mtime(small, 5000)
    sig2 = input_signature(spec, "t", cache=cache)
    assert sig2 != sig
    replace_keeping_mtime(big, len(big.read_bytes()) - 1)   # the last byte lies in the last block
    sig3 = input_signature(spec, "t", cache=cache)
    assert sig3 not in (sig, sig2) and sig3 == input_signature(spec, "t")
    # an unchanged file is not read again: a cached digest stands while the stat key holds
    entries = json.loads(cache.read_text())
    entries[str(big.resolve())][1] = "0" * 32
    cache.write_text(json.dumps(entries))
    assert input_signature(spec, "t", cache=cache) != sig3
    cache.write_text("{not json")   # damaged: every file read again
    assert input_signature(spec, "t", cache=cache) == sig3
    assert len(content_digest(big)) == 32 and CONTENT_BLOCK == 65536


def test_a_damaged_manifest_is_named(tiny_data, tmp_path):
    """Issue 20: the manifest carries a checksum of its rows and metadata. A row edited to another valid
    label, or a flipped byte anywhere in the file, is a named error on read, never a silent change."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table, classes = read_manifest(tiny_data["manifest"])
    t = pq.read_table(tiny_data["manifest"])
    table.loc[2, "label"] = (table.label[2] + 1) % len(classes)
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(t.schema.metadata), tmp_path / "m.parquet")
    with pytest.raises(UniegoError, match=r"manifest .*m.parquet is damaged: its rows or metadata do not match the checksum"):
        read_manifest(tmp_path / "m.parquet")
    raw = Path(tiny_data["manifest"]).read_bytes()
    caught = 0
    for at in range(8, len(raw) - 8, max(1, len(raw) // 40)):   # ~40 positions: data pages, footer, class list
        bad = bytearray(raw)
        bad[at] ^= 0x01
        (tmp_path / "f.parquet").write_bytes(bytes(bad))
        try:
            got, got_classes = read_manifest(tmp_path / "f.parquet")
        except UniegoError as e:
            assert "f.parquet" in str(e) and ("is damaged" in str(e) or "cannot be read" in str(e) or "label outside" in str(e)
                                              or "no uniego class list" in str(e) or "no content checksum" in str(e)), str(e)
            caught += 1
            continue
        # the byte fell where it changes nothing read (padding, statistics): what came back is the original
        original, original_classes = read_manifest(tiny_data["manifest"])
        assert got.equals(original) and got_classes == original_classes, at
    assert caught >= 20


def test_a_changed_value_in_a_report_json_is_named(tmp_path):
    """Issue 20: every JSON report carries a checksum of its content (uniego.io.atomic_write_json).
    A digit changed after the pipeline wrote it, a damaged byte, or a report written by hand stops
    `uniego report` with the file named, exit 2, and no report.md left behind."""
    from uniego.io import atomic_write_json, read_json
    p = tmp_path / "recognition.json"
    atomic_write_json(p, {"model": "uniego", "top1": 61.11111111111111, "top5": 90.0, "n": 54, "views": "1x3"})
    assert read_json(p, stage="report")["top1"] == 61.11111111111111   # floats read back exactly: the checksum holds
    good = p.read_text()

    def report(text):
        p.write_text(text)
        r = _uniego("report", "--recognition", p, "--out", tmp_path / "report.md")
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "report.md").exists()
        return r.stderr

    assert f"report {p} does not match its checksum: a value was changed" in report(good.replace("61.11", "67.11"))
    assert f"report {p} cannot be read (JSONDecodeError" in report(good.replace('"top5"', '"top5\x00'))
    assert f"report {p} has no `checksum`" in report(json.dumps({"model": "uniego", "top1": 99.0, "top5": 99.0}))
    p.write_text(good)
    assert _uniego("report", "--recognition", p, "--out", tmp_path / "report.md").returncode == 0
