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

from ptsemseg import device as device_module
from ptsemseg import evaluation
from ptsemseg import trainer as trainer_module
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.trainer import ResumableSampler, Trainer
from tests.conftest import REPO, run_script, run_scripts


def train(path, *overrides):
    trainer = Trainer(load_config(path, list(overrides)), path)
    return trainer, trainer.run()


@pytest.mark.parametrize("task, best_key", [("seg", "seg/mean_iou"), ("depth", "depth/abs_rel")])
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


FUSENET = {"arch": "fusenet", "inputs": ["image", "depth"], "backbone": None}
RESUME_CASES = [pytest.param("seg", {}, 2, id="seg"), pytest.param({"seg": 1.0, "depth": 0.5}, {}, 2, id="seg+depth"),
                # 44 M parameters: fewer checkpoint writes, and minutes of CPU: with the slow checks
                pytest.param({"seg": 1.0, "scene": 0.001}, FUSENET, 10, id="fusenet seg+scene",
                             marks=pytest.mark.slow)]


@pytest.mark.parametrize("task, model, every", RESUME_CASES)
def test_exact_resume_after_kill(write_config, tmp_path, task, model, every):
    """Killed with SIGKILL after its first validation and resumed, training ends bit-identical to an uninterrupted
    run, with the same metrics.jsonl, for one task, for several, and for an RGB-D model with its scene head. The
    killed run takes last.pt by wall-clock time (checkpoint_minutes), the reference every 2 iterations: a
    checkpoint's content does not depend on when it is written."""
    model = {"model": model} if model else {}
    training = {"train_iters": 40, "val_interval": 20, "checkpoint_interval": every, "print_interval": 5,
                "lr_schedule": {"name": "poly_lr", "warmup_iters": 5},
                "augmentations": {"hflip": 0.5, "brightness": 0.2}}
    reference = write_config("reference.yaml", task=task, training=training, **model)
    _, _ = train(reference)
    interrupted = write_config("interrupted.yaml", task=task, **model,
                               training={**training, "checkpoint_interval": 20, "checkpoint_minutes": 0.002})
    run_dir = str(tmp_path / "interrupted")
    process = subprocess.Popen([sys.executable, "train.py", "--config", interrupted], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads())))
    last = os.path.join(run_dir, "last.pt")
    deadline = time.time() + 300
    while (_last_iteration(last) or 0) <= 20 and time.time() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = _last_iteration(last)
    assert stopped_at is not None and 20 < stopped_at < 40, "the run was not interrupted mid-way"
    train(interrupted, f"training.resume={last}")
    assert read_metrics(run_dir) == read_metrics(tmp_path / "reference")

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
    assert "seg/mean_iou" in scores and len(scores["seg/per_class_iou"]) == 6
    assert "seg/per_class_iou:" in result.stdout and "floor" in result.stdout

    depth = write_config("depth.yaml", task="depth", data={"test_split": "test"})
    trainer, _ = train(depth)
    out = tmp_path / "depth.json"
    result = run_script("test_depth.py", "--config", depth, "--model_path", os.path.join(trainer.run_dir, "last.pt"),
                        "--out-json", str(out))
    assert result.returncode == 0, result.stderr
    assert {"depth/abs_rel", "depth/rmse", "depth/delta1", "depth/silog"} <= set(json.loads(out.read_text()))


def test_list_prints_every_kind():
    result = run_script("train.py", "--list")
    assert result.returncode == 0, result.stderr
    for kind in ("architectures:", "datasets:", "losses:", "optimizers:", "lr schedules:", "augmentations:"):
        assert kind in result.stdout
    assert "deeplab" in result.stdout and "synthetic" in result.stdout


