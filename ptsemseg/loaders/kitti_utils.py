"""KITTI raw-data helpers: calibration files, Velodyne projection, split lists, static frames, OXTS speed.

A Velodyne point X (homogeneous, metres) lands in rectified camera c at P_rect_0c · R_rect_00 · Tr_velo_to_cam · X
= (u·w, v·w, w). Three projections into a depth map are in use (`VELODYNE_CONVENTIONS`):

- `velodyne_x`, the Eigen ground truth of the published tables (monodepth2's export_gt_depth.py, i.e.
  `generate_depth_map(calib_dir, velo_filename, cam=2, vel_depth=True)`): points with
  Velodyne x ≥ 0 are kept, the stored depth is the Velodyne x (forward distance from the scanner, not the
  camera's z), a point goes to pixel (column round(u) − 1, row round(v) − 1) (NumPy rounding, half to even; the
  −1 follows the KITTI MATLAB code), and of several points on one pixel the nearest wins;
- `shifted_camera_z`, the same code storing w instead (`vel_depth=False`: SfMLearner's evaluation, and
  Semseg-MonoDepth's, whose README tables the seed projects show); a negative w is stored as 0;
- `camera_z`: points with w > 0, depth w (along the camera's optical axis), pixel (round(u), round(v)) (pixel
  centres at integer coordinates), nearest wins.

On a real frame the Velodyne x is about 0.28 m larger than the camera z of the same point.
"""
import functools
import os
from dataclasses import dataclass

import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.io import CorruptFileError

CAMERAS = (2, 3)
SIDE_TO_CAMERA = {"l": 2, "r": 3}
CAMERA_TO_SIDE = {camera: side for side, camera in SIDE_TO_CAMERA.items()}

# The 28 raw drives holding the 697 frames of the Eigen test split; training data must leave them out.
EIGEN_TEST_DRIVES = frozenset(
    [f"2011_09_26_drive_{n:04d}_sync" for n in
     (2, 9, 13, 20, 23, 27, 29, 36, 46, 48, 52, 56, 59, 64, 84, 86, 93, 96, 101, 106, 117)]
    + ["2011_09_28_drive_0002_sync", "2011_09_29_drive_0071_sync", "2011_09_30_drive_0016_sync",
       "2011_09_30_drive_0018_sync", "2011_09_30_drive_0027_sync", "2011_10_03_drive_0027_sync",
       "2011_10_03_drive_0047_sync"])

# OXTS record fields 8..10: forward, leftward and upward velocity in m/s (see oxts/dataformat.txt).
OXTS_VELOCITY = slice(8, 11)


def read_calib_file(path):
    """Parse a KITTI `key: v1 v2 ...` calibration file into {key: float64 array}; text entries are skipped."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"calibration file not found: {path}")
    values = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, sep, rest = line.partition(":")
            if not sep:
                continue
            try:
                values[key.strip()] = np.array(rest.split(), dtype=np.float64)
            except ValueError:
                continue  # calib_time and other text fields
    return values


def _entry(values, key, size, path):
    if key not in values or values[key].size != size:
        raise CorruptFileError(f"{path} has no {size}-value entry '{key}'")
    return values[key]


@dataclass(frozen=True)
class CameraCalibration:
    """Calibration of one rectified colour camera of a KITTI raw recording day."""

    P_rect: np.ndarray         # 3×4 projection of the rectified camera
    R_rect: np.ndarray         # 4×4 rectifying rotation of camera 0
    velo_to_cam: np.ndarray    # 4×4 Velodyne → camera 0
    size: tuple                # (rows, cols) of the rectified image

    @property
    def K(self):
        return self.P_rect[:, :3].astype(np.float32)

    @property
    def velo_to_image(self):
        """3×4 matrix taking homogeneous Velodyne points to homogeneous pixel coordinates."""
        return self.P_rect @ self.R_rect @ self.velo_to_cam


@functools.lru_cache(maxsize=32)
def read_calibration(calib_dir, camera):
    """CameraCalibration of camera 2 or 3 from calib_cam_to_cam.txt and calib_velo_to_cam.txt in `calib_dir`."""
    cam_path = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    velo_path = os.path.join(calib_dir, "calib_velo_to_cam.txt")
    cam = read_calib_file(cam_path)
    velo = read_calib_file(velo_path)
    R_rect = np.eye(4)
    R_rect[:3, :3] = _entry(cam, "R_rect_00", 9, cam_path).reshape(3, 3)
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = _entry(velo, "R", 9, velo_path).reshape(3, 3)
    velo_to_cam[:3, 3] = _entry(velo, "T", 3, velo_path)
    cols, rows = _entry(cam, f"S_rect_0{camera}", 2, cam_path).astype(int)
    return CameraCalibration(P_rect=_entry(cam, f"P_rect_0{camera}", 12, cam_path).reshape(3, 4),
                             R_rect=R_rect, velo_to_cam=velo_to_cam, size=(int(rows), int(cols)))


def read_velodyne(path):
    """N×4 float32 Velodyne scan (x, y, z, reflectance) from a KITTI .bin file."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"file not found: {path}")
    points = np.fromfile(path, dtype=np.float32)
    if points.size == 0 or points.size % 4:
        raise CorruptFileError(f"cannot read Velodyne scan {path} (size is not a multiple of 4 float32)")
    return points.reshape(-1, 4)


