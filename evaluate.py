"""Evaluate a checkpoint on every task of its config: python evaluate.py --config FILE --model_path CKPT [--split val]."""
from ptsemseg.cli import evaluate_main, guarded

if __name__ == "__main__":
    guarded(lambda: evaluate_main("Evaluate a checkpoint on data.<split>_split for every task of its config.", "val"))
