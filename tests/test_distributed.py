"""Training on several processes (torchrun, Gloo on CPU): the sharded sample stream, DDP against one process with
the whole batch, gradient accumulation, sharded validation, EMA, kill-and-resume, another number of processes,
errors on one rank or all, torch.compile's fallback, and the launch environment (torchrun, SLURM).

The model is DeepLab (ResNet-18) with `freeze_bn`: its BatchNorm layers use their running statistics, so nothing
depends on how a batch is split over processes (torch's SyncBatchNorm, which would make BN statistics global, runs
only on GPUs). Training is fp32 (`amp: false`), and SGD: its updates are linear in the gradient, so rounding stays
rounding (Adam's first steps are sign-like and turn the rounding of near-zero gradients into whole steps).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from ptsemseg import distributed
from ptsemseg.cli import evaluate_main
from ptsemseg.config import load_config
from ptsemseg.distributed import Launch, Processes, launch_environment, resolve_sync_bn, sync_batchnorm
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import get_model
from ptsemseg.trainer import ResumableSampler, Trainer
from tests.conftest import REPO, tiny_config

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch has no Gloo backend for CPU processes")

MODEL = {"arch": "deeplab", "backbone": "resnet18", "freeze_bn": True}
TASK = {"seg": 1.0, "depth": 0.0}  # depth is scored (float sums to merge) but not trained
TRAINING = {"train_iters": 6, "batch_size": 4, "val_interval": 3, "print_interval": 3, "val_batch_size": 1,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9}, "grad_clip": 1.0,
            "ema": {"decay": 0.9, "start_iter": 2}, "amp": False, "channels_last": False}
DATA = {"length": {"train": 16, "val": 5}}  # 5 validation frames: 2 processes take 3 and 2, none padded
# Same weights up to rounding: ‖w_a − w_b‖ / ‖w_b − w_init‖ (measured about 1e-6; with half the samples, 5e-2).
ROUNDING = 1e-4


def write(path, **training):
    cfg = tiny_config(TASK, model=dict(MODEL), data=dict(DATA), training={**TRAINING, **training})
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def torchrun(config, *overrides, processes=2):
    """`python -m torch.distributed.run --standalone --nproc_per_node N train.py ...`, started (not waited for)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "train.py", "--config", config, "--opts", *overrides]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))