def scale_projection(matrix, from_size, to_size):
    """Rescale the pixel rows of a 3×4 (or 3×3) projection from image size (rows, cols) to another."""
    scaled = np.array(matrix, dtype=np.float64)
    scaled[0] *= to_size[1] / from_size[1]
    scaled[1] *= to_size[0] / from_size[0]
    return scaled


def project_to_depth_map(points, velo_to_image, size):
    """Sparse H×W float32 camera-z depth map (metres, 0 = no point) of Velodyne `points` seen through
    `velo_to_image` (the `camera_z` convention).

    Points behind the camera or outside the image are dropped; where several land on one pixel the nearest wins.
    """
    rows, cols = size
    xyz1 = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    projected = xyz1 @ np.asarray(velo_to_image, dtype=np.float64).T
    depth = projected[:, 2]
    in_front = depth > 0
    projected, depth = projected[in_front], depth[in_front]
    u = np.round(projected[:, 0] / depth).astype(np.int64)
    v = np.round(projected[:, 1] / depth).astype(np.int64)
    inside = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
    pixel, depth = v[inside] * cols + u[inside], depth[inside]
    order = np.lexsort((depth, pixel))  # by pixel, nearest first
    first = np.unique(pixel[order], return_index=True)[1]
    nearest = order[first]
    depth_map = np.zeros(rows * cols, dtype=np.float32)
    depth_map[pixel[nearest]] = depth[nearest]
    return depth_map.reshape(rows, cols)


def project_eigen(points, velo_to_image, size, velodyne_x=True):
    """Sparse H×W float32 map of `points` as the Eigen evaluation code projects them (`generate_depth_map`),
    storing the Velodyne x (`velodyne_x` convention) or camera z (`shifted_camera_z`): see the module docstring.

    That code keeps the nearest point of a pixel through a linear index row·(W − 1) + col − 1, which pixel
    (r, W − 1) shares with (r + 1, 0): there the nearer of their points is written at the pixel of the first one
    in scan order, the other pixel keeps its last point. Both columns lie outside the Garg and Eigen crops; the
    map reproduces this exactly, so it equals monodepth2's exported `gt_depths.npz` everywhere.
    """
    rows, cols = size
    points = points[points[:, 0] >= 0]
    xyz1 = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    projected = xyz1 @ np.asarray(velo_to_image, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):  # w = 0 gives inf or NaN: outside the image below
        col = np.round(projected[:, 0] / projected[:, 2]) - 1
        row = np.round(projected[:, 1] / projected[:, 2]) - 1
    inside = (col >= 0) & (row >= 0) & (col < cols) & (row < rows)
    value = points[inside, 0] if velodyne_x else projected[inside, 2].astype(np.float32)
    col, row = col[inside].astype(np.int64), row[inside].astype(np.int64)
    depth_map = np.zeros(rows * cols, dtype=np.float32)
    pixel = row * cols + col
    last = len(pixel) - 1 - np.unique(pixel[::-1], return_index=True)[1]
    depth_map[pixel[last]] = value[last]
    key = row * (cols - 1) + col - 1
    order = np.argsort(key, kind="stable")
    starts = np.flatnonzero(np.diff(key[order], prepend=-2))  # keys are ≥ −1
    shared = np.diff(starts, append=len(key)) > 1
    nearest = np.minimum.reduceat(value[order], starts) if len(key) else value
    depth_map[pixel[order[starts[shared]]]] = nearest[shared]
    return depth_map.clip(min=0).reshape(rows, cols)


