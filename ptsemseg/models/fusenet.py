"""FuseNet (Hazirbas, Ma, Domokos & Cremers, ACCV 2016): RGB-D segmentation by fusing a depth encoder into an RGB
encoder, with an optional scene classifier (the paper's SF5 variant, as FuseNet_PyTorch's models/fusenet_model.py).

Two `vgg16_bn` encoders, one per modality. After each of the five conv-BN-ReLU blocks, before its 2×2 max pool,
the depth block's output is added element-wise into the RGB stream (5 fusion points); the depth stream carries on
unfused. Dropout (`dropout`, 0.5) follows pool3 and pool4 of both streams and pool5 of the RGB stream, and, as in
the reference code, the first three decoder stages. The decoder is SegNet's: it unpools with the RGB stream's
pooling indices only, through 5 conv-BN-ReLU stages (BN momentum 0.1) mirroring the encoder, and each dense head
(seg, depth, both) is its own last 3×3 conv 64→C without BN or ReLU. Pools floor as the reference's do (a 240×320
input gives a 7×10 pool5, which the paper's scene head needs); unpooling to each pre-pool size restores the rows a
pool dropped, so any side of 32 pixels or more works, and smaller inputs are zero-padded to 32 and cropped back.

Inputs (`inputs`): the image and one second stream, `depth` (default), `raw_depth` or `hha`; the second stream's
conv1_1 takes that key's channels, and metric keys are standardised first (`InputNorm`). `[image]` alone builds the
RGB stream without fusion and the same decoder, the baseline that fusion is measured against.

Scene head (`scene_head`, for image-level heads such as `scene`), on the RGB stream's pool5 after its dropout:
- `paper`: pool5 flattened (512×7×10 = 35,840 values, so a 240×320 input only) → FC 4096 → ReLU → Dropout →
  FC 4096 → ReLU → Dropout → FC scenes; 163,627,018 parameters at 10 scenes.
- `pooled` (default): pool5 global-average-pooled to 512 values, then the same FC stack; any input size,
  18,923,530 parameters at 10 scenes.
The FC weights start as the reference's, normal with std sqrt(4 / (fan_in + fan_out)).

Parameters, the reference's exactly (no difference to derive): 44,188,072 at 40 classes with depth input (37
classes: 44,186,341); 207,815,090 with the paper scene head at 10 scenes, 63,111,602 with the pooled one. Depth
(1 output): 44,165,569. HHA input: +1,152 (conv1_1 on 3 channels); `[image]` alone: 29,466,088 at 40 classes.

`pretrained: imagenet` loads torchvision's VGG16-BN into both encoders (convs with the BN statistics they were
trained with); the depth stream's conv1_1 gets the channel mean of the RGB filters (and their bias) by the
encoder's `in_channels` adaptation. The reference loads plain VGG16 convs and starts its BN layers fresh (and its
depth conv1_1 bias at random): a PATH to a torchvision `vgg16` state dict does exactly that here.
"""
import math

import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.encoders import get_encoder
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS
from ptsemseg.models._inputs import InputNorm, check_inputs
from ptsemseg.models.heads import DENSE, IMAGE, dense_heads, image_heads, require_kinds
from ptsemseg.models.segnet import segnet_decoder, segnet_dense_heads
from ptsemseg.models.vgg import VGG16_STAGES
from ptsemseg.schema import key_spec

SECOND_STREAM_KEYS = ("depth", "raw_depth", "hha")
SCENE_HEADS = ("paper", "pooled")
PAPER_POOL5 = (7, 10)  # pool5 of a 240×320 input, which the paper's scene head flattens
MIN_SIDE = 2 ** len(VGG16_STAGES)  # five floor-mode pools need 32 pixels per side
DROPOUT_AFTER_POOL = (2, 3)  # pool3, pool4 of both streams (pool5 of the RGB stream too)
DECODER_DROPOUT_STAGES = (4, 3, 2)  # decoder stages (by the encoder stage they undo) that end in dropout


class SceneHead(nn.Module):
    """FuseNet's scene classifier on pool5: flattened (`paper`) or globally average-pooled (`pooled`) → FC 4096 →
    ReLU → Dropout → FC 4096 → ReLU → Dropout → FC classes."""

    def __init__(self, spec, kind, channels, dropout, hidden=4096):
        super().__init__()
        self.kind = kind
        in_features = channels * PAPER_POOL5[0] * PAPER_POOL5[1] if kind == "paper" else channels
        self.classifier = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, spec.channels))
        for layer in self.classifier:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight, gain=math.sqrt(2.0))  # std sqrt(4 / (fan_in + fan_out))
        self.activation = spec.make_activation()

    def forward(self, pool5, input_size):
        if self.kind == "paper":
            if tuple(pool5.shape[-2:]) != PAPER_POOL5:
                raise PtsemsegError(f"fusenet scene_head paper flattens the 7×10 pool5 of a 240×320 input; a "
                                    f"{input_size[0]}×{input_size[1]} input gives {pool5.shape[-2]}×"
                                    f"{pool5.shape[-1]} (use scene_head: pooled for other sizes)")
            features = pool5.flatten(1)
        else:
            features = pool5.mean(dim=(2, 3))
        return self.activation(self.classifier(features))


