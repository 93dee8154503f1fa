"""Depth helpers: PNG codecs, back-projection, normals, gravity, HHA on known geometry, hole filling, tools."""
import os

import cv2
import numpy as np
import pytest

from conftest import SHARED, load_tool, run_script
from ptsemseg import depth_utils as du
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.io import read_png16, read_rgb
from ptsemseg.loaders.nyuv2 import NYU_K

SUN_DEPTH_PNG = os.path.join(SHARED, "realdata", "sunrgbd", "other_formats", "SUN_depth.png")


def room(K, pitch_deg=0.0, rows=120, cols=160, camera_height=1.2, wall_distance=4.0, roll_deg=0.0):
    """Depth of a floor `camera_height` below the camera and a wall `wall_distance` ahead, seen by a camera
    pitched by `pitch_deg` (negative = looking down) and rolled by `roll_deg` about its optical axis.
    Returns depth, world points (y down), the floor mask and the camera-to-world rotation."""
    tilt, roll = np.deg2rad(pitch_deg), np.deg2rad(roll_deg)
    pitch = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    rolled = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
    camera_to_world = pitch @ rolled
    u = (np.arange(cols) - K[0, 2]) / K[0, 0]
    v = (np.arange(rows) - K[1, 2]) / K[1, 1]
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((rows, cols))), -1) @ camera_to_world.T
    with np.errstate(divide="ignore"):
        to_floor = np.where(rays[..., 1] > 0, camera_height / rays[..., 1], np.inf)
        to_wall = np.where(rays[..., 2] > 0, wall_distance / rays[..., 2], np.inf)
    distance = np.minimum(to_floor, to_wall)  # the camera ray has z = 1, so this is also the depth
    return distance.astype(np.float32), rays * distance[..., None], to_floor < to_wall, camera_to_world


# A 160×120 camera with the NYU field of view.
SMALL_K = du.scale_intrinsics(NYU_K, (480, 640), (120, 160))


def expected_hha(depth, world, floor, camera_height=1.2):
    disparity = np.clip(np.rint(31000.0 / (100.0 * np.maximum(depth, 1.0))), 0, 255)
    height = np.clip(np.rint(100.0 * (camera_height - world[..., 1])), 0, 255)
    angle = np.where(floor, 0 + 38, 90 + 38)  # floor normals along gravity, walls across it
    return np.stack([disparity, height, angle], -1)


@pytest.mark.parametrize("pitch", [0.0, -20.0])
def test_hha_of_a_floor_and_wall_matches_the_geometry(pitch):
    depth, world, floor, camera_to_world = room(SMALL_K, pitch)
    true_down = camera_to_world.T @ np.array([0.0, 1.0, 0.0])
    expected = expected_hha(depth, world, floor)

    # With the true gravity the encoding is exact, except the angle in windows straddling the crease.
    hha = du.hha_encode(depth, SMALL_K, gravity=true_down)
    assert hha.dtype == np.uint8 and hha.shape == (120, 160, 3)
    assert np.array_equal(hha[..., :2], expected[..., :2])
    crease = cv2.dilate(floor.astype(np.uint8), np.ones((9, 9), np.uint8)) != cv2.erode(
        floor.astype(np.uint8), np.ones((9, 9), np.uint8))
    assert np.abs(hha[~crease, 2].astype(int) - expected[~crease, 2]).max() <= 1

    # Estimated gravity: within a degree, so heights (up to 2.55 m) stay within 2 cm.
    gravity = du.estimate_gravity(du.surface_normals(depth, SMALL_K, radius=10))
    assert np.degrees(np.arccos(np.clip(gravity @ true_down, -1, 1))) < 1.0
    estimated = du.hha_encode(depth, SMALL_K)
    assert np.array_equal(estimated[..., 0], expected[..., 0])
    assert np.abs(estimated[..., 1].astype(int) - expected[..., 1]).max() <= 2
    assert np.abs(estimated[~crease, 2].astype(int) - expected[~crease, 2]).max() <= 1


def test_hha_assumes_a_camera_height_when_no_floor_is_in_view():
    depth, world, floor, _ = room(SMALL_K, wall_distance=1.5)
    assert not floor.any() and world[..., 1].max() < 0.9
    hha = du.hha_encode(depth, SMALL_K, gravity=(0, 1, 0))
    expected_height = np.clip(np.rint(100.0 * (1.3 - world[..., 1])), 0, 255)
    assert np.abs(hha[..., 1].astype(int) - expected_height).max() <= 1
    assert np.all(hha[..., 2] == 128)


