"""Training curves of one or several runs to PNG: one panel per quantity, one line per run.

`python plot_curves.py RUN... [--out curves.png] [--labels NAME...]`; a folder that is not a run stands for every
run below it. The trainer logs `train/loss` (and `train/loss_<task>` with several tasks) and `train/lr` to
TensorBoard every `print_interval` iterations, read here with TensorBoard's EventAccumulator; every validation
score (`<task>/<metric>`) comes from metrics.jsonl. A resumed run's events can hold an iteration twice (logged
before a kill, then again after the resume): the value written last counts. Runs are labelled by the shortest
tail of their paths that tells them apart.
"""
import argparse
import glob
import json
import math
import os
import warnings

from ptsemseg.checkpoint import write_atomic
from ptsemseg.errors import PtsemsegError
from ptsemseg.rundir import METRICS_NAME, check_output_file, find_run_dirs

EVENTS_PATTERN = "events.out.tfevents.*"


def is_run(path):
    """Whether folder `path` holds a run's metrics.jsonl or TensorBoard events."""
    return os.path.isfile(os.path.join(path, METRICS_NAME)) or bool(glob.glob(os.path.join(glob.escape(path),
                                                                                            EVENTS_PATTERN)))



def run_labels(run_dirs):
    """The shortest tails of the runs' paths that are all different (`deeplab_seg/20240101-...`)."""
    parts = [os.path.abspath(path).split(os.sep) for path in run_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def is_train_curve(tag):
    return tag in ("train/loss", "train/lr") or tag.startswith("train/loss_")


def read_train_scalars(run_dir):
    """{tag: (iterations, values)} of the loss and learning-rate scalars in the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    if not glob.glob(os.path.join(glob.escape(run_dir), EVENTS_PATTERN)):
        return {}
    accumulator = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    try:
        accumulator.Reload()
    except Exception as err:  # noqa: BLE001 - TensorBoard raises its own error types for damaged files
        raise PtsemsegError(f"cannot read the TensorBoard events in {run_dir}: {err}") from None
    series = {}
    for tag in filter(is_train_curve, accumulator.Tags()["scalars"]):
        by_step = {event.step: event.value for event in sorted(accumulator.Scalars(tag), key=lambda e: e.wall_time)}
        steps = sorted(by_step)
        series[tag] = (steps, [by_step[step] for step in steps])
    return series


def read_val_scores(run_dir):
    """{`val/<task>/<metric>`: (iterations, values)} of every scalar validation score in metrics.jsonl (null: NaN)."""
    from ptsemseg.tasks import TASKS

    path = os.path.join(run_dir, METRICS_NAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise PtsemsegError(f"{path} is not UTF-8 text") from None
    by_key = {}
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            iteration = int(record["iteration"])
        except (ValueError, KeyError, TypeError):
            warnings.warn(f"{path} line {number} is not a metrics record: skipped")
            continue
        for key, value in record.items():
            task, _, metric = key.partition("/")
            if task in TASKS and metric in TASKS.get(task).metric_names:
                by_key.setdefault(f"val/{key}", {})[iteration] = math.nan if value is None else float(value)
    return {key: (sorted(points), [points[i] for i in sorted(points)]) for key, points in by_key.items()}


def read_run(run_dir):
    """Every curve of a run: train loss and learning rate, then the validation scores."""
    series = {**read_train_scalars(run_dir), **read_val_scores(run_dir)}
    if not series:
        raise PtsemsegError(f"{run_dir}: no train/loss, train/lr or validation score to plot")
    return series


def quantity_order(name):
    """Panels: the total loss, the per-task losses, the learning rate, then validation scores as found."""
    if name == "train/loss":
        return 0
    return 1 if name.startswith("train/loss_") else 2 if name == "train/lr" else 3


def run_colors(n_runs):
    """One colour per run: matplotlib's default cycle up to 10 runs, tab20 up to 20, then repeating."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n_runs <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n_runs)]


def curve_figure(runs):
    """A matplotlib Figure of `runs` (label, series): one panel per quantity, one line (colour) per run."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    colors = run_colors(len(runs))
    names = list(dict.fromkeys(name for _, series in runs for name in series))
    names.sort(key=quantity_order)
    n_cols = min(3, len(names))
    n_rows = math.ceil(len(names) / n_cols)
    figure = Figure(figsize=(4.2 * n_cols, 2.9 * n_rows + 0.5), layout="constrained")
    for index, name in enumerate(names):
        axes = figure.add_subplot(n_rows, n_cols, index + 1)
        for color, (label, series) in zip(colors, runs):
            if name in series:
                steps, values = series[name]
                marker = "o" if name.startswith("val/") or len(steps) == 1 else None
                axes.plot(steps, values, color=color, marker=marker, markersize=3, linewidth=1.2,
                          label=label)
        axes.set_title(name, fontsize=10)
        axes.set_xlabel("iteration", fontsize=8)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
    handles = [Line2D([], [], color=color, label=label) for color, (label, _) in zip(colors, runs)]
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(runs), 3), fontsize=9)
    return figure


def main(argv=None):
    """The plot_curves command: read every run, draw the panels, write the PNG atomically."""
    parser = argparse.ArgumentParser(description="Plot loss, learning rate and every validation score of one or "
                                                 "several runs (metrics.jsonl and TensorBoard events) to PNG.")
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, or folders holding runs")
    parser.add_argument("--out", default="curves.png", help="PNG file to write (default: curves.png)")
    parser.add_argument("--labels", nargs="+", metavar="NAME", help="one legend name per run, in order")
    parser.add_argument("--dpi", type=int, default=100, help="resolution of the PNG (default: 100)")
    args = parser.parse_args(argv)
    check_output_file(args.out, "--out")
    found = (find_run_dirs(path, is_run, "metrics.jsonl or TensorBoard events") for path in args.runs)
    run_dirs = list(dict.fromkeys(os.path.normpath(run) for runs in found for run in runs))
    labels = args.labels or run_labels(run_dirs)
    if len(labels) != len(run_dirs):
        raise PtsemsegError(f"--labels names {len(labels)} runs, but there are {len(run_dirs)}: "
                            f"{', '.join(run_dirs)}")
    figure = curve_figure([(label, read_run(run_dir)) for label, run_dir in zip(labels, run_dirs)])
    write_atomic(args.out, lambda handle: figure.savefig(handle, format="png", dpi=args.dpi))
    print(f"curves of {len(run_dirs)} run{'s' if len(run_dirs) > 1 else ''}: {args.out}")
