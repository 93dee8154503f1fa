"""`train.py --sweep`: one run per value, each in its own directory, and the table of their final scores."""
import csv
import os

import pytest
import yaml

from ptsemseg.errors import PtsemsegError
from ptsemseg.sweep import parse_sweep
from tests.conftest import run_script


def test_range_includes_both_ends():
    assert parse_sweep("task.scene=0.004:0.01:5") == ("task.scene", [0.004, 0.0055, 0.007, 0.0085, 0.01])
    assert parse_sweep("training.optimizer.lr=[1.0e-3, 3.0e-4]") == ("training.optimizer.lr", [1.0e-3, 3.0e-4])
    assert parse_sweep("seed=2:2:1") == ("seed", [2.0])


@pytest.mark.parametrize("spec", ["task.scene", "task.scene=0.1:0.2", "task.scene=a:b:3", "task.scene=0.1:0.2:0",
                                  "=1:2:3", "task.scene=[]", "task.scene=[1, 2"])
def test_bad_sweeps_fail_in_one_line(spec):
    with pytest.raises(PtsemsegError, match="bad sweep"):
        parse_sweep(spec)


def test_sweep_trains_each_lambda_in_its_own_directory_and_tables_the_scores(write_config, tmp_path):
    config = write_config(task={"seg": 1.0, "scene": 0.001}, training={"train_iters": 2, "val_interval": 2},
                          data={"length": 4})
    out = tmp_path / "sweep"
    result = run_script("train.py", "--config", config, "--opts", f"training.out_dir={out}",
                        "--sweep", "task.scene=0.001:0.003:3")
    assert result.returncode == 0, result.stderr[-2000:]
    names = ["task.scene=0.001", "task.scene=0.002", "task.scene=0.003"]
    for name, weight in zip(names, (0.001, 0.002, 0.003)):
        saved = yaml.safe_load((out / name / "config.yaml").read_text())
        assert saved["task"] == {"seg": 1.0, "scene": weight}
        assert (out / name / "last.pt").is_file()
    with open(out / "sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["task.scene"]) for row in rows] == [0.001, 0.002, 0.003]
    assert all(row["seg/mean_iou"] and row["scene/accuracy"] for row in rows)
    assert [os.path.basename(row["run_dir"]) for row in rows] == names
    markdown = (out / "sweep.md").read_text().splitlines()
    assert len(markdown) == 5 and "seg/mean_iou" in markdown[0] and "scene/accuracy" in markdown[0]


def test_a_bad_swept_value_fails_before_anything_is_written(write_config, tmp_path):
    config = write_config(training={"train_iters": 2, "val_interval": 2})
    out = tmp_path / "sweep"
    result = run_script("train.py", "--config", config, "--opts", f"training.out_dir={out}",
                        "--sweep", "training.batch_size=[2, 0]")
    assert result.returncode == 2
    assert "training.batch_size: must be a positive integer" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
