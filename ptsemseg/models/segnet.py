"""SegNet (Badrinarayanan, Kendall & Cipolla, PAMI 2017) for segmentation, depth or both.

The encoder is the `vgg16_bn` encoder: VGG16's 13 convolutions, each followed by BN and ReLU, with 2×2 max pools
whose indices it returns; the decoder mirrors it, placing values back at those indices with max-unpooling (to the
exact pre-pool size, so any input size works) and densifying with conv-BN-ReLU. As in the paper's Caffe model the
last decoder conv feeds the softmax directly: the seed projects end it in BN + ReLU, which clamps every logit to be
non-negative (the network cannot express "certainly not this class" below 0) and kills the gradient of any class
whose logit reaches 0. Depth uses the same conv (1 channel) followed by softplus for positive metres. Without that
BN the model has 2 parameters per output fewer than the seeds' (29,453,971 against 29,454,009 at 19 classes, −38;
29,443,585 against 29,443,587 for depth).

Heads: encoder and decoder are shared; each dense head is its own last 3×3 conv (with the head's output
activation), each image-level head (scene) pools the encoder's pool5. Without pretrained weights the encoder
starts as torchvision initialises VGG16-BN (He normal, fan-out), the decoder from PyTorch's default.

`pretrained: imagenet` loads torchvision's VGG16-BN: the encoder here has BN after each conv, and the BN variant's
conv weights were trained together with those BN layers, so convs and BN statistics are copied together. A local
plain VGG16 file (what the seed used) also works: its convs are copied and the BN layers keep their defaults.
"""
import torch.nn as nn

from ptsemseg.encoders import get_encoder
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds
from ptsemseg.models.vgg import VGG16_STAGES, vgg16_stage


def segnet_decoder():
    """Decoder stage i undoes encoder stage i (the stages listed from the first): its convs (conv-BN-ReLU) keep
    the stage's width and the last one narrows to the previous stage's width; the first stage's decoder has one
    conv fewer and ends in the heads (`segnet_dense_heads`)."""
    decoder = nn.ModuleList()
    for number, channels in enumerate(VGG16_STAGES):
        width = channels[-1]
        out_channels = VGG16_STAGES[number - 1][-1] if number > 0 else width
        n_convs = len(channels) if number > 0 else len(channels) - 1
        decoder.append(vgg16_stage(width, [width] * (n_convs - 1) + [out_channels], batch_norm=True))
    return decoder


def segnet_dense_heads(heads):
    """One last 3×3 conv per dense head, from the decoder's 64 channels, with the head's output activation."""
    return nn.ModuleDict({
        spec.name: nn.Sequential(nn.Conv2d(VGG16_STAGES[0][-1], spec.channels, 3, padding=1), spec.make_activation())
        for spec in dense_heads(heads)})


class SegNet(nn.Module):
    """VGG16-BN encoder with pooling indices, mirrored max-unpooling decoder, a 3×3 conv per dense head."""

    input_keys = ("image",)

    def __init__(self, heads, in_channels=3, pretrained=None):
        super().__init__()
        require_kinds(heads, "segnet", {DENSE, IMAGE})
        if not dense_heads(heads):
            raise PtsemsegError("arch segnet needs a dense head (e.g. seg or depth) beside image-level ones")
        self.encoder = get_encoder("vgg16_bn", in_channels=in_channels, pretrained=pretrained)
        self.unpool = nn.MaxUnpool2d(2, stride=2)

        self.decoder = segnet_decoder()
        self.dense = segnet_dense_heads(heads)
        self.image = nn.ModuleDict({spec.name: ImageHead(self.encoder.out_channels[-1], spec)
                                    for spec in image_heads(heads)})

    def forward(self, x):
        features, pooling = self.encoder.forward_with_indices(x)
        h = features[-1]
        for stage, (indices, size) in zip(reversed(self.decoder), reversed(pooling)):
            h = stage(self.unpool(h, indices, output_size=size))
        outputs = {name: head(h) for name, head in self.dense.items()}
        outputs.update({name: head(features[-1]) for name, head in self.image.items()})
        return outputs


@MODELS.register("segnet")
def build_segnet(heads, in_channels=3, pretrained=None):
    """SegNet; `pretrained`: none | imagenet (torchvision VGG16-BN encoder) | path to a vgg16 or vgg16_bn file."""
    return SegNet(heads, in_channels=in_channels, pretrained=pretrained)


build_segnet.input_keys = SegNet.input_keys
