"""Cityscapes and KITTI loaders, KITTI utilities and the preparation tools, on miniature copies of the official
layouts written to tmp dirs and on the real sample files in ../shared/realdata."""
import glob
import importlib.util
import os

import cv2
import numpy as np
import pytest
import torch
import yaml

from miniature_datasets import (BASELINE, CITYSCAPES_COLS as COLS, CITYSCAPES_ROWS as ROWS, CX, CY, DATE, DISPARITY,
                                DISPARITY_DEPTH, EXPECTED_IMAGE_02, EXPECTED_IMAGE_02_EIGEN, FX, FY, KITTI_COLS, KITTI_ROWS, TRAIN_IDS, U0, V0,
                                F, make_cityscapes, make_kitti_semantics, make_raw_drive, write_kitti_depth_png,
                                write_png)
from tests.conftest import REPO, SHARED, load_tool, run_script, tiny_config
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.io import CorruptFileError
from ptsemseg.loaders.kitti import semantics_split
from ptsemseg.loaders.kitti_utils import (EIGEN_TEST_DRIVES, Frame, project_to_depth_map, read_calib_file,
                                          read_calibration, read_oxts_speed, read_split_file, read_static_frames,
                                          read_velodyne, velodyne_depth_map, write_split_file)
from ptsemseg.loaders.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_LABELS, label_ids_to_train_ids

REALDATA = os.path.join(SHARED, "realdata")
DEPTH = ("image", "depth")  # the keys of a monocular depth run
needs_realdata = pytest.mark.skipif(not os.path.isdir(REALDATA),
                                    reason=f"real dataset samples not found at {REALDATA}")



# ---- Cityscapes ----------------------------------------------------------------------------------------------

@pytest.fixture
def cityscapes_root(tmp_path):
    return make_cityscapes(tmp_path / "cityscapes")


def test_cityscapes_seg_sample(cityscapes_root):
    dataset = get_loader("cityscapes")(str(cityscapes_root), "train")
    assert len(dataset) == 2 and dataset.n_classes == 19
    sample = dataset.load(1)
    assert sample["image"].shape == (ROWS, COLS, 3) and sample["image"].dtype == np.uint8
    assert sample["label"].shape == (ROWS, COLS) and sample["label"].dtype == np.uint8
    np.testing.assert_array_equal(sample["label"][0, :len(TRAIN_IDS)], TRAIN_IDS)
    assert (sample["label"][1:] == 0).all()
    assert sample["meta"]["name"] == "aachen/aachen_000001_000019" and sample["meta"]["index"] == 1
    np.testing.assert_allclose(sample["meta"]["K"], [[FX, 0, U0], [0, FY, V0], [0, 0, 1]], rtol=1e-6)
    tensors = dataset[0]
    assert tensors["image"].shape == (3, ROWS, COLS) and tensors["label"].dtype == torch.int64


def test_cityscapes_depth_from_disparity(cityscapes_root):
    dataset = get_loader("cityscapes")(str(cityscapes_root), "val", keys=DEPTH)
    sample = dataset.load(0)
    depth = sample["depth"]
    assert depth.dtype == np.float32 and depth.shape == (ROWS, COLS) and "label" not in sample
    np.testing.assert_allclose(depth[0, :len(DISPARITY)], DISPARITY_DEPTH, rtol=1e-5)
    np.testing.assert_allclose(depth[1:], BASELINE * FX / 10, rtol=1e-5)
    capped = get_loader("cityscapes")(str(cityscapes_root), "val", keys=DEPTH, max_depth=100.0).load(0)["depth"]
    assert capped[0, 2] == 0 and capped[0, 3] == pytest.approx(BASELINE * FX / 10, rel=1e-5)
    boxed = get_loader("cityscapes")(str(cityscapes_root), "val", keys=DEPTH,
                                     depth_roi=[0.25, 0.75, 0.5, 1.0]).load(0)["depth"]
    assert (boxed[4:12, 16:] > 0).all() and np.count_nonzero(boxed) == 8 * 16
    with pytest.raises(PtsemsegError, match="depth_roi"):
        get_loader("cityscapes")(str(cityscapes_root), "val", keys=DEPTH, depth_roi=[0.8, 0.2, 0, 1])


