"""Pictures of samples and predictions: class palettes, depth colour maps and the validation image grid."""
import cv2
import numpy as np


def label_palette(n_classes, colors=None):
    """A 256×3 uint8 RGB colour per class id: the dataset's `colors` where it has an official palette (Cityscapes),
    else fixed, well-separated hues (255 = ignore drawn black)."""
    rng = np.random.default_rng(7)
    palette = np.zeros((256, 3), dtype=np.uint8)
    hues = (np.arange(n_classes) * 180 // max(n_classes, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full(n_classes, 220, np.uint8), rng.integers(150, 256, n_classes, dtype=np.uint8)], 1)
    palette[:n_classes] = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
    if colors is not None and len(colors) == n_classes:
        palette[:n_classes] = colors
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


# ---- pictures of one prediction (predict.py) -------------------------------------------------------------------
PANEL_WIDTH_INCHES = 6.0
PICTURE_DPI = 120
LEGEND_COLUMNS = 5
LEGEND_MAX_CLASSES = 30


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _two_panels(image_shape, extra_height=0.0):
    """A figure of two side-by-side panels shaped like the image (constrained layout), and its two axes."""
    rows, cols = image_shape[:2]
    panel_height = float(np.clip(PANEL_WIDTH_INCHES * rows / cols, 1.5, 12.0))
    figure = _pyplot().figure(figsize=(2 * PANEL_WIDTH_INCHES, panel_height + extra_height + 0.4),
                              layout="constrained", dpi=PICTURE_DPI)
    axes = figure.subplots(1, 2)
    for ax in axes:
        ax.set_axis_off()
    return figure, axes


def overlay(image, colors, alpha=0.5):
    """`colors` (H×W×3 uint8) blended over the input `image` with weight `alpha`."""
    return cv2.addWeighted(colors, alpha, image, 1.0 - alpha, 0.0)


def seg_picture(image, label, palette, class_names=None, title=""):
    """A matplotlib figure of a class map: the input with the classes overlaid | the classes in colour, above a
    legend naming the classes shown with their share of the pixels (the largest LEGEND_MAX_CLASSES)."""
    from matplotlib.patches import Patch

    ids, counts = np.unique(label[label != 255], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:LEGEND_MAX_CLASSES]

    def name(i):
        return class_names[i] if class_names and i < len(class_names) else f"class {i}"
    def share(count):
        percent = 100 * count / label.size
        return f"{percent:.1f}%" if percent >= 0.1 else "<0.1%"
    handles = [Patch(facecolor=palette[ids[i]] / 255.0, edgecolor="black", linewidth=0.3,
                     label=f"{name(int(ids[i]))} {share(counts[i])}") for i in order]
    legend_rows = -(-len(handles) // LEGEND_COLUMNS) + (len(ids) > len(order))
    figure, axes = _two_panels(image.shape, extra_height=0.25 * legend_rows)
    colors = palette[label]
    axes[0].imshow(overlay(image, colors), interpolation="nearest")
    axes[1].imshow(colors, interpolation="nearest")
    axes[0].set_title("input with prediction", fontsize=9)
    axes[1].set_title("prediction", fontsize=9)
    if handles:
        shown = f"the {len(order)} largest of {len(ids)} classes" if len(ids) > len(order) else None
        figure.legend(handles=handles, loc="outside lower center", ncol=LEGEND_COLUMNS, fontsize=8, frameon=False,
                      title=shown, title_fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def depth_picture(image, depth, title=""):
    """A matplotlib figure of a depth map in metres: the input | the depth (magma, near bright, 1st to 99th
    percentile) with a colour bar."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    low, high = np.percentile(valid, (1, 99)) if valid.size else (0.0, 1.0)
    figure, axes = _two_panels(image.shape)
    axes[0].imshow(image)
    shown = axes[1].imshow(depth, cmap="magma_r", vmin=low, vmax=max(high, low + 1e-3), interpolation="nearest")
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02, label="depth (m)")
    axes[0].set_title("input", fontsize=9)
    axes[1].set_title("predicted depth", fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def save_figure(figure, path):
    """Write a matplotlib figure as PNG atomically, then free it."""
    from ptsemseg.checkpoint import write_atomic

    try:
        write_atomic(path, lambda handle: figure.savefig(handle, format="png"))
    finally:
        _pyplot().close(figure)
