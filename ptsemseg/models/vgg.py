"""VGG16 pieces: the 13-conv layout and the mapping of torchvision's ImageNet weights.

The `vgg16` / `vgg16_bn` encoders (ptsemseg/encoders/vgg.py) build their stages and load their convs with these;
SegNet's decoder mirrors the stages, and FCN-8s also turns VGG's first two fully connected layers into
convolutions (fc6 7×7, fc7 1×1). The mapping reads torchvision state dicts of `vgg16` (conv + ReLU)
and `vgg16_bn` (conv + BN + ReLU), so `pretrained` may be `imagenet` or a local file in either format.
"""
import torch
import torch.nn as nn

from ptsemseg.errors import PtsemsegError
from ptsemseg.encoders.weights import mean_channel_filter

# Output channels of the 3×3 convolutions in each of VGG16's five pooling stages.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _torchvision_conv_indices(batch_norm):
    """Indices of the 13 convs in torchvision's `features` (conv, [BN,] ReLU per conv; a pool ends each stage)."""
    per_conv = 3 if batch_norm else 2
    indices, index = [], 0
    for stage in VGG16_STAGES:
        for _ in stage:
            indices.append(index)
            index += per_conv
        index += 1
    return indices


def _require(state, key, source):
    if key not in state:
        raise PtsemsegError(f"pretrained weights {source}: not a torchvision VGG16 state dict (no '{key}')")
    return state[key]


def _copy(target, value, name, source):
    """Copy `value` into the parameter/buffer `target`, failing with one line on a shape mismatch."""
    if target.shape != value.shape:
        raise PtsemsegError(f"pretrained weights {source}: {name} has shape {tuple(value.shape)}, "
                            f"the model expects {tuple(target.shape)}")
    with torch.no_grad():
        target.copy_(value)


def has_batch_norm(state):
    """Whether a torchvision VGG16 state dict is the `vgg16_bn` variant."""
    return "features.1.running_mean" in state


def load_vgg16_convs(convs, state, source, batch_norms=None):
    """Copy VGG16's 13 conv weights (and, from a `vgg16_bn` file into `batch_norms`, its BN affine and statistics).

    `convs` are the model's 13 encoder convs in VGG order; a first conv with other than 3 input channels gets the
    channel mean of the RGB filters. BN layers are only filled when both the model and the file have them.
    """
    source_bn = has_batch_norm(state)
    for number, (conv, index) in enumerate(zip(convs, _torchvision_conv_indices(source_bn))):
        weight = _require(state, f"features.{index}.weight", source)
        if number == 0 and conv.in_channels != weight.shape[1]:
            weight = mean_channel_filter(weight, conv.in_channels)
        _copy(conv.weight, weight, f"features.{index}.weight", source)
        _copy(conv.bias, _require(state, f"features.{index}.bias", source), f"features.{index}.bias", source)
        if batch_norms is not None and source_bn:
            bn = batch_norms[number]
            for name in ("weight", "bias", "running_mean", "running_var"):
                key = f"features.{index + 1}.{name}"
                _copy(getattr(bn, name), _require(state, key, source), key, source)


def load_vgg16_fc_as_conv(fc6, fc7, state, source):
    """Copy VGG16's fc6 (25088→4096) and fc7 (4096→4096) into the 7×7 and 1×1 convs that replace them."""
    for conv, key in ((fc6, "classifier.0"), (fc7, "classifier.3")):
        weight = _require(state, f"{key}.weight", source)
        if weight.numel() != conv.weight.numel():
            raise PtsemsegError(f"pretrained weights {source}: {key}.weight has shape {tuple(weight.shape)}, "
                                f"which cannot become a conv of shape {tuple(conv.weight.shape)}")
        _copy(conv.weight, weight.reshape(conv.weight.shape), f"{key}.weight", source)
        _copy(conv.bias, _require(state, f"{key}.bias", source), f"{key}.bias", source)


def vgg16_stage(in_channels, channels, batch_norm, first_padding=1):
    """One VGG16 stage (before its pool): 3×3 convs with ReLU, with BN after each conv when `batch_norm`."""
    layers = []
    for number, out_channels in enumerate(channels):
        padding = first_padding if number == 0 else 1
        layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=padding))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*layers)


def stage_convs(stages):
    """The Conv2d layers of a list of stages, in order (13 for VGG16)."""
    return [layer for stage in stages for layer in stage.modules() if isinstance(layer, nn.Conv2d)]


def stage_batch_norms(stages):
    """The BatchNorm2d layers of a list of stages, in order."""
    return [layer for stage in stages for layer in stage.modules() if isinstance(layer, nn.BatchNorm2d)]
