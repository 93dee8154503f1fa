"""Saliency maps: batched vector-Jacobian products against one backward pass per target pixel.

Same model, frame, target pixels and machine, in one run. The targets are split into `--rounds` rounds and every
method runs on each round in turn (after an untimed warm-up on one target), so that other processes' load falls on
all methods alike. A method's time sums its rounds, each a forward pass, the round's backward passes and the
reduction to maps (max over channels of |gradient|):
- seed: as Semseg-MonoDepth-Pytorch's saliency.py: float32, the weights requiring gradients as loaded, one
  `output.backward(one_hot, retain_graph=True)` per target, the input's gradient read and zeroed;
- per-pixel: one backward pass per target with respect to the input alone (ptsemseg.saliency, method loop);
- batched: `--chunk` targets per backward pass (ptsemseg.saliency, method vmap);
the last two also under the autocast that `training.amp: auto` picks on this machine (bf16 on a CPU with native
bf16), and every method in the memory format `training.channels_last: auto` picks. Random weights (FCN's
zero-initialised score layers drawn at random, so gradients flow everywhere); the targets are evenly spread over
the seed's grid (every 10 px inside KITTI's Garg crop).

    python benchmarks/bench_saliency.py [--arch deeplab --model-opts backbone=resnet18] [--size 256 832]
        [--targets 64] [--chunk 16] [--classes 19] [--threads 2] [--device auto] [--methods seed per-pixel ...]
"""
import argparse
import contextlib
import functools
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.config import safe_load  # noqa: E402
from ptsemseg.device import autocast, resolve_device, resolve_speed_modes  # noqa: E402
from ptsemseg.models import get_model, model_input_keys  # noqa: E402
from ptsemseg.models._inputs import example_inputs  # noqa: E402
from ptsemseg.saliency import Saliency, crop_box, target_grid  # noqa: E402

METHODS = ("seed", "per-pixel", "batched")


def seed_method(model, inputs, rows, cols, channels, autocast):
    """The seed's loop: weights with gradients, one retained backward of a one-hot gradient per target."""
    for param in model.parameters():
        param.requires_grad_(True)
    image = inputs[0].clone().requires_grad_()
    model.zero_grad()
    output = model(image, *inputs[1:])["seg"]
    maps = []
    for row, col, channel in zip(rows.tolist(), cols.tolist(), channels.tolist()):
        one_hot = torch.zeros_like(output)
        one_hot[0, channel, row, col] = 1.0
        output.backward(gradient=one_hot, retain_graph=True)
        maps.append(image.grad.detach().abs().amax(1)[0].clone())
        image.grad.zero_()
    return torch.stack(maps)


