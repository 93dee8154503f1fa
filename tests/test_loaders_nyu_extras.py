"""NYUv2 extras: the raw Kinect frames of the raw dataset (`nyuv2_raw`) on miniature fakenect dumps written byte for
byte as libfreenect's record.c writes them, checked against the NYU toolbox's MATLAB arithmetic written out here;
13-class label files in the folder layout (`label_set`), also on the real 13-class PNG of ../shared/realdata."""
import os
import shutil

import cv2
import numpy as np
import pytest
import yaml

from conftest import SHARED, tiny_config
from miniature_datasets import (KINECT_COLS, KINECT_ROWS, NYU_RAW_TRAIN, NYU_TRAIN, fakenect_name,
                                kinect_planes, write_kinect_depth, write_kinect_rgb, write_nyu_folder13, write_nyu_raw)
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.io import CorruptFileError
from ptsemseg.loaders.nyuv2 import NYU13_CLASS_NAMES, NYU40_TO_13, NYU_K, NYU_SCENE_CLASSES
from ptsemseg.loaders.nyuv2_raw import (disparity_to_metres, nearest_earlier_or_later, read_kinect_disparity,
                                        register_depth, scene_type, synched_frames, undistort_disparity,
                                        undistort_rgb, undistortion_maps)

REAL_13_CLASS_PNG = os.path.join(SHARED, "realdata", "nyu_depth_v2", "test_labels_13", "new_nyu_class13_0001.png")

# camera_params.m of the NYU toolbox, as written there.
FX_RGB, FY_RGB, CX_RGB, CY_RGB = 5.1885790117450188e+02, 5.1946961112127485e+02, 3.2558244941119034e+02, \
    2.5373616633400465e+02
FX_D, FY_D, CX_D, CY_D = 5.8262448167737955e+02, 5.8269103270988637e+02, 3.1304475870804731e+02, 2.3844389626620386e+02
KC_D = (-9.9897236553084481e-02, 3.9065324602765344e-01, 1.9290592870229277e-03, -1.9422022475975055e-03,
        -5.1031725053400578e-01)
R_VALUES = (9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03, -5.0359919480810989e-03,
            9.9998051861143999e-01, -3.6879781309514218e-03, -4.3196624923060242e-03, 3.6662365748484798e-03,
            9.9998394948385538e-01)
T_X, T_Z, T_Y = 2.5031875059141302e-02, -2.9342312935846411e-04, 6.6238747008330102e-04


def toolbox_rgb_pixel(row, col, z):
    """0-based colour pixel of the 0-based depth pixel (row, col) at z metres, by the toolbox's own steps:
    depth_plane2depth_world.m (1-based grid), depth_world2rgb_world.m (R = inv(reshape(-v, [3 3])'), T = [t_x;
    t_z; t_y]), rgb_world2rgb_plane.m and MATLAB's round."""
    R = np.linalg.inv(np.reshape(-np.array(R_VALUES), (3, 3), order="F").T)
    point = np.array([(col + 1 - CX_D) * z / FX_D, (row + 1 - CY_D) * z / FY_D, z])
    x, y, w = R @ point + np.array([T_X, T_Z, T_Y])
    x_plane, y_plane = x * FX_RGB / w + CX_RGB, y * FY_RGB / w + CY_RGB
    matlab_round = lambda value: int(np.sign(value) * np.floor(abs(value) + 0.5))  # noqa: E731
    return matlab_round(y_plane) - 1, matlab_round(x_plane) - 1


def toolbox_metres(disparity):
    """depth_rel2depth_abs.m on one value."""
    depth = 351.3 / (1092.5 - disparity)
    return 0.0 if depth < 0 else min(depth, 10.0)


