"""DeepLab v2 (Chen et al., TPAMI 2017): dilated ResNet + ASPP of summed atrous 3×3 classifiers.

Heads: one ASPP per dense head (seg, depth) on res5, an image-level head (scene) on res5 for each image head.
"""
import torch.nn as nn

from ptsemseg.encoders.resnet import resnet_backbone
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._utils import resize_to
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds


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
    """ResNet (layer3/layer4 dilated 2/4 at output stride 8, 1/2 at 16) -> ASPP per dense head -> bilinear to the
    input size; image heads pool res5."""

    input_keys = ("image",)

    def __init__(self, heads, backbone, output_stride, pretrained, aspp_rates, in_channels, freeze_bn):
        super().__init__()
        require_kinds(heads, "deeplab", (DENSE, IMAGE))
        if output_stride not in (8, 16):
            raise PtsemsegError(f"deeplab output_stride must be 8 or 16, got {output_stride!r}")
        if not aspp_rates or not all(isinstance(rate, int) and rate > 0 for rate in aspp_rates):
            raise PtsemsegError(f"deeplab aspp_rates must be positive integers, got {aspp_rates!r}")
        self.backbone = resnet_backbone(backbone, in_channels=in_channels, output_stride=output_stride,
                                        pretrained=pretrained, freeze_bn=freeze_bn)
        channels = self.backbone.out_channels[-1]
        self.aspp = nn.ModuleDict({spec.name: ASPPSum(channels, spec.channels, aspp_rates)
                                   for spec in dense_heads(heads)})
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense_heads(heads)})
        self.image_heads = nn.ModuleDict({spec.name: ImageHead(channels, spec) for spec in image_heads(heads)})

    def forward(self, image):
        features = self.backbone(image)[-1]
        out = {name: self.activations[name](resize_to(aspp(features), image.shape[-2:]))
               for name, aspp in self.aspp.items()}
        out.update({name: head(features) for name, head in self.image_heads.items()})
        return out


@MODELS.register("deeplab")
def deeplab(heads, backbone="resnet101", output_stride=8, pretrained="none", aspp_rates=(6, 12, 18, 24),
            in_channels=3, freeze_bn=False):
    """DeepLab v2 (no CRF, no multi-scale inputs); returns {head: output}, no auxiliary outputs.

    Builds any dense heads (one ASPP each, e.g. seg and depth jointly) and image heads (scene) on res5.
    Options: backbone resnet18 | resnet34 | resnet50 | resnet101 (default; the paper's) | resnet152;
    output_stride 8 (default; the paper's) | 16; aspp_rates (default [6, 12, 18, 24], ASPP-L);
    pretrained none (default: the synthetic quickstart trains from scratch) | imagenet (torchvision's
    ImageNet-1k V1 weights; recommended for real data) | PATH (torchvision-format ResNet or ptsemseg checkpoint);
    freeze_bn (default false; true fixes the BN layers as the paper does, useful with pretrained weights and
    small batches); in_channels (default 3).
    """
    return DeepLabV2(heads, backbone, output_stride, pretrained, aspp_rates, in_channels, freeze_bn)


deeplab.input_keys = DeepLabV2.input_keys