def finish(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def train_here(config, *overrides):
    """Train in this process; returns the trainer and the model's initial weights."""
    trainer = Trainer(load_config(config, list(overrides)), config)
    initial = {key: value.clone() for key, value in trainer.model.state_dict().items()}
    trainer.run()
    return trainer, initial


def load(run_dir, name="last.pt"):
    return torch.load(os.path.join(run_dir, name), weights_only=True)


def relative_difference(weights, reference, initial):
    keys = [key for key, value in reference.items() if value.is_floating_point()]
    difference = torch.cat([(weights[key] - reference[key]).flatten() for key in keys]).norm()
    change = torch.cat([(reference[key] - initial[key]).flatten() for key in keys]).norm()
    return float(difference / change)


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """An uninterrupted run of 2 processes × batch 4 (global batch 8) with EMA and gradient clipping."""
    folder = tmp_path_factory.mktemp("ddp")
    config = write(folder / "ddp.yaml", out_dir=str(folder / "run"))
    returncode, stdout, stderr = finish(torchrun(config))
    assert returncode == 0, stderr
    assert "global batch 8: 2 process(es) × batch_size 4 × accumulate 1" in stdout
    return config, str(folder / "run")


@needs_gloo
def test_two_processes_train_as_one_with_the_whole_batch(ddp_run, tmp_path):
    """2 processes × batch 4 = 1 process × batch 8 = 1 process × batch 4 × accumulate 2, weights and EMA weights,
    up to rounding; 1 process × batch 4 (half the samples) is far outside that tolerance."""
    config, run_dir = ddp_run
    distributed_state = load(run_dir)
    assert distributed_state["world_size"] == 2 and distributed_state["data_position"] == 6 * 8
    assert len(distributed_state["rank_rng_states"]) == 2 and distributed_state["ema_updates"] == 5
    for name, overrides in (("whole", ["training.batch_size=8"]), ("accumulated", ["training.accumulate=2"])):
        trainer, initial = train_here(config, f"training.out_dir={tmp_path / name}", *overrides)
        state = load(trainer.run_dir)
        assert state["data_position"] == distributed_state["data_position"]
        for key in ("model_state", "ema_state"):
            assert relative_difference(distributed_state[key], state[key], initial) < ROUNDING, (name, key)
    trainer, initial = train_here(config, f"training.out_dir={tmp_path / 'half'}")
    half = load(trainer.run_dir)["model_state"]
    assert relative_difference(distributed_state["model_state"], half, initial) > 100 * ROUNDING


@needs_gloo
def test_sharded_validation_scores_every_frame_once(ddp_run, tmp_path, capsys):
    """The 2 processes' validation (3 + 2 frames, metrics merged) equals the evaluation command in one process on
    the same EMA weights: confusion-matrix scores exactly, depth means up to float rounding, 5 frames counted."""
    config, run_dir = ddp_run
    last = os.path.join(run_dir, "last.pt")
    out = tmp_path / "ema.json"
    evaluate_main("evaluate", "val", ["--config", config, "--model_path", last, "--out-json", str(out),
                                      "--out", str(tmp_path)])
    assert "(EMA weights)" in capsys.readouterr().out
    one_process = json.loads(out.read_text())
    validated = read_metrics(run_dir)[-1]
    assert validated["iteration"] == 6 and validated["depth/n_images"] == one_process["depth/n_images"] == 5
    for key, value in one_process.items():
        if key.startswith("seg/"):
            assert validated[key] == value, key
        else:
            assert validated[key] == pytest.approx(value, rel=1e-12), key

    evaluate_main("evaluate", "val", ["--config", config, "--model_path", last, "--out-json", str(out),
                                      "--out", str(tmp_path), "--weights", "model"])
    assert "(EMA weights)" not in capsys.readouterr().out
    assert json.loads(out.read_text()) != one_process


@needs_gloo
def test_validation_uses_the_batchnorm_statistics_that_are_saved(tmp_path, capsys):
    """BatchNorm layers that learn (no freeze_bn, no SyncBN on CPU): each process updates its running statistics from
    its own samples, so rank 0's statistics (the saved ones) go to every process before validation, which then
    equals the evaluation command in one process on the saved weights (freeze_bn only acts in train mode, so the
    config's value does not matter to the evaluation)."""
    config = write(tmp_path / "bn.yaml", out_dir=str(tmp_path / "run"), train_iters=3, ema=None)
    returncode, _, stderr = finish(torchrun(config, "model.freeze_bn=false"))
    assert returncode == 0, stderr
    out = tmp_path / "scores.json"
    evaluate_main("evaluate", "val", ["--config", config, "--model_path", str(tmp_path / "run" / "last.pt"),
                                      "--out-json", str(out), "--out", str(tmp_path)])
    capsys.readouterr()
    one_process, validated = json.loads(out.read_text()), read_metrics(tmp_path / "run")[-1]
    assert validated["iteration"] == 3
    for key, value in one_process.items():
        assert validated[key] == pytest.approx(value, rel=1e-9), key


def rank_of(pid):
    with open(f"/proc/{pid}/environ", "rb") as handle:
        variables = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
    return int(variables.get(b"RANK", -1))


def workers(launcher_pid):
    with open(f"/proc/{launcher_pid}/task/{launcher_pid}/children", encoding="ascii") as handle:
        return [int(pid) for pid in handle.read().split()]


def last_iteration(path):
    try:
        return torch.load(path, weights_only=True)["iteration"]
    except Exception:  # noqa: BLE001 - not written yet, or being renamed into place
        return None


@needs_gloo
def test_kill_a_rank_and_resume_ends_as_the_uninterrupted_run(ddp_run, tmp_path):
    """SIGKILL to rank 1 (the launcher then ends rank 0) after a checkpoint mid-run; relaunched with
    training.resume, the run ends bit for bit with the uninterrupted run's weights, EMA, optimizer and metrics."""
    config, reference_dir = ddp_run
    run_dir = str(tmp_path / "run")
    interrupted = write(tmp_path / "interrupted.yaml", out_dir=run_dir, checkpoint_minutes=0.001)
    launcher = torchrun(interrupted)
    last = os.path.join(run_dir, "last.pt")
    deadline = time.time() + 300
    while not 2 <= (last_iteration(last) or 0) and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.005)
    (rank_1,) = [pid for pid in workers(launcher.pid) if rank_of(pid) == 1]
    os.kill(rank_1, signal.SIGKILL)
    returncode, _, stderr = finish(launcher)
    stopped_at = last_iteration(last)
    assert returncode != 0 and stopped_at is not None and stopped_at < 6, "the run was not interrupted mid-way"
    assert f"{os.sep}ptsemseg{os.sep}" not in stderr, stderr  # no traceback through the project's code

    returncode, _, stderr = finish(torchrun(interrupted, f"training.resume={last}"))
    assert returncode == 0, stderr
    assert read_metrics(run_dir) == read_metrics(reference_dir)
    expected, resumed = load(reference_dir), load(run_dir)
    assert resumed["iteration"] == expected["iteration"] == 6 and resumed["ema_updates"] == expected["ema_updates"]
    for key in ("model_state", "ema_state"):
        for name, tensor in expected[key].items():
            assert torch.equal(tensor, resumed[key][name]), (key, name)
    for index, values in expected["optimizer_state"]["state"].items():
        for name, value in values.items():
            assert torch.equal(value, resumed["optimizer_state"]["state"][index][name]), (index, name)