class FuseNet(nn.Module):
    """RGB and depth VGG16-BN encoders fused by summation before each pool; SegNet decoder on the RGB indices."""

    def __init__(self, heads, inputs, scene_head, dropout, pretrained):
        super().__init__()
        require_kinds(heads, "fusenet", (DENSE, IMAGE))
        if not dense_heads(heads):
            raise PtsemsegError("arch fusenet needs a dense head (e.g. seg or depth) beside image-level ones")
        inputs = check_inputs("fusenet", inputs)
        if inputs[0] != "image" or len(inputs) > 2 or (len(inputs) == 2 and inputs[1] not in SECOND_STREAM_KEYS):
            raise PtsemsegError(f"arch fusenet takes inputs [image] or [image, depth | raw_depth | hha], "
                                f"got [{', '.join(inputs)}]")
        if scene_head not in SCENE_HEADS:
            raise PtsemsegError(f"fusenet scene_head must be paper or pooled, got {scene_head!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise PtsemsegError(f"fusenet dropout must be a number in [0, 1), got {dropout!r}")
        self.input_keys = inputs
        self.rgb = get_encoder("vgg16_bn", pretrained=pretrained)
        if len(inputs) == 2:
            self.second_norm = InputNorm(inputs[1])
            self.second = get_encoder("vgg16_bn", in_channels=key_spec(inputs[1]).channels, pretrained=pretrained)
        else:
            self.second_norm = self.second = None
        self.dropout = nn.Dropout(dropout)

        self.decoder = segnet_decoder()  # SegNet's, unpooling with the RGB stream's indices
        self.dense = segnet_dense_heads(heads)
        self.image = nn.ModuleDict({spec.name: SceneHead(spec, scene_head, VGG16_STAGES[-1][-1], dropout)
                                    for spec in image_heads(heads)})

    def encode(self, image, second):
        """RGB pool5 (after dropout) and, per RGB pool, its argmax indices and input size."""
        pooling = []
        last = len(self.rgb.stages) - 1
        for number, rgb_stage in enumerate(self.rgb.stages):
            image = rgb_stage(image)
            if self.second is not None:
                second = self.second.stages[number](second)
                image = image + second
            size = image.shape[-2:]
            image, indices = F.max_pool2d(image, 2, stride=2, return_indices=True)
            pooling.append((indices, size))
            if number in DROPOUT_AFTER_POOL or number == last:
                image = self.dropout(image)
            if self.second is not None and number < last:
                second = F.max_pool2d(second, 2, stride=2)
                if number in DROPOUT_AFTER_POOL:
                    second = self.dropout(second)
        return image, pooling

    def forward(self, image, second=None):
        if (second is None) != (self.second is None):
            raise PtsemsegError(f"fusenet takes {len(self.input_keys)} inputs ({', '.join(self.input_keys)})")
        input_size = image.shape[-2:]
        if self.second is not None:
            second = self.second_norm(second)
        pad = (0, max(MIN_SIDE - input_size[1], 0), 0, max(MIN_SIDE - input_size[0], 0))
        if any(pad):
            image = F.pad(image, pad)
            second = None if second is None else F.pad(second, pad)
        pool5, pooling = self.encode(image, second)
        h = pool5
        for number in reversed(range(len(self.decoder))):
            indices, size = pooling[number]
            h = self.decoder[number](F.max_unpool2d(h, indices, 2, stride=2, output_size=size))
            if number in DECODER_DROPOUT_STAGES:
                h = self.dropout(h)
        h = h[..., :input_size[0], :input_size[1]]
        outputs = {name: head(h) for name, head in self.dense.items()}
        outputs.update({name: head(pool5, tuple(input_size)) for name, head in self.image.items()})
        return outputs


@MODELS.register("fusenet")
def fusenet(heads, inputs=("image", "depth"), scene_head="pooled", dropout=0.5, pretrained="none"):
    """FuseNet (SF5); returns {head: output}, dense heads at the input size, image heads N×classes.

    Options: inputs [image, depth] (default) | [image, raw_depth] | [image, hha] | [image] (no second stream, no
    fusion); scene_head pooled (default: global average pooling, any input size) | paper (flattened pool5, 240×320
    input only); dropout 0.5 (the reference's rate everywhere); pretrained none (default) | imagenet (VGG16-BN
    into both encoders, as the paper starts from ImageNet) | PATH to a torchvision vgg16 or vgg16_bn state dict.
    """
    return FuseNet(heads, inputs, scene_head, dropout, pretrained)


fusenet.input_keys = ("image", "depth")
