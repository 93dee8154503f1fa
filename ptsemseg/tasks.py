"""The two tasks, seg and depth: everything the trainer needs to know about one, in one object.

The trainer, the evaluation scripts and the models ask the task for output channels, the target key,
the default loss, the metrics, the best-model criterion and how to draw a prediction; none of them
branch on the task's name.
"""
import cv2
import numpy as np

from ptsemseg.errors import PtsemsegError
from ptsemseg.metrics import DepthMetrics, SegMetrics


def label_palette(n_classes):
    """A fixed, well-separated RGB colour per class id (255 = ignore drawn black)."""
    rng = np.random.default_rng(7)
    palette = np.zeros((256, 3), dtype=np.uint8)
    hues = (np.arange(n_classes) * 180 // max(n_classes, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full(n_classes, 220, np.uint8), rng.integers(150, 256, n_classes, dtype=np.uint8)], 1)
    palette[:n_classes] = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
    return palette


def colorize_depth(depth, max_depth):
    """Depth map (metres, 0 = invalid) -> RGB uint8, near = bright, invalid = black."""
    scaled = np.clip(depth / max_depth, 0.0, 1.0)
    colored = cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_MAGMA)[..., ::-1]
    colored[depth <= 0] = 0
    return colored


def image_to_uint8(image):
    """A normalised or raw 3×H×W float image tensor -> H×W×3 uint8 for display (min-max stretched)."""
    array = image.detach().float().cpu().numpy().transpose(1, 2, 0)
    low, high = array.min(), array.max()
    return (255 * (array - low) / max(high - low, 1e-6)).astype(np.uint8)


class SegTask:
    """Semantic segmentation: n_classes logits, best model by mean IoU."""

    name = "seg"
    target_key = "label"
    default_loss = {"name": "cross_entropy"}
    best_metric = "mean_iou"
    higher_is_better = True

    def out_channels(self, n_classes):
        return n_classes

    def metrics(self, n_classes, device=None, testing=None):
        return SegMetrics(n_classes, device=device)

    def predict(self, output):
        return output.argmax(1)

    def draw(self, image, target, prediction, n_classes):
        """One row of the validation image grid: input | ground truth | prediction."""
        palette = label_palette(n_classes)
        return np.concatenate([image_to_uint8(image), palette[target.cpu().numpy()],
                               palette[prediction.cpu().numpy()]], axis=1)


class DepthTask:
    """Monocular depth: one channel of positive depth in metres, best model by abs_rel."""

    name = "depth"
    target_key = "depth"
    default_loss = {"name": "scale_invariant_loss"}
    best_metric = "abs_rel"
    higher_is_better = False

    def out_channels(self, n_classes):
        return 1

    def metrics(self, n_classes, device=None, testing=None):
        testing = testing or {}
        crop = testing.get("crop")
        return DepthMetrics(min_depth=testing.get("min_depth", 1e-3), max_depth=testing.get("max_depth", 80.0),
                            crop=None if crop == "none" else crop,
                            median_scaling=testing.get("median_scaling", False))

    def predict(self, output):
        return output

    def draw(self, image, target, prediction, n_classes):
        target = target[0].cpu().numpy()
        max_depth = float(target.max()) if (target > 0).any() else 10.0
        return np.concatenate([image_to_uint8(image), colorize_depth(target, max_depth),
                               colorize_depth(prediction[0].float().cpu().numpy(), max_depth)], axis=1)


TASKS = {"seg": SegTask(), "depth": DepthTask()}


def get_task(name):
    if name not in TASKS:
        raise PtsemsegError(f"task must be 'seg' or 'depth', got '{name}'")
    return TASKS[name]


def is_better(task, value, best):
    """Whether a validation score beats the best so far under the task's criterion (NaN never does)."""
    if value is None or not np.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if task.higher_is_better else value < best


def image_grid(task, batch, prediction, n_classes, max_rows=4):
    """Stack input / ground truth / prediction rows for the first images of a batch (H×W×3 uint8)."""
    rows = [task.draw(batch["image"][i], batch[task.target_key][i], prediction[i], n_classes)
            for i in range(min(max_rows, prediction.shape[0]))]
    return np.concatenate(rows, axis=0)

