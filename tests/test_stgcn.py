import numpy as np
import pytest
import torch

from uniego.errors import UniegoError
from uniego.models.stgcn import LAYOUTS, pyskl_state_dict, spatial_partition, stgcn_coco, stgcn_test


@pytest.mark.parametrize("layout, V", [("coco", 17), ("openpose", 18), ("nturgb+d", 25)])
def test_partition_is_the_column_normalised_adjacency_split_in_three(layout, V):
    A = spatial_partition(layout)
    assert A.shape == (3, V, V)
    np.testing.assert_allclose(A[0], np.diag(np.diag(A[0])))  # hop 0: self loops only
    # the three subsets partition the column-normalised adjacency (with self loops)
    np.testing.assert_allclose(A.sum(0).sum(0), np.ones(V))
    edges = {frozenset(e) for e in LAYOUTS[layout]["inward"]}
    nz = {frozenset((i, j)) for k in (1, 2) for i, j in zip(*np.nonzero(A[k]))}
    assert nz == edges


def test_coco_partition_hand_checked():
    A = spatial_partition("coco")
    # joint 0 (nose, the centre) has neighbours 1, 2, 5, 6 and itself: each column entry 1/5
    assert A[0, 0, 0] == pytest.approx(0.2)
    # left wrist (9) sends to left elbow (7): hop_dis(9, centre)=inf >= hop_dis(7, centre)=inf -> "close"
    assert A[1, 9, 7] == pytest.approx(1 / 3) and A[2, 9, 7] == 0
    # the nose (0, distance 0) sends to the left eye (1, distance 1): closer to the centre -> "further" subset
    assert A[2, 0, 1] == pytest.approx(1 / 3) and A[1, 0, 1] == 0


def test_pyskl_architecture_facts():
    m = stgcn_coco()
    assert sum(p.numel() for p in m.parameters()) == pytest.approx(3.07e6, rel=0.01)
    chans = [(b.gcn.conv.in_channels, b.tcn.conv.out_channels, b.tcn.conv.stride[0]) for b in m.gcn]
    assert chans == [(3, 64, 1), (64, 64, 1), (64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1),
                     (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 256, 1)]
    keys = m.state_dict().keys()
    assert {"data_bn.running_mean", "gcn.0.gcn.PA", "gcn.0.gcn.A", "gcn.4.residual.conv.weight",
            "gcn.7.residual.bn.weight", "gcn.9.tcn.conv.weight"} <= set(keys)
    assert "gcn.0.residual.conv.weight" not in keys and "gcn.1.residual.conv.weight" not in keys
    with torch.no_grad():
        assert m.eval()(torch.randn(2, 2, 100, 17, 3)).shape == (2, 256)
        assert stgcn_test().eval().forward_backbone(torch.randn(2, 2, 16, 17, 3)).shape == (2, 2, 16, 8, 17)


def test_pyskl_checkpoint_loads_strictly():
    src = stgcn_test(num_classes=9).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.copy_(torch.randn_like(p))
    ckpt = {"meta": {}, "state_dict": {("backbone." + k if not k.startswith("cls_head") else k): v
                                       for k, v in src.state_dict().items()}}
    dst = stgcn_test(num_classes=9)
    dst.load_state_dict(pyskl_state_dict(ckpt), strict=True)
    x = torch.randn(3, 1, 16, 17, 3)
    torch.testing.assert_close(dst.eval()(x), src(x))


def test_wrong_joint_count_is_an_error():
    with pytest.raises(UniegoError, match="17 joints"):
        stgcn_test()(torch.randn(1, 1, 16, 18, 3))


