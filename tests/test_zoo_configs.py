"""The ready configs and the seed projects' configs run through train.py.

Every configs/synthetic/*.yaml (found by glob, so a new file is covered without touching this test) trains a few
iterations through the `train.py` entry point at a small size; configs written in the seed projects' schema run
unchanged apart from the dataset, its path and the overrides that keep them short.
"""
import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from ptsemseg.cli import train_main
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS, get_model
from ptsemseg.tasks import TASKS, parse_task_spec
from tests.conftest import REPO

SYNTHETIC_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "synthetic", "*.yaml")))

# What a short run changes: a small frame, 4 items per split, 2 iterations with one validation, no worker processes.
SHORT_RUN = ["data.img_rows=32", "data.img_cols=48", "data.length=4", "training.train_iters=2",
             "training.val_interval=2", "training.print_interval=1", "training.batch_size=2", "training.n_workers=0",
             "training.device=cpu"]

# Configs whose short run takes over ~10 s on 2 CPU cores (FCN-8s: 134M/69M parameters on a 100-pixel-padded
# input); they run with `pytest -m slow`.
SLOW_CONFIGS = {"fcn8s_seg.yaml", "fcn8s_depth.yaml"}


def assert_run_directory(run_dir, arch, task, iterations=2):
    """The run wrote its checkpoint and one validation line per val_interval, for the arch and task(s) configured."""
    tasks = list(parse_task_spec(task))
    files = set(os.listdir(run_dir))
    assert {"last.pt", "metrics.jsonl", "config.yaml"} <= files, sorted(files)
    lines = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8")]
    assert lines[-1]["iteration"] == iterations
    assert all(f"{name}/{TASKS.get(name).best_metric}" in lines[-1] for name in tasks)
    state = torch.load(os.path.join(run_dir, "last.pt"), weights_only=True)
    assert state["iteration"] == iterations
    assert MODELS.get(state["meta"]["arch"]) is MODELS.get(arch) and list(state["meta"]["tasks"]) == tasks


def test_every_architecture_has_a_seg_and_a_depth_config():
    names = {os.path.basename(path) for path in SYNTHETIC_CONFIGS}
    for arch in ("fcn8s", "segnet", "frrnA", "frrnB", "deeplab", "pspnet", "dispnet", "fcrn"):
        assert {f"{arch}_seg.yaml", f"{arch}_depth.yaml"} <= names, arch
    for path in SYNTHETIC_CONFIGS:
        cfg = load_config(path)
        assert cfg["data"]["dataset"] == "synthetic", path
        assert all(name in os.path.basename(path) for name in parse_task_spec(cfg["task"])), path
        assert cfg["model"].get("pretrained", "none") == "none", f"{path} must run offline"


@pytest.mark.parametrize("path", [
    pytest.param(path, marks=pytest.mark.slow) if os.path.basename(path) in SLOW_CONFIGS else path
    for path in SYNTHETIC_CONFIGS], ids=lambda path: os.path.basename(path))
def test_synthetic_config_trains_through_train_py(path, tmp_path):
    run_dir = tmp_path / "run"
    train_main(["--config", path, "--opts", *SHORT_RUN, f"training.out_dir={run_dir}"])
    cfg = load_config(path)
    assert_run_directory(run_dir, cfg["model"]["arch"], cfg["task"])