VELODYNE_CONVENTIONS = {"velodyne_x": functools.partial(project_eigen, velodyne_x=True),
                        "shifted_camera_z": functools.partial(project_eigen, velodyne_x=False),
                        "camera_z": project_to_depth_map}


def velodyne_depth_map(bin_path, calibration, size=None, convention="camera_z"):
    """Project a Velodyne .bin into the calibrated camera under one of `VELODYNE_CONVENTIONS`, at the camera's
    own size or rescaled to `size` (rows, cols)."""
    matrix = calibration.velo_to_image
    size = tuple(size) if size is not None else calibration.size
    if size != calibration.size:
        matrix = scale_projection(matrix, calibration.size, size)
    return VELODYNE_CONVENTIONS[convention](read_velodyne(bin_path), matrix, size)


@dataclass(frozen=True)
class Frame:
    """One camera image of a raw drive: `drive_path` is '<date>/<drive>', `camera` 2 (left) or 3 (right)."""

    drive_path: str
    frame: int
    camera: int

    @property
    def date(self):
        return self.drive_path.split("/")[0]

    @property
    def drive(self):
        return self.drive_path.split("/")[1]

    @property
    def file_stem(self):
        return f"{self.frame:010d}"

    @property
    def image_dir(self):
        return f"image_0{self.camera}"

    @property
    def name(self):
        return f"{self.drive}/{self.image_dir}/{self.file_stem}"


def read_split_file(path):
    """Frames of a monodepth2-style list: one '<date>/<drive> <frame> <l|r>' per line (frame padded or not)."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"split list not found: {path}")
    frames = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if (len(fields) != 3 or fields[0].count("/") != 1 or not fields[1].isdigit()
                    or fields[2] not in SIDE_TO_CAMERA):
                raise PtsemsegError(f"{path} line {number}: expected '<date>/<drive> <frame> <l|r>', got "
                                    f"'{line.strip()}'")
            frames.append(Frame(fields[0], int(fields[1]), SIDE_TO_CAMERA[fields[2]]))
    return frames


def write_split_file(path, frames):
    """Write frames in the monodepth2 list format read by `read_split_file`."""
    with open(path, "w", encoding="utf-8") as handle:
        for frame in frames:
            handle.write(f"{frame.drive_path} {frame.file_stem} {CAMERA_TO_SIDE[frame.camera]}\n")


def read_static_frames(path):
    """{(drive, frame)} from a static-frame list of '<date> <drive> <frame>' lines (SfMLearner format)."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"static-frame list not found: {path}")
    static = set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or not fields[2].isdigit():
                raise PtsemsegError(f"{path} line {number}: expected '<date> <drive> <frame>', got '{line.strip()}'")
            static.add((fields[1], int(fields[2])))
    return static


def read_oxts_speed(path):
    """Vehicle speed in m/s from one OXTS record (norm of the forward, leftward and upward velocities)."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"file not found: {path}")
    with open(path, encoding="utf-8") as handle:
        try:
            values = np.array(handle.read().split(), dtype=np.float64)
        except ValueError:
            raise CorruptFileError(f"cannot parse OXTS record {path}") from None
    if values.size < OXTS_VELOCITY.stop:
        raise CorruptFileError(f"OXTS record {path} has {values.size} values, expected 30")
    return float(np.linalg.norm(values[OXTS_VELOCITY]))