def test_the_teacher_input_is_pyskls_test_pipeline():
    """PreNormalize2D + FormatGCNInput(num_person=2) of pyskl 3f6795f (pyskl/datasets/pipelines/
    pose_related.py:52-96 and 426-463), on one person at 640x480 whose joint 3 scores 0.005 in
    one frame. Expected values: the original transforms run on the same input (frames 1-4 of
    keypoint[t, v] = (10 v + t, 20 v + 2 t), score 0.9), printed as float32."""
    from uniego.teachers.skeleton import pyskl_gcn_input
    T, V = 5, 17
    kp = np.zeros((T, V, 3), np.float32)
    for t in range(T):
        for v in range(V):
            kp[t, v] = (10 * v + t, 20 * v + 2 * t, 0.9)
    kp[2, 3, 2] = 0.005
    x = pyskl_gcn_input(kp[1:5], (480, 640))
    assert x.shape == (2, 4, 17, 3) and x.dtype == np.float32
    f32 = np.float32
    expected_v0 = [(-0.996875, -0.9916667, 0.9), (-0.99375, -0.98333335, 0.9), (-0.990625, -0.975, 0.9), (-0.9875, -0.96666664, 0.9)]
    expected_v3 = [(-0.903125, -0.7416667, 0.9), (0.0, 0.0, 0.005), (-0.896875, -0.725, 0.9), (-0.89375, -0.71666664, 0.9)]
    np.testing.assert_array_equal(x[0, :, 0], np.array(expected_v0, f32))
    np.testing.assert_array_equal(x[0, :, 3], np.array(expected_v3, f32))
    assert not x[1].any()   # the padded person: all zeros, score included


def test_the_padded_person_is_averaged_into_the_feature():
    """pyskl's GCNHead pools each person over (T, V), then averages the persons, the zero one
    included: the feature is the mean of the two persons' pooled outputs."""
    from uniego.teachers.skeleton import pyskl_gcn_input
    torch.manual_seed(0)
    model = stgcn_test(num_classes=0).eval()
    kp = np.random.default_rng(0).uniform(0, 400, (16, 17, 3)).astype(np.float32)
    kp[..., 2] = 0.8
    x = torch.from_numpy(pyskl_gcn_input(kp, (480, 640)))[None]
    with torch.no_grad():
        both = model.forward_features(x)
        one, pad = model.forward_features(x[:, :1]), model.forward_features(x[:, 1:])
    torch.testing.assert_close(both, (one + pad) / 2)
    assert pad.abs().sum() > 0   # the zero person is not a zero feature (batch norm's shift)


def test_skeleton_frames_are_pyskls_test_uniformsample():
    """`clips.skeleton_sampling: pyskl` takes the frames pyskl's test pipeline takes. The expected
    indices were computed by running pyskl's own UniformSampleFrames._get_test_clips, then its
    np.mod (kennymckormick/pyskl 07eeb4a, pyskl/datasets/pipelines/sampling.py; seed 255, p_interval
    1), on these lengths; uniego's function gave the same indices on 1,676 (clip_len, num_clips,
    length) cases, all three branches (shorter than a clip, up to two clips, longer)."""
    from uniego.video import pyskl_test_indices
    assert pyskl_test_indices(3, 4, 2).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]       # shorter: wraps
    assert pyskl_test_indices(6, 4, 2).tolist() == [1, 2, 3, 5, 0, 1, 2, 4]       # 1-2 clips long: frames skipped
    assert pyskl_test_indices(11, 4, 2).tolist() == [1, 3, 7, 9, 1, 3, 7, 8]      # longer: one frame per bin
    for total, head, second, tail, total_sum in ((30, [0, 1, 2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6], 14490),
                                                 (150, [0, 2, 4, 5, 6, 7], [1, 2, 4, 6], [146, 147, 148], 74456),
                                                 (250, [1, 3, 5, 8, 11, 12], [1, 3, 6, 7], [244, 246, 249], 124266)):
        x = pyskl_test_indices(total, 100, 10)   # the ST-GCN configs' UniformSample(clip_len=100, num_clips=10)
        assert x.shape == (1000,) and x[:6].tolist() == head and x[100:104].tolist() == second
        assert x[-3:].tolist() == tail and int(x.sum()) == total_sum


