"""NYU Depth v2 (the 1449 densely labelled frames): 40- or 13-class segmentation, metric depth, scene class.

Layouts (`layout`, default `auto` picks the first that `data.path` holds):
- `mat`: the official `nyu_depth_v2_labeled.mat` (MATLAB v7.3, i.e. HDF5) with `splits.mat` (795 train /
  654 test, 1-based) and `classMapping40.mat` (894 raw classes → 40) beside it.
- `folder`: `RGB/<id>.png|jpg`, `Depth/<id>.png` (uint16 millimetres) or `Depth/<id>.npy` (float metres),
  optional `RawDepth/<id>.png`, `Label/<id>.png` (uint8, 0 = void, 1..40, or 1..13 with `label_set: 13`),
  optional `HHA/<id>.png|jpg`,
  `train.txt`/`test.txt` (first field of each line is the RGB path; SA-Gate's tab-separated lists work) and
  optional `scenes.txt` (`<id> <scene type>`). tools/nyu_export.py writes it from the .mat file.
- `fusenet_h5`: FuseNet's `nyu_class_10_db.h5` (`rgb_*`, `depth_*`, `label_*`, `class_*` per split, 320×240).
  Its depth was rescaled to 0..255 when the file was made, so it is not metric: values are mapped linearly
  to 0..`fusenet_depth_max` metres for RGB-D inputs, never as a target, and only with `layout: fusenet_h5`
  set explicitly.

Keys: image, depth (`depth_source`: filled or raw), raw_depth (the measured depth), label, scene, hha; the
fusenet_h5 layout gives image, depth (as an input only), label and scene. Only the keys asked for are read.
Labels: 0..39 (or 0..12 with `n_classes: 13`, via the 40→13 table of class13Mapping.mat), void → 255. The label
files of the folder layout hold the 40-class set or the 13-class one (ankurhanda/nyuv2-meta-data's
`new_nyu_class13_*.png`): `label_set: 40 | 13`; `auto` (the default) reads the first label files and takes 40 when
an id above 13 occurs, otherwise fails in one line asking for it. An id above the set's size fails naming its file.
The raw Kinect frames of the raw dataset are the separate dataset `nyuv2_raw` (ptsemseg/loaders/nyuv2_raw.py).
Scene: FuseNet's 10 scene classes (0..9, see NYU_SCENE_CLASSES), where the layout records scene types.
Splits: `train` and `test`; `val` is the test split (NYUv2 has no separate validation set).
HHA: read from `HHA/` where the folder layout has it, otherwise computed per frame from the depth and
intrinsics (ptsemseg.depth_utils.hha_encode, about 0.4 s for 640×480 on one core).
"""
import os

import h5py
import numpy as np

from ptsemseg.depth_utils import (PLAUSIBLE_INDOOR_MEDIAN_M, hha_encode, median_depth, mm_to_depth,
                                  scale_intrinsics)
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import (CorruptFileError, read_gray, read_mat, read_png16, read_rgb,
                                 require_path, require_root)
from ptsemseg.schema import spatial_keys

SECTION = "NYUv2"
LAYOUTS = ("auto", "mat", "folder", "fusenet_h5")
LABEL_SETS = ("auto", 40, 13)
# Label files `auto` reads before deciding: a 40-class frame shows ids above 13 (otherprop, ceiling...) at once.
LABEL_SET_PROBE_FILES = 10
N_RAW_CLASSES = 894
SPLITS = {"train": "train", "test": "test", "val": "test"}
MAT_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
MAPPING40_FILE = "classMapping40.mat"
FUSENET_FILE = "nyu_class_10_db.h5"
IGNORE_INDEX = 255
FUSENET_DEPTH = "FuseNet's h5 stores depth rescaled to 0..255, not metres"

# RGB intrinsics from the NYU toolbox's camera_params.m (Bouguet calibration, pixel (0, 0) = top-left centre),
# valid for the 640×480 frames of the labelled set.
NYU_K = np.array([[518.857901, 0.0, 325.582449], [0.0, 519.469611, 253.736166], [0.0, 0.0, 1.0]], dtype=np.float32)
NYU_SIZE = (480, 640)

