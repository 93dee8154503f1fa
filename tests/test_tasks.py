"""The task registry: every task's head, loss, metrics, criterion and picture; task sets and their losses."""
import types

import numpy as np
import pytest
import torch

from ptsemseg.checkpoint import check_compatible
from ptsemseg.errors import PtsemsegError
from ptsemseg.losses import TaskSetLoss
from ptsemseg.models.heads import DENSE, IMAGE
from ptsemseg.tasks import TASKS, TaskSet, parse_task_spec

DATASET = types.SimpleNamespace(n_classes=4, class_names=["a", "b", "c", "d"], n_scene_classes=3,
                                scene_names=["kitchen", "office", "bath"])
N, H, W = 2, 6, 8


def seg_case():
    target = torch.randint(0, 4, (N, H, W))
    target[0, 0, 0] = 255
    perfect = torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float() * 10
    return target, perfect, {"mean_iou": 1.0, "overall_acc": 1.0}


def depth_case():
    target = torch.rand(N, 1, H, W) * 5 + 0.5
    target[0, 0, 0, 0] = 0.0
    return target, target.clone(), {"abs_rel": 0.0, "delta1": 1.0}


def scene_case():
    target = torch.tensor([2, 0])
    return target, torch.nn.functional.one_hot(target, 3).float() * 10, {"accuracy": 1.0, "mean_class_acc": 1.0}


# task -> (channels for DATASET, head kind, a (target, perfect output, expected scores) maker)
TASK_CASES = {
    "seg": (4, DENSE, seg_case),
    "depth": (1, DENSE, depth_case),
    "scene": (3, IMAGE, scene_case),
}


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_heads_loss_metrics_criterion_and_picture(name):
    assert name in TASK_CASES, f"task '{name}' has no test case"
    channels, kind, make = TASK_CASES[name]
    task = TASKS.get(name)(DATASET)
    head = task.head()
    assert (head.name, head.channels, head.kind) == (name, channels, kind)
    target, perfect, expected = make()
    assert task.best_metric in task.metric_names and set(expected) <= set(task.metric_names)

    metrics = task.metrics(testing={"min_depth": 1e-3, "max_depth": 80.0})
    metrics.update(task.predict(perfect), target)
    scores = metrics.compute()
    assert set(task.metric_names) <= set(scores)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-6), key

    output = perfect.clone().requires_grad_()
    loss_fn = TaskSetLoss({name: 1.0}, {name: task}, None)
    total, parts = loss_fn({name: output}, {task.target_key: target})
    assert torch.isfinite(total) and set(parts) == {name}
    total.backward()
    assert output.grad is not None and torch.isfinite(output.grad).all()

    picture = task.draw(target[0], task.predict(perfect)[0], (H, W))
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[0] == H and picture.shape[2] == 3


def test_task_spec_and_best_metric():
    assert parse_task_spec("seg") == {"seg": 1.0}
    assert parse_task_spec({"seg": 1, "depth": 0.5}) == {"seg": 1.0, "depth": 0.5}
    for bad, message in (("segmentation", "unknown task 'segmentation'"), ({}, "a mapping of names"),
                         ({"seg": -1}, "number ≥ 0"), ({"seg": "x"}, "number ≥ 0"), (3, "a mapping of names")):
        with pytest.raises(PtsemsegError, match=message):
            parse_task_spec(bad)
    tasks = TaskSet({"seg": 1.0, "depth": 0.5}, DATASET)
    assert tasks.best_key == "seg/mean_iou" and tasks.meta() == {"seg": 4, "depth": 1}
    assert tasks.target_keys() == ("label", "depth")
    assert tasks.is_better({"seg/mean_iou": 0.5}, None) and not tasks.is_better({"seg/mean_iou": 0.4}, 0.5)
    assert not tasks.is_better({"seg/mean_iou": float("nan")}, None)
    by_error = TaskSet({"seg": 1.0, "depth": 0.5}, DATASET, "depth/rmse")
    assert by_error.is_better({"depth/rmse": 0.4}, 0.5) and not by_error.is_better({"depth/rmse": 0.6}, 0.5)
    by_delta = TaskSet("depth", DATASET, "depth/delta1")
    assert by_delta.is_better({"depth/delta1": 0.9}, 0.8)
    for best, message in (("scene/accuracy", "a task of this run"), ("depth/abs", "no score 'abs'"),
                          ("mean_iou", "'<task>/<metric>'")):
        with pytest.raises(PtsemsegError, match=message):
            TaskSet({"seg": 1.0, "depth": 0.5}, DATASET, best)