def test_cityscapes_label_train_ids_option(cityscapes_root):
    tool = load_tool("cityscapes_trainids")
    tool.main(["--root", str(cityscapes_root), "--splits", "train", "val", "--workers", "1"])
    written = sorted(glob.glob(str(cityscapes_root / "gtFine" / "*" / "*" / "*_gtFine_labelTrainIds.png")))
    assert len(written) == 3
    from_ids = get_loader("cityscapes")(str(cityscapes_root), "val").load(0)["label"]
    ready = get_loader("cityscapes")(str(cityscapes_root), "val", label_type="labelTrainIds").load(0)["label"]
    np.testing.assert_array_equal(ready, from_ids)


def test_cityscapes_resize_scales_intrinsics(cityscapes_root):
    sample = get_loader("cityscapes")(str(cityscapes_root), "train", keys=DEPTH, img_size=(8, 16))[0]
    assert sample["image"].shape == (3, 8, 16) and sample["depth"].shape == (1, 8, 16)
    np.testing.assert_allclose(sample["meta"]["K"][0, 0].item(), FX / 2, rtol=1e-6)


def test_cityscapes_missing_root_names_expected_path(tmp_path):
    with pytest.raises(PtsemsegError) as err:
        get_loader("cityscapes")(str(tmp_path / "nowhere"), "train")
    message = str(err.value)
    assert os.path.join(str(tmp_path / "nowhere"), "leftImg8bit", "train") in message
    assert "README.md#datasets" in message and "'Cityscapes'" in message and "\n" not in message


def test_cityscapes_missing_disparity_named(cityscapes_root):
    os.remove(cityscapes_root / "disparity" / "train" / "aachen" / "aachen_000001_000019_disparity.png")
    with pytest.raises(PtsemsegError, match="1 of 2 .*aachen_000001_000019_disparity.png"):
        get_loader("cityscapes")(str(cityscapes_root), "train", keys=DEPTH)
    get_loader("cityscapes")(str(cityscapes_root), "train", keys=("image", "label"))  # labels need no disparity


def test_cityscapes_bad_option():
    with pytest.raises(PtsemsegError, match="label_type"):
        get_loader("cityscapes")("/x", "train", label_type="trainIds")


def test_truncated_image_named_and_skipped(cityscapes_root):
    path = cityscapes_root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    dataset = get_loader("cityscapes")(str(cityscapes_root), "train")
    with pytest.raises(CorruptFileError, match="aachen_000000_000019_leftImg8bit.png"):
        dataset[0]
    tolerant = get_loader("cityscapes")(str(cityscapes_root), "train", skip_bad=True)
    with pytest.warns(UserWarning, match="skipping bad sample.*aachen_000000_000019_leftImg8bit.png"):
        sample = tolerant[0]
    assert sample["meta"]["name"] == "aachen/aachen_000001_000019"


# ---- KITTI: calibration, projection, lists ------------------------------------------------------------------

def assert_depth_points(depth, expected):
    assert depth.dtype == np.float32 and np.count_nonzero(depth) == len(expected)
    for (row, col), value in expected.items():
        assert depth[row, col] == pytest.approx(value, abs=1 / 256)


