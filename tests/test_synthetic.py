"""The built-in procedural RGB-D dataset: contract, determinism, geometry, sensor holes and colour statistics."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.synthetic import CLASS_NAMES, SCENE_NAMES, Synthetic, intrinsics

SMALL = (60, 80)
KEYS = ("image", "depth", "label", "scene")


def small(split="train", keys=KEYS, **options):
    return Synthetic(None, split, keys=keys, img_size=SMALL, **options)


def back_project(depth, K, mask):
    """Camera-frame 3D points of the pixels in `mask`."""
    rows, cols = np.nonzero(mask)
    z = depth[rows, cols].astype(np.float64)
    x = (cols - K[0, 2]) / K[0, 0] * z
    y = (rows - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=1)


def fit_plane(points):
    """Unit normal, signed offset (n·p = offset) and RMS residual of the least-squares plane through points."""
    centre = points.mean(axis=0)
    normal = np.linalg.svd(points - centre)[2][-1]
    residual = (points - centre) @ normal
    return normal, float(normal @ centre), float(np.sqrt(np.mean(residual ** 2)))


def test_registered_with_six_classes_and_three_scene_types():
    cls = get_loader("synthetic")
    assert cls is Synthetic
    assert cls.n_classes == 6
    assert cls.class_names == ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
    assert cls.scene_names == SCENE_NAMES and len(SCENE_NAMES) == 3


def test_tensor_item_shapes_and_dtypes():
    item = small(length=4)[1]
    assert item["image"].shape == (3, *SMALL) and item["image"].dtype == torch.float32
    assert 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["depth"].shape == (1, *SMALL) and item["depth"].dtype == torch.float32
    assert item["label"].shape == SMALL and item["label"].dtype == torch.int64
    assert item["scene"].dtype == torch.int64 and item["scene"].dim() == 0
    assert item["meta"]["K"].shape == (3, 3) and item["meta"]["K"].dtype == torch.float32
    assert item["meta"]["name"] == "train_000001" and item["meta"]["index"] == 1
    unnormalised = Synthetic(None, "train", keys=KEYS, img_size=SMALL, img_norm=False)[1]["image"]
    assert torch.allclose(unnormalised, item["image"] * 255)


def test_numpy_sample_carries_the_keys_asked_for():
    sample = small("val").load(0)
    assert sample["image"].dtype == np.uint8 and sample["image"].shape == (*SMALL, 3)
    assert sample["depth"].dtype == np.float32 and sample["depth"].shape == SMALL
    assert sample["label"].dtype == np.uint8 and sample["label"].shape == SMALL
    assert isinstance(sample["scene"], int)
    assert set(sample["meta"]) == {"name", "index", "K"}
    for keys in (("image", "label"), ("image", "depth"), ("depth",)):
        assert set(small("val", keys=keys).load(0)) == {*keys, "meta"}
    with pytest.raises(PtsemsegError, match="asked for 'raw_depth'; dataset synthetic gives image, depth, label, "
                                            "scene, normals, hha for split val"):
        small("val", keys=("image", "raw_depth"))


def test_rendered_at_img_size_so_the_base_resize_has_nothing_to_do(monkeypatch):
    def no_resize(*args, **kwargs):
        raise AssertionError("the synthetic dataset must not be resized")

    monkeypatch.setattr("ptsemseg.loaders.base.cv2.resize", no_resize)
    assert small()[0]["image"].shape[1:] == SMALL
    assert small().load(0)["image"].shape[:2] == SMALL
    assert Synthetic(None, "train").load(0)["image"].shape[:2] == (240, 320)
    assert Synthetic(None, "train", native_size=(120, 200)).load(0)["image"].shape[:2] == (120, 200)


def assert_items_equal(a, b):
    for key in ("image", "depth", "label", "scene"):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(a["meta"]["K"], b["meta"]["K"])


def test_items_are_deterministic_within_and_across_instances():
    dataset = small(holes=0.4)
    assert_items_equal(dataset[5], dataset[5])
    assert_items_equal(dataset[5], small(holes=0.4)[5])
    assert not torch.equal(dataset[5]["image"], dataset[6]["image"])


def test_items_are_deterministic_across_processes():
    code = ("from ptsemseg.loaders.synthetic import Synthetic; import hashlib; "
            f"s = Synthetic(None, 'test', keys={KEYS}, img_size=(60, 80), holes=0.3).load(7); "
            "print(hashlib.sha1(s['image'].tobytes() + s['depth'].tobytes() + s['label'].tobytes()).hexdigest())")
    sample = small("test", holes=0.3).load(7)
    expected = hashlib.sha1(sample["image"].tobytes() + sample["depth"].tobytes() + sample["label"].tobytes())
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected.hexdigest()


def test_splits_and_seeds_give_different_scenes():
    images = {split: small(split)[0]["image"] for split in ("train", "val", "test")}
    assert not torch.equal(images["train"], images["val"])
    assert not torch.equal(images["val"], images["test"])
    assert not torch.equal(images["train"], small(seed=1)[0]["image"])


def test_length_per_split():
    assert [len(Synthetic(None, split)) for split in ("train", "val", "test")] == [2000, 200, 200]
    assert len(Synthetic(None, "val", length=7)) == 7
    lengths = {"train": 30, "val": 5}
    assert len(Synthetic(None, "train", length=lengths)) == 30
    assert len(Synthetic(None, "test", length=lengths)) == 200
    with pytest.raises(IndexError):
        Synthetic(None, "val", length=5).load(5)


@pytest.mark.parametrize("options, message", [
    ({"split": "training"}, "synthetic split must be one of train, val, test, got 'training'"),
    ({"length": 0}, "data.length must be a positive integer"),
    ({"seed": -1}, "data.seed must be a non-negative integer"),
    ({"holes": 1.5}, "data.holes must be a number in [0, 1]"),
    ({"max_range": 0}, "data.max_range must be a positive number"),
    ({"native_size": (240,)}, "data.native_size must be two positive integers"),
    ({"native_size": 240}, "data.native_size must be two positive integers"),
    ({"depth_source": "complete"}, "data.depth_source must be 'raw' or 'filled'"),
])
def test_bad_options_raise_one_line_errors(options, message):
    split = options.pop("split", "train")
    with pytest.raises(PtsemsegError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Synthetic(None, split, **options)


def test_labels_cover_all_classes_and_scene_types_over_a_few_frames():
    dataset = small()
    seen_classes, seen_scenes = set(), set()
    for index in range(24):
        sample = dataset.load(index)
        assert sample["label"].max() < len(CLASS_NAMES)
        seen_classes |= set(np.unique(sample["label"]).tolist())
        assert 0 <= sample["scene"] < len(SCENE_NAMES)
        seen_scenes.add(sample["scene"])
    assert seen_classes == set(range(len(CLASS_NAMES)))
    assert seen_scenes == set(range(len(SCENE_NAMES)))


def test_objects_are_in_view_in_almost_every_frame():
    dataset = small()
    object_counts = []
    for index in range(100):
        label = dataset.load(index)["label"]
        object_counts.append(int((np.bincount(label.ravel(), minlength=6)[3:] >= 10).any()))
    assert np.mean(object_counts) >= 0.95


def test_depth_is_complete_without_holes():
    for index in range(5):
        depth = small().load(index)["depth"]
        assert np.isfinite(depth).all() and depth.min() > 0.05 and depth.max() < 20


def test_holes_only_remove_depth():
    index = 3
    clean, holey = small().load(index), small(holes=0.5, max_range=5.0).load(index)
    missing = holey["depth"] == 0
    assert 0.02 < missing.mean() < 0.6
    assert np.array_equal(clean["image"], holey["image"]) and np.array_equal(clean["label"], holey["label"])
    assert np.array_equal(holey["depth"][~missing], clean["depth"][~missing])
    assert holey["depth"].max() <= 5.0
    assert (missing[clean["depth"] > 5.0]).all()


def test_raw_depth_has_the_holes_and_depth_source_picks_depth():
    keys = ("image", "depth", "raw_depth")
    clean = small().load(3)
    sensor = small(keys=keys, holes=0.5, max_range=5.0).load(3)
    completion = small(keys=keys, holes=0.5, max_range=5.0, depth_source="filled").load(3)
    assert (sensor["raw_depth"] == 0).mean() > 0.02 and np.array_equal(sensor["depth"], sensor["raw_depth"])
    assert np.array_equal(completion["raw_depth"], sensor["raw_depth"])
    assert np.array_equal(completion["depth"], clean["depth"]) and np.array_equal(completion["image"], clean["image"])


def test_normals_are_unit_face_the_camera_and_fit_the_floor():
    sample = find_frame_with(Synthetic(None, "train", keys=KEYS + ("normals",)), (0, 1, 2))
    normals, depth, label, K = sample["normals"], sample["depth"], sample["label"], sample["meta"]["K"]
    assert normals.dtype == np.float32 and normals.shape == (*depth.shape, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1, atol=1e-5)
    rays = back_project(depth, K, np.ones(depth.shape, dtype=bool))
    facing = (normals.reshape(-1, 3) * rays).sum(axis=1) / np.linalg.norm(rays, axis=1)
    assert (facing < 1e-4).all() and (facing < -0.05).mean() > 0.99  # only silhouette pixels are seen edge-on
    floor_normal, _, _ = fit_plane(back_project(depth, K, label == 0))
    assert np.abs(normals[label == 0] @ floor_normal).min() > 0.999


def test_holes_grow_with_their_strength():
    fractions = [np.mean([(small(holes=h).load(i)["depth"] == 0).mean() for i in range(4)]) for h in (0.1, 0.5, 1.0)]
    assert fractions[0] < fractions[1] < fractions[2]


def find_frame_with(dataset, classes):
    for index in range(50):
        sample = dataset.load(index)
        counts = np.bincount(sample["label"].ravel(), minlength=6)
        if all(counts[c] > 200 for c in classes):
            return sample
    raise AssertionError(f"no frame shows classes {classes}")


def test_depth_matches_the_room_geometry_through_K():
    """Back-projected through K, floor pixels lie on a plane a camera height below the camera, ceiling pixels
    on a parallel plane a room height above it, and walls and objects in between."""
    sample = find_frame_with(Synthetic(None, "train", keys=KEYS), (0, 1, 2))
    depth, label, K = sample["depth"], sample["label"], sample["meta"]["K"]
    normal, offset, floor_rms = fit_plane(back_project(depth, K, label == 0))
    assert floor_rms < 2e-3
    up = -np.sign(offset) * normal  # the camera (origin) is above the floor

    def heights(mask):
        return back_project(depth, K, mask) @ up + abs(offset)

    assert 1.0 <= abs(offset) <= 1.7
    ceiling = heights(label == 2)
    room_height = ceiling.mean()
    assert 2.3 <= room_height <= 3.4 and ceiling.std() < 2e-3
    walls = heights(label == 1)
    assert walls.min() > -2e-3 and walls.max() < room_height + 2e-3
    objects = heights(label >= 3)
    assert objects.min() > -2e-3 and objects.max() < 1.45


def test_intrinsics_scale_with_img_size():
    native = Synthetic(None, "train", keys=KEYS).load(2)
    half = Synthetic(None, "train", keys=KEYS, img_size=(120, 160)).load(2)
    wide = Synthetic(None, "train", keys=KEYS, img_size=(60, 120)).load(2)
    K = native["meta"]["K"]
    assert K[0, 0] == K[1, 1] == pytest.approx(260.0) and (K[0, 2], K[1, 2]) == (159.5, 119.5)
    assert np.allclose(half["meta"]["K"], [[130, 0, 79.5], [0, 130, 59.5], [0, 0, 1]])
    assert np.allclose(wide["meta"]["K"], intrinsics((60, 120), (240, 320)))
    assert wide["meta"]["K"][0, 0] == pytest.approx(97.5) and wide["meta"]["K"][1, 1] == pytest.approx(65.0)
    # the same scene: the half-size render agrees with the native render at the matching pixels
    assert (half["label"] == native["label"][::2, ::2]).mean() > 0.95
    assert half["scene"] == native["scene"]


def test_colour_does_not_give_the_class():
    """The best per-pixel colour classifier (a Bayes classifier on a fine RGB histogram) fitted on 40 frames
    stays near chance on 20 others, while the labels are far from uniform."""
    dataset = small()
    bins = 16

    def pixels(indices):
        samples = [dataset.load(i) for i in indices]
        rgb = np.concatenate([s["image"].reshape(-1, 3) // (256 // bins) for s in samples]).astype(int)
        return (rgb[:, 0] * bins + rgb[:, 1]) * bins + rgb[:, 2], np.concatenate([s["label"].ravel() for s in samples])

    train_cells, train_labels = pixels(range(40))
    test_cells, test_labels = pixels(range(40, 60))
    histogram = np.zeros((bins ** 3, 6))
    np.add.at(histogram, (train_cells, train_labels), 1)
    predicted = histogram.argmax(axis=1)[test_cells]
    confusion = np.zeros((6, 6))
    np.add.at(confusion, (test_labels, predicted), 1)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert np.nanmean(iou) < 0.25


def test_depth_noise_gives_a_noisy_raw_depth_growing_with_the_square_of_depth():
    from ptsemseg.loaders.synthetic import Synthetic

    assert "raw_depth" in Synthetic.keys_for("train", depth_noise=0.01)
    noisy = Synthetic(None, "train", keys=("depth", "raw_depth"), depth_noise=0.01, depth_source="filled")
    sample = noisy.load(0)
    clean, raw = sample["depth"], sample["raw_depth"]
    assert (raw > 0).all()  # noise alone makes no holes
    relative = (raw - clean) / (0.01 * clean ** 2)
    assert abs(float(relative.mean())) < 0.05 and 0.9 < float(relative.std()) < 1.1
    both = Synthetic(None, "train", keys=("raw_depth",), depth_noise=0.01, holes=0.5).load(0)["raw_depth"]
    assert (both == 0).any()
    with pytest.raises(PtsemsegError, match="data.depth_noise must be a number in"):
        Synthetic(None, "train", keys=("depth",), depth_noise=-1)
