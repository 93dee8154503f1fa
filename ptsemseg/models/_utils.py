"""Pieces shared by the architectures: the depth output and resizing (pretrained-weights helpers re-exported)."""
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.encoders.weights import mean_channel_filter, pretrained_state_dict  # noqa: F401 - fcn, segnet, vgg


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
