"""Losses, registered by their YAML name (`training.loss.name`).

A builder takes the YAML keys as keyword arguments and returns the loss of ONE output,
`(output, target) -> scalar`. `get_loss` wraps it for models that return several outputs in training.
"""
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

LOSSES = Registry("loss")

AUX_WEIGHT_DECAY = 0.4  # seed convention: output i weighs 0.4**i unless scale_weight says otherwise


def resize_to(output, target):
    """`output` (N×C×h×w) as float32, bilinearly resized to the target's H×W when they differ."""
    output = output.float()
    if output.shape[-2:] != target.shape[-2:]:
        output = F.interpolate(output, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return output


class MultiOutputLoss:
    """Weighted sum of one loss over a model's outputs.

    The output is a tensor or a list/tuple [main, aux1, ...]; auxiliary outputs may be smaller and are
    resized to the target first. Output i weighs `scale_weight[i]`, or 0.4**i when no weights are given;
    a plain tensor weighs 1.
    """

    def __init__(self, loss, name, scale_weight=None):
        self.loss = loss
        self.name = name
        self.scale_weight = scale_weight

    def __call__(self, output, target):
        if not isinstance(output, (list, tuple)):
            return self.loss(resize_to(output, target), target)
        weights = self.scale_weight or [AUX_WEIGHT_DECAY ** i for i in range(len(output))]
        if len(weights) != len(output):
            raise PtsemsegError(f"loss '{self.name}': scale_weight has {len(weights)} weights but the model "
                                f"returned {len(output)} outputs")
        return sum(weight * self.loss(resize_to(out, target), target) for weight, out in zip(weights, output))


def get_loss(loss_cfg, default):
    """The loss described by a YAML mapping (`name` plus options); None or empty uses `default`.

    `scale_weight` (a list, one weight per model output) is accepted by every loss. The mapping is not modified.
    """
    options = dict(loss_cfg or default)
    if "name" not in options:
        raise PtsemsegError(f"loss options {sorted(options)} lack a 'name'")
    name = options.pop("name")
    LOSSES.check_options(name, options, shared=("scale_weight",))
    scale_weight = options.pop("scale_weight", None)
    if scale_weight is not None and not (isinstance(scale_weight, (list, tuple)) and scale_weight
                                         and all(isinstance(w, (int, float)) for w in scale_weight)):
        raise PtsemsegError(f"loss '{name}': scale_weight must be a list of numbers, got {scale_weight!r}")
    return MultiOutputLoss(LOSSES.get(name)(**options), name, scale_weight)


from ptsemseg.losses import depth  # noqa: E402,F401
from ptsemseg.losses import seg  # noqa: E402,F401