@needs_gloo
@pytest.mark.parametrize("batch_size, says", [(8, "each iteration still takes the same 8 samples"),
                                              (4, "the global batch changes from 8 to 4")])
def test_resume_on_another_number_of_processes_says_what_changes(ddp_run, tmp_path, capsys, batch_size, says):
    config, run_dir = ddp_run
    trainer, _ = train_here(config, f"training.resume={os.path.join(run_dir, 'last.pt')}", "training.train_iters=8",
                            f"training.batch_size={batch_size}", f"training.out_dir={tmp_path / 'one'}")
    message = capsys.readouterr().out
    assert "on 1 process(es), the checkpoint was trained on 2" in message and says in message
    assert "the sample stream continues at sample 48" in message
    state = load(trainer.run_dir)
    assert state["iteration"] == 8 and state["data_position"] == 48 + 2 * batch_size
    assert state["world_size"] == 1 and "rank_rng_states" not in state


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@needs_gloo
def test_a_setup_error_on_every_rank_is_one_line_from_rank_0(tmp_path):
    """training.sync_bn: true cannot run on CPU processes: rank 0 prints it once, no rank writes anything."""
    config = write(tmp_path / "syncbn.yaml", out_dir=str(tmp_path / "run"), sync_bn=True)
    returncode, _, stderr = finish(torchrun(config))
    assert returncode != 0
    assert error_lines(stderr) == ["error: training.sync_bn: true needs GPUs: torch's SyncBatchNorm has no CPU "
                                   "implementation (use auto or false; compare runs with a BN-free model or "
                                   "freeze_bn)"], stderr
    assert f"{os.sep}ptsemseg{os.sep}" not in stderr  # no traceback through the project's code
    assert not (tmp_path / "run").exists()


@needs_gloo
def test_a_data_error_on_one_rank_ends_every_rank(tmp_path):
    """A truncated image read by one process: its one-line message; the other process stops too (the launcher or
    the lost connection ends it), with at most a line saying so, and no traceback through the project's code."""
    from tests.miniature_datasets import make_cityscapes

    root = make_cityscapes(tmp_path / "cityscapes")
    image = root / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000019_leftImg8bit.png"
    image.write_bytes(image.read_bytes()[:100])
    config = write(tmp_path / "corrupt.yaml", out_dir=str(tmp_path / "run"), batch_size=1, ema=None)
    returncode, _, stderr = finish(torchrun(config, "data.dataset=cityscapes", f"data.path={root}", "data.length=",
                                            "data.img_rows=16", "data.img_cols=32", "task=seg"), timeout=120)
    assert returncode != 0
    lines = error_lines(stderr)
    assert any("cannot decode image" in line and str(image) in line for line in lines), stderr
    assert all(line.startswith(("error: cannot decode image", "error: rank 1: cannot decode image",
                                "error: rank 0 stopped: another process of the run ended",
                                "error: rank 1: stopped: another process of the run ended")) for line in lines)
    assert len(lines) <= 2 and f"{os.sep}ptsemseg{os.sep}" not in stderr, stderr