def read_metrics(run_dir):
    """metrics.jsonl's records, parsed as strict JSON (a bare NaN or Infinity fails)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line, parse_constant=refuse) for line in handle]


def test_resume_drops_metrics_past_the_checkpoint(write_config, tmp_path):
    """A kill between writing a metrics record and renaming last.pt leaves records past the checkpoint: the resumed
    run replays those iterations, and metrics.jsonl holds each iteration once."""
    path = write_config("metrics.yaml", training={"train_iters": 3, "val_interval": 3})
    trainer, _ = train(path)
    last = os.path.join(trainer.run_dir, "last.pt")
    at_3 = open(last, "rb").read()
    train(path, "training.train_iters=6", f"training.resume={last}")
    assert [record["iteration"] for record in read_metrics(trainer.run_dir)] == [3, 6]
    with open(os.path.join(trainer.run_dir, "metrics.jsonl"), "a", encoding="utf-8") as handle:
        handle.write('{"iteration": 6, "mean_')  # torn by the kill
    open(last, "wb").write(at_3)  # as if killed before last.pt at iteration 6 was renamed into place
    train(path, "training.train_iters=6", f"training.resume={last}")
    assert [record["iteration"] for record in read_metrics(trainer.run_dir)] == [3, 6]
    assert not [name for name in os.listdir(trainer.run_dir) if name.endswith(".tmp")]


def test_non_finite_metrics_are_written_as_null(write_config, monkeypatch):
    def nan_scores(*args, **kwargs):
        scores, batch, prediction = evaluation.evaluate(*args, **kwargs)
        return {**scores, "seg/mean_iou": float("nan"), "seg/per_class_iou": [float("inf")] * 6}, batch, prediction

    monkeypatch.setattr(trainer_module, "evaluate", nan_scores)
    trainer, _ = train(write_config(training={"train_iters": 2, "val_interval": 2}))
    (record,) = read_metrics(trainer.run_dir)
    assert record["seg/mean_iou"] is None and record["seg/per_class_iou"] == [None] * 6
    assert record["seg/overall_acc"] is not None


def test_non_finite_loss_stops_and_keeps_checkpoint(write_config, tmp_path):
    path = write_config("nan.yaml", training={"train_iters": 8, "val_interval": 4, "print_interval": 4})
    trainer, _ = train(path)
    before = open(os.path.join(trainer.run_dir, "last.pt"), "rb").read()
    resumed = Trainer(load_config(path, ["training.train_iters=12", f"training.resume={trainer.run_dir}/last.pt"]),
                      path)
    resumed.loss_fn = lambda outputs, batch: (outputs["seg"].float().mean() * float("nan"), {})
    with pytest.raises(Exception, match="non-finite loss"):
        resumed.run()
    assert open(os.path.join(trainer.run_dir, "last.pt"), "rb").read() == before


def test_non_finite_weights_stop_before_validation(write_config, tmp_path):
    """SGD at lr 1e6: the weights turn NaN; the run stops before the first validation, so no best.pt, last.pt
    or metrics record ever holds them."""
    path = write_config("sgd.yaml", training={"optimizer": {"name": "sgd", "lr": 1.0e6}, "print_interval": 5,
                                              "val_interval": 3})
    result = run_script("train.py", "--config", path)
    assert_error_on_own_line(result, "non-finite")
    assert not {"last.pt", "best.pt", "metrics.jsonl"} & set(os.listdir(tmp_path / "sgd"))


def test_non_finite_buffers_stop_and_keep_checkpoints(write_config, tmp_path):
    """Finite loss but an inf BN running statistic (as Adam at lr 1e6 produces): the run stops naming the buffer,
    and last.pt, best.pt and metrics.jsonl stay as the last good state left them."""
    path = write_config("bn.yaml", training={"train_iters": 4, "val_interval": 4})
    trainer, _ = train(path)
    kept = {name: open(os.path.join(trainer.run_dir, name), "rb").read()
            for name in ("last.pt", "best.pt", "metrics.jsonl")}
    resumed = Trainer(load_config(path, ["training.train_iters=8", f"training.resume={trainer.run_dir}/last.pt"]),
                      path)
    name, batch_norm = next((name, module) for name, module in resumed.model.named_modules()
                            if isinstance(module, torch.nn.BatchNorm2d))
    step = resumed.scheduler.step

    def step_then_corrupt():
        step()
        batch_norm.running_var.fill_(float("inf"))

    resumed.scheduler.step = step_then_corrupt
    with pytest.raises(PtsemsegError, match=f"non-finite values in {name}.running_var at iteration 8"):
        resumed.run()
    assert {name: open(os.path.join(trainer.run_dir, name), "rb").read() for name in kept} == kept


def assert_one_line_error(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_error_on_own_line(result, *fragments):
    """A failure after training started: one error line, exit 2, no traceback, and the message on a line of its own
    (not glued to the progress bar, whose redraws are separated by carriage returns)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.split("\n") if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


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
    train = ["train.py", "--config", path, "--opts"]
    cases = [
        (["train.py", "--config", str(tmp_path / "missing.yaml")], ["config file not found"]),
        (["train.py", "--config", str(broken)], ["YAML syntax error", "line 4"]),
        ([*train, "model.arch=fcn9s", into_run], ["unknown arch 'fcn9s'", "closest:"]),
        ([*train, "training.loss={name: l2_loss}"], ["unknown loss 'l2_loss'", "closest:"]),
        ([*train, "training.optimizer={name: sgdd}"], ["unknown optimizer 'sgdd'", "closest: sgd"]),
        ([*train, "data.dataset=cityscape"], ["unknown dataset 'cityscape'", "closest: cityscapes"]),
        ([*train, "training.batch_size"], ["bad override"]),
        ([*train, "data.dataset=cityscapes", "data.length=", f"data.path={tmp_path / 'no_such_dir'}", into_run],
         ["no_such_dir", "README"]),
        ([*train, into_run], ["already holds a run"]),
    ]
    for (_, fragments), result in zip(cases, run_scripts([command for command, _ in cases])):
        assert_one_line_error(result, *fragments)


