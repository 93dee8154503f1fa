"""AdapNet++ (Valada, Mohan & Burgard, IJCV 2019): single-modality segmentation with multiscale residual units,
an efficient atrous spatial pyramid pooling (eASPP) and a decoder with two skip refinements.

Layer specs follow the authors' TensorFlow code (DeepSceneSeg/AdapNet-pp, models/AdapNet_pp.py and
network_base.py):
- Encoder: a BN on the input (instead of mean subtraction), then a full pre-activation ResNet-50 [3, 4, 6, 3] with
  strides [1, 2, 2, 1] (output stride 16). A unit is conv1 1×1-BN-ReLU, conv2 3×3-BN-ReLU, conv3 1×1; the sum with
  the shortcut is normalised by the unit's bn3 + ReLU, which pre-activates the next unit while the identity path
  carries the sum itself. Projection shortcuts read the pre-activated input, except in the very first unit, where
  (as in the reference) the projection reads the output of the unit's conv1. Multiscale units (block 2's last,
  block 3's units 3-6) split conv2's output channels into a plain half and a half at dilation 2; block 4's units
  dilate both halves (rate 2). Block 4's third unit drops its residual with p = 0.7 (the reference's keep 0.3).
- eASPP on block 4: a 1×1 branch (256), three cascades 1×1 (64) → 3×3 atrous (64) → 3×3 atrous (64) → 1×1 (256) at
  rates 3, 6 and 12, and image pooling (global mean → 1×1 (256)); the 1280 channels → 1×1 (256) + BN, no ReLU.
- Decoder: ConvT 4×4 s2 (256) + BN, concatenated with skip 2 (block 2's output → 1×1 (24) + BN) → two 3×3 (256);
  the same again with skip 1 (from block 1) → per dense head 1×1 (classes) + BN + ReLU → ConvT 8×8 s4 + BN.
- In train mode two auxiliary outputs per dense head, 1×1 convs + BN on the decoder's upsampled maps: `<head>/aux1`
  at 1/4 and `<head>/aux2` at 1/8, returned bilinearly upsampled to the input size as the reference does (its loss
  weights them 0.6 and 0.5: `training.aux_weights`).
Every conv is bias-free and followed by BN; convs start from He initialisation (fan-in; transposed ones over their
input channels) as the reference's truncated normals. Inputs of any size are padded (zeros after the input BN) to a
multiple of 16 and the outputs cropped back. Image-level heads (scene) pool the eASPP output.

Parameters at the defaults (auxiliary heads included; scene heads add 257 per scene class): 30,133,030 + 64·C² +
776·C for C classes, 30,170,878 at 19 classes and 30,266,470 at 40 (the paper and the authors' README: 30.2 M),
each layer as in the reference code; a one-channel depth head: 30,133,870.

`pretrained: imagenet` starts the backbone as the reference does (its init checkpoint holds a standard ResNet-50
under these layer names): torchvision's ResNet-50 convs, each conv's BN, and each unit's bn3 as the BN that follows
the unit's sum; the shortcut BNs are not used.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import ResNet50_Weights

from ptsemseg.encoders.weights import mean_channel_filter, pretrained_state_dict
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._inputs import InputNorm, check_inputs
from ptsemseg.models._utils import NarrowFp32ConvTranspose2d, load_own_weights
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds
from ptsemseg.schema import key_spec

UNITS = (3, 4, 6, 3)
STRIDES = (1, 2, 2, 1)
EXPANSION = 4
MULTISCALE_RATES = (1, 2)  # block 2's last unit and block 3's units 3-6: plain half, half at dilation 2
BLOCK4_RATES = (2, 2)  # block 4: both halves atrous
DROPOUT_UNIT = (3, 2)  # (block index, unit index) whose residual is dropped out: block 4, unit 3
SKIP_CHANNELS = 24
OUTPUT_STRIDE = 16
SINGLE_INPUTS = ("image", "depth", "raw_depth", "hha")


def conv_bn(in_channels, out_channels, kernel_size=1, dilation=1, relu=True):
    """Bias-free conv ('same' padding, optional dilation) + BN (+ ReLU)."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size // 2),
                        dilation=dilation, bias=False), nn.BatchNorm2d(out_channels)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


def upsample_bn(channels, factor, narrow=False):
    """Bias-free transposed conv (kernel 2·factor, stride factor: exactly ×factor) + BN."""
    deconv = NarrowFp32ConvTranspose2d if narrow else nn.ConvTranspose2d
    return nn.Sequential(deconv(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False),
                         nn.BatchNorm2d(channels))


