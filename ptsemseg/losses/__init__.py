"""Losses, registered by their YAML name (`training.loss.name`).

A builder takes the YAML keys as keyword arguments and returns the loss of ONE output,
`(output, target) -> scalar`. `get_loss` wraps it for a head's main and auxiliary outputs, and `TaskSetLoss`
sums the tasks' losses with their YAML weights.
"""
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

LOSSES = Registry("loss")

AUX_WEIGHT_DECAY = 0.4  # seed convention: output i weighs 0.4**i unless scale_weight says otherwise


def resize_to(output, target):
    """`output` as float32; a dense output (N×C×h×w) is resized bilinearly to the target's H×W when they differ."""
    output = output.float()
    if output.dim() == 4 and output.shape[-2:] != target.shape[-2:]:
        output = F.interpolate(output, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return output


def head_outputs(outputs, head):
    """The outputs of one head in a model's output dict, main first: `head`, then `head/<aux>` in model order."""
    return [(key, value) for key, value in outputs.items() if key == head or key.startswith(f"{head}/")]


class MultiOutputLoss:
    """Weighted sum of one loss over the outputs of one head.

    The output is a model's dict of named outputs (the loss takes `head` and its auxiliaries `head/<aux>`), a
    list/tuple [main, aux1, ...] or a tensor. Auxiliary outputs may be smaller and are resized to the target
    first. Output i weighs `aux_weights[<its name>]` when named there, else `scale_weight[i]`, else 0.4**i
    (the seed projects' convention); the main output weighs 1 unless `scale_weight` says otherwise.
    """

    def __init__(self, loss, name, scale_weight=None, head=None, aux_weights=None):
        self.loss = loss
        self.name = name
        self.scale_weight = scale_weight
        self.head = head
        self.aux_weights = aux_weights or {}

    def __call__(self, output, target):
        if isinstance(output, dict):
            named = head_outputs(output, self.head)
        elif isinstance(output, (list, tuple)):
            named = [(None, out) for out in output]
        else:
            return self.loss(resize_to(output, target), target)
        if self.scale_weight is not None and len(self.scale_weight) != len(named):
            raise PtsemsegError(f"loss '{self.name}': scale_weight has {len(self.scale_weight)} weights but the "
                                f"model returned {len(named)} outputs")
        total = 0.0
        for i, (key, out) in enumerate(named):
            if key in self.aux_weights:
                weight = self.aux_weights[key]
            elif self.scale_weight is not None:
                weight = self.scale_weight[i]
            else:
                weight = AUX_WEIGHT_DECAY ** i
            total = total + weight * self.loss(resize_to(out, target), target)
        return total


def get_loss(loss_cfg, default, head=None, aux_weights=None):
    """The loss described by a YAML mapping (`name` plus options); None or empty uses `default`.

    `scale_weight` (a list, one weight per output of the head) is accepted by every loss; `head` names the
    model output the loss judges, `aux_weights` maps auxiliary output names to weights. The mapping is not modified.
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
    return MultiOutputLoss(LOSSES.get(name)(**options), name, scale_weight, head, aux_weights)


def task_losses_config(loss_cfg, task_names):
    """`training.loss` -> {task: loss mapping or None (the task's default)}.

    One mapping with a `name` is the loss of a single-task run; a multi-task run names its tasks:
    `{seg: {name: cross_entropy}, depth: {name: berhu_loss}}` (tasks left out use their default).
    """
    if not loss_cfg:
        return {name: None for name in task_names}
    if not isinstance(loss_cfg, dict):
        raise PtsemsegError(f"training.loss must be a mapping, got {loss_cfg!r}")
    if "name" in loss_cfg:
        if len(task_names) > 1:
            raise PtsemsegError("with several tasks, give one loss per task, e.g. "
                                "{seg: {name: cross_entropy}, depth: {name: berhu_loss}}")
        return {task_names[0]: loss_cfg}
    unknown = [key for key in loss_cfg if key not in task_names]
    if unknown:
        raise PtsemsegError(f"'{unknown[0]}' is not a task of this run ({', '.join(task_names)}); "
                            "a single loss needs a 'name'")
    return {name: loss_cfg.get(name) for name in task_names}


def aux_weights_config(aux_weights, task_names):
    """`training.aux_weights` ({"seg/aux": 0.4, ...}) checked: names `<task>/<aux>` of this run's tasks, numbers ≥ 0."""
    aux_weights = aux_weights or {}
    if not isinstance(aux_weights, dict):
        raise PtsemsegError(f"training.aux_weights must be a mapping of output names to weights, got {aux_weights!r}")
    for key, weight in aux_weights.items():
        task, sep, _ = str(key).partition("/")
        if not sep or task not in task_names:
            raise PtsemsegError(f"aux_weights: '{key}' is not '<task>/<output>' for a task of this run "
                                f"({', '.join(task_names)})")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise PtsemsegError(f"training.aux_weights.{key} must be a number ≥ 0, got {weight!r}")
    return dict(aux_weights)


class TaskSetLoss:
    """The training loss of a run: Σ over tasks of weight · (that task's loss over its head's outputs).

    Returns the total and the per-task values (detached) for logging.
    """

    def __init__(self, weights, tasks, loss_cfg, aux_weights=None):
        """`weights`: task name -> loss weight; `tasks`: task name -> task (class or instance), in run order."""
        names = list(weights)
        configs = task_losses_config(loss_cfg, names)
        aux = aux_weights_config(aux_weights, names)
        self.weights = dict(weights)
        self.targets = {name: tasks[name].target_key for name in names}
        self.losses = {name: get_loss(configs[name], tasks[name].default_loss, head=name, aux_weights=aux)
                       for name in names}

    def __call__(self, outputs, batch):
        parts = {name: loss(outputs, batch[self.targets[name]]) for name, loss in self.losses.items()}
        total = sum(self.weights[name] * value for name, value in parts.items())
        return total, {name: value.detach() for name, value in parts.items()}


from ptsemseg.losses import depth  # noqa: E402,F401
from ptsemseg.losses import seg  # noqa: E402,F401
