"""Optimizers, registered by their YAML name (`training.optimizer.name`): the torch.optim classes.

Every other key of the mapping is passed to the class as is (`lr`, `momentum`, `weight_decay`,
`betas: [0.9, 0.999]`...). No mapping at all means SGD with lr 0.01 and no momentum.

Classes with a fused implementation (sgd, adam, adamw, adagrad) use it unless the mapping sets `fused` or
`foreach`: one kernel updates every parameter, which makes Adam's step about 2.7× faster on a CPU (BENCHMARKS.md).
"""
import inspect

import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

OPTIMIZERS = Registry("optimizer")

for _name, _cls in {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                    "adamax": torch.optim.Adamax, "asgd": torch.optim.ASGD, "adadelta": torch.optim.Adadelta,
                    "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}.items():
    OPTIMIZERS.register(_name)(_cls)

DEFAULT_OPTIMIZER = {"name": "sgd", "lr": 0.01}


def get_optimizer(opt_cfg, params):
    """The optimizer of a YAML mapping (`name` plus the class's keyword arguments) over `params`."""
    options = dict(opt_cfg or DEFAULT_OPTIMIZER)
    if "name" not in options:
        raise PtsemsegError(f"optimizer options {sorted(options)} lack a 'name'")
    name = options.pop("name")
    OPTIMIZERS.check_options(name, options, given=("params",))
    kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
    params = list(params)
    if _fusable(OPTIMIZERS.get(name), kwargs, params):
        kwargs["fused"] = True
    try:
        return OPTIMIZERS.get(name)(params, **kwargs)
    except (TypeError, ValueError) as err:
        raise PtsemsegError(f"optimizer '{name}' with {options}: {err}") from None


def _fusable(cls, kwargs, params):
    """Whether to default to the fused kernel: the class has one, the config chose no implementation, and every
    parameter is a floating-point tensor on a CPU or CUDA device (what the fused kernels take)."""
    if "fused" not in inspect.signature(cls).parameters or {"fused", "foreach"} & set(kwargs):
        return False
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(tensors) and all(t.is_floating_point() and t.device.type in ("cpu", "cuda") for t in tensors)