# ---------------------------------------------------------------------------------------------- file format
def test_kinect_depth_is_little_endian_and_swapped_back(tmp_path):
    values = np.array([[800, 1024, 2047, 600]], dtype=np.uint16).repeat(KINECT_ROWS, 0).repeat(KINECT_COLS // 4, 1)
    path = tmp_path / fakenect_name("d", 1294439283.540997, 2694175289, "pgm")
    write_kinect_depth(path, values)
    assert path.read_bytes().startswith(b"P5 640 480 65535\n")
    plain = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # a PGM reader that follows the standard (big-endian)
    assert plain[0, [0, 160, 320, 480]].tolist() == [8195, 4, 65287, 22530]
    assert np.array_equal(read_kinect_disparity(str(path)), values)


def test_a_depth_frame_that_is_not_raw_kinect_fails_naming_it(tmp_path):
    big_endian = tmp_path / "d-1.000000-1.pgm"
    assert cv2.imwrite(str(big_endian), np.full((KINECT_ROWS, KINECT_COLS), 900, np.uint16))  # standard byte order
    with pytest.raises(CorruptFileError, match=f"{big_endian} holds values up to 33795, beyond the Kinect's 11-bit"):
        read_kinect_disparity(str(big_endian))
    small = tmp_path / "d-2.000000-2.pgm"
    write_kinect_depth(small, np.full((240, 320), 900, np.uint16))
    with pytest.raises(CorruptFileError, match=f"expected a 640×480 16-bit PGM, got uint16 320×240: {small}"):
        read_kinect_disparity(str(small))
    eight_bit = tmp_path / "d-3.000000-3.pgm"
    assert cv2.imwrite(str(eight_bit), np.full((KINECT_ROWS, KINECT_COLS), 90, np.uint8))
    with pytest.raises(CorruptFileError, match="got uint8") as err:
        read_kinect_disparity(str(eight_bit))
    assert "\n" not in str(err.value)


def test_disparity_to_metres_is_the_toolbox_formula():
    disparity = np.array([600.0, 800.0, 1000.0, 1050.0, 1058.0, 1092.0, 1093.0, 2047.0])
    depth = disparity_to_metres(disparity)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[:4], [351.3 / 492.5, 351.3 / 292.5, 351.3 / 92.5, 351.3 / 42.5], rtol=1e-6)
    assert depth[1] == pytest.approx(1.2010, abs=1e-4) and depth[2] == pytest.approx(3.7978, abs=1e-4)
    assert depth[4:].tolist() == [10.0, 10.0, 0.0, 0.0]  # 10.18 m and 702 m capped, negative → none


# ------------------------------------------------------------------------------------------------ pairing
def toolbox_pointer_walk(depth_times, rgb_times):
    """get_synched_frames.m's loop, line by line: the colour pointer only moves forward while it gets no worse."""
    matched, jj = [], 0
    for t_depth in depth_times:
        difference = abs(t_depth - rgb_times[jj])
        while jj < len(rgb_times) - 1:
            candidate = abs(t_depth - rgb_times[jj + 1])
            if candidate > difference:
                break
            difference, jj = candidate, jj + 1
        matched.append(jj)
    return matched


def test_pairing_is_the_toolbox_pointer_walk():
    rng = np.random.default_rng(0)
    for _ in range(50):
        depth_times = np.sort(rng.uniform(0, 10, rng.integers(1, 40)))
        rgb_times = np.sort(rng.choice(np.round(rng.uniform(0, 10, 60), 2), rng.integers(1, 40), replace=False))
        assert nearest_earlier_or_later(rgb_times, depth_times).tolist() == toolbox_pointer_walk(depth_times,
                                                                                                 rgb_times)
    ties = np.array([1.0, 2.0, 2.0, 3.0])
    assert nearest_earlier_or_later(ties, np.array([1.5, 2.0, 2.5])).tolist() == [2, 2, 3] == toolbox_pointer_walk(
        [1.5, 2.0, 2.5], ties)


def test_synched_frames_keep_every_depth_frame(tmp_path):
    write_nyu_raw(tmp_path, {"bedroom_0001": NYU_RAW_TRAIN["bedroom_0001"]})
    depth_times, rgb_times = NYU_RAW_TRAIN["bedroom_0001"]
    pairs = synched_frames(str(tmp_path / "bedroom_0001"))
    expected = [(fakenect_name("d", t, 1000 + i, "pgm"), fakenect_name("r", rgb_times[j], 2000 + j, "ppm"))
                for i, (t, j) in enumerate(zip(depth_times, toolbox_pointer_walk(depth_times, rgb_times)))]
    assert pairs == expected
    assert toolbox_pointer_walk(depth_times, rgb_times) == [0, 1, 1]  # 10 ms; 17 ms rather than 23 ms; 16 ms
    assert scene_type("living_room_0012a") == "living_room" and scene_type("home_office_0001") == "home_office"


