"""SUN RGB-D: 37-class segmentation and metric depth (5285 train / 5050 test frames).

Layouts (`layout`, default `auto`):
- `official`: SUNRGBD.zip extracted into `data.path` (frame folders `SUNRGBD/<sensor>/.../<frame>/` with
  `image/*.jpg`, `depth_bfx/*.png` (filled), `depth/*.png` (raw), `intrinsics.txt`), plus
  - the split: `sunrgbd_training_images.txt` / `sunrgbd_testing_images.txt` (image paths, one per line)
    in `data.path`, or else the toolbox's `SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat` (`alltrain`/`alltest`);
  - the labels (`label_source`): `png` = the 37-class PNGs of sunrgbd_train_test_labels.tar.gz in
    `sunrgbd_train_test_labels/img-NNNNNN.png` (numbered 1..5050 in the order of the test list, then
    5051..10335 in the order of the training list, so the two lists are needed), or `toolbox` =
    `SUNRGBDtoolbox/Metadata/SUNRGBD2Dseg.mat` (MATLAB v7.3, `SUNRGBD2Dseg.seglabel`) whose entries follow
    `SUNRGBDMeta.mat` (its `rgbpath` names each entry's frame). `auto` takes `png` when the folder exists.
  Precomputed HHA is read from `<frame>/hha/<image stem>.png` when present (tools/hha.py writes it).
- `folder`: the reorganised copy (chrischoy/SUN_RGBD, used by MSeg): `train37.txt`/`test37.txt` listing
  `image/<split>/img-NNNNNN.jpg depth/<split>/NNNNNNNN.png label37/<split>/...png` per line, labels 0 = void,
  1..37. Its depth PNGs are read with `depth_encoding` (default `sunrgbd`, the official bit layout; `mm` for
  plain millimetres). It carries no intrinsics, so `hha` needs `hha/<split>/<image stem>.png` files.

Keys: image, depth (`depth_source`: filled `depth_bfx/` or raw `depth/`), raw_depth (`depth/`), label, scene
(from each frame's `scene.txt`) and hha in the official layout; image, depth, label and hha in the folder layout.
Only the keys asked for are read.
Depth PNGs of the official layout store millimetres rotated right by 3 bits (decoded by
ptsemseg.depth_utils.decode_sunrgbd_depth); the toolbox caps depth at 8 m, this loader does not.
Labels: 0..36, void → 255. Scene: the 19 scene categories of the SUN RGB-D paper's scene classification
benchmark (SUNRGBD_SCENE_CLASSES, the scene types with more than 80 frames); other scene types → 255 (ignored).
In the official layout, frames without an HHA file get it computed from their depth and intrinsics.txt
(ptsemseg.depth_utils.hha_encode, about 0.4 s a frame on one core).
"""
import functools
import os
import posixpath

import h5py
import numpy as np

from ptsemseg.depth_utils import (PLAUSIBLE_INDOOR_MEDIAN_M, decode_sunrgbd_depth, hha_encode, median_depth,
                                  mm_to_depth)
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import (CorruptFileError, read_gray, read_mat, read_png16, read_rgb,
                                 require_path, require_root)
from ptsemseg.schema import spatial_keys
from ptsemseg.loaders.nyuv2 import LazyH5

SECTION = "SUN RGB-D"
LAYOUTS = ("auto", "official", "folder")
LABEL_SOURCES = ("auto", "png", "toolbox")
SPLITS = {"train": "train", "test": "test", "val": "test"}
LIST_FILES = {"train": "sunrgbd_training_images.txt", "test": "sunrgbd_testing_images.txt"}
LABEL_DIR = "sunrgbd_train_test_labels"
TOOLBOX = "SUNRGBDtoolbox"
ALLSPLIT = os.path.join(TOOLBOX, "traintestSUNRGBD", "allsplit.mat")
SEG_MAT = os.path.join(TOOLBOX, "Metadata", "SUNRGBD2Dseg.mat")
META_MAT = os.path.join(TOOLBOX, "Metadata", "SUNRGBDMeta.mat")
IGNORE_INDEX = 255

# seg37list.mat order (labels 1..37).
SUNRGBD_CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor_mat", "clothes",
    "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain", "box", "whiteboard", "person",
    "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
)


def _label_table():
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1:38] = np.arange(37)
    return table


# 0 = void, 1..37 → 0..36; anything else → 255.
LABEL_TABLE = _label_table()

# The 19 scene categories of Song et al., "SUN RGB-D" (CVPR 2015), scene classification benchmark.
SUNRGBD_SCENE_CLASSES = (
    "bathroom", "bedroom", "classroom", "computer_room", "conference_room", "corridor", "dining_area",
    "dining_room", "discussion_area", "furniture_store", "home_office", "kitchen", "lab", "lecture_theatre",
    "library", "living_room", "office", "rest_space", "study_space",
)