def test_bad_inputs_fail_before_writing(previous_run, tmp_path, monkeypatch):
    """Each fails in one line naming the culprit, writes no new run directory and leaves the previous run as it was
    (the fixture checks), also when it resumes that run."""
    path, run_dir = previous_run
    resume = f"training.resume={os.path.join(run_dir, 'last.pt')}"
    new_dir = tmp_path / "new"
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    text = open(path, encoding="utf-8").read()
    seed_line = text.splitlines().index("seed: 3") + 1
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(text.encode().replace(b"seed: 3", b"seed: 3 # caf\xe9"))
    duplicate = tmp_path / "duplicate.yaml"
    duplicate.write_text(text + "seed: 4\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cases = [
        (["training.n_workers=-1", resume], ["training.n_workers", "-1"]),
        (["training.n_workers=-1"], ["training.n_workers"]),
        (["training.device=cuda"], ["training.device", "cuda"]),
        (["data.img_rows=100000", "data.img_cols=64"], ["data.img_rows", "100000", "16384"]),
        ([f"training.out_dir={a_file}"], ["training.out_dir", "a_file is a file"]),
        ([f"training.out_dir={a_file / 'run'}"], ["training.out_dir", "a_file is a file"]),
        (["training.out_dir=/sys/ptsemseg-run"], ["training.out_dir", "cannot write into /sys"]),
        (["task=depth", "testing.min_depth=abc"], ["testing.min_depth", "'abc'"]),
        (["task=depth", "testing.min_depth=90"], ["testing.min_depth", "below testing.max_depth"]),
        (["training.checkpoint_interval=0"], ["training.checkpoint_interval", "positive integer"]),
        (["training.checkpoint_minutes=0"], ["training.checkpoint_minutes", "positive number"]),
        (["training.val_batch_size=0"], ["training.val_batch_size", "positive integer"]),
        (["data.img_norm=maybe"], ["data.img_norm", "true or false"]),
        (["testing.median_scaling=maybe"], ["testing.median_scaling", "true or false"]),
        (["model.pretrained=imagenet", "model.arch=frrnA", "model.backbone="], ["frrnA has no ImageNet weights"]),
    ]
    new_dirs = [tmp_path / f"new{index}" for index in range(len(cases))]  # one each: the cases run two at once
    commands = [["train.py", "--config", path, "--opts", *overrides,
                 *([] if any(o.startswith(("training.out_dir", "training.resume")) for o in overrides)
                   else [f"training.out_dir={new_dir}"])] for (overrides, _), new_dir in zip(cases, new_dirs)]
    for (overrides, fragments), new_dir, result in zip(cases, new_dirs, run_scripts(commands)):
        assert_one_line_error(result, *fragments)
        assert not new_dir.exists(), overrides
    assert a_file.read_text() == "not a directory"
    assert_one_line_error(run_script("train.py", "--config", str(latin1), "--opts", f"training.out_dir={new_dir}"),
                          str(latin1), f"line {seed_line}:", "0xe9", "UTF-8")
    assert_one_line_error(run_script("train.py", "--config", str(duplicate), "--opts", f"training.out_dir={new_dir}"),
                          str(duplicate), "duplicate key 'seed'", f"line {len(text.splitlines()) + 1}",
                          f"first on line {seed_line}")
    assert not new_dir.exists()


