"""Several tasks in one run: joint seg + depth and seg + scene through the trainer and the evaluation command."""
import json
import os

import pytest
import torch

from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.trainer import Trainer
from tests.conftest import run_script


def train(path, *overrides):
    trainer = Trainer(load_config(path, list(overrides)), path)
    return trainer, trainer.run()


def read_lines(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def test_joint_seg_depth_validates_both_and_keeps_the_best_by_the_criterion(write_config, tmp_path):
    path = write_config("joint.yaml", task={"seg": 1.0, "depth": 0.5},
                        training={"train_iters": 9, "val_interval": 3, "best_metric": "depth/abs_rel",
                                  "loss": {"depth": {"name": "l1_loss"}}})
    trainer, scores = train(path)
    lines = read_lines(trainer.run_dir)
    assert [line["iteration"] for line in lines] == [3, 6, 9]
    for line in lines:
        assert {"seg/mean_iou", "seg/per_class_iou", "depth/abs_rel", "depth/delta1"} <= set(line)
    best_line = min(lines, key=lambda line: line["depth/abs_rel"])
    best = torch.load(os.path.join(trainer.run_dir, "best.pt"), weights_only=True)
    assert best["iteration"] == best_line["iteration"] and best["best_metric"] == best_line["depth/abs_rel"]
    assert best["meta"]["tasks"] == {"seg": 6, "depth": 1}

    out = tmp_path / "joint.json"
    result = run_script("evaluate.py", "--config", path, "--model_path", os.path.join(trainer.run_dir, "best.pt"),
                        "--out-json", str(out))
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(out.read_text())
    for key in ("seg/mean_iou", "depth/abs_rel"):
        assert evaluated[key] == pytest.approx(best_line[key], rel=1e-4), key
    assert "seg/per_class_iou:" in result.stdout and "floor" in result.stdout


def test_seg_with_scene_classification(write_config):
    path = write_config("scene.yaml", task={"seg": 1.0, "scene": 0.1})
    trainer, scores = train(path)
    assert 0.0 <= scores["scene/accuracy"] <= 1.0 and 0.0 <= scores["seg/mean_iou"] <= 1.0
    assert trainer.tasks.meta()["scene"] == trainer.train_set.n_scene_classes


def test_a_task_target_the_dataset_cannot_give_fails_before_any_work(write_config, tmp_path):
    cityscapes = ["data.dataset=cityscapes", "data.length=", f"data.path={tmp_path}"]
    with pytest.raises(PtsemsegError, match="task scene needs 'scene'; dataset cityscapes gives image, label, depth"):
        load_config(write_config("scene.yaml", task={"seg": 1.0, "scene": 1.0}), cityscapes)