def scene_index(scene_type):
    """Scene class of a frame's `scene.txt` text: its index in SUNRGBD_SCENE_CLASSES, else 255 (ignored)."""
    name = scene_type.strip().lower()
    return SUNRGBD_SCENE_CLASSES.index(name) if name in SUNRGBD_SCENE_CLASSES else IGNORE_INDEX


def frame_dir(path):
    """The frame folder, relative to the SUNRGBD/ folder, of an image path or a frame path in any of the
    official notations ('/n/fs/sun3d/data/SUNRGBD/kv1/...', 'SUNRGBD/kv1/NYUdata/NYU0001//image/x.jpg')."""
    path = posixpath.normpath(path.strip().replace("\\", "/"))
    marker = "SUNRGBD/"
    if marker in path + "/":
        path = (path + "/").split(marker, 1)[1].rstrip("/")
    parts = path.split("/")
    if len(parts) >= 2 and parts[-2] == "image":
        parts = parts[:-2]
    return "/".join(parts)


def read_list(path):
    """Frame folders of a sunrgbd_*_images.txt list, in file order."""
    with open(path, encoding="utf-8") as handle:
        frames = [frame_dir(line) for line in handle if line.strip()]
    if not frames:
        raise PtsemsegError(f"{path} lists no frames")
    return frames


def read_allsplit(path, split):
    """Frame folders of `split` from the toolbox's allsplit.mat (`alltrain` / `alltest`)."""
    key = {"train": "alltrain", "test": "alltest"}[split]
    entries = read_mat(path, [key])[key]
    return [frame_dir(str(np.asarray(entry).ravel()[0])) for entry in entries.ravel()]


@functools.lru_cache(maxsize=2)
def _toolbox_index(meta_path, mtime):
    """{frame folder: entry index} from SUNRGBDMeta.mat (read once per process; it is large)."""
    del mtime  # part of the cache key only
    meta = read_mat(meta_path, ["SUNRGBDMeta"], squeeze_me=True, struct_as_record=False)["SUNRGBDMeta"]
    return {frame_dir(str(entry.rgbpath)): index for index, entry in enumerate(np.atleast_1d(meta))}


def read_intrinsics(path):
    """3×3 float32 K from a frame's intrinsics.txt (nine numbers, row by row)."""
    try:
        values = np.loadtxt(path, dtype=np.float64).ravel()
    except (ValueError, OSError) as err:
        raise CorruptFileError(f"cannot read intrinsics {path} ({err})") from None
    if values.size != 9:
        raise CorruptFileError(f"expected 9 numbers in {path}, got {values.size}")
    return values.reshape(3, 3).astype(np.float32)


def _only_file(folder, extensions):
    """The single image file of a frame subfolder (official frame folders hold exactly one)."""
    if not os.path.isdir(folder):
        raise PtsemsegError(f"folder not found: {folder}")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(extensions))
    if not names:
        raise PtsemsegError(f"no {'/'.join(extensions)} file in {folder}")
    return os.path.join(folder, names[0])


def _check_plausible(depth, path, encoding):
    median = median_depth(depth)
    if median > PLAUSIBLE_INDOOR_MEDIAN_M:
        other = "mm" if encoding == "sunrgbd" else "sunrgbd"
        raise PtsemsegError(f"depth {path} decodes to a median of {median:.1f} m with "
                            f"depth_encoding '{encoding}': set data.depth_encoding: {other}")


