"""NYUv2 and SUN RGB-D loaders on miniature copies written in the official formats, and on the real
meta files and samples of ../shared/realdata."""
import importlib.util
import os
import shutil
import sys

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

from conftest import REPO, SHARED
from ptsemseg.config import load_config
from ptsemseg.depth_utils import depth_to_mm, encode_sunrgbd_depth, hha_encode, scale_intrinsics
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.io import CorruptFileError, read_gray, read_png16, read_rgb
from ptsemseg.loaders.nyuv2 import (NYU13_CLASS_NAMES, NYU40_CLASS_NAMES, NYU40_TO_13, NYU_K, read_class_mapping,
                                    read_split_indices)
from ptsemseg.loaders.sunrgbd import SUNRGBD_CLASS_NAMES, frame_dir, read_list

REAL = os.path.join(SHARED, "realdata")
NYU_META = os.path.join(REAL, "nyu_depth_v2", "meta")
SUN_META = os.path.join(REAL, "sunrgbd", "meta")
ROWS, COLS = 12, 16
# NYU's intrinsics scaled to the miniature frames (the loaders scale K to the frame size).
MINI_NYU_K = scale_intrinsics(NYU_K, (480, 640), (ROWS, COLS))


def real(path):
    """A file of ../shared/realdata, or a skip naming what is missing."""
    full = os.path.join(REAL, path)
    if not os.path.isfile(full):
        pytest.skip(f"real dataset sample absent: {full}")
    return full


