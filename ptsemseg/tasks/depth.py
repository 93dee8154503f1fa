"""Monocular depth: one channel of positive metres, scale-invariant loss, Eigen-protocol scores, best by abs_rel."""
import numpy as np

from ptsemseg.metrics import DepthMetrics
from ptsemseg.metrics.depth import METRIC_NAMES
from ptsemseg.tasks import TASKS, Task
from ptsemseg.visualize import colorize_depth


@TASKS.register("depth")
class DepthTask(Task):
    name = "depth"
    target_key = "depth"
    activation = "positive_depth"
    default_loss = {"name": "scale_invariant_loss"}
    metric_names = METRIC_NAMES
    lower_is_better = frozenset(METRIC_NAMES) - {"delta1", "delta2", "delta3"}
    best_metric = "abs_rel"

    @classmethod
    def channels_of(cls, dataset):
        return 1

    def metrics(self, device=None, testing=None):
        testing = testing or {}
        crop = testing.get("crop")
        return DepthMetrics(min_depth=testing.get("min_depth", 1e-3), max_depth=testing.get("max_depth", 80.0),
                            crop=None if crop == "none" else crop,
                            median_scaling=testing.get("median_scaling", False))

    def draw(self, target, prediction, size):
        target = target[0].cpu().numpy()
        max_depth = float(target.max()) if (target > 0).any() else 10.0
        return np.concatenate([colorize_depth(target, max_depth),
                               colorize_depth(prediction[0].float().cpu().numpy(), max_depth)], axis=1)
