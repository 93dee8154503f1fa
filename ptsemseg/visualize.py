"""Pictures of samples and predictions: class palettes, depth colour maps and the validation image grid."""
import cv2
import numpy as np


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


def class_banner(true_id, predicted_id, width, names=None, height=24):
    """An H×W×3 strip naming the true and the predicted class of an image-level task (green: right, red: wrong)."""
    banner = np.zeros((height, width, 3), dtype=np.uint8)
    banner[:] = (0, 110, 0) if true_id == predicted_id else (140, 0, 0)

    def name(i):
        return names[i] if names and 0 <= i < len(names) else str(i)
    cv2.putText(banner, f"true {name(true_id)} | predicted {name(predicted_id)}", (4, min(height - 7, height // 2 + 5)),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return banner


def image_grid(tasks, batch, predictions, max_rows=4):
    """Rows of input | per task: ground truth, prediction, for the first images of a batch (H×W×3 uint8).

    `tasks` is a TaskSet; `predictions` maps task names to batched predictions.
    """
    n_rows = min(max_rows, batch["image"].shape[0])
    rows = []
    for i in range(n_rows):
        image = image_to_uint8(batch["image"][i])
        parts = [image]
        for name, task in tasks.items():
            target = batch[task.target_key][i]
            parts.append(task.draw(target, predictions[name][i], image.shape[:2]))
        rows.append(np.concatenate(parts, axis=1))
    return np.concatenate(rows, axis=0)
