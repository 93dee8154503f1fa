"""Model inputs chosen in YAML (`model.inputs`): which sample keys a model consumes and how they enter it.

Colour and HHA arrive scaled to [0, 1] and standardised by the `normalize` transform. Metric keys (`depth`,
`raw_depth`, in metres with 0 = invalid) enter unscaled and are standardised inside the model by `InputNorm`, a
batch norm without learnable parameters, so one model works for indoor (0-10 m) and street (0-80 m) depth alike.
A fusion architecture takes `inputs` itself (one branch per key; `meta` gives it the batch's intrinsics `K`, N×3×3);
any other architecture with an `in_channels` option takes several keys by early fusion: their channels are
concatenated into one input (`EarlyFusion`).
"""
import torch
import torch.nn as nn

from ptsemseg.errors import PtsemsegError
from ptsemseg.schema import MAP, META, key_spec

INPUT_EXCLUDED = ("label", "normals")  # per-pixel keys that are targets, never model inputs


def check_inputs(arch, inputs):
    """`inputs` as a tuple of per-pixel sample keys; anything else fails in one line naming `arch`."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not inputs:
        raise PtsemsegError(f"model {arch}: inputs must be a non-empty list of sample keys, got {inputs!r}")
    for key in inputs:
        if not isinstance(key, str):
            raise PtsemsegError(f"model {arch}: inputs must be sample key names, got {key!r}")
        spec = key_spec(key)
        if (spec.kind != MAP and spec.kind != META) or key in INPUT_EXCLUDED:
            raise PtsemsegError(f"model {arch}: '{key}' cannot be a model input (inputs are per-pixel keys such "
                                "as image, depth, raw_depth, hha, and meta for the intrinsics)")
    if len(set(inputs)) != len(inputs):
        raise PtsemsegError(f"model {arch}: inputs name a key twice: {list(inputs)}")
    return tuple(inputs)


def input_channels(keys):
    """Channels of the keys together (image 3, depth 1, hha 3...)."""
    return sum(key_spec(key).channels for key in keys)


def is_metric(key):
    """Whether `key` enters the model in physical units (standardised by InputNorm) rather than scaled."""
    return not key_spec(key).scaled


class InputNorm(nn.Module):
    """Standardise a metric input (depth in metres) with running batch statistics; no learnable parameters.

    Identity for scaled keys (image, hha), which the `normalize` transform already standardised.
    """

    def __init__(self, key):
        super().__init__()
        self.norm = nn.BatchNorm2d(key_spec(key).channels, affine=False) if is_metric(key) else nn.Identity()

    def forward(self, x):
        return self.norm(x)


class EarlyFusion(nn.Module):
    """Concatenate several inputs along channels (metric ones standardised first) and run one network on them."""

    def __init__(self, net, keys):
        super().__init__()
        self.net = net
        self.input_keys = tuple(keys)
        self.input_norms = nn.ModuleList(InputNorm(key) for key in keys)

    def forward(self, *inputs):
        return self.net(torch.cat([norm(x) for norm, x in zip(self.input_norms, inputs, strict=True)], dim=1))


def example_inputs(keys, batch, size, device="cpu", generator=None):
    """Random model inputs for `keys`, shaped and typed as the loaders give them: scaled keys in [0, 1], metric
    ones 0.5-10 m, `meta` as a collated {"K": N×3×3} with a focal length of size[1] / 2 pixels. For contract
    tests, FLOP counts and benchmarks."""
    rows, cols = size
    inputs = []
    for key in keys:
        spec = key_spec(key)
        if spec.kind == META:
            K = torch.tensor([[cols / 2, 0.0, cols / 2], [0.0, cols / 2, rows / 2], [0.0, 0.0, 1.0]])
            inputs.append({"K": K.expand(batch, 3, 3).to(device)})
            continue
        shape = (batch, spec.channels, rows, cols) if spec.channel_axis else (batch, rows, cols)
        values = torch.rand(shape, generator=generator)
        values = values if spec.scaled else 0.5 + 9.5 * values
        inputs.append(values.to(spec.tensor_dtype).to(device))
    return inputs