def library_method(method, chunk):
    def run(model, inputs, rows, cols, channels, autocast):
        saliency = Saliency(model, "seg", autocast=autocast, chunk_size=chunk, method=method)
        saliency.forward(inputs)
        return torch.cat([maps["image"] for _, maps in saliency.maps(rows, cols, channels)])
    return run


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def relative_error(maps, reference):
    """Largest per-map |difference| over the reference map's maximum, and the median relative L2 error."""
    scale = reference.amax((1, 2)).clamp_min(1e-30)
    worst = float(((maps - reference).abs().amax((1, 2)) / scale).max())
    l2 = (maps - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1).clamp_min(1e-30)
    return worst, float(l2.median())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="deeplab")
    parser.add_argument("--model-opts", dest="model_opts", nargs="*", default=["backbone=resnet18"],
                        metavar="KEY=VALUE", help="model options (YAML values), default backbone=resnet18")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 832), metavar=("ROWS", "COLS"))
    parser.add_argument("--targets", type=int, default=64, help="target pixels (default: 64)")
    parser.add_argument("--chunk", type=int, default=16, help="targets per batched backward pass (default: 16)")
    parser.add_argument("--classes", type=int, default=19, help="segmentation classes (default: 19)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--rounds", type=int, default=4,
                        help="the targets split into this many rounds, each method running every round (default: 4)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {key: safe_load(value) for key, value in (item.split("=", 1) for item in args.model_opts)}
    model_cfg = {"arch": args.arch, **options}
    device = resolve_device(args.device)
    training = resolve_speed_modes({"amp": "auto", "channels_last": "auto"}, device, args.arch)
    memory_format = torch.channels_last if training["channels_last"] else torch.contiguous_format
    torch.manual_seed(0)
    model = get_model(model_cfg, {"seg": args.classes}).eval().to(device, memory_format=memory_format)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(0, 0.05)
    inputs = [x.to(device).contiguous(memory_format=memory_format) for x in example_inputs(
        model_input_keys(model_cfg), 1, tuple(args.size), generator=torch.Generator().manual_seed(1))]
    grid_rows, grid_cols = target_grid(crop_box(tuple(args.size), "garg"), 10)
    picked = torch.linspace(0, len(grid_rows) - 1, args.targets).round().long()
    rows, cols = grid_rows[picked], grid_cols[picked]
    with torch.no_grad():
        channels = model(*inputs)["seg"][0, :, rows, cols].argmax(0).cpu()

    precisions = {"fp32": contextlib.nullcontext}
    if training["amp"]:
        precisions[training["amp"]] = functools.partial(autocast, {"training": training}, device)
    runs = {"seed": seed_method, "per-pixel": library_method("loop", args.chunk),
            "batched": library_method("vmap", args.chunk)}
    load = os.getloadavg()[0]
    print(f"{args.arch} {options} seg {args.classes} classes, {args.size[0]}×{args.size[1]}, {args.targets} targets, "
          f"chunk {args.chunk}, channels_last {training['channels_last']}; torch {torch.__version__}, {device}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, load average {load:.2f} "
          "at start", flush=True)
    variants = [(method, precision) for precision in precisions for method in args.methods
                if method != "seed" or precision == "fp32"]
    for method, precision in variants:  # warm-up, untimed: oneDNN builds its kernels on first use
        runs[method](model, inputs, rows[:1], cols[:1], channels[:1], precisions[precision])
    seconds = {variant: 0.0 for variant in variants}
    maps = {variant: [] for variant in variants}
    for round_index, part in enumerate(torch.arange(args.targets).chunk(args.rounds)):
        # every method on the same targets in turn, the order rotated each round, so that load from other
        # processes falls on all of them alike
        for method, precision in variants[round_index % len(variants):] + variants[:round_index % len(variants)]:
            synchronize(device)
            start = time.perf_counter()
            result = runs[method](model, inputs, rows[part], cols[part], channels[part], precisions[precision])
            synchronize(device)
            seconds[(method, precision)] += time.perf_counter() - start
            maps[(method, precision)].append(result.float().cpu())
        print(f"round {round_index + 1}: " + ", ".join(f"{method} {precision} {seconds[(method, precision)]:.1f} s"
                                                       for method, precision in variants), flush=True)
    results = {variant: (seconds[variant], torch.cat(maps[variant])) for variant in variants}
    reference = results.get(("per-pixel", "fp32"), results.get(("seed", "fp32")))
    seed_seconds = results[("seed", "fp32")][0] if ("seed", "fp32") in results else None
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}\n")
    print("| method | precision | s per target | × faster than the seed | × faster than one backward per pixel, same "
          "precision | max |error| / map max | median relative L2 error |")
    print("|---|---|---|---|---|---|---|")
    for (method, precision), (seconds, maps) in results.items():
        per_pixel = results.get(("per-pixel", precision))
        speedup = f"{seed_seconds / seconds:.2f}" if seed_seconds else "-"
        same = f"{per_pixel[0] / seconds:.2f}" if per_pixel else "-"
        worst, l2 = relative_error(maps, reference[1]) if reference else (float("nan"), float("nan"))
        print(f"| {method} | {precision} | {seconds / args.targets:.3f} | {speedup} | {same} | {worst:.1e} | "
              f"{l2:.1e} |")


if __name__ == "__main__":
    main()
