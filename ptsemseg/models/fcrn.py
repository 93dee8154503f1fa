"""FCRN (Laina et al., 3DV 2016): ResNet-50 encoder and a decoder of fast up-projection blocks.

The convs that BN follows have no bias (BN's mean subtraction cancels it); Semseg-MonoDepth's up-projections give
their 4 + 4 up-convolution convs and their 3×3 conv one, 9 per output channel of each of the 4 up-projections
(512 + 256 + 128 + 64): −8,640 parameters, 63,573,395 against 63,582,035 at 19 classes (63,563,009 against
63,571,649 for depth).

Heads: the up-projection decoder is shared; each dense head (seg, depth) gets its own dropout + 3×3 conv on the
decoder's output, each image head (scene) pools res5.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.encoders.resnet import resnet_backbone
from ptsemseg.models import MODELS
from ptsemseg.models._utils import resize_to
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds


class FastUpConv(nn.Module):
    """×2 unpooling followed by a 5×5 conv, computed as four small convs on the input, interleaved.

    Unpooling puts each input pixel at the top-left of a 2×2 cell, so the 5×5 conv sees a 3×3, 3×2,
    2×3 or 2×2 neighbourhood of input pixels depending on the output pixel's position in its cell.
    """

    # (kernel, F.pad as (left, right, top, bottom)) for cell positions (0,0), (0,1), (1,0), (1,1)
    KERNELS_AND_PADS = (((3, 3), (1, 1, 1, 1)), ((3, 2), (0, 1, 1, 1)), ((2, 3), (1, 1, 0, 1)), ((2, 2), (0, 1, 0, 1)))

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels, out_channels, kernel, bias=False)
                                   for kernel, _ in self.KERNELS_AND_PADS)

    def forward(self, x):
        cells = [conv(F.pad(x, pad)) for conv, (_, pad) in zip(self.convs, self.KERNELS_AND_PADS)]
        return F.pixel_shuffle(torch.stack(cells, dim=2).flatten(1, 2), 2)


class UpProjection(nn.Module):
    """Residual ×2 up-projection: ReLU(BN(conv3×3(ReLU(BN(upconv1(x))))) + BN(upconv2(x)))."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.main = nn.Sequential(
            FastUpConv(in_channels, out_channels), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Sequential(FastUpConv(in_channels, out_channels), nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return F.relu(self.main(x) + self.shortcut(x))


class FCRN(nn.Module):
    """ResNet (output stride 32) -> 1×1 conv + BN halving the width -> 4 up-projections (each halves the width)
    -> per dense head: Dropout2d -> 3×3 conv -> bilinear to the input size (the decoder ends at 1/2 resolution);
    image heads pool res5."""

    input_keys = ("image",)

    def __init__(self, heads, backbone, pretrained, dropout, in_channels, freeze_bn):
        super().__init__()
        require_kinds(heads, "fcrn", (DENSE, IMAGE))
        self.backbone = resnet_backbone(backbone, in_channels=in_channels, pretrained=pretrained,
                                        freeze_bn=freeze_bn)
        width = self.backbone.out_channels[-1] // 2
        self.reduce = nn.Sequential(nn.Conv2d(2 * width, width, 1, bias=False), nn.BatchNorm2d(width))
        self.decoder = nn.Sequential(*(UpProjection(width >> i, width >> (i + 1)) for i in range(4)))
        dense = dense_heads(heads)
        self.predict = nn.ModuleDict({spec.name: nn.Sequential(nn.Dropout2d(dropout),
                                                               nn.Conv2d(width >> 4, spec.channels, 3, padding=1))
                                      for spec in dense})
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense})
        self.image_heads = nn.ModuleDict({spec.name: ImageHead(2 * width, spec) for spec in image_heads(heads)})

    def forward(self, image):
        res5 = self.backbone(image)[-1]
        decoded = self.decoder(self.reduce(res5))
        out = {name: self.activations[name](resize_to(predict(decoded), image.shape[-2:]))
               for name, predict in self.predict.items()}
        out.update({name: head(res5) for name, head in self.image_heads.items()})
        return out


@MODELS.register("fcrn")
def fcrn(heads, backbone="resnet50", pretrained="none", dropout=0.5, in_channels=3, freeze_bn=False):
    """FCRN with fast up-projections (bias-free convs before BN: 8,640 parameters fewer than the seed's); returns
    {head: output}, no auxiliary outputs.

    Builds any dense heads (e.g. seg and depth jointly, sharing the decoder) and image heads (scene) on res5.
    Options: backbone resnet50 (default; the paper's) | resnet18 | resnet34 | resnet101 | resnet152
    (the decoder starts at half the backbone's width); dropout: Dropout2d rate before the prediction (default 0.5);
    pretrained none (default) | imagenet | PATH; freeze_bn (default false); in_channels (default 3).
    """
    return FCRN(heads, backbone, pretrained, dropout, in_channels, freeze_bn)


fcrn.input_keys = FCRN.input_keys