def test_out_json_is_checked_before_evaluation(previous_run, tmp_path):
    """A missing or unwritable --out-json directory fails before the checkpoint is even read (here: missing)."""
    path, run_dir = previous_run
    missing_checkpoint = str(tmp_path / "missing.pt")
    for out_json, fragment in ((tmp_path / "no_dir" / "scores.json", "does not exist"),
                               ("/sys/ptsemseg-scores.json", "cannot write into /sys"),
                               (tmp_path, "is a directory")):
        result = run_script("validate_seg.py", "--config", path, "--model_path", missing_checkpoint,
                            "--out-json", str(out_json))
        assert_one_line_error(result, "--out-json", fragment)
    assert not (tmp_path / "no_dir").exists()


def test_corrupt_image_in_a_worker_fails_in_one_line(write_config, tmp_path):
    """A truncated image met by a DataLoader worker process: the loader's one-line message, not the worker's
    traceback, and not glued to the progress bar."""
    from tests.test_loaders_cityscapes_kitti import make_cityscapes

    path = write_config("corrupt.yaml")
    root = make_cityscapes(tmp_path / "cityscapes")
    image = root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    image.write_bytes(image.read_bytes()[:100])
    result = run_script("train.py", "--config", path, "--opts", "data.dataset=cityscapes", f"data.path={root}",
                        "data.length=", "data.img_rows=16", "data.img_cols=32", "training.n_workers=1",
                        "training.batch_size=1", f"training.out_dir={tmp_path / 'corrupt'}")
    assert_error_on_own_line(result, "cannot decode image", str(image))