def run_train(config, *overrides, env=None):
    return subprocess.run([sys.executable, "train.py", "--config", config, "--opts", *overrides], cwd=REPO,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


def test_compile_falls_back_to_eager_where_the_backend_fails(tmp_path):
    """training.compile on a machine without a working C++ compiler for Inductor: one warning line, then the run
    trains, resumes and ends with exactly the weights of an eager run (EMA included) made under the same
    environment (one thread: floating-point sums depend on the thread count)."""
    config = write(tmp_path / "compile.yaml", out_dir=str(tmp_path / "compiled"), compile=True, train_iters=4,
                   val_interval=2, print_interval=2)
    no_compiler = {"CXX": str(tmp_path / "no-such-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    first = run_train(config, "training.train_iters=2", env=no_compiler)
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stderr.splitlines() if line.strip() and not line.startswith("train:")]
    warning = [line for line in lines if "training.compile" in line]
    assert len(lines) == len(warning) == 1, lines
    assert warning[0].startswith("warning: training.compile: torch.compile fails on this cpu (InductorError: ")
    assert warning[0].endswith("the model runs eagerly"), warning
    resumed = run_train(config, f"training.resume={tmp_path / 'compiled' / 'last.pt'}", env=no_compiler)
    assert resumed.returncode == 0, resumed.stderr
    eager = run_train(config, "training.compile=false", f"training.out_dir={tmp_path / 'eager'}", env=no_compiler)
    assert eager.returncode == 0, eager.stderr
    expected, state = load(tmp_path / "eager"), load(tmp_path / "compiled")
    for key in ("model_state", "ema_state"):
        for name, tensor in expected[key].items():
            assert torch.equal(tensor, state[key][name]), (key, name)


@pytest.mark.slow
def test_compiled_training_matches_eager_and_resumes(tmp_path):
    """With Inductor working (a C++ compiler here), the compiled run trains, resumes, and stays within rounding of
    the eager run (about 2 minutes of compilation per process on 2 CPU cores)."""
    config = write(tmp_path / "compile.yaml", out_dir=str(tmp_path / "compiled"), compile=True)
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    assert run_train(config, "training.train_iters=3", env=env).returncode == 0
    resumed = run_train(config, f"training.resume={tmp_path / 'compiled' / 'last.pt'}", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "training.compile" not in resumed.stderr
    trainer, initial = train_here(config, "training.compile=false", f"training.out_dir={tmp_path / 'eager'}")
    state = load(tmp_path / "compiled")
    assert state["iteration"] == 6
    assert relative_difference(state["model_state"], load(trainer.run_dir)["model_state"], initial) < 1e-3


def test_sampler_shards_interleave_into_the_single_stream():
    """Process r of N takes the counters r, r + N, ...: batch k of each process together are batch k of one process
    with N times the batch, from any start (a resumed run)."""
    for world_size, start in ((2, 0), (3, 7)):
        single = iter(ResumableSampler(5, seed=1, start=start))
        stream = [next(single) for _ in range(4 * world_size)]
        shards = [iter(ResumableSampler(5, seed=1, start=start, rank=rank, world_size=world_size))
                  for rank in range(world_size)]
        taken = [[next(shard) for _ in range(4)] for shard in shards]
        assert sorted(item for share in taken for item in share) == sorted(stream)
        for batch in range(2):
            together = [item for share in taken for item in share[2 * batch: 2 * batch + 2]]
            assert sorted(together) == sorted(stream[2 * batch * world_size: 2 * (batch + 1) * world_size])
    assert list(Processes(rank=1, world_size=3).shard(7)) == [1, 4]


def test_launch_environment_reads_torchrun_then_slurm():
    torchrun_variables = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "node1",
                          "MASTER_PORT": "29400"}
    slurm_variables = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
                       "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert launch_environment(torchrun_variables) == Launch(3, 8, 1, "node1", 29400)
    assert launch_environment({**slurm_variables, **torchrun_variables}) == Launch(3, 8, 1, "node1", 29400)
    asked = []

    def first_host(nodelist):
        asked.append(nodelist)
        return "gpu07"

    assert launch_environment(slurm_variables, first_host) == Launch(5, 8, 1, "gpu07", 23456)
    assert asked == ["gpu[07-08]"]
    assert launch_environment({**slurm_variables, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}) == \
        Launch(5, 8, 1, "10.0.0.1", 1234)
    assert launch_environment({}) is None
    assert launch_environment({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert launch_environment({**slurm_variables, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    with pytest.raises(PtsemsegError, match="environment variable WORLD_SIZE must be an integer, got 'two'"):
        launch_environment({"RANK": "0", "WORLD_SIZE": "two"})
    with pytest.raises(PtsemsegError, match="rank 4 .* does not fit a world of 4 processes"):
        launch_environment({"RANK": "4", "WORLD_SIZE": "4"})


def test_sync_batchnorm_converts_the_layers_that_train():
    """Every trainable BatchNorm becomes SyncBatchNorm; freeze_bn's layers stay BatchNorm2d, so the encoder keeps
    them in eval mode."""
    heads = {"seg": 6}
    trainable = sync_batchnorm(get_model({"arch": "deeplab", "backbone": "resnet18"}, heads))
    frozen = sync_batchnorm(get_model(MODEL, heads))
    assert not any(type(module) is torch.nn.BatchNorm2d for module in trainable.modules())
    assert any(isinstance(module, torch.nn.SyncBatchNorm) for module in trainable.modules())
    assert not any(isinstance(module, torch.nn.SyncBatchNorm) for module in frozen.modules())
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    two = Processes(rank=0, world_size=2)
    assert resolve_sync_bn("auto", two, cuda) and not resolve_sync_bn("auto", two, cpu)
    assert not resolve_sync_bn("auto", Processes(), cuda) and not resolve_sync_bn(True, Processes(), cpu)
    with pytest.raises(PtsemsegError, match="training.sync_bn: true needs GPUs"):
        resolve_sync_bn(True, two, cpu)


@pytest.mark.parametrize("override, fragments", [
    ("training.sync_bn=maybe", ["training.sync_bn", "auto, true or false"]),
    ("training.accumulate=0", ["training.accumulate", "positive integer"]),
    ("training.grad_clip=-1", ["training.grad_clip", "positive number"]),
    ("training.compile=yes please", ["training.compile", "true or false"]),
    ("training.ema={start_iter: 5}", ["training.ema", "with a decay"]),
    ("training.ema={decay: 1.5}", ["training.ema.decay", "between 0 and 1"]),
    ("training.ema={decay: 0.9, start: 3}", ["training.ema.start", "closest: start_iter"]),
    ("training.ema={decay: 0.9, start_iter: -1}", ["training.ema.start_iter", "0 or more"]),
])
def test_bad_scaling_keys_fail_in_one_line(tmp_path, override, fragments):
    config = write(tmp_path / "bad.yaml", ema=None)
    with pytest.raises(PtsemsegError) as error:
        load_config(config, [override])
    assert "\n" not in str(error.value)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_checkpoint_without_ema_refuses_ema_weights(tmp_path):
    config = write(tmp_path / "plain.yaml", out_dir=str(tmp_path / "plain"), ema=None, train_iters=1,
                   val_interval=1)
    trainer, _ = train_here(config)
    with pytest.raises(PtsemsegError, match="has no EMA weights"):
        evaluate_main("evaluate", "val", ["--config", config, "--model_path", os.path.join(trainer.run_dir, "last.pt"),
                                          "--weights", "ema"])


def test_single_process_needs_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.init_processes() == Processes()
    assert not torch.distributed.is_initialized()
