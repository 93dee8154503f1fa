"""Semantic segmentation: per-pixel class logits, cross entropy, confusion-matrix scores, best by mean IoU."""
import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.metrics import SegMetrics
from ptsemseg.tasks import TASKS, Task
from ptsemseg.visualize import label_palette


@TASKS.register("seg")
class SegTask(Task):
    name = "seg"
    target_key = "label"
    default_loss = {"name": "cross_entropy"}
    metric_names = ("overall_acc", "mean_acc", "fwiou", "mean_iou")
    best_metric = "mean_iou"

    def __init__(self, dataset):
        super().__init__(dataset)
        self.class_names = getattr(dataset, "class_names", None)
        self.palette = label_palette(self.channels, getattr(dataset, "class_colors", None))

    @classmethod
    def channels_of(cls, dataset):
        if not getattr(dataset, "n_classes", None):
            raise PtsemsegError(f"task seg needs class labels; dataset {type(dataset).__name__} defines no classes")
        return dataset.n_classes

    def metrics(self, device=None, testing=None):
        return SegMetrics(self.channels, device=device)

    def predict(self, output):
        return output.argmax(1)

    def draw(self, target, prediction, size):
        return np.concatenate([self.palette[target.cpu().numpy()], self.palette[prediction.cpu().numpy()]], axis=1)