def test_calibration_and_projection(tmp_path):
    make_raw_drive(tmp_path, f"{DATE}_drive_0001_sync", frames=(0,), speeds=(1.0,))
    assert "calib_time" not in read_calib_file(str(tmp_path / DATE / "calib_cam_to_cam.txt"))
    calibration = read_calibration(str(tmp_path / DATE), 2)
    assert calibration.size == (KITTI_ROWS, KITTI_COLS)
    np.testing.assert_allclose(calibration.K, [[F, 0, CX], [0, F, CY], [0, 0, 1]])
    points = read_velodyne(str(tmp_path / DATE / f"{DATE}_drive_0001_sync" / "velodyne_points" / "data" /
                               "0000000000.bin"))
    assert points.shape == (6, 4) and points.dtype == np.float32
    # Behind the camera and outside the image are dropped; two points on one pixel keep the nearest.
    depth = project_to_depth_map(points, calibration.velo_to_image, calibration.size)
    assert_depth_points(depth, EXPECTED_IMAGE_02)
    right = project_to_depth_map(points, read_calibration(str(tmp_path / DATE), 3).velo_to_image, calibration.size)
    assert right[20, 29] == pytest.approx(10.0) and right[20, 32] == 0  # 32 − 27/10 = 29.3
    half = velodyne_depth_map(str(tmp_path / DATE / f"{DATE}_drive_0001_sync" / "velodyne_points" / "data" /
                                  "0000000000.bin"), calibration, (KITTI_ROWS // 2, KITTI_COLS // 2))
    assert half.shape == (20, 32) and half[10, 16] == pytest.approx(10.0) and half[10, 21] == pytest.approx(5.0)


def test_bad_velodyne_and_calibration(tmp_path):
    path = tmp_path / "scan.bin"
    np.zeros(7, dtype=np.float32).tofile(path)
    with pytest.raises(CorruptFileError, match="scan.bin"):
        read_velodyne(str(path))
    (tmp_path / "calib_cam_to_cam.txt").write_text("R_rect_00: 1 0 0\n")
    (tmp_path / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n")
    with pytest.raises(CorruptFileError, match="R_rect_00"):
        read_calibration(str(tmp_path), 2)
    with pytest.raises(PtsemsegError, match="calib_cam_to_cam.txt"):
        read_calibration(str(tmp_path / "missing"), 2)


def test_split_lists_round_trip(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n2011_09_26/2011_09_26_drive_0002_sync 54 r\n")
    frames = read_split_file(str(path))
    assert frames == [Frame("2011_09_26/2011_09_26_drive_0002_sync", 69, 2),
                      Frame("2011_09_26/2011_09_26_drive_0002_sync", 54, 3)]
    assert frames[1].name == "2011_09_26_drive_0002_sync/image_03/0000000054"
    write_split_file(str(tmp_path / "out.txt"), frames)
    assert read_split_file(str(tmp_path / "out.txt")) == frames
    path.write_text("2011_09_26_drive_0002_sync 69\n")
    with pytest.raises(PtsemsegError, match="line 1"):
        read_split_file(str(path))
    (tmp_path / "static.txt").write_text("2011_09_26 2011_09_26_drive_0009_sync 0000000386\n")
    assert read_static_frames(str(tmp_path / "static.txt")) == {("2011_09_26_drive_0009_sync", 386)}


# ---- KITTI: dataset layouts ---------------------------------------------------------------------------------

def test_kitti_semantics(tmp_path):
    root = make_kitti_semantics(tmp_path / "data_semantics")
    kitti = get_loader("kitti")
    train, val = kitti(str(root), "train"), kitti(str(root), "val")
    assert len(train) == 8 and len(val) == 2 and len(kitti(str(root), "trainval")) == 10
    assert [s["name"] for s in val.samples] == ["000000_10", "000005_10"]
    sample = val.load(1)
    assert sample["image"].shape == (8, 12, 3) and sample["label"].dtype == np.uint8
    np.testing.assert_array_equal(sample["label"][0], TRAIN_IDS[:12])
    assert (sample["label"][1:] == 13).all()
    assert semantics_split([f"{i:06d}_10.png" for i in range(200)], "val")[:3] == [
        "000000_10.png", "000005_10.png", "000010_10.png"]
    assert len(semantics_split([str(i) for i in range(200)], "val")) == 40
    with pytest.raises(PtsemsegError, match="split must be one of"):
        kitti(str(root), "test")
    with pytest.raises(PtsemsegError, match="asked for 'depth'; dataset kitti gives image, label for split train"):
        kitti(str(root), "train", keys=DEPTH)
    with pytest.raises(PtsemsegError, match="closest: semantics"):
        kitti(str(root), "train", layout="semantic")


def test_kitti_annotated_depth(tmp_path):
    raw = tmp_path / "raw"
    drive = f"{DATE}_drive_0001_sync"
    make_raw_drive(raw, drive, frames=(5, 6))
    annotated = tmp_path / "data_depth_annotated"
    values = np.zeros((KITTI_ROWS, KITTI_COLS), dtype=np.uint16)
    values[10, 20], values[30, 40] = 256 * 12, 65535
    for camera in (2, 3):
        write_png(annotated / "val" / drive / "proj_depth" / "groundtruth" / f"image_0{camera}" / "0000000005.png",
                  values)
    kitti = get_loader("kitti")
    dataset = kitti(str(annotated), "val", keys=DEPTH, layout="annotated", raw_root="../raw")
    assert len(dataset) == 2
    sample = dataset.load(0)
    assert sample["meta"]["name"] == f"{drive}/image_02/0000000005"
    assert sample["image"].shape == (KITTI_ROWS, KITTI_COLS, 3)
    assert_depth_points(sample["depth"], {(10, 20): 12.0, (30, 40): 65535 / 256})
    np.testing.assert_allclose(sample["meta"]["K"], [[F, 0, CX], [0, F, CY], [0, 0, 1]])
    assert len(kitti(str(annotated), "val", keys=DEPTH, layout="annotated", raw_root=str(raw), cameras=[3])) == 1
    with pytest.raises(PtsemsegError, match=os.path.join("data_depth_annotated", "train")):
        kitti(str(annotated), "train", keys=DEPTH, layout="annotated", raw_root="../raw")
    os.remove(raw / DATE / drive / "image_03" / "data" / "0000000005.png")
    with pytest.raises(PtsemsegError, match="1 of 2 .*image_03.*0000000005.png"):
        kitti(str(annotated), "val", keys=DEPTH, layout="annotated", raw_root="../raw")
    write_png(annotated / "val" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000005.png",
              values.astype(np.uint8))
    with pytest.raises(CorruptFileError, match="16-bit"):
        kitti(str(annotated), "val", keys=DEPTH, layout="annotated", raw_root="../raw", cameras=[2]).load(0)


def test_kitti_raw_depth_from_velodyne_raw_pngs_and_scans(tmp_path):
    """raw_depth: data_depth_velodyne's PNG beside an annotated map; the projected scan beside annotated gt."""
    raw, annotated, velodyne = tmp_path / "raw", tmp_path / "data_depth_annotated", tmp_path / "data_depth_velodyne"
    drive = f"{DATE}_drive_0001_sync"
    make_raw_drive(raw, drive, frames=(5,), speeds=(5.0,))
    gt, scan = np.zeros((2, KITTI_ROWS, KITTI_COLS), dtype=np.uint16)
    gt[10, 20], scan[10, 20], scan[3, 4] = 256 * 12, 256 * 11, 256 * 30
    write_kitti_depth_png(annotated, "val", drive, "groundtruth", 2, 5, gt)
    write_kitti_depth_png(velodyne, "val", drive, "velodyne_raw", 2, 5, scan)
    kitti = get_loader("kitti")
    completion = ("image", "depth", "raw_depth")
    sample = kitti(str(annotated), "val", keys=completion, layout="annotated", raw_root="../raw", cameras=[2]).load(0)
    assert set(sample) == {"image", "depth", "raw_depth", "meta"}
    assert_depth_points(sample["depth"], {(10, 20): 12.0})
    assert_depth_points(sample["raw_depth"], {(10, 20): 11.0, (3, 4): 30.0})
    assert "raw_depth" not in kitti(str(annotated), "val", keys=DEPTH, layout="annotated", raw_root="../raw",
                                    cameras=[2]).load(0)
    (raw / "one.txt").write_text(f"{DATE}/{drive} 5 l\n")
    listed = kitti(str(raw), "test", keys=completion, layout="raw", split_file="one.txt", gt="annotated",
                   annotated_root=str(annotated)).load(0)
    assert_depth_points(listed["depth"], {(10, 20): 12.0})
    assert_depth_points(listed["raw_depth"], EXPECTED_IMAGE_02)
    with pytest.raises(PtsemsegError, match="asked for 'raw_depth'; dataset kitti gives image, depth for split test"):
        kitti(str(raw), "test", keys=completion, layout="raw", split_file="one.txt")
    os.remove(velodyne / "val" / drive / "proj_depth" / "velodyne_raw" / "image_02" / "0000000005.png")
    with pytest.raises(PtsemsegError, match="1 of 1 KITTI val raw_depth files are missing under .*data_depth_velodyne"):
        kitti(str(annotated), "val", keys=completion, layout="annotated", raw_root="../raw", cameras=[2])


def test_kitti_raw_layout_velodyne_and_annotated_gt(tmp_path):
    raw = tmp_path / "raw"
    drive = f"{DATE}_drive_0001_sync"
    make_raw_drive(raw, drive)
    os.makedirs(raw / "splits" / "eigen")
    (raw / "splits" / "eigen" / "test_files.txt").write_text(f"{DATE}/{drive} 2 l\n{DATE}/{drive} 0 r\n")
    kitti = get_loader("kitti")
    dataset = kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw")
    assert [s["name"] for s in dataset.samples] == [f"{drive}/image_02/0000000002", f"{drive}/image_03/0000000000"]
    assert_depth_points(dataset.load(0)["depth"], EXPECTED_IMAGE_02_EIGEN)
    assert dataset.load(1)["depth"][19, 28] == pytest.approx(10.0)
    camera_z = kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw", gt="velodyne_camera_z")
    assert_depth_points(camera_z.load(0)["depth"], EXPECTED_IMAGE_02)
    assert camera_z.load(1)["depth"][20, 29] == pytest.approx(10.0)
    with pytest.raises(PtsemsegError, match="gt='velodyne_z' .*closest: velodyne, velodyne_camera_z"):
        kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw", gt="velodyne_z")
    annotated = tmp_path / "annotated"
    values = np.zeros((KITTI_ROWS, KITTI_COLS), dtype=np.uint16)
    values[3, 4] = 512
    write_png(annotated / "train" / drive / "proj_depth" / "groundtruth" / "image_02" / "0000000002.png", values)
    with pytest.raises(PtsemsegError, match="1 of 2 .*no annotated depth map for .*image_03/0000000000"):
        kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw", gt="annotated", annotated_root=str(annotated))
    only_left = kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw", gt="annotated", annotated_root=str(annotated),
                      cameras=[2])
    assert_depth_points(only_left.load(0)["depth"], {(3, 4): 2.0})
    with pytest.raises(PtsemsegError, match="split list .*splits/eigen/val_files.txt"):
        kitti(str(raw), "eigen/val", keys=DEPTH, layout="raw")
    with pytest.raises(PtsemsegError, match="2 of 2 .*0000000002.jpg.*img_ext"):
        kitti(str(raw), "eigen/test", keys=DEPTH, layout="raw", img_ext="jpg")


def test_prepare_depth_tool_and_prepared_layout(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    for number in (1, 2, 5):  # drive 0002 is an Eigen test drive and must be left out
        make_raw_drive(raw, f"{DATE}_drive_{number:04d}_sync")
    tool = load_tool("kitti_prepare_depth")
    tool.main(["--raw-root", str(raw), "--out", str(out), "--height", "20", "--width", "32", "--ext", "jpg",
               "--val-fraction", "0.5", "--workers", "1"])
    train, val = read_split_file(str(out / "train.txt")), read_split_file(str(out / "val.txt"))
    drives = {frame.drive for frame in train + val}
    assert drives == {f"{DATE}_drive_0001_sync", f"{DATE}_drive_0005_sync"}
    assert len({f.drive for f in train}) == 1 and len({f.drive for f in val}) == 1
    assert sorted({f.frame for f in train}) == [0, 2]  # frame 1 is static (0.1 m/s)
    assert {f.camera for f in train} == {2, 3}
    drive_dir = out / DATE / f"{DATE}_drive_0001_sync"
    np.testing.assert_allclose(np.loadtxt(drive_dir / "K_02.txt"), [[F / 2, 0, CX / 2], [0, F / 2, CY / 2], [0, 0, 1]])
    encoded = cv2.imread(str(drive_dir / "proj_depth" / "image_02" / "0000000000.png"), cv2.IMREAD_UNCHANGED)
    assert encoded.dtype == np.uint16 and encoded.shape == (20, 32)
    assert_depth_points(encoded.astype(np.float32) / 256, {(10, 16): 10.0, (10, 21): 5.0, (5, 16): 8.0})
    assert cv2.imread(str(drive_dir / "image_03" / "data" / "0000000002.jpg")).shape == (20, 32, 3)
    assert not (drive_dir / "image_02" / "data" / "0000000001.jpg").exists()

    split = "train" if train[0].drive == f"{DATE}_drive_0001_sync" else "val"
    dataset = get_loader("kitti")(str(out), split, keys=DEPTH, layout="prepared", img_ext="jpg")
    sample = dataset.load(0)
    assert sample["meta"]["name"] == f"{DATE}_drive_0001_sync/image_02/0000000000"
    assert sample["image"].shape == (20, 32, 3) and sample["depth"][10, 16] == pytest.approx(10.0, abs=1 / 256)
    np.testing.assert_allclose(sample["meta"]["K"][0, 0], F / 2)


def test_prepare_depth_static_list_and_copy(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    make_raw_drive(raw, f"{DATE}_drive_0001_sync")
    (tmp_path / "static.txt").write_text(f"{DATE} {DATE}_drive_0001_sync 0000000002\n")
    load_tool("kitti_prepare_depth").main(["--raw-root", str(raw), "--out", str(out), "--static-frames",
                                           str(tmp_path / "static.txt"), "--cameras", "2", "--workers", "1"])
    frames = read_split_file(str(out / "train.txt"))
    assert [(f.frame, f.camera) for f in frames] == [(0, 2), (1, 2)]  # the list replaces the speed rule
    assert (out / "val.txt").read_text() == ""
    copied = out / DATE / f"{DATE}_drive_0001_sync" / "image_02" / "data" / "0000000001.png"
    source = raw / DATE / f"{DATE}_drive_0001_sync" / "image_02" / "data" / "0000000001.png"
    assert copied.read_bytes() == source.read_bytes()


def test_tools_report_one_line_errors(tmp_path):
    for script, args in (("tools/cityscapes_trainids.py", ["--root", str(tmp_path / "none")]),
                         ("tools/kitti_prepare_depth.py", ["--raw-root", str(tmp_path / "none"), "--out",
                                                           str(tmp_path / "out")])):
        result = run_script(script, *args, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
        assert str(tmp_path / "none") in result.stderr


def test_oxts_speed(tmp_path):
    make_raw_drive(tmp_path, f"{DATE}_drive_0001_sync", frames=(0,), speeds=(3.0,))
    path = tmp_path / DATE / f"{DATE}_drive_0001_sync" / "oxts" / "data" / "0000000000.txt"
    assert read_oxts_speed(str(path)) == pytest.approx(3.0)


# ---- configs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "cityscapes", "*.yaml")) +
                                        glob.glob(os.path.join(REPO, "configs", "kitti", "*.yaml"))),
                         ids=lambda path: os.path.relpath(path, os.path.join(REPO, "configs")))
def test_dataset_configs_validate(path):
    cfg = load_config(path)
    assert cfg["data"]["dataset"] in ("cityscapes", "kitti")
    assert cfg["model"]["arch"] in ("deeplab", "fcrn")


def test_dataset_configs_exist():
    names = {os.path.relpath(p, os.path.join(REPO, "configs")) for p in glob.glob(os.path.join(REPO, "configs", "*",
                                                                                                   "*.yaml"))}
    assert {"cityscapes/deeplab_seg.yaml", "cityscapes/deeplab_depth.yaml", "kitti/deeplab_seg.yaml",
            "kitti/fcrn_depth.yaml"} <= names


@pytest.mark.parametrize("dataset, task", [("cityscapes", "depth"), ("kitti", "seg")])
def test_trainer_runs_on_miniature_layouts(tmp_path, dataset, task):
    """A few iterations and a validation of the generic trainer, collating batches with intrinsics and names."""
    from ptsemseg.trainer import Trainer
    if dataset == "cityscapes":
        data = {"path": str(make_cityscapes(tmp_path / "cityscapes")), "train_split": "train", "val_split": "val"}
    else:
        data = {"path": str(make_kitti_semantics(tmp_path / "data_semantics")), "layout": "semantics",
                "train_split": "train", "val_split": "val"}
    cfg = tiny_config(task, training={"train_iters": 2, "val_interval": 2, "out_dir": str(tmp_path / "run"),
                                      "augmentations": {"hflip": 0.5, "rcrop": [8, 12]}})
    cfg["data"].pop("length")
    cfg["data"].update(dataset=dataset, img_rows=16, img_cols=24, **data)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    scores = Trainer(load_config(str(path)), str(path)).run()
    assert ("depth/abs_rel" if task == "depth" else "seg/mean_iou") in scores


# ---- real sample files --------------------------------------------------------------------------------------

@needs_realdata
def test_real_cityscapes_train_ids_match_shipped_png():
    root = os.path.join(REALDATA, "cityscapes_downscaled_mmseg")
    sample = get_loader("cityscapes")(root, "val").load(0)
    shipped = cv2.imread(os.path.join(root, "gtFine", "val", "frankfurt",
                                      "frankfurt_000000_000294_gtFine_labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    assert sample["image"].shape == (128, 256, 3)
    agreement = (sample["label"] == shipped).mean()
    assert agreement >= 0.997, agreement  # labelIds and labelTrainIds were downscaled separately: 77 px differ


@needs_realdata
def test_real_cityscapes_34_to_19_names():
    with open(os.path.join(REALDATA, "cityscapes", "meta", "cityscapes-34_to_cityscapes-19.tsv")) as handle:
        rows = [line.rstrip("\n").split("\t") for line in handle][1:]
    assert len(rows) == 34
    train_id_of_name = {name: i for i, name in enumerate(CITYSCAPES_CLASS_NAMES)}
    for (label_id, name, train_id), (name_34, name_19) in zip(CITYSCAPES_LABELS, rows):
        assert name == name_34
        expected = 255 if name_19 == "unlabeled" else train_id_of_name[name_19]
        assert label_ids_to_train_ids(np.array([[label_id]], dtype=np.uint8))[0, 0] == expected, name
    with open(os.path.join(REALDATA, "cityscapes", "meta", "cityscapes_names.txt")) as handle:
        assert tuple(line.strip() for line in handle if line.strip()) == CITYSCAPES_CLASS_NAMES


KITTI_REAL = os.path.join(REALDATA, "kitti")
REAL_DRIVE = "2011_09_26_drive_0001_sync"


@needs_realdata
def test_real_velodyne_projection_agrees_with_annotated_depth():
    calibration = read_calibration(os.path.join(KITTI_REAL, "raw", "2011_09_26"), 2)
    assert calibration.size == (375, 1242)
    scan = os.path.join(KITTI_REAL, "raw", "2011_09_26", REAL_DRIVE, "velodyne_points", "data", "0000000005.bin")
    assert read_velodyne(scan).shape == (121948, 4)
    projected = velodyne_depth_map(scan, calibration)
    count = np.count_nonzero(projected)
    assert 19000 <= count <= 19300, count
    assert 5.2 < projected[projected > 0].min() < 5.3 and 77.9 < projected.max() < 78.1
    annotated = get_loader("kitti")(os.path.join(KITTI_REAL, "depth", "data_depth_annotated"), "train",
                                    keys=DEPTH, layout="annotated", raw_root="../../raw")
    assert len(annotated) == 2
    sample = annotated.load(0)
    gt = sample["depth"]
    assert sample["image"].shape == (375, 1242, 3)
    assert gt[gt > 0].min() == pytest.approx(5.33, abs=0.01) and gt.max() == pytest.approx(84.89, abs=0.01)
    both = (projected > 0) & (gt > 0)
    difference = np.abs(projected[both] - gt[both])
    assert both.sum() > 7000
    assert np.median(difference) <= 0.1 and (difference <= 0.3).mean() >= 0.9, (np.median(difference),
                                                                                 (difference <= 0.3).mean())
    np.testing.assert_allclose(sample["meta"]["K"], calibration.K)


@needs_realdata
def test_real_raw_layout_on_one_listed_frame(tmp_path):
    (tmp_path / "one.txt").write_text(f"2011_09_26/{REAL_DRIVE} 5 l\n")
    kitti = get_loader("kitti")
    raw = os.path.join(KITTI_REAL, "raw")
    velodyne = kitti(raw, "test", keys=DEPTH, layout="raw", split_file=str(tmp_path / "one.txt")).load(0)
    assert velodyne["image"].shape == (375, 1242, 3) and np.count_nonzero(velodyne["depth"]) > 19000
    annotated = kitti(raw, "test", keys=DEPTH, layout="raw", split_file=str(tmp_path / "one.txt"), gt="annotated",
                      annotated_root="../depth/data_depth_annotated").load(0)
    reference = cv2.imread(os.path.join(KITTI_REAL, "depth", "data_depth_annotated", "train", REAL_DRIVE,
                                        "proj_depth", "groundtruth", "image_02", "0000000005.png"),
                           cv2.IMREAD_UNCHANGED) / 256.0
    np.testing.assert_allclose(annotated["depth"], reference, rtol=1e-6)


@needs_realdata
def test_real_velodyne_raw_png_range():
    from ptsemseg.loaders.kitti import read_depth_png
    depth = read_depth_png(os.path.join(KITTI_REAL, "depth", "data_depth_velodyne", "train", REAL_DRIVE, "proj_depth",
                                        "velodyne_raw", "image_02", "0000000005.png"))
    assert depth.dtype == np.float32 and depth.shape == (375, 1242)
    assert depth[depth > 0].min() == pytest.approx(5.28, abs=0.01) and depth.max() == pytest.approx(78.02, abs=0.01)


@needs_realdata
def test_real_raw_depth_of_both_layouts_is_the_same_scan():
    """velodyne_raw beside the annotated maps and the scan as the raw layout projects it: one sensor depth (the
    devkit rounds pixel positions differently, so about a third of the points land on the same pixel)."""
    keys = ("image", "depth", "raw_depth")
    sensor = get_loader("kitti")(os.path.join(KITTI_REAL, "depth", "data_depth_annotated"), "train", keys=keys,
                                 layout="annotated", raw_root="../../raw", cameras=[2]).load(0)["raw_depth"]
    raw = os.path.join(KITTI_REAL, "raw", "2011_09_26")
    projected = velodyne_depth_map(os.path.join(raw, REAL_DRIVE, "velodyne_points", "data", "0000000005.bin"),
                                   read_calibration(raw, 2))
    assert abs(np.count_nonzero(sensor) - np.count_nonzero(projected)) < 0.01 * np.count_nonzero(projected)
    both = (projected > 0) & (sensor > 0)
    assert both.sum() > 5000 and np.median(np.abs(projected[both] - sensor[both])) < 0.05


@needs_realdata
def test_real_eigen_lists():
    frames = read_split_file(os.path.join(KITTI_REAL, "splits", "monodepth2", "eigen", "test_files.txt"))
    assert len(frames) == 697 and {f.camera for f in frames} == {2}
    assert {f.drive for f in frames} == EIGEN_TEST_DRIVES
    assert frames[0] == Frame("2011_09_26/2011_09_26_drive_0002_sync", 69, 2)
    benchmark = read_split_file(os.path.join(KITTI_REAL, "splits", "monodepth2", "eigen_benchmark", "test_files.txt"))
    assert len(benchmark) == 652 and benchmark[0].file_stem == "0000000069"


@needs_realdata
def test_real_kitti_semantics_names():
    with open(os.path.join(KITTI_REAL, "meta", "kitti-34_names.txt")) as handle:
        names = [line.strip() for line in handle if line.strip()]
    assert names == [name for _, name, _ in CITYSCAPES_LABELS]


# ---- full-size pipeline (slow) ------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_size_cityscapes_pipeline(tmp_path):
    """1024×2048 frames through the deeplab_seg training augmentations and a multi-worker DataLoader.

    Its speed against the bare decode is measured by benchmarks/bench_pipeline.py (BENCHMARKS.md), not here."""
    spec = importlib.util.spec_from_file_location("bench_pipeline", os.path.join(REPO, "benchmarks",
                                                                                "bench_pipeline.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from ptsemseg.augmentations import get_composed_augmentations
    cfg = load_config(os.path.join(REPO, "configs", "cityscapes", "deeplab_seg.yaml"))
    images, labels = bench.write_frames(str(tmp_path), 6, None)
    dataset = get_loader("cityscapes")(str(tmp_path), "train",
                                       augmentations=get_composed_augmentations(cfg["training"]["augmentations"]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, persistent_workers=True)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert batch["image"].shape == (2, 3, 512, 1024) and batch["image"].dtype == torch.float32
        assert batch["label"].shape == (2, 512, 1024) and batch["label"].dtype == torch.int64
        assert set(batch["label"].unique().tolist()) <= set(range(19)) | {255}
