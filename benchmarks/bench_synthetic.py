"""Generation speed of the built-in `synthetic` dataset in one process, for BENCHMARKS.md.

Times `load(index)` (scene drawing, ray casting, shading, texturing, noise and depth holes: the NumPy sample)
over consecutive items and prints frames per second by wall clock and by the process's CPU time (the second is
the fairer figure on a machine shared with other jobs). Run it on one core:

    OMP_NUM_THREADS=1 python benchmarks/bench_synthetic.py --rows 240 --cols 320 --frames 500
"""
import argparse
import os
import sys
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.loaders.synthetic import Synthetic  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--cols", type=int, default=320)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--holes", type=float, default=0.0, help="depth hole strength (data.holes)")
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    dataset = Synthetic(None, args.split, keys=("image", "depth", "label", "scene"), img_size=(args.rows, args.cols),
                        holes=args.holes, length=args.frames + 10)
    for index in range(10):  # warm-up: imports, caches, allocator
        dataset.load(args.frames + index)
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(args.frames):
        dataset.load(index)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"synthetic {args.rows}x{args.cols}, holes {args.holes}, {args.frames} frames: "
          f"{args.frames / wall:.1f} frames/s wall clock, {args.frames / cpu:.1f} frames/s of CPU time "
          f"({1000 * cpu / args.frames:.2f} ms per frame)")


if __name__ == "__main__":
    main()
