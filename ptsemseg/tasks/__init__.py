"""Tasks, registered by their YAML name (`task`): what a model predicts and how it is trained and judged.

A task class knows its head (kind, activation), its target key, its default loss, its metrics, its best-model
criterion and how to draw a prediction. It is instantiated for a dataset, which fixes its channel count
(seg: the dataset's classes; scene: its scene classes; depth: 1). A run's `task:` is one name or a mapping of
names to loss weights; `TaskSet` holds the instantiated tasks of a run. The trainer and the evaluation only talk
to these objects and never branch on a task's name.
"""
import numbers

import numpy as np
import torch

from ptsemseg.errors import PtsemsegError, closest
from ptsemseg.models.heads import DENSE, HeadSpec
from ptsemseg.registry import Registry

TASKS = Registry("task")


class Task:
    """Base of every task; subclasses set the class attributes and implement `channels_of`, `metrics`, `draw`."""

    name = ""
    target_key = ""
    kind = DENSE
    activation = "identity"
    default_loss = {}
    metric_names = ()  # the scalar scores of `metrics().compute()`
    lower_is_better = frozenset()  # those of them where lower is better (errors)
    best_metric = ""

    def __init__(self, dataset):
        self.channels = self.channels_of(dataset)
        self.class_names = None

    @classmethod
    def channels_of(cls, dataset):
        raise NotImplementedError

    def head(self):
        return HeadSpec(self.name, self.channels, self.kind, self.activation)

    def metrics(self, device=None, testing=None):
        raise NotImplementedError

    def predict(self, output):
        """The prediction the metrics and pictures take from the head's output (float)."""
        return output

    def resize_output(self, output, size, testing=None):
        """The head's output at `size` (the target's rows, cols) for scoring: dense outputs bilinearly (logits,
        metres), image-level ones as they are. `testing` is the config's `testing:` section."""
        if output.dim() != 4 or tuple(output.shape[-2:]) == tuple(size):
            return output
        return torch.nn.functional.interpolate(output, size=tuple(size), mode="bilinear", align_corners=False)

    def results_table(self, scores, testing=None):
        """A table of this task's `scores` (names without the task prefix) in its field's usual form, printed by
        the evaluation after the list of every score; empty when the list says it all."""
        return ""

    def draw(self, target, prediction, size):
        """H×W'×3 uint8 pictures of one item's target and prediction, `size` = (H, W) of the input."""
        raise NotImplementedError


def get_task_class(name):
    return TASKS.get(name)


def parse_task_spec(spec):
    """`task:` as YAML gives it (one name, or a mapping name -> loss weight) -> {name: weight}, checked."""
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if not isinstance(spec, dict) or not spec:
        raise PtsemsegError(f"task must be a name ({', '.join(TASKS.names())}) or a mapping of names to loss "
                            f"weights, got {spec!r}")
    weights = {}
    for name, weight in spec.items():
        if name not in TASKS:
            raise PtsemsegError(f"unknown task '{name}'{closest(str(name), TASKS.names())}")
        if weight is None:
            weight = 1.0
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight) or weight < 0:
            raise PtsemsegError(f"task '{name}': the loss weight must be a number ≥ 0, got {weight!r}")
        weights[name] = float(weight)
    return weights


def parse_best_metric(best, weights):
    """`training.best_metric` ("<task>/<metric>", default the first task's criterion) -> (task name, metric)."""
    if best is None:
        first = next(iter(weights))
        return first, TASKS.get(first).best_metric
    task, sep, metric = str(best).partition("/")
    if not sep or task not in weights:
        raise PtsemsegError(f"must be '<task>/<metric>' with a task of this run "
                            f"({', '.join(weights)}), got {best!r}")
    names = TASKS.get(task).metric_names
    if metric not in names:
        raise PtsemsegError(f"task {task} has no score '{metric}'{closest(metric, names)}")
    return task, metric


class TaskSet:
    """The tasks of one run, in YAML order, with their loss weights and the best-model criterion."""

    def __init__(self, spec, dataset, best_metric=None):
        self.weights = parse_task_spec(spec)
        self.tasks = {name: TASKS.get(name)(dataset) for name in self.weights}
        self.best_task, self.best_metric = parse_best_metric(best_metric, self.weights)

    def items(self):
        return self.tasks.items()

    def heads(self):
        return tuple(task.head() for task in self.tasks.values())

    def target_keys(self):
        return tuple(dict.fromkeys(task.target_key for task in self.tasks.values()))

    def meta(self):
        """What a checkpoint records of the tasks: name -> output channels."""
        return {name: task.channels for name, task in self.tasks.items()}

    @property
    def best_key(self):
        return f"{self.best_task}/{self.best_metric}"

    def is_better(self, scores, best):
        """Whether `scores` beat the best so far under the run's criterion (NaN and missing never do)."""
        value = scores.get(self.best_key)
        if value is None or not np.isfinite(value):
            return False
        if best is None:
            return True
        return value < best if self.best_metric in self.tasks[self.best_task].lower_is_better else value > best


from ptsemseg.tasks import depth  # noqa: E402,F401
from ptsemseg.tasks import scene  # noqa: E402,F401
from ptsemseg.tasks import seg  # noqa: E402,F401
