"""RGB-D fusion against RGB alone: each fusion config trained as it is and with `model.inputs: [image]`.

Same architecture (without its depth stream), data, iterations, optimizer and seed; one row per run with the
final val scores, wall-clock training time, parameters and GFLOPs, and the mean IoU gained by the depth input.

    python benchmarks/bench_fusion.py [--configs configs/synthetic/fusenet_seg.yaml ...] [--iters N]
        [--out runs/bench_fusion] [--opts training.n_workers=4 ...]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.train_runs import markdown_table, train_run  # noqa: E402
from ptsemseg.config import load_config  # noqa: E402

CONFIGS = ("configs/synthetic/fusenet_seg.yaml", "configs/synthetic/ssma_seg.yaml")
SCORES = ("seg/mean_iou", "seg/overall_acc", "seg/mean_acc")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="fusion configs (seg task)")
    parser.add_argument("--iters", type=int, help="training iterations of each run (default: the config's)")
    parser.add_argument("--out", default="runs/bench_fusion", help="parent of the run directories")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()
    rows = []
    for config in args.configs:
        cfg = load_config(config, args.opts)
        stem = os.path.splitext(os.path.basename(config))[0]
        fused_inputs = list(cfg["model"].get("inputs") or [])
        for inputs in (fused_inputs, ["image"]):
            name = f"{cfg['model']['arch']} [{', '.join(inputs)}]"
            out_dir = os.path.join(args.out, stem, "+".join(inputs))
            rows.append({"run": name, **train_run(config, [*args.opts, f"model.inputs={inputs}"], out_dir,
                                                   args.iters)})
            print(json.dumps({key: rows[-1].get(key) for key in ("run", *SCORES, "train_s", "params_M")}),
                  flush=True)
        fused, rgb = rows[-2]["seg/mean_iou"], rows[-1]["seg/mean_iou"]
        rows[-2]["gain"] = None if fused is None or rgb is None else round(fused - rgb, 4)
    print(markdown_table(rows, ["run", *SCORES, "gain", "train_s", "params_M", "gflops", "iters", "device", "amp"],
                         SCORES))


if __name__ == "__main__":
    main()
