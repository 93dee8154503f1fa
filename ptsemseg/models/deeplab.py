"""DeepLab v2 (Chen et al., TPAMI 2017): dilated ResNet + ASPP of summed atrous 3×3 classifiers."""
import torch.nn as nn

from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._utils import output_activation, resize_to
from ptsemseg.models.resnet import build_backbone


class ASPPSum(nn.Module):
    """Atrous spatial pyramid pooling of DeepLab v2: parallel 3×3 convs (dilation = padding = rate), summed."""

    def __init__(self, in_channels, out_channels, rates):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate) for rate in rates
        )
        for conv in self.branches:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x):
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Module):
    """ResNet (layer3/layer4 dilated 2/4 at output stride 8, 1/2 at 16) -> ASPP -> bilinear to the input size."""

    input_keys = ("image",)

    def __init__(self, task, n_outputs, backbone, output_stride, pretrained, aspp_rates, in_channels, freeze_bn):
        super().__init__()
        if output_stride not in (8, 16):
            raise PtsemsegError(f"deeplab output_stride must be 8 or 16, got {output_stride!r}")
        if not aspp_rates or not all(isinstance(rate, int) and rate > 0 for rate in aspp_rates):
            raise PtsemsegError(f"deeplab aspp_rates must be positive integers, got {aspp_rates!r}")
        self.backbone = build_backbone(backbone, output_stride, pretrained, in_channels, freeze_bn=freeze_bn)
        self.aspp = ASPPSum(self.backbone.channels[-1], n_outputs, aspp_rates)
        self.activation = output_activation(task)

    def forward(self, image):
        features = self.backbone(image)[-1]
        return self.activation(resize_to(self.aspp(features), image.shape[-2:]))


@MODELS.register("deeplab")
def deeplab(task, n_outputs, backbone="resnet101", output_stride=8, pretrained="none", aspp_rates=(6, 12, 18, 24),
            in_channels=3, freeze_bn=False):
    """DeepLab v2 (no CRF, no multi-scale inputs).

    Options: backbone resnet18 | resnet34 | resnet50 | resnet101 (default; the paper's) | resnet152;
    output_stride 8 (default; the paper's) | 16; aspp_rates (default [6, 12, 18, 24], ASPP-L);
    pretrained none (default: the synthetic quickstart trains from scratch) | imagenet (torchvision's
    ImageNet-1k V1 weights; recommended for real data) | PATH (torchvision-format ResNet or ptsemseg checkpoint);
    freeze_bn (default false; true fixes the BN layers as the paper does, useful with pretrained weights and
    small batches); in_channels (default 3).
    """
    return DeepLabV2(task, n_outputs, backbone, output_stride, pretrained, aspp_rates, in_channels, freeze_bn)
