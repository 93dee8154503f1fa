"""Pretrained weights for encoders: torchvision's ImageNet weights, local state dicts, first-conv adaptation."""
import os

import torch

from ptsemseg.errors import PtsemsegError


def mean_channel_filter(weight, in_channels):
    """Initialise an `in_channels` first conv from RGB filters: the channel mean, repeated."""
    return weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def load_state_dict_file(path):
    """Read a state dict from a local file, failing with one line on a missing or unreadable file."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"pretrained weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file
        raise PtsemsegError(f"cannot read pretrained weights {path}: {type(err).__name__}") from None
    if isinstance(state, dict) and "model_state" in state:
        state = state["model_state"]
    if not isinstance(state, dict):
        raise PtsemsegError(f"pretrained weights {path} do not hold a state dict")
    return state


def imagenet_state_dict(weights):
    """The state dict of a torchvision weights enum (e.g. VGG16_Weights.IMAGENET1K_V1), from torch hub's cache.

    Without network access this fails with one line naming the file torchvision looks for and where to
    put it, instead of a download traceback.
    """
    filename = os.path.basename(weights.url)
    cache_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
    try:
        return weights.get_state_dict(progress=False)
    except Exception:  # noqa: BLE001 - network errors come in many types
        raise PtsemsegError(
            f"ImageNet weights '{filename}' could not be loaded or downloaded: put the file into {cache_dir}"
        ) from None


def pretrained_state_dict(pretrained, weights):
    """Resolve `model.pretrained` (imagenet | none | PATH) to a state dict, or None for random init."""
    if pretrained in (None, False, "none"):
        return None
    if pretrained == "imagenet":
        return imagenet_state_dict(weights)
    return load_state_dict_file(str(pretrained))