def test_bad_checkpoints_fail_in_one_line(previous_run, tmp_path):
    path, run_dir = previous_run
    last = os.path.join(run_dir, "last.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(last, "rb").read()[:5000])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    other_dir = f"training.out_dir={tmp_path / 'other'}"
    other_classes = torch.load(last, weights_only=True)
    other_classes["meta"]["tasks"] = {"seg": 19}
    torch.save(other_classes, tmp_path / "classes19.pt")
    cases = [
        (["train.py", "--config", path, "--opts", f"training.resume={truncated}", other_dir],
         ["cannot read checkpoint", "truncated.pt"]),
        (["validate_seg.py", "--config", path, "--model_path", str(garbage)], ["cannot read checkpoint", "garbage.pt"]),
        (["train.py", "--config", path, "--opts", f"training.resume={last}", "model.backbone=resnet34", other_dir],
         ["does not fit"]),
        (["validate_seg.py", "--config", path, "--model_path", last, "--opts", "model.arch=segnet", "model.backbone="],
         ["arch=deeplab"]),
        (["test_depth.py", "--config", path, "--model_path", last, "--opts", "task=depth"],
         ["trained for seg (6 outputs), this config needs depth (1 outputs)"]),
        (["train.py", "--config", path, "--opts", f"training.resume={tmp_path / 'classes19.pt'}", other_dir],
         ["seg (19 outputs)"]),
    ]
    for (_, fragments), result in zip(cases, run_scripts([command for command, _ in cases])):
        assert_one_line_error(result, *fragments)
    assert not (tmp_path / "other").exists()


def test_second_run_into_a_busy_run_directory_fails(write_config, tmp_path):
    """A run owns its directory: another run into it fails in one line naming the directory and the owner's pid,
    writing nothing; once the owner is killed (no clean exit), the directory is free again."""
    path = write_config("busy.yaml", training={"train_iters": 100000, "val_interval": 100000,
                                               "checkpoint_minutes": 1000})
    run_dir = tmp_path / "busy"
    owner = subprocess.Popen([sys.executable, "train.py", "--config", path], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.time() + 300
        while (not any(name.startswith("events.out") for name in (os.listdir(run_dir) if run_dir.exists() else []))
               and time.time() < deadline and owner.poll() is None):
            time.sleep(0.05)
        before = sorted(os.listdir(run_dir))
        result = run_script("train.py", "--config", path, "--opts", "training.train_iters=2")
        assert_one_line_error(result, f"run directory {run_dir} is in use by another run (pid {owner.pid})")
        assert sorted(os.listdir(run_dir)) == before
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    result = run_script("train.py", "--config", path, "--opts", "training.train_iters=2", "training.val_interval=2")
    assert result.returncode == 0, result.stderr
    assert _last_iteration(run_dir / "last.pt") == 2


def test_checkpoint_minutes_bound_the_time_between_checkpoints(write_config, monkeypatch):
    """last.pt comes every checkpoint_interval iterations and, in between, whenever checkpoint_minutes have passed
    since the last write (a tiny value here: every iteration)."""
    written = []
    monkeypatch.setattr(trainer_module, "save_atomic",
                        lambda state, path: written.append((os.path.basename(path), state["iteration"])))
    path = write_config(training={"train_iters": 6, "val_interval": 6, "print_interval": 6})
    train(path, "training.out_dir=" + os.path.join(os.path.dirname(path), "hourly"))
    assert [iteration for name, iteration in written if name == "last.pt"] == [6]
    written.clear()
    train(path, "training.checkpoint_minutes=1.0e-9")
    assert [iteration for name, iteration in written if name == "last.pt"] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("device, native_bf16, amp, channels_last", [
    ("cpu", True, "bf16", True), ("cpu", False, False, False), ("cuda", False, "bf16", True)])
def test_auto_speed_modes_follow_the_device(monkeypatch, device, native_bf16, amp, channels_last):
    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: native_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    training = device_module.resolve_speed_modes({"amp": "auto", "channels_last": "auto"}, torch.device(device))
    assert training == {"amp": amp, "channels_last": channels_last}


def test_auto_keeps_dispnet_out_of_cpu_bf16(monkeypatch):
    """DispNet's weights turned NaN in CPU bf16 autocast at small inputs: auto gives it fp32 (channels_last stays)."""
    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: True)
    auto = {"amp": "auto", "channels_last": "auto"}
    assert device_module.resolve_speed_modes(dict(auto), torch.device("cpu"), "dispnet") == \
        {"amp": False, "channels_last": True}
    assert device_module.resolve_speed_modes(dict(auto), torch.device("cpu"), "deeplab")["amp"] == "bf16"


@pytest.mark.parametrize("device, given, resolved", [
    ("cpu", {"amp": True, "channels_last": False}, {"amp": "bf16", "channels_last": False}),
    ("cuda", {"amp": True, "channels_last": True}, {"amp": "fp16", "channels_last": True}),
    ("cpu", {"amp": None, "channels_last": True}, {"amp": False, "channels_last": True}),
    ("cuda", {"amp": "bf16", "channels_last": False}, {"amp": "bf16", "channels_last": False})])
def test_explicit_speed_modes_are_kept(device, given, resolved):
    assert device_module.resolve_speed_modes(dict(given), torch.device(device)) == resolved


def test_run_directory_records_the_resolved_speed_modes(write_config, monkeypatch):
    monkeypatch.setattr(device_module, "native_bf16_cpu", lambda: True)
    trainer, scores = train(write_config(training={"train_iters": 2, "val_interval": 2, "amp": "auto",
                                                   "channels_last": "auto"}))
    saved = yaml.safe_load(open(os.path.join(trainer.run_dir, "config.yaml")))
    assert saved["training"]["amp"] == "bf16" and saved["training"]["channels_last"] is True
    assert 0.0 <= scores["seg/mean_iou"] <= 1.0
