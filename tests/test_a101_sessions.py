"""Assembly101 coarse annotations -> temporal action segmentation sessions: the annotated span
of each sequence's ego video, labels mapped from 30 fps annotation frames to the video's frames."""

import math
import shutil

import numpy as np
import pytest

from tests import official_formats as F
from uniego.errors import UniegoError
from uniego.sessions import build_sessions, build_window_cache, read_sessions, write_sessions


@pytest.fixture(scope="module")
def a101(tmp_path_factory):
    root = F.make_a101(tmp_path_factory.mktemp("a101"))
    return F.make_a101_coarse(root)


def spec(root):
    return {"adapter": "a101", "root": str(root), "options": {}}


def test_coarse_labels_become_sessions_on_the_ego_video(a101, tmp_path):
    table, classes = build_sessions(spec(a101), "a101", tmp_path / "labels")
    assert classes == F.A101_COARSE_ACTIONS
    assert table.split.tolist() == ["train", "test"]
    for row, segs, seq in zip(table.itertuples(), F.A101_COARSE, F.A101_SEQS):
        assert row.session_id == f"assembly_{seq}" and row.video.endswith(f"{seq}/HMC_21179183_mono10bit.mp4")
        assert row.fps == 60 and row.start_frame == 2 * segs[0][0] and row.n_frames == 2 * (segs[-1][1] - segs[0][0])
        y = np.load(row.labels)
        assert len(y) == row.n_frames
        for v in range(row.start_frame, row.start_frame + row.n_frames):   # video frame v <- annotation frame v // 2
            a = v // 2
            name = next(n for s, e, n in segs if s <= a < e)
            assert y[v - row.start_frame] == classes.index(name)


def test_session_windows_decode_inside_the_annotated_span(a101, tmp_path):
    table, classes = build_sessions(spec(a101), "a101", tmp_path / "labels")
    path = tmp_path / "sessions.parquet"
    write_sessions(table, classes, path)
    settings = {"num_frames": 4, "size": 16, "stride": 40, "frame_step": 4}
    store = build_window_cache(str(path), str(tmp_path / "windows.zarr"), settings, workers=0)
    import zarr
    g = zarr.open_group(str(store), mode="r")
    times = np.asarray(g["frame_time"][:])
    sessions, _ = read_sessions(path)
    first = sessions.start_frame.to_numpy() / 60
    last = (sessions.start_frame + sessions.n_frames - 1).to_numpy() / 60
    n0 = math.ceil(sessions.n_frames.iloc[0] / 40)
    assert times.shape == (n0 + math.ceil(sessions.n_frames.iloc[1] / 40), 4)
    assert (times[:n0] >= first[0] - 1e-6).all() and (times[:n0] <= last[0] + 1e-6).all()
    assert (times[n0:] >= first[1] - 1e-6).all() and times[0, 0] == pytest.approx(first[0])


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.write_text("000000006\t000000040\tattach wheel\n000000040\t000000075\tfly away\n"),
     "line 2: action 'fly away' is not in actions.csv"),
    (lambda f: f.write_text("000000006\t000000040\tattach wheel\n000000045\t000000075\tscrew chassis\n"),
     "segments are not contiguous (6-40 then 45-75)"),
    (lambda f: f.write_text("000000006\t000000400\tattach wheel\n"), "the coarse segments end at frame 400 @30 fps = 13.33 s, after the video"),
])
def test_bad_coarse_annotations_name_the_file(a101, tmp_path, edit, message):
    root = shutil.copytree(a101, tmp_path / "root")
    label_file = root / "coarse-annotations/coarse_labels" / f"assembly_{F.A101_SEQS[0]}.txt"
    edit(label_file)
    with pytest.raises(UniegoError) as e:
        build_sessions(spec(root), "a101", tmp_path / "labels")
    assert message in str(e.value) and str(label_file) in str(e.value)


def test_segmentation_targets_plan_for_assembly101(a101, tmp_path):
    from tests.test_datasets import _dry_run, _fake_checkpoints, _workflow_copy
    from tests.test_workflow import planned_jobs
    work = _workflow_copy(tmp_path)
    overlay = tmp_path / "data.yaml"
    overlay.write_text(f"datasets:\n  a101:\n    root: {a101}\n")
    _fake_checkpoints(work)
    r = _dry_run(work, "results/a101/eval/uniego/segmentation.json", overlay)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = planned_jobs(r)
    assert jobs["sessions"] == 1 and jobs["session_clips"] == 1 and jobs["segmentation"] == 1 and jobs["spd"] == 1
    bare = shutil.copytree(a101, tmp_path / "bare")
    shutil.rmtree(bare / "coarse-annotations")
    overlay.write_text(f"datasets:\n  a101:\n    root: {bare}\n")
    r = _dry_run(work, "results/a101/eval/uniego/segmentation.json", overlay)
    assert r.returncode != 0 and "datasets.a101.options.coarse: missing" in r.stderr + r.stdout
