"""NYUv2 and SUN RGB-D loaders on miniature copies written in the official formats, and on the real
meta files and samples of ../shared/realdata."""
import os
import shutil

import cv2
import numpy as np
import pytest
import scipy.io
import torch

from conftest import REPO, SHARED, load_tool
from miniature_datasets import (NYU_TEST, NYU_TRAIN, RGBD_COLS as COLS, RGBD_ROWS as ROWS, SUN_K, SUN_SCENES, SUN_TEST,
                                SUN_TRAIN, write_fusenet_h5, write_nyu_mat, write_sun)
from ptsemseg.config import load_config
from ptsemseg.depth_utils import depth_to_mm, hha_encode, scale_intrinsics
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.io import CorruptFileError, read_gray, read_png16, read_rgb
from ptsemseg.loaders.nyuv2 import (NYU13_CLASS_NAMES, NYU40_CLASS_NAMES, NYU40_TO_13, NYU_K, read_class_mapping,
                                    read_split_indices)
from ptsemseg.loaders.sunrgbd import SUNRGBD_CLASS_NAMES, SUNRGBD_SCENE_CLASSES, frame_dir, read_list

REAL = os.path.join(SHARED, "realdata")
NYU_META = os.path.join(REAL, "nyu_depth_v2", "meta")
SUN_META = os.path.join(REAL, "sunrgbd", "meta")
# NYU's intrinsics scaled to the miniature frames (the loaders scale K to the frame size).
MINI_NYU_K = scale_intrinsics(NYU_K, (480, 640), (ROWS, COLS))
RGBD = ("image", "depth", "label")
EVERY_KEY = ("image", "depth", "raw_depth", "label", "scene", "hha")


def real(path):
    """A file of ../shared/realdata, or a skip naming what is missing."""
    full = os.path.join(REAL, path)
    if not os.path.isfile(full):
        pytest.skip(f"real dataset sample absent: {full}")
    return full


# ------------------------------------------------------------------------------------------ NYUv2 fixture
@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    """The miniature nyu_depth_v2_labeled.mat layout; returns (root, the frames as H×W(×3) arrays, mapClass)."""
    root = tmp_path_factory.mktemp("nyu")
    frames, map_class = write_nyu_mat(root)
    return str(root), frames, map_class


def expected_nyu_label(raw_labels, map_class, n_classes):
    label40 = np.concatenate([[0], map_class])[raw_labels]
    if n_classes == 40:
        return np.where(label40 == 0, 255, label40.astype(int) - 1)
    return np.where(label40 == 0, 255, np.concatenate([[0], NYU40_TO_13])[label40] - 1)


@pytest.mark.parametrize("n_classes", [40, 13])
def test_nyu_mat_layout(nyu, n_classes):
    root, frames, map_class = nyu
    dataset = get_loader("nyuv2")(root, "train", keys=RGBD + ("scene",), n_classes=n_classes)
    assert dataset.layout == "mat" and len(dataset) == 3 and dataset.n_classes == n_classes
    assert dataset.class_names == (NYU40_CLASS_NAMES if n_classes == 40 else NYU13_CLASS_NAMES)
    for index, frame in enumerate(np.array(NYU_TRAIN) - 1):
        sample = dataset.load(index)
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (ROWS, COLS, 3)
        assert sample["depth"].dtype == np.float32 and sample["label"].dtype == np.uint8
        assert np.array_equal(sample["image"], frames["image"][frame])
        assert np.array_equal(sample["depth"], frames["depth"][frame])
        assert np.array_equal(sample["label"], expected_nyu_label(frames["labels"][frame], map_class, n_classes))
        assert sample["label"].max() < n_classes or sample["label"].max() == 255
        assert sample["meta"]["name"] == f"{frame + 1:04d}" and np.array_equal(sample["meta"]["K"], MINI_NYU_K)
    # kitchen → 1, bedroom → 0 in FuseNet's 10 scene classes; cafe is one of the 'others' (9).
    assert [dataset.load(i)["scene"] for i in range(3)] == [1, 9, 2]


