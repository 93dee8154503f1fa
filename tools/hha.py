"""Write HHA images (horizontal disparity, height above ground, angle with gravity) for depth maps.

Gravity is estimated per image from its surface normals (Gupta et al. 2014: the direction that floors and
table tops align with and walls are orthogonal to, starting from a level camera); height is measured from
the lowest point, or from 1.3 m below the camera when nothing lies 0.9 m below it. HHA wants hole-filled
depth (see tools/fill_depth.py); --raw names the measured depth whose valid pixels give the normals.
Output PNGs hold the channels in RGB order (disparity, height, angle), as the loaders read them.

A folder (or file) of depth maps, with one camera for all:
    python tools/hha.py --depth /data/nyuv2_folder/Depth --raw /data/nyuv2_folder/RawDepth \
        --out /data/nyuv2_folder/HHA --camera nyu
    python tools/hha.py --depth depth/ --out hha/ --intrinsics 518.86 519.47 325.58 253.74 --encoding mm
The official SUN RGB-D tree (each frame's intrinsics.txt; writes <frame>/hha/<image stem>.png):
    python tools/hha.py --sunrgbd /data/sunrgbd [--splits train test]
"""
import argparse
import glob
import os
import sys
from multiprocessing import Pool

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.cli import guarded  # noqa: E402
from ptsemseg.depth_utils import decode_sunrgbd_depth, hha_encode, mm_to_depth  # noqa: E402
from ptsemseg.errors import PtsemsegError  # noqa: E402
from ptsemseg.loaders.io import CorruptFileError, read_png16, require_path  # noqa: E402
from ptsemseg.loaders.nyuv2 import NYU_K  # noqa: E402

ENCODINGS = ("mm", "sunrgbd")


def read_depth(path, encoding):
    """Metres from a 16-bit PNG (`mm` millimetres or the `sunrgbd` bit layout) or a float .npy in metres."""
    if path.endswith(".npy"):
        try:
            return np.load(path).astype(np.float32)
        except (ValueError, OSError, EOFError) as err:
            raise CorruptFileError(f"cannot read depth {path} ({err})") from None
    raw = read_png16(path)
    return decode_sunrgbd_depth(raw) if encoding == "sunrgbd" else mm_to_depth(raw)


def write_hha(job):
    """job = (depth path, raw depth path or None, K, encoding, output path)."""
    depth_path, raw_path, K, encoding, out_path = job
    depth = read_depth(depth_path, encoding)
    valid = read_depth(raw_path, encoding) > 0 if raw_path else None
    if valid is not None and valid.shape != depth.shape:
        raise CorruptFileError(f"raw depth {raw_path} and depth {depth_path} sizes differ")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    if not cv2.imwrite(out_path, cv2.cvtColor(hha_encode(depth, K, valid=valid), cv2.COLOR_RGB2BGR)):
        raise PtsemsegError(f"cannot write {out_path}")
    return out_path


def folder_jobs(args):
    """Jobs for a depth file or folder with one camera."""
    if args.camera == "nyu":
        K = NYU_K
    elif args.intrinsics:
        fx, fy, cx, cy = args.intrinsics
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
    else:
        raise PtsemsegError("give the camera: --camera nyu or --intrinsics FX FY CX CY")
    if not args.out:
        raise PtsemsegError("--out is required with --depth")
    require_path(args.depth, "depth input", "HHA")
    paths = [args.depth] if os.path.isfile(args.depth) else sorted(
        glob.glob(os.path.join(args.depth, "*.png")) + glob.glob(os.path.join(args.depth, "*.npy")))
    if not paths:
        raise PtsemsegError(f"no .png or .npy depth maps in {args.depth}")
    jobs = []
    for path in paths:
        name = os.path.basename(path)
        raw = None
        if args.raw:
            raw = os.path.join(args.raw, name) if os.path.isdir(args.raw) else args.raw
            require_path(raw, "raw depth", "HHA")
        jobs.append((path, raw, K, args.encoding, os.path.join(args.out, os.path.splitext(name)[0] + ".png")))
    return jobs


def sunrgbd_jobs(root, splits):
    """Jobs for the official SUN RGB-D tree: depth_bfx for points, depth for valid pixels, per-frame K."""
    from ptsemseg.loaders.sunrgbd import SUNRGBD, read_intrinsics

    jobs = []
    for split in splits:
        dataset = SUNRGBD(root, split, keys=("image", "depth"), layout="official")
        for frame in dataset.frames:
            folder = dataset.frame_path(frame)
            images = sorted(glob.glob(os.path.join(folder, "image", "*.jpg"))
                            + glob.glob(os.path.join(folder, "image", "*.png")))
            filled = sorted(glob.glob(os.path.join(folder, "depth_bfx", "*.png")))
            raw = sorted(glob.glob(os.path.join(folder, "depth", "*.png")))
            if not images or not filled:
                raise PtsemsegError(f"frame {folder} lacks image/*.jpg|png or depth_bfx/*.png")
            stem = os.path.splitext(os.path.basename(images[0]))[0]
            K = read_intrinsics(os.path.join(folder, "intrinsics.txt"))
            jobs.append((filled[0], raw[0] if raw else None, K, "sunrgbd",
                         os.path.join(folder, "hha", stem + ".png")))
    return jobs


def main(argv=None):
    parser = argparse.ArgumentParser(description="Depth maps → HHA images.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--depth", help="a depth map or a folder of them (.png 16-bit or .npy metres)")
    source.add_argument("--sunrgbd", metavar="ROOT", help="official SUN RGB-D root (the folder holding SUNRGBD/)")
    parser.add_argument("--raw", help="measured depth (file or folder, same names) whose valid pixels give normals")
    parser.add_argument("--out", help="output folder (with --depth)")
    parser.add_argument("--camera", choices=("nyu",), help="use the NYUv2 intrinsics")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"))
    parser.add_argument("--encoding", choices=ENCODINGS, default="mm",
                        help="16-bit PNG encoding: mm (millimetres) or sunrgbd (bit-rotated millimetres)")
    parser.add_argument("--splits", nargs="+", choices=("train", "test"), default=("train", "test"),
                        help="SUN RGB-D splits (with --sunrgbd)")
    parser.add_argument("--workers", type=int, default=4, help="parallel processes")
    args = parser.parse_args(argv)

    jobs = sunrgbd_jobs(args.sunrgbd, args.splits) if args.sunrgbd else folder_jobs(args)
    with Pool(max(1, args.workers)) as pool:
        for _ in tqdm(pool.imap_unordered(write_hha, jobs), total=len(jobs), desc="hha"):
            pass
    print(f"wrote {len(jobs)} HHA images")


if __name__ == "__main__":
    guarded(main)
