"""The evaluation loop (ptsemseg/evaluation.py): scoring at the targets' native resolution, batches of mixed sizes,
bounded memory, the trainer's validation through the same code, and the evaluation command's outputs."""
import csv
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from ptsemseg.build import eval_loader
from ptsemseg.config import DEFAULTS, load_config, merge
from ptsemseg.errors import PtsemsegError
from ptsemseg.evaluation import InferenceTimer, accumulate, evaluate, evaluation_dataset, scores_of
from ptsemseg.loaders.base import DenseDataset, collate_by_size
from ptsemseg.tasks import TaskSet
from ptsemseg.trainer import Trainer
from tests.conftest import REPO, run_script

CPU = torch.device("cpu")

# Native 8×8 labels, the same on every row: a 2-pixel block of class 1 (columns 2-3) and a 1-pixel line (column 5).
# Nearest downsampling to 4 columns keeps columns 0, 2, 4, 6: [0, 1, 0, 0]; the line disappears.
NATIVE_ROW = np.array([0, 0, 1, 1, 0, 1, 0, 0], dtype=np.uint8)


class HandFrames(DenseDataset):
    """Frames built in the test: labels as NATIVE_ROW, sparse depth (a quarter of the pixels) of 2 m or 4 m."""

    n_classes = 2
    class_names = ("ground", "pole")
    given_keys = ("image", "label", "depth")

    def __init__(self, root=None, split="val", keys=("image", "label"), img_size=None, augmentations=None,
                 img_norm=True, skip_bad=False, sizes=((8, 8),), delay=0.0):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        self.sizes = sizes
        self.delay = delay

    def __len__(self):
        return len(self.sizes)

    def load(self, index):
        time.sleep(self.delay)
        rows, cols = self.sizes[index]
        label = np.resize(NATIVE_ROW, (rows, cols))
        depth = np.zeros((rows, cols), dtype=np.float32)
        depth[::2, 1::2] = np.where(label[::2, 1::2] == 1, 2.0, 4.0)
        sample = {"image": np.zeros((rows, cols, 3), np.uint8), "label": label, "depth": depth,
                  "meta": {"name": f"frame{index}", "index": index}}
        return self.asked(sample)


class FixedOutputs(nn.Module):
    """Outputs fixed maps (resized nearest to the input's size), whatever the image: a 'prediction' chosen by hand."""

    input_keys = ("image",)

    def __init__(self, seg_labels=None, depth=None):
        super().__init__()
        self.seg_labels = seg_labels
        self.depth = depth

    def forward(self, image):
        n, _, rows, cols = image.shape
        outputs = {}
        if self.seg_labels is not None:
            labels = cv2.resize(self.seg_labels, (cols, rows), interpolation=cv2.INTER_NEAREST)
            logits = 10.0 * torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 2).permute(2, 0, 1)
            outputs["seg"] = logits.float()[None].expand(n, -1, -1, -1)
        if self.depth is not None:
            outputs["depth"] = torch.full((n, 1, rows, cols), self.depth)
        return outputs


def config(img_size=(4, 4), **testing):
    rows, cols = img_size if img_size else ("same", "same")
    cfg = merge(DEFAULTS, {"model": {"arch": "fixed"}, "data": {"dataset": "hand", "img_rows": rows, "img_cols": cols}})
    cfg["testing"].update(testing)
    cfg["training"].update(amp=False, channels_last=False)
    return cfg


def score(model, task, cfg, dataset):
    tasks = TaskSet(task, dataset)
    return evaluate(model, eval_loader(cfg, dataset, CPU), tasks, cfg, CPU)[0]


def hand_dataset(cfg, keys=("image", "label"), **options):
    size = None if cfg["data"]["img_rows"] == "same" else (cfg["data"]["img_rows"], cfg["data"]["img_cols"])
    dataset = HandFrames(keys=keys, img_size=size, **options)
    return dataset.keep_native_size() if cfg["testing"]["score_at"] == "native" else dataset


