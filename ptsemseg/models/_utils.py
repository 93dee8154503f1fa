"""Pieces shared by the architectures: resizing outputs, loading an architecture's own weights, and a transposed
convolution that avoids oneDNN's bf16 kernel where it has too few channels."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.checkpoint import strip_module_prefix
from ptsemseg.encoders.weights import load_state_dict_file
from ptsemseg.errors import PtsemsegError


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
