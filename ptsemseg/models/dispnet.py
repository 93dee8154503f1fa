"""DispNetS, the depth network of SfmLearner (Zhou et al., CVPR 2017), for depth, segmentation or both.

Encoder: 7 stages of [conv stride 2 + conv] with ReLU (32…512 channels, kernels 7, 5, 3, 3, 3, 3, 3); the paper's
own, so it is built here rather than taken from the encoder registry.
Decoder: at each stage a transposed conv doubles the resolution, is cropped to the skip's size (so odd sizes work),
concatenated with the encoder skip and fused by an "iconv". From 1/8 resolution down, a 3×3 prediction conv per
dense head reads each iconv, and the heads' predictions, bilinearly upsampled, are also fed into the next iconv.

Depth (the head with a positive_depth output): the head predicts disparity `alpha·sigmoid(x) + beta` (alpha 10,
beta 0.01) and the model returns depth = 1/disparity, positive by construction (between 1/(alpha+beta) and 1/beta
metres). Other dense heads (segmentation) predict through their own output activation (raw logits for seg; the
seed's ReLU×10 made logits non-negative) and the next iconv takes those as its extra input channels. With several
dense heads the decoder is shared and the next iconv takes all heads' predictions. Image-level heads (scene) pool
the deepest encoder feature (512 channels, 1/128).

Outputs: eval mode gives each dense head at full resolution; train mode adds, when `scales` > 1, the coarser
predictions `<head>/scale1`, `/scale2`, `/scale3` (1/2, 1/4, 1/8) up to `scales` predictions in all.

The prediction heads are SfmLearner's 3×3 convs for both tasks; Semseg-MonoDepth made them 1×1 (for depth as
well), which gives each head 8·n_outputs·width more weights here, summed over the head widths 128, 64, 32 and 16:
+36,480 at 19 classes (31,653,996 against 31,617,516, +0.12%) and +1,920 for depth (31,596,900 against
31,594,980). The depth model has exactly the parameters of SfmLearner's DispNetS.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._utils import load_own_weights
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds

ENCODER_CHANNELS = (32, 64, 128, 256, 512, 512, 512)
ENCODER_KERNELS = (7, 5, 3, 3, 3, 3, 3)
DECODER_CHANNELS = (512, 512, 256, 128, 64, 32, 16)
N_PREDICTIONS = 4


def crop_like(x, reference):
    """The top-left window of `x` with the spatial size of `reference`."""
    return x[:, :, :reference.shape[-2], :reference.shape[-1]]


def _conv_relu(in_channels, out_channels, kernel_size, stride=1):
    return [nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2),
            nn.ReLU(inplace=True)]


def predicts_disparity(spec):
    return spec.activation == "positive_depth"


class DecoderStage(nn.Module):
    """Upconv ×2, crop to the skip, concat [upconv, skip, upsampled coarser predictions], iconv, optional heads."""

    def __init__(self, in_channels, out_channels, skip_channels, coarse_channels, heads):
        super().__init__()
        self.upconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True))
        self.iconv = nn.Sequential(*_conv_relu(out_channels + skip_channels + coarse_channels, out_channels, 3))
        self.predict = nn.ModuleDict({spec.name: nn.Conv2d(out_channels, spec.channels, 3, padding=1)
                                      for spec in heads}) if heads else None

    def forward(self, h, skip, reference, coarse_prediction):
        """`skip` is None for the last stage, which only needs `reference` (the input) for its size."""
        h = crop_like(self.upconv(h), reference)
        parts = [h] if skip is None else [h, skip]
        if coarse_prediction is not None:
            up = F.interpolate(coarse_prediction, scale_factor=2, mode="bilinear", align_corners=False)
            parts.append(crop_like(up, reference))
        return self.iconv(torch.cat(parts, dim=1))


class DispNetS(nn.Module):
    """SfmLearner's DispNetS with multi-scale heads: depth as inverse disparity, the others through their activation."""

    input_keys = ("image",)

    def __init__(self, heads, in_channels=3, scales=N_PREDICTIONS, alpha=10.0, beta=0.01):
        super().__init__()
        if scales not in range(1, N_PREDICTIONS + 1):
            raise PtsemsegError(f"model.scales must be between 1 and {N_PREDICTIONS}, got {scales!r}")
        require_kinds(heads, "dispnet", {DENSE, IMAGE})
        self.dense_specs = dense_heads(heads)
        if not self.dense_specs:
            raise PtsemsegError("arch dispnet needs a dense head (e.g. seg or depth) beside image-level ones")
        self.scales, self.alpha, self.beta = scales, alpha, beta

        self.encoder = nn.ModuleList()
        channels = in_channels
        for out_channels, kernel in zip(ENCODER_CHANNELS, ENCODER_KERNELS):
            self.encoder.append(nn.Sequential(*_conv_relu(channels, out_channels, kernel, stride=2),
                                              *_conv_relu(out_channels, out_channels, kernel)))
            channels = out_channels

        # Decoder stage k (k = 7…1) upsamples to the resolution of encoder stage k-1 (of the input for k = 1); the
        # last N_PREDICTIONS stages have heads, and each stage after the first head also reads the previous predictions.
        skip_channels = ENCODER_CHANNELS[-2::-1] + (0,)
        first_head = len(DECODER_CHANNELS) - N_PREDICTIONS
        prediction_channels = sum(spec.channels for spec in self.dense_specs)
        self.decoder = nn.ModuleList()
        for index, (out_channels, skip) in enumerate(zip(DECODER_CHANNELS, skip_channels)):
            self.decoder.append(DecoderStage(channels, out_channels, skip,
                                             coarse_channels=prediction_channels if index > first_head else 0,
                                             heads=self.dense_specs if index >= first_head else ()))
            channels = out_channels
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in self.dense_specs
                                          if not predicts_disparity(spec)})
        self.image = nn.ModuleDict({spec.name: ImageHead(ENCODER_CHANNELS[-1], spec) for spec in image_heads(heads)})
        self._init_weights()

    def _init_weights(self):
        """Xavier-uniform weights and zero biases, as SfmLearner initialises DispNetS, except the depth heads' bias.

        With a zero bias the depth heads start at disparity alpha/2 + beta (0.2 m), near the top of the sigmoid where
        its gradient fades; they start instead at the geometric middle of the disparity range [beta, alpha + beta]
        (depth 3.2 m for the defaults), which lets supervised depth training move off the start quickly.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        start = (math.sqrt(self.beta * (self.alpha + self.beta)) - self.beta) / self.alpha
        disparity_heads = [spec.name for spec in self.dense_specs if predicts_disparity(spec)]
        for stage in self.decoder:
            if stage.predict is not None:
                for name in disparity_heads:
                    nn.init.constant_(stage.predict[name].bias, math.log(start / (1.0 - start)))

    def _head(self, spec, logits):
        """Disparity (alpha·sigmoid + beta) for depth, the head's own activation otherwise."""
        if predicts_disparity(spec):
            return self.alpha * torch.sigmoid(logits) + self.beta
        return self.activations[spec.name](logits)

    def forward(self, x):
        features = [x]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        h, prediction = features[-1], None
        predictions = {spec.name: [] for spec in self.dense_specs}
        for stage, reference in zip(self.decoder, reversed(features[:-1])):
            h = stage(h, None if reference is x else reference, reference, prediction)
            if stage.predict is not None:
                heads = [self._head(spec, stage.predict[spec.name](h)) for spec in self.dense_specs]
                for spec, out in zip(self.dense_specs, heads):
                    predictions[spec.name].append(out)
                prediction = torch.cat(heads, dim=1)
        outputs = {}
        for spec in self.dense_specs:
            finest_first = predictions[spec.name][::-1]
            if predicts_disparity(spec):
                finest_first = [1.0 / disparity for disparity in finest_first]
            outputs[spec.name] = finest_first[0]
            if self.training:
                outputs.update({f"{spec.name}/scale{i}": finest_first[i] for i in range(1, self.scales)})
        outputs.update({name: head(features[-1]) for name, head in self.image.items()})
        return outputs


@MODELS.register("dispnet")
def build_dispnet(heads, in_channels=3, scales=N_PREDICTIONS, alpha=10.0, beta=0.01, pretrained=None):
    """DispNetS; `scales` = how many predictions per dense head train mode returns, `alpha`/`beta` shape disparity;
    `pretrained`: none | PATH (its own weights; DispNet has no ImageNet weights)."""
    return load_own_weights(DispNetS(heads, in_channels=in_channels, scales=scales, alpha=alpha, beta=beta),
                            pretrained, "dispnet")


build_dispnet.input_keys = DispNetS.input_keys
# In CPU bf16 autocast its weights turned NaN within 2 steps at small inputs (nondeterministically): auto picks fp32.
build_dispnet.cpu_bf16_safe = False