def test_a_prediction_perfect_at_the_network_size_is_not_perfect_at_native_size():
    # At 4×4 the prediction is the nearest-downsampled label [0, 1, 0, 0] per row.
    model = FixedOutputs(seg_labels=np.tile(np.array([0, 1, 0, 0], np.uint8), (4, 1)))
    at_input = score(model, "seg", config(score_at="input"), hand_dataset(config(score_at="input")))
    assert at_input["seg/mean_iou"] == 1.0 and at_input["seg/overall_acc"] == 1.0
    # At 8×8 the logits, resized bilinearly, predict class 1 on columns 2-3 only and miss the line at column 5:
    # ground IoU 5/6 (5 right of 6 predicted), pole IoU 2/3 (2 of 3 found).
    native = score(model, "seg", config(), hand_dataset(config()))
    assert native["seg/overall_acc"] == pytest.approx(7 / 8)
    assert native["seg/per_class_iou"] == pytest.approx([5 / 6, 2 / 3])
    assert native["seg/mean_iou"] == pytest.approx(0.75)


@pytest.mark.parametrize("img_size", [(4, 4), (3, 5), None])
def test_a_constant_prediction_scores_the_same_at_any_network_size(img_size):
    """Scored at native size, a constant prediction's scores do not depend on the network's size."""
    cfg = config(img_size)
    seg = score(FixedOutputs(seg_labels=np.zeros((1, 1), np.uint8)), "seg", cfg, hand_dataset(cfg))
    assert seg["seg/per_class_iou"][0] == pytest.approx(5 / 8) and seg["seg/per_class_iou"][1] == 0
    # Sparse depth on rows 0, 2, 4, 6 and columns 1, 3, 5, 7: 8 points at 4 m (ground) and 8 at 2 m (the pole's
    # columns 3 and 5), predicted 3 m everywhere: abs_rel = (8·1/4 + 8·1/2) / 16.
    depth = score(FixedOutputs(depth=3.0), "depth", cfg, hand_dataset(cfg, keys=("image", "depth")))
    assert depth["depth/abs_rel"] == pytest.approx((8 * 0.25 + 8 * 0.5) / 16)
    assert depth["depth/n_images"] == 1


def test_scoring_at_the_input_size_loses_sparse_depth_points():
    """Resized to 4×4 (nearest: rows and columns 0, 2, 4, 6), the depth on odd columns is gone."""
    assert int((hand_dataset(config(score_at="input"), keys=("image", "depth"))[0]["depth"] > 0).sum()) == 0
    assert int((hand_dataset(config(), keys=("image", "depth"))[0]["depth"] > 0).sum()) == 16


