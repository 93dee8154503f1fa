"""Joint seg + depth from one network against the two single-task networks, same architecture and budget.

Trains configs/synthetic/joint_seg_depth.yaml and the same config restricted to one task (seg, then depth, each
keeping its own loss) through the trainer, then prints one table row per run: the final validation scores of
every task, wall-clock training time, parameters and GFLOPs of one eval forward at the training size.

    python benchmarks/bench_joint.py [--iters N] [--out runs/bench_joint] [--opts training.n_workers=4 ...]
"""
import argparse
import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.config import load_config  # noqa: E402
from ptsemseg.trainer import Trainer  # noqa: E402

CONFIG = "configs/synthetic/joint_seg_depth.yaml"
RUNS = {"seg only": {"seg": 1.0}, "depth only": {"depth": 1.0}, "joint": {"seg": 1.0, "depth": 1.0}}
SCORES = ("seg/mean_iou", "seg/overall_acc", "depth/abs_rel", "depth/rmse", "depth/delta1")


def gflops(model, rows, cols):
    """GFLOPs of one eval forward of a batch of one (2 per multiply-add of convolutions and matrix products)."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, rows, cols, device=next(model.parameters()).device))
    return counter.get_total_flops() / 1e9


def run(name, tasks, iters, out_dir, overrides):
    cfg = load_config(CONFIG, [*overrides, f"training.out_dir={os.path.join(out_dir, name.replace(' ', '_'))}"])
    cfg["task"] = tasks
    cfg["training"]["loss"] = {task: cfg["training"]["loss"][task] for task in tasks}
    cfg["training"]["best_metric"] = None
    if iters:
        cfg["training"]["train_iters"] = iters
        cfg["training"]["val_interval"] = iters
    trainer = Trainer(cfg, CONFIG)
    start = time.perf_counter()
    scores = trainer.run()
    seconds = time.perf_counter() - start
    data = cfg["data"]
    return {"run": name, **{key: scores.get(key) for key in SCORES}, "train_s": round(seconds, 1),
            "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 3),
            "gflops": round(gflops(trainer.model, data["img_rows"], data["img_cols"]), 3),
            "iters": cfg["training"]["train_iters"], "device": str(trainer.device), "amp": cfg["training"]["amp"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, help="training iterations of each run (default: the config's)")
    parser.add_argument("--out", default="runs/bench_joint", help="parent of the three run directories")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. training.n_workers=4); not the tasks or losses")
    args = parser.parse_args()
    rows = []
    for name, tasks in RUNS.items():
        rows.append(run(name, tasks, args.iters, args.out, args.opts))
        print(json.dumps(rows[-1]), flush=True)  # each run's row as soon as it is done
    header = ["run", *SCORES, "train_s", "params_M", "gflops", "iters", "device", "amp"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [f"{row[key]:.4f}" if isinstance(row[key], float) and key in SCORES else
                 ("–" if row[key] is None else str(row[key])) for key in header]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
