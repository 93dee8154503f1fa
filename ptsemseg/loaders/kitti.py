"""KITTI in its official on-disk layouts: semantics, annotated depth, raw drives with split lists, prepared depth.

`data.layout` picks the layout and what `data.path` points at:
- `semantics`: the data_semantics folder (`training/image_2/*.png` + `training/semantic/*.png`, Cityscapes
  label ids mapped to the 19 train ids). Splits: `val` = every fifth image of the sorted file names starting
  with the first (40 of 200), `train` = the other 160, `trainval` = all.
- `annotated`: the data_depth_annotated folder (`<train|val>/<drive>/proj_depth/groundtruth/image_0{2,3}/*.png`,
  depth = value / 256 m, 0 = invalid), paired with the raw images under `raw_root`
  (`<raw_root>/<date>/<drive>/image_0{2,3}/data/*.png`) and, for `raw_depth`, with the sparse Velodyne
  projections of data_depth_velodyne under `velodyne_root`
  (`<velodyne_root>/<split>/<drive>/proj_depth/velodyne_raw/image_0{2,3}/*.png`, the input of KITTI's depth
  completion). Splits: the official `train` and `val`.
- `raw`: the raw-data root (`<date>/calib_*.txt`, `<date>/<drive>/...`) with monodepth2-style split lists
  (`<date>/<drive> <frame> <l|r>`, e.g. the Eigen `test_files.txt`) found at `split_file` with `{split}`
  replaced by the split name (default `splits/{split}_files.txt`, so split `eigen/test` reads monodepth2's
  `splits/eigen/test_files.txt`). Ground truth (`gt`): `velodyne` (default), the frame's Velodyne scan projected
  as the published Eigen tables compute it (monodepth2's export_gt_depth.py: Velodyne x at pixel round(u) − 1,
  round(v) − 1; kitti_utils' `velodyne_x`); `velodyne_sfmlearner`, the same pixels storing camera z
  (SfMLearner's and Semseg-MonoDepth's evaluation; `shifted_camera_z`); `velodyne_camera_z`, the scan's camera z
  at pixel round(u), round(v) (`camera_z`); `annotated`, the PNGs under `annotated_root`, which also gives the
  scan (`camera_z`) as `raw_depth`. With `gt: annotated`, `skip_unannotated: true` leaves out the listed frames
  that have no annotated map (the Eigen test list keeps 652 of its 697 frames: monodepth2's eigen_benchmark
  split) instead of failing.
- `prepared`: the output of tools/kitti_prepare_depth.py (raw layout with resized images, 16-bit projected
  depth in `<date>/<drive>/proj_depth/image_0{2,3}/*.png`, intrinsics in `<date>/<drive>/K_0{2,3}.txt`,
  lists `<split>.txt`).
Keys: image and label (`semantics`); image and depth (the depth layouts, with `meta.K`), plus raw_depth
(`annotated`, and `raw` with `gt: annotated`).
Option paths (`raw_root`, `annotated_root`, `velodyne_root`, `split_file`) are relative to `data.path` unless
absolute.
"""
import glob
import os
import warnings

import numpy as np

from ptsemseg.errors import PtsemsegError, closest
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import (CorruptFileError, read_gray, read_png16, read_rgb,
                                 require_path, require_root)
from ptsemseg.loaders.kitti_utils import CAMERAS, Frame, read_calibration, read_split_file, velodyne_depth_map
from ptsemseg.loaders.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_COLORS, label_ids_to_train_ids

SECTION = "KITTI"
LAYOUTS = ("semantics", "annotated", "raw", "prepared")
# Ground truths of the raw layout -> the projection of the Velodyne scan (kitti_utils.VELODYNE_CONVENTIONS).
VELODYNE_GROUND_TRUTHS = {"velodyne": "velodyne_x", "velodyne_sfmlearner": "shifted_camera_z",
                          "velodyne_camera_z": "camera_z"}