def he_init(module):
    """He normal initialisation over each conv's input (a transposed conv's in_channels × kernel area)."""
    for layer in module.modules():
        if isinstance(layer, nn.ConvTranspose2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")


class MultiscaleConv2d(nn.Conv2d):
    """3×3 conv whose first half of output channels is dilated by rates[0] and second half by rates[1] (one weight
    tensor, split as the reference splits its kernel)."""

    def __init__(self, in_channels, out_channels, rates):
        super().__init__(in_channels, out_channels, 3, padding=rates[0], dilation=rates[0], bias=False)
        self.rates = tuple(rates)

    def forward(self, x):
        if self.rates[0] == self.rates[1]:
            return super().forward(x)
        half = self.out_channels // 2
        return torch.cat([F.conv2d(x, weight, padding=rate, dilation=rate)
                          for weight, rate in zip((self.weight[:half], self.weight[half:]), self.rates)], dim=1)


class ResidualUnit(nn.Module):
    """Pre-activation bottleneck; forward(sum, activated) -> (its sum, bn3 + ReLU of that sum)."""

    def __init__(self, in_channels, width, stride=1, rates=None, projection=False, dropout=0.0,
                 shortcut_after_conv1=False):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = MultiscaleConv2d(width, width, rates) if rates else \
            nn.Conv2d(width, width, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        shortcut_in = width if shortcut_after_conv1 else in_channels
        self.shortcut = nn.Conv2d(shortcut_in, out_channels, 1, stride, bias=False) if projection else None
        self.shortcut_after_conv1 = shortcut_after_conv1
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, total, activated):
        reduced = self.relu(self.bn1(self.conv1(activated)))
        residual = self.dropout(self.conv3(self.relu(self.bn2(self.conv2(reduced)))))
        if self.shortcut is not None:
            total = self.shortcut(reduced if self.shortcut_after_conv1 else activated)
        total = residual + total
        return total, self.relu(self.bn3(total))


def make_block(index, in_channels, width, dropout):
    """Block `index` (0-3) of the AdapNet++ encoder as a list of units."""
    units = []
    for unit in range(UNITS[index]):
        if index == 3:
            rates = BLOCK4_RATES
        elif (index == 1 and unit == UNITS[1] - 1) or (index == 2 and unit >= 2):
            rates = MULTISCALE_RATES
        else:
            rates = None
        units.append(ResidualUnit(in_channels if unit == 0 else width * EXPANSION, width,
                                  stride=STRIDES[index] if unit == 0 else 1, rates=rates, projection=unit == 0,
                                  dropout=dropout if (index, unit) == DROPOUT_UNIT else 0.0,
                                  shortcut_after_conv1=(index, unit) == (0, 0)))
    return nn.ModuleList(units)


class ImagePooling(nn.Module):
    """Global mean -> 1×1 conv -> broadcast to `size` -> BN -> ReLU.

    BN after the broadcast gives the same values as BN on the pooled vector (statistics over a constant map equal
    those over the batch) and also works for a batch of one in train mode.
    """

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, size):
        pooled = self.conv(x.mean(dim=(2, 3), keepdim=True))
        return self.relu(self.bn(pooled.expand(-1, -1, *size)))


class EASPP(nn.Module):
    """Efficient ASPP: 1×1 branch, cascaded atrous branches per rate, image pooling, 1×1 projection + BN."""

    def __init__(self, in_channels, channels, rates):
        super().__init__()
        branch = channels // 4
        self.plain = conv_bn(in_channels, channels)
        self.cascades = nn.ModuleList(
            nn.Sequential(conv_bn(in_channels, branch), conv_bn(branch, branch, 3, rate),
                          conv_bn(branch, branch, 3, rate), conv_bn(branch, channels))
            for rate in rates)
        self.pooling = ImagePooling(in_channels, channels)
        self.project = conv_bn(channels * (len(rates) + 2), channels, relu=False)

    def forward(self, x):
        branches = [self.plain(x)] + [cascade(x) for cascade in self.cascades] + [self.pooling(x, x.shape[-2:])]
        return self.project(torch.cat(branches, dim=1))


