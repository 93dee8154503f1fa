"""SA-Gate (Chen et al., ECCV 2020, "Bi-directional Cross-Modality Feature Propagation with Separation-and-
Aggregation Gate for RGB-D Semantic Segmentation"): a dual-path ResNet whose paths meet in an SA-Gate after each
stage, with a DeepLab v3+ decoder on the gates' merged features.

Layer specs from the authors' reference code (RGBD_Semantic_Segmentation_PyTorch, model/SA-Gate.nyu/network.py,
dual_resnet.py, net_util.py):
- Two deep-stem ResNet-101 paths (the `resnet101_v1c` encoder, run stage by stage), one for the colour image and
  one for HHA or depth. As in the reference, each stage's first block shares its downsample module (strided 1×1
  conv + BN) between the two paths: one module, applied to both paths, counted once.
- layer4 keeps its resolution: its stride goes, and its blocks' 3×3 convs are dilated 2, 4, 8 (output stride 16).
- An SA-Gate after each of layer1-4. Separation: each path is recalibrated by the other,
  rec_rgb = rgb + w ⊙ other with w = sigmoid(FC(ReLU(FC(GAP([other, rgb]))))) (channel reduction 16), and the same
  for the other path. Aggregation: two 1×1 convs (2C → 1) on [rec_rgb, rec_other], a softmax over the two maps,
  merge = rgb · a + other · b. Propagation: ReLU((rgb + merge) / 2) and ReLU((other + merge) / 2) feed the next
  stage of each path; the merges feed the decoder.
- DeepLab v3+ head: ASPP on merge4 (1×1 and 3×3 atrous 6/12/18 branches → 256 each, concatenated, BN +
  LeakyReLU, 1×1 → 256; an image-pooling branch 1×1 → BN + LeakyReLU → 1×1 added to it; BN + LeakyReLU),
  upsampled to merge1, whose 1×1 reduction to 48 channels it is concatenated with (304), two 3×3 conv-BN-ReLU
  (256), Dropout2d 0.1, 1×1 classifier, bilinear (align_corners, as the reference) to the input size.
- Auxiliary FCN head on merge4: 3×3 conv → C/4 + BN + ReLU, Dropout 0.1, 1×1 classifier (the paper weights its
  loss 0.2: `training.aux_weights: {seg/aux: 0.2}`).

Parameters at 40 classes with image + hha: 110,875,160, the reference's count exactly: two ResNet-101-v1c paths
(2 × 42,623,936) less the shared downsample modules (2,792,960), 4 SA-Gates (2,112,488), ASPP (15,535,104),
decoder (1,313,928) and auxiliary head (9,458,728). With depth or raw_depth the second path's first conv takes one
channel (−1,152); `inputs: [image]` is one path without gates and the same head (68,931,696).

Heads: the ASPP is shared; each dense head (seg, depth) has its own decoder and auxiliary head (`<head>/aux` in
train mode, at 1/16 of the input); each image head (scene) pools merge4 (ImageHead). The head's convs start from
He init (fan-in), as the reference initialises its head; the gates from PyTorch's defaults. A depth head (not in
the paper) has no dropout: dropping channels right before a regression output adds noise to the metres it
predicts (on a fixed batch, 100 Adam steps reached an L1 of 0.12 m without it and 0.20-0.34 m with it).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.encoders import get_encoder
from ptsemseg.encoders.resnet import DEEP_STEM_SUFFIX, RESNETS, conv_bn_relu, dilate_stage
from ptsemseg.errors import PtsemsegError, closest
from ptsemseg.models import MODELS
from ptsemseg.models._aspp import TorchSegASPP
from ptsemseg.models._inputs import InputNorm
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds
from ptsemseg.schema import key_spec

SECOND_PATH_KEYS = ("hha", "depth", "raw_depth")
SINGLE_PATH_KEYS = ("image",) + SECOND_PATH_KEYS
STAGES = ("layer1", "layer2", "layer3", "layer4")
RESNET_ENCODERS = tuple(RESNETS) + tuple(name + DEEP_STEM_SUFFIX for name in RESNETS)


def upsample(x, size):
    """Bilinear resize with align_corners=True, as the reference."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class FeatureSeparation(nn.Module):
    """Recalibrate `main` with the channels of `guide` that the pooled pair selects: main + w ⊙ guide."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.weights = nn.Sequential(nn.Linear(2 * channels, channels // reduction), nn.ReLU(inplace=True),
                                     nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, guide, main):
        weight = self.weights(self.pool(torch.cat([guide, main], dim=1)).flatten(1))
        return main + weight[:, :, None, None] * guide


class SAGate(nn.Module):
    """Separation-and-aggregation gate: returns both paths' inputs to the next stage and their merge."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.separate_rgb = FeatureSeparation(channels, reduction)
        self.separate_other = FeatureSeparation(channels, reduction)
        self.gate_rgb = nn.Conv2d(2 * channels, 1, 1)
        self.gate_other = nn.Conv2d(2 * channels, 1, 1)

    def forward(self, rgb, other):
        recalibrated = torch.cat([self.separate_rgb(other, rgb), self.separate_other(rgb, other)], dim=1)
        gates = torch.softmax(torch.cat([self.gate_rgb(recalibrated), self.gate_other(recalibrated)], dim=1), dim=1)
        merged = rgb * gates[:, :1] + other * gates[:, 1:]
        return F.relu((rgb + merged) / 2), F.relu((other + merged) / 2), merged


