"""Pieces shared by the architectures: the depth output, first-conv adaptation, pretrained weights and a
transposed convolution that avoids oneDNN's bf16 kernel where it has too few channels."""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError


class PositiveDepth(nn.Module):
    """Map raw head outputs to positive depth in metres (softplus keeps gradients alive where ReLU dies)."""

    def forward(self, x):
        return F.softplus(x) + 1e-3


# Channels per block of oneDNN's bf16 convolution kernels: layers with fewer have their channels padded to one block.
ONEDNN_CHANNEL_BLOCK = 16


class NarrowFp32ConvTranspose2d(nn.ConvTranspose2d):
    """ConvTranspose2d that runs in fp32 under CPU autocast when it has fewer channels than one oneDNN block.

    FCN-8s in bf16 autocast on an AVX512-BF16 CPU was seen to corrupt the heap in its first backward pass at 4, 6
    or 8 classes (`free(): invalid next size`, or a segfault), never at 19 or 21 classes, in fp32 or with oneDNN
    disabled. Its bilinear upsamplers are the zoo's only layers whose input and output channels are both the
    class count; oneDNN's bf16 deconvolution pads them to one 16-channel block. Other architectures' classifiers
    (few output channels only) train in bf16. In fp32 the upsamplers cost nothing measurable (BENCHMARKS.md,
    "bf16 heap corruption"); the rest of the network stays in bf16.
    """

    def forward(self, x, output_size=None):
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and \
                min(self.in_channels, self.out_channels) < ONEDNN_CHANNEL_BLOCK:
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float(), output_size)
        return super().forward(x, output_size)


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


def pretrained_state_dict(pretrained, weights):
    """Resolve `model.pretrained` (imagenet | none | PATH) to a state dict, or None for random init."""
    if pretrained in (None, False, "none"):
        return None
    if pretrained == "imagenet":
        return imagenet_state_dict(weights)
    return load_state_dict_file(str(pretrained))