def test_task_needs_what_the_dataset_gives():
    with pytest.raises(PtsemsegError, match="task scene needs scene labels"):
        TASKS.get("scene")(types.SimpleNamespace(n_classes=4))
    with pytest.raises(PtsemsegError, match="task seg needs class labels"):
        TASKS.get("seg")(types.SimpleNamespace(n_classes=None))


def test_task_set_loss_weights_tasks_and_named_auxiliary_outputs():
    tasks = TaskSet({"seg": 1.0, "depth": 0.5}, DATASET)
    target = {"label": torch.zeros(1, 2, 2, dtype=torch.int64), "depth": torch.full((1, 1, 2, 2), 2.0)}
    seg_main = torch.zeros(1, 4, 2, 2)
    seg_aux = torch.zeros(1, 4, 1, 1)
    depth_main = torch.full((1, 1, 2, 2), 3.0)
    outputs = {"seg": seg_main, "depth": depth_main, "seg/aux": seg_aux}
    l1 = {"depth": {"name": "l1_loss"}}
    total, parts = TaskSetLoss(tasks.weights, tasks.tasks, l1)(outputs, target)
    ln4 = float(np.log(4))
    assert parts["seg"].item() == pytest.approx(ln4 * 1.4)  # aux weighs 0.4 by default
    assert parts["depth"].item() == pytest.approx(1.0)
    assert total.item() == pytest.approx(ln4 * 1.4 + 0.5)
    total, parts = TaskSetLoss(tasks.weights, tasks.tasks, l1, {"seg/aux": 0.1})(outputs, target)
    assert parts["seg"].item() == pytest.approx(ln4 * 1.1)
    seed_style = {"seg": {"name": "cross_entropy", "scale_weight": [1.0, 0.25]}, **l1}
    _, parts = TaskSetLoss(tasks.weights, tasks.tasks, seed_style)(outputs, target)
    assert parts["seg"].item() == pytest.approx(ln4 * 1.25)
    for loss_cfg, aux, message in (
            ({"name": "cross_entropy"}, None, "give one loss per task"),
            ({"sceen": {"name": "cross_entropy"}}, None, "'sceen' is not a task of this run"),
            (None, {"scene/aux": 0.4}, "'scene/aux' is not '<task>/<output>'"),
            (None, {"seg/aux": -1}, "must be a number ≥ 0")):
        with pytest.raises(PtsemsegError, match=message):
            TaskSetLoss(tasks.weights, tasks.tasks, loss_cfg, aux)


def test_checkpoint_compatibility_by_tasks():
    state = {"meta": {"arch": "deeplab", "tasks": {"seg": 4, "depth": 1}}}
    check_compatible(state, "x.pt", "deeplab", {"seg": 4, "depth": 1})
    with pytest.raises(PtsemsegError, match=r"trained for seg \(4 outputs\), depth \(1 outputs\), this config "
                                            r"needs seg \(5 outputs\)"):
        check_compatible(state, "x.pt", "deeplab", {"seg": 5})
    with pytest.raises(PtsemsegError, match="arch=deeplab"):
        check_compatible(state, "x.pt", "pspnet", {"seg": 4, "depth": 1})
    older = {"meta": {"arch": "deeplab", "task": "seg", "n_outputs": 4}}
    check_compatible(older, "x.pt", "deeplab", {"seg": 4})
    with pytest.raises(PtsemsegError, match="trained for seg"):
        check_compatible(older, "x.pt", "deeplab", {"depth": 1})
