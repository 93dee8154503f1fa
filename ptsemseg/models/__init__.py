"""Architectures, registered by their YAML name (`model.arch`)."""
import copy

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

MODELS = Registry("arch")


def get_model(model_cfg, task, n_classes):
    """Build `model_cfg["arch"]` for `task` ("seg" or "depth"); the other keys are the builder's kwargs."""
    from ptsemseg.tasks import get_task

    cfg = copy.deepcopy(dict(model_cfg or {}))
    if "arch" not in cfg:
        raise PtsemsegError("model.arch is missing")
    builder = MODELS.get(cfg.pop("arch"))
    task_obj = get_task(task)
    try:
        return builder(task=task_obj.name, n_outputs=task_obj.out_channels(n_classes), **cfg)
    except TypeError as err:
        raise PtsemsegError(f"model options {sorted(cfg)}: {err}") from None


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
