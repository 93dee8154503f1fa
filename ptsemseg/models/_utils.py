"""Pieces shared by the architectures: the depth output, first-conv adaptation and pretrained weights."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.checkpoint import strip_module_prefix
from ptsemseg.errors import PtsemsegError


class PositiveDepth(nn.Module):
    """Map raw head outputs to positive depth in metres (softplus keeps gradients alive where ReLU dies)."""

    def forward(self, x):
        return F.softplus(x) + 1e-3


def output_activation(task):
    """The activation a head ends with: identity logits for seg, positive depth for depth."""
    return PositiveDepth() if task == "depth" else nn.Identity()


def resize_to(x, size):
    """Bilinear resize of an N×C×h×w map to size=(H, W) (no-op when it already matches)."""
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


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


def load_own_weights(model, pretrained, arch):
    """`model` with `pretrained` loaded, for an architecture without ImageNet weights: none | PATH to a state dict
    (or checkpoint) of the same architecture. Lets `model.pretrained: none` work for every `model.arch`."""
    if pretrained in (None, False, "none"):
        return model
    if pretrained == "imagenet":
        raise PtsemsegError(f"model.pretrained: {arch} has no ImageNet weights; use none or a file of its own weights")
    try:
        model.load_state_dict(strip_module_prefix(load_state_dict_file(str(pretrained))))
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0]
        raise PtsemsegError(f"pretrained weights {pretrained} do not fit {arch}: {reason[:160]}") from None
    return model


def pretrained_state_dict(pretrained, weights):
    """Resolve `model.pretrained` (imagenet | none | PATH) to a state dict, or None for random init."""
    if pretrained in (None, False, "none"):
        return None
    if pretrained == "imagenet":
        return imagenet_state_dict(weights)
    return load_state_dict_file(str(pretrained))
