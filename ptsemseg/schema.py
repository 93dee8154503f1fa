"""The sample keys: one table saying what each key of a sample holds and how every step treats it.

A sample is a dict of registered keys. Datasets give NumPy values (a per-pixel key is H×W for one channel,
H×W×C for more); `to_tensor` turns them into tensors (C×H×W, or H×W for class maps). Resizing, the geometric and
photometric augmentations, `normalize` and `to_tensor` read this table instead of naming keys, so a new key is one
`register_key` call.
"""
import dataclasses

import cv2
import numpy as np
import torch

from ptsemseg.errors import PtsemsegError, closest

MAP, CLASS, META = "map", "class", "meta"  # kinds: per-pixel array, one integer per image, dict of facts
SCALAR, VECTOR = "scalar", "vector"  # what flips and rotations do to a map's values
IGNORE_INDEX = 255


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """One sample key.

    kind: `map` (moves with the image), `class` (an integer per image) or `meta` (a dict passed through; its
    intrinsics `K` follow every resize and crop and become a float32 tensor). dtype / tensor_dtype: the NumPy
    dtype a dataset gives and the torch dtype after `to_tensor`. channels: values per pixel; channel_axis: whether
    the tensor keeps a C axis (C×H×W) or is an H×W class map. interpolation: cv2 flag for resizing and warping
    (nearest where values must not blend). fill: value of the pixels that a pad, shift or rotation uncovers.
    scaled: uint8 values that `to_tensor` divides by 255 under `data.img_norm` and that `normalize` may standardise.
    photometric: changed by the photometric augmentations. motion: `scalar` (values move with their pixel) or
    `vector` (channels 0 and 1 are the x (right) and y (down) components of a direction in the camera frame: a
    horizontal flip negates x, a vertical flip negates y, a rotation turns (x, y), resizing leaves them).
    """

    name: str
    kind: str
    description: str
    dtype: object = None
    tensor_dtype: object = None
    channels: int = 1
    channel_axis: bool = True
    interpolation: int = cv2.INTER_NEAREST
    fill: float = 0
    scaled: bool = False
    photometric: bool = False
    motion: str = SCALAR

    @property
    def spatial(self):
        return self.kind == MAP


KEYS = {}


def register_key(spec):
    """Add `spec` to the table (a name can be registered once) and return it."""
    if spec.name in KEYS:
        raise ValueError(f"sample key '{spec.name}' is registered twice")
    if spec.kind not in (MAP, CLASS, META) or spec.motion not in (SCALAR, VECTOR):
        raise ValueError(f"sample key '{spec.name}': kind must be map, class or meta and motion scalar or vector")
    if spec.motion == VECTOR and spec.channels < 2:
        raise ValueError(f"sample key '{spec.name}': a vector field needs at least the x and y channels")
    KEYS[spec.name] = spec
    return spec


def key_spec(name):
    """The KeySpec of `name`; an unknown key fails naming the closest registered ones."""
    spec = KEYS.get(name)
    if spec is None:
        raise PtsemsegError(f"unknown sample key '{name}'{closest(name, KEYS)} (keys are registered in "
                            "ptsemseg/schema.py)")
    return spec


def spatial_keys(sample):
    """The keys of `sample` that are per-pixel maps."""
    return [key for key in sample if key_spec(key).spatial]


def spatial_size(sample):
    """(rows, cols) shared by the sample's maps."""
    for key in sample:
        if key_spec(key).spatial:
            return sample[key].shape[:2]
    raise PtsemsegError(f"the sample has no per-pixel key, only {', '.join(sample)}")


register_key(KeySpec("image", MAP, "RGB image, uint8 (float32 after `normalize`)", np.uint8, torch.float32,
                     channels=3, interpolation=cv2.INTER_LINEAR, fill=0, scaled=True, photometric=True))
register_key(KeySpec("depth", MAP, "metric depth in metres, 0 = invalid", np.float32, torch.float32, fill=0))
register_key(KeySpec("raw_depth", MAP, "sensor depth in metres with its holes (0 = no return), the input of "
                     "depth completion", np.float32, torch.float32, fill=0))
register_key(KeySpec("hha", MAP, "HHA encoding of depth (disparity, height, angle), uint8", np.uint8, torch.float32,
                     channels=3, interpolation=cv2.INTER_LINEAR, fill=0, scaled=True))
register_key(KeySpec("label", MAP, f"class per pixel, {IGNORE_INDEX} = ignore", np.uint8, torch.int64,
                     channel_axis=False, fill=IGNORE_INDEX))
register_key(KeySpec("normals", MAP, "unit surface normal in the camera frame (x right, y down, z forward), "
                     "0 = none", np.float32, torch.float32, channels=3, fill=0, motion=VECTOR))
register_key(KeySpec("scene", CLASS, f"scene class of the image, {IGNORE_INDEX} = none of the classes", np.int64,
                     torch.int64))
register_key(KeySpec("meta", META, "name, index and, where known, the 3×3 intrinsics K"))