class AdapNetEncoder(nn.Module):
    """One modality: InputNorm (metric keys) and the input BN, zero padding to a multiple of 16, the pre-activation
    ResNet-50 with multiscale units, the two skip projections and eASPP.

    forward(x) -> (skip 1 at 1/4, skip 2 at 1/8, eASPP output at 1/16) of the padded input.
    """

    def __init__(self, key, width, channels, rates, dropout):
        super().__init__()
        in_channels = key_spec(key).channels
        self.input_norm = InputNorm(key)
        self.input_bn = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        widths = [width * 2 ** index for index in range(4)]
        block_in = [width] + [w * EXPANSION for w in widths[:-1]]
        self.blocks = nn.ModuleList(make_block(index, block_in[index], widths[index], dropout) for index in range(4))
        self.skip1 = conv_bn(widths[0] * EXPANSION, SKIP_CHANNELS, relu=False)
        self.skip2 = conv_bn(widths[1] * EXPANSION, SKIP_CHANNELS, relu=False)
        self.easpp = EASPP(widths[3] * EXPANSION, channels, rates)
        he_init(self)

    def forward(self, x):
        x = pad_to_multiple(self.input_bn(self.input_norm(x)), OUTPUT_STRIDE)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        total, activated, outputs = x, x, []
        for block in self.blocks:
            for unit in block:
                total, activated = unit(total, activated)
            outputs.append(activated)
        return self.skip1(outputs[0]), self.skip2(outputs[1]), self.easpp(outputs[3])

    def load_imagenet(self, pretrained):
        """Backbone weights from torchvision's ResNet-50 (see the module docstring); the first conv of a non-RGB
        input starts from the channel mean of the RGB filters."""
        if self.conv1.out_channels != 64:
            raise PtsemsegError(f"model.pretrained: imagenet needs width 64 (ResNet-50), got {self.conv1.out_channels}")
        state = pretrained_state_dict(pretrained, ResNet50_Weights.IMAGENET1K_V1)
        mapped = {"conv1.weight": state["conv1.weight"]}
        mapped.update({f"bn1.{name}": state[f"bn1.{name}"] for name in ("weight", "bias", "running_mean",
                                                                        "running_var")})
        for index, block in enumerate(self.blocks):
            for number, unit in enumerate(block):
                prefix, ours = f"layer{index + 1}.{number}.", f"blocks.{index}.{number}."
                for name in unit.state_dict():
                    if name.endswith("num_batches_tracked"):
                        continue
                    source = "downsample.0.weight" if name == "shortcut.weight" else name
                    mapped[ours + name] = state[prefix + source]
        if self.conv1.in_channels != 3:
            mapped["conv1.weight"] = mean_channel_filter(mapped["conv1.weight"], self.conv1.in_channels)
        misfit = [name for name in mapped if mapped[name].shape != self.state_dict()[name].shape]
        if misfit:
            raise PtsemsegError(f"ImageNet ResNet-50 weights do not fit the AdapNet++ encoder at '{misfit[0]}'")
        self.load_state_dict(mapped, strict=False)


def pad_to_multiple(x, multiple):
    """Zero-pad the bottom and right of an N×C×H×W map to sides divisible by `multiple`."""
    rows, cols = x.shape[-2:]
    return F.pad(x, (0, -cols % multiple, 0, -rows % multiple))


class SkipAttention(nn.Module):
    """SSMA's decoder attention: the upsampled decoder map's global mean -> 1×1 conv + BN + ReLU weights a skip."""

    def __init__(self, channels):
        super().__init__()
        self.pooling = ImagePooling(channels, SKIP_CHANNELS)

    def forward(self, decoder, skip):
        return skip * self.pooling(decoder, skip.shape[-2:])


class Decoder(nn.Module):
    """Two ×2 stages: ConvT + BN, concatenation with a skip, two 3×3 conv-BN-ReLU.

    forward(context, skip2, skip1) -> (features at 1/4, the first stage's upsampled map (1/8), the second's (1/4)).
    With `skip_attention` (SSMA) each skip is first weighted by the pooled upsampled map (`SkipAttention`).
    """

    def __init__(self, channels, skip_attention=False):
        super().__init__()
        self.up = nn.ModuleList(upsample_bn(channels, 2) for _ in range(2))
        self.fuse = nn.ModuleList(nn.Sequential(conv_bn(channels + SKIP_CHANNELS, channels, 3),
                                                conv_bn(channels, channels, 3)) for _ in range(2))
        self.attention = nn.ModuleList(SkipAttention(channels) for _ in range(2)) if skip_attention else None
        he_init(self)

    def forward(self, context, skip2, skip1):
        features, upsampled = context, []
        for stage, skip in enumerate((skip2, skip1)):
            up = self.up[stage](features)
            if self.attention is not None:
                skip = self.attention[stage](up, skip)
            features = self.fuse[stage](torch.cat([up, skip], dim=1))
            upsampled.append(up)
        return features, upsampled[0], upsampled[1]


