"""Datasets, registered by their YAML name (`data.dataset`)."""
from ptsemseg.registry import Registry

DATASETS = Registry("dataset")


def get_loader(name):
    """The dataset class registered as `name`; call it as cls(root, split, keys, img_size, augmentations, **options)."""
    return DATASETS.get(name)


# Importing each dataset module registers it (one line per module).
from ptsemseg.loaders import cityscapes  # noqa: E402,F401
from ptsemseg.loaders import kitti  # noqa: E402,F401
from ptsemseg.loaders import synthetic  # noqa: E402,F401
from ptsemseg.loaders import nyuv2  # noqa: E402,F401
from ptsemseg.loaders import sunrgbd  # noqa: E402,F401
from ptsemseg.loaders import ade20k  # noqa: E402,F401
from ptsemseg.loaders import nyuv2_raw  # noqa: E402,F401
