"""Cross-task benchmark tables: the seed README's tables from configs or finished runs, in one command.

`python benchmark.py SOURCE... [--train] [--opts KEY=VALUE ...] [--out DIR]`. A source is a YAML config, a list
file (a config or run directory per line, optionally followed by KEY=VALUE overrides of its own; `#` starts a
comment; relative paths are read from the list file's folder) or a directory of run directories (config.yaml
and best.pt or last.pt, as train.py leaves them).

A config trains into `<runs>/<dataset>/<config stem>/`. With `--train`, a missing run starts, a run that stopped
early resumes from its last.pt and a finished one (metrics.jsonl holds its last iteration) is kept; a config
whose `testing.trained_model` names a checkpoint is evaluated from it, untrained. Every run is evaluated by the
evaluation command (`evaluate.py`) on `data.test_split` (`--split`) under its config's testing options, from
best.pt (or last.pt: `--checkpoint last`, or a run whose validation never gave a finite score).

Tables follow Semseg-MonoDepth's README: one per dataset, task, split and evaluation options, columns the
architectures in the order given, rows the resolution and batch size of training, then the metrics (seg: mIoU
in percent, one decimal; depth: rel, sq_rel, rms, log_rms, delta<1.25^k with three; other tasks: their scores).
`benchmark.md` holds every table; each also goes to `<table>.csv` (same cells, unrounded) and `<table>.png`
(one bar chart per metric). The `--opts` overrides (budgets, paths) apply to training and evaluation and win
over a list line's own. Everything is checked before the first run trains.
"""
import argparse
import copy
import csv
import dataclasses
import gc
import io
import json
import math
import os
import re
import shlex
import warnings

from ptsemseg.checkpoint import write_atomic
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.rundir import METRICS_NAME, check_writable_dir, find_run_dirs

# Column titles of the seed README (Semseg-MonoDepth) and of the architectures it did not have.
ARCH_TITLES = {"fcn8s": "FCN", "segnet": "SegNet", "frrnA": "FRRN A", "frrnB": "FRRN B", "deeplab": "DeepLab v2",
               "pspnet": "PSPNet", "dispnet": "DispNet", "fcrn": "FCRN", "fusenet": "FuseNet",
               "malleable25d": "Malleable 2.5D", "sagate": "SA-Gate", "adapnetpp": "AdapNet++", "ssma": "SSMA"}
TASK_TITLES = {"seg": "Segmentation", "depth": "Monocular depth estimation", "scene": "Scene classification"}
SPLIT_KEYS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Row:
    """One metric row: the seed README's label, the task's score and how the seed prints it."""

    label: str
    metric: str
    percent: bool = False

    def format(self, value):
        if value is None:
            return "n/a"
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3f}"

    def unrounded(self, value):
        return "" if value is None else repr(100 * value if self.percent else value)


SEED_ROWS = {
    "seg": (Row("mIoU", "mean_iou", percent=True),),
    "depth": (Row("rel", "abs_rel"), Row("sq_rel", "sq_rel"), Row("rms", "rmse"), Row("log_rms", "rmse_log"),
              Row("delta<1.25", "delta1"), Row("delta<1.25^2", "delta2"), Row("delta<1.25^3", "delta3")),
}


def task_rows(task):
    """The metric rows of a task's table: the seed's for seg and depth, every score for the others."""
    from ptsemseg.tasks import TASKS

    return SEED_ROWS.get(task) or tuple(Row(name, name) for name in TASKS.get(task).metric_names)


@dataclasses.dataclass
class Run:
    """One column source: a config to train and evaluate, or a finished run directory."""

    name: str  # unique: `<dataset>/<config stem>` or the run directory's path below the given folder
    cfg: dict  # resolved config, overrides applied
    config_path: str  # what evaluation reads with `overrides`
    overrides: list
    run_dir: str = None
    checkpoint: str = None  # fixed checkpoint (testing.trained_model); else chosen in run_dir after training
    resume: str = None  # with --train: "new" or the last.pt to continue from; None when nothing is to train

    @property
    def tasks(self):
        from ptsemseg.tasks import parse_task_spec

        return list(parse_task_spec(self.cfg["task"]))


