"""Evaluate a checkpoint on data.val_split (every task of its config), writing the confusion matrix as CSV and PNG:
python validate_seg.py --config FILE --model_path CKPT [--out DIR] [--measure-time]."""
from ptsemseg.cli import evaluate_main, guarded

if __name__ == "__main__":
    guarded(lambda: evaluate_main("Evaluate a checkpoint on data.val_split (the seed projects' name).", "val"))
