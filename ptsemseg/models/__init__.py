"""Architectures, registered by their YAML name (`model.arch`).

A builder is called as `builder(heads, **model_options)` with a tuple of `HeadSpec` (ptsemseg/models/heads.py)
and returns a module whose `forward(*inputs)` takes the sample keys of its `input_keys` and returns a dict of
named outputs (one per head; auxiliary ones as `<head>/<aux>` in train mode).
"""
import copy

from ptsemseg.errors import PtsemsegError
from ptsemseg.models.heads import HeadSpec
from ptsemseg.registry import Registry

MODELS = Registry("arch")


def head_specs(heads):
    """`heads` as a tuple of HeadSpec: given as such, or as a mapping task name -> channels (e.g. {"seg": 19})."""
    if isinstance(heads, dict):
        from ptsemseg.tasks import TASKS

        return tuple(HeadSpec(name, channels, TASKS.get(name).kind, TASKS.get(name).activation)
                     for name, channels in heads.items())
    return tuple(heads)


def get_model(model_cfg, heads):
    """Build `model_cfg["arch"]` with `heads`; the other keys of `model_cfg` are the builder's options."""
    cfg = copy.deepcopy(dict(model_cfg or {}))
    if "arch" not in cfg:
        raise PtsemsegError("model.arch is missing")
    builder = MODELS.get(cfg.pop("arch"))
    try:
        return builder(head_specs(heads), **cfg)
    except TypeError as err:
        raise PtsemsegError(f"model options {sorted(cfg)}: {err}") from None


def model_input_keys(arch):
    """The sample keys an architecture consumes (its builder's `input_keys`, default the RGB image)."""
    return tuple(getattr(MODELS.get(arch), "input_keys", ("image",)))


def model_inputs(model, batch):
    """The batch tensors a model consumes, in the order of its `input_keys` (default: the RGB image)."""
    keys = getattr(model, "input_keys", ("image",))
    return [batch[key] for key in keys]


from ptsemseg.models import deeplab  # noqa: E402,F401
from ptsemseg.models import fcn  # noqa: E402,F401
from ptsemseg.models import segnet  # noqa: E402,F401
from ptsemseg.models import pspnet  # noqa: E402,F401
from ptsemseg.models import fcrn  # noqa: E402,F401
from ptsemseg.models import frrn  # noqa: E402,F401
from ptsemseg.models import dispnet  # noqa: E402,F401