def test_nyu_splits_val_raw_depth_hha_and_tensors(nyu):
    root, frames, _ = nyu
    dataset = get_loader("nyuv2")(root, "val", keys=EVERY_KEY, depth_source="raw", img_size=(6, 8))
    assert len(dataset) == 3
    sample = dataset.load(2)
    assert sample["meta"]["name"] == "0006"
    assert np.array_equal(sample["depth"], frames["raw"][5]) and (sample["depth"] == 0).any()
    assert np.array_equal(sample["raw_depth"], frames["raw"][5])
    expected_hha = hha_encode(frames["depth"][5], MINI_NYU_K, valid=frames["raw"][5] > 0)
    assert np.array_equal(sample["hha"], expected_hha)
    item = dataset[0]
    assert item["image"].shape == (3, 6, 8) and item["hha"].shape == (3, 6, 8) and item["label"].dtype == torch.int64
    assert item["depth"].shape == (1, 6, 8) and item["scene"].dtype == torch.int64
    assert torch.allclose(item["meta"]["K"][0, 0], torch.tensor(MINI_NYU_K[0, 0] / 2))

    depth_set = get_loader("nyuv2")(root, "test", keys=("image", "depth"))
    assert set(depth_set.load(0)) == {"image", "depth", "meta"}


def test_nyu_mat_reads_in_dataloader_workers(nyu):
    root, frames, _ = nyu
    dataset = get_loader("nyuv2")(root, "test")
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    batch = next(iter(loader))
    expected = torch.from_numpy(frames["image"][np.array(NYU_TEST) - 1]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(batch["image"], expected)


def test_nyu_errors_name_the_expected_path(nyu, tmp_path):
    root, _, _ = nyu
    with pytest.raises(PtsemsegError, match=f"NYUv2 root not found: expected {tmp_path / 'none'}.*section 'NYUv2'"):
        get_loader("nyuv2")(str(tmp_path / "none"), "train")
    with pytest.raises(PtsemsegError, match="no NYUv2 data in .*nyu_depth_v2_labeled.mat"):
        get_loader("nyuv2")(str(tmp_path), "train")
    shutil.copy(os.path.join(root, "nyu_depth_v2_labeled.mat"), tmp_path)
    with pytest.raises(PtsemsegError, match=f"NYUv2 split file not found: expected {tmp_path / 'splits.mat'}"):
        get_loader("nyuv2")(str(tmp_path), "train")
    for options, message in (({"n_classes": 37}, "40 or 13"), ({"layout": "h5"}, "layout must be one of"),
                             ({"depth_source": "bfx"}, "'filled' or 'raw'")):
        with pytest.raises(PtsemsegError, match=message):
            get_loader("nyuv2")(root, "train", **options)
    with pytest.raises(PtsemsegError, match="split must be one of train, test, val"):
        get_loader("nyuv2")(root, "training")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 7.3 MAT-file" + b"\0" * 100)
    for name in ("splits.mat", "classMapping40.mat"):
        shutil.copy(os.path.join(root, name), tmp_path / "broken")
    with pytest.raises(CorruptFileError, match="broken/nyu_depth_v2_labeled.mat"):
        get_loader("nyuv2")(str(tmp_path / "broken"), "train")



@pytest.fixture(scope="module")
def nyu_folder(nyu, tmp_path_factory):
    """The miniature .mat exported by tools/nyu_export.py to the folder layout."""
    root, _, _ = nyu
    out = tmp_path_factory.mktemp("nyu_folder")
    load_tool("nyu_export").main(["--root", root, "--out", str(out), "--hha", "--workers", "1"])
    return str(out)


def test_nyu_export_matches_the_mat_layout(nyu, nyu_folder):
    root, frames, map_class = nyu
    with open(os.path.join(nyu_folder, "train.txt"), encoding="utf-8") as handle:
        assert handle.read().splitlines() == [f"RGB/{i:04d}.png\tLabel/{i:04d}.png" for i in NYU_TRAIN]
    depth_png = read_png16(os.path.join(nyu_folder, "Depth", "0001.png"))
    assert np.array_equal(depth_png, depth_to_mm(frames["depth"][0]))
    label_png = read_gray(os.path.join(nyu_folder, "Label", "0001.png"))
    assert label_png.dtype == np.uint8
    assert np.array_equal(label_png, np.concatenate([[0], map_class])[frames["labels"][0]])
    for split in ("train", "test"):
        for n_classes in (40, 13):
            from_mat = get_loader("nyuv2")(root, split, keys=EVERY_KEY, n_classes=n_classes)
            from_folder = get_loader("nyuv2")(nyu_folder, split, keys=EVERY_KEY, n_classes=n_classes)
            assert from_folder.layout == "folder" and len(from_folder) == len(from_mat)
            for index in range(len(from_mat)):
                a, b = from_mat.load(index), from_folder.load(index)
                assert a["meta"]["name"] == b["meta"]["name"] and a["scene"] == b["scene"]
                assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
                assert np.abs(a["depth"] - b["depth"]).max() <= 5e-4
                assert np.abs(a["raw_depth"] - b["raw_depth"]).max() <= 5e-4
                assert np.array_equal(a["hha"], b["hha"]) and np.array_equal(a["meta"]["K"], b["meta"]["K"])
    raw = get_loader("nyuv2")(nyu_folder, "train", keys=("image", "depth"), depth_source="raw").load(0)["depth"]
    assert np.abs(raw - frames["raw"][0]).max() <= 5e-4 and (raw == 0).sum() == (frames["raw"][0] == 0).sum()


def test_nyu_folder_truncated_image_is_named_and_skipped(nyu_folder, tmp_path):
    copy = tmp_path / "nyu"
    shutil.copytree(nyu_folder, copy)
    bad = copy / "RGB" / "0003.png"
    bad.write_bytes(bad.read_bytes()[:40])
    dataset = get_loader("nyuv2")(str(copy), "train", keys=RGBD)
    with pytest.raises(CorruptFileError, match="RGB/0003.png"):
        dataset.load(1)
    skipping = get_loader("nyuv2")(str(copy), "train", skip_bad=True)
    with pytest.warns(UserWarning, match="skipping bad sample: .*RGB/0003.png"):
        item = skipping[1]
    assert item["meta"]["name"] == "0004"
    np.save(copy / "Depth" / "0001.npy", np.full((ROWS, COLS), 2500.0, np.float32))  # millimetres, not metres
    os.remove(copy / "Depth" / "0001.png")
    with pytest.raises(PtsemsegError, match="Depth/0001.npy has a median of 2500 m: it must hold metres"):
        dataset.load(0)
    os.remove(copy / "Depth" / "0004.png")
    with pytest.raises(PtsemsegError, match="NYUv2 depth not found: expected .*Depth/0004.png\\|.npy"):
        dataset.load(2)


def test_nyu_fusenet_h5(tmp_path):
    data = write_fusenet_h5(tmp_path)
    dataset = get_loader("nyuv2")(str(tmp_path), "test", keys=RGBD + ("scene",), n_classes=13, layout="fusenet_h5")
    assert dataset.layout == "fusenet_h5" and len(dataset) == 2
    sample = dataset.load(1)
    assert np.array_equal(sample["image"], data["test"]["rgb"][1].transpose(1, 2, 0))
    np.testing.assert_allclose(sample["depth"], data["test"]["depth"][1, 0] / 255 * 10, rtol=1e-6)
    label40 = data["test"]["label"][1].astype(int)
    assert np.array_equal(sample["label"], np.where(label40 == 0, 255, np.concatenate([[0], NYU40_TO_13])[label40] - 1))
    assert sample["scene"] == data["test"]["class"][1, 0] - 1
    assert np.allclose(sample["meta"]["K"][0], NYU_K[0] / 80)
    with pytest.raises(PtsemsegError, match="not metres; set data.layout: fusenet_h5"):
        get_loader("nyuv2")(str(tmp_path), "train", keys=("image", "depth"))
    with pytest.raises(PtsemsegError, match="asked for 'hha'; dataset nyuv2 gives image, depth, label, scene"):
        get_loader("nyuv2")(str(tmp_path), "train", keys=("image", "hha"))


def test_real_nyu_splits_are_1_based_795_654():
    path = real("nyu_depth_v2/meta/splits.mat")
    raw = scipy.io.loadmat(path)
    stored = np.concatenate([raw["trainNdxs"].ravel(), raw["testNdxs"].ravel()])
    assert stored.min() == 1 and stored.max() == 1449  # 1-based frame numbers
    train, test = read_split_indices(path, "train"), read_split_indices(path, "test")
    assert len(train) == 795 and len(test) == 654
    assert np.array_equal(train, raw["trainNdxs"].ravel() - 1)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(1449))
    assert test[:4].tolist() == [0, 1, 8, 13]


