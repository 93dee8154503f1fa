"""ADE20K as the MIT Scene Parsing benchmark (SceneParse150) ships it: `ADEChallengeData2016`, 150 classes.

`data.path` is the extracted `ADEChallengeData2016.zip`:
- `images/training/ADE_train_<8 digits>.jpg` (20,210) and `images/validation/ADE_val_<8 digits>.jpg` (2,000),
- `annotations/{training,validation}/<same stem>.png`: uint8, 0 = "other" (unlabelled), 1..150 the classes
  in the order of `objectInfo150.txt`.

Keys: image, label. Splits: `train` (training) and `val` (validation).
Labels, as the PSPNet seed (hellochick/PSPNet-tensorflow evaluate.py: `ignore_label: 0`, prediction + 1 scored
against the file) and hszhao/semseg evaluate them: 0 → 255 (ignored), k → k − 1, so classes are 0..149. A value
above 150 cannot be an ADE20K class and fails naming its file.
"""
import glob
import os

import cv2
import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import CorruptFileError, read_gray, read_rgb, require_path, require_root

SECTION = "ADE20K"
FOLDERS = {"train": "training", "val": "validation"}
IGNORE_INDEX = 255

# objectInfo150.txt of the benchmark (github.com/CSAILVision/sceneparsing, objectInfo150.txt, column Name), in
# label order 1..150; each entry is the first of the WordNet synonyms listed there ("building, edifice" → building).
ADE20K_CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

# uint8 look-up table: file value → training label (0 → ignore, 1..150 → 0..149; larger values are refused first).
LABEL_TABLE = np.full(256, IGNORE_INDEX, dtype=np.uint8)
LABEL_TABLE[1:len(ADE20K_CLASS_NAMES) + 1] = np.arange(len(ADE20K_CLASS_NAMES))


def ade_labels_to_train_ids(label, path):
    """0..149 training labels (255 = ignore) of an ADE20K annotation read from `path`, refusing ids above 150."""
    top = int(label.max()) if label.size else 0
    if top > len(ADE20K_CLASS_NAMES):
        raise CorruptFileError(f"label id {top} in {path} is above ADE20K's {len(ADE20K_CLASS_NAMES)} classes "
                               "(0 = other, 1..150): not an ADEChallengeData2016 annotation?")
    return cv2.LUT(label, LABEL_TABLE)


@DATASETS.register("ade20k")
class ADE20K(DenseDataset):
    """ADE20K scene parsing (ADEChallengeData2016): 150 classes, 20,210 training and 2,000 validation images."""

    n_classes = len(ADE20K_CLASS_NAMES)
    class_names = ADE20K_CLASS_NAMES
    given_keys = ("image", "label")

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        self.require_keys()
        if split not in FOLDERS:
            raise PtsemsegError(f"ADE20K split must be one of {', '.join(FOLDERS)}, got '{split}'")
        require_root(root, "the ADEChallengeData2016 folder", "ADE20K root", SECTION)
        self.folder = FOLDERS[split]
        image_dir = require_path(os.path.join(root, "images", self.folder), f"ADE20K {split} images", SECTION)
        self.stems = sorted(os.path.basename(path)[:-len(".jpg")]
                            for path in glob.glob(os.path.join(image_dir, "*.jpg")))
        if not self.stems:
            raise PtsemsegError(f"no *.jpg files in {image_dir}")
        if "label" in self.keys:
            require_path(os.path.join(root, "annotations", self.folder), f"ADE20K {split} annotations", SECTION)
            missing = [stem for stem in self.stems if not os.path.isfile(self._label_path(stem))]
            if missing:
                raise PtsemsegError(f"{len(missing)} of {len(self.stems)} ADE20K {split} images have no annotation, "
                                    f"first: {self._label_path(missing[0])}")

    def _image_path(self, stem):
        return os.path.join(self.root, "images", self.folder, stem + ".jpg")

    def _label_path(self, stem):
        return os.path.join(self.root, "annotations", self.folder, stem + ".png")

    def __len__(self):
        return len(self.stems)

    def load(self, index):
        stem = self.stems[index]
        sample = {"image": read_rgb(self._image_path(stem)), "meta": {"name": stem, "index": index}}
        if "label" in self.keys:
            path = self._label_path(stem)
            label = read_gray(path)
            if label.dtype != np.uint8:
                raise CorruptFileError(f"expected an 8-bit label PNG, got {label.dtype}: {path}")
            if label.shape != sample["image"].shape[:2]:
                raise CorruptFileError(f"{path} is {label.shape[1]}×{label.shape[0]}, its image "
                                       f"{sample['image'].shape[1]}×{sample['image'].shape[0]}")
            sample["label"] = ade_labels_to_train_ids(label, path)
        return self.asked(sample)
