"""Time of one optimizer step over a model's parameters: torch's default implementation against the fused kernel.

ptsemseg.optimizers.get_optimizer picks `fused=True` for the classes that have it unless the config chooses;
this measures what that buys. Gradients are random (the step's cost does not depend on their values). Modes are
interleaved round-robin and each figure is the median over --iters steps after --warmup.

    python benchmarks/bench_optimizers.py [--arch pspnet --backbone resnet18] [--iters 30]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.models import get_model  # noqa: E402
from ptsemseg.optimizers import get_optimizer  # noqa: E402

IMPLEMENTATIONS = {"default": {"fused": False}, "foreach": {"foreach": True}, "fused": {}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="pspnet")
    parser.add_argument("--backbone", default="resnet18", help="for architectures with a ResNet backbone")
    parser.add_argument("--optimizers", nargs="+", default=["adam", "adamw", "sgd"])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    model_cfg = {"arch": args.arch}
    if args.arch in ("deeplab", "pspnet", "fcrn"):
        model_cfg["backbone"] = args.backbone
    model = get_model(model_cfg, {"seg": 19})
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {model_cfg} seg 19 classes: "
          f"{n_params:,} parameters; median step time of {args.iters} after {args.warmup} warm-up")
    for name in args.optimizers:
        extra = {"momentum": 0.9} if name == "sgd" else {}
        optimizers = {impl: get_optimizer({"name": name, "lr": 1e-4, **extra, **options}, model.parameters())
                      for impl, options in IMPLEMENTATIONS.items()}
        times = {impl: [] for impl in optimizers}
        for step in range(args.warmup + args.iters):
            for impl, optimizer in optimizers.items():
                start = time.perf_counter()
                optimizer.step()
                if step >= args.warmup:
                    times[impl].append(time.perf_counter() - start)
        medians = {impl: statistics.median(values) for impl, values in times.items()}
        summary = ", ".join(f"{impl} {1000 * t:.2f} ms (×{medians['default'] / t:.2f})" for impl, t in medians.items())
        print(f"{name}: {summary}")


if __name__ == "__main__":
    main()