def test_real_nyu_class_mappings_match_the_builtin_tables():
    map_class, names = read_class_mapping(real("nyu_depth_v2/meta/classMapping40.mat"))
    assert names == NYU40_CLASS_NAMES
    assert map_class.size == 894 and map_class.min() >= 0 and map_class.max() == 40
    mapping13 = scipy.io.loadmat(real("nyu_depth_v2/meta/class13Mapping.mat"))["classMapping13"][0, 0]
    assert tuple(mapping13["labels13"].ravel().tolist()) == NYU40_TO_13
    assert tuple(str(name[0]) for name in mapping13["classNames"].ravel()) == NYU13_CLASS_NAMES


def test_real_nyu_13_class_label_png():
    label = read_gray(real("nyu_depth_v2/test_labels_13/new_nyu_class13_0001.png"))
    assert label.dtype == np.uint8 and label.shape == (480, 640)
    assert label.min() == 0 and label.max() == 12  # 0 = void, 1..13


# --------------------------------------------------------------------------------------- SUN RGB-D fixture
@pytest.fixture(scope="module")
def sun(tmp_path_factory):
    """The miniature official SUN RGB-D layout; returns (root, {frame: (image, depth, raw, label)})."""
    root = tmp_path_factory.mktemp("sun")
    return str(root), write_sun(root)


