"""Fill the holes (0 = no measurement) of depth maps and write them as lossless 16-bit PNGs.

Methods:
- `inpaint` (default): OpenCV inpainting (Telea's fast marching; `--inpaint-method ns` for Navier-Stokes)
  of the depth values themselves: fast (milliseconds per frame), smooth across object boundaries.
- `colorization`: Levin et al.'s colorization guided by the RGB image, the scheme the NYUv2 toolbox used
  for the labelled set's filled depths (depth edges follow colour edges); one sparse solve per frame,
  seconds to tens of seconds at 640×480. Needs --rgb (a folder with an image of the same stem per map).

Output PNGs keep the input's encoding (--encoding mm: millimetres, sunrgbd: SUN RGB-D's bit-rotated mm).

    python tools/fill_depth.py --depth raw_depth/ --out filled/ [--method colorization --rgb rgb/]
"""
import argparse
import glob
import os
import sys
from multiprocessing import Pool

import cv2
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.cli import guarded  # noqa: E402
from ptsemseg.depth_utils import (decode_sunrgbd_depth, depth_to_mm, encode_sunrgbd_depth,  # noqa: E402
                                  fill_depth, mm_to_depth)
from ptsemseg.errors import PtsemsegError  # noqa: E402
from ptsemseg.loaders.io import read_png16, read_rgb, require_path  # noqa: E402

SECTION = "Depth hole filling"


def fill_one(job):
    """job = (depth PNG, RGB path or None, output PNG, encoding, method, options)."""
    depth_path, rgb_path, out_path, encoding, method, options = job
    raw = read_png16(depth_path)
    depth = decode_sunrgbd_depth(raw) if encoding == "sunrgbd" else mm_to_depth(raw)
    image = read_rgb(rgb_path) if rgb_path else None
    filled = fill_depth(depth, method, image=image, **options)
    encoded = encode_sunrgbd_depth(filled) if encoding == "sunrgbd" else depth_to_mm(filled)
    if not cv2.imwrite(out_path, encoded):
        raise PtsemsegError(f"cannot write {out_path}")
    return out_path


def find_rgb(rgb_dir, stem):
    for extension in (".png", ".jpg", ".jpeg"):
        path = os.path.join(rgb_dir, stem + extension)
        if os.path.isfile(path):
            return path
    raise PtsemsegError(f"no RGB image for depth '{stem}': expected {os.path.join(rgb_dir, stem)}.png|jpg")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fill holes of 16-bit depth PNGs.")
    parser.add_argument("--depth", required=True, help="a 16-bit depth PNG or a folder of them")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--method", choices=("inpaint", "colorization"), default="inpaint")
    parser.add_argument("--rgb", help="folder of RGB images with the depth maps' stems (colorization)")
    parser.add_argument("--encoding", choices=("mm", "sunrgbd"), default="mm", help="16-bit PNG encoding")
    parser.add_argument("--inpaint-method", choices=("telea", "ns"), default="telea")
    parser.add_argument("--radius", type=int, default=5, help="inpainting neighbourhood radius in pixels")
    parser.add_argument("--workers", type=int, default=4, help="parallel processes")
    args = parser.parse_args(argv)

    require_path(args.depth, "depth input", SECTION)
    paths = [args.depth] if os.path.isfile(args.depth) else sorted(glob.glob(os.path.join(args.depth, "*.png")))
    if not paths:
        raise PtsemsegError(f"no .png depth maps in {args.depth}")
    if args.method == "colorization":
        if not args.rgb:
            raise PtsemsegError("--method colorization needs --rgb")
        require_path(args.rgb, "RGB folder", SECTION)
        options = {}
    else:
        options = {"radius": args.radius, "algorithm": args.inpaint_method}
    os.makedirs(args.out, exist_ok=True)
    jobs = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        rgb = find_rgb(args.rgb, stem) if args.method == "colorization" else None
        jobs.append((path, rgb, os.path.join(args.out, stem + ".png"), args.encoding, args.method, options))
    with Pool(max(1, args.workers)) as pool:
        for _ in tqdm(pool.imap_unordered(fill_one, jobs), total=len(jobs), desc=f"fill ({args.method})"):
            pass
    print(f"wrote {len(jobs)} filled depth maps to {args.out}")


if __name__ == "__main__":
    guarded(main)
