"""Full-Resolution Residual Networks A and B (Pohlen, Hermans, Mathias & Leibe, CVPR 2017).

Two streams run side by side: a residual stream `z` (32 channels) stays at full resolution, and a pooling stream
`y` goes down and back up. Each full-resolution residual unit (FRRU) at scale s sees `y` together with `z`
max-pooled by s, computes a new `y` with two conv-BN-ReLU layers, and adds a 1×1 projection of it, upsampled
(nearest) by s, back onto `z`. Units inside a stage are chained: each takes the previous unit's (y, z).

Stages are `[n_units, channels, scale]`. FRRN-A pools 4 times (scale 16), FRRN-B 5 times (scale 32) and, as in the
original, widens its last decoder stage to 96 channels. The classifier is the original 1×1 conv. Inputs whose
sides are not multiples of the deepest scale are zero-padded at the bottom/right inside the model and the output
is cropped back, so any size works (the seed crashed on e.g. 375×1242). Convs followed by BN have no bias (BN's
mean subtraction cancels it); neither have the 1×1 split and merge convs, as in pytorch-semseg.

FRRN is its own encoder-decoder (the two streams run through both), so it takes no encoder from the registry.
Heads: everything up to the refining RUs is shared; each dense head is its own 1×1 classifier (with the head's
output activation), each image-level head (scene) pools the pooling stream `y` after the last encoder stage
(384 channels at the deepest scale).

Differences from the seed projects' FRRN (pytorch-semseg, Semseg-MonoDepth), deliberate, in parameters:
- Chained units (a bug fix). The seeds fed every unit of a stage the same pooled `y`: the units' residual updates
  of `z` added up, but only the last unit's `y` went on, so a stage was not the chain of units the paper stacks.
  Chained, every unit after a stage's first takes the stage's width instead of the incoming width, so its first
  3×3 conv has 9·(width − incoming)·width more weights:
  summed over FRRN_SPECS this is +850,176 for FRRN-A (+82,944 + 497,664 + 663,552 in the encoder stages at
  scales 2, 4, 8; −331,776 − 62,208 in the decoder stages at scales 8 and 2) and +829,440 for FRRN-B
  (+82,944 + 497,664 + 663,552 − 331,776 at scale 16 − 82,944 at scale 2).
- The paper's 1×1 classifier instead of Semseg-MonoDepth's 3×3 (pytorch-semseg's is 1×1 too):
  −8·48·n_outputs weights, −7,296 at 19 classes (−384 for depth).
- No bias in the 5×5 stem conv, which BN follows (the seeds have one): −48.
At 19 classes FRRN-A has 17,409,203 parameters against Semseg-MonoDepth's 16,566,371 (+842,832 = 850,176 − 7,296
− 48; +5.1%) and FRRN-B 24,721,075 against 23,898,979 (+822,096 = 829,440 − 7,296 − 48; +3.4%). For depth the
totals are 17,408,321 (A) and 24,720,193 (B). tests/test_models.py derives these deltas from FRRN_SPECS.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._utils import load_own_weights
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds

RESIDUAL_CHANNELS = 32
BASE_CHANNELS = 48
FRRN_SPECS = {
    "A": {"encoder": [[3, 96, 2], [4, 192, 4], [2, 384, 8], [2, 384, 16]],
          "decoder": [[2, 192, 8], [2, 192, 4], [2, 48, 2]]},
    "B": {"encoder": [[3, 96, 2], [4, 192, 4], [2, 384, 8], [2, 384, 16], [2, 384, 32]],
          "decoder": [[2, 192, 16], [2, 192, 8], [2, 192, 4], [2, 96, 2]]},
}


def conv_bn_relu(in_channels, out_channels, kernel_size):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ResidualUnit(nn.Module):
    """RU: x + BN(conv(ReLU(BN(conv(x))))), 3×3 convs at constant width."""

    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(channels, channels, 3),
                                  nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


class FRRU(nn.Module):
    """Full-resolution residual unit at `scale`: (y, z) -> (y', z + up(conv1×1(y')))."""

    def __init__(self, in_channels, out_channels, scale):
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(conv_bn_relu(in_channels + RESIDUAL_CHANNELS, out_channels, 3),
                                  conv_bn_relu(out_channels, out_channels, 3))
        self.to_residual = nn.Conv2d(out_channels, RESIDUAL_CHANNELS, 1)

    def forward(self, y, z):
        y = self.body(torch.cat([y, F.max_pool2d(z, self.scale)], dim=1))
        z = z + F.interpolate(self.to_residual(y), scale_factor=self.scale, mode="nearest")
        return y, z


class FRRNStage(nn.Module):
    """A chain of FRRUs at one scale; the pooling stream is halved (encoder) or doubled (decoder) on entry."""

    def __init__(self, in_channels, n_units, channels, scale, upsample):
        super().__init__()
        self.upsample = upsample
        self.units = nn.ModuleList(FRRU(in_channels if i == 0 else channels, channels, scale) for i in range(n_units))

    def forward(self, y, z):
        if self.upsample:
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        else:
            y = F.max_pool2d(y, 2)
        for unit in self.units:
            y, z = unit(y, z)
        return y, z


class FRRN(nn.Module):
    """FRRN-A or -B: 5×5 stem + 3 RUs, FRRU encoder/decoder stages, merge with z, 3 RUs, a 1×1 conv per dense head."""

    input_keys = ("image",)

    def __init__(self, heads, model_type="B", in_channels=3):
        super().__init__()
        if model_type not in FRRN_SPECS:
            raise PtsemsegError(f"model.model_type must be one of {sorted(FRRN_SPECS)}, got {model_type!r}")
        require_kinds(heads, "frrn", {DENSE, IMAGE})
        if not dense_heads(heads):
            raise PtsemsegError("arch frrn needs a dense head (e.g. seg or depth) beside image-level ones")
        self.model_type = model_type
        spec = FRRN_SPECS[model_type]
        self.multiple = max(scale for _, _, scale in spec["encoder"])
        self.n_encoder_stages = len(spec["encoder"])
        self.stem = nn.Sequential(conv_bn_relu(in_channels, BASE_CHANNELS, 5),
                                  *[ResidualUnit(BASE_CHANNELS) for _ in range(3)])
        self.split = nn.Conv2d(BASE_CHANNELS, RESIDUAL_CHANNELS, 1, bias=False)
        stages, channels = [], BASE_CHANNELS
        for part in ("encoder", "decoder"):
            for n_units, out_channels, scale in spec[part]:
                stages.append(FRRNStage(channels, n_units, out_channels, scale, upsample=part == "decoder"))
                channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.merge = nn.Conv2d(channels + RESIDUAL_CHANNELS, BASE_CHANNELS, 1, bias=False)
        self.refine = nn.Sequential(*[ResidualUnit(BASE_CHANNELS) for _ in range(3)])
        self.dense = nn.ModuleDict({head.name: nn.Sequential(nn.Conv2d(BASE_CHANNELS, head.channels, 1),
                                                             head.make_activation())
                                    for head in dense_heads(heads)})
        self.image = nn.ModuleDict({head.name: ImageHead(spec["encoder"][-1][1], head) for head in image_heads(heads)})

    def forward(self, x):
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % self.multiple, 0, -height % self.multiple))
        y = self.stem(x)
        z = self.split(y)
        for stage in self.stages[:self.n_encoder_stages]:
            y, z = stage(y, z)
        deepest = y
        for stage in self.stages[self.n_encoder_stages:]:
            y, z = stage(y, z)
        y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        y = self.refine(self.merge(torch.cat([y, z], dim=1)))
        outputs = {name: head(y)[:, :, :height, :width] for name, head in self.dense.items()}
        outputs.update({name: head(deepest) for name, head in self.image.items()})
        return outputs


@MODELS.register("frrn")
def build_frrn(heads, model_type="B", in_channels=3, pretrained=None):
    """FRRN with `model_type` A or B; B when unset, the seed projects' default. `pretrained`: none | PATH."""
    return load_own_weights(FRRN(heads, model_type=model_type, in_channels=in_channels), pretrained, "frrn")


def _variant(name, model_type, requested):
    """`model_type` given next to `arch: frrnA`/`frrnB` (as seed configs do) must name the same variant."""
    if requested != model_type:
        raise PtsemsegError(f"arch {name} builds FRRN-{model_type}, but model.model_type is {requested!r}: "
                            f"drop model_type, or use arch: frrn to choose the variant with it")
    return model_type


@MODELS.register("frrnA")
def build_frrn_a(heads, model_type="A", in_channels=3, pretrained=None):
    """FRRN-A (4 pooling stages, for 512×1024-sized inputs in the paper); `model_type` may only repeat A."""
    return load_own_weights(FRRN(heads, model_type=_variant("frrnA", "A", model_type), in_channels=in_channels),
                            pretrained, "frrnA")


@MODELS.register("frrnB")
def build_frrn_b(heads, model_type="B", in_channels=3, pretrained=None):
    """FRRN-B (5 pooling stages, for full 1024×2048 inputs in the paper); `model_type` may only repeat B."""
    return load_own_weights(FRRN(heads, model_type=_variant("frrnB", "B", model_type), in_channels=in_channels),
                            pretrained, "frrnB")


build_frrn.input_keys = build_frrn_a.input_keys = build_frrn_b.input_keys = FRRN.input_keys