def check_sun_sample(sample, frame, frames, depth_source="filled"):
    image, depth, raw, label = frames[frame]
    assert sample["image"].dtype == np.uint8 and np.array_equal(sample["image"], image)
    assert sample["depth"].dtype == np.float32
    np.testing.assert_allclose(sample["depth"], depth if depth_source == "filled" else raw, atol=5e-4)
    assert sample["label"].dtype == np.uint8
    assert np.array_equal(sample["label"], np.where(label == 0, 255, label.astype(int) - 1))
    assert sample["meta"]["name"] == frame and np.array_equal(sample["meta"]["K"], SUN_K)


@pytest.mark.parametrize("label_source", ["png", "toolbox"])
def test_sun_official_layout(sun, label_source):
    root, frames = sun
    for split, listed in (("train", SUN_TRAIN), ("test", SUN_TEST)):
        dataset = get_loader("sunrgbd")(root, split, keys=RGBD, label_source=label_source)
        assert dataset.layout == "official" and dataset.n_classes == 37 and len(dataset) == len(listed)
        for index, frame in enumerate(listed):
            check_sun_sample(dataset.load(index), frame, frames)


def test_sun_toolbox_split_and_labels_without_lists(sun, tmp_path):
    root, frames = sun
    copy = tmp_path / "sun"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("sunrgbd_*"))
    dataset = get_loader("sunrgbd")(str(copy), "val", keys=RGBD, depth_source="raw")
    assert dataset.label_source == "toolbox" and len(dataset) == 2
    check_sun_sample(dataset.load(1), SUN_TEST[1], frames, "raw")
    sample = get_loader("sunrgbd")(str(copy), "val", keys=("raw_depth", "scene")).load(1)
    assert set(sample) == {"raw_depth", "scene", "meta"}
    np.testing.assert_allclose(sample["raw_depth"], frames[SUN_TEST[1]][2], atol=5e-4)
    assert sample["scene"] == SUNRGBD_SCENE_CLASSES.index(SUN_SCENES[SUN_TEST[1]])
    with pytest.raises(PtsemsegError, match="SUN RGB-D label PNGs not found: expected .*sunrgbd_train_test_labels"):
        get_loader("sunrgbd")(str(copy), "train", label_source="png")


def test_sun_hha_from_file_or_computed(sun, tmp_path):
    root, frames = sun
    copy = tmp_path / "sun"
    shutil.copytree(root, copy)
    computed = get_loader("sunrgbd")(str(copy), "test", keys=("image", "hha")).load(0)["hha"]
    image, depth, _, _ = frames[SUN_TEST[0]]
    assert np.array_equal(computed, hha_encode(depth, SUN_K))
    load_tool("hha").main(["--sunrgbd", str(copy), "--splits", "test", "--workers", "1"])
    hha_file = copy.joinpath("SUNRGBD", *SUN_TEST[0].split("/"), "hha", "0006558.png")
    assert hha_file.is_file()
    stored = read_rgb(str(hha_file))
    assert stored.shape == image.shape and stored.dtype == np.uint8
    hha_file.write_bytes(cv2.imencode(".png", np.zeros_like(stored))[1].tobytes())
    assert (get_loader("sunrgbd")(str(copy), "test", keys=("image", "hha")).load(0)["hha"] == 0).all()


