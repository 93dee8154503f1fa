"""Writers of miniature datasets in their official on-disk layouts, shared by the loader tests and the dataset
contract test: a few tiny frames with known contents, so every file format and path rule is exercised in seconds."""
import json
import os

import cv2
import h5py
import numpy as np
import scipy.io

from ptsemseg.depth_utils import encode_sunrgbd_depth
from ptsemseg.loaders.nyuv2 import NYU40_CLASS_NAMES

RGBD_ROWS, RGBD_COLS = 12, 16  # NYUv2 and SUN RGB-D frames
CITYSCAPES_ROWS, CITYSCAPES_COLS = 16, 32
BASELINE, FX, FY, U0, V0 = 0.209313, 2262.52, 2265.30, 16.5, 8.25


def write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)


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


# ---- NYUv2
NYU_SCENES = ["kitchen", "bedroom", "cafe", "living_room", "office", "bathroom"]
NYU_TRAIN, NYU_TEST = [1, 3, 4], [2, 5, 6]  # 1-based, as in splits.mat


def write_nyu_mat(root):
    """A 6-frame nyu_depth_v2_labeled.mat (12×16 frames, with sceneTypes) with splits.mat and classMapping40.mat in
    `root`; returns (the frames as H×W(×3) arrays, mapClass)."""
    rng = np.random.default_rng(0)
    frames = len(NYU_SCENES)
    images = rng.integers(0, 256, (frames, RGBD_ROWS, RGBD_COLS, 3), dtype=np.uint8)
    depths = rng.uniform(0.7, 9.5, (frames, RGBD_ROWS, RGBD_COLS)).astype(np.float32)
    raw = np.where(rng.random((frames, RGBD_ROWS, RGBD_COLS)) < 0.2, 0, depths).astype(np.float32)
    labels = rng.integers(0, 895, (frames, RGBD_ROWS, RGBD_COLS)).astype(np.uint16)
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
    return {"image": images, "depth": depths, "raw": raw, "labels": labels}, map_class


def write_fusenet_h5(root):
    """FuseNet's nyu_class_10_db.h5 with 3 train and 2 test frames of 6×8 (depth 0..255, labels 0..40, scene
    classes 1..10) in `root`; returns {split: {kind: array}}."""
    rng = np.random.default_rng(1)
    rows, cols = 6, 8
    data = {}
    with h5py.File(root / "nyu_class_10_db.h5", "w") as handle:
        for split, count in (("train", 3), ("test", 2)):
            data[split] = {"rgb": rng.integers(0, 256, (count, 3, rows, cols), dtype=np.uint8),
                           "depth": rng.uniform(0, 255, (count, 1, rows, cols)).astype(np.float32),
                           "label": rng.integers(0, 41, (count, rows, cols)).astype(np.uint8),
                           "class": rng.integers(1, 11, (count, 1)).astype(np.uint8)}
            for kind, value in data[split].items():
                handle.create_dataset(f"{kind}_{split}", data=value)
    return data


# ---- SUN RGB-D
SUN_TRAIN = ["kv2/kinect2data/000065_2014-05-16_rgbf000121-resize", "kv1/NYUdata/NYU0001"]
SUN_TEST = ["xtion/sun3ddata/mit_lab/lab_1/0006558-000219764412", "realsense/lg/2014_10_30-16_08_17-1311000073"]
# Scene types of the frames' scene.txt: three of the 19 benchmark classes and one other type.
SUN_SCENES = dict(zip(SUN_TRAIN + SUN_TEST, ["office", "bedroom", "storage_room", "living_room"]))
SUN_K = np.array([[52.0, 0, 7.5], [0, 51.0, 5.5], [0, 0, 1]], np.float32)


def sun_frame(rng):
    image = rng.integers(0, 256, (RGBD_ROWS, RGBD_COLS, 3), dtype=np.uint8)
    depth = np.round(rng.uniform(0.5, 9.9, (RGBD_ROWS, RGBD_COLS)), 3).astype(np.float32)
    raw = np.where(rng.random((RGBD_ROWS, RGBD_COLS)) < 0.3, 0, depth).astype(np.float32)
    label = rng.integers(0, 38, (RGBD_ROWS, RGBD_COLS)).astype(np.uint8)
    return image, depth, raw, label