# ------------------------------------------------------------------------------------------- registration
def test_undistortion_maps_are_bouguets_model():
    """undistort.m samples the raw frame at K·distort(K⁻¹·p) for every pixel p (0-based, apply_distortion.m)."""
    map_x, map_y, inside = undistortion_maps("depth")
    rows, cols = np.mgrid[0:KINECT_ROWS:37, 0:KINECT_COLS:41]
    x, y = (cols - CX_D) / FX_D, (rows - CY_D) / FY_D
    k1, k2, p1, p2, k3 = KC_D
    r2 = x ** 2 + y ** 2
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x ** 2)
    yd = y * radial + p1 * (r2 + 2 * y ** 2) + 2 * p2 * x * y
    np.testing.assert_allclose(map_x[rows, cols], FX_D * xd + CX_D, atol=2e-3)
    np.testing.assert_allclose(map_y[rows, cols], FY_D * yd + CY_D, atol=2e-3)
    assert inside.all()  # barrel distortion: every undistorted depth pixel samples inside the frame
    assert not undistortion_maps("rgb")[2].all()  # pincushion: the colour frame's border samples outside


def test_undistortion_marks_holes_and_keeps_planes():
    disparity = kinect_planes(1000, 1000, hole=(200, 210, 300, 310))
    undistorted = undistort_disparity(disparity)
    centre = undistorted[100:400, 100:500]
    hole = (undistorted == 2047)[100:400, 100:500]
    np.testing.assert_allclose(centre[~hole], 1000, rtol=1e-5)
    assert 100 <= hole.sum() <= 12 * 12 and hole[105, 205]  # the 10×10 hole, grown by the bilinear footprint


def test_isolated_points_land_on_the_toolbox_pixels():
    """Small islands of measurements in a frame of holes: every point that survives the undistortion lands exactly
    on the pixel the toolbox's steps give, with its depth, and nothing else is filled."""
    disparity = np.full((KINECT_ROWS, KINECT_COLS), 2047, np.uint16)
    for top, left, value in ((60, 80, 700), (230, 300, 820), (238, 313, 905), (300, 520, 1000), (420, 600, 1070)):
        disparity[top:top + 4, left:left + 4] = value
    undistorted = undistort_disparity(disparity)
    expected = np.zeros((KINECT_ROWS, KINECT_COLS), np.float32)
    survivors = np.argwhere(undistorted != 2047)
    assert len(survivors) >= 5
    for row, col in survivors:
        z = toolbox_metres(undistorted[row, col])
        rgb_row, rgb_col = toolbox_rgb_pixel(row, col, z)
        if 0 <= rgb_row <= KINECT_ROWS - 2 and 0 <= rgb_col <= KINECT_COLS - 2:
            expected[rgb_row, rgb_col] = min(expected[rgb_row, rgb_col] or np.inf, z)
    np.testing.assert_allclose(register_depth(disparity), expected, rtol=1e-6)


def test_registration_reproduces_the_toolbox_projection():
    """A far plane (disparity 1080: 28 m, capped at 10 m) left of a near one (800: 1.2 m) with a hole: every depth
    pixel lands where the toolbox's steps put it, the near plane hides the far one where both land."""
    near, far = toolbox_metres(800), toolbox_metres(1080)
    depth = register_depth(kinect_planes(1080, 800, hole=(100, 140, 450, 490)))
    assert depth.dtype == np.float32 and depth.shape == (KINECT_ROWS, KINECT_COLS)
    values, counts = np.unique(depth[depth > 0], return_counts=True)
    np.testing.assert_allclose(sorted(values[np.argsort(counts)[-2:]]), [near, far], rtol=1e-5)
    for row in (150, 238, 330):
        for col, z in ((120, far), (250, far), (400, near), (560, near)):
            rgb_row, rgb_col = toolbox_rgb_pixel(row, col, z)
            assert depth[rgb_row, rgb_col] == pytest.approx(z, rel=1e-5), (row, col)
        # Columns 317 (far) and 322 (near) sit on either side of the edge; the near plane starts left of where the
        # far one ends, and wins there.
        far_end, near_start = toolbox_rgb_pixel(row, 317, far)[1], toolbox_rgb_pixel(row, 322, near)[1]
        assert near_start < far_end - 3
        np.testing.assert_allclose(depth[toolbox_rgb_pixel(row, 322, near)[0], near_start:far_end + 1], near,
                                   rtol=1e-5)
    hole_row, hole_col = toolbox_rgb_pixel(120, 470, near)
    assert (depth[hole_row - 15:hole_row + 16, hole_col - 15:hole_col + 16] == 0).all()
    assert depth[hole_row, hole_col - 30] == pytest.approx(near) and depth[hole_row - 30, hole_col] == pytest.approx(
        near)
    assert (depth[-1] == 0).all() and (depth[:, -1] == 0).all()  # strict bounds of project_depth_map.m
    assert 0.7 < (depth > 0).mean() < 0.85  # the depth camera sees less than the wider colour camera


