"""ResNet encoders (torchvision blocks and parameter names): plain and deep-stem "v1c", dilation, frozen BN.

Registered as `resnet18`, `resnet34`, `resnet50`, `resnet101`, `resnet152` (torchvision's 7×7 stem; ImageNet
weights through torchvision's weights API) and `<name>_v1c` (three 3×3 conv-BN-ReLU, 64, 64, 128, as PSPNet and
mmseg's ResNetV1c; torchvision has no weights for it). Forward returns the four stage outputs [res2, res3, res4,
res5]. Parameter names equal torchvision's, so ImageNet weights (or any torchvision-format state dict) load
without renaming. Dilated stages follow DeepLab v2: every 3×3 conv of a dilated stage uses the stage's dilation
and its stride becomes 1, which also works for BasicBlock ResNets (torchvision refuses dilation there).
"""
import torch.nn as nn
from torchvision.models import resnet as tv_resnet

from ptsemseg.encoders import ENCODERS, get_encoder
from ptsemseg.encoders.weights import mean_channel_filter, pretrained_state_dict
from ptsemseg.errors import PtsemsegError, closest

# name -> (block class, blocks per stage, torchvision ImageNet weights enum)
RESNETS = {
    "resnet18": (tv_resnet.BasicBlock, (2, 2, 2, 2), tv_resnet.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": (tv_resnet.BasicBlock, (3, 4, 6, 3), tv_resnet.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": (tv_resnet.Bottleneck, (3, 4, 6, 3), tv_resnet.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (tv_resnet.Bottleneck, (3, 4, 23, 3), tv_resnet.ResNet101_Weights.IMAGENET1K_V1),
    "resnet152": (tv_resnet.Bottleneck, (3, 8, 36, 3), tv_resnet.ResNet152_Weights.IMAGENET1K_V1),
}
DEEP_STEM_SUFFIX = "_v1c"

# output stride -> dilation of (layer3, layer4)
STAGE_DILATIONS = {8: (2, 4), 16: (1, 2), 32: (1, 1)}


def conv_bn_relu(in_channels, out_channels, kernel_size=3, stride=1):
    """Bias-free conv + BN + ReLU with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def make_stage(block, in_channels, planes, n_blocks, stride):
    """One ResNet stage of `n_blocks` blocks, laid out (and named) as torchvision's `ResNet._make_layer`."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(tv_resnet.conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    blocks = [block(in_channels, planes, stride, downsample)]
    blocks += [block(out_channels, planes) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


def dilate_stage(stage, dilation):
    """Trade a stage's stride for dilation: all strides become 1, all 3×3 convs get dilation = padding."""
    for module in stage.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)


class ResNetEncoder(nn.Module):
    """ResNet without its classifier; forward returns [res2, res3, res4, res5].

    `out_channels` and `strides` describe the four maps (strides 4, 8, 16, 32 at output stride 32; 4, 8, 16, 16
    at 16; 4, 8, 8, 8 at 8). `deep_stem` replaces the 7×7 stem with three 3×3 conv-BN-ReLU (64, 64, 128).
    `freeze_bn` fixes every BatchNorm: affine parameters get no gradient and the running statistics stay as
    loaded (BN layers stay in eval mode); meant for pretrained weights and small batches, as DeepLab v2.
    """

    def __init__(self, name, block, n_blocks, imagenet_weights=None, in_channels=3, output_stride=32,
                 deep_stem=False, freeze_bn=False):
        super().__init__()
        if output_stride not in STAGE_DILATIONS:
            raise PtsemsegError(f"encoder {name}: output_stride must be one of {sorted(STAGE_DILATIONS)}, "
                                f"got {output_stride!r}")
        self.name, self.imagenet_weights = name, imagenet_weights
        self.in_channels, self.output_stride = in_channels, output_stride
        self.deep_stem, self.freeze_bn = deep_stem, freeze_bn
        if deep_stem:
            self.stem = nn.Sequential(conv_bn_relu(in_channels, 64, stride=2), conv_bn_relu(64, 64),
                                      conv_bn_relu(64, 128))
            stem_channels = 128
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            stem_channels = 64
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = make_stage(block, stem_channels, 64, n_blocks[0], stride=1)
        self.layer2 = make_stage(block, 64 * block.expansion, 128, n_blocks[1], stride=2)
        self.layer3 = make_stage(block, 128 * block.expansion, 256, n_blocks[2], stride=2)
        self.layer4 = make_stage(block, 256 * block.expansion, 512, n_blocks[3], stride=2)
        self.out_channels = tuple(width * block.expansion for width in (64, 128, 256, 512))
        dilations = STAGE_DILATIONS[output_stride]
        self.strides = (4, 8, 16 // dilations[0], 32 // dilations[1])
        for layer, dilation in zip((self.layer3, self.layer4), dilations):
            if dilation > 1:
                dilate_stage(layer, dilation)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x):
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        res2 = self.layer1(self.maxpool(x))
        res3 = self.layer2(res2)
        res4 = self.layer3(res3)
        return [res2, res3, res4, self.layer4(res4)]

    def load_pretrained(self, pretrained):
        """Load `pretrained` (imagenet | none | PATH to a torchvision-format or ptsemseg state dict).

        A ptsemseg checkpoint contributes its `backbone.*` weights; the classifier (`fc.*`) is ignored;
        a first conv for other than 3 input channels starts from the channel mean of the RGB filters.
        """
        if pretrained == "imagenet" and self.imagenet_weights is None:
            raise PtsemsegError(f"encoder {self.name}: torchvision has no ImageNet weights for the deep stem; use "
                                f"{self.name.removesuffix(DEEP_STEM_SUFFIX)} (deep_stem: false) or a PATH")
        state = pretrained_state_dict(pretrained, self.imagenet_weights)
        if state is None:
            return
        if any(key.startswith("backbone.") for key in state):
            state = {key[len("backbone."):]: value for key, value in state.items() if key.startswith("backbone.")}
        state = {key: value for key, value in state.items() if not key.startswith("fc.")}
        first_conv = "stem.0.0.weight" if self.deep_stem else "conv1.weight"
        expected = self.state_dict()
        if first_conv in state and state[first_conv].shape[1] == 3 and expected[first_conv].shape[1] != 3:
            state[first_conv] = mean_channel_filter(state[first_conv], expected[first_conv].shape[1])
        missing = sorted(key for key in set(expected) - set(state) if not key.endswith("num_batches_tracked"))
        unexpected = sorted(set(state) - set(expected))
        wrong_shape = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
        problems = (("lack", missing), ("have unexpected", unexpected), ("have wrong shapes for", wrong_shape))
        for problem, keys in problems:
            if keys:
                raise PtsemsegError(f"pretrained weights {pretrained} {problem} {len(keys)} {self.name} "
                                    f"encoder tensors, e.g. '{keys[0]}'")
        self.load_state_dict(state, strict=False)  # checked above; old files lack num_batches_tracked


def resnet_builder(name, deep_stem):
    """The registry builder of one ResNet encoder: build, then load `pretrained`."""
    block, n_blocks, imagenet_weights = RESNETS[name]
    registered = name + DEEP_STEM_SUFFIX if deep_stem else name

    def build(in_channels=3, output_stride=32, pretrained="none", freeze_bn=False):
        encoder = ResNetEncoder(registered, block, n_blocks, None if deep_stem else imagenet_weights, in_channels,
                                output_stride, deep_stem, freeze_bn)
        encoder.load_pretrained(pretrained)
        return encoder

    build.__name__ = registered
    build.__doc__ = (f"{name} encoder{' with the deep stem' if deep_stem else ''}; pretrained none | "
                     f"{'PATH' if deep_stem else 'imagenet | PATH'}.")
    return build


for _name in RESNETS:
    ENCODERS.register(_name)(resnet_builder(_name, deep_stem=False))
    ENCODERS.register(_name + DEEP_STEM_SUFFIX)(resnet_builder(_name, deep_stem=True))


def resnet_backbone(backbone, deep_stem=False, **options):
    """The encoder of a ResNet architecture from its YAML `backbone` (a plain ResNet name) and `deep_stem`."""
    if backbone not in RESNETS:
        raise PtsemsegError(f"unknown backbone '{backbone}'{closest(backbone, RESNETS)}; "
                            f"choose from {', '.join(RESNETS)}")
    return get_encoder(backbone + DEEP_STEM_SUFFIX if deep_stem else backbone, **options)
