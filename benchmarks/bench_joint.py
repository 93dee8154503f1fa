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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.train_runs import markdown_table, train_run  # noqa: E402

CONFIG = "configs/synthetic/joint_seg_depth.yaml"
RUNS = {"seg only": {"seg": 1.0}, "depth only": {"depth": 1.0}, "joint": {"seg": 1.0, "depth": 1.0}}
SCORES = ("seg/mean_iou", "seg/overall_acc", "depth/abs_rel", "depth/rmse", "depth/delta1")


def keep_tasks(tasks):
    """A config edit that trains only `tasks`, each with its own loss from the joint config."""
    def edit(cfg):
        cfg["task"] = tasks
        cfg["training"]["loss"] = {task: cfg["training"]["loss"][task] for task in tasks}
        cfg["training"]["best_metric"] = None
    return edit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, help="training iterations of each run (default: the config's)")
    parser.add_argument("--out", default="runs/bench_joint", help="parent of the three run directories")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides for every run (e.g. training.n_workers=4); not the tasks or losses")
    args = parser.parse_args()
    rows = []
    for name, tasks in RUNS.items():
        out_dir = os.path.join(args.out, name.replace(" ", "_"))
        rows.append({"run": name, **train_run(CONFIG, args.opts, out_dir, args.iters, edit=keep_tasks(tasks))})
        print(json.dumps({key: rows[-1].get(key) for key in ("run", *SCORES, "train_s", "params_M", "gflops")}),
              flush=True)  # each run's row as soon as it is done
    print(markdown_table(rows, ["run", *SCORES, "train_s", "params_M", "gflops", "iters", "device", "amp"], SCORES))


if __name__ == "__main__":
    main()
