"""Base class shared by every dataset: resizing, augmentation and conversion of the sample dict."""
import warnings

import cv2
import numpy as np
import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.io import CorruptFileError
from ptsemseg.schema import CLASS, META, key_spec, spatial_keys, spatial_size


def resize_sample(sample, size):
    """Resize every per-pixel key to size=(rows, cols) with its schema interpolation; K follows."""
    rows, cols = size
    out = dict(sample)
    height, width = spatial_size(sample)
    if (height, width) == (rows, cols):
        return out
    for key in spatial_keys(sample):
        out[key] = cv2.resize(sample[key], (cols, rows), interpolation=key_spec(key).interpolation)
    if "meta" in sample and "K" in sample["meta"]:
        meta = dict(sample["meta"])
        K = np.array(meta["K"], dtype=np.float32)
        K[0] *= cols / width
        K[1] *= rows / height
        meta["K"] = K
        out["meta"] = meta
    return out


def to_tensor(sample, img_norm=True):
    """Convert the NumPy sample dict into the tensors the models and losses consume, as the schema says."""
    out = {}
    for key, value in sample.items():
        spec = key_spec(key)
        if spec.kind == META:
            out[key] = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) if k == "K" else v
                        for k, v in value.items()}
        elif spec.kind == CLASS:
            out[key] = torch.tensor(int(value), dtype=spec.tensor_dtype)
        else:
            array = value
            if spec.channel_axis:
                array = value[None] if value.ndim == 2 else value.transpose(2, 0, 1)
            tensor = torch.from_numpy(np.ascontiguousarray(array)).to(spec.tensor_dtype)
            if spec.scaled and value.dtype == np.uint8 and img_norm:
                tensor = tensor / 255.0
            out[key] = tensor
    return out


def dataset_name(dataset_cls):
    """The registered name of a dataset class (its class name when it is not registered)."""
    from ptsemseg.loaders import DATASETS

    return next((name for name in DATASETS.names() if DATASETS.get(name) is dataset_cls), dataset_cls.__name__)


def check_keys(needed, dataset_cls, split, options, who=None, as_targets=False):
    """Fail in one line when `dataset_cls` cannot give one of the `needed` keys for `split` with `options`.

    `who` names what needs them ("model fusenet", "task depth"); with `as_targets` a key the dataset gives only as
    an input (e.g. depth that is not in metres) does not count. Reads no file: it asks `keys_for`.
    """
    given = dataset_cls.keys_for(split, **options)
    inputs_only = dataset_cls.input_only_keys(split, **options) if as_targets else {}
    for key in needed:
        if key == "meta":
            continue
        key_spec(key)
        if key in given and key not in inputs_only:
            continue
        needs = f"{who} needs '{key}'" if who else f"asked for '{key}'"
        gives = f"dataset {dataset_name(dataset_cls)} gives {', '.join(given)} for split {split}"
        reason = f" ('{key}' only as an input: {inputs_only[key]})" if key in inputs_only else ""
        raise PtsemsegError(f"{needs}; {gives}{reason}")


class DenseDataset(torch.utils.data.Dataset):
    """A dataset of dict samples; subclasses implement `__len__` and `load(index)`.

    A dataset is asked for sample keys (ptsemseg/schema.py) and `load` returns exactly those, plus `meta`, as the
    NumPy values the schema describes. `given_keys` (or `keys_for`, where options change them) says what it can
    give without reading a file, so configs are checked before any work. Indexing with a tuple `(index, aug_seed)`
    (what the trainer's resumable sampler yields) seeds the augmentations, so the same sample counter always sees
    the same random transform.
    """

    n_classes = None
    class_names = None
    class_colors = None  # n_classes×3 uint8 RGB where the dataset has an official palette
    n_scene_classes = None
    scene_names = None
    given_keys = ("image", "label")
    resizes_to_img_size = True

    @classmethod
    def keys_for(cls, split, **options):
        """The keys this dataset can give for `split` with these options, decided without reading a file."""
        return tuple(cls.given_keys)

    @classmethod
    def class_names_for(cls, **options):
        """The class names the dataset gives with these options, decided without reading a file (prediction on a
        user's images needs no copy of the dataset)."""
        return cls.class_names

    @classmethod
    def camera(cls, **options):
        """(K, (rows, cols)): the intrinsics shared by every frame and the size they hold for, or None where frames
        carry their own; what images given without intrinsics are assumed to come from (predict.py)."""
        return None

    @classmethod
    def input_only_keys(cls, split, **options):
        """{key: reason} of given keys that may feed a model but are no ground truth (e.g. depth not in metres)."""
        return {}

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False):
        if isinstance(keys, str) or not keys:
            raise PtsemsegError(f"keys must be a non-empty list of sample keys, got {keys!r}")
        self.root = root
        self.split = split
        self.keys = tuple(dict.fromkeys(key for key in keys if key != "meta"))
        for key in self.keys:
            key_spec(key)
        self.img_size = tuple(img_size) if img_size is not None else None
        self.augmentations = augmentations
        self.img_norm = img_norm
        self.skip_bad = skip_bad

    def require_keys(self, **options):
        """Fail in one line when a key asked for cannot be given with these options (call it from `__init__`)."""
        check_keys(self.keys, type(self), self.split, options)

    def asked(self, sample):
        """`sample` cut to the keys asked for and `meta` (loaders read the image even when only checking sizes)."""
        return {key: value for key, value in sample.items() if key in self.keys or key == "meta"}

    def load(self, index):
        raise NotImplementedError

    def keep_native_size(self):
        """From now on give every key at its native size, ignoring `img_size` (evaluation: targets are scored at
        their own resolution, and ptsemseg.inference resizes the network's inputs). A dataset that renders its
        samples at `img_size` (synthetic) has no other native size, so its samples do not change. Returns self."""
        self.resizes_to_img_size = False
        return self

    def __getitem__(self, key):
        index, aug_seed = key if isinstance(key, tuple) else (key, index_seed(key))
        sample = self._load_checked(index)
        if self.img_size is not None and self.resizes_to_img_size:
            sample = resize_sample(sample, self.img_size)
        if self.augmentations is not None:
            sample = self.augmentations(sample, np.random.default_rng(aug_seed))
        return to_tensor(sample, self.img_norm)

    def _load_checked(self, index):
        """`load(index)`, or with `skip_bad` the next readable sample after a warning naming the bad file."""
        for offset in range(len(self)):
            try:
                return self.load((index + offset) % len(self))
            except CorruptFileError as err:
                if not self.skip_bad:
                    raise
                warnings.warn(f"skipping bad sample: {err}")
        raise PtsemsegError(f"no readable sample in {self.root} ({self.split})")


def collate_by_size(samples):
    """Collate a list of tensor samples into a list of batches, one per set of map shapes (in order of first
    appearance): evaluation at native size meets frames of different sizes in one batch (KITTI, SUN RGB-D)."""
    groups = {}
    for sample in samples:
        shapes = tuple((key, tuple(value.shape)) for key, value in sample.items() if key_spec(key).spatial)
        groups.setdefault(shapes, []).append(sample)
    return [torch.utils.data.default_collate(group) for group in groups.values()]


def index_seed(index):
    """Augmentation seed used when a dataset is indexed without the trainer's sampler."""
    return [0, int(index)]