def write_mat73(path, build):
    """A MATLAB v7.3 file: HDF5 behind a 512-byte user block that starts with MATLAB's text header."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        build(handle)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def matlab_cell_of_strings(handle, name, strings):
    """A MATLAB N×1 cell of char arrays: object references (shape 1×N in HDF5) into '#refs#'."""
    refs = handle.require_group("#refs#")
    references = []
    for i, text in enumerate(strings):
        data = refs.create_dataset(f"{name}_{i}", data=np.array([[ord(c)] for c in text], dtype=np.uint16))
        data.attrs["MATLAB_class"] = np.bytes_("char")
        references.append(data.ref)
    cell = handle.create_dataset(name, data=np.array([references], dtype=h5py.ref_dtype))
    cell.attrs["MATLAB_class"] = np.bytes_("cell")


# ------------------------------------------------------------------------------------------ NYUv2 fixture
NYU_SCENES = ["kitchen", "bedroom", "cafe", "living_room", "office", "bathroom"]
NYU_TRAIN, NYU_TEST = [1, 3, 4], [2, 5, 6]  # 1-based, as in splits.mat


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    """A 6-frame nyu_depth_v2_labeled.mat (12×16 frames) with splits.mat and classMapping40.mat; returns
    (root, the frames as H×W(×3) arrays, mapClass)."""
    root = tmp_path_factory.mktemp("nyu")
    rng = np.random.default_rng(0)
    frames = len(NYU_SCENES)
    images = rng.integers(0, 256, (frames, ROWS, COLS, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.5, (frames, ROWS, COLS)).astype(np.float32)
    raw = np.where(rng.random((frames, ROWS, COLS)) < 0.2, 0, depths).astype(np.float32)
    labels = rng.integers(0, 895, (frames, ROWS, COLS)).astype(np.uint16)
    map_class = rng.integers(0, 41, 894).astype(np.uint8)
    map_class[:5] = [0, 1, 40, 22, 7]

    def build(handle):
        # MATLAB writes column-major arrays: a 480×640×3×1449 image stack reads as (1449, 3, 640, 480).
        for key, value, matlab_class in (("images", images.transpose(0, 3, 2, 1), "uint8"),
                                         ("depths", depths.transpose(0, 2, 1), "single"),
                                         ("rawDepths", raw.transpose(0, 2, 1), "single"),
                                         ("labels", labels.transpose(0, 2, 1), "uint16")):
            handle.create_dataset(key, data=value, chunks=True, compression="gzip").attrs["MATLAB_class"] = \
                np.bytes_(matlab_class)
        matlab_cell_of_strings(handle, "sceneTypes", NYU_SCENES)

    write_mat73(str(root / "nyu_depth_v2_labeled.mat"), build)
    scipy.io.savemat(str(root / "splits.mat"), {"trainNdxs": np.array(NYU_TRAIN, np.uint16)[:, None],
                                                "testNdxs": np.array(NYU_TEST, np.uint16)[:, None]}, format="5")
    names = np.empty((1, 40), dtype=object)
    names[0, :] = list(NYU40_CLASS_NAMES)
    scipy.io.savemat(str(root / "classMapping40.mat"), {"mapClass": map_class[None], "className": names}, format="5")
    return str(root), {"image": images, "depth": depths, "raw": raw, "labels": labels}, map_class


def expected_nyu_label(raw_labels, map_class, n_classes):
    label40 = np.concatenate([[0], map_class])[raw_labels]
    if n_classes == 40:
        return np.where(label40 == 0, 255, label40.astype(int) - 1)
    return np.where(label40 == 0, 255, np.concatenate([[0], NYU40_TO_13])[label40] - 1)


@pytest.mark.parametrize("n_classes", [40, 13])
def test_nyu_mat_layout(nyu, n_classes):
    root, frames, map_class = nyu
    dataset = get_loader("nyuv2")(root, "train", n_classes=n_classes)
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
    dataset = get_loader("nyuv2")(root, "val", depth_source="raw", use_hha=True, img_size=(6, 8))
    assert len(dataset) == 3
    sample = dataset.load(2)
    assert sample["meta"]["name"] == "0006"
    assert np.array_equal(sample["depth"], frames["raw"][5]) and (sample["depth"] == 0).any()
    expected_hha = hha_encode(frames["depth"][5], MINI_NYU_K, valid=frames["raw"][5] > 0)
    assert np.array_equal(sample["hha"], expected_hha)
    item = dataset[0]
    assert item["image"].shape == (3, 6, 8) and item["hha"].shape == (3, 6, 8) and item["label"].dtype == torch.int64
    assert item["depth"].shape == (1, 6, 8) and item["scene"].dtype == torch.int64
    assert torch.allclose(item["meta"]["K"][0, 0], torch.tensor(MINI_NYU_K[0, 0] / 2))

    depth_set = get_loader("nyuv2")(root, "test", task="depth")
    assert "label" not in depth_set.load(0)


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


def load_tool(name):
    """Import tools/<name>.py as a module, so its main() runs in-process."""
    module_name = f"tool_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(REPO, "tools", f"{name}.py"))
        sys.modules[module_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]


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
            from_mat = get_loader("nyuv2")(root, split, n_classes=n_classes, use_hha=True)
            from_folder = get_loader("nyuv2")(nyu_folder, split, n_classes=n_classes, use_hha=True)
            assert from_folder.layout == "folder" and len(from_folder) == len(from_mat)
            for index in range(len(from_mat)):
                a, b = from_mat.load(index), from_folder.load(index)
                assert a["meta"]["name"] == b["meta"]["name"] and a["scene"] == b["scene"]
                assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
                assert np.abs(a["depth"] - b["depth"]).max() <= 5e-4
                assert np.array_equal(a["hha"], b["hha"]) and np.array_equal(a["meta"]["K"], b["meta"]["K"])
    raw = get_loader("nyuv2")(nyu_folder, "train", depth_source="raw").load(0)["depth"]
    assert np.abs(raw - frames["raw"][0]).max() <= 5e-4 and (raw == 0).sum() == (frames["raw"][0] == 0).sum()


def test_nyu_folder_truncated_image_is_named_and_skipped(nyu_folder, tmp_path):
    copy = tmp_path / "nyu"
    shutil.copytree(nyu_folder, copy)
    bad = copy / "RGB" / "0003.png"
    bad.write_bytes(bad.read_bytes()[:40])
    dataset = get_loader("nyuv2")(str(copy), "train")
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
    rng = np.random.default_rng(1)
    rows, cols = 6, 8
    data = {}
    with h5py.File(tmp_path / "nyu_class_10_db.h5", "w") as handle:
        for split, count in (("train", 3), ("test", 2)):
            data[split] = {"rgb": rng.integers(0, 256, (count, 3, rows, cols), dtype=np.uint8),
                           "depth": rng.uniform(0, 255, (count, 1, rows, cols)).astype(np.float32),
                           "label": rng.integers(0, 41, (count, rows, cols)).astype(np.uint8),
                           "class": rng.integers(1, 11, (count, 1)).astype(np.uint8)}
            for kind, value in data[split].items():
                handle.create_dataset(f"{kind}_{split}", data=value)
    dataset = get_loader("nyuv2")(str(tmp_path), "test", n_classes=13)
    assert dataset.layout == "fusenet_h5" and len(dataset) == 2
    sample = dataset.load(1)
    assert np.array_equal(sample["image"], data["test"]["rgb"][1].transpose(1, 2, 0))
    np.testing.assert_allclose(sample["depth"], data["test"]["depth"][1, 0] / 255 * 10, rtol=1e-6)
    label40 = data["test"]["label"][1].astype(int)
    assert np.array_equal(sample["label"], np.where(label40 == 0, 255, np.concatenate([[0], NYU40_TO_13])[label40] - 1))
    assert sample["scene"] == data["test"]["class"][1, 0] - 1
    assert np.allclose(sample["meta"]["K"][0], NYU_K[0] / 80)
    with pytest.raises(PtsemsegError, match="not metres"):
        get_loader("nyuv2")(str(tmp_path), "train", task="depth")


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
SUN_TRAIN = ["kv2/kinect2data/000065_2014-05-16_rgbf000121-resize", "kv1/NYUdata/NYU0001"]
SUN_TEST = ["xtion/sun3ddata/mit_lab/lab_1/0006558-000219764412", "realsense/lg/2014_10_30-16_08_17-1311000073"]
SUN_K = np.array([[52.0, 0, 7.5], [0, 51.0, 5.5], [0, 0, 1]], np.float32)


def sun_frame(rng):
    image = rng.integers(0, 256, (ROWS, COLS, 3), dtype=np.uint8)
    depth = np.round(rng.uniform(0.5, 9.9, (ROWS, COLS)), 3).astype(np.float32)
    raw = np.where(rng.random((ROWS, COLS)) < 0.3, 0, depth).astype(np.float32)
    label = rng.integers(0, 38, (ROWS, COLS)).astype(np.uint8)
    return image, depth, raw, label


@pytest.fixture(scope="module")
def sun(tmp_path_factory):
    """Official SUNRGBD frame folders, the two image lists, the label PNGs numbered test-first, and the
    toolbox files (SUNRGBDMeta.mat in another order, SUNRGBD2Dseg.mat v7.3, allsplit.mat); returns
    (root, {frame: (image, depth, raw, label)})."""
    root = tmp_path_factory.mktemp("sun")
    rng = np.random.default_rng(2)
    frames = {}
    for frame in SUN_TRAIN + SUN_TEST:
        image, depth, raw, label = frames[frame] = sun_frame(rng)
        folder = root.joinpath("SUNRGBD", *frame.split("/"))
        for sub in ("image", "depth_bfx", "depth"):
            (folder / sub).mkdir(parents=True)
        stem = frame.split("/")[-1][:7]
        cv2.imwrite(str(folder / "image" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "depth_bfx" / f"{stem}0.png"), encode_sunrgbd_depth(depth))
        cv2.imwrite(str(folder / "depth" / f"{stem}0.png"), encode_sunrgbd_depth(raw))
        (folder / "intrinsics.txt").write_text("52 0 7.5\n0 51 5.5\n0 0 1\n")
        (folder / "scene.txt").write_text("office")
    for name, listed in (("sunrgbd_training_images.txt", SUN_TRAIN), ("sunrgbd_testing_images.txt", SUN_TEST)):
        separator = {True: "//", False: "/"}
        lines = [f"SUNRGBD/{frame}{separator['NYU' in frame]}image/{frame.split('/')[-1][:7]}.png" for frame in listed]
        (root / name).write_text("\n".join(lines) + "\n")
    labels = root / "sunrgbd_train_test_labels"
    labels.mkdir()
    # Numbered like sunrgbd_train_test_labels.tar.gz: the test frames first, then the training frames.
    for number, frame in enumerate(SUN_TEST + SUN_TRAIN, start=1):
        cv2.imwrite(str(labels / f"img-{number:06d}.png"), frames[frame][3])

    toolbox = root / "SUNRGBDtoolbox"
    (toolbox / "Metadata").mkdir(parents=True)
    (toolbox / "traintestSUNRGBD").mkdir()
    order = [SUN_TEST[1], SUN_TRAIN[0], SUN_TEST[0], SUN_TRAIN[1]]
    meta = np.zeros((1, len(order)), dtype=[("sequenceName", "O"), ("rgbpath", "O"), ("depthpath", "O")])
    for i, frame in enumerate(order):
        prefix = f"/n/fs/sun3d/data/SUNRGBD/{frame}"
        meta[0, i] = (f"SUNRGBD/{frame}", f"{prefix}/image/{frame.split('/')[-1][:7]}.png", f"{prefix}/depth/x.png")
    scipy.io.savemat(str(toolbox / "Metadata" / "SUNRGBDMeta.mat"), {"SUNRGBDMeta": meta}, format="5")

    def build(handle):
        group = handle.create_group("SUNRGBD2Dseg")
        refs = handle.create_group("#refs#")
        references = []
        for i, frame in enumerate(order):
            data = refs.create_dataset(f"seg{i}", data=frames[frame][3].T.astype(np.float64))
            references.append(data.ref)
        group.create_dataset("seglabel", data=np.array(references, dtype=h5py.ref_dtype)[:, None])

    write_mat73(str(toolbox / "Metadata" / "SUNRGBD2Dseg.mat"), build)
    split = {}
    for key, listed in (("alltrain", SUN_TRAIN), ("alltest", SUN_TEST)):
        cell = np.empty((1, len(listed)), dtype=object)
        cell[0, :] = [f"/n/fs/sun3d/data/SUNRGBD/{frame}" for frame in listed]
        split[key] = cell
    scipy.io.savemat(str(toolbox / "traintestSUNRGBD" / "allsplit.mat"), split, format="5")
    return str(root), frames


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
        dataset = get_loader("sunrgbd")(root, split, label_source=label_source)
        assert dataset.layout == "official" and dataset.n_classes == 37 and len(dataset) == len(listed)
        for index, frame in enumerate(listed):
            check_sun_sample(dataset.load(index), frame, frames)


def test_sun_toolbox_split_and_labels_without_lists(sun, tmp_path):
    root, frames = sun
    copy = tmp_path / "sun"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("sunrgbd_*"))
    dataset = get_loader("sunrgbd")(str(copy), "val", depth_source="raw")
    assert dataset.label_source == "toolbox" and len(dataset) == 2
    check_sun_sample(dataset.load(1), SUN_TEST[1], frames, "raw")
    with pytest.raises(PtsemsegError, match="SUN RGB-D label PNGs not found: expected .*sunrgbd_train_test_labels"):
        get_loader("sunrgbd")(str(copy), "train", label_source="png")


def test_sun_hha_from_file_or_computed(sun, tmp_path):
    root, frames = sun
    copy = tmp_path / "sun"
    shutil.copytree(root, copy)
    computed = get_loader("sunrgbd")(str(copy), "test", use_hha=True).load(0)["hha"]
    image, depth, _, _ = frames[SUN_TEST[0]]
    assert np.array_equal(computed, hha_encode(depth, SUN_K))
    load_tool("hha").main(["--sunrgbd", str(copy), "--splits", "test", "--workers", "1"])
    hha_file = copy.joinpath("SUNRGBD", *SUN_TEST[0].split("/"), "hha", "0006558.png")
    assert hha_file.is_file()
    stored = read_rgb(str(hha_file))
    assert stored.shape == image.shape and stored.dtype == np.uint8
    hha_file.write_bytes(cv2.imencode(".png", np.zeros_like(stored))[1].tobytes())
    assert (get_loader("sunrgbd")(str(copy), "test", use_hha=True).load(0)["hha"] == 0).all()


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
    dataset = get_loader("sunrgbd")(str(tmp_path), "test")
    assert dataset.layout == "folder" and len(dataset) == 1
    sample = dataset.load(0)
    assert sample["image"].shape == (480, 640, 3) and sample["depth"].shape == (480, 640)
    valid = sample["depth"][sample["depth"] > 0]
    assert abs(valid.min() - 1.06) < 0.01 and abs(valid.max() - 9.87) < 0.01
    assert np.array_equal(np.unique(sample["label"]), np.r_[np.arange(37), 255])
    millimetres = get_loader("sunrgbd")(str(tmp_path), "test", depth_encoding="mm")
    with pytest.raises(PtsemsegError, match="set data.depth_encoding: sunrgbd"):
        millimetres.load(0)
    with pytest.raises(PtsemsegError, match="HHA not found: expected .*hha/test/img-000001.png"):
        get_loader("sunrgbd")(str(tmp_path), "test", use_hha=True).load(0)


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
    """Two iterations and a validation through the trainer: batching of hha, scene and meta.K included."""
    import yaml

    from conftest import tiny_config
    from ptsemseg.trainer import Trainer

    cfg = tiny_config()
    cfg["data"] = {"dataset": dataset, "path": (nyu if dataset == "nyuv2" else sun)[0], "train_split": "train",
                   "val_split": "val", "img_rows": 24, "img_cols": 32, "img_norm": True, "use_hha": True}
    if dataset == "nyuv2":
        cfg["data"]["n_classes"] = 13
    cfg["training"].update(train_iters=2, val_interval=2, out_dir=str(tmp_path / "run"))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    trainer = Trainer(load_config(str(path)), str(path))
    assert trainer.n_classes == (13 if dataset == "nyuv2" else 37)
    batch = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    assert batch["hha"].shape == (2, 3, 24, 32) and batch["meta"]["K"].shape == (2, 3, 3)
    scores = trainer.run()
    assert "mean_iou" in scores
