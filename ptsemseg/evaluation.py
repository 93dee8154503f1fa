"""The evaluation loop: a model over a loader, every task of a run scored; the trainer's validation and the
evaluation scripts share it.

Scoring happens at the targets' native resolution (`testing.score_at: native`, the default): evaluation datasets
never resize targets (`keep_native_size`), the network runs on inputs resized to `data.img_rows × img_cols`
(ptsemseg.inference, with the whole / slide / scales / flip options) and its dense outputs come back at the frame's
size, bilinearly resized (logits, metres). `score_at: input` resizes targets to the network's size in the loader,
nearest-neighbour, as the seed projects scored. The metrics accumulate (a confusion matrix, per-image sums), so
memory is bounded by one batch whatever the split's length.
"""
import contextlib
import csv
import io
import time

import numpy as np
import torch
from tqdm import tqdm

from ptsemseg.build import build_dataset
from ptsemseg.checkpoint import write_atomic
from ptsemseg.device import autocast, to_device
from ptsemseg.inference import bilinear, infer


def network_size(cfg):
    """(rows, cols) the network runs at (scale 1), or None for each frame's own size (`data.img_rows: same`)."""
    data = cfg["data"]
    return None if data["img_rows"] == "same" else (data["img_rows"], data["img_cols"])


def evaluation_dataset(cfg, split, keys):
    """The dataset of an evaluation split: targets at their native size unless `testing.score_at: input`."""
    dataset = build_dataset(cfg, split, keys)
    return dataset.keep_native_size() if cfg["testing"]["score_at"] == "native" else dataset


class InferenceTimer:
    """Seconds spent in inference alone (no data loading, no scoring), CUDA synchronised around each batch."""

    def __init__(self, device):
        self.device = device
        self.seconds = 0.0
        self.images = 0

    @contextlib.contextmanager
    def measure(self, n_images):
        self._synchronize()
        start = time.perf_counter()
        yield
        self._synchronize()
        self.seconds += time.perf_counter() - start
        self.images += n_images

    def _synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def summary(self):
        per_image = 1000 * self.seconds / max(self.images, 1)
        return (f"inference time: {per_image:.1f} ms per image ({self.images} images on {self.device.type}; "
                "data loading and scoring excluded)")


@torch.no_grad()
def accumulate(model, loader, tasks, cfg, device, progress=False, timer=None, processes=None):
    """Run `model` over `loader` (items: lists of same-size batches) and feed every task's metric.

    Returns (metric accumulators by task name, the last batch, its predictions by task name); `timer`, an
    InferenceTimer, measures the inference. With `processes` (ptsemseg.distributed.Processes) of a distributed run,
    `loader` holds this process's share of the split and the accumulators returned hold every process's.
    """
    was_training = model.training
    model.eval()
    metrics = {name: task.metrics(device, cfg["testing"]) for name, task in tasks.items()}
    net_size = network_size(cfg)
    by_name = dict(tasks.items())

    def resize(name, output, size):  # each task resizes its own output (depth as disparity under pred_disp)
        task = by_name.get(name)
        return task.resize_output(output, size, cfg["testing"]) if task else bilinear(name, output, size)

    batch = predictions = None
    try:
        for batches in tqdm(loader, desc="eval", leave=False, disable=not progress):
            for batch in batches:
                batch = to_device(batch, device, cfg["training"]["channels_last"])
                n_images = next(value.shape[0] for value in batch.values() if isinstance(value, torch.Tensor))
                with timer.measure(n_images) if timer else contextlib.nullcontext():
                    outputs = infer(model, batch, cfg["testing"], net_size,
                                    forward_context=lambda: autocast(cfg, device), resize=resize)
                predictions = {}
                for name, task in tasks.items():
                    target = batch[task.target_key]
                    output = task.resize_output(outputs[name], target.shape[-2:], cfg["testing"])
                    predictions[name] = task.predict(output)
                    metrics[name].update(predictions[name], target)
                del outputs  # native-size outputs: freed before the next batch's are made
    finally:
        model.train(was_training)
    if processes is not None:
        metrics = processes.merge_metrics(metrics, lambda: {name: task.metrics(device, cfg["testing"])
                                                            for name, task in tasks.items()})
    return metrics, batch, predictions


def evaluate(model, loader, tasks, cfg, device, progress=False, timer=None, processes=None):
    """Score every task of the TaskSet `tasks` on `loader` (this process's share of it with `processes`).

    Returns (scores named `<task>/<metric>`, the last batch, the last predictions by task name).
    """
    metrics, batch, predictions = accumulate(model, loader, tasks, cfg, device, progress, timer, processes)
    return scores_of(metrics), batch, predictions


def scores_of(metrics):
    """The scores of metric accumulators by task name, named `<task>/<metric>`."""
    return {f"{name}/{key}": value for name, metric in metrics.items() for key, value in metric.compute().items()}


def save_confusion(confusion, class_names, stem, title):
    """Write `<stem>.csv` (pixel counts; rows: ground truth, columns: prediction, named by class) and `<stem>.png`
    (each row divided by its total, class names on both axes). Returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = confusion.cpu().numpy()
    n = len(counts)
    names = list(class_names or [str(i) for i in range(n)])
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["ground truth \\ prediction", *names])
    writer.writerows([name, *row] for name, row in zip(names, counts.tolist()))
    csv_path, png_path = f"{stem}.csv", f"{stem}.png"
    write_atomic(csv_path, lambda handle: handle.write(text.getvalue().encode("utf-8")))

    totals = counts.sum(1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    side = max(5.0, 0.4 * n + 2)
    figure, axes = plt.subplots(figsize=(side + 1, side))
    shown = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(n), names, rotation=90)
    axes.set_yticks(range(n), names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    axes.set_title(title)
    if n <= 25:
        for row in range(n):
            for col in range(n):
                if rates[row, col] >= 0.005:
                    axes.text(col, row, f"{rates[row, col]:.2f}", ha="center", va="center", fontsize=7,
                              color="white" if rates[row, col] > 0.5 else "black")
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="fraction of the ground-truth class")
    figure.tight_layout()
    write_atomic(png_path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
    return csv_path, png_path
