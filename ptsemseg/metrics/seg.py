"""Segmentation scores from one confusion matrix accumulated over a whole split (dataset-level, not per image)."""
import math

import torch

from ptsemseg.metrics import METRICS


@METRICS.register("seg")
class SegMetrics:
    """n×n confusion matrix (rows: ground truth, columns: prediction) built with bincount on the data's device.

    Pixels whose target is outside 0..n_classes-1 or equal to `ignore_index` are left out; predicted labels
    must lie in 0..n_classes-1.
    """

    def __init__(self, n_classes, device=None, ignore_index=255):
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(n_classes, n_classes, dtype=torch.int64, device=device)

    def reset(self):
        self.confusion.zero_()

    def update(self, pred_labels, target):
        """Add a batch of predicted labels and targets (integer tensors of the same shape, e.g. N×H×W)."""
        if pred_labels.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred_labels.shape)} and target {tuple(target.shape)} differ in shape")
        if self.confusion.device != target.device:
            self.confusion = self.confusion.to(target.device)
        n = self.n_classes
        target = target.long()
        pred_labels = pred_labels.to(target.device).long()
        if pred_labels.numel():
            low, high = torch.aminmax(pred_labels)
            if bool((low < 0) | (high >= n)):
                raise ValueError(f"predicted labels must lie in 0..{n - 1}, got {int(low)}..{int(high)}")
        counted = (target >= 0) & (target < n) & (target != self.ignore_index)
        # Left-out pixels go to one extra bin that is dropped.
        index = torch.where(counted, target * n + pred_labels, n * n)
        self.confusion += torch.bincount(index.flatten(), minlength=n * n + 1)[: n * n].reshape(n, n)

    def state(self):
        return {"confusion": self.confusion}

    def merge(self, state):
        self.confusion += state["confusion"].to(self.confusion.device)

    def compute(self):
        """overall_acc, mean_acc, fwiou (frequency-weighted IoU), mean_iou and per_class_iou.

        Per-class accuracy is NaN for classes absent from the ground truth and per-class IoU is NaN for classes
        absent from both ground truth and prediction; the means skip NaNs. Everything is NaN before any pixel.
        """
        confusion = self.confusion.double().cpu()
        total = confusion.sum()
        if total == 0:
            nan = math.nan
            return {"overall_acc": nan, "mean_acc": nan, "fwiou": nan, "mean_iou": nan,
                    "per_class_iou": [nan] * self.n_classes}
        hits = confusion.diagonal()
        in_truth = confusion.sum(1)
        in_prediction = confusion.sum(0)
        class_acc = hits / in_truth
        iou = hits / (in_truth + in_prediction - hits)
        frequency = in_truth / total
        present = frequency > 0
        return {
            "overall_acc": float(hits.sum() / total),
            "mean_acc": float(class_acc.nanmean()),
            "fwiou": float((frequency[present] * iou[present]).sum()),
            "mean_iou": float(iou.nanmean()),
            "per_class_iou": iou.tolist(),
        }
