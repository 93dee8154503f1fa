"""Train a model described by a YAML config: python train.py --config FILE [--opts key=value ...]."""
from ptsemseg.cli import guarded, train_main

if __name__ == "__main__":
    guarded(train_main)
