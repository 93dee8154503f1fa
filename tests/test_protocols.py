"""Depth evaluation protocols (`testing.protocol`) on miniature copies of the official layouts: a KITTI raw tree
written here (calib_cam_to_cam.txt, calib_velo_to_cam.txt, velodyne_points/data/*.bin, image_02/data/*.png, the
Eigen split list, annotated depth PNGs), NYUv2's labelled .mat and Cityscapes' disparity. Every protocol
reproduces metrics computed by hand from the (ground truth, prediction) pairs it must score: which pixels count
(crops, caps, the ground truth's convention) and what the prediction becomes there (median scaling, clamping,
resizing)."""
import json
import math
import os
import re

import cv2
import numpy as np
import pytest
import scipy.interpolate
import torch
import yaml

from miniature_datasets import (BASELINE, CITYSCAPES_COLS, CITYSCAPES_ROWS, DISPARITY_DEPTH, FX, NYU_TEST, RGBD_COLS,
                                RGBD_ROWS, make_cityscapes, write_nyu_mat, write_png)
from tests.conftest import REPO, SHARED, run_script
from ptsemseg.build import build_dataset, build_model
from ptsemseg.cli import list_components
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.kitti_utils import read_calibration, velodyne_depth_map
from ptsemseg.metrics.depth import CROPS, crop_mask
from ptsemseg.protocols import PROTOCOLS
from ptsemseg.tasks import TASKS, TaskSet

# A hand-made calibration of a 40×64 rectified camera 2: camera x = −velo y, camera y = −velo z and camera z =
# velo x − 0.25 (the scanner 0.25 m behind the camera), P_rect_02 = [F 0 CX 0; 0 F CY 0; 0 0 1 0]. A Velodyne point
# (x, y, z) lands at u = CX − F·y / (x − 0.25), v = CY − F·z / (x − 0.25).
ROWS, COLS, F, CX, CY, BEHIND = 40, 64, 50.0, 32.0, 20.0, 0.25
DATE, DRIVE = "2011_09_26", "2011_09_26_drive_0002_sync"
DEPTH = ("image", "depth")
MODEL = {"arch": "deeplab", "backbone": "resnet18"}