class Decoder(nn.Module):
    """DeepLab v3+ decoder: low-level features reduced to 48 channels, concatenated with the upsampled context,
    two 3×3 conv-BN-ReLU, Dropout2d, 1×1 classifier."""

    def __init__(self, low_channels, context_channels, n_outputs, dropout):
        super().__init__()
        self.reduce = conv_bn_relu(low_channels, 48, kernel_size=1)
        self.fuse = nn.Sequential(conv_bn_relu(context_channels + 48, 256), conv_bn_relu(256, 256),
                                  nn.Dropout2d(dropout))
        self.classify = nn.Conv2d(256, n_outputs, 1)

    def forward(self, context, low):
        low = self.reduce(low)
        return self.classify(self.fuse(torch.cat([upsample(context, low.shape[-2:]), low], dim=1)))


def fcn_head(in_channels, n_outputs, dropout):
    """The reference's auxiliary FCN head: 3×3 conv-BN-ReLU to C/4, Dropout, 1×1 classifier."""
    return nn.Sequential(conv_bn_relu(in_channels, in_channels // 4), nn.Dropout(dropout),
                         nn.Conv2d(in_channels // 4, n_outputs, 1))


def head_dropout(spec, dropout):
    """The reference's dropout for heads of logits (seg); none before metric outputs (depth), whose values it
    would perturb directly."""
    return dropout if spec.activation == "identity" else 0.0


def run_stem(encoder, x):
    """A ResNet encoder's stem (deep or torchvision's) and max-pool."""
    x = encoder.stem(x) if encoder.deep_stem else encoder.relu(encoder.bn1(encoder.conv1(x)))
    return encoder.maxpool(x)


def check_options(inputs, backbone, reduction, aspp_rates, dropout):
    """The options as sagate takes them; anything else fails in one line."""
    inputs = tuple(inputs)
    if not (len(inputs) == 1 and inputs[0] in SINGLE_PATH_KEYS
            or len(inputs) == 2 and inputs[0] == "image" and inputs[1] in SECOND_PATH_KEYS):
        raise PtsemsegError(f"model sagate takes inputs [image, hha | depth | raw_depth] or one of them alone, "
                            f"got {list(inputs)}")
    if backbone not in RESNET_ENCODERS:
        raise PtsemsegError(f"model sagate: backbone must be a ResNet encoder (e.g. resnet101_v1c), got "
                            f"{backbone!r}{closest(backbone, RESNET_ENCODERS)}")
    if isinstance(reduction, bool) or not isinstance(reduction, int) or not 1 <= reduction <= 64:
        raise PtsemsegError(f"model sagate: reduction must be an integer from 1 to 64, got {reduction!r}")
    if not (isinstance(aspp_rates, (list, tuple)) and aspp_rates
            and all(isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 for rate in aspp_rates)):
        raise PtsemsegError(f"model sagate: aspp_rates must be a list of positive integers, got {aspp_rates!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise PtsemsegError(f"model sagate: dropout must be in [0, 1), got {dropout!r}")
    return inputs


class SAGateNet(nn.Module):
    """One ResNet path per input, SA-Gates between them after every stage (two inputs), ASPP + one DeepLab v3+
    decoder and auxiliary FCN head per dense head on the merged features, image heads on merge4."""

    def __init__(self, heads, inputs, backbone, reduction, aspp_rates, dropout, pretrained):
        super().__init__()
        require_kinds(heads, "sagate", (DENSE, IMAGE))
        self.input_keys = check_options(inputs, backbone, reduction, aspp_rates, dropout)
        self.input_norms = nn.ModuleList(InputNorm(key) for key in self.input_keys)
        self.paths = nn.ModuleList()
        for key in self.input_keys:
            path = get_encoder(backbone, in_channels=key_spec(key).channels, output_stride=16, pretrained=pretrained)
            for number, block in enumerate(path.layer4):
                dilate_stage(block, 2 ** (number + 1))  # multi-grid 2, 4, 8
            self.paths.append(path)
        for stage in STAGES:
            first_blocks = [getattr(path, stage)[0] for path in self.paths]
            for block in first_blocks[1:]:
                if block.downsample is not None:
                    block.downsample = first_blocks[0].downsample
        channels = self.paths[0].out_channels
        self.gates = nn.ModuleList(SAGate(width, reduction) for width in channels) if len(self.paths) == 2 \
            else nn.ModuleList()

        dense = dense_heads(heads)
        self.aspp = (TorchSegASPP(channels[-1], 256, aspp_rates, 256, nn.LeakyReLU(), activate_pool=True)
                     if dense else None)
        self.decoders = nn.ModuleDict({
            spec.name: Decoder(channels[0], 256, spec.channels, head_dropout(spec, dropout)) for spec in dense})
        self.aux_heads = nn.ModuleDict({
            spec.name: fcn_head(channels[-1], spec.channels, head_dropout(spec, dropout)) for spec in dense})
        head = [self.decoders, self.aux_heads] + ([self.aspp] if dense else [])
        for conv in (module for part in head for module in part.modules() if isinstance(module, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense})
        self.image_heads = nn.ModuleDict({spec.name: ImageHead(channels[-1], spec) for spec in image_heads(heads)})

    def encode(self, inputs):
        """The merged features after layer1-4 (a single path's stage outputs when there is one input)."""
        streams = [run_stem(path, norm(x)) for path, norm, x in zip(self.paths, self.input_norms, inputs, strict=True)]
        merges = []
        for number, stage in enumerate(STAGES):
            streams = [getattr(path, stage)(x) for path, x in zip(self.paths, streams)]
            if self.gates:
                rgb, other, merged = self.gates[number](*streams)
                streams = [rgb, other]
            else:
                merged = streams[0]
            merges.append(merged)
        return merges

    def forward(self, *inputs):
        merges = self.encode(inputs)
        low, deep = merges[0], merges[-1]
        out = {}
        if self.aspp is not None:
            context = self.aspp(deep)
            for name, decoder in self.decoders.items():
                out[name] = self.activations[name](upsample(decoder(context, low), inputs[0].shape[-2:]))
                if self.training:
                    out[f"{name}/aux"] = self.activations[name](self.aux_heads[name](deep))
        out.update({name: head(deep) for name, head in self.image_heads.items()})
        return out


@MODELS.register("sagate")
def sagate(heads, inputs=("image", "hha"), backbone="resnet101_v1c", reduction=16, aspp_rates=(6, 12, 18),
           dropout=0.1, pretrained="none"):
    """SA-Gate with a DeepLab v3+ head; returns {head: output} and `<head>/aux` per dense head in train mode.

    Options: inputs [image, hha] (default, the paper's) | [image, depth] | [image, raw_depth] (metric depth,
    standardised inside the model, into a 1-channel stem) | one key alone (one path, no gates, same head: the
    RGB-only baseline with [image]); backbone resnet101_v1c (default, the paper's deep-stem ResNet-101) or any
    ResNet encoder (resnet18_v1c, resnet50_v1c... for small runs; a plain name takes torchvision's stem and its
    ImageNet weights); reduction (default 16) of the gates' channel recalibration; aspp_rates (default [6, 12, 18]);
    dropout (default 0.1) of the decoder and auxiliary head of seg (depth heads have none); pretrained none
    (default) | imagenet (plain ResNet names only) | PATH, loaded into every path. The ASPP's image pooling needs
    a batch of at least 2 in train mode. The paper weights the auxiliary loss 0.2 (`training.aux_weights`).
    """
    return SAGateNet(heads, inputs, backbone, reduction, aspp_rates, dropout, pretrained)


sagate.input_keys = ("image", "hha")
