"""Cityscapes in its official layout: semantic labels (19 train ids) and metric depth from the stereo disparity.

`data.path` holds the extracted zips:
- `leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png` (leftImg8bit_trainvaltest.zip),
- `gtFine/<split>/<city>/<stem>_gtFine_labelIds.png` (gtFine_trainvaltest.zip; label ids → train ids here, or
  ready `_gtFine_labelTrainIds.png` from tools/cityscapes_trainids.py with `label_type: labelTrainIds`),
- `disparity/<split>/<city>/<stem>_disparity.png` and `camera/<split>/<city>/<stem>_camera.json`
  (disparity_trainvaltest.zip, camera_trainvaltest.zip) for `depth`.

Keys: image, label, depth. Only the files of the keys asked for are needed and read.

Depth: a disparity pixel p > 1 stores d = (p − 1) / 256 pixels, so depth = baseline · fx / d with the baseline
(extrinsic) and fx (intrinsic) of the frame's camera json; p ≤ 1 (no match, or zero disparity) is invalid (0).
Options: `max_depth` invalidates farther depths (small disparities are noisy); `depth_roi: [top, bottom, left,
right]` (fractions of the frame) invalidates depth outside that box, e.g. [0.05, 0.80, 0.05, 0.99] drops the
ego-vehicle hood and the left border without stereo matches (the region the seed project evaluated).
"""
import glob
import json
import os

import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import CorruptFileError, read_gray, read_png16, read_rgb, require_path
from ptsemseg.loaders.labels import CITYSCAPES_CLASS_NAMES, CITYSCAPES_COLORS, label_ids_to_train_ids

SECTION = "Cityscapes"
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_TYPES = ("labelIds", "labelTrainIds")


def read_camera(path):
    """(K 3×3 float32, stereo baseline in metres) from a Cityscapes `*_camera.json`."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            camera = json.load(handle)
        intrinsic = camera["intrinsic"]
        K = np.array([[intrinsic["fx"], 0, intrinsic["u0"]], [0, intrinsic["fy"], intrinsic["v0"]], [0, 0, 1]],
                     dtype=np.float32)
        return K, float(camera["extrinsic"]["baseline"])
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptFileError(f"cannot read camera parameters from {path} ({type(err).__name__}: {err})") from None


def disparity_to_depth(disparity_png, baseline, fx, max_depth=None):
    """Metric depth (float32, 0 = invalid) from a Cityscapes 16-bit disparity PNG."""
    disparity = (disparity_png.astype(np.float32) - 1.0) / 256.0
    valid = disparity_png > 1
    depth = np.zeros(disparity_png.shape, dtype=np.float32)
    np.divide(np.float32(baseline * fx), disparity, out=depth, where=valid)
    if max_depth is not None:
        depth[depth > max_depth] = 0
    return depth


def keep_region(depth, roi):
    """Zero the depth outside the box roi = (top, bottom, left, right), given as fractions of the frame."""
    rows, cols = depth.shape
    top, bottom, left, right = roi
    kept = np.zeros_like(depth)
    box = (slice(int(top * rows), int(bottom * rows)), slice(int(left * cols), int(right * cols)))
    kept[box] = depth[box]
    return kept


@DATASETS.register("cityscapes")
class Cityscapes(DenseDataset):
    """Cityscapes frames with labels (19 classes) and metric depth (from the disparity)."""

    n_classes = len(CITYSCAPES_CLASS_NAMES)
    class_names = CITYSCAPES_CLASS_NAMES
    class_colors = CITYSCAPES_COLORS
    given_keys = ("image", "label", "depth")

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, label_type="labelIds", max_depth=None, depth_roi=None):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        self.require_keys()
        if label_type not in LABEL_TYPES:
            raise PtsemsegError(f"Cityscapes label_type must be one of {', '.join(LABEL_TYPES)}, got '{label_type}'")
        if not root:
            raise PtsemsegError("data.path is not set: point it at the Cityscapes folder holding leftImg8bit/")
        if depth_roi is not None and not (isinstance(depth_roi, (list, tuple)) and len(depth_roi) == 4
                                          and 0 <= depth_roi[0] < depth_roi[1] <= 1
                                          and 0 <= depth_roi[2] < depth_roi[3] <= 1):
            raise PtsemsegError(f"Cityscapes depth_roi must be [top, bottom, left, right] fractions with "
                                f"top < bottom and left < right, got {depth_roi!r}")
        self.label_type = label_type
        self.max_depth = max_depth
        self.depth_roi = depth_roi
        image_dir = require_path(os.path.join(root, "leftImg8bit", split), f"Cityscapes {split} images", SECTION)
        images = sorted(glob.glob(os.path.join(image_dir, "*", "*" + IMAGE_SUFFIX)))
        if not images:
            raise PtsemsegError(f"no *{IMAGE_SUFFIX} files in {image_dir}/<city>/")
        self.stems = [os.path.relpath(path, image_dir)[:-len(IMAGE_SUFFIX)] for path in images]
        # Intrinsics come with every frame when the camera zip is there (always for depth, optional otherwise).
        self.with_camera = "depth" in self.keys or os.path.isdir(os.path.join(root, "camera", split))
        required = {"label": ("gtFine", f"_gtFine_{label_type}.png"), "depth": ("disparity", "_disparity.png")}
        for folder, suffix in [required[key] for key in self.keys if key in required] + (
                [("camera", "_camera.json")] if self.with_camera else []):
            self._check_exist(folder, suffix)

    def _path(self, folder, stem, suffix):
        return os.path.join(self.root, folder, self.split, stem + suffix)

    def _check_exist(self, folder, suffix):
        """Fail before training when the split's files of one kind are missing, naming the first."""
        require_path(os.path.join(self.root, folder, self.split), f"Cityscapes {folder} for '{self.split}'", SECTION)
        missing = [stem for stem in self.stems if not os.path.isfile(self._path(folder, stem, suffix))]
        if missing:
            raise PtsemsegError(f"{len(missing)} of {len(self.stems)} Cityscapes {self.split} images have no "
                                f"{folder} file, first: {self._path(folder, missing[0], suffix)}")

    def __len__(self):
        return len(self.stems)

    def load(self, index):
        stem = self.stems[index]
        sample = {"image": read_rgb(self._path("leftImg8bit", stem, IMAGE_SUFFIX)),
                  "meta": {"name": stem, "index": index}}
        if self.with_camera:
            K, baseline = read_camera(self._path("camera", stem, "_camera.json"))
            sample["meta"]["K"] = K
        if "label" in self.keys:
            path = self._path("gtFine", stem, f"_gtFine_{self.label_type}.png")
            label = read_gray(path)
            if label.dtype != np.uint8:
                raise CorruptFileError(f"expected an 8-bit label PNG, got {label.dtype}: {path}")
            sample["label"] = label_ids_to_train_ids(label) if self.label_type == "labelIds" else label
        if "depth" in self.keys:
            disparity = read_png16(self._path("disparity", stem, "_disparity.png"))
            sample["depth"] = disparity_to_depth(disparity, baseline, K[0, 0], self.max_depth)
            if self.depth_roi is not None:
                sample["depth"] = keep_region(sample["depth"], self.depth_roi)
        for key in ("label", "depth"):
            if key in sample and sample[key].shape != sample["image"].shape[:2]:
                raise CorruptFileError(f"{key} of {stem} does not match its image size "
                                       f"{sample['image'].shape[1]}×{sample['image'].shape[0]}")
        return self.asked(sample)
