"""NYU Depth v2 raw Kinect frames (`nyuv2_raw`): the per-scene dumps of the raw dataset, paired and registered as
the NYU toolbox does, for depth training on the ~400k unlabelled frames.

`data.path` holds the extracted scene folders (`bedroom_0001/`, `living_room_0012/`, ...) and one list per split,
`train_scenes.txt` / `test_scenes.txt`, a scene folder name per line. Each scene folder is a libfreenect
`fakenect-record` dump (fakenect/record.c):
- `d-<host time>-<device ticks>.pgm`: 640×480 11-bit disparity behind the one-line header `P5 640 480 65535`, its
  16-bit values written little-endian. The PGM standard says big-endian, so OpenCV reads 800 as 8195 and 2047 as
  65287; the bytes are swapped back here, as the toolbox's `swapbytes` does. 2047 = no measurement.
- `r-<host time>-<device ticks>.ppm`: 640×480 RGB (P6).
- `a-<host time>-<device ticks>.dump` (accelerometer state) and `INDEX.txt` (the file names in capture order) are
  not read: the names carry the times.

Pairing (toolbox get_synched_frames.m): every depth frame is kept, with the colour frame nearest in host time. A
scene folder without depth frames (colour alone) gives every colour frame when only `image` (and `scene`) is asked.
Depth (project_depth_map.m, depth_rel2depth_abs.m, camera_params.m): the disparity is undistorted with the depth
camera's model; values below 600 and pixels touched by a 2047 become invalid; metres = 351.3 / (1092.5 − disparity),
capped at 10 m; every point moves into the colour camera (rotation, translation, both intrinsics) and lands on its
rounded pixel, the nearest point winning. The colour frame is undistorted with the colour camera's model, so
`meta.K` (the colour intrinsics) describes it.

Keys: image, depth and raw_depth (both the registered measured depth, 0 = none: raw frames have no filled depth),
scene (FuseNet's 10 classes from the folder's scene type). Splits: `train`, `test` (`val` = test).
Option `frame_step`: keep every n-th frame of each scene (consecutive frames are 1/30 s apart).
"""
import functools
import os
import re

import cv2
import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import CorruptFileError, read_gray, read_rgb, require_path, require_root
from ptsemseg.loaders.nyuv2 import NYU_K, NYU_SCENE_CLASSES, SPLITS, scene_class

SECTION = "NYUv2 raw"
KINECT_SIZE = (480, 640)
INVALID_DISPARITY = 2047
# project_depth_map.m: undistorted disparities below 600 (about 0.7 m, or interpolated with the border) are holes.
MIN_UNDISTORTED_DISPARITY = 600
# depth_rel2depth_abs.m: metres = DEPTH_PARAM1 / (DEPTH_PARAM2 − disparity), capped at MAX_DEPTH_M.
DEPTH_PARAM1, DEPTH_PARAM2, MAX_DEPTH_M = 351.3, 1092.5, 10.0

# camera_params.m of the toolbox (calibrated with RGBDemo): intrinsics and (k1, k2, p1, p2, k3) distortion.
RGB_K = np.array([[5.1885790117450188e+02, 0.0, 3.2558244941119034e+02],
                  [0.0, 5.1946961112127485e+02, 2.5373616633400465e+02], [0.0, 0.0, 1.0]])
RGB_DISTORTION = np.array([2.0796615318809061e-01, -5.8613825163911781e-01, 7.2231363135888329e-04,
                           1.0479627195765181e-03, 4.9856986684705107e-01])
DEPTH_K = np.array([[5.8262448167737955e+02, 0.0, 3.1304475870804731e+02],
                    [0.0, 5.8269103270988637e+02, 2.3844389626620386e+02], [0.0, 0.0, 1.0]])
DEPTH_DISTORTION = np.array([-9.9897236553084481e-02, 3.9065324602765344e-01, 1.9290592870229277e-03,
                             -1.9422022475975055e-03, -5.1031725053400578e-01])
# camera_params.m lists nine values v and builds R = inv(reshape(-v, [3 3])'), i.e. −inv(V) with V the values read
# row by row; depth_world2rgb_world.m maps a point p to R·p + [t_x; t_z; t_y] (its own order of camera_params.m's
# t_x, t_y, t_z). The sign of R cancels in the projection x/z, which therefore sees inv(V)·p − [t_x, t_z, t_y]:
# that form (z positive) is used here.
ROTATION_VALUES = np.array([[9.9997798940829263e-01, 5.0518419386157446e-03, 4.3011152014118693e-03],
                            [-5.0359919480810989e-03, 9.9998051861143999e-01, -3.6879781309514218e-03],
                            [-4.3196624923060242e-03, 3.6662365748484798e-03, 9.9998394948385538e-01]])
DEPTH_TO_RGB_ROTATION = np.linalg.inv(ROTATION_VALUES)
DEPTH_TO_RGB_SHIFT = -np.array([2.5031875059141302e-02, -2.9342312935846411e-04, 6.6238747008330102e-04])