def arch_title(model_cfg):
    """The seed's column title of a model config (aliases resolved; `frrn` by its model_type)."""
    from ptsemseg.models import MODELS

    builder = MODELS.get(model_cfg["arch"])
    if builder is MODELS.get("frrn"):
        return f"FRRN {model_cfg.get('model_type', 'B')}"
    return next((title for name, title in ARCH_TITLES.items() if name in MODELS and MODELS.get(name) is builder),
                model_cfg["arch"])


def read_list_file(path):
    """(source path, its own overrides) for every line of a list file; paths relative to the file's folder."""
    entries = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except UnicodeDecodeError:
        raise PtsemsegError(f"list file {path} is not UTF-8 text (a config needs the .yaml extension)") from None
    for number, line in enumerate(lines, 1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise PtsemsegError(f"list file {path} line {number}: {err}") from None
        if not words:
            continue
        if any("=" not in word for word in words[1:]):
            raise PtsemsegError(f"list file {path} line {number}: expected a path then KEY=VALUE overrides")
        entries.append((os.path.join(os.path.dirname(path), words[0]), words[1:]))
    return entries


def is_run_dir(path):
    """Whether `path` holds a run train.py left: its resolved config and a checkpoint."""
    return os.path.isfile(os.path.join(path, "config.yaml")) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("best.pt", "last.pt"))



def finished(run_dir, train_iters):
    """Whether the run in `run_dir` validated at its last iteration (the trainer always does)."""
    path = os.path.join(run_dir, METRICS_NAME)
    if not os.path.isfile(os.path.join(run_dir, "last.pt")) or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                if int(json.loads(line)["iteration"]) >= train_iters:
                    return True
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
    return False


