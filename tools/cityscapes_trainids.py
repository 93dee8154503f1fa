"""Write Cityscapes `*_gtFine_labelTrainIds.png` (19 train ids, 255 = ignore) next to every `*_gtFine_labelIds.png`.

The loader maps label ids on the fly; ready train-id PNGs (`data.label_type: labelTrainIds`) save that step
and are what other toolkits expect.

    python tools/cityscapes_trainids.py --root /data/cityscapes [--splits train val] [--workers 4]
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
from ptsemseg.errors import PtsemsegError  # noqa: E402
from ptsemseg.loaders.io import CorruptFileError, read_gray, require_path  # noqa: E402
from ptsemseg.loaders.labels import label_ids_to_train_ids  # noqa: E402

LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"


def convert(label_ids_path):
    """Write the train-id PNG of one label-id PNG; returns the written path."""
    label_ids = read_gray(label_ids_path)
    if label_ids.dtype.itemsize != 1:
        raise CorruptFileError(f"expected an 8-bit label PNG, got {label_ids.dtype}: {label_ids_path}")
    out_path = label_ids_path[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX
    if not cv2.imwrite(out_path, label_ids_to_train_ids(label_ids)):
        raise PtsemsegError(f"cannot write {out_path}")
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description="Cityscapes labelIds → labelTrainIds PNGs.")
    parser.add_argument("--root", required=True, help="Cityscapes folder holding gtFine/")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="gtFine splits to convert")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel processes")
    parser.add_argument("--overwrite", action="store_true", help="redo files that already exist")
    args = parser.parse_args(argv)

    paths = []
    for split in args.splits:
        split_dir = require_path(os.path.join(args.root, "gtFine", split), f"Cityscapes gtFine/{split}", "Cityscapes")
        found = sorted(glob.glob(os.path.join(split_dir, "*", "*" + LABEL_IDS_SUFFIX)))
        if not found:
            raise PtsemsegError(f"no *{LABEL_IDS_SUFFIX} files in {split_dir}/<city>/")
        paths += found
    if not args.overwrite:
        paths = [path for path in paths if not os.path.exists(path[:-len(LABEL_IDS_SUFFIX)] + TRAIN_IDS_SUFFIX)]
    with Pool(max(1, args.workers)) as pool:
        for _ in tqdm(pool.imap_unordered(convert, paths, chunksize=8), total=len(paths), desc="labelTrainIds"):
            pass
    print(f"wrote {len(paths)} *{TRAIN_IDS_SUFFIX} files under {args.root}/gtFine")


if __name__ == "__main__":
    guarded(main)
