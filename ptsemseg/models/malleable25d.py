"""Malleable 2.5D convolution (Xing et al., ECCV 2020) in a DeepLab-style ResNet-101 for RGB-D scene parsing.

The 3×3 conv of the first block of each ResNet stage becomes a malleable 2.5D convolution: three kernels, each
seeing the neighbours whose depth lies in one learned bin around the centre pixel's depth. Depth (metres, 0 =
invalid) and the focal length fx from the batch's intrinsics (`meta["K"]`) drive it; the rest of the network is
the reference's DeepLab decoder (Merge_Module, Task_Module, ASPP, upsampling convs, auxiliary classifier).
Layer specs follow the authors' code (RGBD_Semantic_Segmentation_PyTorch, model/malleable2_5d.nyu.res101 and
furnace/seg_opr/conv_2_5d.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair
from torchvision.models.resnet import Bottleneck

from ptsemseg.encoders.resnet import resnet_backbone
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._aspp import TorchSegASPP
from ptsemseg.models._inputs import check_inputs
from ptsemseg.models._utils import resize_to
from ptsemseg.models.heads import DENSE, IMAGE, ImageHead, dense_heads, image_heads, require_kinds

ANCHOR_INIT = (-2.0, -1.0, 0.0, 1.0, 2.0)  # depth bins in grid ranges; the three middle ones select the kernels
N_KERNELS = 3
INVALID_WEIGHT = 1.0 / len(ANCHOR_INIT)  # each kernel's share of a neighbour without depth (or centre without)
PIXEL_SIZES = (4, 8, 16, 16)  # per stage: image pixels per step of the stage's output map
ASPP_RATES = (6, 12, 18)
TASK_DILATION = 16  # the reference's Task_Module convs take the dilation left over from layer4's multi-grid
DEPTH_KEYS = ("depth", "raw_depth")


class MalleableConv2d(nn.Module):
    """Malleable 2.5D convolution: three kernels mixed per neighbour by its depth relative to the centre's.

    For output pixel p and kernel tap q: rel = (d_q − d_p) / g with g = pixel_size · dilation · d_p / fx, the
    metric size of one step of the output map at the centre's depth. Five bins at learned anchors (initially
    −2..2, the centre's fixed at 0; `depth_anchor[2]` is kept for the reference's layout, unused) get
    logits −(rel − anchor)² / T with a learned temperature T, negated for the two outer bins beyond their anchor
    so that they take everything farther; a softmax over the bins gives the three middle bins' weights, which mask
    the taps of the three kernels. The kernels are mixed by 3 · softmax(kernel_weight). A tap whose depth or
    centre depth is 0 (invalid, or padding) weighs 1/5 in every kernel. The reference tests the outer bins with
    the metric difference d_q − d_p against the anchors; here with rel, the unit of the anchors. Vectorised with
    `unfold`: any size, stride, padding and dilation; fx is per image (N), in pixels of the input image.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, pixel_size=4):
        super().__init__()
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        if self.kernel_size[0] % 2 == 0 or self.kernel_size[1] % 2 == 0:
            raise PtsemsegError(f"malleable convolution needs an odd kernel size (a centre tap), got {kernel_size}")
        self.in_channels, self.out_channels, self.pixel_size = in_channels, out_channels, pixel_size
        shape = (out_channels, in_channels, *self.kernel_size)
        self.weight_0 = nn.Parameter(torch.empty(shape))
        self.weight_1 = nn.Parameter(torch.empty(shape))
        self.weight_2 = nn.Parameter(torch.empty(shape))
        for weight in self.kernels():
            nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
        self.depth_anchor = nn.Parameter(torch.tensor(ANCHOR_INIT))
        self.temperature = nn.Parameter(torch.ones(1))
        self.kernel_weight = nn.Parameter(torch.zeros(N_KERNELS))

    @classmethod
    def from_conv(cls, conv, pixel_size):
        """A malleable conv in place of the bias-free `conv`, its three kernels starting from its weight (as the
        reference loads ImageNet weights)."""
        malleable = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                        conv.dilation, pixel_size)
        with torch.no_grad():
            for weight in malleable.kernels():
                weight.copy_(conv.weight)
        return malleable

    def kernels(self):
        return self.weight_0, self.weight_1, self.weight_2

    def anchors(self):
        """The five bin anchors with the centre one fixed at 0."""
        anchor = self.depth_anchor
        return torch.cat([anchor[:2], anchor.new_zeros(1), anchor[3:]])

    def unfold(self, x):
        return F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)

    def kernel_masks(self, depth, fx):
        """N×3×K×L weights of the three kernels for the K taps of the L output pixels."""
        taps = self.unfold(depth.float())
        centre = taps.shape[1] // 2
        valid = (taps > 0) & (taps[:, centre:centre + 1] > 0)
        taps = taps * valid
        centre_depth = taps[:, centre:centre + 1]
        grid_range = self.pixel_size * self.dilation[0] * centre_depth / fx.float().view(-1, 1, 1)
        relative = ((taps - centre_depth) / (grid_range + 1e-7)).unsqueeze(1)  # N×1×K×L
        anchors = self.anchors().view(1, -1, 1, 1)
        logits = -(relative - anchors).pow(2) / (self.temperature.clamp(min=0) + 1e-5)
        beyond_low = (relative < anchors[:, :1]).float()
        beyond_high = (relative > anchors[:, -1:]).float()
        logits = torch.cat([logits[:, :1] * (1 - 2 * beyond_low), logits[:, 1:-1],
                            logits[:, -1:] * (1 - 2 * beyond_high)], dim=1)
        masks = logits.softmax(dim=1)[:, 1:-1]
        return torch.where(valid.unsqueeze(1), masks, INVALID_WEIGHT)

    def forward(self, x, depth, fx):
        if depth.shape[-2:] != x.shape[-2:]:
            raise PtsemsegError(f"malleable convolution: depth {tuple(depth.shape[-2:])} and features "
                                f"{tuple(x.shape[-2:])} differ in size")
        batch, height, width = x.shape[0], x.shape[2], x.shape[3]
        out_size = [(size + 2 * pad - dil * (k - 1) - 1) // step + 1 for size, pad, dil, k, step in
                    zip((height, width), self.padding, self.dilation, self.kernel_size, self.stride)]
        columns = self.unfold(x)  # N×(C·K)×L
        taps, n_out = columns.shape[1] // self.in_channels, columns.shape[-1]
        masks = self.kernel_masks(depth, fx).to(columns.dtype)  # N×3×K×L
        masked = columns.view(batch, 1, self.in_channels, taps, n_out) * masks.unsqueeze(2)
        mix = N_KERNELS * self.kernel_weight.softmax(dim=0)
        weight = torch.stack(self.kernels(), dim=1) * mix.view(1, N_KERNELS, 1, 1, 1)  # O×3×C×kh×kw
        out = weight.reshape(self.out_channels, -1) @ masked.reshape(batch, -1, n_out)
        return out.view(batch, self.out_channels, *out_size)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, pixel_size={self.pixel_size}")


