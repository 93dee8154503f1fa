"""SSMA (Valada, Mohan & Burgard, IJCV 2019): two AdapNet++ encoders fused by self-supervised model adaptation
blocks at the eASPP output and at both skips, one decoder.

Layer specs follow the authors' TensorFlow code (DeepSceneSeg/SSMA, models/SSMA.py and ssma_helper.py):
- Each modality has its own AdapNet++ encoder with eASPP and skip projections (ptsemseg/models/adapnetpp.py).
- An SSMA block concatenates the two modalities' maps (2C channels), gates them with a bottleneck of two 3×3 convs
  with bias (2C → hidden, ReLU; hidden → 2C, sigmoid), multiplies the concatenation by the gate and projects it to
  C channels. At the eASPP output hidden = 2C/16 (512 → 32) and the projection is 1×1 + BN; at the skips (2 × 24
  channels) hidden = 8 and the projection a 3×3 conv with bias, no BN.
- The decoder is AdapNet++'s with one addition: before each concatenation the fused skip is multiplied by the
  upsampled decoder map's global mean → 1×1 (24) + BN + ReLU.
- The reference builds no auxiliary heads for SSMA by default (has_aux_loss=False); `aux: true` adds AdapNet++'s.
Image-level heads (scene) pool the fused eASPP output. Inputs of any size are padded to a multiple of 16.

Parameters with a 3-channel second input (hha; the reference feeds HHA or jet-coloured depth as 3 channels), C
classes: 56,170,092 + 64·C² + 260·C (56,198,136 at 19 classes, 56,282,892 at 40), each layer as in the reference
code; the authors' README lists 56.44 M (Cityscapes), 0.4 % more than that code builds. Depth in metres enters as
one channel: its first conv and input BN have 6,276 parameters fewer (56,191,860 at 19 classes, 56,276,616 at 40).

With `inputs: [image]` the model is a plain AdapNet++ (same options, its decoder without the skip attention), the
RGB-only baseline of the same architecture. The paper trains the two experts as AdapNet++ first;
here the model trains end to end, from `pretrained: imagenet` (both backbones) or from scratch.
"""
import torch
import torch.nn as nn

from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._inputs import check_inputs
from ptsemseg.models.adapnetpp import (SKIP_CHANNELS, AdapNetEncoder, AdapNetHeads, AdapNetPP, Decoder,
                                       check_options, conv_bn, he_init, start_weights)

SECOND_INPUTS = ("depth", "raw_depth", "hha")
CONTEXT_REDUCTION = 16  # the gate's hidden width at the eASPP fusion: 2C / 16
SKIP_HIDDEN = 8  # the gate's hidden width at the skip fusions (48 -> 8 -> 48)


class SSMABlock(nn.Module):
    """Fuse two maps: concatenation, weighted by a 3×3 bottleneck gate (ReLU, then sigmoid), then `project`."""

    def __init__(self, channels, hidden, project):
        super().__init__()
        self.gate = nn.Sequential(nn.Conv2d(2 * channels, hidden, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, 2 * channels, 3, padding=1), nn.Sigmoid())
        self.project = project

    def forward(self, first, second):
        both = torch.cat([first, second], dim=1)
        return self.project(both * self.gate(both))


class SSMA(nn.Module):
    """Two AdapNet++ encoders -> SSMA fusion of eASPP outputs and skips -> decoder with skip attention -> heads."""

    def __init__(self, heads, keys, width, channels, rates, dropout, aux):
        super().__init__()
        self.input_keys = tuple(keys)
        self.encoders = nn.ModuleList(AdapNetEncoder(key, width, channels, rates, dropout) for key in keys)
        self.fuse_context = SSMABlock(channels, 2 * channels // CONTEXT_REDUCTION,
                                      conv_bn(2 * channels, channels, relu=False))
        self.fuse_skips = nn.ModuleList(
            SSMABlock(SKIP_CHANNELS, SKIP_HIDDEN, nn.Conv2d(2 * SKIP_CHANNELS, SKIP_CHANNELS, 3, padding=1))
            for _ in range(2))
        he_init(self.fuse_context)
        he_init(self.fuse_skips)
        self.decoder = Decoder(channels, skip_attention=True)
        self.heads = AdapNetHeads(heads, channels, aux)

    def forward(self, *inputs):
        (skip1_a, skip2_a, context_a), (skip1_b, skip2_b, context_b) = (
            encoder(x) for encoder, x in zip(self.encoders, inputs, strict=True))
        context = self.fuse_context(context_a, context_b)
        skip1, skip2 = self.fuse_skips[0](skip1_a, skip1_b), self.fuse_skips[1](skip2_a, skip2_b)
        return self.heads(context, *self.decoder(context, skip2, skip1), inputs[0].shape[-2:])


@MODELS.register("ssma")
def ssma(heads, inputs=("image", "depth"), width=64, decoder_channels=256, easpp_rates=(3, 6, 12), dropout=0.7,
         aux=False, pretrained="none"):
    """SSMA fusion of two AdapNet++ encoders; returns {head: output} (and, with `aux`, `<head>/aux1`, `<head>/aux2`
    per dense head in train mode, at the input size).

    Options: inputs: [image, depth] (default), [image, hha] or [image, raw_depth] (the second stream through
    InputNorm when metric), or [image] alone (plain AdapNet++); width (default 64, ResNet-50), decoder_channels
    (default 256), easpp_rates (default [3, 6, 12]) and dropout (default 0.7) of each encoder as in adapnetpp;
    aux: AdapNet++'s auxiliary heads (default false, as the reference SSMA); pretrained: none (default) | imagenet
    (torchvision ResNet-50 for both backbones) | PATH (weights of this model).
    """
    keys = check_inputs("ssma", inputs)
    check_options("ssma", heads, width, decoder_channels, easpp_rates, dropout, aux)
    options = (width, decoder_channels, tuple(easpp_rates), dropout, aux)
    if keys == ("image",):
        model = AdapNetPP(heads, "image", *options)
        return start_weights(model, [model.encoder], pretrained, "ssma")
    if len(keys) != 2 or keys[0] != "image" or keys[1] not in SECOND_INPUTS:
        raise PtsemsegError(f"model ssma takes [image, X] with X one of {', '.join(SECOND_INPUTS)}, or [image] "
                            f"alone; got [{', '.join(keys)}]")
    model = SSMA(heads, keys, *options)
    return start_weights(model, model.encoders, pretrained, "ssma")


ssma.input_keys = ("image", "depth")
