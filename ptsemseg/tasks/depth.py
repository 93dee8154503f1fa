"""Monocular depth: one channel of positive metres, scale-invariant loss, Eigen-protocol scores, best by abs_rel."""
import numpy as np

from ptsemseg.metrics import DepthMetrics
from ptsemseg.metrics.depth import METRIC_NAMES
from ptsemseg.tasks import TASKS, Task
from ptsemseg.visualize import colorize_depth

# The seed projects' table of results (Semseg-MonoDepth's README, monodepth2's evaluate_depth.py): column title
# -> score name.
RESULTS_TABLE = {"abs_rel": "abs_rel", "sq_rel": "sq_rel", "rmse": "rmse", "rmse_log": "rmse_log",
                 "a1": "delta1", "a2": "delta2", "a3": "delta3"}


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
                            median_scaling=testing.get("median_scaling", False),
                            cap_gt=testing.get("cap_gt", True),
                            pred_depth_scale=testing.get("pred_depth_scale", 1.0))

    def resize_output(self, output, size, testing=None):
        """The N×1×h×w depth output bilinearly resized to `size` (the ground truth's rows, cols) for scoring.

        With `testing.pred_disp` the model's depth is the inverse of the disparity it predicts (dispnet): the
        disparity 1/depth is resized and inverted afterwards, as monodepth2 resizes disparities before inverting.
        """
        if not (testing or {}).get("pred_disp") or tuple(output.shape[-2:]) == tuple(size):
            return super().resize_output(output, size, testing)
        return 1.0 / super().resize_output(1.0 / output, size, testing)

    def results_table(self, scores, testing=None):
        """The seed projects' 7-metric table of `scores` (this task's, without the `depth/` prefix), three decimals
        as in their READMEs; with median scaling, monodepth2's line of scaling ratios first."""
        lines = []
        if (testing or {}).get("median_scaling"):
            lines.append(f" Scaling ratios | med: {scores['ratio_median']:0.3f} | std: {scores['ratio_std']:0.3f} "
                         f"| mean: {scores['ratio_mean']:0.3f}")
        lines.append(" | ".join(f"{title:>8}" for title in RESULTS_TABLE))
        lines.append(" | ".join(f"{scores[name]:8.3f}" for name in RESULTS_TABLE.values()))
        return "\n".join(lines)

    def draw(self, target, prediction, size):
        target = target[0].cpu().numpy()
        max_depth = float(target.max()) if (target > 0).any() else 10.0
        return np.concatenate([colorize_depth(target, max_depth),
                               colorize_depth(prediction[0].float().cpu().numpy(), max_depth)], axis=1)
