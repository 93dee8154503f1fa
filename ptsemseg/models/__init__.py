"""Architectures, registered by their YAML name (`model.arch`).

A builder is called as `builder(heads, **model_options)` with a tuple of `HeadSpec` (ptsemseg/models/heads.py)
and returns a module whose `forward(*inputs)` takes the sample keys of its `input_keys` and returns a dict of
named outputs (one per head; auxiliary ones as `<head>/<aux>` in train mode). The builder's `input_keys` are its
default inputs; `model.inputs` in YAML chooses others (ptsemseg/models/_inputs.py): a builder with an `inputs`
parameter takes them itself, any other gets them by early fusion through its `in_channels`.
"""
import copy
import importlib
import inspect
import pkgutil

from ptsemseg.errors import PtsemsegError
from ptsemseg.models._inputs import EarlyFusion, check_inputs, input_channels
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
    arch = cfg.pop("arch")
    builder = MODELS.get(arch)
    keys = model_input_keys(model_cfg)
    cfg.pop("inputs", None)
    parameters = inspect.signature(builder).parameters
    early_fusion = False
    if "inputs" in parameters:
        cfg["inputs"] = keys
    elif keys != default_input_keys(builder):
        if "meta" in keys:
            raise PtsemsegError(f"model {arch} cannot take 'meta' as an input (only architectures with an "
                                "`inputs` option read it)")
        cfg["in_channels"] = input_channels(keys)
        early_fusion = True
    try:
        model = builder(head_specs(heads), **cfg)
    except TypeError as err:
        raise PtsemsegError(f"model options {sorted(cfg)}: {err}") from None
    return EarlyFusion(model, keys) if early_fusion else model


def default_input_keys(builder):
    """The inputs a builder takes when YAML names none (its `input_keys`, default the RGB image)."""
    return tuple(getattr(builder, "input_keys", ("image",)))


def model_input_keys(model_cfg):
    """The sample keys the model of `model_cfg` consumes: `model.inputs`, else its architecture's default."""
    arch = model_cfg["arch"]
    builder = MODELS.get(arch)
    if model_cfg.get("inputs") is None:
        return default_input_keys(builder)
    keys = check_inputs(arch, model_cfg["inputs"])
    parameters = inspect.signature(builder).parameters
    if keys != default_input_keys(builder) and not {"inputs", "in_channels"} & set(parameters):
        raise PtsemsegError(f"model {arch} takes only {', '.join(default_input_keys(builder))} as inputs, "
                            f"not {', '.join(keys)}")
    return keys


def model_inputs(model, batch):
    """The batch tensors a model consumes, in the order of its `input_keys` (default: the RGB image)."""
    keys = getattr(model, "input_keys", ("image",))
    return [batch[key] for key in keys]



def _import_architectures():
    """Import every architecture file of this package (not the `_` helpers), so each registers itself."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "heads":
            importlib.import_module(f"{__name__}.{module.name}")


_import_architectures()