def plan_runs(sources, opts, runs_dir, train):
    """Every run of the benchmark, each config loaded and checked; nothing is written.

    Fails in one line on a missing source, a bad config, two configs sharing a run directory, or (without
    `train`) configs not trained yet.
    """
    entries = []
    for source in sources:
        if os.path.isfile(source) and not source.endswith((".yaml", ".yml")):
            entries += read_list_file(source)
        else:
            entries.append((source, []))
    runs, untrained = [], []
    for path, own in entries:
        overrides = [*own, *opts]
        if os.path.isdir(path):
            for run_dir in find_run_dirs(path, is_run_dir, "config.yaml with best.pt or last.pt"):
                config = os.path.join(run_dir, "config.yaml")
                name = (os.path.relpath(run_dir, path) if run_dir != path
                        else os.path.basename(os.path.abspath(path)))
                runs.append(Run(name, load_config(config, overrides), config, overrides, run_dir=run_dir))
            continue
        if not os.path.isfile(path):
            raise PtsemsegError(f"benchmark source not found: {path}")
        cfg = load_config(path, overrides)
        stem = os.path.splitext(os.path.basename(path))[0]
        run = Run(f"{cfg['data']['dataset']}/{stem}", cfg, path, overrides)
        if cfg["testing"]["trained_model"]:
            run.checkpoint = cfg["testing"]["trained_model"]
            if not os.path.isfile(run.checkpoint):
                raise PtsemsegError(f"config {path}: testing.trained_model {run.checkpoint} not found")
        else:
            run.run_dir = os.path.join(runs_dir, run.name)
            if not finished(run.run_dir, cfg["training"]["train_iters"]):
                last = os.path.join(run.run_dir, "last.pt")
                run.resume = last if os.path.isfile(last) else "new"
                untrained.append(run.name)
        runs.append(run)
    if not runs:
        raise PtsemsegError("no config or run directory to benchmark")
    names = [run.name for run in runs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PtsemsegError(f"two sources share the run name {twice[0]}: give one config another file name")
    if untrained and not train:
        raise PtsemsegError(f"not trained yet: {', '.join(untrained)} (pass --train to train them into {runs_dir})")
    return runs


def check_data(runs, split_key):
    """Build every dataset split a run will read, so a missing root fails before the first run trains."""
    from ptsemseg.build import build_dataset, sample_keys

    for run in runs:
        splits = [split_key] + (["train_split", "val_split"] if run.resume else [])
        for key in dict.fromkeys(splits):
            build_dataset(run.cfg, run.cfg["data"][key], sample_keys(run.cfg))


def train_runs(runs):
    """Train (or resume) every run that needs it, in order, into its run directory."""
    from ptsemseg.trainer import Trainer

    for run in [run for run in runs if run.resume]:
        cfg = copy.deepcopy(run.cfg)
        cfg["training"]["out_dir"] = run.run_dir
        cfg["training"]["resume"] = None if run.resume == "new" else run.resume
        verb = "training" if run.resume == "new" else f"resuming {run.resume} of"
        print(f"{verb} {run.name} into {run.run_dir}")
        Trainer(cfg, run.config_path).run()
        run.resume = None
        gc.collect()


def choose_checkpoint(run, which):
    """The checkpoint of `run` to evaluate: best.pt (last.pt when no validation score was finite) or last.pt."""
    if run.checkpoint:
        return run.checkpoint
    best, last = (os.path.join(run.run_dir, name) for name in ("best.pt", "last.pt"))
    if which == "best" and os.path.isfile(best):
        return best
    if which == "best":
        warnings.warn(f"{run.name}: no best.pt (no finite validation score): evaluating last.pt")
    if not os.path.isfile(last):
        raise PtsemsegError(f"{run.name}: no last.pt in {run.run_dir}")
    return last


def evaluate_runs(runs, split, which, scores_dir):
    """Scores of every run on `data.<split>_split`, from the evaluation command; also kept as JSON files."""
    from ptsemseg.cli import evaluate_main

    os.makedirs(scores_dir, exist_ok=True)
    scores = {}
    for run in runs:
        path = os.path.join(scores_dir, re.sub(r"[^\w.-]+", "-", run.name) + ".json")
        evaluate_main("benchmark evaluation", split,
                      ["--config", run.config_path, "--model_path", choose_checkpoint(run, which), "--split", split,
                       "--out-json", path, "--opts", *run.overrides])
        with open(path, encoding="utf-8") as handle:
            scores[run.name] = json.load(handle)
        gc.collect()
    return scores


@dataclasses.dataclass
class Table:
    """One seed-style table: runs of one dataset, task and split evaluated alike; columns are runs."""

    dataset: str
    task: str
    split: str
    evaluation: dict  # the data and testing options the scores depend on (`data.layout`, `testing.crop`...)
    notes: list = dataclasses.field(default_factory=list)  # what the title says about `evaluation`
    slug: str = ""  # file name of its CSV and PNG
    columns: list = dataclasses.field(default_factory=list)  # titles
    setup: dict = dataclasses.field(default_factory=dict)  # label -> cells (resolution, batch size)
    values: dict = dataclasses.field(default_factory=dict)  # metric -> values (None: not finite)

    @property
    def title(self):
        task = TASK_TITLES.get(self.task, f"Task {self.task}")
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{task} on {self.dataset} {self.split} set{notes}"

    @property
    def rows(self):
        return task_rows(self.task)


def evaluation_options(cfg):
    """The options that change what a score means: the dataset's own (layout, ground truth, length...) and
    the testing ones; not the data root, the input size or the checkpoint."""
    data = {f"data.{key}": value for key, value in cfg["data"].items()
            if key not in ("dataset", "path", "train_split", "val_split", "test_split", "img_rows", "img_cols")}
    testing = {f"testing.{key}": value for key, value in cfg["testing"].items() if key != "trained_model"}
    return {**data, **testing}


def resolution(cfg):
    rows, cols = cfg["data"]["img_rows"], cfg["data"]["img_cols"]
    return "native" if rows == "same" else f"{rows}*{cols}"


def build_tables(runs, scores, split_key):
    """One table per dataset, task, split and evaluation options, columns in the runs' order.

    A title names the testing protocol (or a depth crop) when one is set, and the options that tell it from
    another table of the same dataset, task and split; duplicate architecture titles get the run's name.
    """
    tables = {}
    for run in runs:
        for task in run.tasks:
            evaluation = evaluation_options(run.cfg)
            key = (run.cfg["data"]["dataset"], task, run.cfg["data"][split_key],
                   json.dumps(evaluation, sort_keys=True, default=str))
            table = tables.setdefault(key, Table(*key[:3], evaluation))
            table.columns.append((arch_title(run.cfg["model"]), run.name))
            table.setup.setdefault("resolution", []).append(resolution(run.cfg))
            table.setup.setdefault("batch size", []).append(str(run.cfg["training"]["batch_size"]))
            for row in table.rows:
                table.values.setdefault(row.metric, []).append(scores[run.name].get(f"{task}/{row.metric}"))
    tables = list(tables.values())
    slugs = []
    for table in tables:
        options, described = table.evaluation, None
        if options.get("testing.protocol"):
            table.notes.append(f"protocol {options['testing.protocol']}")
            described = "testing.protocol"
        elif table.task == "depth" and options.get("testing.crop") not in (None, "none"):
            table.notes.append(f"{options['testing.crop']} crop")
            described = "testing.crop"
        alike = [other.evaluation for other in tables
                 if (other.dataset, other.task, other.split) == (table.dataset, table.task, table.split)]
        differing = [key for key in dict.fromkeys(key for other in alike for key in other)
                     if key != described and any(other.get(key) != options.get(key) for other in alike)]
        if differing:
            table.notes.append(", ".join(f"{key} {'none' if options.get(key) is None else options[key]}"
                                         for key in differing))
        slug = re.sub(r"[^\w.-]+", "_", f"{table.dataset}_{table.task}_{table.split}")
        slugs.append(slug)
        table.slug = slug if slugs.count(slug) == 1 else f"{slug}_{slugs.count(slug)}"
        titles = [title for title, _ in table.columns]
        table.columns = [title if titles.count(title) == 1 else f"{title} ({name})" for title, name in table.columns]
    return tables


def markdown_table(table):
    """The table as the seed README prints it: a blank corner, centred columns, padded cells."""
    cells = [["", *table.columns]]
    cells += [[label, *values] for label, values in table.setup.items()]
    cells += [[row.label, *(row.format(value) for value in table.values[row.metric])] for row in table.rows]
    widths = [max(len(line[i]) for line in cells) + 2 for i in range(len(cells[0]))]
    widths[1:] = [width + 2 for width in widths[1:]]

    def line(values):
        return "|" + "|".join(f" {values[0]:<{widths[0] - 1}}" if i == 0 else f"{value:^{widths[i]}}"
                              for i, value in enumerate(values)) + "|"

    rule = "|" + "-" * widths[0] + "|" + "|".join(":" + "-" * (width - 2) + ":" for width in widths[1:]) + "|"
    return "\n".join([line(cells[0]), rule, *(line(values) for values in cells[1:])])


def csv_table(table):
    """The same cells as CSV, numbers unrounded in the Markdown's units."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["", *table.columns])
    writer.writerows([label, *values] for label, values in table.setup.items())
    writer.writerows([row.label, *(row.unrounded(value) for value in table.values[row.metric])] for row in table.rows)
    return text.getvalue()


def bar_chart(table):
    """A matplotlib Figure: one bar chart per metric row, one bar per column, arrows saying which way is better."""
    from matplotlib.figure import Figure

    from ptsemseg.tasks import TASKS

    lower = TASKS.get(table.task).lower_is_better
    n_panels = len(table.rows)
    n_cols = min(n_panels, 4)
    n_rows = math.ceil(n_panels / n_cols)
    width = max(3.2, 0.55 * len(table.columns) + 1.2)
    figure = Figure(figsize=(width * n_cols, 3.4 * n_rows + 0.5), layout="constrained")
    figure.suptitle(table.title)
    colors = [f"C{i % 10}" for i in range(len(table.columns))]
    for index, row in enumerate(table.rows):
        axes = figure.add_subplot(n_rows, n_cols, index + 1)
        values = [math.nan if value is None else (100 * value if row.percent else value)
                  for value in table.values[row.metric]]
        bars = axes.bar(range(len(values)), values, color=colors)
        axes.bar_label(bars, labels=[row.format(value) for value in table.values[row.metric]], fontsize=7)
        axes.set_xticks(range(len(values)), table.columns, rotation=35, ha="right", fontsize=8)
        axes.set_title(f"{row.label} {'↓' if row.metric in lower else '↑'}", fontsize=10)
        axes.margins(y=0.15)
    return figure


def write_outputs(tables, out_dir):
    """benchmark.md (every table, its chart linked), and per table its CSV and PNG; each written atomically."""
    os.makedirs(out_dir, exist_ok=True)
    parts = []
    for table in tables:
        csv_path, png_path = (os.path.join(out_dir, f"{table.slug}.{ext}") for ext in ("csv", "png"))
        write_atomic(csv_path, lambda handle, table=table: handle.write(csv_table(table).encode("utf-8")))
        figure = bar_chart(table)
        write_atomic(png_path, lambda handle, figure=figure: figure.savefig(handle, format="png", dpi=110))
        parts.append(f"{table.title}:\n\n{markdown_table(table)}\n\n![{table.title}]({table.slug}.png)\n")
    text = "\n".join(parts)
    write_atomic(os.path.join(out_dir, "benchmark.md"), lambda handle: handle.write(text.encode("utf-8")))
    return text


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Train what is missing, evaluate every run and write the seed "
                                                 "README's tables (Markdown, CSV, PNG bar charts).")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="a YAML config, a list file (a config or run directory per line, then its own "
                             "KEY=VALUE overrides) or a directory of run directories")
    parser.add_argument("--out", default=os.path.join("runs", "benchmark"),
                        help="folder of the tables and charts (default: runs/benchmark)")
    parser.add_argument("--runs", help="folder of the configs' run directories (default: OUT/runs)")
    parser.add_argument("--train", action="store_true",
                        help="train the configs not trained yet and resume those that stopped early")
    parser.add_argument("--split", choices=SPLIT_KEYS, default="test",
                        help="evaluate on data.<split>_split (default: test)")
    parser.add_argument("--checkpoint", choices=("best", "last"), default="best",
                        help="which checkpoint of a run to evaluate (default: best)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run, training and evaluation (e.g. training.train_iters=2)")
    return parser.parse_args(argv)


def main(argv=None):
    """The benchmark command: plan and check everything, train what is missing, evaluate, write the tables."""
    args = parse_args(argv)
    runs_dir = args.runs or os.path.join(args.out, "runs")
    check_writable_dir(args.out, "--out")
    runs = plan_runs(args.sources, args.opts, runs_dir, args.train)
    if any(run.resume for run in runs):
        check_writable_dir(runs_dir, "--runs")
    split_key = f"{args.split}_split"
    check_data(runs, split_key)
    train_runs(runs)
    scores = evaluate_runs(runs, args.split, args.checkpoint, os.path.join(args.out, "scores"))
    tables = build_tables(runs, scores, split_key)
    print(write_outputs(tables, args.out))
    print(f"tables: {os.path.join(args.out, 'benchmark.md')}")
