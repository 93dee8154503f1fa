"""The generic trainer: run outputs, exact resume after kill -9, evaluation scripts and bad-input handling."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from ptsemseg import runtime
from ptsemseg.config import load_config
from ptsemseg.trainer import ResumableSampler, Trainer
from tests.conftest import REPO, run_script


def train(path, *overrides):
    trainer = Trainer(load_config(path, list(overrides)), path)
    return trainer, trainer.run()


@pytest.mark.parametrize("task, best_key", [("seg", "mean_iou"), ("depth", "abs_rel")])
def test_run_directory_contents(write_config, task, best_key):
    path = write_config(task=task)
    trainer, scores = train(path)
    files = os.listdir(trainer.run_dir)
    assert {"config.yaml", "last.pt", "best.pt", "metrics.jsonl"} <= set(files)
    assert any(name.startswith("events.out.tfevents") for name in files)
    lines = [json.loads(line) for line in open(os.path.join(trainer.run_dir, "metrics.jsonl"))]
    assert [line["iteration"] for line in lines] == [3, 6]
    assert best_key in lines[-1] and scores[best_key] == lines[-1][best_key]
    saved = yaml.safe_load(open(os.path.join(trainer.run_dir, "config.yaml")))
    assert saved["task"] == task and saved["training"]["train_iters"] == 6
    state = torch.load(os.path.join(trainer.run_dir, "last.pt"), weights_only=True)
    assert {"model_state", "optimizer_state", "scheduler_state", "scaler_state", "iteration", "best_metric",
            "rng_state", "data_position"} <= set(state)
    assert state["iteration"] == 6 and state["data_position"] == 12


def test_sampler_resumes_mid_stream():
    full = ResumableSampler(5, seed=1)
    stream = [next(it) for it in [iter(full)] for _ in range(12)]
    resumed = iter(ResumableSampler(5, seed=1, start=7))
    assert [next(resumed) for _ in range(5)] == stream[7:]
    assert sorted(index for index, _ in stream[:5]) == list(range(5))


def _last_iteration(path):
    try:
        return torch.load(path, weights_only=True)["iteration"]
    except Exception:  # noqa: BLE001 - the file may not exist yet
        return None


def test_exact_resume_after_kill(write_config, tmp_path):
    """Killed with SIGKILL mid-run and resumed, training ends bit-identical to an uninterrupted run."""
    training = {"train_iters": 40, "val_interval": 20, "checkpoint_interval": 2, "print_interval": 5,
                "lr_schedule": {"name": "poly_lr", "warmup_iters": 5},
                "augmentations": {"hflip": 0.5, "brightness": 0.2}}
    reference = write_config("reference.yaml", training=training)
    _, _ = train(reference)
    interrupted = write_config("interrupted.yaml", training=training)
    run_dir = str(tmp_path / "interrupted")
    process = subprocess.Popen([sys.executable, "train.py", "--config", interrupted], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads())))
    last = os.path.join(run_dir, "last.pt")
    deadline = time.time() + 300
    while _last_iteration(last) is None and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = _last_iteration(last)
    assert stopped_at is not None and stopped_at < 40, "the run was not interrupted mid-way"
    train(interrupted, f"training.resume={last}")

    expected = torch.load(os.path.join(tmp_path, "reference", "last.pt"), weights_only=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["iteration"] == expected["iteration"] == 40
    for key, tensor in expected["model_state"].items():
        assert torch.equal(tensor, resumed["model_state"][key]), key
    for group_id, group_state in expected["optimizer_state"]["state"].items():
        for name, value in group_state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["optimizer_state"]["state"][group_id][name]))
    assert expected["scheduler_state"]["last_epoch"] == resumed["scheduler_state"]["last_epoch"]


def test_evaluation_scripts_write_json(write_config, tmp_path):
    seg = write_config("seg.yaml")
    trainer, _ = train(seg)
    out = tmp_path / "seg.json"
    result = run_script("validate_seg.py", "--config", seg, "--model_path", os.path.join(trainer.run_dir, "best.pt"),
                        "--out-json", str(out))
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    assert "mean_iou" in scores and len(scores["per_class_iou"]) == 6
    assert "per-class IoU" in result.stdout and "floor" in result.stdout

    depth = write_config("depth.yaml", task="depth", data={"test_split": "test"})
    trainer, _ = train(depth)
    out = tmp_path / "depth.json"
    result = run_script("test_depth.py", "--config", depth, "--model_path", os.path.join(trainer.run_dir, "last.pt"),
                        "--out-json", str(out))
    assert result.returncode == 0, result.stderr
    assert {"abs_rel", "rmse", "delta1", "silog"} <= set(json.loads(out.read_text()))


def test_list_prints_every_kind():
    result = run_script("train.py", "--list")
    assert result.returncode == 0, result.stderr
    for kind in ("architectures:", "datasets:", "losses:", "optimizers:", "lr schedules:", "augmentations:"):
        assert kind in result.stdout
    assert "deeplab" in result.stdout and "synthetic" in result.stdout


def test_non_finite_loss_stops_and_keeps_checkpoint(write_config, tmp_path):
    path = write_config("nan.yaml", training={"train_iters": 8, "val_interval": 4, "print_interval": 4})
    trainer, _ = train(path)
    before = open(os.path.join(trainer.run_dir, "last.pt"), "rb").read()
    resumed = Trainer(load_config(path, ["training.train_iters=12", f"training.resume={trainer.run_dir}/last.pt"]),
                      path)
    resumed.loss_fn = lambda output, target: output.float().mean() * float("nan")
    with pytest.raises(Exception, match="non-finite loss"):
        resumed.run()
    assert open(os.path.join(trainer.run_dir, "last.pt"), "rb").read() == before


def assert_one_line_error(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def previous_run(write_config, tmp_path):
    """A finished run whose files must survive every failing command below."""
    path = write_config("previous.yaml", training={"train_iters": 2, "val_interval": 2})
    trainer, _ = train(path)
    snapshot = {name: open(os.path.join(trainer.run_dir, name), "rb").read() for name in os.listdir(trainer.run_dir)}
    yield path, trainer.run_dir
    assert {name: open(os.path.join(trainer.run_dir, name), "rb").read() for name in snapshot} == snapshot
    assert sorted(os.listdir(trainer.run_dir)) == sorted(snapshot)


def test_bad_inputs_fail_in_one_line(previous_run, tmp_path):
    path, run_dir = previous_run
    into_run = f"training.out_dir={run_dir}"
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  arch: deeplab\n  backbone: [resnet18\n")
    assert_one_line_error(run_script("train.py", "--config", str(tmp_path / "missing.yaml")), "config file not found")
    assert_one_line_error(run_script("train.py", "--config", str(broken)), "YAML syntax error", "line 4")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "model.arch=fcn9s", into_run),
                          "unknown arch 'fcn9s'", "closest:")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "training.loss={name: l2_loss}"),
                          "unknown loss 'l2_loss'", "closest:")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "training.optimizer={name: sgdd}"),
                          "unknown optimizer 'sgdd'", "closest: sgd")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "data.dataset=cityscape"),
                          "unknown dataset 'cityscape'", "closest: cityscapes")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "training.batch_size"), "bad override")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", "data.dataset=cityscapes", "data.length=",
                                     f"data.path={tmp_path / 'no_such_dir'}", into_run),
                          "no_such_dir", "README")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", into_run), "already holds a run")


def test_bad_checkpoints_fail_in_one_line(previous_run, tmp_path):
    path, run_dir = previous_run
    last = os.path.join(run_dir, "last.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(last, "rb").read()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    other_dir = f"training.out_dir={tmp_path / 'other'}"
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", f"training.resume={truncated}", other_dir),
                          "cannot read checkpoint", "truncated.pt")
    assert_one_line_error(run_script("validate_seg.py", "--config", path, "--model_path", str(garbage)),
                          "cannot read checkpoint", "garbage.pt")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts", f"training.resume={last}",
                                     "model.backbone=resnet34", other_dir), "does not fit")
    assert_one_line_error(run_script("validate_seg.py", "--config", path, "--model_path", last,
                                     "--opts", "model.arch=segnet", "model.backbone="), "arch=deeplab")
    assert_one_line_error(run_script("test_depth.py", "--config", path, "--model_path", last, "--opts", "task=depth"),
                          "task=seg")
    other_classes = torch.load(last, weights_only=True)
    other_classes["meta"]["n_outputs"] = 19
    torch.save(other_classes, tmp_path / "classes19.pt")
    assert_one_line_error(run_script("train.py", "--config", path, "--opts",
                                     f"training.resume={tmp_path / 'classes19.pt'}", other_dir), "n_outputs=19")


@pytest.mark.parametrize("device, native_bf16, amp, channels_last", [
    ("cpu", True, "bf16", True), ("cpu", False, False, False), ("cuda", False, "bf16", True)])
def test_auto_speed_modes_follow_the_device(monkeypatch, device, native_bf16, amp, channels_last):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: native_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    training = runtime.resolve_speed_modes({"amp": "auto", "channels_last": "auto"}, torch.device(device))
    assert training == {"amp": amp, "channels_last": channels_last}


@pytest.mark.parametrize("device, given, resolved", [
    ("cpu", {"amp": True, "channels_last": False}, {"amp": "bf16", "channels_last": False}),
    ("cuda", {"amp": True, "channels_last": True}, {"amp": "fp16", "channels_last": True}),
    ("cpu", {"amp": None, "channels_last": True}, {"amp": False, "channels_last": True}),
    ("cuda", {"amp": "bf16", "channels_last": False}, {"amp": "bf16", "channels_last": False})])
def test_explicit_speed_modes_are_kept(device, given, resolved):
    assert runtime.resolve_speed_modes(dict(given), torch.device(device)) == resolved


def test_run_directory_records_the_resolved_speed_modes(write_config, monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16_cpu", lambda: True)
    trainer, scores = train(write_config(training={"train_iters": 2, "val_interval": 2, "amp": "auto",
                                                   "channels_last": "auto"}))
    saved = yaml.safe_load(open(os.path.join(trainer.run_dir, "config.yaml")))
    assert saved["training"]["amp"] == "bf16" and saved["training"]["channels_last"] is True
    assert 0.0 <= scores["mean_iou"] <= 1.0