def write_calibration(date_dir):
    os.makedirs(date_dir, exist_ok=True)
    (date_dir / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\nR_rect_00: 1 0 0 0 1 0 0 0 1\n"
        f"S_rect_02: {COLS} {ROWS}\nP_rect_02: {F} 0 {CX} 0 0 {F} {CY} 0 0 0 1 0\n")
    (date_dir / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 {-BEHIND}\n")


def at_eigen_pixel(row, col, x):
    """The Velodyne point at distance x whose Eigen ground truth pixel is (row, col): u = col + 1, v = row + 1."""
    z_cam = x - BEHIND
    return [x, -(col + 1 - CX) * z_cam / F, -(row + 1 - CY) * z_cam / F, 0.5]


# Frame -> Velodyne points. Garg crop of 40×64: rows 16..38, columns 2..60.
SCANS = {
    0: [at_eigen_pixel(19, 31, 10.25), at_eigen_pixel(19, 41, 5.25),
        at_eigen_pixel(9, 31, 8.25),    # above the crop
        at_eigen_pixel(19, 1, 6.25),    # left of the crop
        at_eigen_pixel(29, 31, 90.25),  # beyond 80 m
        [-5.0, 0.0, 0.0, 0.5]],         # behind the scanner
    1: [at_eigen_pixel(19, 31, 20.25), at_eigen_pixel(30, 41, 40.25)],
    2: [at_eigen_pixel(25, 20, 15.25)],
}
# Frame -> annotated depth (data_depth_annotated) by pixel; frame 1 has no map.
ANNOTATED = {0: {(3, 2): 12.0, (30, 60): 85.0, (20, 20): 6.0}, 2: {(10, 10): 20.0}}


@pytest.fixture
def kitti_raw(tmp_path):
    """A KITTI raw root with one drive of three frames, monodepth2's split list and the annotated maps beside it."""
    raw, annotated = tmp_path / "raw", tmp_path / "data_depth_annotated"
    write_calibration(raw / DATE)
    drive_dir = raw / DATE / DRIVE
    rng = np.random.default_rng(0)
    for frame, points in SCANS.items():
        write_png(drive_dir / "image_02" / "data" / f"{frame:010d}.png",
                  rng.integers(0, 256, (ROWS, COLS, 3), dtype=np.uint8))
        os.makedirs(drive_dir / "velodyne_points" / "data", exist_ok=True)
        np.array(points, dtype=np.float32).tofile(drive_dir / "velodyne_points" / "data" / f"{frame:010d}.bin")
    for frame, values in ANNOTATED.items():
        png = np.zeros((ROWS, COLS), dtype=np.uint16)
        for pixel, depth in values.items():
            png[pixel] = round(depth * 256)
        write_png(annotated / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png", png)
    os.makedirs(raw / "splits" / "eigen")
    (raw / "splits" / "eigen" / "test_files.txt").write_text(
        "".join(f"{DATE}/{DRIVE} {frame:010d} l\n" for frame in SCANS))
    return tmp_path


def write_config(tmp_path, data, testing, name="eval.yaml"):
    cfg = {"model": MODEL, "task": "depth", "data": {"train_split": data.get("test_split", "test"),
                                                     "val_split": data.get("test_split", "test"), **data},
           "testing": testing}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def kitti_config(root, testing, **data):
    return load_config(write_config(root, {"dataset": "kitti", "layout": "raw", "path": str(root / "raw"),
                                           "test_split": "eigen/test",
                                           "annotated_root": str(root / "data_depth_annotated"), **data}, testing))


def constant(value, size=(5, 8)):
    """A low-resolution prediction of `value` metres everywhere (resizing keeps it)."""
    return torch.full((1, 1, *size), float(value))


def score(cfg, predictions):
    """Score one prediction per test frame as the evaluation does: resized to the ground truth's size, the
    protocol's metric. Returns (scores, the task)."""
    dataset = build_dataset(cfg, cfg["data"]["test_split"], DEPTH)
    assert len(dataset) == len(predictions)
    task = TASKS.get("depth")(dataset)
    metric = task.metrics(testing=cfg["testing"])
    for index, prediction in enumerate(predictions):
        target = dataset[index]["depth"][None]
        metric.update(task.predict(task.resize_output(prediction, target.shape[-2:], cfg["testing"])), target)
    return metric.compute(), task


def by_hand(images):
    """The Eigen metrics of per-image lists of (ground truth, prediction) pairs, averaged over images."""
    per_image = []
    for pairs in images:
        gt, pred = np.array(pairs, dtype=np.float64).T
        worst = np.maximum(gt / pred, pred / gt)
        per_image.append({"abs_rel": np.mean(np.abs(gt - pred) / gt), "sq_rel": np.mean((gt - pred) ** 2 / gt),
                          "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
                          "rmse_log": np.sqrt(np.mean(np.log(gt / pred) ** 2)),
                          **{f"delta{k}": np.mean(worst < 1.25 ** k) for k in (1, 2, 3)}})
    return {key: float(np.mean([image[key] for image in per_image])) for key in per_image[0]}


def assert_scores(scores, expected, n_images):
    assert scores["n_images"] == n_images
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


# ---- the two projections of a Velodyne scan ----------------------------------------------------------------

def test_velodyne_projections_on_a_hand_made_calibration(tmp_path):
    write_calibration(tmp_path)
    calibration = read_calibration(str(tmp_path), 2)
    points = np.array([
        [10.25, 0, 0, 0.5],         # A: u 32, v 20, camera z 10
        [20.25, 0, 0, 0.5],         # B: the same pixel, farther: the nearer A stays
        [5.25, -1, 0, 0.5],         # C: u 42, v 20, camera z 5
        [12.75, -0.375, 2.375, 0.5],  # D: u 33.5, v 10.5 exactly: NumPy rounds half to even, to 34 and 10
        [-5, 0, 0, 0.5],            # E: behind the scanner: dropped by both
        [10.25, -20, 0, 0.5],       # F: u 132, outside the image
        [0.2, 0.02, 0, 0.5],        # G: x ≥ 0 behind the image plane (camera z −0.05): u 52, v 20, kept by x ≥ 0
        [10.25, -6.4, 3, 0.5],      # H1: u 64, v 5: Eigen pixel (4, 63); camera_z's column 64 is outside
        [5.25, 3.1, 1.4, 0.5],      # H2: u 1, v 6: Eigen pixel (5, 0), sharing monodepth2's index with (4, 63)
    ], dtype=np.float32)
    scan = tmp_path / "scan.bin"
    points.tofile(scan)

    camera_z = velodyne_depth_map(str(scan), calibration, convention="camera_z")
    assert velodyne_depth_map(str(scan), calibration).tobytes() == camera_z.tobytes()  # the function's default
    expected_z = {(20, 32): 10.0, (20, 42): 5.0, (10, 34): 12.5, (6, 1): 5.0}
    assert {tuple(p): float(camera_z[tuple(p)]) for p in np.argwhere(camera_z)} == pytest.approx(expected_z)

    eigen = velodyne_depth_map(str(scan), calibration, convention="velodyne_x")
    assert eigen.dtype == np.float32 and eigen.shape == (ROWS, COLS)
    # One pixel up and left of round(u), round(v), storing the Velodyne x (0.25 m more than camera z); H1's pixel
    # gets the nearer of H1 and H2 (5.25, not its own 10.25), as monodepth2's duplicate search does.
    expected_x = {(19, 31): 10.25, (19, 41): 5.25, (9, 33): 12.75, (19, 51): 0.2, (4, 63): 5.25, (5, 0): 5.25}
    assert {tuple(p): float(eigen[tuple(p)]) for p in np.argwhere(eigen)} == pytest.approx(expected_x)

    # SfMLearner's evaluation: the same pixels, camera z; G's negative depth is stored as 0.
    shifted = velodyne_depth_map(str(scan), calibration, convention="shifted_camera_z")
    expected_shifted = {(19, 31): 10.0, (19, 41): 5.0, (9, 33): 12.5, (4, 63): 5.0, (5, 0): 5.0}
    assert {tuple(p): float(shifted[tuple(p)]) for p in np.argwhere(shifted)} == pytest.approx(expected_shifted)


# ---- KITTI Eigen (697 frames, Velodyne ground truth) -------------------------------------------------------

EIGEN_PAIRS = {  # frame -> the ground truth kitti_eigen scores (Velodyne x inside the Garg crop, under 80 m)
    0: [10.25, 5.25],
    1: [20.25, 40.25],
    2: [15.25],
}


def test_kitti_eigen_scores_the_velodyne_x_ground_truth_inside_the_garg_crop(kitti_raw):
    cfg = kitti_config(kitti_raw, {"protocol": "kitti_eigen"})
    assert cfg["data"]["gt"] == "velodyne"
    assert {key: cfg["testing"][key] for key in ("crop", "min_depth", "max_depth", "cap_gt", "median_scaling")} == {
        "crop": "garg", "min_depth": 1e-3, "max_depth": 80.0, "cap_gt": True, "median_scaling": False}
    predictions = {0: 8.0, 1: 30.0, 2: 15.25}
    scores, task = score(cfg, [constant(predictions[frame]) for frame in EIGEN_PAIRS])
    expected = by_hand([[(gt, predictions[frame]) for gt in pairs] for frame, pairs in EIGEN_PAIRS.items()])
    assert expected["abs_rel"] == pytest.approx((2.25 / 10.25 + 2.75 / 5.25) / 6 + (9.75 / 20.25 + 10.25 / 40.25) / 6)
    assert_scores(scores, expected, n_images=3)
    assert "ratio_median" not in scores

    table = task.results_table(scores, cfg["testing"]).splitlines()
    assert [title.strip() for title in table[0].split("|")] == ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2",
                                                                "a3"]
    assert [float(value) for value in table[1].split("|")] == pytest.approx(
        [round(expected[key], 3) for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")])


def test_kitti_eigen_with_median_scaling_reports_the_ratios(kitti_raw):
    cfg = kitti_config(kitti_raw, {"protocol": "kitti_eigen", "median_scaling": True})
    predictions = {0: 8.0, 1: 30.0, 2: 10.0}
    # Per frame: median(gt) / median(pred) over the scored pixels; the prediction becomes the gt's median.
    ratios = [(10.25 + 5.25) / 2 / 8.0, (20.25 + 40.25) / 2 / 30.0, 15.25 / 10.0]
    scores, task = score(cfg, [constant(predictions[frame]) for frame in EIGEN_PAIRS])
    scaled = {frame: predictions[frame] * ratio for frame, ratio in zip(EIGEN_PAIRS, ratios)}
    assert scaled[0] == pytest.approx(7.75) and scaled[2] == pytest.approx(15.25)
    assert_scores(scores, by_hand([[(gt, scaled[frame]) for gt in pairs] for frame, pairs in EIGEN_PAIRS.items()]),
                  n_images=3)
    median = sorted(ratios)[1]
    spread = math.sqrt(sum((ratio / median - np.mean(ratios) / median) ** 2 for ratio in ratios) / 3)
    assert scores["ratio_median"] == pytest.approx(median)
    assert scores["ratio_std"] == pytest.approx(spread)
    assert scores["ratio_mean"] == pytest.approx(sum(ratios) / 3)
    assert task.results_table(scores, cfg["testing"]).splitlines()[0] == (
        f" Scaling ratios | med: {median:0.3f} | std: {spread:0.3f} | mean: {sum(ratios) / 3:0.3f}")


@pytest.mark.parametrize("gt, left_point", [
    # Camera z (0.25 m less than the Velodyne x) at round(u), round(v): one pixel down and right, so the point left
    # of the crops in the Eigen ground truth (column 1) is in column 2, inside the Eigen crop (columns 2..60).
    ("velodyne_camera_z", [(6.0, 8.0)]),
    # Camera z at the Eigen ground truth's pixels (SfMLearner, Semseg-MonoDepth): that point stays outside.
    ("velodyne_sfmlearner", []),
])
def test_explicit_keys_override_the_preset_camera_z_ground_truths_and_the_eigen_crop(kitti_raw, gt, left_point):
    cfg = kitti_config(kitti_raw, {"protocol": "kitti_eigen", "crop": "eigen"}, gt=gt)
    assert cfg["testing"]["crop"] == "eigen" and cfg["testing"]["max_depth"] == 80.0
    scores, _ = score(cfg, [constant(8.0), constant(30.0), constant(15.25)])
    assert_scores(scores, by_hand([[(10.0, 8.0), (5.0, 8.0), *left_point], [(20.0, 30.0), (40.0, 30.0)],
                                   [(15.0, 15.25)]]), n_images=3)


def test_pred_disp_resizes_the_disparity_before_inverting_it(kitti_raw):
    """A 1×2 prediction (4 m, 8 m) resized to 64 columns: bilinear with pixel centres, column c samples the source
    at x = (c + 0.5)·2/64 − 0.5, the weight of the right value: 0.140625 at column 20, 0.484375 at column 31,
    0.796875 at column 41."""
    prediction = torch.tensor([[[[4.0, 8.0]]]])
    weights = {20: 0.140625, 31: 0.484375, 41: 0.796875}
    in_depth = {col: 4.0 + weight * 4.0 for col, weight in weights.items()}
    in_disparity = {col: 1 / (0.25 - weight * 0.125) for col, weight in weights.items()}
    for pred_disp, resized in ((False, in_depth), (True, in_disparity)):
        cfg = kitti_config(kitti_raw, {"protocol": "kitti_eigen", "pred_disp": pred_disp})
        scores, _ = score(cfg, [prediction, prediction, prediction])
        assert_scores(scores, by_hand([[(10.25, resized[31]), (5.25, resized[41])],
                                       [(20.25, resized[31]), (40.25, resized[41])], [(15.25, resized[20])]]),
                      n_images=3)


# ---- KITTI Eigen benchmark (652 frames, annotated ground truth) --------------------------------------------

def test_kitti_eigen_benchmark_scores_every_annotated_pixel_of_the_annotated_frames(kitti_raw):
    cfg = kitti_config(kitti_raw, {"protocol": "kitti_eigen_benchmark"})
    assert cfg["data"]["gt"] == "annotated" and cfg["data"]["skip_unannotated"] is True
    with pytest.warns(UserWarning, match="1 of 3 listed frames have no annotated depth map and are left out"):
        # No crop and no cap on the ground truth (85 m counts); predictions clamped to 80 m.
        scores, _ = score(cfg, [constant(10.0), constant(100.0)])
    assert_scores(scores, by_hand([[(6.0, 10.0), (12.0, 10.0), (85.0, 10.0)], [(20.0, 80.0)]]), n_images=2)
    strict = kitti_config(kitti_raw, {"protocol": "kitti_eigen_benchmark"}, skip_unannotated=False)
    with pytest.raises(PtsemsegError, match="1 of 3 KITTI eigen/test depth files are missing .*no annotated depth "
                                            f"map for {DRIVE}/image_02/0000000001"):
        build_dataset(strict, "eigen/test", DEPTH)


# ---- NYUv2 Eigen crop, Cityscapes --------------------------------------------------------------------------

def test_nyu_eigen_crop_bounds_at_480x640_and_scaled():
    rows, cols = torch.nonzero(crop_mask(480, 640, "nyu_eigen", "cpu"), as_tuple=True)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (45, 471, 41, 601)
    assert CROPS["nyu_eigen"].bounds(240, 320) == (22, 235, 20, 300)
    assert CROPS["nyu_eigen"].bounds(RGBD_ROWS, RGBD_COLS) == (1, 11, 1, 15)


def test_nyu_eigen_on_the_labelled_mat(tmp_path):
    frames, _ = write_nyu_mat(tmp_path)
    cfg = load_config(write_config(tmp_path, {"dataset": "nyuv2", "path": str(tmp_path), "test_split": "test"},
                                   {"protocol": "nyu_eigen"}))
    assert cfg["testing"]["max_depth"] == 10.0 and cfg["data"]["depth_source"] == "filled"
    scores, _ = score(cfg, [constant(12.0, (3, 4))] * len(NYU_TEST))
    # The filled depth inside rows 1:11 and columns 1:15 of the 12×16 frames; 12 m clamped to the 10 m cap.
    images = [[(gt, 10.0) for gt in frames["depth"][index - 1][1:11, 1:15].ravel()] for index in NYU_TEST]
    assert_scores(scores, by_hand(images), n_images=len(NYU_TEST))


def test_cityscapes_protocol_on_the_disparity(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes")
    cfg = load_config(write_config(tmp_path, {"dataset": "cityscapes", "path": str(root), "test_split": "val"},
                                   {"protocol": "cityscapes"}))
    scores, _ = score(cfg, [constant(40.0, (2, 4))])
    # Disparity 2561 (BASELINE·FX/10 m) everywhere but the first row's five values; the crop keeps rows 0..11 and
    # columns 1..30; of the first row's, 0 and 1 are invalid and 473.6 m is beyond the cap.
    gt = np.full((CITYSCAPES_ROWS, CITYSCAPES_COLS), BASELINE * FX / 10)
    gt[0, :len(DISPARITY_DEPTH)] = DISPARITY_DEPTH
    kept = gt[0:12, 1:31].ravel()
    kept = kept[(kept > 1e-3) & (kept < 80)]
    assert len(kept) == 12 * 30 - 2
    assert_scores(scores, by_hand([[(value, 40.0) for value in kept]]), n_images=1)


# ---- the real frame: the ground truths differ as docs/protocols.md says -----------------------------------

REAL_KITTI = os.path.join(SHARED, "realdata", "kitti")


@pytest.mark.skipif(not os.path.isdir(REAL_KITTI), reason=f"real dataset samples not found at {REAL_KITTI}")
def test_real_frame_scores_one_prediction_differently_on_the_three_velodyne_ground_truths(tmp_path):
    """The annotated map of 2011_09_26_drive_0001 frame 5, filled in by linear interpolation, as the prediction."""
    raw = os.path.join(REAL_KITTI, "raw")
    (tmp_path / "one.txt").write_text(f"{DATE}/2011_09_26_drive_0001_sync 5 l\n")
    annotated = cv2.imread(os.path.join(REAL_KITTI, "depth", "data_depth_annotated", "train",
                                        "2011_09_26_drive_0001_sync", "proj_depth", "groundtruth", "image_02",
                                        "0000000005.png"), cv2.IMREAD_UNCHANGED) / 256.0
    rows, cols = np.nonzero(annotated)
    grid = tuple(np.mgrid[0:annotated.shape[0], 0:annotated.shape[1]])
    filled = scipy.interpolate.griddata((rows, cols), annotated[rows, cols], grid, method="linear")
    nearest = scipy.interpolate.griddata((rows, cols), annotated[rows, cols], grid, method="nearest")
    prediction = torch.from_numpy(np.where(np.isnan(filled), nearest, filled).astype(np.float32))[None, None]
    maps, abs_rel = {}, {}
    for gt in ("velodyne", "velodyne_sfmlearner", "velodyne_camera_z"):
        cfg = load_config(write_config(tmp_path, {"dataset": "kitti", "layout": "raw", "path": raw,
                                                  "split_file": str(tmp_path / "one.txt"), "test_split": "test",
                                                  "gt": gt}, {"protocol": "kitti_eigen"}))
        maps[gt] = build_dataset(cfg, "test", DEPTH)[0]["depth"][0].numpy()
        abs_rel[gt] = score(cfg, [prediction])[0]["abs_rel"]
    assert np.count_nonzero(maps["velodyne"]) == 19180
    same_pixels = (maps["velodyne"] > 0) == (maps["velodyne_sfmlearner"] > 0)
    assert same_pixels.all()
    offset = (maps["velodyne"] - maps["velodyne_sfmlearner"])[maps["velodyne"] > 0]
    assert 0.27 < offset.mean() < 0.29  # the Velodyne x lies about 0.28 m beyond the camera z
    assert abs_rel == pytest.approx({"velodyne": 0.030, "velodyne_sfmlearner": 0.020, "velodyne_camera_z": 0.019},
                                    abs=5e-4)


# ---- presets in configs, the listing and the docs ----------------------------------------------------------

def test_preset_keys_defaults_and_one_line_errors(kitti_raw, tmp_path):
    data = {"dataset": "kitti", "layout": "raw", "path": str(kitti_raw / "raw"), "test_split": "eigen/test"}
    empty_key = load_config(write_config(tmp_path, data, {"protocol": "kitti_eigen", "crop": None}))
    assert empty_key["testing"]["crop"] == "garg"  # an empty key means the preset's value
    plain = load_config(write_config(tmp_path, data, {}))
    assert plain["testing"]["protocol"] is None and plain["testing"]["crop"] is None
    assert plain["testing"]["cap_gt"] is True and plain["testing"]["pred_disp"] is False

    def error(data, testing):
        with pytest.raises(PtsemsegError) as info:
            load_config(write_config(tmp_path, data, testing, name="bad.yaml"))
        return str(info.value)

    assert re.fullmatch(r"config .*bad\.yaml: testing\.protocol: unknown protocol 'kitti_eigne' "
                        r"\(closest: kitti_eigen.*\)", error(data, {"protocol": "kitti_eigne"}))
    assert error({**data, "layout": "annotated"}, {"protocol": "kitti_eigen"}).endswith(
        "testing.protocol: kitti_eigen needs data.layout: raw, got 'annotated'")
    assert error(data, {"protocol": "nyu_eigen"}).endswith(
        "testing.protocol: nyu_eigen scores dataset nyuv2, got data.dataset 'kitti'")
    assert "must be a protocol name" in error(data, {"protocol": ["kitti_eigen"]})
    assert "testing.crop: must be none or one of garg, eigen, nyu_eigen, cityscapes, got 'gar'" in error(
        data, {"crop": "gar"})
    assert "testing.cap_gt: must be true or false" in error(data, {"cap_gt": "yes"})


# Registered protocol -> its test on hand-computed metrics; a protocol registered without one fails the suite.
HAND_COMPUTED = {
    "kitti_eigen": test_kitti_eigen_scores_the_velodyne_x_ground_truth_inside_the_garg_crop,
    "kitti_eigen_benchmark": test_kitti_eigen_benchmark_scores_every_annotated_pixel_of_the_annotated_frames,
    "nyu_eigen": test_nyu_eigen_on_the_labelled_mat,
    "cityscapes": test_cityscapes_protocol_on_the_disparity,
}


def test_every_registered_protocol_has_a_hand_computed_case():
    missing = [name for name in PROTOCOLS.names() if name not in HAND_COMPUTED]
    assert not missing, f"protocols without a test on hand-computed metrics: {missing}"


def yaml_value(value):
    return str(value).lower() if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else value


def test_every_protocol_is_listed_and_defined_in_the_readme_and_docs(capsys):
    list_components()
    listed = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluation protocols"))
    assert listed.endswith(": " + ", ".join(PROTOCOLS.names()))
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as handle:
        readme = handle.read().split("\n## Evaluation protocols\n")[1].split("\n## ")[0].splitlines()
    with open(os.path.join(REPO, "docs", "protocols.md"), encoding="utf-8") as handle:
        docs = handle.read()
    for name in PROTOCOLS.names():
        protocol = PROTOCOLS.get(name)
        row = next((line for line in readme if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"README has no row for protocol {name}"
        keys = {**protocol.requires, **protocol.data, **protocol.testing}
        for key, value in [("dataset", protocol.dataset), *keys.items()]:
            assert f"`{key}: {yaml_value(value)}`" in row, (name, key)
        assert f"\n## `{name}`" in docs, f"docs/protocols.md has no section for {name}"


# ---- the evaluation command ---------------------------------------------------------------------------------

def test_test_depth_prints_the_seed_table_under_the_protocol(kitti_raw, tmp_path):
    path = write_config(tmp_path, {"dataset": "kitti", "layout": "raw", "path": str(kitti_raw / "raw"),
                                   "test_split": "eigen/test"}, {"protocol": "kitti_eigen", "median_scaling": True})
    cfg = load_config(path)
    torch.manual_seed(0)
    tasks = TaskSet("depth", None)
    model = build_model(cfg, tasks.heads(), torch.device("cpu"))
    checkpoint = tmp_path / "model.pt"
    torch.save({"model_state": model.state_dict(), "meta": {"arch": "deeplab", "tasks": tasks.meta()}}, checkpoint)
    out = tmp_path / "scores.json"
    result = run_script("test_depth.py", "--config", path, "--model_path", str(checkpoint), "--out-json", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert scores["depth/n_images"] == 3
    lines = result.stdout.splitlines()
    start = lines.index("depth (kitti_eigen):")
    assert lines[start + 1] == (f" Scaling ratios | med: {scores['depth/ratio_median']:0.3f} | "
                                f"std: {scores['depth/ratio_std']:0.3f} | mean: {scores['depth/ratio_mean']:0.3f}")
    assert lines[start + 2].split() == ["abs_rel", "|", "sq_rel", "|", "rmse", "|", "rmse_log", "|", "a1", "|", "a2",
                                        "|", "a3"]
    assert [float(value) for value in lines[start + 3].split("|")] == pytest.approx(
        [round(scores[f"depth/{key}"], 3) for key in ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2",
                                                      "delta3")], abs=1e-9)
