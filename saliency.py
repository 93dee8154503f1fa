"""Pixel-wise saliency maps of segmentation and depth models (ptsemseg/saliency.py, docs/saliency.md):
python saliency.py {demo,eval,iou,analysis} ..."""
from ptsemseg.cli import guarded
from ptsemseg.saliency import main

if __name__ == "__main__":
    guarded(main)