def test_skeleton_cache_rows_and_the_multi_clip_feature(tmp_path):
    """read_skeleton takes the segment's rows as pyskl would from a trimmed clip; the teacher splits
    the clips as FormatGCNInput does and its feature is the mean of the clips' pooled features."""
    from uniego.config import TeacherSettings
    from uniego.teachers import build_teacher
    from uniego.teachers.skeleton import pyskl_gcn_input
    from uniego.video import pyskl_test_indices, read_skeleton
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 80, (200, 17, 2)), rng.uniform(0.2, 1, (200, 17, 1))], -1).astype(np.float32)
    np.savez(tmp_path / "s.npz", keypoints=kp, img_shape=np.array([64, 84]), fps=10.0)
    got, hw, t = read_skeleton(str(tmp_path / "s.npz"), "s", 2.0, 8.0, 8, clips=3, sampling="pyskl")   # rows 20..79
    idx = 20 + pyskl_test_indices(60, 8, 3)
    assert got.shape == (24, 17, 3) and np.array_equal(got, kp[idx]) and np.allclose(t, idx / 10.0)
    with pytest.raises(UniegoError, match="uniform sampling takes one clip"):
        read_skeleton(str(tmp_path / "s.npz"), "s", 2.0, 8.0, 8, clips=3, sampling="uniform")
    teacher = build_teacher(TeacherSettings("exo_skl", "stgcn_test", "random"))
    x = teacher.preprocess({"skeleton": got, "skeleton_img_hw": hw, "skeleton_clips": 3})["skeleton"]
    assert tuple(x.shape) == (3, 2, 8, 17, 3)
    for c in range(3):   # clip c is frames 8c..8c+7, person 0; person 1 is pyskl's zero padding
        np.testing.assert_array_equal(x[c].numpy(), pyskl_gcn_input(got[8 * c:8 * c + 8], hw))
    with torch.no_grad():
        f = teacher({"skeleton": x[None]})[0]
        per_clip = teacher.model.eval().forward_features(x)
    torch.testing.assert_close(f, per_clip.mean(0))
    assert not torch.allclose(per_clip[0], per_clip[1])   # the clips differ: the mean is not one clip's


def test_the_task_teacher_trains_on_one_clip_drawn_per_epoch():
    """pyskl trains ST-GCN on one random UniformSample clip per epoch and tests on the mean of 10;
    the task teacher's training batches take one of the cached test clips, drawn per (seed, epoch,
    sample), and evaluation keeps all of them."""
    from uniego.stages.teachers.task_teacher import train_clip
    clips = torch.arange(10.0).view(10, 1, 1, 1, 1).expand(10, 2, 4, 17, 3)
    drawn = [int(train_clip(clips, np.random.default_rng([0, epoch, 5]))[0, 0, 0, 0, 0]) for epoch in range(30)]
    assert all(train_clip(clips, np.random.default_rng(1)).shape == (1, 2, 4, 17, 3) for _ in range(2))
    assert len(set(drawn)) >= 6                                     # epochs see different clips
    assert drawn == [int(train_clip(clips, np.random.default_rng([0, e, 5]))[0, 0, 0, 0, 0]) for e in range(30)]   # seeded


def test_training_batches_carry_one_drawn_clip_and_evaluation_all(monkeypatch):
    """The wiring: TeacherBatches gives one clip per sample in training (the one train_clip draws
    for that seed, epoch and sample) and every clip in evaluation."""
    from uniego.config import TeacherSettings
    from uniego.stages.teachers.task_teacher import TeacherBatches, train_clip
    from uniego.teachers import build_teacher
    teacher = build_teacher(TeacherSettings("exo_skl", "stgcn_test", "random"))
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 80, (24, 17, 2)), rng.uniform(0.2, 1, (24, 17, 1))], -1).astype(np.float32)
    raw = {"skeleton": kp, "skeleton_img_hw": np.array([64, 84]), "skeleton_clips": 3}
    monkeypatch.setattr(TeacherBatches, "_sample", lambda self, r: raw)
    full = teacher.preprocess(raw)["skeleton"]
    for epoch in range(3):
        data = TeacherBatches({"skeleton": "unused"}, [0, 1], [0, 1], teacher, None, [np.array([0, 1])],
                              epoch=epoch, seed=7, train=True)
        got = data[0]["skeleton"]
        assert got.shape == (2, 1, 2, 8, 17, 3)
        for i in range(2):
            assert torch.equal(got[i], train_clip(full, np.random.default_rng([7, epoch, i])))
    evaluation = TeacherBatches({"skeleton": "unused"}, [0, 1], [0, 1], teacher, None, [np.array([0, 1])],
                                epoch=0, seed=7, train=False)[0]["skeleton"]
    assert evaluation.shape == (2, 3, 2, 8, 17, 3) and torch.equal(evaluation[0], full)