def test_colour_frame_is_undistorted():
    """A horizontal ramp stays put at the principal point and bends towards the corners, white outside."""
    ramp = np.repeat(np.linspace(0, 255, KINECT_COLS)[None, :, None], KINECT_ROWS, 0).repeat(3, 2).astype(np.uint8)
    out = undistort_rgb(ramp)
    assert out.dtype == np.uint8 and out.shape == ramp.shape
    cy, cx = round(CY_RGB), round(CX_RGB)
    assert abs(int(out[cy, cx, 0]) - int(ramp[cy, cx, 0])) <= 1
    map_x, _, inside = undistortion_maps("rgb")
    assert inside[100, 550] and abs(map_x[100, 550] - 550) > 5
    assert abs(int(out[100, 550, 0]) - map_x[100, 550] * 255 / (KINECT_COLS - 1)) <= 1.5
    assert (out[~inside] == 255).all() and (~inside).any()


# ------------------------------------------------------------------------------------------------ dataset
@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nyu_raw")
    return root, write_nyu_raw(root)


def test_raw_dataset_pairs_undistorts_and_registers(raw_root):
    root, written = raw_root
    dataset = get_loader("nyuv2_raw")(str(root), "train", keys=("image", "depth", "raw_depth", "scene"))
    assert len(dataset) == sum(len(times[0]) for times in NYU_RAW_TRAIN.values()) == 5
    sample = dataset.load(1)
    depth_name, rgb_name = synched_frames(str(root / "bedroom_0001"))[1]
    assert sample["meta"]["name"] == f"bedroom_0001/{depth_name[:-4]}" and rgb_name.startswith("r-1294439283.05")
    assert np.array_equal(sample["image"], undistort_rgb(written["bedroom_0001"][rgb_name]))
    assert np.array_equal(sample["depth"], register_depth(written["bedroom_0001"][depth_name]))
    assert np.array_equal(sample["raw_depth"], sample["depth"]) and sample["depth"] is not sample["raw_depth"]
    assert sample["scene"] == NYU_SCENE_CLASSES.index("bedroom") and np.array_equal(sample["meta"]["K"], NYU_K)
    assert dataset.load(4)["scene"] == NYU_SCENE_CLASSES.index("living_room")
    test = get_loader("nyuv2_raw")(str(root), "val", keys=("image", "scene"))
    assert len(test) == 2 and test.load(0)["scene"] == NYU_SCENE_CLASSES.index("office")
    assert set(test.load(0)) == {"image", "scene", "meta"}
    stepped = get_loader("nyuv2_raw")(str(root), "train", keys=("image",), frame_step=2)
    assert stepped.frames == [dataset.frames[i] for i in (0, 2, 3)]  # every other frame of each scene
    item = dataset[0]
    assert item["depth"].shape == (1, KINECT_ROWS, KINECT_COLS) and item["image"].shape == (3, KINECT_ROWS,
                                                                                            KINECT_COLS)


