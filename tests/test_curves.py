"""plot_curves.py: loss, learning rate and validation scores of runs made by the trainer, drawn to PNG."""
import json
import os

import cv2
import pytest
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter

from ptsemseg.cli import train_main
from ptsemseg.curves import curve_figure, main, read_run, read_train_scalars, read_val_scores, run_labels
from ptsemseg.errors import PtsemsegError
from ptsemseg.optimizers import get_optimizer
from ptsemseg.schedulers import get_scheduler
from ptsemseg.tasks import TASKS
from tests.conftest import tiny_config

ITERS = 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short trainings (6 iterations, logged every 2, validated every 3) under runs/a and runs/b."""
    root = tmp_path_factory.mktemp("curves")
    for name, lr in (("a", 1.0e-3), ("b", 3.0e-4)):
        cfg = tiny_config(training={"train_iters": ITERS, "val_interval": 3, "print_interval": 2,
                                    "optimizer": {"name": "adam", "lr": lr}, "lr_schedule": {"name": "poly_lr"},
                                    "out_dir": str(root / "runs" / name)})
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        train_main(["--config", str(root / f"{name}.yaml")])
    return root / "runs"


def expected_lrs(base_lr, steps):
    """The poly schedule's learning rate after each of `steps` iterations, stepped as the trainer does."""
    optimizer = get_optimizer({"name": "adam", "lr": base_lr}, [torch.nn.Parameter(torch.zeros(1))])
    scheduler = get_scheduler(optimizer, {"name": "poly_lr"}, ITERS)
    lrs = {}
    for iteration in range(1, ITERS + 1):
        optimizer.step()
        scheduler.step()
        lrs[iteration] = optimizer.param_groups[0]["lr"]
    return [lrs[step] for step in steps]


def test_reads_loss_lr_and_every_validation_score(runs):
    series = read_run(str(runs / "a"))
    assert series["train/loss"][0] == [2, 4, 6]
    assert all(value > 0 for value in series["train/loss"][1])
    assert series["train/lr"][0] == [2, 4, 6]
    assert series["train/lr"][1] == pytest.approx(expected_lrs(1.0e-3, [2, 4, 6]), rel=1e-6)
    records = [json.loads(line) for line in (runs / "a" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(key for key in series if key.startswith("val/")) == sorted(
        f"val/seg/{metric}" for metric in TASKS.get("seg").metric_names)
    for metric in TASKS.get("seg").metric_names:
        assert series[f"val/seg/{metric}"] == ([3, 6], [record[f"seg/{metric}"] for record in records])


def test_plots_one_panel_per_quantity_and_one_line_per_run(runs, tmp_path):
    out = tmp_path / "curves.png"
    main([str(runs), "--out", str(out)])
    picture = cv2.imread(str(out))
    assert picture is not None and picture.shape[0] > 300 and picture.shape[1] > 600

    figure = curve_figure([(label, read_run(str(runs / label))) for label in ("a", "b")])
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["train/loss", "train/lr", *(f"val/seg/{m}" for m in TASKS.get("seg").metric_names)]
    for axes in figure.axes:
        assert [line.get_label() for line in axes.get_lines()] == ["a", "b"]
    lr_lines = figure.axes[1].get_lines()
    assert list(lr_lines[1].get_ydata()) == pytest.approx(expected_lrs(3.0e-4, [2, 4, 6]), rel=1e-6)


def test_labels_are_the_shortest_distinct_path_tails():
    assert run_labels(["r/x/run", "r/y/run"]) == ["x/run", "y/run"]
    assert run_labels(["runs/deeplab_seg/1", "runs/deeplab_seg/2"]) == ["1", "2"]
    assert run_labels(["only/one"]) == ["one"]


def test_resumed_run_keeps_the_value_written_last(tmp_path):
    """Iterations 4 and 6 logged before a kill and again after the resume: the later values count."""
    for offset, points in ((0, {2: 1.0, 4: 2.0, 6: 3.0}), (100, {4: 5.0, 6: 6.0})):
        writer = SummaryWriter(str(tmp_path), filename_suffix=f".{offset}")
        for step, value in points.items():
            writer.add_scalar("train/loss", value, step, walltime=1000.0 + offset + step)
            writer.add_scalar("train/images_per_s", 9.0, step, walltime=1000.0 + offset + step)
        writer.close()
    assert read_train_scalars(str(tmp_path)) == {"train/loss": ([2, 4, 6], [1.0, 5.0, 6.0])}


def test_torn_metrics_line_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 3, "seg/mean_iou": 0.5, "seg/per_class_iou": [0.5], '
                                            '"depth/n_images": 2, "depth/abs_rel": null}\n{"iteration": 6, "seg/me')
    with pytest.warns(UserWarning, match="line 2 is not a metrics record"):
        series = read_val_scores(str(tmp_path))
    assert list(series) == ["val/seg/mean_iou", "val/depth/abs_rel"]
    assert series["val/seg/mean_iou"] == ([3], [0.5])


@pytest.mark.parametrize("args, message", [
    (["missing"], "run directory not found"),
    (["empty"], r"no run directory \(metrics.jsonl or TensorBoard events\) in it"),
    (["run", "--labels", "x", "y"], "--labels names 2 runs, but there are 1"),
    (["run", "--out", "nowhere/c.png"], "directory .* does not exist"),
    (["binary"], "metrics.jsonl is not UTF-8 text"),
])
def test_bad_input_fails_in_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    os.mkdir("empty")
    os.mkdir("run")
    (tmp_path / "run" / "metrics.jsonl").write_text('{"iteration": 1, "seg/mean_iou": 0.5}\n')
    os.mkdir("binary")
    (tmp_path / "binary" / "metrics.jsonl").write_bytes(b"\xff\xfe{}")
    with pytest.raises(PtsemsegError, match=message):
        main(args)
    assert not (tmp_path / "curves.png").exists()
