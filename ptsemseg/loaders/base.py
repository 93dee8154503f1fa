"""Base class shared by every dataset: resizing, augmentation and conversion of the sample dict."""
import warnings

import cv2
import numpy as np
import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.io import CorruptFileError

SPATIAL_KEYS = ("image", "depth", "label", "hha")


def resize_sample(sample, size):
    """Resize every spatial key to size=(rows, cols): bilinear for images, nearest for labels and depth."""
    rows, cols = size
    out = dict(sample)
    height, width = sample["image"].shape[:2]
    if (height, width) == (rows, cols):
        return out
    for key in SPATIAL_KEYS:
        if key in sample:
            interp = cv2.INTER_LINEAR if key in ("image", "hha") else cv2.INTER_NEAREST
            out[key] = cv2.resize(sample[key], (cols, rows), interpolation=interp)
    if "meta" in sample and "K" in sample["meta"]:
        meta = dict(sample["meta"])
        K = np.array(meta["K"], dtype=np.float32)
        K[0] *= cols / width
        K[1] *= rows / height
        meta["K"] = K
        out["meta"] = meta
    return out


def to_tensor(sample, img_norm=True):
    """Convert the NumPy sample dict into the tensors the models and losses consume."""
    out = {}
    for key, value in sample.items():
        if key == "image" or key == "hha":
            array = np.ascontiguousarray(value.transpose(2, 0, 1))
            tensor = torch.from_numpy(array).float()
            if value.dtype == np.uint8 and img_norm:
                tensor = tensor / 255.0
            out[key] = tensor
        elif key == "depth":
            out[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))[None]
        elif key == "label":
            out[key] = torch.from_numpy(np.ascontiguousarray(value).astype(np.int64))
        elif key == "scene":
            out[key] = torch.tensor(int(value), dtype=torch.int64)
        elif key == "meta":
            out[key] = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) if k == "K" else v
                        for k, v in value.items()}
        else:
            out[key] = value
    return out


class DenseDataset(torch.utils.data.Dataset):
    """A dataset of dict samples; subclasses implement `__len__` and `load(index)`.

    `load` returns the NumPy sample described in docs/architecture.md. Indexing with a tuple
    `(index, aug_seed)` (what the trainer's resumable sampler yields) seeds the augmentations, so the
    same sample counter always sees the same random transform.
    """

    n_classes = None
    class_names = None

    def __init__(self, root, split, task="seg", img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False):
        if task not in ("seg", "depth"):
            raise PtsemsegError(f"task must be 'seg' or 'depth', got '{task}'")
        self.root = root
        self.split = split
        self.task = task
        self.img_size = tuple(img_size) if img_size is not None else None
        self.augmentations = augmentations
        self.img_norm = img_norm
        self.skip_bad = skip_bad

    def load(self, index):
        raise NotImplementedError

    def __getitem__(self, key):
        index, aug_seed = key if isinstance(key, tuple) else (key, index_seed(key))
        sample = self._load_checked(index)
        if self.img_size is not None:
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


def index_seed(index):
    """Augmentation seed used when a dataset is indexed without the trainer's sampler."""
    return [0, int(index)]