def test_raw_dataset_errors_name_what_is_wrong(raw_root, tmp_path):
    root, _ = raw_root
    loader = get_loader("nyuv2_raw")
    with pytest.raises(PtsemsegError, match=f"NYUv2 raw train scene list not found: expected {tmp_path}/"
                                            "train_scenes.txt .*section 'NYUv2 raw'"):
        loader(str(tmp_path), "train")
    with pytest.raises(PtsemsegError, match="asked for 'label'; dataset nyuv2_raw gives image, depth, raw_depth, "):
        loader(str(root), "train", keys=("image", "label"))
    for options, message in (({"frame_step": 0}, "frame_step must be a positive integer"),
                             ({"frame_step": 1.5}, "frame_step must be a positive integer")):
        with pytest.raises(PtsemsegError, match=message):
            loader(str(root), "train", **options)
    with pytest.raises(PtsemsegError, match="split must be one of train, test, val"):
        loader(str(root), "training")
    (tmp_path / "train_scenes.txt").write_text("kitchen_0001\n")
    with pytest.raises(PtsemsegError, match=f"scene folder listed in .*train_scenes.txt not found: expected "
                                            f"{tmp_path}/kitchen_0001"):
        loader(str(tmp_path), "train")
    (tmp_path / "kitchen_0001").mkdir()
    (tmp_path / "kitchen_0001" / "INDEX.txt").write_text("")
    with pytest.raises(PtsemsegError, match="kitchen_0001 holds 0 d-\\*.pgm depth and 0 r-\\*.ppm colour frames"):
        loader(str(tmp_path), "train")
    write_kinect_rgb(tmp_path / "kitchen_0001" / "r-1.000000-1.ppm", np.zeros((KINECT_ROWS, KINECT_COLS, 3)))
    write_kinect_depth(tmp_path / "kitchen_0001" / "d-1.1-x.pgm", np.zeros((KINECT_ROWS, KINECT_COLS)))
    with pytest.raises(PtsemsegError, match="kitchen_0001/d-1.1-x.pgm is not a fakenect frame name"):
        loader(str(tmp_path), "train")
    os.remove(tmp_path / "kitchen_0001" / "d-1.1-x.pgm")
    bad = tmp_path / "kitchen_0001" / "d-1.100000-2.pgm"
    assert cv2.imwrite(str(bad), np.full((KINECT_ROWS, KINECT_COLS), 900, np.uint16))
    dataset = loader(str(tmp_path), "train")
    with pytest.raises(CorruptFileError, match=f"{bad} holds values up to 33795"):
        dataset.load(0)


# --------------------------------------------------------------------------------------- 13-class label files
@pytest.fixture
def folder13(tmp_path):
    return tmp_path, write_nyu_folder13(tmp_path)


def test_13_class_label_files_are_read_as_they_are(folder13):
    root, labels = folder13
    dataset = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13)
    assert dataset.layout == "folder" and dataset.n_classes == 13 and dataset.class_names == NYU13_CLASS_NAMES
    for index, frame in enumerate(NYU_TRAIN):
        label = dataset.load(index)["label"]
        assert np.array_equal(label, np.where(labels[frame] == 0, 255, labels[frame].astype(int) - 1))
    explicit = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13, n_classes=13)
    assert np.array_equal(explicit.load(0)["label"], dataset.load(0)["label"])
    assert get_loader("nyuv2")(str(root), "train", keys=("image", "depth"), label_set=13).n_classes == 13
    # What the 40→13 table made of these files before label_set existed: a different, wrong labelling.
    as_40 = np.concatenate([[255], np.array(NYU40_TO_13) - 1, np.full(215, 255)])[labels[NYU_TRAIN[0]]]
    assert not np.array_equal(as_40, dataset.load(0)["label"])


def test_label_set_auto_decides_or_asks(folder13, tmp_path_factory):
    root, _ = folder13
    with pytest.raises(PtsemsegError, match="the first 3 hold ids 0..13 only, which fits the 13-class set .* set "
                                            "data.label_set: 13 or 40") as err:
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"))
    assert "\n" not in str(err.value)
    assert get_loader("nyuv2")(str(root), "train", keys=("image", "depth")).n_classes == 40  # no labels read
    forty = tmp_path_factory.mktemp("nyu40")
    shutil.copytree(root, forty, dirs_exist_ok=True)
    label40 = np.full((12, 16), 40, np.uint8)
    label40[0, :3] = [0, 1, 22]
    assert cv2.imwrite(str(forty / "Label" / f"{NYU_TRAIN[1]:04d}.png"), label40)
    dataset = get_loader("nyuv2")(str(forty), "train", keys=("image", "label"))
    assert dataset.label_set == 40 and dataset.n_classes == 40
    assert dataset.load(1)["label"][0, :3].tolist() == [255, 0, 21]
    assert dataset.load(0)["label"][0, :3].tolist() == [255, 0, 12]  # ids 1..13 are 40-class ids too


