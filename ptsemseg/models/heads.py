"""What a model is asked to predict: named heads, their output activations and the image-level head.

A model builder receives a tuple of `HeadSpec` (one per task, from the task registry) and returns a dict of
named outputs: `out[spec.name]` for every head, plus auxiliary outputs named `"<head>/<aux>"` in train mode
(e.g. `seg/aux`, `depth/scale1`). Dense heads give N×C×H×W at the input size, image heads N×C.
"""
from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError

DENSE, IMAGE = "dense", "image"


class PositiveDepth(nn.Module):
    """Map raw head outputs to positive depth in metres (softplus keeps gradients alive where ReLU dies)."""

    def forward(self, x):
        return F.softplus(x) + 1e-3


ACTIVATIONS = {"identity": nn.Identity, "positive_depth": PositiveDepth}


@dataclass(frozen=True)
class HeadSpec:
    """One output of a model: its name (the task's), channels, kind (dense | image) and output activation."""

    name: str
    channels: int
    kind: str = DENSE
    activation: str = "identity"

    def make_activation(self):
        return ACTIVATIONS[self.activation]()


def dense_heads(heads):
    """The dense (per-pixel) heads among `heads`, in order."""
    return [spec for spec in heads if spec.kind == DENSE]


def image_heads(heads):
    """The image-level heads among `heads`, in order."""
    return [spec for spec in heads if spec.kind == IMAGE]


def require_kinds(heads, arch, kinds):
    """Fail in one line when `arch` is asked for a head kind it does not build."""
    for spec in heads:
        if spec.kind not in kinds:
            raise PtsemsegError(f"arch {arch} cannot build the {spec.kind}-level head '{spec.name}' "
                                f"(it builds {', '.join(sorted(kinds))} heads)")


class ImageHead(nn.Module):
    """Image-level classifier on a feature map: global average pool -> dropout -> linear (scene classification)."""

    def __init__(self, in_channels, spec, dropout=0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, spec.channels)
        self.activation = spec.make_activation()

    def forward(self, features):
        return self.activation(self.fc(self.drop(self.pool(features).flatten(1))))