def test_sun_errors_name_the_expected_path(sun, tmp_path):
    root, _ = sun
    with pytest.raises(PtsemsegError, match=f"SUN RGB-D root not found: expected {tmp_path / 'x'}.*'SUN RGB-D'"):
        get_loader("sunrgbd")(str(tmp_path / "x"), "train")
    (tmp_path / "SUNRGBD").mkdir()
    with pytest.raises(PtsemsegError, match="split not found: expected .*sunrgbd_training_images.txt or "
                                            ".*traintestSUNRGBD/allsplit.mat"):
        get_loader("sunrgbd")(str(tmp_path), "train")
    copy = tmp_path / "sun"
    shutil.copytree(root, copy)
    shutil.rmtree(copy.joinpath("SUNRGBD", *SUN_TRAIN[1].split("/")))
    with pytest.raises(PtsemsegError, match="1 of 2 SUN RGB-D train frames are missing, first: .*NYU0001"):
        get_loader("sunrgbd")(str(copy), "train")
    image = copy.joinpath("SUNRGBD", *SUN_TEST[0].split("/"), "image", "0006558.png")
    image.write_bytes(image.read_bytes()[:50])
    dataset = get_loader("sunrgbd")(str(copy), "test", skip_bad=True)
    with pytest.warns(UserWarning, match="0006558.png"):
        assert dataset[0]["meta"]["name"] == SUN_TEST[1]


def test_sun_folder_layout_with_real_frame(tmp_path):
    color, depth_png = real("sunrgbd/other_formats/SUN_color.jpg"), real("sunrgbd/other_formats/SUN_depth.png")
    for sub in ("image/test", "depth/test", "label37/test"):
        (tmp_path / sub).mkdir(parents=True)
    shutil.copy(color, tmp_path / "image" / "test" / "img-000001.jpg")
    shutil.copy(depth_png, tmp_path / "depth" / "test" / "00000001.png")
    label = np.tile(np.arange(40, dtype=np.uint8), (480, 16))
    cv2.imwrite(str(tmp_path / "label37" / "test" / "00000001.png"), label)
    (tmp_path / "test37.txt").write_text(
        "image/test/img-000001.jpg depth/test/00000001.png label37/test/00000001.png\n")
    dataset = get_loader("sunrgbd")(str(tmp_path), "test", keys=RGBD)
    assert dataset.layout == "folder" and len(dataset) == 1
    sample = dataset.load(0)
    assert sample["image"].shape == (480, 640, 3) and sample["depth"].shape == (480, 640)
    valid = sample["depth"][sample["depth"] > 0]
    assert abs(valid.min() - 1.06) < 0.01 and abs(valid.max() - 9.87) < 0.01
    assert np.array_equal(np.unique(sample["label"]), np.r_[np.arange(37), 255])
    millimetres = get_loader("sunrgbd")(str(tmp_path), "test", keys=RGBD, depth_encoding="mm")
    with pytest.raises(PtsemsegError, match="set data.depth_encoding: sunrgbd"):
        millimetres.load(0)
    with pytest.raises(PtsemsegError, match="HHA not found: expected .*hha/test/img-000001.png"):
        get_loader("sunrgbd")(str(tmp_path), "test", keys=("image", "hha")).load(0)


def test_sun_folder_layout_gives_images_without_depth_and_label_files(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    (tmp_path / "image" / "test").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "image" / "test" / "img-000001.png"), image[..., ::-1])
    (tmp_path / "test37.txt").write_text(
        "image/test/img-000001.png depth/test/00000001.png label37/test/00000001.png\n")
    sample = get_loader("sunrgbd")(str(tmp_path), "test", keys=("image",)).load(0)
    assert set(sample) == {"image", "meta"} and np.array_equal(sample["image"], image)
    with pytest.raises(PtsemsegError, match="first listed frame not found: expected .*depth/test/00000001.png"):
        get_loader("sunrgbd")(str(tmp_path), "test", keys=("image", "depth"))


