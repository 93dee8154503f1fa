"""Evaluate a checkpoint on data.test_split (every task of its config): python test_depth.py --config FILE --model_path CKPT."""
from ptsemseg.cli import evaluate_main, guarded

if __name__ == "__main__":
    guarded(lambda: evaluate_main("Evaluate a checkpoint on data.test_split (the seed projects' name).", "test"))