def write_sun(root):
    """Official SUNRGBD frame folders (with scene.txt), the two image lists, the label PNGs numbered test-first, and
    the toolbox files (SUNRGBDMeta.mat in another order, SUNRGBD2Dseg.mat v7.3, allsplit.mat) in `root`; returns
    {frame: (image, depth, raw, label)}."""
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
        (folder / "scene.txt").write_text(SUN_SCENES[frame])
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
    return frames


# ---- Cityscapes
CITYSCAPES_FRAMES = {"train": ["aachen_000000_000019", "aachen_000001_000019"], "val": ["frankfurt_000000_000294"]}
# Label ids on the frame's first row, and the train ids they must become.
LABEL_IDS = np.array([0, 1, 6, 7, 8, 9, 11, 17, 19, 21, 23, 24, 26, 29, 31, 33], dtype=np.uint8)
TRAIN_IDS = np.array([255, 255, 255, 0, 1, 255, 2, 5, 6, 8, 10, 11, 13, 255, 16, 18], dtype=np.uint8)
# Disparity PNG values on the frame's first row, and the depth they encode.
DISPARITY = np.array([0, 1, 257, 2561, 25601], dtype=np.uint16)
DISPARITY_DEPTH = np.array([0, 0, BASELINE * FX, BASELINE * FX / 10, BASELINE * FX / 100], dtype=np.float32)


def make_cityscapes(root):
    """A miniature Cityscapes in the official layout: images, labelIds, disparity and camera json."""
    rng = np.random.default_rng(0)
    for split, stems in CITYSCAPES_FRAMES.items():
        for stem in stems:
            city = stem.split("_")[0]
            write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                      rng.integers(0, 256, (CITYSCAPES_ROWS, CITYSCAPES_COLS, 3), dtype=np.uint8))
            label = np.full((CITYSCAPES_ROWS, CITYSCAPES_COLS), 7, dtype=np.uint8)
            label[0, :len(LABEL_IDS)] = LABEL_IDS
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
            disparity = np.full((CITYSCAPES_ROWS, CITYSCAPES_COLS), 2561, dtype=np.uint16)
            disparity[0, :len(DISPARITY)] = DISPARITY
            write_png(root / "disparity" / split / city / f"{stem}_disparity.png", disparity)
            camera = {"extrinsic": {"baseline": BASELINE, "pitch": 0.038, "roll": 0.0, "x": 1.7, "y": 0.1,
                                    "yaw": -0.0195, "z": 1.22},
                      "intrinsic": {"fx": FX, "fy": FY, "u0": U0, "v0": V0}}
            path = root / "camera" / split / city / f"{stem}_camera.json"
            os.makedirs(path.parent, exist_ok=True)
            path.write_text(json.dumps(camera))
    return root


# ---- KITTI
KITTI_ROWS, KITTI_COLS, F, CX, CY, TX3 = 40, 64, 50.0, 32.0, 20.0, -27.0
DATE = "2011_09_26"
# Velodyne points (x forward, y left, z up) and where they must land in image_02: (row, col, depth) or None.
VELO_POINTS = np.array([[10, 0, 0, 0.5], [20, 0, 0, 0.1], [5, -1, 0, 0.2], [-5, 0, 0, 0.3], [10, -20, 0, 0.4],
                        [8, 0, 1.6, 0.9]], dtype=np.float32)
EXPECTED_IMAGE_02 = {(20, 32): 10.0, (20, 42): 5.0, (10, 32): 8.0}
# ... and in the Eigen ground truth (monodepth2's convention: pixel round(u) − 1, round(v) − 1; velodyne x, here the
# same as camera z).
EXPECTED_IMAGE_02_EIGEN = {(row - 1, col - 1): depth for (row, col), depth in EXPECTED_IMAGE_02.items()}


def calib_texts():
    cam = ["calib_time: 09-Jan-2012 13:57:47", "R_rect_00: 1 0 0 0 1 0 0 0 1"]
    for camera, tx in ((2, 0.0), (3, TX3)):
        cam += [f"S_rect_0{camera}: {KITTI_COLS} {KITTI_ROWS}",
                f"P_rect_0{camera}: {F} 0 {CX} {tx} 0 {F} {CY} 0 0 0 1 0"]
    # Camera x = -velo y, camera y = -velo z, camera z = velo x.
    velo = ["calib_time: 15-Mar-2012 11:37:16", "R: 0 -1 0 0 0 -1 1 0 0", "T: 0 0 0"]
    return "\n".join(cam) + "\n", "\n".join(velo) + "\n"


