"""PSPNet (Zhao et al., CVPR 2017): dilated ResNet + pyramid pooling module, with an auxiliary head on res4.

Heads: the pyramid pooling is shared; each dense head (seg, depth) gets its own head on the pyramid and its own
auxiliary head on res4 (output `<head>/aux` in train mode); each image head (scene) pools res5.
"""
import torch
import torch.nn as nn

from ptsemseg.encoders.resnet import conv_bn_relu, resnet_backbone
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._utils import resize_to
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds


class PyramidPooling(nn.Module):
    """Average-pool to bins×bins grids (adaptive, so any input size works), reduce, upsample, concat with the input."""

    def __init__(self, in_channels, bins):
        super().__init__()
        branch_channels = in_channels // len(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(bin_size), conv_bn_relu(in_channels, branch_channels, kernel_size=1))
            for bin_size in bins
        )
        self.out_channels = in_channels + branch_channels * len(bins)

    def forward(self, x):
        size = x.shape[-2:]
        return torch.cat([x] + [resize_to(branch(x), size) for branch in self.branches], dim=1)


def prediction_head(in_channels, mid_channels, n_outputs, dropout):
    """3×3 conv-BN-ReLU -> Dropout2d -> 1×1 classifier."""
    return nn.Sequential(conv_bn_relu(in_channels, mid_channels), nn.Dropout2d(dropout),
                         nn.Conv2d(mid_channels, n_outputs, 1))


class PSPNet(nn.Module):
    """Deep-stem ResNet at output stride 8 -> pyramid pooling -> one head per dense head; aux heads on res4 in
    train mode; image heads pool res5.

    Widths scale with the backbone: each pyramid branch has C/len(bins) channels and the heads C/4
    (ResNet-50/101: 2048 -> 4×512, head 512, aux 1024 -> 256).
    """

    input_keys = ("image",)

    def __init__(self, heads, backbone, bins, output_stride, pretrained, deep_stem, dropout, in_channels,
                 freeze_bn):
        super().__init__()
        require_kinds(heads, "pspnet", (DENSE, IMAGE))
        if not bins or not all(isinstance(bin_size, int) and bin_size > 0 for bin_size in bins):
            raise PtsemsegError(f"pspnet bins must be positive integers, got {bins!r}")
        if output_stride not in (8, 16):
            raise PtsemsegError(f"pspnet output_stride must be 8 or 16, got {output_stride!r}")
        self.backbone = resnet_backbone(backbone, deep_stem, in_channels=in_channels, output_stride=output_stride,
                                        pretrained=pretrained, freeze_bn=freeze_bn)
        res4_channels, res5_channels = self.backbone.out_channels[2:]
        self.pyramid = PyramidPooling(res5_channels, bins)
        dense = dense_heads(heads)
        self.head = nn.ModuleDict({spec.name: prediction_head(self.pyramid.out_channels, res5_channels // 4,
                                                              spec.channels, dropout) for spec in dense})
        self.aux_head = nn.ModuleDict({spec.name: prediction_head(res4_channels, res4_channels // 4, spec.channels,
                                                                  dropout) for spec in dense})
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense})
        self.image_heads = nn.ModuleDict({spec.name: ImageHead(res5_channels, spec) for spec in image_heads(heads)})

    def forward(self, image):
        _, _, res4, res5 = self.backbone(image)
        pooled = self.pyramid(res5)
        out = {}
        for name, head in self.head.items():
            out[name] = self.activations[name](resize_to(head(pooled), image.shape[-2:]))
            if self.training:
                out[f"{name}/aux"] = self.activations[name](self.aux_head[name](res4))
        out.update({name: head(res5) for name, head in self.image_heads.items()})
        return out


@MODELS.register("pspnet")
def pspnet(heads, backbone="resnet101", bins=(1, 2, 3, 6), output_stride=8, pretrained="none", deep_stem=True,
           dropout=0.1, in_channels=3, freeze_bn=False):
    """PSPNet; returns {head: output} with `<head>/aux` (at 1/8 of the input) per dense head in train mode.

    Builds any dense heads (e.g. seg and depth jointly, sharing the pyramid pooling) and image heads (scene).
    The paper weights the auxiliary loss by 0.4 (set `training.loss.scale_weight: [1.0, 0.4]`).
    Options: backbone resnet50 | resnet101 (default; the paper's) (resnet18/34/152 too, heads scale with it);
    bins (default [1, 2, 3, 6]); output_stride 8 (default) | 16; deep_stem (default true: the `<backbone>_v1c`
    encoder with three 3×3 convs, as the paper; torchvision's ImageNet weights need deep_stem: false);
    dropout (default 0.1); pretrained none (default) | imagenet | PATH; freeze_bn (default false);
    in_channels (default 3). A pyramid branch pools to 1×1, so BN needs a batch of at least 2 in train mode.
    """
    return PSPNet(heads, backbone, bins, output_stride, pretrained, deep_stem, dropout, in_channels, freeze_bn)


pspnet.input_keys = PSPNet.input_keys
