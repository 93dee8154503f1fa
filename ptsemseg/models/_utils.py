"""Pieces shared by the architectures: resizing outputs and loading an architecture's own weights."""
import torch.nn.functional as F

from ptsemseg.checkpoint import strip_module_prefix
from ptsemseg.encoders.weights import load_state_dict_file
from ptsemseg.errors import PtsemsegError


def resize_to(x, size):
    """Bilinear resize of an N×C×h×w map to size=(H, W) (no-op when it already matches)."""
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


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