def make_raw_drive(raw_root, drive, frames=(0, 1, 2), speeds=(5.0, 0.1, 5.0)):
    """A fake KITTI raw drive: calibration of its day, colour images, Velodyne scans and OXTS records."""
    date_dir = raw_root / DATE
    os.makedirs(date_dir, exist_ok=True)
    cam_text, velo_text = calib_texts()
    (date_dir / "calib_cam_to_cam.txt").write_text(cam_text)
    (date_dir / "calib_velo_to_cam.txt").write_text(velo_text)
    drive_dir = date_dir / drive
    rng = np.random.default_rng(1)
    for frame, speed in zip(frames, speeds):
        stem = f"{frame:010d}"
        for camera in (2, 3):
            write_png(drive_dir / f"image_0{camera}" / "data" / f"{stem}.png",
                      rng.integers(0, 256, (KITTI_ROWS, KITTI_COLS, 3), dtype=np.uint8))
        os.makedirs(drive_dir / "velodyne_points" / "data", exist_ok=True)
        VELO_POINTS.tofile(drive_dir / "velodyne_points" / "data" / f"{stem}.bin")
        os.makedirs(drive_dir / "oxts" / "data", exist_ok=True)
        oxts = np.zeros(30)
        oxts[8] = speed
        (drive_dir / "oxts" / "data" / f"{stem}.txt").write_text(" ".join(f"{v:g}" for v in oxts) + "\n")
    return drive_dir


def make_kitti_semantics(root, count=10):
    rng = np.random.default_rng(2)
    for index in range(count):
        write_png(root / "training" / "image_2" / f"{index:06d}_10.png",
                  rng.integers(0, 256, (8, 12, 3), dtype=np.uint8))
        label = np.full((8, 12), 26, dtype=np.uint8)
        label[0, :len(LABEL_IDS)] = LABEL_IDS[:12]
        write_png(root / "training" / "semantic" / f"{index:06d}_10.png", label)
    return root


def write_kitti_depth_png(root, split, drive, kind, camera, frame, values):
    """A KITTI depth PNG (uint16, metres · 256) as data_depth_annotated (`kind` groundtruth) or data_depth_velodyne
    (`kind` velodyne_raw) store it."""
    write_png(root / split / drive / "proj_depth" / kind / f"image_0{camera}" / f"{frame:010d}.png", values)


def write_nyu_folder13(root):
    """The NYUv2 folder layout with 13-class label PNGs (0 = void, 1..13, as ankurhanda's new_nyu_class13_*.png):
    RGB, Depth and RawDepth (uint16 millimetres), Label, scenes.txt, train.txt and test.txt for 12×16 frames;
    returns {id: label file}."""
    rng = np.random.default_rng(4)
    labels = {}
    for split, ids in (("train", NYU_TRAIN), ("test", NYU_TEST)):
        (root / f"{split}.txt").write_text("".join(f"RGB/{i:04d}.png\tLabel/{i:04d}.png\n" for i in ids))
        for i in ids:
            write_png(root / "RGB" / f"{i:04d}.png", rng.integers(0, 256, (RGBD_ROWS, RGBD_COLS, 3), dtype=np.uint8))
            depth = rng.uniform(0.7, 9.5, (RGBD_ROWS, RGBD_COLS))
            write_png(root / "Depth" / f"{i:04d}.png", np.round(depth * 1000).astype(np.uint16))
            write_png(root / "RawDepth" / f"{i:04d}.png",
                      np.where(rng.random(depth.shape) < 0.2, 0, np.round(depth * 1000)).astype(np.uint16))
            labels[i] = rng.integers(0, 14, (RGBD_ROWS, RGBD_COLS)).astype(np.uint8)
            labels[i][0, :3] = [0, 1, 13]
            write_png(root / "Label" / f"{i:04d}.png", labels[i])
    (root / "scenes.txt").write_text("".join(f"{i:04d} {scene}\n" for i, scene in enumerate(NYU_SCENES, start=1)))
    return labels


# ---- NYUv2 raw Kinect dumps (libfreenect fakenect-record, fakenect/record.c)
KINECT_ROWS, KINECT_COLS = 480, 640
# scene folder: (host times of the depth frames, host times of the colour frames), in seconds.
NYU_RAW_TRAIN = {"bedroom_0001": ([1294439283.0, 1294439283.033, 1294439283.066], [1294439283.01, 1294439283.05]),
                 "living_room_0012a": ([1294500000.5, 1294500000.533], [1294500000.52])}
NYU_RAW_TEST = {"office_0003": ([1294600000.0, 1294600000.034], [1294600000.002, 1294600000.03])}