class AdapNetHeads(nn.Module):
    """The outputs: per dense head 1×1 + BN + ReLU -> ConvT 8×8 s4 + BN -> activation, its auxiliary 1×1 + BN heads
    in train mode (upsampled to the input size), and image heads on the eASPP output; all cropped to `size`."""

    def __init__(self, heads, channels, aux):
        super().__init__()
        dense = dense_heads(heads)
        self.dense = nn.ModuleDict({spec.name: nn.Sequential(conv_bn(channels, spec.channels),
                                                             upsample_bn(spec.channels, 4, narrow=True))
                                    for spec in dense})
        # aux1 on the 1/4 map, aux2 on the 1/8 map, as the reference's conv911 and conv912
        self.aux = nn.ModuleDict({f"{spec.name}/aux{number}": conv_bn(channels, spec.channels, relu=False)
                                  for spec in dense for number in (1, 2)}) if aux else nn.ModuleDict()
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense})
        self.image = nn.ModuleDict({spec.name: ImageHead(channels, spec) for spec in image_heads(heads)})
        he_init(self)

    def forward(self, context, features, up8, up4, size):
        rows, cols = size
        out = {}
        for name, head in self.dense.items():
            out[name] = self.activations[name](head(features)[..., :rows, :cols])
            if self.training and len(self.aux):
                for number, (up, factor) in ((1, (up4, 4)), (2, (up8, 8))):
                    logits = F.interpolate(self.aux[f"{name}/aux{number}"](up), scale_factor=factor,
                                           mode="bilinear", align_corners=False)
                    out[f"{name}/aux{number}"] = self.activations[name](logits[..., :rows, :cols])
        out.update({name: head(context) for name, head in self.image.items()})
        return out


class AdapNetPP(nn.Module):
    """AdapNet++ on one input key: encoder (with eASPP) -> decoder -> heads."""

    def __init__(self, heads, key, width, channels, rates, dropout, aux):
        super().__init__()
        self.input_keys = (key,)
        self.encoder = AdapNetEncoder(key, width, channels, rates, dropout)
        self.decoder = Decoder(channels)
        self.heads = AdapNetHeads(heads, channels, aux)

    def forward(self, x):
        skip1, skip2, context = self.encoder(x)
        return self.heads(context, *self.decoder(context, skip2, skip1), x.shape[-2:])


def check_options(arch, heads, width, channels, rates, dropout, aux):
    """One-line errors for head kinds and options the architecture cannot build."""
    require_kinds(heads, arch, (DENSE, IMAGE))
    if not dense_heads(heads):
        raise PtsemsegError(f"arch {arch} needs a dense head (e.g. seg or depth) beside image-level ones")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise PtsemsegError(f"{arch} width must be a positive integer (64: ResNet-50), got {width!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 8 or channels % 8:
        raise PtsemsegError(f"{arch} decoder_channels must be a multiple of 8 (default 256), got {channels!r}")
    if not isinstance(rates, (list, tuple)) or not rates or \
            not all(isinstance(rate, int) and not isinstance(rate, bool) and rate > 0 for rate in rates):
        raise PtsemsegError(f"{arch} easpp_rates must be a list of positive integers, got {rates!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise PtsemsegError(f"{arch} dropout must be in [0, 1), got {dropout!r}")
    if not isinstance(aux, bool):
        raise PtsemsegError(f"{arch} aux must be true or false, got {aux!r}")


def start_weights(model, encoders, pretrained, arch):
    """`pretrained`: none | imagenet (each encoder's backbone) | PATH (weights of this architecture)."""
    if pretrained == "imagenet":
        for encoder in encoders:
            encoder.load_imagenet(pretrained)
        return model
    return load_own_weights(model, pretrained, arch)


@MODELS.register("adapnetpp")
def adapnetpp(heads, inputs=("image",), width=64, decoder_channels=256, easpp_rates=(3, 6, 12), dropout=0.7,
              aux=True, pretrained="none"):
    """AdapNet++; returns {head: output} plus `<head>/aux1` (from 1/4) and `<head>/aux2` (from 1/8) per dense head
    in train mode, at the input size.

    Options: inputs: one of image (default), depth, raw_depth, hha (metric ones through InputNorm); width: the first
    block's bottleneck width (default 64, ResNet-50; smaller for quick runs); decoder_channels: eASPP and decoder
    width (default 256; the eASPP cascades take a quarter); easpp_rates (default [3, 6, 12]); dropout of block 4's
    third unit (default 0.7, the reference's keep 0.3); aux: the auxiliary heads (default true; the paper weights
    them 0.6 and 0.5 through `training.aux_weights`); pretrained: none (default) | imagenet (torchvision ResNet-50
    backbone) | PATH (AdapNet++ weights).
    """
    keys = check_inputs("adapnetpp", inputs)
    if len(keys) != 1 or keys[0] not in SINGLE_INPUTS:
        raise PtsemsegError(f"model adapnetpp takes one input of {', '.join(SINGLE_INPUTS)}, got {', '.join(keys)} "
                            "(ssma fuses two)")
    check_options("adapnetpp", heads, width, decoder_channels, easpp_rates, dropout, aux)
    model = AdapNetPP(heads, keys[0], width, decoder_channels, tuple(easpp_rates), dropout, aux)
    return start_weights(model, [model.encoder], pretrained, "adapnetpp")


adapnetpp.input_keys = ("image",)