def first_block_conv_name(block):
    """The 3×3 conv of a ResNet block that carries its stride: conv2 of a Bottleneck, conv1 of a BasicBlock."""
    return "conv2" if isinstance(block, Bottleneck) else "conv1"


def depth_guided_block(block, x, depth, fx):
    """A torchvision Bottleneck / BasicBlock whose malleable conv gets the depth and focal length."""
    identity = x if block.downsample is None else block.downsample(x)
    if isinstance(block, Bottleneck):
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.relu(block.bn2(block.conv2(out, depth, fx)))
        out = block.bn3(block.conv3(out))
    else:
        out = block.relu(block.bn1(block.conv1(x, depth, fx)))
        out = block.bn2(block.conv2(out))
    return block.relu(out + identity)


def multi_grid(stage, base_dilation=2):
    """Dilate the 3×3 convs of the i-th block of an unstrided stage by base·2^i (the reference's layer4: 2, 4, 8)."""
    for index, block in enumerate(stage):
        for module in block.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                dilation = base_dilation * 2 ** index
                module.dilation, module.padding = (dilation, dilation), (dilation, dilation)


def conv_bias_bn_relu(in_channels, out_channels):
    """3×3 conv with bias + BN + ReLU (the reference's decoder convs keep their bias before BN)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class MergeModule(nn.Module):
    """res2, res3, res4 resized to the 1/8 map, each 3×3 conv-BN-ReLU'd, concatenated with the reduced res5 and
    merged by one more 3×3 conv-BN-ReLU."""

    def __init__(self, in_channels, feature_channels, out_channels):
        super().__init__()
        self.reduce = nn.ModuleList(conv_bias_bn_relu(channels, out_channels) for channels in in_channels)
        self.merge = conv_bias_bn_relu(feature_channels + len(in_channels) * out_channels, out_channels)

    def forward(self, skips, features):
        size = features.shape[-2:]
        reduced = [reduce(resize_to(skip, size)) for reduce, skip in zip(self.reduce, skips, strict=True)]
        return self.merge(torch.cat(reduced + [features], dim=1))


def task_module(channels):
    """Two bottlenecks (channels -> 4·channels) with the reference's dilation."""
    expanded = channels * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded))
    return nn.Sequential(Bottleneck(channels, channels, downsample=downsample, dilation=TASK_DILATION),
                         Bottleneck(expanded, channels, dilation=TASK_DILATION))