def test_label_ids_above_the_set_fail_naming_the_file(folder13):
    root, _ = folder13
    path = root / "Label" / f"{NYU_TRAIN[2]:04d}.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[5, 5] = 40
    assert cv2.imwrite(str(path), label)
    dataset = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13)
    with pytest.raises(CorruptFileError, match=f"label id 40 in {path} is above the 13-class set \\(0 = void, "
                                               "1..13\\); 40-class files need data.label_set: 40"):
        dataset.load(2)
    label[5, 5] = 41
    assert cv2.imwrite(str(path), label)
    with pytest.raises(CorruptFileError, match=f"label id 41 in {path} is above the 40-class set"):
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=40).load(2)
    with pytest.raises(PtsemsegError, match="13-class set cannot give n_classes: 40"):
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13, n_classes=40)
    with pytest.raises(PtsemsegError, match="label_set must be auto, 40 or 13, got 37"):
        get_loader("nyuv2")(str(root), "train", label_set=37)


def test_label_set_13_is_refused_for_the_mat_file(tmp_path):
    from miniature_datasets import write_nyu_mat
    write_nyu_mat(tmp_path)
    with pytest.raises(PtsemsegError, match="label_set: 13 applies to label files of the folder layout; layout mat "
                                            "holds 894-class labels"):
        get_loader("nyuv2")(str(tmp_path), "train", label_set=13)


def test_real_13_class_png_reads_as_13_classes(tmp_path):
    if not os.path.isfile(REAL_13_CLASS_PNG):
        pytest.skip(f"real dataset sample absent: {REAL_13_CLASS_PNG} (../shared/realdata)")
    real = cv2.imread(REAL_13_CLASS_PNG, cv2.IMREAD_UNCHANGED)
    for folder in ("Label", "RGB"):
        (tmp_path / folder).mkdir()
    shutil.copy(REAL_13_CLASS_PNG, tmp_path / "Label" / "0001.png")
    assert cv2.imwrite(str(tmp_path / "RGB" / "0001.png"), np.zeros((480, 640, 3), np.uint8))
    (tmp_path / "test.txt").write_text("RGB/0001.png\tLabel/0001.png\n")
    with pytest.raises(PtsemsegError, match="hold ids 0..12 only"):
        get_loader("nyuv2")(str(tmp_path), "test", keys=("image", "label"))
    label = get_loader("nyuv2")(str(tmp_path), "test", keys=("image", "label"), label_set=13).load(0)["label"]
    assert np.array_equal(label == 255, real == 0) and np.array_equal(label[real > 0], real[real > 0] - 1)
    names = [NYU13_CLASS_NAMES[c] for c in np.unique(label) if c != 255]
    assert {"wall", "floor"} <= set(names)


def test_raw_frames_train_depth_and_configs_check_their_keys(raw_root, tmp_path):
    """A depth run on the raw dumps through the trainer; a segmentation config fails before anything is read."""
    from ptsemseg.trainer import Trainer

    root, _ = raw_root
    cfg = tiny_config("depth", training={"train_iters": 2, "val_interval": 2, "out_dir": str(tmp_path / "run")})
    cfg["data"] = {"dataset": "nyuv2_raw", "path": str(root), "train_split": "train", "val_split": "test",
                   "img_rows": 24, "img_cols": 32, "frame_step": 1}
    path = tmp_path / "depth.yaml"
    path.write_text(yaml.safe_dump(cfg))
    scores = Trainer(load_config(str(path)), str(path)).run()
    assert np.isfinite(scores["depth/abs_rel"])
    cfg["task"] = "seg"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(PtsemsegError, match="data.dataset: task seg needs 'label'; dataset nyuv2_raw gives image, "
                                            "depth, raw_depth, scene for split train"):
        load_config(str(path))
