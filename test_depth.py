"""Evaluate a depth checkpoint on data.test_split: python test_depth.py --config FILE --model_path CKPT."""
from ptsemseg.cli import evaluate_main, guarded

if __name__ == "__main__":
    guarded(lambda: evaluate_main("Evaluate a depth checkpoint on data.test_split.", "test_split"))
