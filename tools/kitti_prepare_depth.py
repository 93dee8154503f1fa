"""Turn KITTI raw drives into depth training data read by the `kitti` dataset with `layout: prepared`.

For every synchronised drive except the 28 Eigen test drives, and every frame that is not static, it writes
(OUT mirrors the raw layout):
- `OUT/<date>/<drive>/image_0{2,3}/data/<frame>.<png|jpg>`: the image, copied or resized to --height × --width;
- `OUT/<date>/<drive>/proj_depth/image_0{2,3}/<frame>.png`: the Velodyne scan projected into that image,
  16-bit PNG of depth · 256 (0 = no point), the format of the official annotated depth maps;
- `OUT/<date>/<drive>/K_0{2,3}.txt`: the 3×3 intrinsics of the written images;
- `OUT/train.txt`, `OUT/val.txt`: monodepth2-style lists (`<date>/<drive> <frame> <l|r>`); whole drives go to
  val (--val-fraction of them, drawn with --seed), so both cameras of a drive share a split.
A frame is static when it is in --static-frames (lines `<date> <drive> <frame>`), or, without that list, when
the OXTS speed of the car is below --min-speed m/s.

    python tools/kitti_prepare_depth.py --raw-root /data/kitti_raw --out /data/kitti_prepared \\
        --height 256 --width 832 --ext jpg --workers 8
"""
import argparse
import functools
import glob
import os
import random
import shutil
import sys
from multiprocessing import Pool

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.cli import guarded  # noqa: E402
from ptsemseg.errors import PtsemsegError  # noqa: E402
from ptsemseg.loaders.io import CorruptFileError, require_path  # noqa: E402
from ptsemseg.loaders.kitti_utils import (  # noqa: E402
    EIGEN_TEST_DRIVES, Frame, project_to_depth_map, read_calibration, read_oxts_speed, read_static_frames,
    read_velodyne, scale_projection, write_split_file)

DEPTH_PNG_SCALE = 256.0
JPEG_QUALITY = 95


def find_drives(raw_root):
    """Sorted '<date>/<drive>' of every synchronised drive with Velodyne scans under `raw_root`."""
    pattern = os.path.join(raw_root, "*", "*_sync", "velodyne_points", "data")
    return sorted(os.path.relpath(os.path.dirname(os.path.dirname(path)), raw_root).replace(os.sep, "/")
                  for path in glob.glob(pattern))


def drive_frames(raw_root, drive_path, cameras):
    """Frame numbers of a drive that have a Velodyne scan and an image from every camera."""
    drive_dir = os.path.join(raw_root, drive_path)
    frames = {int(os.path.basename(path)[:-4]) for path in glob.glob(os.path.join(drive_dir, "velodyne_points",
                                                                                   "data", "*.bin"))}
    for camera in cameras:
        frames &= {int(os.path.basename(path)[:-4])
                   for path in glob.glob(os.path.join(drive_dir, f"image_0{camera}", "data", "*.png"))}
    return sorted(frames)


def split_drives(drives, val_fraction, seed):
    """(train, val) drive lists: a seeded draw of round(val_fraction · n) whole drives goes to val."""
    shuffled = sorted(drives)
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(drives) - 1, round(val_fraction * len(drives))) if len(drives) > 1 else 0
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def write_intrinsics(raw_root, out, drive_path, cameras, height, width):
    """Write K_0c.txt for the drive's output images; returns {camera: (velo→image matrix, output size)}."""
    date = drive_path.split("/")[0]
    os.makedirs(os.path.join(out, drive_path), exist_ok=True)
    matrices = {}
    for camera in cameras:
        calibration = read_calibration(os.path.join(raw_root, date), camera)
        size = (height, width) if height else calibration.size
        np.savetxt(os.path.join(out, drive_path, f"K_0{camera}.txt"),
                   scale_projection(calibration.K, calibration.size, size), fmt="%.6f")
        matrices[camera] = (scale_projection(calibration.velo_to_image, calibration.size, size), size)
    return matrices


