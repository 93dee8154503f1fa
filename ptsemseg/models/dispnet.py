"""DispNetS, the depth network of SfmLearner (Zhou et al., CVPR 2017), for depth and segmentation.

Encoder: 7 stages of [conv stride 2 + conv] with ReLU (32…512 channels, kernels 7, 5, 3, 3, 3, 3, 3).
Decoder: at each stage a transposed conv doubles the resolution, is cropped to the skip's size (so odd sizes work),
concatenated with the encoder skip and fused by an "iconv". From 1/8 resolution down, a 3×3 prediction head reads
each iconv, and its prediction, bilinearly upsampled, is also fed into the next iconv.

Depth: the heads predict disparity `alpha·sigmoid(x) + beta` (alpha 10, beta 0.01) and the model returns depth =
1/disparity, positive by construction (between 1/(alpha+beta) and 1/beta metres). Segmentation: the heads predict
n_classes logits (no activation; the seed's ReLU×10 made logits non-negative) and the next iconv takes those logits
as its extra input channels. Train mode returns the first `scales` predictions, full resolution first (1, 1/2,
1/4, 1/8); eval mode returns the full-resolution one.

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


class DecoderStage(nn.Module):
    """Upconv ×2, crop to the skip, concat [upconv, skip, upsampled coarser prediction], iconv, optional head."""

    def __init__(self, in_channels, out_channels, skip_channels, coarse_channels, head_channels):
        super().__init__()
        self.upconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True))
        self.iconv = nn.Sequential(*_conv_relu(out_channels + skip_channels + coarse_channels, out_channels, 3))
        self.predict = nn.Conv2d(out_channels, head_channels, 3, padding=1) if head_channels else None

    def forward(self, h, skip, reference, coarse_prediction):
        """`skip` is None for the last stage, which only needs `reference` (the input) for its size."""
        h = crop_like(self.upconv(h), reference)
        parts = [h] if skip is None else [h, skip]
        if coarse_prediction is not None:
            up = F.interpolate(coarse_prediction, scale_factor=2, mode="bilinear", align_corners=False)
            parts.append(crop_like(up, reference))
        return self.iconv(torch.cat(parts, dim=1))


class DispNetS(nn.Module):
    """SfmLearner's DispNetS with multi-scale heads; depth via inverse disparity, or per-class logits for seg."""

    input_keys = ("image",)

    def __init__(self, n_outputs, task="depth", in_channels=3, scales=N_PREDICTIONS, alpha=10.0, beta=0.01):
        super().__init__()
        if scales not in range(1, N_PREDICTIONS + 1):
            raise PtsemsegError(f"model.scales must be between 1 and {N_PREDICTIONS}, got {scales!r}")
        self.depth = task == "depth"
        self.scales, self.alpha, self.beta = scales, alpha, beta

        self.encoder = nn.ModuleList()
        channels = in_channels
        for out_channels, kernel in zip(ENCODER_CHANNELS, ENCODER_KERNELS):
            self.encoder.append(nn.Sequential(*_conv_relu(channels, out_channels, kernel, stride=2),
                                              *_conv_relu(out_channels, out_channels, kernel)))
            channels = out_channels

        # Decoder stage k (k = 7…1) upsamples to the resolution of encoder stage k-1 (of the input for k = 1); the
        # last N_PREDICTIONS stages have heads, and each stage after the first head also reads the previous prediction.
        skip_channels = ENCODER_CHANNELS[-2::-1] + (0,)
        first_head = len(DECODER_CHANNELS) - N_PREDICTIONS
        self.decoder = nn.ModuleList()
        for index, (out_channels, skip) in enumerate(zip(DECODER_CHANNELS, skip_channels)):
            self.decoder.append(DecoderStage(channels, out_channels, skip,
                                             coarse_channels=n_outputs if index > first_head else 0,
                                             head_channels=n_outputs if index >= first_head else 0))
            channels = out_channels
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
        if self.depth:
            start = (math.sqrt(self.beta * (self.alpha + self.beta)) - self.beta) / self.alpha
            for stage in self.decoder:
                if stage.predict is not None:
                    nn.init.constant_(stage.predict.bias, math.log(start / (1.0 - start)))

    def _head(self, logits):
        """Disparity for depth (alpha·sigmoid + beta), raw logits for seg."""
        return self.alpha * torch.sigmoid(logits) + self.beta if self.depth else logits

    def forward(self, x):
        features = [x]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        h, predictions, prediction = features[-1], [], None
        for stage, reference in zip(self.decoder, reversed(features[:-1])):
            h = stage(h, None if reference is x else reference, reference, prediction)
            if stage.predict is not None:
                prediction = self._head(stage.predict(h))
                predictions.append(prediction)
        outputs = [1.0 / p for p in predictions[::-1]] if self.depth else predictions[::-1]
        return outputs[:self.scales] if self.training and self.scales > 1 else outputs[0]


@MODELS.register("dispnet")
def build_dispnet(task, n_outputs, in_channels=3, scales=N_PREDICTIONS, alpha=10.0, beta=0.01, pretrained=None):
    """DispNetS; `scales` = how many predictions train mode returns, `alpha`/`beta` shape the disparity head;
    `pretrained`: none | PATH."""
    return load_own_weights(DispNetS(n_outputs, task=task, in_channels=in_channels, scales=scales, alpha=alpha,
                                     beta=beta), pretrained, "dispnet")
