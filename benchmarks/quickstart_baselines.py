"""Baselines that show the built-in scenes need spatial context, for BENCHMARKS.md.

- seg: a per-pixel classifier (one 1×1 conv on RGB) trained through train.py's trainer with the quickstart
  config's data, iterations and optimizer, so the only difference from the quickstart is the model;
- depth: the training set's median depth at each pixel position, which ignores the image.

    python benchmarks/quickstart_baselines.py --task seg
    python benchmarks/quickstart_baselines.py --task depth
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.config import load_config  # noqa: E402
from ptsemseg.models import MODELS  # noqa: E402
from ptsemseg.build import build_dataset  # noqa: E402
from ptsemseg.tasks import TASKS  # noqa: E402
from ptsemseg.trainer import Trainer  # noqa: E402


class PixelLinear(nn.Module):
    """One 1×1 convolution on RGB: each pixel is classified from its own colour alone."""

    def __init__(self, heads):
        super().__init__()
        self.name = heads[0].name
        self.classifier = nn.Conv2d(3, heads[0].channels, kernel_size=1)

    def forward(self, image):
        return {self.name: self.classifier(image)}


def seg_baseline(config, overrides):
    """The quickstart config with its model swapped for PixelLinear (one output, so the loss weighs it 1)."""
    MODELS.register("pixel_linear")(PixelLinear)
    cfg = load_config(config, overrides)
    cfg["model"] = {"arch": "pixel_linear"}
    cfg["training"]["loss"] = None  # the paper loss of the quickstart weighs PSPNet's two outputs
    cfg["training"]["out_dir"] = cfg["training"]["out_dir"] or "runs/baseline_pixel_linear"
    return Trainer(cfg, config).run()


def depth_baseline(config, overrides):
    """Per-pixel median of the training depths (invalid pixels excluded), evaluated on the val split."""
    cfg = load_config(config, overrides)
    train_set = build_dataset(cfg, cfg["data"]["train_split"], ("depth",))
    depths = np.stack([train_set[i]["depth"][0].numpy() for i in range(len(train_set))])
    median = np.nanmedian(np.where(depths > 0, depths, np.nan), axis=0)
    median = torch.from_numpy(np.nan_to_num(median, nan=float(np.median(depths[depths > 0]))))
    metrics = TASKS.get("depth")(train_set).metrics(testing=cfg["testing"])
    val_set = build_dataset(cfg, cfg["data"]["val_split"], ("depth",))
    for i in range(len(val_set)):
        target = val_set[i]["depth"][None]
        metrics.update(median[None, None].clone(), target)
    return metrics.compute()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("seg", "depth"), required=True)
    parser.add_argument("--config", help="default: configs/synthetic/quickstart_<task>.yaml")
    parser.add_argument("--opts", nargs="*", default=[])
    args = parser.parse_args()
    config = args.config or f"configs/synthetic/quickstart_{args.task}.yaml"
    scores = (seg_baseline if args.task == "seg" else depth_baseline)(config, args.opts)
    print(json.dumps({k: v for k, v in scores.items() if not isinstance(v, list)}, indent=2))


if __name__ == "__main__":
    main()
