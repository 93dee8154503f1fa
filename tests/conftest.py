"""Shared fixtures: tiny configs on the built-in dataset and a runner for the top-level scripts."""
import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")


def tiny_config(task="seg", **sections):
    """A config that trains in seconds: small synthetic frames, a ResNet-18 DeepLab, few iterations."""
    cfg = {
        "model": {"arch": "deeplab", "backbone": "resnet18"},
        "task": task,
        "seed": 3,
        "data": {"dataset": "synthetic", "path": None, "train_split": "train", "val_split": "val",
                 "img_rows": 32, "img_cols": 48, "img_norm": True, "length": 16},
        "training": {"train_iters": 6, "batch_size": 2, "val_interval": 3, "n_workers": 0, "print_interval": 2,
                     "optimizer": {"name": "adam", "lr": 1.0e-3}, "loss": None, "lr_schedule": None,
                     "augmentations": {"hflip": 0.5}, "resume": None},
    }
    for section, values in sections.items():
        if isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    return cfg


@pytest.fixture
def write_config(tmp_path):
    """Write a tiny config (sections override the defaults) and return its path."""

    def write(name="tiny.yaml", task="seg", **sections):
        cfg = tiny_config(task, **sections)
        cfg["training"].setdefault("out_dir", str(tmp_path / os.path.splitext(name)[0]))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    return write


def run_script(*args, timeout=600):
    """Run a top-level script in a subprocess from the repo root; returns the CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=env)


def load_tool(name):
    """Import tools/<name>.py as the module `tool_<name>`, so its main() runs in-process (registered in sys.modules,
    so the tool's multiprocessing workers can be pickled)."""
    module_name = f"tool_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, os.path.join(REPO, "tools", f"{name}.py"))
        sys.modules[module_name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[module_name])
    return sys.modules[module_name]

def run_scripts(commands, at_once=2):
    """run_script for each argument list of `commands`, `at_once` at a time (each process has one thread); the
    CompletedProcesses in the order given. For independent commands: none may write where another reads."""
    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(lambda args: run_script(*args), commands))