def fakenect_name(kind, host_time, ticks, extension):
    """A fakenect file name: record.c writes "%c-%f-%u.%s"."""
    return f"{kind}-{host_time:f}-{ticks}.{extension}"


def write_kinect_depth(path, disparity):
    """A raw depth dump: the one-line PGM header, then the 16-bit values little-endian (as record.c on x86)."""
    rows, cols = disparity.shape
    path.write_bytes(f"P5 {cols} {rows} 65535\n".encode() + np.asarray(disparity, dtype="<u2").tobytes())


def write_kinect_rgb(path, image):
    """A raw colour dump: the one-line PPM header, then the RGB bytes."""
    rows, cols = image.shape[:2]
    path.write_bytes(f"P6 {cols} {rows} 255\n".encode() + np.ascontiguousarray(image, dtype=np.uint8).tobytes())


def kinect_planes(left, right, hole=None):
    """A 640×480 disparity frame: `left` on columns < 320, `right` beyond, and 2047 (no measurement) in the box
    hole = (top, bottom, left, right)."""
    disparity = np.full((KINECT_ROWS, KINECT_COLS), right, dtype=np.uint16)
    disparity[:, :KINECT_COLS // 2] = left
    if hole is not None:
        top, bottom, first, last = hole
        disparity[top:bottom, first:last] = 2047
    return disparity


def write_nyu_raw(root, scenes=None):
    """Raw scene folders (depth, colour and accelerometer dumps with INDEX.txt in capture order) and the two scene
    lists in `root`; every depth frame is two planes with a hole. Returns {scene: {file name: array}}."""
    scenes = scenes or {**NYU_RAW_TRAIN, **NYU_RAW_TEST}
    rng = np.random.default_rng(5)
    written = {}
    for scene, (depth_times, rgb_times) in scenes.items():
        folder = root / scene
        folder.mkdir(parents=True)
        files = {}
        for number, host_time in enumerate(depth_times):
            files[fakenect_name("d", host_time, 1000 + number, "pgm")] = kinect_planes(
                1050 - 10 * number, 850, hole=(200, 240, 100 + 20 * number, 140 + 20 * number))
        for number, host_time in enumerate(rgb_times):
            files[fakenect_name("r", host_time, 2000 + number, "ppm")] = rng.integers(
                0, 256, (KINECT_ROWS, KINECT_COLS, 3), dtype=np.uint8)
        for name, array in files.items():
            (write_kinect_depth if name.startswith("d-") else write_kinect_rgb)(folder / name, array)
        accel = fakenect_name("a", depth_times[0] + 0.001, 1000, "dump")
        # freenect_raw_tilt_state: int16 accelerometer x, y, z (819 counts = 1 g), int8 tilt angle and a padding
        # byte, int32 tilt status.
        (folder / accel).write_bytes(np.array([0, 819, 0], dtype="<i2").tobytes() + bytes(2) + bytes(4))
        by_time = sorted(list(files) + [accel], key=lambda name: float(name.split("-")[1]))
        (folder / "INDEX.txt").write_text("".join(name + "\n" for name in by_time))
        written[scene] = files
    for split, listed in (("train", NYU_RAW_TRAIN), ("test", NYU_RAW_TEST)):
        (root / f"{split}_scenes.txt").write_text("".join(f"{scene}\n" for scene in listed if scene in scenes))
    return written


# ---- ADE20K (ADEChallengeData2016)
ADE_FRAMES = {"training": {"ADE_train_00000001": (10, 14), "ADE_train_00000002": (12, 9)},
              "validation": {"ADE_val_00000001": (11, 13), "ADE_val_00000002": (10, 14)}}


def write_ade20k(root):
    """A miniature ADEChallengeData2016: JPEG images of different sizes and uint8 annotations (0 = other, 1..150,
    with 0, 1 and 150 on the first row) under images/ and annotations/; returns {stem: annotation}."""
    rng = np.random.default_rng(6)
    annotations = {}
    for folder, frames in ADE_FRAMES.items():
        for stem, size in frames.items():
            write_png(root / "images" / folder / f"{stem}.jpg", rng.integers(0, 256, (*size, 3), dtype=np.uint8))
            annotations[stem] = rng.integers(0, 151, size).astype(np.uint8)
            annotations[stem][0, :3] = [0, 1, 150]
            write_png(root / "annotations" / folder / f"{stem}.png", annotations[stem])
    return annotations