# `className` of classMapping40.mat, in label order 1..40 (the file's spelling kept).
NYU40_CLASS_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
    "otherprop",
)
# class13Mapping.mat: `classNames` and `labels13` (the 13-class label, 1-based, of each 40-class label).
NYU13_CLASS_NAMES = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
                     "table", "tv", "wall", "window")
NYU40_TO_13 = (12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5, 7, 3, 2, 6, 11, 7, 7, 7, 7, 7,
               7, 6, 7, 7, 7, 7, 7, 7, 6, 7)

# FuseNet's 10 scene classes: the nine most frequent of NYU's 27 scene types, the rest in "others". Source: the
# "NYU 10-Scene Mapping" table of FuseNet_PyTorch (github.com/zanilzanzan/FuseNet_PyTorch, utils/nyu_scene_mapping.txt;
# utils/text/ in later versions), which lists all 27 types with their class (1-based there, 0-based here).
NYU_SCENE_CLASSES = ("bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office", "home_office",
                     "classroom", "bookstore", "others")


def scene_class(scene_type):
    """0..9 scene class of a NYU scene type string (e.g. 'living_room' → 2, 'cafe' → 9)."""
    name = scene_type.strip().lower()
    return NYU_SCENE_CLASSES.index(name) if name in NYU_SCENE_CLASSES[:-1] else len(NYU_SCENE_CLASSES) - 1


def label40_table(n_classes):
    """uint8 look-up table over 0..255: 40-class label (0 = void) → training label of `n_classes`."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    targets = np.arange(40) if n_classes == 40 else np.array(NYU40_TO_13) - 1
    table[1:41] = targets
    return table


def label_file_table(label_set, n_classes):
    """uint8 look-up table over 0..255: id in a label file of `label_set` (0 = void) → training label."""
    if label_set == 40:
        return label40_table(n_classes)
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    table[1:14] = np.arange(13)
    return table


def check_label_ids(label, label_set, path):
    """Fail naming `path` when a label id is above the label set's classes (0 = void, 1..label_set)."""
    top = int(label.max()) if label.size else 0
    if top > label_set:
        raise CorruptFileError(f"label id {top} in {path} is above the {label_set}-class set (0 = void, "
                               f"1..{label_set})" + ("; 40-class files need data.label_set: 40" if label_set == 13
                                                     else ""))


def raw894_table(map_class, n_classes):
    """uint8 look-up table over all uint16 values: raw NYU label (0 = void, 1..894) → training label."""
    map_class = np.asarray(map_class).ravel().astype(np.int64)
    if map_class.size != 894 or map_class.min() < 0 or map_class.max() > 40:
        raise PtsemsegError(f"classMapping40.mat: mapClass must hold 894 values in 0..40, got {map_class.size} "
                            f"values in {map_class.min()}..{map_class.max()}")
    table = np.full(65536, IGNORE_INDEX, dtype=np.uint8)
    table[1:895] = label40_table(n_classes)[map_class]
    return table


def read_split_indices(path, split):
    """0-based frame indices of `split` from the official splits.mat (trainNdxs / testNdxs are 1-based)."""
    key = {"train": "trainNdxs", "test": "testNdxs"}[split]
    indices = np.asarray(read_mat(path, [key])[key]).ravel().astype(np.int64)
    if indices.size == 0 or indices.min() < 1:
        raise CorruptFileError(f"{path}: '{key}' must hold 1-based frame indices")
    return indices - 1


def read_class_mapping(path):
    """(mapClass: 894 values in 0..40, className: 40 names) from classMapping40.mat."""
    mat = read_mat(path, ["mapClass", "className"], required=["mapClass"])
    names = tuple(str(np.asarray(name).ravel()[0]) for name in mat["className"].ravel()) if "className" in mat else ()
    return mat["mapClass"].ravel(), names


def matlab_string(handle, reference):
    """A MATLAB char array stored in a v7.3 file (uint16 code units behind an object reference)."""
    return "".join(chr(code) for code in np.asarray(handle[reference]).ravel())