def test_real_sun_lists_5285_5050():
    train = read_list(real("sunrgbd/meta/sunrgbd_training_images.txt"))
    test = read_list(real("sunrgbd/meta/sunrgbd_testing_images.txt"))
    assert len(train) == 5285 and len(test) == 5050
    assert len(set(train)) == 5285 and len(set(test)) == 5050 and not set(train) & set(test)
    assert test[0] == "kv2/kinect2data/000002_2014-05-26_14-23-37_260595134347_rgbf000103-resize"
    assert sum(frame.startswith("kv1/NYUdata/") for frame in train) == 795
    assert frame_dir("/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0352/") == "kv1/NYUdata/NYU0352"
    assert frame_dir("SUNRGBD/kv1/NYUdata/NYU0352//image/NYU0352.jpg") == "kv1/NYUdata/NYU0352"
    assert len(SUNRGBD_CLASS_NAMES) == 37


@pytest.mark.parametrize("config", ["nyuv2/deeplab_seg.yaml", "nyuv2/deeplab_seg13.yaml",
                                    "nyuv2/deeplab_depth.yaml", "sunrgbd/deeplab_seg.yaml",
                                    "sunrgbd/deeplab_depth.yaml"])
def test_configs_validate(config):
    cfg = load_config(os.path.join(REPO, "configs", config))
    assert cfg["model"] == {**cfg["model"], "arch": "deeplab", "backbone": "resnet101"}
    assert cfg["data"]["dataset"] in ("nyuv2", "sunrgbd")


@pytest.mark.parametrize("dataset", ["nyuv2", "sunrgbd"])
def test_trainer_runs_on_the_miniature_datasets(dataset, nyu, sun, tmp_path):
    """Two iterations and a validation through the trainer, and batching of every key the dataset gives (hha,
    scene and meta.K included)."""
    import yaml

    from conftest import tiny_config
    from ptsemseg.build import build_dataset
    from ptsemseg.trainer import Trainer

    cfg = tiny_config()
    cfg["data"] = {"dataset": dataset, "path": (nyu if dataset == "nyuv2" else sun)[0], "train_split": "train",
                   "val_split": "val", "img_rows": 24, "img_cols": 32, "img_norm": True}
    if dataset == "nyuv2":
        cfg["data"]["n_classes"] = 13
    cfg["training"].update(train_iters=2, val_interval=2, out_dir=str(tmp_path / "run"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    trainer = Trainer(load_config(str(path)), str(path))
    assert trainer.tasks.meta() == {"seg": 13 if dataset == "nyuv2" else 37}
    assert set(trainer.train_set.load(0)) == {"image", "label", "meta"}
    every_key = build_dataset(trainer.cfg, "train", EVERY_KEY, augment=True)
    batch = next(iter(torch.utils.data.DataLoader(every_key, batch_size=2)))
    assert batch["hha"].shape == (2, 3, 24, 32) and batch["meta"]["K"].shape == (2, 3, 3)
    assert batch["raw_depth"].shape == (2, 1, 24, 32) and batch["scene"].shape == (2,)
    scores = trainer.run()
    assert "seg/mean_iou" in scores


def test_nyu_scene_types_map_to_fusenet_ten_classes():
    """All 27 NYU scene types against FuseNet_PyTorch's mapping table (its class ids are 1-based)."""
    from ptsemseg.loaders.nyuv2 import NYU_SCENE_CLASSES, scene_class

    fusenet_table = {"basement": 10, "bathroom": 4, "bedroom": 1, "bookstore": 9, "cafe": 10, "classroom": 8,
                     "computer_lab": 10, "conference_room": 10, "dinette": 10, "dining_room": 5,
                     "exercise_room": 10, "foyer": 10, "furniture_store": 10, "home_office": 7, "home_storage": 10,
                     "indoor_balcony": 10, "kitchen": 2, "laundry_room": 10, "living_room": 3, "office": 6,
                     "office_kitchen": 10, "playroom": 10, "printer_room": 10, "reception_room": 10,
                     "student_lounge": 10, "study": 10, "study_room": 10}
    assert {name: scene_class(name) + 1 for name in fusenet_table} == fusenet_table
    assert NYU_SCENE_CLASSES[-1] == "others" and scene_class(" Living_Room\n") == 2