GROUND_TRUTHS = (*VELODYNE_GROUND_TRUTHS, "annotated")
SEMANTICS_SPLITS = ("train", "val", "trainval")
ANNOTATED_SPLITS = ("train", "val")
DEFAULT_SPLIT_FILES = {"raw": "splits/{split}_files.txt", "prepared": "{split}.txt"}
LAYOUT_KEYS = {"semantics": ("image", "label"), "annotated": ("image", "depth", "raw_depth"),
               "raw": ("image", "depth"), "prepared": ("image", "depth")}
DEPTH_PNG_SCALE = 256.0


def semantics_split(names, split):
    """The deterministic 80/20 split of KITTI semantics: every fifth sorted name (from the first) is val."""
    names = sorted(names)
    if split == "trainval":
        return names
    return [name for position, name in enumerate(names) if (position % 5 == 0) == (split == "val")]


def read_depth_png(path):
    """Metric depth from a KITTI 16-bit depth PNG (value / 256 m, 0 = invalid)."""
    return read_png16(path).astype(np.float32) / DEPTH_PNG_SCALE


def read_intrinsics_txt(path):
    """3×3 float32 intrinsics from a text file of 9 numbers (as written by tools/kitti_prepare_depth.py)."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"intrinsics file not found: {path}")
    values = np.loadtxt(path, dtype=np.float32).reshape(-1)
    if values.size != 9:
        raise CorruptFileError(f"expected 9 numbers (a 3×3 matrix) in {path}, got {values.size}")
    return values.reshape(3, 3)


@DATASETS.register("kitti")
class KITTI(DenseDataset):
    """KITTI semantics (19 Cityscapes train ids) and depth (metres) in the official layouts; see module docstring."""

    n_classes = len(CITYSCAPES_CLASS_NAMES)
    class_names = CITYSCAPES_CLASS_NAMES
    class_colors = CITYSCAPES_COLORS

    @classmethod
    def keys_for(cls, split, layout="semantics", gt="velodyne", **options):
        if layout not in LAYOUTS:
            raise PtsemsegError(f"unknown KITTI layout '{layout}'{closest(str(layout), LAYOUTS)} "
                                f"(choose from {', '.join(LAYOUTS)})")
        return LAYOUT_KEYS[layout] + (("raw_depth",) if layout == "raw" and gt == "annotated" else ())

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, layout="semantics", raw_root="raw", annotated_root="data_depth_annotated",
                 velodyne_root="../data_depth_velodyne", split_file=None, gt="velodyne", cameras=CAMERAS,
                 img_ext="png", skip_unannotated=False):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        self.require_keys(layout=layout, gt=gt)
        if gt not in GROUND_TRUTHS:
            raise PtsemsegError(f"unknown KITTI ground truth gt='{gt}'{closest(str(gt), GROUND_TRUTHS)} "
                                f"(choose from {', '.join(GROUND_TRUTHS)})")
        if not isinstance(skip_unannotated, bool):
            raise PtsemsegError(f"KITTI skip_unannotated must be true or false, got {skip_unannotated!r}")
        cameras = (cameras,) if isinstance(cameras, int) else tuple(cameras)
        if not set(cameras) <= set(CAMERAS):
            raise PtsemsegError(f"KITTI cameras must be among {list(CAMERAS)}, got {list(cameras)}")
        require_root(root, f"the KITTI {layout} folder", f"KITTI {layout} folder", SECTION)
        self.layout = layout
        self.gt = gt
        self.skip_unannotated = skip_unannotated
        self.cameras = cameras
        self.img_ext = img_ext
        self.raw_root = self._under_root(raw_root)
        self.annotated_root = self._under_root(annotated_root)
        self.velodyne_root = self._under_root(velodyne_root)
        self.calibrations = {}  # (date, camera) -> CameraCalibration of the raw recording day
        self.intrinsics = {}    # (date or drive, camera) -> 3×3 K of the listed images
        if layout == "semantics":
            self.samples = self._semantics_samples()
        elif layout == "annotated":
            self.samples = self._annotated_samples()
        else:
            list_path = self._under_root((split_file or DEFAULT_SPLIT_FILES[layout]).format(split=split))
            self.samples = self._listed_samples(list_path)

    def _under_root(self, path):
        return path if os.path.isabs(path) else os.path.join(self.root, path)

    # ---- listing -------------------------------------------------------------------------------------

    def _semantics_samples(self):
        if self.split not in SEMANTICS_SPLITS:
            raise PtsemsegError(f"KITTI semantics split must be one of {', '.join(SEMANTICS_SPLITS)}, "
                                f"got '{self.split}'")
        image_dir = require_path(os.path.join(self.root, "training", "image_2"), "KITTI semantics images", SECTION)
        label_dir = os.path.join(self.root, "training", "semantic")
        if "label" in self.keys:
            require_path(label_dir, "KITTI semantic labels", SECTION)
        names = [os.path.basename(path) for path in glob.glob(os.path.join(image_dir, "*.png"))]
        if not names:
            raise PtsemsegError(f"no KITTI semantics images (*.png) in {image_dir}")
        samples = [{"name": os.path.splitext(name)[0], "image": os.path.join(image_dir, name),
                    "label": os.path.join(label_dir, name)} for name in semantics_split(names, self.split)]
        self._check_exist(samples, "label", label_dir)
        return samples

    def _annotated_samples(self):
        if self.split not in ANNOTATED_SPLITS:
            raise PtsemsegError(f"KITTI annotated depth split must be one of {', '.join(ANNOTATED_SPLITS)}, "
                                f"got '{self.split}'")
        split_dir = require_path(os.path.join(self.root, self.split), "KITTI annotated depth split", SECTION)
        require_path(self.raw_root, "KITTI raw data (data.raw_root)", SECTION)
        samples = []
        for camera in self.cameras:
            pattern = os.path.join(split_dir, "*", "proj_depth", "groundtruth", f"image_0{camera}", "*.png")
            for depth_path in glob.glob(pattern):
                drive = depth_path[len(split_dir) + 1:].split(os.sep)[0]
                frame = Frame(f"{drive[:10]}/{drive}", int(os.path.splitext(os.path.basename(depth_path))[0]),
                              camera)
                samples.append(self._frame_sample(frame, self.raw_root, depth=depth_path))
                if "raw_depth" in self.keys:
                    samples[-1]["raw_depth"] = os.path.join(
                        self.velodyne_root, self.split, drive, "proj_depth", "velodyne_raw", f"image_0{camera}",
                        os.path.basename(depth_path))
        if not samples:
            raise PtsemsegError(f"no annotated depth maps under {split_dir} "
                                f"(expected <drive>/proj_depth/groundtruth/image_0{{2,3}}/*.png)")
        samples.sort(key=lambda sample: sample["name"])
        self._check_exist(samples, "image", self.raw_root)
        self._check_exist(samples, "raw_depth", self.velodyne_root)
        return samples

    def _listed_samples(self, list_path):
        require_path(list_path, f"KITTI split list for '{self.split}'", SECTION)
        frames = [frame for frame in read_split_file(list_path) if frame.camera in self.cameras]
        if not frames:
            raise PtsemsegError(f"no frames of cameras {list(self.cameras)} in {list_path}")
        if self.layout == "prepared":
            samples = [self._prepared_sample(frame) for frame in frames]
            self._check_exist(samples, "depth", self.root)
        elif self.gt == "annotated":
            annotated = self._annotated_index() if "depth" in self.keys else {}
            samples = [self._frame_sample(frame, self.root, depth=annotated.get((frame.drive, frame.camera,
                                                                                frame.frame), ""),
                                          raw_depth=self._velodyne_path(frame))
                       for frame in frames]
            if self.skip_unannotated and "depth" in self.keys:
                samples = self._drop_unannotated(samples, list_path)
            self._check_exist(samples, "depth", self.annotated_root)
            self._check_exist(samples, "raw_depth", self.root)
        else:
            samples = [self._frame_sample(frame, self.root, depth=self._velodyne_path(frame)) for frame in frames]
            self._check_exist(samples, "depth", self.root)
        self._check_exist(samples, "image", self.root)
        return samples

    def _drop_unannotated(self, samples, list_path):
        """The samples that have an annotated depth map; says how many of the list were left out."""
        kept = [sample for sample in samples if sample["depth"]]
        if not kept:
            raise PtsemsegError(f"none of the {len(samples)} frames of {list_path} has an annotated depth map "
                                f"under {self.annotated_root}")
        if len(kept) < len(samples):
            warnings.warn(f"KITTI {self.split}: {len(samples) - len(kept)} of {len(samples)} listed frames have no "
                          "annotated depth map and are left out (skip_unannotated)")
        return kept

    def _velodyne_path(self, frame):
        return os.path.join(self.root, frame.drive_path, "velodyne_points", "data", f"{frame.file_stem}.bin")

    def _annotated_index(self):
        """{(drive, camera, frame): path} of every annotated depth map in the official train and val folders."""
        require_path(self.annotated_root, "KITTI annotated depth (data.annotated_root)", SECTION)
        index = {}
        for path in glob.glob(os.path.join(self.annotated_root, "*", "*", "proj_depth", "groundtruth",
                                           "image_0[23]", "*.png")):
            parts = path.split(os.sep)
            index[(parts[-5], int(parts[-2][-1]), int(os.path.splitext(parts[-1])[0]))] = path
        return index

    def _frame_sample(self, frame, raw_root, **target):
        """A raw-drive sample: image path, intrinsics from the day's calibration, and its depth source."""
        key = (frame.date, frame.camera)
        if key not in self.calibrations:
            self.calibrations[key] = read_calibration(os.path.join(raw_root, frame.date), frame.camera)
            self.intrinsics[key] = self.calibrations[key].K
        image = os.path.join(raw_root, frame.drive_path, frame.image_dir, "data", f"{frame.file_stem}.{self.img_ext}")
        return {"name": frame.name, "image": image, "calibration": key, **target}

    def _prepared_sample(self, frame):
        drive_dir = os.path.join(self.root, frame.drive_path)
        key = (frame.drive_path, frame.camera)
        if key not in self.intrinsics:
            self.intrinsics[key] = read_intrinsics_txt(os.path.join(drive_dir, f"K_0{frame.camera}.txt"))
        return {"name": frame.name, "calibration": key,
                "image": os.path.join(drive_dir, frame.image_dir, "data", f"{frame.file_stem}.{self.img_ext}"),
                "depth": os.path.join(drive_dir, "proj_depth", frame.image_dir, f"{frame.file_stem}.png")}

    def _check_exist(self, samples, key, where):
        """Fail before training when listed files of `key` are missing, naming how many and the first one; files
        of sample keys not asked for are not needed."""
        if key != "image" and key not in self.keys:
            return
        missing = [sample for sample in samples if not os.path.isfile(sample[key])]
        if missing:
            first = missing[0][key] or f"no annotated depth map for {missing[0]['name']}"
            hint = " (set data.img_ext if the images are not .png)" if key == "image" else ""
            raise PtsemsegError(f"{len(missing)} of {len(samples)} KITTI {self.split} {key} files are missing "
                                f"under {where}, first: {first}{hint}")

    # ---- loading -------------------------------------------------------------------------------------

    def __len__(self):
        return len(self.samples)

    def load(self, index):
        record = self.samples[index]
        image = read_rgb(record["image"])
        sample = {"image": image, "meta": {"name": record["name"], "index": index}}
        if "label" in self.keys:
            label_ids = read_gray(record["label"])
            if label_ids.dtype != np.uint8:
                raise CorruptFileError(f"expected an 8-bit label PNG, got {label_ids.dtype}: {record['label']}")
            sample["label"] = label_ids_to_train_ids(label_ids)
        for key in ("depth", "raw_depth"):
            if key not in self.keys:
                continue
            source = record[key]
            if source.endswith(".bin"):
                convention = VELODYNE_GROUND_TRUTHS[self.gt] if key == "depth" else "camera_z"
                depth = velodyne_depth_map(source, self.calibrations[record["calibration"]], convention=convention)
            else:
                depth = read_depth_png(source)
            if depth.shape != image.shape[:2]:
                raise CorruptFileError(f"{key} of {source} is {depth.shape[1]}×{depth.shape[0]} but image "
                                       f"{record['image']} is {image.shape[1]}×{image.shape[0]}")
            sample[key] = depth
        if "calibration" in record:
            sample["meta"]["K"] = self.intrinsics[record["calibration"]]
        return self.asked(sample)
