"""FCN-8s (Long, Shelhamer & Darrell, CVPR 2015 / PAMI 2017) on VGG16, for segmentation, depth or both.

Segmentation follows the paper's (staged) FCN-8s: the `vgg16` encoder with conv1_1 padded by 100 and ceil-mode
pools, fc6/fc7 as 7×7/1×1 convolutions with dropout, zero-initialised 1×1 score layers on fc7, pool4 and pool3,
learnable bias-free transposed convolutions initialised to bilinear upsampling (×2, ×2, ×8) and the fixed crops 5,
9 and 31 that align the padded maps with the input. The padding of 100 makes every input size work.

Depth uses the head of Semseg-MonoDepth's fcn_depth: a one-channel score path would push the regression through
1-channel skips and upsamplers, so fc6/fc7 shrink to 2048/1024 without dropout, a 1×1 conv + ReLU makes 64
channels, skips and upsamplers carry 64 channels, and a final 1×1 conv 64→1 predicts depth, made positive by
softplus (ReLU in the reference, which stops all gradients where it outputs 0).

Heads: every dense head gets its own score path (scores of fc7, pool4 and pool3, upsamplers, crops); heads with a
positive_depth output take the depth path, all others the segmentation path (raw logits). The fc6/fc7 trunk is
shared: the segmentation one (4096/4096, dropout, ImageNet fc6/fc7 when pretrained) when any segmentation-path
head is present, else the depth one. A joint seg + depth model is thus the segmentation FCN-8s with the depth
score path reading its fc7 (4096→64). Image-level heads (scene) pool the encoder's pool5.

Without ImageNet weights the VGG convs and fc6/fc7 start from He initialisation (normal, fan-out, zero bias, as
torchvision's VGG16): PyTorch's default conv init shrinks the signal through these 15 layers without BN, and the
zero score layers then pass back little gradient, so training from scratch is slower (on the model tests' fixed
batch, Adam 1e-4: 92 instead of 80 steps to a fifth of the seg loss; depth 0.30 after 100 steps instead of 0.23 after 98).

Single-task models have exactly the seeds' parameter counts: 134,456,985 for segmentation at 19 classes, 69,489,729
for depth.
"""
import torch
import torch.nn as nn
import torchvision

from ptsemseg.encoders import get_encoder
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.encoders.weights import pretrained_state_dict
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds
from ptsemseg.models.vgg import load_vgg16_fc_as_conv
from ptsemseg.models._utils import NarrowFp32ConvTranspose2d

# Offsets (in pixels) that align the score maps of the padded network with the input (from the Caffe model).
POOL4_CROP, POOL3_CROP, OUTPUT_CROP = 5, 9, 31
DEPTH_WIDTH = 64
SEG_TRUNK, DEPTH_TRUNK = (4096, 4096), (2048, 1024)


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


def takes_depth_path(spec):
    return spec.activation == "positive_depth"


class ScorePath(nn.Module):
    """One dense head: score fc7, pool4 and pool3, fuse them coarse to fine by learned upsampling, crop to input."""

    def __init__(self, fc7_channels, spec):
        super().__init__()
        depth = takes_depth_path(spec)
        width = DEPTH_WIDTH if depth else spec.channels
        self.score_fr = nn.Conv2d(fc7_channels, width, 1)
        self.score_pool4 = nn.Conv2d(512, width, 1)
        self.score_pool3 = nn.Conv2d(256, width, 1)
        self.score_activation = nn.ReLU(inplace=True) if depth else nn.Identity()
        self.upscore2 = _upsampler(width, 4, 2)
        self.upscore_pool4 = _upsampler(width, 4, 2)
        self.upscore8 = _upsampler(width, 16, 8)
        self.predict = nn.Conv2d(width, spec.channels, 1) if depth else nn.Identity()
        self.activation = spec.make_activation()
        if not depth:
            # The paper zero-initialises the score layers, so training starts from the bilinear-upsampled fc7 scores.
            for score in (self.score_fr, self.score_pool4, self.score_pool3):
                nn.init.zeros_(score.weight)
                nn.init.zeros_(score.bias)

    def forward(self, fc7, pool3, pool4, x):
        h = self.upscore2(self.score_activation(self.score_fr(fc7)))
        h = self.upscore_pool4(h + _crop(self.score_pool4(pool4), POOL4_CROP, h))
        h = self.upscore8(h + _crop(self.score_pool3(pool3), POOL3_CROP, h))
        return self.activation(self.predict(_crop(h, OUTPUT_CROP, x)))


class FCN8s(nn.Module):
    """FCN-8s: VGG16 encoder, fc6/fc7 convs, per dense head three score maps fused by learned upsampling."""

    input_keys = ("image",)

    def __init__(self, heads, in_channels=3, pretrained=None):
        super().__init__()
        require_kinds(heads, "fcn8s", {DENSE, IMAGE})
        if not dense_heads(heads):
            raise PtsemsegError("arch fcn8s needs a dense head (e.g. seg or depth) beside image-level ones")
        seg_trunk = not all(takes_depth_path(spec) for spec in dense_heads(heads))
        self.encoder = get_encoder("vgg16", in_channels=in_channels, first_padding=100)
        fc6_channels, fc7_channels = SEG_TRUNK if seg_trunk else DEPTH_TRUNK
        self.fc6 = nn.Conv2d(512, fc6_channels, 7)
        self.fc7 = nn.Conv2d(fc6_channels, fc7_channels, 1)
        self.drop = nn.Dropout2d(0.5) if seg_trunk else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        for conv in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.dense = nn.ModuleDict({spec.name: ScorePath(fc7_channels, spec) for spec in dense_heads(heads)})
        self.image = nn.ModuleDict({spec.name: ImageHead(self.encoder.out_channels[-1], spec)
                                    for spec in image_heads(heads)})

        state = pretrained_state_dict(pretrained, torchvision.models.VGG16_Weights.IMAGENET1K_V1)
        if state is not None:
            self.encoder.load_vgg16(state, pretrained)
            if seg_trunk:
                load_vgg16_fc_as_conv(self.fc6, self.fc7, state, pretrained)

    def forward(self, x):
        pool3, pool4, pool5 = self.encoder(x)[2:]
        h = self.drop(self.relu(self.fc6(pool5)))
        h = self.drop(self.relu(self.fc7(h)))
        outputs = {name: path(h, pool3, pool4, x) for name, path in self.dense.items()}
        outputs.update({name: head(pool5) for name, head in self.image.items()})
        return outputs


@MODELS.register("fcn8s", "fcn")
def build_fcn8s(heads, in_channels=3, pretrained=None):
    """FCN-8s; `pretrained`: none | imagenet (torchvision VGG16: convs, and fc6/fc7 for the seg trunk) | such a file."""
    return FCN8s(heads, in_channels=in_channels, pretrained=pretrained)


build_fcn8s.input_keys = FCN8s.input_keys
