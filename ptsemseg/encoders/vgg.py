"""VGG16 and VGG16-BN encoders (`vgg16`, `vgg16_bn`): VGG's 13 3×3 convolutions in five stages, each ending in a
2×2 max pool.

Features are the five stage outputs after their pool (pool1…pool5: 64, 128, 256, 512, 512 channels at strides 2,
4, 8, 16, 32): FCN-8s scores pool3 and pool4 and builds fc6 on pool5, SegNet decodes from pool5 and needs every
pool's argmax indices, which `forward_with_indices` returns beside the features. Pools use ceil mode, as both
models' papers do, so a side of n pixels gives ceil(n / stride) feature pixels (as the ResNet encoders do) and
no border pixel is dropped (torchvision's VGG floors).

Options beyond the registry's: `first_padding` pads conv1_1 (FCN-8s: 100, so every input size survives fc6's
7×7 conv; the feature maps then grow by that margin and `strides` hold as scale factors only).
`output_stride` must be 32: dilating VGG (DeepLab v1) is none of these models' layout, and SegNet's unpooling
needs every pool.

Without pretrained weights the convs start as torchvision initialises VGG (He normal, fan-out, zero bias; BN
1 and 0): PyTorch's default conv init shrinks the signal through the 13 convs without BN. `pretrained`:
none | imagenet (torchvision's VGG16_Weights / VGG16_BN_Weights IMAGENET1K_V1) | path to a torchvision `vgg16`
or `vgg16_bn` state dict (from a `vgg16_bn` file the BN layers take its affine and statistics too; from a plain
file they keep their defaults). An `in_channels` other than 3 gets the channel mean of the RGB filters.
"""
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from ptsemseg.encoders import ENCODERS
from ptsemseg.errors import PtsemsegError
from ptsemseg.encoders.weights import pretrained_state_dict
from ptsemseg.models.vgg import VGG16_STAGES, load_vgg16_convs, stage_batch_norms, stage_convs, vgg16_stage

IMAGENET_WEIGHTS = {False: torchvision.models.VGG16_Weights.IMAGENET1K_V1,
                    True: torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1}


class VGGEncoder(nn.Module):
    """VGG16's five conv stages with ceil-mode 2×2 max pools; features = the pooled stage outputs."""

    def __init__(self, batch_norm, in_channels=3, output_stride=32, pretrained="none", first_padding=1):
        super().__init__()
        if output_stride != 32:
            raise PtsemsegError(f"VGG encoders have output_stride 32 only (no dilated variant), got {output_stride!r}")
        self.batch_norm = batch_norm
        self.in_channels, self.output_stride = in_channels, output_stride
        self.stages = nn.ModuleList()
        stage_in = in_channels
        for number, channels in enumerate(VGG16_STAGES):
            self.stages.append(vgg16_stage(stage_in, channels, batch_norm,
                                           first_padding=first_padding if number == 0 else 1))
            stage_in = channels[-1]
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.out_channels = tuple(channels[-1] for channels in VGG16_STAGES)
        self.strides = tuple(2 ** (number + 1) for number in range(len(VGG16_STAGES)))
        for conv in stage_convs(self.stages):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        state = pretrained_state_dict(pretrained, IMAGENET_WEIGHTS[batch_norm])
        if state is not None:
            self.load_vgg16(state, pretrained)

    def load_vgg16(self, state, source):
        """Copy the convs (and BN, when both sides have it) of a torchvision VGG16 state dict read from `source`."""
        load_vgg16_convs(stage_convs(self.stages), state, source,
                         stage_batch_norms(self.stages) if self.batch_norm else None)

    def forward(self, x):
        features = []
        for stage in self.stages:
            x = self.pool(stage(x))
            features.append(x)
        return features

    def forward_with_indices(self, x):
        """The features, and per pool its argmax indices and input size (what max-unpooling needs)."""
        features, pooling = [], []
        for stage in self.stages:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, stride=2, ceil_mode=True, return_indices=True)
            features.append(x)
            pooling.append((indices, size))
        return features, pooling


@ENCODERS.register("vgg16")
def vgg16(in_channels=3, output_stride=32, pretrained="none", first_padding=1):
    """VGG16 (conv + ReLU)."""
    return VGGEncoder(False, in_channels, output_stride, pretrained, first_padding)


@ENCODERS.register("vgg16_bn")
def vgg16_bn(in_channels=3, output_stride=32, pretrained="none", first_padding=1):
    """VGG16-BN (conv + BN + ReLU)."""
    return VGGEncoder(True, in_channels, output_stride, pretrained, first_padding)