class TwoColumnDepth(nn.Module):
    """Depth 4 m in the left half and 8 m in the right half at the network's size, whatever the image."""

    input_keys = ("image",)

    def forward(self, image):
        n, _, rows, cols = image.shape
        depth = torch.full((n, 1, rows, cols), 4.0)
        depth[..., cols // 2:] = 8.0
        return {"depth": depth}


def test_depth_predicted_as_disparity_is_resized_as_disparity():
    """Network at 2×2, scored at native 8×8: with testing.pred_disp the disparity (1/4, 1/8) is interpolated and
    inverted, so the blend between the halves is harmonic, not linear (column 4: 0.625 of the way from 4 to 8
    is 6.5 m linearly, 1 / (0.25 - 0.625 · 0.125) = 5.818... m as disparity)."""
    columns = {}
    for pred_disp in (False, True):
        cfg = config((2, 2), pred_disp=pred_disp)
        dataset = hand_dataset(cfg, keys=("image", "depth"))
        _, _, predictions = accumulate(TwoColumnDepth(), eval_loader(cfg, dataset, CPU), TaskSet("depth", dataset),
                                       cfg, CPU)
        columns[pred_disp] = predictions["depth"][0, 0, 0]
    weight = 0.625  # bilinear, pixel centres: column 4 of 8 samples x = (4.5 / 4) - 0.5 of a 2-wide map
    assert columns[False][4].item() == pytest.approx(4.0 + weight * 4.0)
    assert columns[True][4].item() == pytest.approx(1.0 / (0.25 - weight * 0.125))
    assert columns[True][0].item() == pytest.approx(4.0) and columns[True][7].item() == pytest.approx(8.0)


def test_frames_of_different_sizes_share_a_loader():
    samples = [HandFrames(sizes=((8, 8), (6, 10), (8, 8)))[i] for i in range(3)]
    batches = collate_by_size(samples)
    assert [tuple(batch["label"].shape) for batch in batches] == [(2, 8, 8), (1, 6, 10)]
    assert batches[0]["meta"]["name"] == ["frame0", "frame2"]

    cfg = config(img_size=(4, 4))
    cfg["training"]["val_batch_size"] = 3
    dataset = hand_dataset(cfg, sizes=((8, 8), (6, 10), (8, 8), (8, 12)))
    metrics, batch, predictions = accumulate(FixedOutputs(seg_labels=np.zeros((1, 1), np.uint8)),
                                             eval_loader(cfg, dataset, CPU), TaskSet("seg", dataset), cfg, CPU)
    labelled = sum(dataset[i]["label"].numel() for i in range(len(dataset)))
    assert int(metrics["seg"].confusion.sum()) == labelled
    assert predictions["seg"].shape == batch["label"].shape == (1, 8, 12)


def test_inference_time_excludes_data_loading():
    cfg = config()
    dataset = hand_dataset(cfg, sizes=((8, 8),) * 4, delay=0.25)
    timer = InferenceTimer(CPU)
    accumulate(FixedOutputs(seg_labels=np.zeros((1, 1), np.uint8)), eval_loader(cfg, dataset, CPU),
               TaskSet("seg", dataset), cfg, CPU, timer=timer)
    assert timer.images == 4 and timer.seconds < 0.25
    assert "ms per image (4 images on cpu" in timer.summary()


MEMORY_PROBE = """
import resource, sys
import numpy as np, torch, torch.nn as nn
from ptsemseg.build import eval_loader
from ptsemseg.evaluation import evaluate
from ptsemseg.tasks import TaskSet
from tests.test_evaluation import HandFrames, config

class Frames(HandFrames):
    n_classes = 19
    class_names = tuple(str(i) for i in range(19))

class PixelClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 19, 1)

    def forward(self, image):
        return {"seg": self.conv(image)}

torch.manual_seed(0)
model = PixelClassifier()
cfg = config((256, 512))
cfg["training"]["val_batch_size"] = 1
dataset = Frames(img_size=(256, 512), sizes=((1024, 2048),) * int(sys.argv[1])).keep_native_size()
scores, _, _ = evaluate(model, eval_loader(cfg, dataset, torch.device("cpu")), TaskSet("seg", dataset), cfg,
                        torch.device("cpu"))
assert scores["seg/overall_acc"] >= 0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_stays_bounded_on_full_size_frames():
    """Peak memory of a whole evaluation on 2048×1024 frames (19 classes) does not grow with the number of frames:
    keeping each frame's predicted labels alone would add 16 MB per frame, its logits 160 MB. glibc's malloc gets a
    fixed mmap threshold, so that freed blocks go back to the system and the peak measures what is alive."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="1048576")

    def peak_mb(n_frames):
        result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n_frames)], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1]) / 1024

    assert peak_mb(6) - peak_mb(2) < 8


