"""Joint augmentations of the sample dict, registered by their YAML key (`training.augmentations`).

A key's builder takes the YAML value, checks it (a bad value raises PtsemsegError naming the key) and
returns a callable `aug(sample, rng) -> sample` that draws all its randomness from the NumPy generator
`rng` and returns a new dict without touching the input arrays. Photometric ops live in `photometric.py`,
geometric ops (which move every spatial key and update `meta["K"]`) in `geometric.py`.
"""
import numbers

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

AUGMENTATIONS = Registry("augmentation")


def augmentation(key):
    """Class decorator: register the class under its YAML key and remember the key for error messages."""

    def decorator(cls):
        cls.key = key
        return AUGMENTATIONS.register(key)(cls)

    return decorator


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Augmentation:
    """Base of every augmentation: its YAML key and the checks of its YAML value."""

    key = ""
    photometric = False  # changes `image` only and needs it as uint8 (so it must come before `normalize`)
    evaluation = False  # part of the input encoding, not a random change: applied to evaluation splits too

    def invalid(self, expected, value, field=None):
        name = f"{self.key}.{field}" if field else self.key
        return PtsemsegError(f"augmentation '{name}' must be {expected}, got {value!r}")

    def number(self, value, low, high, expected, field=None):
        """`value` as a float, which must lie in [low, high]."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low <= value <= high:
            raise self.invalid(expected, value, field)
        return float(value)

    def size(self, value, field=None):
        """A size given as [h, w] or as one integer s for s×s, returned as (h, w)."""
        if is_integer(value) and value > 0:
            return int(value), int(value)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_integer(v) and v > 0 for v in value):
            return int(value[0]), int(value[1])
        raise self.invalid("a size [h, w] or s of positive integers", value, field)


class Compose:
    """Apply augmentations in YAML order, all drawing from one random generator."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)

    def __call__(self, sample, rng):
        for aug in self.augmentations:
            sample = aug(sample, rng)
        return sample


def get_composed_augmentations(aug_dict, evaluation=False):
    """Build the augmentations named in a YAML mapping {key: value}; None or empty means none.

    Photometric ops need the uint8 image, so none may follow `normalize`; that is checked here, before any
    sample is loaded. With `evaluation`, only the ops that encode the input (`normalize`) are kept: what the
    model sees at validation and test time is encoded as in training, without the random changes.
    """
    if not aug_dict:
        return None
    if not isinstance(aug_dict, dict):
        raise PtsemsegError(f"training.augmentations must be a mapping of augmentation: value, got {aug_dict!r}")
    augmentations = [AUGMENTATIONS.get(name)(value) for name, value in aug_dict.items()]
    normalized = False
    for aug in augmentations:
        if aug.photometric and normalized:
            raise PtsemsegError(f"augmentation '{aug.key}' comes after 'normalize' but needs the uint8 image: "
                                "list normalize after the photometric augmentations")
        normalized = normalized or aug.key == "normalize"
    if evaluation:
        augmentations = [aug for aug in augmentations if aug.evaluation]
    return Compose(augmentations) if augmentations else None


# Importing each module registers its augmentations.
from ptsemseg.augmentations import photometric  # noqa: E402,F401
from ptsemseg.augmentations import geometric  # noqa: E402,F401