@DATASETS.register("sunrgbd")
class SUNRGBD(DenseDataset):
    """SUN RGB-D frames from the official SUNRGBD tree (labels from the toolbox or the label PNGs) or the
    reorganised folder copy."""

    n_classes = len(SUNRGBD_CLASS_NAMES)
    class_names = SUNRGBD_CLASS_NAMES
    n_scene_classes = len(SUNRGBD_SCENE_CLASSES)
    scene_names = SUNRGBD_SCENE_CLASSES
    given_keys = ("image", "depth", "raw_depth", "label", "scene", "hha")

    @classmethod
    def keys_for(cls, split, layout="auto", **options):
        return ("image", "depth", "label", "hha") if layout == "folder" else cls.given_keys

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, layout="auto", label_source="auto", depth_source="filled", depth_encoding="sunrgbd"):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        for name, value, choices in (("layout", layout, LAYOUTS), ("label_source", label_source, LABEL_SOURCES),
                                     ("depth_source", depth_source, ("filled", "raw")),
                                     ("depth_encoding", depth_encoding, ("sunrgbd", "mm")),
                                     ("split", split, tuple(SPLITS))):
            if value not in choices:
                raise PtsemsegError(f"SUN RGB-D {name} must be one of {', '.join(choices)}, got '{value}'")
        require_root(root, "the folder holding SUNRGBD/", "SUN RGB-D root", SECTION)
        self.subset = SPLITS[split]
        self.depth_source = depth_source
        self.depth_encoding = depth_encoding
        self.layout = self._detect_layout(root) if layout == "auto" else layout
        self.require_keys(layout=self.layout)
        if self.layout == "official":
            self._init_official(label_source)
        else:
            self._init_folder()

    @staticmethod
    def _detect_layout(root):
        if os.path.isdir(os.path.join(root, "SUNRGBD")):
            return "official"
        if os.path.isfile(os.path.join(root, "train37.txt")) or os.path.isfile(os.path.join(root, "test37.txt")):
            return "folder"
        raise PtsemsegError(f"no SUN RGB-D data in {root}: expected SUNRGBD/ (layout official) or "
                            f"train37.txt/test37.txt (layout folder) (see README.md#datasets, section '{SECTION}')")

    # ------------------------------------------------------------------------------------ official layout
    def _init_official(self, label_source):
        list_path = os.path.join(self.root, LIST_FILES[self.subset])
        if os.path.isfile(list_path):
            self.frames = read_list(list_path)
        else:
            allsplit = os.path.join(self.root, ALLSPLIT)
            if not os.path.isfile(allsplit):
                raise PtsemsegError(f"SUN RGB-D split not found: expected {list_path} or {allsplit} "
                                    f"(see README.md#datasets, section '{SECTION}')")
            self.frames = read_allsplit(allsplit, self.subset)
        missing = [frame for frame in self.frames if not os.path.isdir(self.frame_path(frame))]
        if missing:
            raise PtsemsegError(f"{len(missing)} of {len(self.frames)} SUN RGB-D {self.subset} frames are missing, "
                                f"first: {self.frame_path(missing[0])} (see README.md#datasets, section '{SECTION}')")
        if "label" in self.keys:
            if label_source == "auto":
                label_source = "png" if os.path.isdir(os.path.join(self.root, LABEL_DIR)) else "toolbox"
            self.label_source = label_source
            (self._init_png_labels if label_source == "png" else self._init_toolbox_labels)()

    def frame_path(self, frame):
        """Absolute folder of a frame given relative to SUNRGBD/."""
        return os.path.join(self.root, "SUNRGBD", *frame.split("/"))

    def _init_png_labels(self):
        label_dir = require_path(os.path.join(self.root, LABEL_DIR), "SUN RGB-D label PNGs", SECTION)
        for subset in ("train", "test"):
            require_path(os.path.join(self.root, LIST_FILES[subset]),
                         f"SUN RGB-D {subset} list (it orders the label PNGs)", SECTION)
        # Test frames come first (img-000001 … img-005050), then the training frames.
        offset = 0 if self.subset == "test" else len(read_list(os.path.join(self.root, LIST_FILES["test"])))
        self.label_paths = [os.path.join(label_dir, f"img-{offset + i + 1:06d}.png") for i in range(len(self.frames))]
        require_path(self.label_paths[0], "SUN RGB-D label PNG", SECTION)

    def _init_toolbox_labels(self):
        seg_path = require_path(os.path.join(self.root, SEG_MAT), "SUN RGB-D SUNRGBD2Dseg.mat", SECTION)
        meta_path = require_path(os.path.join(self.root, META_MAT), "SUN RGB-D SUNRGBDMeta.mat", SECTION)
        index = _toolbox_index(meta_path, os.path.getmtime(meta_path))
        unknown = [frame for frame in self.frames if frame not in index]
        if unknown:
            raise PtsemsegError(f"{len(unknown)} SUN RGB-D {self.subset} frames are not in {meta_path}, "
                                f"first: {unknown[0]}")
        self.seg_entries = [index[frame] for frame in self.frames]
        try:
            with h5py.File(seg_path, "r") as handle:
                count = handle["SUNRGBD2Dseg"]["seglabel"].size
        except (OSError, KeyError) as err:
            raise CorruptFileError(f"cannot read SUNRGBD2Dseg.seglabel from {seg_path} ({err})") from None
        if count <= max(self.seg_entries):
            raise CorruptFileError(f"{seg_path} holds {count} labels but {meta_path} names {len(index)} frames")
        self.seg_mat = LazyH5(seg_path)

    def _toolbox_label(self, index):
        entry = self.seg_entries[index]
        try:
            seg = self.seg_mat.get()["SUNRGBD2Dseg"]
            references = seg["seglabel"]
            reference = references[np.unravel_index(entry, references.shape)]
            # Column-major MATLAB array: h5py sees it as W×H.
            label = np.asarray(seg.file[reference]).T
        except (OSError, KeyError, ValueError) as err:
            raise CorruptFileError(f"cannot read SUNRGBD2Dseg.seglabel[{entry}] from {self.seg_mat.path} ({err})") \
                from None
        if label.min() < 0 or label.max() > 37:
            raise CorruptFileError(f"{self.seg_mat.path}: seglabel[{entry}] has labels outside 0..37")
        return LABEL_TABLE[label.astype(np.uint8)]

    def _load_official(self, index):
        frame = self.frames[index]
        folder = self.frame_path(frame)
        image_path = _only_file(os.path.join(folder, "image"), (".jpg", ".png"))
        K = read_intrinsics(os.path.join(folder, "intrinsics.txt"))
        sample = {"image": read_rgb(image_path), "meta": {"name": frame, "index": index, "K": K}}
        hha_path = os.path.join(folder, "hha", os.path.splitext(os.path.basename(image_path))[0] + ".png")
        if "depth" in self.keys or ("hha" in self.keys and not os.path.isfile(hha_path)):
            depth_folder = "depth_bfx" if self.depth_source == "filled" else "depth"
            depth_path = _only_file(os.path.join(folder, depth_folder), (".png",))
            sample["depth"] = decode_sunrgbd_depth(read_png16(depth_path))
        if "raw_depth" in self.keys:
            sample["raw_depth"] = decode_sunrgbd_depth(read_png16(_only_file(os.path.join(folder, "depth"), (".png",))))
        if "label" in self.keys:
            if self.label_source == "png":
                sample["label"] = LABEL_TABLE[self._read_label_png(self.label_paths[index])]
            else:
                sample["label"] = self._toolbox_label(index)
        if "scene" in self.keys:
            scene_path = os.path.join(folder, "scene.txt")
            if not os.path.isfile(scene_path):
                raise PtsemsegError(f"file not found: {scene_path}")
            with open(scene_path, encoding="utf-8") as handle:
                sample["scene"] = scene_index(handle.read())
        if "hha" in self.keys:
            sample["hha"] = read_rgb(hha_path) if os.path.isfile(hha_path) else hha_encode(sample["depth"], K)
        return sample

    # -------------------------------------------------------------------------------------- folder layout
    def _init_folder(self):
        list_path = require_path(os.path.join(self.root, f"{self.subset}37.txt"), f"SUN RGB-D {self.subset} list",
                                 SECTION)
        with open(list_path, encoding="utf-8") as handle:
            self.entries = [line.split() for line in handle if line.strip()]
        bad = [entry for entry in self.entries if len(entry) != 3]
        if bad or not self.entries:
            raise PtsemsegError(f"{list_path}: every line must hold 'image depth label' paths"
                                + (f", got {' '.join(bad[0])!r}" if bad else " (the file is empty)"))
        for key, path in zip(("image", "depth", "label"), self.entries[0]):
            if key == "image" or key in self.keys:
                require_path(os.path.join(self.root, path), "SUN RGB-D file of the first listed frame", SECTION)

    def _load_folder(self, index):
        image_rel, depth_rel, label_rel = self.entries[index]
        stem = os.path.splitext(os.path.basename(image_rel))[0]
        sample = {"image": read_rgb(os.path.join(self.root, image_rel)), "meta": {"name": stem, "index": index}}
        if "depth" in self.keys:
            depth_path = os.path.join(self.root, depth_rel)
            raw = read_png16(depth_path)
            sample["depth"] = decode_sunrgbd_depth(raw) if self.depth_encoding == "sunrgbd" else mm_to_depth(raw)
            _check_plausible(sample["depth"], depth_path, self.depth_encoding)
        if "label" in self.keys:
            sample["label"] = LABEL_TABLE[self._read_label_png(os.path.join(self.root, label_rel))]
        if "hha" in self.keys:
            hha_path = os.path.join(self.root, "hha", self.subset, stem + ".png")
            if not os.path.isfile(hha_path):
                raise PtsemsegError(f"HHA not found: expected {hha_path} (the folder layout has no intrinsics to "
                                    f"compute it from; see README.md#datasets, section '{SECTION}')")
            sample["hha"] = read_rgb(hha_path)
        return sample

    # ------------------------------------------------------------------------------------------- common
    @staticmethod
    def _read_label_png(path):
        label = read_gray(path)
        if label.dtype != np.uint8:
            raise CorruptFileError(f"expected an 8-bit label PNG, got {label.dtype}: {path}")
        return label

    def __len__(self):
        return len(self.frames) if self.layout == "official" else len(self.entries)

    def load(self, index):
        sample = (self._load_official if self.layout == "official" else self._load_folder)(index)
        image = sample["image"]
        for key in spatial_keys(sample):
            if sample[key].shape[:2] != image.shape[:2]:
                raise CorruptFileError(f"{key} of SUN RGB-D frame {sample['meta']['name']} is "
                                       f"{sample[key].shape[1]}×{sample[key].shape[0]}, its image "
                                       f"{image.shape[1]}×{image.shape[0]}")
        return self.asked(sample)