class LazyH5:
    """An h5py file opened on first use in each process, so DataLoader workers never share a handle."""

    def __init__(self, path):
        self.path = path
        self._handle = None
        self._pid = None

    def get(self):
        if self._handle is None or self._pid != os.getpid():
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as err:
                raise CorruptFileError(f"cannot open {self.path} as HDF5 ({err})") from None
            self._pid = os.getpid()
        return self._handle

    def close(self):
        if self._handle is not None:
            self._handle.close()
        self._handle = None

    def __getstate__(self):
        return {"path": self.path, "_handle": None, "_pid": None}


def _read(handle, key, index, path):
    """handle[key][index], turning HDF5 read failures into an error that names the file."""
    try:
        return np.asarray(handle[key][index])
    except (OSError, KeyError, ValueError) as err:
        raise CorruptFileError(f"cannot read {key}[{index}] from {path} ({err})") from None


@DATASETS.register("nyuv2")
class NYUv2(DenseDataset):
    """NYU Depth v2 labelled frames from the official .mat file, an exported folder, or FuseNet's h5."""

    n_scene_classes = len(NYU_SCENE_CLASSES)
    scene_names = NYU_SCENE_CLASSES
    given_keys = ("image", "depth", "raw_depth", "label", "scene", "hha")

    @classmethod
    def keys_for(cls, split, layout="auto", **options):
        return ("image", "depth", "label", "scene") if layout == "fusenet_h5" else cls.given_keys

    @classmethod
    def class_names_for(cls, n_classes=None, label_set="auto", **options):
        return NYU13_CLASS_NAMES if 13 in (n_classes, label_set) else NYU40_CLASS_NAMES

    @classmethod
    def camera(cls, **options):
        return NYU_K, NYU_SIZE

    @classmethod
    def input_only_keys(cls, split, layout="auto", **options):
        return {"depth": FUSENET_DEPTH} if layout == "fusenet_h5" else {}

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, n_classes=None, layout="auto", depth_source="filled", fusenet_depth_max=10.0,
                 label_set="auto"):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        if n_classes not in (None, 40, 13):
            raise PtsemsegError(f"NYUv2 n_classes must be 40 or 13, got {n_classes!r}")
        if label_set not in LABEL_SETS:
            raise PtsemsegError(f"NYUv2 label_set must be auto, 40 or 13, got {label_set!r}")
        if layout not in LAYOUTS:
            raise PtsemsegError(f"NYUv2 layout must be one of {', '.join(LAYOUTS)}, got '{layout}'")
        if depth_source not in ("filled", "raw"):
            raise PtsemsegError(f"NYUv2 depth_source must be 'filled' or 'raw', got '{depth_source}'")
        if split not in SPLITS:
            raise PtsemsegError(f"NYUv2 split must be one of {', '.join(SPLITS)}, got '{split}'")
        require_root(root, f"the folder holding {MAT_FILE}", "NYUv2 root", SECTION)
        self.set_classes(n_classes or 40)
        self.subset = SPLITS[split]
        self.depth_source = depth_source
        self.fusenet_depth_max = float(fusenet_depth_max)
        self.layout = self._detect_layout(root) if layout == "auto" else layout
        self.require_keys(layout=self.layout)
        if label_set == 13 and self.layout != "folder":
            raise PtsemsegError(f"NYUv2 label_set: 13 applies to label files of the folder layout; layout "
                                f"{self.layout} holds {'894' if self.layout == 'mat' else '40'}-class labels")
        if self.layout == "fusenet_h5" and layout == "auto" and "depth" in self.keys:
            raise PtsemsegError(f"{root} holds FuseNet's h5 file: {FUSENET_DEPTH}; set data.layout: fusenet_h5 to "
                                "feed it to a model as an input (depth targets need layout mat or folder)")
        {"mat": self._init_mat, "folder": self._init_folder, "fusenet_h5": self._init_fusenet}[self.layout]()
        self.label_set = label_set
        if label_set == "auto":
            self.label_set = self._detect_label_set() if self.layout == "folder" and "label" in self.keys else 40
        if self.label_set == 13:
            if n_classes == 40:
                raise PtsemsegError("NYUv2 label files of the 13-class set cannot give n_classes: 40 "
                                    "(set n_classes: 13, or point data.path at 40-class labels)")
            self.set_classes(13)
        self.file_label_table = label_file_table(self.label_set, self.n_classes)

    def set_classes(self, n_classes):
        """Train on the 40- or the 13-class set."""
        self.n_classes = n_classes
        self.class_names = NYU40_CLASS_NAMES if n_classes == 40 else NYU13_CLASS_NAMES

    @staticmethod
    def _detect_layout(root):
        if (os.path.isfile(root) and root.endswith(".h5")) or os.path.isfile(os.path.join(root, FUSENET_FILE)):
            return "fusenet_h5"
        if os.path.isfile(os.path.join(root, MAT_FILE)):
            return "mat"
        if os.path.isdir(os.path.join(root, "RGB")):
            return "folder"
        raise PtsemsegError(f"no NYUv2 data in {root}: expected {MAT_FILE} (layout mat), RGB/ with train.txt "
                            f"(layout folder) or {FUSENET_FILE} (layout fusenet_h5) "
                            f"(see README.md#datasets, section '{SECTION}')")

    # ----------------------------------------------------------------------------------------- mat layout
    def _init_mat(self):
        path = require_path(os.path.join(self.root, MAT_FILE), "NYUv2 labelled .mat file", SECTION)
        splits = require_path(os.path.join(self.root, SPLITS_FILE), "NYUv2 split file", SECTION)
        self.indices = read_split_indices(splits, self.subset)
        if "label" in self.keys:
            mapping = require_path(os.path.join(self.root, MAPPING40_FILE), "NYUv2 40-class mapping", SECTION)
            map_class, _ = read_class_mapping(mapping)
            self.label_table = raw894_table(map_class, self.n_classes)
        self.mat = LazyH5(path)
        handle = self.mat.get()
        missing = [key for key in ("images", "depths", "rawDepths", "labels") if key not in handle]
        if missing:
            raise CorruptFileError(f"{path} lacks the dataset(s) {', '.join(missing)}: not {MAT_FILE}?")
        frames = handle["images"].shape[0]
        if self.indices.max() >= frames:
            raise PtsemsegError(f"{splits} refers to frame {self.indices.max() + 1} but {path} holds {frames}")
        if "scene" in self.keys:
            if "sceneTypes" not in handle:
                raise CorruptFileError(f"{path} has no sceneTypes to give 'scene' from")
            references = np.asarray(handle["sceneTypes"]).ravel()
            self.scene_types = [matlab_string(handle, references[i]) for i in self.indices]
        self.mat.close()

    def _load_mat(self, index):
        handle, path, frame = self.mat.get(), self.mat.path, int(self.indices[index])
        # MATLAB stores arrays column-major: h5py sees images as (N, 3, W, H) and maps as (N, W, H).
        image = _read(handle, "images", frame, path).transpose(2, 1, 0)
        K = scale_intrinsics(NYU_K, NYU_SIZE, image.shape[:2])
        sample = {"image": np.ascontiguousarray(image), "meta": {"name": f"{frame + 1:04d}", "index": index, "K": K}}
        needed = {self.depth_source} if "depth" in self.keys else set()
        needed |= {"raw"} if "raw_depth" in self.keys else set()
        needed |= {"filled", "raw"} if "hha" in self.keys else set()
        depths = {source: _read(handle, key, frame, path).T.astype(np.float32)
                  for source, key in (("filled", "depths"), ("raw", "rawDepths")) if source in needed}
        if "depth" in self.keys:
            sample["depth"] = depths[self.depth_source].copy()
        if "raw_depth" in self.keys:
            sample["raw_depth"] = depths["raw"]
        if "label" in self.keys:
            labels = _read(handle, "labels", frame, path)
            if int(labels.max()) > N_RAW_CLASSES:
                raise CorruptFileError(f"labels[{frame}] of {path} holds id {int(labels.max())}, above NYU's "
                                       f"{N_RAW_CLASSES} raw classes")
            sample["label"] = self.label_table[labels.T]
        if "scene" in self.keys:
            sample["scene"] = scene_class(self.scene_types[index])
        if "hha" in self.keys:
            sample["hha"] = hha_encode(depths["filled"], K, valid=depths["raw"] > 0)
        return self.asked(sample)

    # -------------------------------------------------------------------------------------- folder layout
    def _init_folder(self):
        list_path = require_path(os.path.join(self.root, f"{self.subset}.txt"), f"NYUv2 {self.subset} list", SECTION)
        with open(list_path, encoding="utf-8") as handle:
            entries = [line.split() for line in handle if line.strip()]
        if not entries:
            raise PtsemsegError(f"{list_path} lists no frames")
        self.rgb_paths = [entry[0] for entry in entries]
        self.label_paths = [entry[1] if len(entry) > 1 else os.path.join("Label", self._stem(entry[0]) + ".png")
                            for entry in entries]
        first = self._stem(self.rgb_paths[0])
        require_path(os.path.join(self.root, self.rgb_paths[0]), "NYUv2 RGB image", SECTION)
        if "label" in self.keys:
            require_path(os.path.join(self.root, self.label_paths[0]), "NYUv2 label image", SECTION)
        if "depth" in self.keys:
            self._depth_path(first)
        if "raw_depth" in self.keys:
            self._find("RawDepth", first, (".png",), "NYUv2 raw depth")
        if "scene" in self.keys:
            scenes_path = require_path(os.path.join(self.root, "scenes.txt"), "NYUv2 scene types", SECTION)
            with open(scenes_path, encoding="utf-8") as handle:
                self.scenes = dict(line.split(maxsplit=1) for line in handle if line.strip())
            missing = [self._stem(path) for path in self.rgb_paths if self._stem(path) not in self.scenes]
            if missing:
                raise PtsemsegError(f"{scenes_path} has no scene type for {len(missing)} of the {len(self.rgb_paths)} "
                                    f"{self.subset} frames, first: {missing[0]}")

    def _detect_label_set(self):
        """40 when one of the first label files holds an id above 13; otherwise the files fit both sets: fail."""
        top = 0
        for path in self.label_paths[:LABEL_SET_PROBE_FILES]:
            top = max(top, int(read_gray(os.path.join(self.root, path)).max()))
            if top > 13:
                return 40
        probed = min(len(self.label_paths), LABEL_SET_PROBE_FILES)
        raise PtsemsegError(f"NYUv2 label files of {self.root}: the first {probed} hold ids 0..{top} only, which fits "
                            "the 13-class set (ankurhanda's new_nyu_class13_*.png) and the 40-class one: set "
                            "data.label_set: 13 or 40")

    @staticmethod
    def _stem(path):
        return os.path.splitext(os.path.basename(path))[0]

    def _find(self, folder, stem, extensions, what):
        for extension in extensions:
            path = os.path.join(self.root, folder, stem + extension)
            if os.path.isfile(path):
                return path
        expected = os.path.join(self.root, folder, stem + "|".join(extensions))
        raise PtsemsegError(f"{what} not found: expected {expected} (see README.md#datasets, section '{SECTION}')")

    def _depth_path(self, stem):
        if self.depth_source == "raw":
            return self._find("RawDepth", stem, (".png",), "NYUv2 raw depth")
        return self._find("Depth", stem, (".png", ".npy"), "NYUv2 depth")

    @staticmethod
    def _read_depth(depth_path):
        """Depth in metres from a uint16 millimetre PNG or a float metre .npy, refusing implausible units."""
        if depth_path.endswith(".npy"):
            try:
                depth = np.load(depth_path).astype(np.float32)
            except (ValueError, OSError, EOFError) as err:
                raise CorruptFileError(f"cannot read depth {depth_path} ({err})") from None
        else:
            depth = mm_to_depth(read_png16(depth_path))
        median = median_depth(depth)
        if median > PLAUSIBLE_INDOOR_MEDIAN_M:
            unit = "metres (float)" if depth_path.endswith(".npy") else "millimetres (uint16)"
            raise PtsemsegError(f"depth {depth_path} has a median of {median:.0f} m: it must hold {unit}")
        return depth

    def _load_folder(self, index):
        stem = self._stem(self.rgb_paths[index])
        image = read_rgb(os.path.join(self.root, self.rgb_paths[index]))
        sample = {"image": image,
                  "meta": {"name": stem, "index": index, "K": scale_intrinsics(NYU_K, NYU_SIZE, image.shape[:2])}}
        hha_paths = [os.path.join(self.root, "HHA", stem + ext) for ext in (".png", ".jpg")]
        hha_path = next((path for path in hha_paths if os.path.isfile(path)), None) if "hha" in self.keys else None
        if "depth" in self.keys or ("hha" in self.keys and hha_path is None):
            sample["depth"] = self._read_depth(self._depth_path(stem))
        if "raw_depth" in self.keys:
            sample["raw_depth"] = self._read_depth(self._find("RawDepth", stem, (".png",), "NYUv2 raw depth"))
        if "label" in self.keys:
            label_path = os.path.join(self.root, self.label_paths[index])
            label = read_gray(label_path)
            if label.dtype != np.uint8:
                raise CorruptFileError(f"expected an 8-bit label PNG, got {label.dtype}: {label_path}")
            check_label_ids(label, self.label_set, label_path)
            sample["label"] = self.file_label_table[label]
        if "scene" in self.keys:
            sample["scene"] = scene_class(self.scenes[stem])
        if "hha" in self.keys:
            sample["hha"] = read_rgb(hha_path) if hha_path else hha_encode(sample["depth"], sample["meta"]["K"])
        for key in spatial_keys(sample):
            if sample[key].shape[:2] != image.shape[:2]:
                raise CorruptFileError(f"{key} of NYUv2 frame {stem} is {sample[key].shape[1]}×"
                                       f"{sample[key].shape[0]}, its image {image.shape[1]}×{image.shape[0]}")
        return self.asked(sample)

    # ---------------------------------------------------------------------------------- fusenet_h5 layout
    def _init_fusenet(self):
        path = self.root if os.path.isfile(self.root) else os.path.join(self.root, FUSENET_FILE)
        self.h5 = LazyH5(require_path(path, "FuseNet NYUv2 h5 file", SECTION))
        handle = self.h5.get()
        self.h5_keys = {kind: f"{kind}_{self.subset}" for kind in ("rgb", "depth", "label", "class")}
        missing = [key for kind, key in self.h5_keys.items() if kind != "class" and key not in handle]
        if missing:
            raise CorruptFileError(f"{path} lacks {', '.join(missing)}: not FuseNet's {FUSENET_FILE}?")
        if "scene" in self.keys and self.h5_keys["class"] not in handle:
            raise CorruptFileError(f"{path} has no {self.h5_keys['class']} to give 'scene' from")
        self.length = handle[self.h5_keys["label"]].shape[0]
        self.h5.close()

    def _load_fusenet(self, index):
        handle, path = self.h5.get(), self.h5.path
        image = _read(handle, self.h5_keys["rgb"], index, path)
        if image.shape[0] == 3:
            image = image.transpose(1, 2, 0)
        sample = {"image": np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8)),
                  "meta": {"name": f"{self.subset}_{index:04d}", "index": index,
                           "K": scale_intrinsics(NYU_K, NYU_SIZE, image.shape[:2])}}
        if "depth" in self.keys:
            depth = np.squeeze(_read(handle, self.h5_keys["depth"], index, path)).astype(np.float32)
            sample["depth"] = depth / 255.0 * self.fusenet_depth_max
        if "label" in self.keys:
            label = np.squeeze(_read(handle, self.h5_keys["label"], index, path)).astype(np.int64)
            if label.min() < 0 or label.max() > 40:
                raise CorruptFileError(f"{path}: {self.h5_keys['label']}[{index}] has labels outside 0..40")
            sample["label"] = self.file_label_table[label]
        if "scene" in self.keys:
            sample["scene"] = int(np.asarray(_read(handle, self.h5_keys["class"], index, path)).ravel()[0]) - 1
        return self.asked(sample)

    # ------------------------------------------------------------------------------------------- common
    def __len__(self):
        if self.layout == "mat":
            return len(self.indices)
        if self.layout == "folder":
            return len(self.rgb_paths)
        return self.length

    def load(self, index):
        return {"mat": self._load_mat, "folder": self._load_folder, "fusenet_h5": self._load_fusenet}[
            self.layout](index)
