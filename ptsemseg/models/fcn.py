"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015 / PAMI 2017) on VGG16, for segmentation and depth.

Segmentation follows the paper's (staged) FCN-8s: VGG16 with conv1_1 padded by 100 and ceil-mode pools, fc6/fc7 as
7×7/1×1 convolutions with dropout, zero-initialised 1×1 score layers on fc7, pool4 and pool3, learnable bias-free
transposed convolutions initialised to bilinear upsampling (×2, ×2, ×8) and the fixed crops 5, 9 and 31 that
align the padded maps with the input. The padding of 100 makes every input size work.

Depth uses the head of Semseg-MonoDepth's fcn_depth: a one-channel score path would push the regression through
1-channel skips and upsamplers, so fc6/fc7 shrink to 2048/1024, a 1×1 conv + ReLU makes 64 channels, skips and
upsamplers carry 64 channels, and a final 1×1 conv 64→1 predicts depth, made positive by softplus (ReLU in the
reference, which stops all gradients where it outputs 0).

Without ImageNet weights the VGG convs and fc6/fc7 start from He initialisation (normal, fan-out, zero bias, as
torchvision's VGG16): PyTorch's default conv init shrinks the signal through these 15 layers without BN, and the
zero score layers then pass back little gradient, so training from scratch is slower (on the model tests' fixed
batch, Adam 1e-4: 92 instead of 80 steps to a fifth of the seg loss; depth 0.30 after 100 steps instead of 0.23 after 98).

Both have exactly the seeds' parameter counts: 134,456,985 for segmentation at 19 classes, 69,489,729 for depth.
"""
import torch
import torch.nn as nn
import torchvision

from ptsemseg.models import MODELS
from ptsemseg.models._utils import NarrowFp32ConvTranspose2d, PositiveDepth, pretrained_state_dict
from ptsemseg.models.vgg import VGG16_STAGES, load_vgg16_convs, load_vgg16_fc_as_conv, stage_convs, vgg16_stage

# Offsets (in pixels) that align the score maps of the padded network with the input (from the Caffe model).
POOL4_CROP, POOL3_CROP, OUTPUT_CROP = 5, 9, 31
DEPTH_WIDTH = 64


def bilinear_upsampling_weight(channels, kernel_size):
    """ConvTranspose weight (channels×channels×k×k) that upsamples each channel bilinearly and mixes none."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return weight


def _upsampler(channels, kernel_size, stride):
    upsample = NarrowFp32ConvTranspose2d(channels, channels, kernel_size, stride=stride, bias=False)
    with torch.no_grad():
        upsample.weight.copy_(bilinear_upsampling_weight(channels, kernel_size))
    return upsample


def _crop(x, offset, like):
    """The window of `x` at (offset, offset) with the spatial size of `like`."""
    height, width = like.shape[-2:]
    return x[:, :, offset:offset + height, offset:offset + width]


class FCN8s(nn.Module):
    """FCN-8s: VGG16 encoder, fc6/fc7 convs, three score maps fused coarse to fine by learned upsampling."""

    input_keys = ("image",)

    def __init__(self, n_outputs, task="seg", in_channels=3, pretrained=None):
        super().__init__()
        depth = task == "depth"
        self.stages = nn.ModuleList()
        stage_in = in_channels
        for number, channels in enumerate(VGG16_STAGES):
            padding = 100 if number == 0 else 1
            self.stages.append(vgg16_stage(stage_in, channels, batch_norm=False, first_padding=padding))
            stage_in = channels[-1]
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        fc6_channels, fc7_channels = (2048, 1024) if depth else (4096, 4096)
        width = DEPTH_WIDTH if depth else n_outputs
        self.fc6 = nn.Conv2d(512, fc6_channels, 7)
        self.fc7 = nn.Conv2d(fc6_channels, fc7_channels, 1)
        self.drop = nn.Identity() if depth else nn.Dropout2d(0.5)
        self.relu = nn.ReLU(inplace=True)
        self.score_fr = nn.Conv2d(fc7_channels, width, 1)
        self.score_pool4 = nn.Conv2d(512, width, 1)
        self.score_pool3 = nn.Conv2d(256, width, 1)
        self.score_activation = nn.ReLU(inplace=True) if depth else nn.Identity()
        self.upscore2 = _upsampler(width, 4, 2)
        self.upscore_pool4 = _upsampler(width, 4, 2)
        self.upscore8 = _upsampler(width, 16, 8)
        self.predict = nn.Sequential(nn.Conv2d(width, n_outputs, 1), PositiveDepth()) if depth else nn.Identity()
        if not depth:
            # The paper zero-initialises the score layers, so training starts from the bilinear-upsampled fc7 scores.
            for score in (self.score_fr, self.score_pool4, self.score_pool3):
                nn.init.zeros_(score.weight)
                nn.init.zeros_(score.bias)
        for conv in stage_convs(self.stages) + [self.fc6, self.fc7]:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

        state = pretrained_state_dict(pretrained, torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        if state is not None:
            load_vgg16_convs(stage_convs(self.stages), state, pretrained)
            if not depth:
                load_vgg16_fc_as_conv(self.fc6, self.fc7, state, pretrained)

    def forward(self, x):
        features = []
        h = x
        for stage in self.stages:
            h = self.pool(stage(h))
            features.append(h)
        pool3, pool4, pool5 = features[2:]
        h = self.drop(self.relu(self.fc6(pool5)))
        h = self.drop(self.relu(self.fc7(h)))
        h = self.upscore2(self.score_activation(self.score_fr(h)))
        h = self.upscore_pool4(h + _crop(self.score_pool4(pool4), POOL4_CROP, h))
        h = self.upscore8(h + _crop(self.score_pool3(pool3), POOL3_CROP, h))
        return self.predict(_crop(h, OUTPUT_CROP, x))


@MODELS.register("fcn8s", "fcn")
def build_fcn8s(task, n_outputs, in_channels=3, pretrained=None):
    """FCN-8s; `pretrained`: none | imagenet (torchvision VGG16, convs + fc6/fc7 for seg) | path to such a file."""
    return FCN8s(n_outputs, task=task, in_channels=in_channels, pretrained=pretrained)