def prepare_frame(task, raw_root, out, resize, ext, min_speed):
    """Write the image(s) and projected depth of one frame; returns its Frames, or [] when it is static."""
    drive_path, frame_number, matrices = task
    drive_dir = os.path.join(raw_root, drive_path)
    stem = f"{frame_number:010d}"
    if min_speed > 0 and read_oxts_speed(os.path.join(drive_dir, "oxts", "data", f"{stem}.txt")) < min_speed:
        return []
    points = read_velodyne(os.path.join(drive_dir, "velodyne_points", "data", f"{stem}.bin"))
    written = []
    for camera, (matrix, size) in matrices.items():
        image_in = os.path.join(drive_dir, f"image_0{camera}", "data", f"{stem}.png")
        image_out = os.path.join(out, drive_path, f"image_0{camera}", "data", f"{stem}.{ext}")
        depth_out = os.path.join(out, drive_path, "proj_depth", f"image_0{camera}", f"{stem}.png")
        os.makedirs(os.path.dirname(image_out), exist_ok=True)
        os.makedirs(os.path.dirname(depth_out), exist_ok=True)
        if not resize and ext == "png":
            shutil.copyfile(image_in, image_out)  # raw images already have the calibrated size
        else:
            image = cv2.imread(image_in, cv2.IMREAD_COLOR)
            if image is None:
                raise CorruptFileError(f"cannot decode image {image_in} (corrupt or truncated?)")
            if image.shape[:2] != size:
                image = cv2.resize(image, size[::-1], interpolation=cv2.INTER_AREA)
            if not cv2.imwrite(image_out, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise PtsemsegError(f"cannot write {image_out}")
        depth = project_to_depth_map(points, matrix, size)
        encoded = np.clip(np.round(depth * DEPTH_PNG_SCALE), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        if not cv2.imwrite(depth_out, encoded):
            raise PtsemsegError(f"cannot write {depth_out}")
        written.append(Frame(drive_path, frame_number, camera))
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description="KITTI raw drives → depth training data (layout: prepared).")
    parser.add_argument("--raw-root", required=True, help="KITTI raw folder holding <date>/<drive>_sync/")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--height", type=int, help="resize images to this height (with --width); default: keep")
    parser.add_argument("--width", type=int, help="resize images to this width (with --height)")
    parser.add_argument("--ext", choices=("png", "jpg"), default="png", help="image format written")
    parser.add_argument("--cameras", type=int, nargs="+", choices=(2, 3), default=[2, 3], help="colour cameras")
    parser.add_argument("--static-frames", help="list of static frames to drop ('<date> <drive> <frame>' lines)")
    parser.add_argument("--min-speed", type=float, default=0.5,
                        help="without --static-frames, drop frames where the car is slower (m/s, OXTS); 0 keeps all")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of drives in val.txt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drive split")
    parser.add_argument("--keep-test-drives", action="store_true", help="do not leave out the Eigen test drives")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    args = parser.parse_args(argv)
    if (args.height is None) != (args.width is None):
        raise PtsemsegError("--height and --width go together")
    if not 0 <= args.val_fraction < 1:
        raise PtsemsegError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")

    require_path(args.raw_root, "KITTI raw data", "KITTI")
    drives = find_drives(args.raw_root)
    if not drives:
        raise PtsemsegError(f"no KITTI raw drives (<date>/<drive>_sync/velodyne_points/data) under {args.raw_root}")
    if not args.keep_test_drives:
        drives = [drive for drive in drives if drive.split("/")[1] not in EIGEN_TEST_DRIVES]
    static = read_static_frames(args.static_frames) if args.static_frames else set()
    tasks = []
    for drive_path in drives:
        matrices = write_intrinsics(args.raw_root, args.out, drive_path, args.cameras, args.height, args.width)
        tasks += [(drive_path, frame, matrices) for frame in drive_frames(args.raw_root, drive_path, args.cameras)
                  if (drive_path.split("/")[1], frame) not in static]
    worker = functools.partial(prepare_frame, raw_root=args.raw_root, out=args.out, resize=bool(args.height),
                               ext=args.ext, min_speed=0 if args.static_frames else args.min_speed)
    frames = []
    with Pool(max(1, args.workers)) as pool:
        for written in tqdm(pool.imap_unordered(worker, tasks, chunksize=4), total=len(tasks), desc="frames"):
            frames += written
    train_drives, val_drives = split_drives(sorted({frame.drive_path for frame in frames}), args.val_fraction,
                                            args.seed)
    order = sorted(frames, key=lambda frame: (frame.drive_path, frame.frame, frame.camera))
    for name, split in (("train", set(train_drives)), ("val", set(val_drives))):
        write_split_file(os.path.join(args.out, f"{name}.txt"), [f for f in order if f.drive_path in split])
    print(f"{len(drives)} drives, {len(tasks)} frames listed, {len(frames)} images kept "
          f"({len(train_drives)} train / {len(val_drives)} val drives) in {args.out}")


if __name__ == "__main__":
    guarded(main)