FRAME_NAME = re.compile(r"^([dra])-(\d+(?:\.\d+)?)-\d+\.(pgm|ppm|dump)$")


def frame_time(name, folder):
    """Host time in seconds from a fakenect file name `<d|r|a>-<host time>-<device ticks>.<ext>`."""
    match = FRAME_NAME.match(name)
    if not match:
        raise PtsemsegError(f"{os.path.join(folder, name)} is not a fakenect frame name "
                            "(<d|r|a>-<host time>-<device ticks>.<pgm|ppm|dump>)")
    return float(match.group(2))


def nearest_earlier_or_later(times, queries):
    """Index into sorted `times` of the value nearest each query, as the toolbox's pointer walk picks it
    (get_synched_frames.m advances while the difference does not grow): a tie goes to the later time, and among
    equal times to the last."""
    later = np.minimum(np.searchsorted(times, queries, side="left"), len(times) - 1)
    earlier = np.maximum(later - 1, 0)
    nearest = np.where(np.abs(times[later] - queries) <= np.abs(queries - times[earlier]), later, earlier)
    return np.searchsorted(times, times[nearest], side="right") - 1


def synched_frames(folder, need_depth=True):
    """[(depth file, colour file)] of a scene folder in time order: every depth frame with the nearest colour frame.

    A folder without depth frames gives, when no depth is needed, every colour frame alone (depth file None)."""
    names = os.listdir(folder)
    depth = sorted((frame_time(name, folder), name) for name in names if name.startswith("d-"))
    rgb = sorted((frame_time(name, folder), name) for name in names if name.startswith("r-"))
    if rgb and not depth and not need_depth:
        return [(None, name) for _, name in rgb]
    if not depth or not rgb:
        raise PtsemsegError(f"{folder} holds {len(depth)} d-*.pgm depth and {len(rgb)} r-*.ppm colour frames: "
                            f"not a NYUv2 raw scene folder? (see README.md#datasets, section '{SECTION}')")
    picked = nearest_earlier_or_later(np.array([t for t, _ in rgb]), np.array([t for t, _ in depth]))
    return [(name, rgb[index][1]) for (_, name), index in zip(depth, picked)]


def scene_type(scene):
    """The scene type of a raw scene folder (`living_room_0002k` → `living_room`), as get_scene_type_from_scene.m."""
    return re.sub(r"_\d+\w?$", "", scene)


def read_kinect_disparity(path):
    """H×W uint16 disparity (0..2047) of a raw `d-*.pgm`, its little-endian bytes swapped back."""
    disparity = read_gray(path)
    if disparity.dtype != np.uint16 or disparity.shape != KINECT_SIZE:
        raise CorruptFileError(f"expected a 640×480 16-bit PGM, got {disparity.dtype} "
                               f"{disparity.shape[1]}×{disparity.shape[0]}: {path}")
    disparity = disparity.byteswap()
    if int(disparity.max()) > INVALID_DISPARITY:
        raise CorruptFileError(f"{path} holds values up to {int(disparity.max())}, beyond the Kinect's 11-bit "
                               "disparity (0..2047): not a raw NYU depth frame, or one rewritten big-endian")
    return disparity


def read_kinect_rgb(path):
    """H×W×3 uint8 RGB of a raw `r-*.ppm`."""
    image = read_rgb(path)
    if image.shape[:2] != KINECT_SIZE:
        raise CorruptFileError(f"expected a 640×480 colour frame, got {image.shape[1]}×{image.shape[0]}: {path}")
    return image


@functools.lru_cache(maxsize=2)
def undistortion_maps(camera):
    """(map_x, map_y, inside) of `camera` ('depth' or 'rgb'): for each undistorted pixel the distorted position to
    sample (undistort.m, the Bouguet model with the same K before and after) and whether all four of its bilinear
    neighbours lie in the frame."""
    K, distortion = (DEPTH_K, DEPTH_DISTORTION) if camera == "depth" else (RGB_K, RGB_DISTORTION)
    rows, cols = KINECT_SIZE
    map_x, map_y = cv2.initUndistortRectifyMap(K, distortion, None, K, (cols, rows), cv2.CV_32FC1)
    inside = (map_x >= 0) & (map_x < cols - 1) & (map_y >= 0) & (map_y < rows - 1)
    return map_x, map_y, inside


def undistort_rgb(image):
    """The colour frame undistorted bilinearly; pixels whose source lies outside the frame are white, as undistort.m
    leaves them."""
    map_x, map_y, inside = undistortion_maps("rgb")
    out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR)
    out[~inside] = 255
    return out


