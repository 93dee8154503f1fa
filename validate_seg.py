"""Evaluate a segmentation checkpoint on data.val_split: python validate_seg.py --config FILE --model_path CKPT."""
from ptsemseg.cli import evaluate_main, guarded

if __name__ == "__main__":
    guarded(lambda: evaluate_main("Evaluate a segmentation checkpoint on data.val_split.", "val_split"))
