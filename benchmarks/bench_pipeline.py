"""Throughput of the full training data pipeline on Cityscapes-size frames against the bare cost of decoding them.

Writes --frames 1024×2048 frames in the official Cityscapes layout to a temporary folder (the image is the real
frame from ../shared/realdata when present, else a synthetic one of similar PNG size), then measures, in one
process with one OpenCV thread:
- bare decode: cv2.imread of the image PNG and the labelIds PNG;
- pipeline: the `cityscapes` dataset with the training augmentations of --config (by default
  configs/cityscapes/deeplab_seg.yaml: random scale + 512×1024 crop, flip, photometric), down to the tensors;
and prints their ratio (goal: pipeline ≤ 1.5× the bare decode), a per-stage breakdown, and the rate of a
DataLoader with --workers workers, pin_memory and persistent workers.

    python benchmarks/bench_pipeline.py [--frames 16] [--rounds 3] [--workers 4] [--batch-size 8]
"""
import argparse
import os
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ptsemseg.augmentations import get_composed_augmentations  # noqa: E402
from ptsemseg.config import load_yaml_with_bases  # noqa: E402
from ptsemseg.loaders import get_loader  # noqa: E402
from ptsemseg.loaders.base import index_seed, to_tensor  # noqa: E402

ROWS, COLS = 1024, 2048
REAL_FRAME = os.path.join(os.path.dirname(REPO), "shared", "realdata", "cityscapes", "leftImg8bit", "val",
                          "frankfurt", "frankfurt_000001_058914_leftImg8bit.png")


def synthetic_frame(rng):
    """A smooth street-like RGB frame with sensor noise (its PNG is about as large as a real Cityscapes one)."""
    coarse = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (COLS, ROWS), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(smooth + rng.normal(0, 2.5, smooth.shape), 0, 255).astype(np.uint8)


def synthetic_label(rng):
    """Blocky regions of Cityscapes label ids, compressible like a real labelIds PNG."""
    coarse = rng.integers(0, 34, (32, 64), dtype=np.uint8)
    return cv2.resize(coarse, (COLS, ROWS), interpolation=cv2.INTER_NEAREST)


def write_frames(root, count, image_path):
    """`count` frames in the official layout; returns (image paths, label paths)."""
    rng = np.random.default_rng(0)
    image = cv2.imread(image_path) if image_path else synthetic_frame(rng)[..., ::-1]
    if image is None or image.shape[:2] != (ROWS, COLS):
        raise SystemExit(f"error: --image must be a {COLS}×{ROWS} colour image: {image_path}")
    label = synthetic_label(rng)
    city_dirs = [os.path.join(root, kind, "train", "benchcity") for kind in ("leftImg8bit", "gtFine")]
    for folder in city_dirs:
        os.makedirs(folder, exist_ok=True)
    images, labels = [], []
    for index in range(count):
        stem = f"benchcity_{index:06d}_000019"
        images.append(os.path.join(city_dirs[0], f"{stem}_leftImg8bit.png"))
        labels.append(os.path.join(city_dirs[1], f"{stem}_gtFine_labelIds.png"))
        cv2.imwrite(images[-1], image)
        cv2.imwrite(labels[-1], label)
    return images, labels


def rates(functions, count, rounds):
    """Best samples/s of each `function(i)` over `rounds` passes of i < count, the passes interleaved so that
    a change in machine load hits every measure alike (one warm-up call each first)."""
    best = {name: 0.0 for name in functions}
    for function in functions.values():
        function(0)
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for index in range(count):
                function(index)
            best[name] = max(best[name], count / (time.perf_counter() - start))
    return best


def loader_rate(dataset, workers, batch_size, epochs):
    """Samples/s of a DataLoader over `epochs` passes, after a first pass that starts the workers."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                         drop_last=True)
    for _ in loader:
        pass
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for batch in loader:
            count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="frames written (one pass = all of them)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per measure (best is reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="DataLoader worker counts to try")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="timed DataLoader passes")
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "cityscapes", "deeplab_seg.yaml"),
                        help="config whose training.augmentations are applied")
    parser.add_argument("--image", default=REAL_FRAME if os.path.isfile(REAL_FRAME) else None,
                        help="a 2048×1024 frame to use (default: the real sample when present, else synthetic)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    aug_cfg = load_yaml_with_bases(args.config)["training"]["augmentations"]
    augmentations = get_composed_augmentations(aug_cfg)

    with tempfile.TemporaryDirectory() as root:
        images, labels = write_frames(root, args.frames, args.image)
        sizes = os.path.getsize(images[0]) / 1e6, os.path.getsize(labels[0]) / 1e3
        print(f"{args.frames} frames {COLS}×{ROWS} ({'real' if args.image else 'synthetic'} image PNG "
              f"{sizes[0]:.1f} MB, labelIds PNG {sizes[1]:.0f} kB); augmentations {aug_cfg}")
        dataset = get_loader("cityscapes")(root, "train", augmentations=augmentations)

        def bare(index):
            cv2.imread(images[index], cv2.IMREAD_COLOR)
            cv2.imread(labels[index], cv2.IMREAD_UNCHANGED)

        loaded = [dataset.load(index) for index in range(min(4, args.frames))]
        augmented = [augmentations(sample, np.random.default_rng(index_seed(i))) for i, sample in enumerate(loaded)]
        measured = rates({
            "bare": bare,
            "pipeline": dataset.__getitem__,
            "load (decode, RGB, train ids)": dataset.load,
            "augmentations": lambda i: augmentations(loaded[i % len(loaded)], np.random.default_rng(index_seed(i))),
            "to_tensor": lambda i: to_tensor(augmented[i % len(augmented)]),
        }, args.frames, args.rounds)
        bare_rate, pipeline_rate = measured.pop("bare"), measured.pop("pipeline")
        print(f"bare decode (cv2.imread image + label): {bare_rate:6.2f} samples/s per worker "
              f"({1e3 / bare_rate:.1f} ms)")
        print(f"full pipeline (dataset[i] → tensors):   {pipeline_rate:6.2f} samples/s per worker "
              f"({1e3 / pipeline_rate:.1f} ms)")
        for name, stage_rate in measured.items():
            print(f"  {name:<30} {1e3 / stage_rate:6.1f} ms")
        print(f"ratio pipeline / bare decode time: {bare_rate / pipeline_rate:.2f} (goal <= 1.5)")
        for workers in args.workers:
            samples = loader_rate(dataset, workers, args.batch_size, args.epochs)
            print(f"DataLoader workers={workers} batch={args.batch_size} pin_memory={torch.cuda.is_available()} "
                  f"persistent_workers={workers > 0}: {samples:6.2f} samples/s "
                  f"({samples / max(workers, 1) / bare_rate:.2f}× the bare decode rate per worker)")


if __name__ == "__main__":
    main()
