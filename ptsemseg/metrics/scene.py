"""Image-level classification scores (scene): accuracy and mean class accuracy from one confusion matrix."""
from ptsemseg.metrics import METRICS
from ptsemseg.metrics.seg import SegMetrics


@METRICS.register("scene")
class SceneMetrics(SegMetrics):
    """The confusion matrix of SegMetrics over images instead of pixels; scores named as classification scores."""

    def compute(self):
        """accuracy (fraction of images right) and mean_class_acc (mean over classes present in the ground truth)."""
        scores = super().compute()
        return {"accuracy": scores["overall_acc"], "mean_class_acc": scores["mean_acc"]}
