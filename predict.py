"""Predict segmentation / depth for images, folders or globs (or a dataset split), writing the raw predictions and
pictures: python predict.py [--config FILE] --model_path CKPT INPUT... --out DIR (ptsemseg/predict.py)."""
from ptsemseg.cli import guarded
from ptsemseg.predict import predict_main

if __name__ == "__main__":
    guarded(predict_main)