def undistort_disparity(disparity):
    """Float32 disparity undistorted bilinearly; 2047 where a hole, the border or a value below 600 is involved."""
    map_x, map_y, inside = undistortion_maps("depth")
    values = cv2.remap(disparity.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
    touches_hole = cv2.remap((disparity == INVALID_DISPARITY).astype(np.float32), map_x, map_y, cv2.INTER_LINEAR) > 0
    values[~inside | touches_hole | (values < MIN_UNDISTORTED_DISPARITY)] = INVALID_DISPARITY
    return values


def disparity_to_metres(disparity):
    """depth_rel2depth_abs.m: 351.3 / (1092.5 − disparity) metres, capped at 10 m; 0 where negative (2047)."""
    with np.errstate(divide="ignore"):
        depth = DEPTH_PARAM1 / (DEPTH_PARAM2 - np.asarray(disparity, dtype=np.float64))
    return np.where(depth < 0, 0.0, np.minimum(depth, MAX_DEPTH_M)).astype(np.float32)


def register_depth(disparity):
    """Metres on the undistorted colour frame's pixel grid from a raw disparity frame (project_depth_map.m).

    Points come from the toolbox's 1-based pixel grid (meshgrid(1:W, 1:H)) and land on rounded 1-based pixels
    strictly inside (0, W) × (0, H), so the last row and column stay empty, as in the toolbox. Where several points
    land on one pixel the nearest is kept; the value is the depth camera's distance, as the toolbox stores it.
    """
    depth = disparity_to_metres(undistort_disparity(disparity))
    rows, cols = np.nonzero(depth > 0)
    z = depth[rows, cols].astype(np.float64)
    points = np.stack([(cols + 1 - DEPTH_K[0, 2]) * z / DEPTH_K[0, 0], (rows + 1 - DEPTH_K[1, 2]) * z / DEPTH_K[1, 1],
                       z])
    moved = DEPTH_TO_RGB_ROTATION @ points + DEPTH_TO_RGB_SHIFT[:, None]
    # MATLAB's round (half away from zero) on positive coordinates.
    x = np.floor(moved[0] / moved[2] * RGB_K[0, 0] + RGB_K[0, 2] + 0.5).astype(np.int64)
    y = np.floor(moved[1] / moved[2] * RGB_K[1, 1] + RGB_K[1, 2] + 0.5).astype(np.int64)
    height, width = KINECT_SIZE
    keep = (x > 0) & (x < width) & (y > 0) & (y < height)
    nearest = np.full(height * width, np.inf, dtype=np.float32)
    np.minimum.at(nearest, (y[keep] - 1) * width + (x[keep] - 1), depth[rows[keep], cols[keep]])
    nearest[np.isinf(nearest)] = 0
    return nearest.reshape(height, width)


@DATASETS.register("nyuv2_raw")
class NYUv2Raw(DenseDataset):
    """Raw NYU Depth v2 Kinect frames: undistorted colour with the registered measured depth, per scene folder."""

    n_scene_classes = len(NYU_SCENE_CLASSES)
    scene_names = NYU_SCENE_CLASSES
    given_keys = ("image", "depth", "raw_depth", "scene")

    @classmethod
    def camera(cls, **options):
        return NYU_K, KINECT_SIZE

    def __init__(self, root, split, keys=("image", "depth"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, frame_step=1):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        self.require_keys()
        if split not in SPLITS:
            raise PtsemsegError(f"NYUv2 raw split must be one of {', '.join(SPLITS)}, got '{split}'")
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise PtsemsegError(f"NYUv2 raw frame_step must be a positive integer, got {frame_step!r}")
        require_root(root, "the folder of extracted raw scene folders", "NYUv2 raw root", SECTION)
        list_path = require_path(os.path.join(root, f"{SPLITS[split]}_scenes.txt"),
                                 f"NYUv2 raw {SPLITS[split]} scene list", SECTION)
        with open(list_path, encoding="utf-8") as handle:
            scenes = [line.strip() for line in handle if line.strip()]
        if not scenes:
            raise PtsemsegError(f"{list_path} lists no scene folders")
        self.frames = []
        need_depth = bool({"depth", "raw_depth"} & set(self.keys))
        for scene in scenes:
            folder = require_path(os.path.join(root, scene), f"scene folder listed in {list_path}", SECTION)
            self.frames += [(scene, depth, rgb) for depth, rgb in synched_frames(folder, need_depth)[::frame_step]]

    def __len__(self):
        return len(self.frames)

    def load(self, index):
        scene, depth_name, rgb_name = self.frames[index]
        folder = os.path.join(self.root, scene)
        sample = {"image": undistort_rgb(read_kinect_rgb(os.path.join(folder, rgb_name))),
                  "meta": {"name": f"{scene}/{os.path.splitext(depth_name or rgb_name)[0]}", "index": index,
                           "K": NYU_K.copy()}}
        if "depth" in self.keys or "raw_depth" in self.keys:
            depth = register_depth(read_kinect_disparity(os.path.join(folder, depth_name)))
            sample["depth"], sample["raw_depth"] = depth, depth.copy()
        if "scene" in self.keys:
            sample["scene"] = scene_class(scene_type(scene))
        return self.asked(sample)