# Seed-project configs, verbatim apart from `dataset: synthetic` and an empty `path:` (and an empty `resume:` where
# the seed named a checkpoint of its own).
SEED_CONFIGS = {
    # Semseg-MonoDepth configs/dispnet_kitti_depth.yml
    "dispnet_kitti_depth.yml": ("dispnet", "depth", """\
        model:
            arch: dispnet
        task: depth

        data:
            dataset: synthetic
            train_split: train
            val_split: val
            test_split: test
            img_rows: 128
            img_cols: 416
            img_norm: True
            path:

        training:
            train_iters: 1000000
            batch_size: 4
            val_interval: 2000
            n_workers: 2
            print_interval: 500
            optimizer:
                name: 'adam'
                lr: 1.0e-4
            loss:
                name: 'scale_invariant_loss'
                smooth: True
            lr_schedule:
            resume:
        """),
    # Semseg-MonoDepth configs/fcn_kitti_depth.yml (`fcn` is FCN-8s)
    "fcn_kitti_depth.yml": ("fcn", "depth", """\
        model:
            arch: fcn
        task: depth
        data:
            dataset: synthetic
            train_split: train
            val_split: val
            img_rows: 128
            img_cols: 416
            img_norm: True
            path:

        training:
            train_iters: 100000000
            batch_size: 4
            val_interval: 2000
            n_workers: 2
            print_interval: 1
            optimizer:
                name: 'adam'
                lr: 1.0e-4
            loss:
                name: 'scale_invariant_loss'
                smooth: True
            lr_schedule:
            resume:
        """),
    # Semseg-MonoDepth configs/frrnA_kitti_seg.yml: FRRN-A chosen by model_type, bootstrapped cross entropy.
    "frrnA_kitti_seg.yml": ("frrn", "seg", """\
        model:
            arch: frrn
            model_type: A
        task: seg
        data:
            dataset: synthetic
            train_split: train
            val_split: val
            img_rows: 256
            img_cols: 832
            img_norm: True
        #    version: cityscapes
            path:
        training:
            train_iters: 10000000
            batch_size: 4
            val_interval: 40
            n_workers: 2
            print_interval: 10
            optimizer:
                name: 'adam'
                lr: 1.0e-5
            loss:
                name: 'bootstrapped_cross_entropy'
                size_average: True
                K:  26624 # 256*832/8
            lr_schedule:
            resume: # runs/frrnA_cityscapes/94430/frrnA_cityscapes_best_model.pkl
        """),
    # pytorch-semseg configs/frrnB_cityscapes.yml written for FRRN-A (arch frrnA with the model_type key), no task
    # and no img_norm (seg and true by default), and the keys that mean nothing here (l_rate, momentum and
    # weight_decay beside the optimizer, visdom): they warn. `resume:` named the seed's own checkpoint.
    "frrnA_cityscapes.yml": ("frrnA", "seg", """\
        model:
            arch: frrnA
            model_type: A
        data:
            dataset: synthetic
            train_split: train
            val_split: val
            img_rows: 512
            img_cols: 1024
            path:
        training:
            n_workers: 64
            train_iters: 85000
            batch_size: 2
            val_interval: 500
            print_interval: 25
            optimizer:
                name: sgd
                lr: 1.0e-4
            l_rate: 1.0e-4
            loss:
                name: 'cross_entropy'
                size_average: True
            lr_schedule:
                name: 'multi_step'
                milestones: [10000,30000]
                gamma: 0.1
            momentum: 0.99
            weight_decay: 0.0005
            resume:
            visdom: False
        """),
}

# Only what makes the seed configs short: 2 iterations with one validation at 32×48 on 4 items per split (the
# synthetic dataset's `length`, not a seed key), 2 images per batch, no worker processes, and a run directory in
# the test's temporary folder.
SEED_OVERRIDES = ["data.img_rows=32", "data.img_cols=48", "data.length=4", "training.train_iters=2",
                  "training.val_interval=2", "training.batch_size=2", "training.n_workers=0"]


# FCN-8s depth (69M parameters) takes about 30 s here, most of it writing its checkpoints: `pytest -m slow`.
SLOW_SEED_CONFIGS = {"fcn_kitti_depth.yml"}


def run_train_py(*args):
    """train.py in a subprocess from the repo root, with Python's warnings shown (they are one line each)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(env, OMP_NUM_THREADS="1"))


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_SEED_CONFIGS else name
                                  for name in sorted(SEED_CONFIGS)])
def test_seed_config_runs_unchanged(name, tmp_path):
    arch, task, text = SEED_CONFIGS[name]
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    run_dir = tmp_path / "run"
    result = run_train_py("--config", str(path), "--opts", *SEED_OVERRIDES, f"training.out_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert_run_directory(run_dir, arch, task)
    if name == "frrnA_cityscapes.yml":
        for key in ("l_rate", "momentum", "weight_decay", "visdom"):
            assert f"warning: config {path}: training.{key} is ignored (seed-project key)" in result.stderr, key
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["training"]["loss"] == yaml.safe_load(path.read_text())["training"]["loss"]


def test_seed_name_fcn_is_fcn8s():
    assert MODELS.get("fcn") is MODELS.get("fcn8s")


@pytest.mark.parametrize("arch, model_type", [("frrnA", "A"), ("frrnB", "B"), ("frrn", "A"), ("frrn", "B")])
def test_frrn_names_take_the_seed_model_type_key(arch, model_type):
    with torch.device("meta"):
        model = get_model({"arch": arch, "model_type": model_type}, {"seg": 3})
    assert model.model_type == model_type


def test_frrn_variant_name_refuses_a_contradicting_model_type():
    with pytest.raises(PtsemsegError, match="arch frrnA builds FRRN-A, but model.model_type is 'B'"):
        get_model({"arch": "frrnA", "model_type": "B"}, {"seg": 3})