class Malleable25d(nn.Module):
    """ResNet (output stride 16, layer4 multi-grid 2/4/8) with malleable first-block convs -> res5 reduced at 1/8
    -> Merge_Module with res2-res4 -> Task_Module -> embedding conv -> ASPP -> 3×3 convs at 1/4 and 1/2 -> 1×1
    per dense head, bilinear to the input; auxiliary 1×1 per dense head on the embedding (1/8, train mode);
    image heads pool res5.

    Decoder widths follow the backbone: W = res5 channels / 4 (512 for ResNet-50/101/152, 128 for ResNet-18/34);
    ASPP hidden W/2, upsampling convs W/2 and W/4, Task_Module 4W. The reference's stride-1 3×3 transposed convs
    (res5 reduction, upsampling) are 3×3 convs here: the same map family and parameter count. Resizes go to the
    sizes of the maps they join, so any input size works without padding.
    """

    def __init__(self, heads, inputs, backbone, deep_stem, pretrained):
        super().__init__()
        require_kinds(heads, "malleable25d", (DENSE, IMAGE))
        self.input_keys = inputs
        depth_keys = [key for key in inputs if key in DEPTH_KEYS]
        self.depth_key = depth_keys[0] if depth_keys else None
        self.backbone = resnet_backbone(backbone, deep_stem, output_stride=16, pretrained=pretrained)
        multi_grid(self.backbone.layer4)
        if self.depth_key:
            for stage, pixel_size in zip(self.stages(), PIXEL_SIZES):
                name = first_block_conv_name(stage[0])
                setattr(stage[0], name, MalleableConv2d.from_conv(getattr(stage[0], name), pixel_size))
        skip_channels, res5_channels = self.backbone.out_channels[:3], self.backbone.out_channels[3]
        width = res5_channels // 4
        self.res5_reduce = conv_bias_bn_relu(res5_channels, width)
        self.merge = MergeModule(skip_channels, width, width)
        self.task = task_module(width)
        self.embed = conv_bias_bn_relu(width * Bottleneck.expansion, width)
        self.aspp = TorchSegASPP(width, width, ASPP_RATES, width // 2, nn.ReLU(), activate_pool=False)
        self.up_quarter = conv_bias_bn_relu(width, width // 2)
        self.up_half = conv_bias_bn_relu(width // 2, width // 4)
        dense = dense_heads(heads)
        self.classifier = nn.ModuleDict({spec.name: nn.Conv2d(width // 4, spec.channels, 1) for spec in dense})
        self.aux_classifier = nn.ModuleDict({spec.name: nn.Conv2d(width, spec.channels, 1) for spec in dense})
        self.activations = nn.ModuleDict({spec.name: spec.make_activation() for spec in dense})
        self.image_heads = nn.ModuleDict({spec.name: ImageHead(res5_channels, spec) for spec in image_heads(heads)})
        for name, module in self.named_modules():
            if not name.startswith(("backbone", "image_heads")) and isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def stages(self):
        return self.backbone.layer1, self.backbone.layer2, self.backbone.layer3, self.backbone.layer4

    def focal_length(self, meta, image):
        """fx per image (N) from the batch's intrinsics, at the input's resolution."""
        intrinsics = meta.get("K") if isinstance(meta, dict) else None
        if intrinsics is None:
            raise PtsemsegError("model malleable25d needs the camera intrinsics meta['K'] for its focal length; "
                                "the batch has none")
        intrinsics = torch.as_tensor(intrinsics)
        if intrinsics.shape != (image.shape[0], 3, 3):
            raise PtsemsegError(f"model malleable25d: meta['K'] must be N×3×3 for a batch of {image.shape[0]}, "
                                f"got {tuple(intrinsics.shape)}")
        return intrinsics[:, 0, 0].to(device=image.device, dtype=torch.float32)

    def features(self, image, depth, fx):
        """[res2, res3, res4, res5]; each stage's first block sees the depth at its input's size."""
        encoder = self.backbone
        x = encoder.stem(image) if encoder.deep_stem else encoder.relu(encoder.bn1(encoder.conv1(image)))
        x = encoder.maxpool(x)
        features = []
        for stage in self.stages():
            stage_depth = F.interpolate(depth, size=x.shape[-2:], mode="nearest")
            x = depth_guided_block(stage[0], x, stage_depth, fx)
            for block in stage[1:]:
                x = block(x)
            features.append(x)
        return features

    def forward(self, *inputs):
        if len(inputs) != len(self.input_keys):
            raise PtsemsegError(f"model malleable25d takes {len(self.input_keys)} inputs "
                                f"({', '.join(self.input_keys)}), got {len(inputs)}")
        named = dict(zip(self.input_keys, inputs))
        image = named["image"]
        if self.depth_key:
            depth = named[self.depth_key]
            res2, res3, res4, res5 = self.features(image, depth, self.focal_length(named["meta"], image))
        else:
            res2, res3, res4, res5 = self.backbone(image)
        x = self.merge([res2, res3, res4], self.res5_reduce(resize_to(res5, res3.shape[-2:])))
        embedded = self.embed(self.task(x))
        x = self.up_quarter(resize_to(self.aspp(embedded), res2.shape[-2:]))
        half_size = [-(-size // 2) for size in image.shape[-2:]]
        x = self.up_half(resize_to(x, half_size))
        out = {}
        for name, classifier in self.classifier.items():
            logits = F.interpolate(classifier(x), size=image.shape[-2:], mode="bilinear", align_corners=True)
            out[name] = self.activations[name](logits)
            if self.training:
                out[f"{name}/aux"] = self.activations[name](self.aux_classifier[name](embedded))
        out.update({name: head(res5) for name, head in self.image_heads.items()})
        return out


def check_malleable_inputs(inputs):
    """image + one of depth / raw_depth + meta (the paper), or image alone (plain convs: the RGB baseline)."""
    inputs = check_inputs("malleable25d", inputs)
    depth_keys = [key for key in inputs if key in DEPTH_KEYS]
    if "image" not in inputs or set(inputs) - {"image", "meta", *DEPTH_KEYS} or len(depth_keys) > 1:
        raise PtsemsegError(f"model malleable25d takes [image, depth or raw_depth, meta] or [image], "
                            f"got {list(inputs)}")
    if depth_keys and "meta" not in inputs:
        raise PtsemsegError(f"model malleable25d: {depth_keys[0]} is given without meta; add meta to model.inputs "
                            "(its intrinsics K give the focal length)")
    if "meta" in inputs and not depth_keys:
        raise PtsemsegError("model malleable25d: meta is given without depth or raw_depth")
    return inputs


@MODELS.register("malleable25d")
def malleable25d(heads, inputs=("image", "depth", "meta"), backbone="resnet101", deep_stem=True, pretrained="none"):
    """Malleable 2.5D convolution network; returns {head: output} with `<head>/aux` (1/8 of the input) per dense
    head in train mode (the paper weighs it 0.4: `training.aux_weights: {seg/aux: 0.4}`).

    Builds any dense heads (seg, depth, both) on one decoder and image heads (scene) on res5. 100,622,004
    parameters at 40 classes with the defaults, as the reference (its four malleable convs: 9,400,356).
    fx is K[0, 0] of each image's intrinsics at the input's resolution (K follows every resize, scale and crop);
    the reference keeps the unscaled frame's fx under its random scaling.
    Options: inputs [image, depth, meta] (default) | [image, raw_depth, meta] (depth in metres, 0 = invalid, used
    as geometry and never standardised) | [image] (plain 3×3 convs: the RGB-only baseline, same decoder);
    backbone resnet101 (default; the paper's) | resnet18 | resnet34 | resnet50 | resnet152 (the malleable conv
    replaces the strided 3×3 conv of each stage's first block: conv2 of a bottleneck, conv1 of a basic block);
    deep_stem (default true: three 3×3 stem convs, as the reference's resnet101_v1c; torchvision's ImageNet
    weights need false); pretrained none (default) | imagenet | PATH (a torchvision-format ResNet; each malleable
    conv starts its three kernels from the loaded 3×3 weight, as the reference). Needs batches of 2 or more in
    train mode (batch norm on the ASPP's pooled branch).
    """
    return Malleable25d(heads, check_malleable_inputs(inputs), backbone, deep_stem, pretrained)


malleable25d.input_keys = ("image", "depth", "meta")
