"""Temporal action segmentation: session windows, dense features, MS-TCN, the scores."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from uniego.config import ComputeSettings, parse_student
from uniego.errors import UniegoError
from uniego.io import read_json
from uniego.manifest import manifest_sha256
from uniego.metrics import segmentation_scores
from uniego.models.mstcn import MSTCN, mstcn_loss
from uniego.sessions import build_demo_sessions, build_window_cache, frames_to_windows, window_indices, write_sessions
from uniego.stages.segmentation.segment import dense_features, train_and_score
from uniego.student import build_student
from uniego.video import resize_crop

STUDENT = {"arch": "timesformer_test", "init": "random", "input_size": 32, "train_jitter": [32, 40]}
WINDOWS = {"num_frames": 4, "size": 48, "stride": 3, "frame_step": 2}
SEG = {"background": [], "stages": 2, "layers": 3, "channels": 8, "dropout": 0.5, "smooth_weight": 0.15,
       "smooth_tau": 4.0, "lr": 5e-4, "epochs": 2}
CPU = ComputeSettings(device="cpu", precision="fp32", workers=0, batch_size=4)


def test_window_arithmetic():
    assert window_indices(10, 100, 4, 2).tolist() == [7, 9, 11, 13]
    assert window_indices(0, 100, 4, 2).tolist() == [0, 0, 1, 3]          # clamped at the start
    assert window_indices(99, 100, 3, 5).tolist() == [94, 99, 99]          # and at the end
    # every frame takes its nearest window centre (0, 3, 6, 9), ties to the earlier
    assert frames_to_windows(11, 3).tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_mstcn_shapes_and_loss_is_ce_plus_truncated_mse():
    torch.manual_seed(0)
    model = MSTCN(6, 5, stages=3, layers=4, channels=8, dropout=0.0)
    x = torch.randn(2, 6, 30)
    z = model(x)
    assert z.shape == (3, 2, 5, 30)
    y = torch.randint(0, 5, (2, 30))
    want = 0.0
    for zs in z:
        want += F.cross_entropy(zs, y)
        lp = F.log_softmax(zs, 1)
        d = (lp[:, :, 1:] - lp[:, :, :-1]) ** 2
        want += 0.15 * torch.clamp(d, max=16).mean()
    assert float(mstcn_loss(z, y, smooth_weight=0.15, tau=4.0).detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    # the smoothing term does not pull the previous frame (it is detached): with identical CE
    # terms, frame 0's gradient is the same with and without smoothing
    z = z.detach()[:1, :, :, :2].requires_grad_(True)
    g_smooth = torch.autograd.grad(mstcn_loss(z, y[:, :2], smooth_weight=1.0), z)[0]
    g_plain = torch.autograd.grad(mstcn_loss(z, y[:, :2], smooth_weight=0.0), z)[0]
    torch.testing.assert_close(g_smooth[..., 0], g_plain[..., 0])
    assert not torch.allclose(g_smooth[..., 1], g_plain[..., 1])


@pytest.fixture(scope="module")
def sessions(tiny_data, tmp_path_factory):
    base = tmp_path_factory.mktemp("seg")
    table, classes = build_demo_sessions(tiny_data["root"], "demo")
    path = base / "sessions.parquet"
    write_sessions(table, classes, path)
    windows = build_window_cache(str(path), str(base / "sessions.zarr"), WINDOWS, workers=0)
    return {"path": str(path), "table": table, "classes": classes, "windows": str(windows), "base": base}


def test_sessions_and_window_cache(sessions):
    table, classes = sessions["table"], sessions["classes"]
    assert classes[-1] == "idle" and len(classes) == 10
    assert sorted(table.split) == ["test", "train"]
    g = zarr.open_group(sessions["windows"], mode="r")
    n_windows = sum(len(range(0, n, 3)) for n in table.n_frames)
    assert g["frames"].shape == (n_windows, 4, 48, 48, 3) and g.attrs["complete"] is True
    row = table.iloc[1]
    ids = [str(s) for s in g["sample"][:]]
    w = ids.index(f"{row.session_id}@{6:06d}")
    assert int(g["centre"][w]) == 6 and int(g["label"][w]) == int(np.load(row.labels)[6])
    import decord
    vr = decord.VideoReader(row.video)
    expect = resize_crop(vr.get_batch(list(window_indices(6, row.n_frames, 4, 2))).asnumpy(), 48)
    np.testing.assert_array_equal(g["frames"][w], expect)


def test_dense_features_and_segmentation_scores(sessions, tmp_path):
    sha = manifest_sha256(sessions["path"])
    enc = build_student(parse_student(STUDENT), 9, num_frames=4, seed=1)
    ck = tmp_path / "m.pt"
    torch.save({"encoder": enc.state_dict(), "meta": {"kind": "student", "classes": sessions["classes"][:-1],
                                                       "num_frames": 4, "manifest_sha256": "x", "seed": 1}}, ck)
    feats = dense_features(sessions["path"], sessions["windows"], str(ck), str(tmp_path / "dense.zarr"),
                           {"student": STUDENT}, compute=CPU)
    g = zarr.open_group(str(feats), mode="r")
    assert g["features"].shape == (zarr.open_group(sessions["windows"], mode="r")["frames"].shape[0], 64)
    assert g.attrs["manifest_sha256"] == sha
    out = tmp_path / "segmentation.json"
    res = train_and_score(sessions["path"], str(feats), str(out), {"segmentation": SEG, "seed": 0}, compute=CPU, name="m")
    assert read_json(out, stage="segmentation") == res
    # the scores are the MS-TCN evaluation of the saved frame predictions
    p = np.load(tmp_path / "segmentation.predictions.npz")
    names = [k[5:] for k in p.files if k.startswith("pred/")]
    assert names and res["test_videos"] == len(names)
    expect = segmentation_scores([p[f"pred/{n}"] for n in names], [p[f"gt/{n}"] for n in names])
    for k in ("F1@10", "F1@25", "F1@50", "Edit", "Acc"):
        assert res[k] == pytest.approx(expect[k])
    gt = p[f"gt/{names[0]}"]
    assert len(p[f"pred/{names[0]}"]) == len(gt) == int(sessions["table"].set_index("session_id").n_frames[names[0]])
    # deterministic on CPU: a second run gives the same numbers
    res2 = train_and_score(sessions["path"], str(feats), str(tmp_path / "again" / "segmentation.json"),
                           {"segmentation": SEG, "seed": 0}, compute=CPU, name="m")
    assert {k: res2[k] for k in expect} == {k: res[k] for k in expect}
    with pytest.raises(UniegoError, match="not classes"):
        train_and_score(sessions["path"], str(feats), str(tmp_path / "bad.json"),
                        {"segmentation": {**SEG, "background": ["nap"]}, "seed": 0}, compute=CPU)


def test_embed_dense_matches_the_segmentation_dense_features(sessions, tmp_path):
    """`uniego embed VIDEO --dense --stride S --frame-step F` gives, for a session video, the
    features of the segmentation rule's dense_features, window for window."""
    from uniego.stages.use import embed
    enc = build_student(parse_student(STUDENT), 9, num_frames=4, seed=2)
    ck = tmp_path / "m.pt"
    clips = {"num_frames": 4, "size": 48, "sampling": "uniform", "stride": 2}
    torch.save({"encoder": enc.state_dict(), "meta": {"kind": "student", "classes": sessions["classes"][:-1], "num_frames": 4,
                                                       "manifest_sha256": "x", "seed": 2, "student": STUDENT, "clips": clips}}, ck)
    ref = zarr.open_group(str(dense_features(sessions["path"], sessions["windows"], str(ck), str(tmp_path / "dense.zarr"),
                                             {"student": STUDENT}, compute=CPU)), mode="r")
    row = sessions["table"].iloc[1]
    assert row.start_frame == 0
    out = embed([row.video], str(ck), str(tmp_path / "emb.zarr"), dense=(WINDOWS["stride"], WINDOWS["frame_step"]), workers=0,
                batch_size=CPU.batch_size)
    g = zarr.open_group(str(out), mode="r")
    ids = [str(s) for s in ref["sample"][:]]
    rows = [ids.index(f"{row.session_id}@{c:06d}") for c in range(0, row.n_frames, WINDOWS["stride"])]
    assert list(g["centre"][:]) == list(range(0, row.n_frames, WINDOWS["stride"]))
    np.testing.assert_array_equal(g["features"][:], ref["features"][rows])
    fps = float(__import__("decord").VideoReader(row.video).get_avg_fps())
    np.testing.assert_allclose(g["time"][:], np.asarray(g["centre"][:]) / fps, rtol=1e-6)
