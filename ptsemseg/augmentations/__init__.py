"""Joint augmentations of the sample dict, registered by their YAML key (`training.augmentations`)."""
from ptsemseg.registry import Registry

AUGMENTATIONS = Registry("augmentation")


class Compose:
    """Apply augmentations in YAML order, all drawing from one random generator."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)

    def __call__(self, sample, rng):
        for aug in self.augmentations:
            sample = aug(sample, rng)
        return sample


def get_composed_augmentations(aug_dict):
    """Build the augmentations named in a YAML mapping {key: value}; None or empty means none."""
    if not aug_dict:
        return None
    return Compose(AUGMENTATIONS.get(name)(value) for name, value in aug_dict.items())