def test_hha_marks_pixels_without_depth_and_without_normals():
    depth, _, _, _ = room(SMALL_K)
    depth[:10] = 0
    valid = depth > 0
    valid[50:70, 50:70] = False  # measured nowhere there: the filled depth gives points but no normals
    hha = du.hha_encode(depth, SMALL_K, valid=valid)
    assert np.all(hha[:10] == 0)
    assert np.all(hha[58:62, 58:62, 2] == 180 + 38)
    assert np.all(du.hha_encode(np.zeros((8, 8), np.float32), SMALL_K) == 0)


def test_normals_of_a_tilted_plane():
    normal = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    u = (np.arange(160) - SMALL_K[0, 2]) / SMALL_K[0, 0]
    v = (np.arange(120) - SMALL_K[1, 2]) / SMALL_K[1, 1]
    rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((120, 160))), -1)
    depth = (2.0 / (rays @ normal)).astype(np.float32)  # plane n·p = 2
    normals = du.surface_normals(depth, SMALL_K, radius=3)
    assert np.abs(normals - normal).max() < 1e-3
    points = du.backproject(depth, SMALL_K)
    assert np.abs(points.reshape(-1, 3) @ normal - 2.0).max() < 1e-4
    pixels = du.project(points.reshape(-1, 3), SMALL_K)
    grid = np.stack(np.meshgrid(np.arange(160), np.arange(120)), -1).reshape(-1, 2)
    assert np.abs(pixels - grid).max() < 1e-3


def test_sunrgbd_depth_codec_roundtrip():
    depth = np.array([[0.0, 1.0, 2.345], [8.0, 9.87, 65.535]], np.float32)
    encoded = du.encode_sunrgbd_depth(depth)
    assert encoded.dtype == np.uint16
    assert np.array_equal(encoded[0, 1], np.uint16((1000 << 3) & 0xFFFF))
    np.testing.assert_allclose(du.decode_sunrgbd_depth(encoded), depth, atol=5e-4)
    millimetres = du.depth_to_mm(np.array([[np.nan, -1.0, 0.0005, 70.0]]))
    assert millimetres.tolist() == [[0, 0, 0, 65535]]


def test_real_sunrgbd_depth_png_decodes_to_metres():
    if not os.path.isfile(SUN_DEPTH_PNG):
        pytest.skip(f"real SUN RGB-D depth sample absent: {SUN_DEPTH_PNG}")
    depth = du.decode_sunrgbd_depth(read_png16(SUN_DEPTH_PNG))
    valid = depth[depth > 0]
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    assert abs(valid.min() - 1.06) < 0.01 and abs(valid.max() - 9.87) < 0.01
    assert 2.6 < np.median(valid) < 2.8


@pytest.mark.parametrize("algorithm", ["telea", "ns"])
def test_inpainting_fills_a_ramp(algorithm):
    ramp = np.tile(np.linspace(1.0, 3.0, 80, dtype=np.float32), (60, 1))
    holes = ramp.copy()
    holes[25:32, 35:42] = 0
    filled = du.fill_depth(holes, "inpaint", algorithm=algorithm)
    assert filled.dtype == np.float32 and (filled > 0).all()
    assert np.array_equal(filled[holes > 0], ramp[holes > 0])
    assert np.abs(filled - ramp).max() < 0.05
    with pytest.raises(PtsemsegError, match="inpainting algorithm"):
        du.fill_depth_inpaint(holes, algorithm="fast")


def test_colorization_follows_colour_edges():
    image = np.zeros((30, 40, 3), np.uint8)
    image[:, 20:] = 200
    truth = np.where(np.arange(40)[None, :] < 20, 1.5, 4.0).repeat(30, 0).astype(np.float32)
    holes = truth.copy()
    holes[8:22, 12:28] = 0  # a hole straddling the colour (and depth) edge
    filled = du.fill_depth(holes, "colorization", image=image)
    assert np.abs(filled - truth)[8:22, 12:28].max() < 0.1
    assert np.abs(filled - truth)[holes > 0].max() < 0.05
    with pytest.raises(PtsemsegError, match="needs the RGB image"):
        du.fill_depth(holes, "colorization")
    with pytest.raises(PtsemsegError, match="'inpaint' or 'colorization'"):
        du.fill_depth(holes, "bilateral")



