"""SegNet (Badrinarayanan, Kendall & Cipolla, PAMI 2017) for segmentation and depth.

The encoder is VGG16's 13 convolutions, each followed by BN and ReLU, with 2×2 max pools that keep their
indices; the decoder mirrors it, placing values back at those indices with max-unpooling (to the exact
pre-pool size, so any input size works) and densifying with conv-BN-ReLU. As in the paper's Caffe model the last
decoder conv feeds the softmax directly: the seed projects end it in BN + ReLU, which clamps every logit to be
non-negative (the network cannot express "certainly not this class" below 0) and kills the gradient of any class
whose logit reaches 0. Depth uses the same conv (1 channel) followed by softplus for positive metres. Without that
BN the model has 2 parameters per output fewer than the seeds' (29,453,971 against 29,454,009 at 19 classes, −38;
29,443,585 against 29,443,587 for depth).

`pretrained: imagenet` loads torchvision's VGG16-BN: the encoder here has BN after each conv, and the BN variant's
conv weights were trained together with those BN layers, so convs and BN statistics are copied together. A local
plain VGG16 file (what the seed used) also works: its convs are copied and the BN layers keep their defaults.
"""
import torch.nn as nn
import torchvision

from ptsemseg.models import MODELS
from ptsemseg.models._utils import output_activation, pretrained_state_dict
from ptsemseg.models.vgg import VGG16_STAGES, load_vgg16_convs, stage_batch_norms, stage_convs, vgg16_stage


class SegNet(nn.Module):
    """VGG16-BN encoder with pooling indices, mirrored max-unpooling decoder, 3×3 conv classifier."""

    input_keys = ("image",)

    def __init__(self, n_outputs, task="seg", in_channels=3, pretrained=None):
        super().__init__()
        self.encoder = nn.ModuleList()
        stage_in = in_channels
        for channels in VGG16_STAGES:
            self.encoder.append(vgg16_stage(stage_in, channels, batch_norm=True))
            stage_in = channels[-1]
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, stride=2)

        # Decoder stage i undoes encoder stage i: its convs keep the stage's width and the last one narrows to the
        # previous stage's width; the first stage's decoder ends in the classifier instead.
        self.decoder = nn.ModuleList()
        for number, channels in enumerate(VGG16_STAGES):
            width = channels[-1]
            out_channels = VGG16_STAGES[number - 1][-1] if number > 0 else width
            n_convs = len(channels) if number > 0 else len(channels) - 1
            self.decoder.append(vgg16_stage(width, [width] * (n_convs - 1) + [out_channels], batch_norm=True))
        self.classifier = nn.Conv2d(VGG16_STAGES[0][-1], n_outputs, 3, padding=1)
        self.activation = output_activation(task)

        state = pretrained_state_dict(pretrained, torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1)
        if state is not None:
            load_vgg16_convs(stage_convs(self.encoder), state, pretrained, stage_batch_norms(self.encoder))

    def forward(self, x):
        unpooling = []
        h = x
        for stage in self.encoder:
            h = stage(h)
            size = h.shape[-2:]
            h, indices = self.pool(h)
            unpooling.append((indices, size))
        for stage, (indices, size) in zip(reversed(self.decoder), reversed(unpooling)):
            h = stage(self.unpool(h, indices, output_size=size))
        return self.activation(self.classifier(h))


@MODELS.register("segnet")
def build_segnet(task, n_outputs, in_channels=3, pretrained=None):
    """SegNet; `pretrained`: none | imagenet (torchvision VGG16-BN encoder) | path to a vgg16 or vgg16_bn file."""
    return SegNet(n_outputs, task=task, in_channels=in_channels, pretrained=pretrained)
