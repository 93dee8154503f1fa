"""Photometric augmentations: they change the keys the schema marks photometric, i.e. `image` (uint8 RGB in,
uint8 RGB out), plus `normalize`, which standardises the keys the schema marks scaled (`image`, `hha`).

The random factors follow the seed projects (torchvision's functional ops on PIL images); the pixels match
torchvision's within one grey level (hue: its float HSV path), computed with OpenCV look-up tables and blends.
Every other key (`label`, `depth`, `hha`, `meta`...) passes through untouched.
"""
import cv2
import numpy as np

from ptsemseg.augmentations import Augmentation, augmentation
from ptsemseg.errors import PtsemsegError
from ptsemseg.schema import KEYS, key_spec

LEVELS = np.arange(256, dtype=np.float64)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _lut(values):
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def adjust_gamma(image, gamma):
    """255·(x/255)^gamma, truncated like torchvision's adjust_gamma."""
    return cv2.LUT(image, np.floor((256 - 1e-3) * (LEVELS / 255) ** gamma).astype(np.uint8))


def adjust_brightness(image, factor):
    """Blend with black: x·factor."""
    return cv2.LUT(image, _lut(LEVELS * factor))


def adjust_contrast(image, factor):
    """Blend with the image's mean grey level (rounded, as PIL does): m + factor·(x − m)."""
    mean = int(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean() + 0.5)
    return cv2.LUT(image, _lut(mean + factor * (LEVELS - mean)))


def adjust_saturation(image, factor):
    """Blend with the pixel's own grey level (ITU-R 601 luma): g + factor·(x − g)."""
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(image, factor, grey, 1.0 - factor, 0.0)


def adjust_hue(image, shift):
    """Rotate the hue by `shift` turns (in [−0.5, 0.5]) in float HSV, so an unchanged hue is lossless."""
    hsv = cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2HSV)
    hue = hsv[..., 0]
    hue += np.float32(360 * (shift % 1.0))
    np.subtract(hue, 360, out=hue, where=hue >= 360)
    return cv2.convertScaleAbs(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), alpha=255)


class Photometric(Augmentation):
    """Applies `transform(value, draw(rng))` to each uint8 key marked photometric and leaves the others as they are.

    One draw per sample, whichever keys are present, so the random stream does not depend on the keys.
    """

    photometric = True

    def __call__(self, sample, rng):
        keys = [key for key in sample if key_spec(key).photometric]
        for key in keys:
            if sample[key].dtype != np.uint8:
                raise PtsemsegError(f"augmentation '{self.key}' needs a uint8 {key}, got {sample[key].dtype} "
                                    "(list normalize after the photometric augmentations)")
        factor = self.draw(rng)
        out = dict(sample)
        for key in keys:
            out[key] = self.transform(sample[key], factor)
        return out


@augmentation("gamma")
class RandomGamma(Photometric):
    """gamma: x — gamma correction with exponent U(1, 1 + x) (0 ≤ x ≤ 10), as the seed: it only darkens."""

    transform = staticmethod(adjust_gamma)

    def __init__(self, value):
        self.spread = self.number(value, 0, 10, "a number in [0, 10]")

    def draw(self, rng):
        return rng.uniform(1, 1 + self.spread)


@augmentation("hue")
class RandomHue(Photometric):
    """hue: x — hue rotated by U(−x, x) of a full turn (0 ≤ x ≤ 0.5), as torchvision's adjust_hue."""

    transform = staticmethod(adjust_hue)

    def __init__(self, value):
        self.spread = self.number(value, 0, 0.5, "a number in [0, 0.5]")

    def draw(self, rng):
        return rng.uniform(-self.spread, self.spread)


class RandomFactor(Photometric):
    """A blend with factor U(1 − x, 1 + x) (0 ≤ x ≤ 1), as the seed's brightness, saturation and contrast."""

    def __init__(self, value):
        self.spread = self.number(value, 0, 1, "a number in [0, 1]")

    def draw(self, rng):
        return rng.uniform(1 - self.spread, 1 + self.spread)


@augmentation("brightness")
class RandomBrightness(RandomFactor):
    """brightness: x — pixel values times U(1 − x, 1 + x)."""

    transform = staticmethod(adjust_brightness)


@augmentation("saturation")
class RandomSaturation(RandomFactor):
    """saturation: x — blend with the grey image by U(1 − x, 1 + x) (0: grey, 1: unchanged).

    The grey blend is the seed's (PIL/torchvision) definition; scaling HSV saturation instead would desaturate
    towards the brightest channel rather than towards the luma.
    """

    transform = staticmethod(adjust_saturation)


@augmentation("contrast")
class RandomContrast(RandomFactor):
    """contrast: x — blend with the mean grey level by U(1 − x, 1 + x)."""

    transform = staticmethod(adjust_contrast)


@augmentation("normalize")
class Normalize(Photometric):
    """normalize: {mean: [r, g, b], std: [r, g, b], keys: [image, hha]} or `imagenet`.

    (x / 255 − mean) / std as float32 (one look-up table per channel), with mean and std on the [0, 1] scale
    (torchvision's convention; `imagenet` is (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225)). `keys` defaults
    to [image] and may name any 3-channel key the schema marks scaled; SA-Gate also normalises `hha` with the
    ImageNet statistics. It must come after the photometric ops; `to_tensor` leaves a float value as it is (no
    further /255). Validation and test data get it too (the only augmentation they get).
    """

    evaluation = True

    def __init__(self, value):
        if value == "imagenet":
            value = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        if not isinstance(value, dict) or not {"mean", "std"} <= set(value) or set(value) - {"mean", "std", "keys"}:
            raise self.invalid("'imagenet' or a mapping with mean, std (and optionally keys)", value)
        mean = self.triple(value["mean"], 0, 1, "three numbers in [0, 1]", "mean")
        std = self.triple(value["std"], 1e-6, float("inf"), "three positive numbers", "std")
        self.keys = value.get("keys", ["image"])
        scaled = [key for key, spec in KEYS.items() if spec.scaled and spec.channels == 3]
        if not isinstance(self.keys, list) or not self.keys or not set(self.keys) <= set(scaled):
            raise self.invalid(f"a list of keys among {', '.join(scaled)}", self.keys, "keys")
        self.table = ((LEVELS[:, None] / 255 - mean) / std).astype(np.float32).reshape(256, 1, 3)

    def triple(self, value, low, high, expected, field):
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise self.invalid(expected, value, field)
        return np.array([self.number(v, low, high, expected, field) for v in value])

    def __call__(self, sample, rng):
        out = dict(sample)
        for key in self.keys:
            array = sample.get(key)
            if array is None:
                continue
            if array.dtype != np.uint8:
                raise PtsemsegError(f"augmentation 'normalize' needs a uint8 {key}, got {array.dtype} "
                                    "(is normalize listed twice?)")
            out[key] = cv2.LUT(array, self.table)
        return out