@pytest.mark.parametrize("overrides, fragments", [
    (["testing.mode=sliding"], ["testing.mode", "whole or slide", "'sliding'"]),
    (["testing.mode=slide"], ["testing.crop_size", "needed with testing.mode slide"]),
    (["testing.mode=slide", "testing.crop_size=[512, 0]"], ["testing.crop_size", "[512, 0]"]),
    (["testing.crop_size=[64, 64]", "testing.stride=[65, 32]"], ["testing.stride", "must not exceed"]),
    (["testing.scales=1.0"], ["testing.scales", "list of positive numbers"]),
    (["testing.scales=[0.5, -1]"], ["testing.scales", "-1"]),
    (["testing.flip=maybe"], ["testing.flip", "true or false"]),
    (["testing.score_at=label"], ["testing.score_at", "native", "'label'"]),
])
def test_bad_testing_keys_fail_in_one_line(write_config, overrides, fragments):
    with pytest.raises(PtsemsegError) as caught:
        load_config(write_config(), overrides)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_evaluation_datasets_keep_native_sizes(tmp_path, write_config):
    from tests.miniature_datasets import CITYSCAPES_COLS, CITYSCAPES_ROWS, make_cityscapes

    root = make_cityscapes(tmp_path / "cityscapes")
    path = write_config(data={"dataset": "cityscapes", "path": str(root), "img_rows": 8, "img_cols": 16})
    for score_at, size in (("native", (CITYSCAPES_ROWS, CITYSCAPES_COLS)), ("input", (8, 16))):
        cfg = load_config(path, ["data.length=", f"testing.score_at={score_at}"])
        sample = evaluation_dataset(cfg, "val", ("image", "label"))[0]
        assert tuple(sample["image"].shape[-2:]) == tuple(sample["label"].shape) == size, score_at


def test_trainer_validation_and_the_evaluation_command_agree_under_every_option(write_config, tmp_path):
    """A tiny run validating with windows, scales and flips: its last scores are what validate_seg.py finds on its
    checkpoint, and the command writes the confusion matrix where --out says and the time per image."""
    testing = {"mode": "slide", "crop_size": [16, 32], "stride": [12, 20], "scales": [0.75, 1.0], "flip": True}
    path = write_config(training={"train_iters": 4, "val_interval": 4}, testing=testing)
    trainer = Trainer(load_config(path), path)
    scores = trainer.run()
    out_json, out_dir = tmp_path / "scores.json", tmp_path / "confusion"
    result = run_script("validate_seg.py", "--config", path, "--model_path", os.path.join(trainer.run_dir, "last.pt"),
                        "--out-json", str(out_json), "--out", str(out_dir), "--measure-time")
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(out_json.read_text())
    assert evaluated["seg/mean_iou"] == pytest.approx(scores["seg/mean_iou"], rel=1e-4)
    assert "ms per image" in result.stdout and "floor" in result.stdout

    rows = list(csv.reader(open(out_dir / "confusion_seg_val.csv")))
    names = trainer.tasks.tasks["seg"].class_names
    assert rows[0][1:] == list(names) and [row[0] for row in rows[1:]] == list(names)
    counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.float64)
    iou = np.diag(counts) / (counts.sum(0) + counts.sum(1) - np.diag(counts))
    np.testing.assert_allclose(iou, [np.nan if v is None else v for v in evaluated["seg/per_class_iou"]])
    picture = cv2.imread(str(out_dir / "confusion_seg_val.png"))
    assert picture is not None and min(picture.shape[:2]) >= 400


def test_the_confusion_matrix_goes_beside_the_checkpoint_by_default(write_config, tmp_path):
    path = write_config(training={"train_iters": 2, "val_interval": 2})
    trainer = Trainer(load_config(path), path)
    trainer.run()
    checkpoint = tmp_path / "elsewhere" / "model.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(open(os.path.join(trainer.run_dir, "last.pt"), "rb").read())
    result = run_script("evaluate.py", "--config", path, "--model_path", str(checkpoint))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(checkpoint.parent)) == ["confusion_seg_val.csv", "confusion_seg_val.png", "model.pt"]
    assert f"confusion matrix of seg: {checkpoint.parent / 'confusion_seg_val.csv'}" in result.stdout


def test_scores_of_names_every_score_by_task():
    metrics = {"seg": TaskSet("seg", HandFrames()).tasks["seg"].metrics(CPU)}
    metrics["seg"].update(torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long))
    assert scores_of(metrics)["seg/overall_acc"] == 1.0
