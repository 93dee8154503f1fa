"""Export the official NYUv2 labelled .mat file to the folder layout (`data.layout: folder`).

Reads `nyu_depth_v2_labeled.mat`, `splits.mat` and `classMapping40.mat` from --root and writes, for each of
the 1449 frames (id = 1-based frame number, 4 digits):
    RGB/<id>.png|jpg      colour image
    Depth/<id>.png        filled depth (`depths`), uint16 millimetres (lossless, never 8-bit)
    RawDepth/<id>.png     measured depth (`rawDepths`), uint16 millimetres, 0 = no measurement
    Label/<id>.png        40-class label, uint8, 0 = void, 1..40
    HHA/<id>.png          HHA image (with --hha; from the filled depth, normals from measured pixels)
    train.txt, test.txt   "RGB/<id>.<ext>\tLabel/<id>.png" per frame (795 / 654, SA-Gate's format)
    scenes.txt            "<id> <scene type>" per frame

    python tools/nyu_export.py --root /data/nyuv2 --out /data/nyuv2_folder [--hha] [--workers 4]
"""
import argparse
import os
import sys
from multiprocessing import Pool

import cv2
import h5py
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.cli import guarded  # noqa: E402
from ptsemseg.depth_utils import depth_to_mm, hha_encode, scale_intrinsics  # noqa: E402
from ptsemseg.errors import PtsemsegError  # noqa: E402
from ptsemseg.loaders.io import CorruptFileError, require_path  # noqa: E402
from ptsemseg.loaders.nyuv2 import (MAPPING40_FILE, MAT_FILE, NYU_K, NYU_SIZE, SECTION, SPLITS_FILE,  # noqa: E402
                                    matlab_string, read_class_mapping, read_split_indices)

FOLDERS = ("RGB", "Depth", "RawDepth", "Label")

# Per-process state of the export workers: the open .mat file and what each frame needs.
_worker = {}


def _init_worker(mat_path, out_dir, label_table, rgb_ext, with_hha):
    _worker.update(mat=h5py.File(mat_path, "r"), mat_path=mat_path, out=out_dir, table=label_table,
                   rgb_ext=rgb_ext, hha=with_hha)


def frame_id(frame):
    return f"{frame + 1:04d}"


def _write(path, image):
    if not cv2.imwrite(path, image):
        raise PtsemsegError(f"cannot write {path}")


def export_frame(frame):
    """Write every file of one 0-based frame index."""
    mat, out, name = _worker["mat"], _worker["out"], frame_id(frame)
    try:
        image = np.ascontiguousarray(mat["images"][frame].transpose(2, 1, 0))
        filled = mat["depths"][frame].T.astype(np.float32)
        raw = mat["rawDepths"][frame].T.astype(np.float32)
        labels = mat["labels"][frame].T
    except (OSError, KeyError, ValueError) as err:
        raise CorruptFileError(f"cannot read frame {frame + 1} from {_worker['mat_path']} ({err})") from None
    _write(os.path.join(out, "RGB", f"{name}.{_worker['rgb_ext']}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    _write(os.path.join(out, "Depth", f"{name}.png"), depth_to_mm(filled))
    _write(os.path.join(out, "RawDepth", f"{name}.png"), depth_to_mm(raw))
    _write(os.path.join(out, "Label", f"{name}.png"), _worker["table"][labels])
    if _worker["hha"]:
        hha = hha_encode(filled, scale_intrinsics(NYU_K, NYU_SIZE, filled.shape), valid=raw > 0)
        _write(os.path.join(out, "HHA", f"{name}.png"), cv2.cvtColor(hha, cv2.COLOR_RGB2BGR))
    return frame


def main(argv=None):
    parser = argparse.ArgumentParser(description="NYUv2 labelled .mat → RGB/Depth/RawDepth/Label(/HHA) folders.")
    parser.add_argument("--root", required=True, help=f"folder holding {MAT_FILE}, {SPLITS_FILE}, {MAPPING40_FILE}")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--rgb-ext", choices=("png", "jpg"), default="png", help="RGB format (png is lossless)")
    parser.add_argument("--hha", action="store_true", help="also write HHA images (about 0.4 s per frame)")
    parser.add_argument("--workers", type=int, default=4, help="parallel processes")
    args = parser.parse_args(argv)

    mat_path = require_path(os.path.join(args.root, MAT_FILE), "NYUv2 labelled .mat file", SECTION)
    splits_path = require_path(os.path.join(args.root, SPLITS_FILE), "NYUv2 split file", SECTION)
    map_class, _ = read_class_mapping(require_path(os.path.join(args.root, MAPPING40_FILE),
                                                   "NYUv2 40-class mapping", SECTION))
    label_table = np.zeros(65536, dtype=np.uint8)
    label_table[1:895] = map_class
    splits = {split: read_split_indices(splits_path, split) for split in ("train", "test")}
    try:
        with h5py.File(mat_path, "r") as mat:
            frames = mat["images"].shape[0]
            scene_types = ([matlab_string(mat, ref) for ref in np.asarray(mat["sceneTypes"]).ravel()]
                           if "sceneTypes" in mat else None)
    except (OSError, KeyError) as err:
        raise CorruptFileError(f"cannot read {mat_path} ({err})") from None

    for folder in FOLDERS + (("HHA",) if args.hha else ()):
        os.makedirs(os.path.join(args.out, folder), exist_ok=True)
    with Pool(max(1, args.workers), _init_worker,
              (mat_path, args.out, label_table, args.rgb_ext, args.hha)) as pool:
        for _ in tqdm(pool.imap_unordered(export_frame, range(frames)), total=frames, desc="nyu export"):
            pass
    for split, indices in splits.items():
        with open(os.path.join(args.out, f"{split}.txt"), "w", encoding="utf-8") as handle:
            handle.writelines(f"RGB/{frame_id(i)}.{args.rgb_ext}\tLabel/{frame_id(i)}.png\n" for i in indices)
    if scene_types is not None:
        with open(os.path.join(args.out, "scenes.txt"), "w", encoding="utf-8") as handle:
            handle.writelines(f"{frame_id(i)} {scene}\n" for i, scene in enumerate(scene_types))
    print(f"wrote {frames} frames to {args.out} ({len(splits['train'])} train / {len(splits['test'])} test)")


if __name__ == "__main__":
    guarded(main)