def test_hha_and_fill_tools(tmp_path):
    depth, _, _, _ = room(SMALL_K)
    raw = depth.copy()
    raw[40:50, 60:80] = 0
    (tmp_path / "depth").mkdir()
    (tmp_path / "rgb").mkdir()
    cv2.imwrite(str(tmp_path / "depth" / "0001.png"), du.depth_to_mm(raw))
    cv2.imwrite(str(tmp_path / "rgb" / "0001.png"), np.full((120, 160, 3), 90, np.uint8))

    fill_tool, hha_tool = load_tool("fill_depth"), load_tool("hha")
    fill_tool.main(["--depth", str(tmp_path / "depth"), "--out", str(tmp_path / "filled"), "--workers", "1"])
    filled = cv2.imread(str(tmp_path / "filled" / "0001.png"), cv2.IMREAD_UNCHANGED)
    assert filled.dtype == np.uint16 and (filled > 0).all()
    assert np.abs(filled.astype(float) / 1000 - depth).max() < 0.1

    fill_tool.main(["--depth", str(tmp_path / "depth"), "--out", str(tmp_path / "colorized"), "--workers", "1",
                    "--method", "colorization", "--rgb", str(tmp_path / "rgb")])
    colorized = cv2.imread(str(tmp_path / "colorized" / "0001.png"), cv2.IMREAD_UNCHANGED)
    assert colorized.dtype == np.uint16 and (colorized > 0).all()

    fx, fy, cx, cy = SMALL_K[0, 0], SMALL_K[1, 1], SMALL_K[0, 2], SMALL_K[1, 2]
    hha_tool.main(["--depth", str(tmp_path / "filled"), "--raw", str(tmp_path / "depth"), "--out",
                   str(tmp_path / "hha"), "--intrinsics", str(fx), str(fy), str(cx), str(cy), "--workers", "1"])
    hha = read_rgb(str(tmp_path / "hha" / "0001.png"))
    expected = du.hha_encode(du.mm_to_depth(filled), SMALL_K, valid=raw > 0)
    assert np.array_equal(hha, expected)

    with pytest.raises(PtsemsegError, match="nowhere"):
        hha_tool.main(["--depth", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--camera", "nyu"])
    with pytest.raises(PtsemsegError, match="--camera nyu or --intrinsics"):
        hha_tool.main(["--depth", str(tmp_path / "depth"), "--out", str(tmp_path / "x")])
    with pytest.raises(PtsemsegError, match="needs --rgb"):
        fill_tool.main(["--depth", str(tmp_path / "depth"), "--out", str(tmp_path / "x"), "--method", "colorization"])


def test_tool_errors_are_one_line():
    result = run_script("tools/fill_depth.py", "--depth", "/nonexistent/depth", "--out", "/tmp/unused")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "/nonexistent/depth" in result.stderr


@pytest.mark.slow
def test_colorization_fills_the_real_sunrgbd_frame():
    """Full-resolution colorization fill of a real SUN RGB-D frame (several seconds)."""
    if not os.path.isfile(SUN_DEPTH_PNG):
        pytest.skip(f"real SUN RGB-D depth sample absent: {SUN_DEPTH_PNG}")
    depth = du.decode_sunrgbd_depth(read_png16(SUN_DEPTH_PNG))
    image = read_rgb(SUN_DEPTH_PNG.replace("SUN_depth.png", "SUN_color.jpg"))
    known = depth > 0
    assert 0 < (~known).sum() < known.sum()
    filled = du.fill_depth(depth, "colorization", image=image)
    assert (filled > 0).all()
    assert np.median(np.abs(filled - depth)[known]) < 0.01
    assert filled.min() >= 0.9 * depth[known].min() and filled.max() <= 1.1 * depth[known].max()


def test_gravity_with_pitch_and_roll_at_full_resolution():
    depth, world, floor, camera_to_world = room(NYU_K, -25.0, rows=480, cols=640, roll_deg=10.0)
    true_down = camera_to_world.T @ np.array([0.0, 1.0, 0.0])
    gravity = du.estimate_gravity(du.surface_normals(depth, NYU_K, radius=10))
    assert np.degrees(np.arccos(np.clip(gravity @ true_down, -1, 1))) < 0.5
    hha = du.hha_encode(depth, NYU_K)
    expected = expected_hha(depth, world, floor)
    assert np.array_equal(hha[..., 0], expected[..., 0])
    assert np.abs(hha[..., 1].astype(int) - expected[..., 1]).max() <= 2
    assert (np.abs(hha[..., 2].astype(int) - expected[..., 2]) <= 1).mean() > 0.98
