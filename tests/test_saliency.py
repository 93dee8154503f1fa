"""Saliency maps (ptsemseg/saliency.py, saliency.py): batched maps equal one backward pass per pixel for every
architecture, the seed's metrics on hand-made maps, and every subcommand end to end on synthetic-trained models."""
import csv
import functools
import json
import math
import os

import cv2
import numpy as np
import pytest
import torch
import yaml

from ptsemseg.cli import train_main
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import get_model, model_input_keys
from ptsemseg.models._inputs import example_inputs
from ptsemseg.saliency import (Saliency, batch_norms_as_affine, crop_box, frame_inputs, load_saliency_model, main,
                               normalized_crop, range_and_density, region_iou, saliency_maps, split_dataset,
                               target_grid)
from tests.conftest import run_script, tiny_config
from tests.test_model_contract import MODEL_CASES

SIZE = (29, 37)  # odd on purpose
TARGETS = {"seg": ([0, 14, 28], [0, 18, 36]), "depth": ([28, 3], [0, 20])}


def zoo_model(model_cfg, heads):
    """A zoo model built with a fixed seed, then randomized."""
    torch.manual_seed(0)
    return randomized(get_model(model_cfg, heads))


def randomized(model):
    """`model` in eval mode with its all-zero weights (FCN's score layers, biases) and its BatchNorm statistics
    drawn at random, so every gradient path carries signal and BatchNorm is not the identity."""
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.normal_(0, 0.05)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model.eval()


def one_backward_per_pixel(model, inputs, head, rows, cols, channels):
    """The reference: one forward pass, then one backward pass per target (as the seed); {key: T×H×W}."""
    keys = model.input_keys
    inputs = [x if key == "meta" else x.clone().requires_grad_() for key, x in zip(keys, inputs)]
    maps = [x for key, x in zip(keys, inputs) if key != "meta"]
    output = model(*inputs)[head]
    per_target = []
    for row, col, channel in zip(rows, cols, channels):
        grads = torch.autograd.grad(output[0, channel, row, col], maps, retain_graph=True, allow_unused=True)
        per_target.append([torch.zeros_like(x[0, 0]) if g is None else g[0].abs().amax(0) for x, g in zip(maps, grads)])
    return {key: torch.stack([target[i] for target in per_target])
            for i, key in enumerate(key for key in keys if key != "meta")}


@pytest.mark.parametrize("arch", list(MODEL_CASES))
def test_batched_saliency_equals_one_backward_per_pixel(arch):
    model_cfg = {"arch": arch, **MODEL_CASES[arch]}
    model = zoo_model(model_cfg, {"seg": 5, "depth": 1})
    keys = model_input_keys(model_cfg)
    inputs = example_inputs(keys, 1, SIZE, generator=torch.Generator().manual_seed(1))
    for head, (rows, cols) in TARGETS.items():
        saliency = Saliency(model, head, chunk_size=2, method="vmap")
        output = saliency.forward(inputs)
        channels = saliency.target_channels(torch.tensor(rows), torch.tensor(cols))
        chunks = list(saliency.maps(rows, cols, channels))
        assert saliency.method == "vmap", f"{arch} fell back to the loop"
        assert [start for start, _ in chunks] == list(range(0, len(rows), 2))
        batched = {key: torch.cat([maps[key] for _, maps in chunks]) for key in saliency.map_keys}
        expected = one_backward_per_pixel(model, inputs, head, rows, cols, channels)
        assert list(batched) == [key for key in keys if key != "meta"], "one map per input modality"
        if head == "seg":
            assert channels.tolist() == output[0, :, rows, cols].argmax(0).tolist()
        for key, maps in expected.items():
            assert batched[key].shape == (len(rows), *SIZE)
            scale = maps.amax((1, 2), keepdim=True)
            assert scale.max() > 0 or key != "image", f"{arch} {head}: every saliency map of the image is zero"
            error = ((batched[key] - maps).abs() / scale.clamp_min(1e-30)).max()
            assert error <= 1e-5, f"{arch} {head} {key}: batched maps differ from one backward per pixel by {error}"


class NumpyBackward(torch.autograd.Function):
    """Identity whose backward leaves PyTorch through NumPy, as a custom op's might: vmap cannot batch it."""

    @staticmethod
    def forward(x):
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return torch.from_numpy(grad.detach().numpy().copy())


class OldStyleFunction(torch.autograd.Function):
    """Identity written in the style torch.func cannot trace (forward takes ctx)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class CustomOpNet(torch.nn.Module):
    input_keys = ("image",)

    def __init__(self, function):
        super().__init__()
        self.function = function
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.norm = torch.nn.BatchNorm2d(2)

    def forward(self, image):
        return {"seg": self.norm(self.conv(self.function.apply(image)))}


@pytest.mark.parametrize("function", [NumpyBackward, OldStyleFunction], ids=lambda function: function.__name__)
def test_a_model_torch_func_cannot_run_falls_back_to_the_loop(function):
    torch.manual_seed(0)
    model = randomized(CustomOpNet(function))
    image = torch.rand(1, 3, 9, 11)
    rows, cols = [0, 4, 8], [0, 5, 10]
    saliency = Saliency(model, "seg", chunk_size=2, method="vmap")
    with pytest.warns(UserWarning, match="one backward pass per target"):  # in the forward or the backward pass
        saliency.forward([image])
        channels = saliency.target_channels(rows, cols)
        maps = torch.cat([chunk["image"] for _, chunk in saliency.maps(rows, cols, channels)])
    assert saliency.method == "loop"
    expected = one_backward_per_pixel(model, [image], "seg", rows, cols, channels)
    torch.testing.assert_close(maps, expected["image"], rtol=1e-5, atol=1e-7)


def test_the_loop_gives_the_maps_of_every_modality_and_is_the_cpu_default():
    rows, cols = TARGETS["seg"]
    model = zoo_model({"arch": "ssma", **MODEL_CASES["ssma"]}, {"seg": 3})
    inputs = example_inputs(("image", "depth"), 1, SIZE, generator=torch.Generator().manual_seed(1))
    saliency = Saliency(model, "seg", chunk_size=2)
    saliency.forward(inputs)
    assert saliency.method == "loop"
    channels = saliency.target_channels(rows, cols)
    chunks = list(saliency.maps(rows, cols, channels))
    expected = one_backward_per_pixel(model, inputs, "seg", rows, cols, channels)
    for key in ("image", "depth"):
        torch.testing.assert_close(torch.cat([maps[key] for _, maps in chunks]), expected[key], rtol=1e-6,
                                   atol=1e-6 * float(expected[key].max()))
    assert all(param.grad is None for param in model.parameters()), "no weight gradient is computed"


def test_batch_norms_as_affine_compute_the_same_function_and_are_restored():
    model = zoo_model({"arch": "deeplab", "backbone": "resnet18"}, {"seg": 3})
    image = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        expected = model(image)["seg"]
        with batch_norms_as_affine(model):
            affine = model(image)["seg"]
    torch.testing.assert_close(affine, expected, rtol=1e-5, atol=1e-5)
    assert not any("forward" in vars(module) for module in model.modules())


def test_bf16_autocast_runs_batched_and_stays_near_float32():
    """Under CPU bf16 autocast the batch norms' backward batches too; the maps carry bf16's rounding."""
    model = zoo_model({"arch": "deeplab", "backbone": "resnet18"}, {"seg": 3})
    image = [torch.rand(1, 3, *SIZE)]
    rows, cols = TARGETS["seg"]
    exact, _, _ = saliency_maps(model, image, "seg", rows, cols, channel=0)
    bf16 = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    rounded, _, _ = saliency_maps(model, image, "seg", rows, cols, channel=0, autocast=bf16, method="vmap")
    relative = ((rounded["image"] - exact["image"]).flatten(1).norm(dim=1) / exact["image"].flatten(1).norm(dim=1))
    assert (relative < 0.5).all(), relative


def test_target_pixels_and_channels_are_checked():
    model = zoo_model({"arch": "fcrn", "backbone": "resnet18"}, {"seg": 3})
    saliency = Saliency(model, "seg")
    saliency.forward([torch.rand(1, 3, *SIZE)])
    with pytest.raises(PtsemsegError, match=r"\(row 29, col 0\) is outside the 29×37 output"):
        next(saliency.maps([29], [0], [0]))
    with pytest.raises(PtsemsegError, match="channel 3 is outside"):
        saliency.target_channels(torch.tensor([0]), torch.tensor([0]), channel=3)
    with pytest.raises(PtsemsegError, match="no output 'depth'"):
        Saliency(model, "depth").forward([torch.rand(1, 3, *SIZE)])
    with pytest.raises(PtsemsegError, match="one frame at a time"):
        saliency.forward([torch.rand(2, 3, *SIZE)])


# The seed's metrics on hand-made maps.

def test_garg_crop_and_target_grid_follow_the_seed():
    # int(0.40810811·256) = 104, int(0.99189189·256) = 253, int(0.03594771·832) = 29, int(0.96405229·832) = 802
    assert crop_box((256, 832), "garg") == (104, 253, 29, 802)
    assert crop_box((256, 832), "full") == (0, 256, 0, 832)
    rows, cols = target_grid((0, 10, 2, 9), 3)  # rows 3, 6, 9; cols 5, 8
    assert rows.tolist() == [3, 3, 6, 6, 9, 9] and cols.tolist() == [5, 8, 5, 8, 5, 8]
    with pytest.raises(PtsemsegError, match="leaves no target"):
        target_grid((0, 3, 0, 10), 3)


def test_normalisation_is_the_seeds_min_over_max():
    maps = torch.tensor([[[9.0, 2.0, 4.0], [0.0, 6.0, 8.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    # crop rows 0..1, cols 1..2 of map 0: [2, 4; 6, 8] -> (s - 2) / 8
    assert normalized_crop(maps, (0, 2, 1, 3))[0].tolist() == [[0.0, 0.25], [0.5, 0.75]]
    assert normalized_crop(maps, (0, 2, 0, 3))[1].tolist() == [[0.0] * 3] * 2


def test_activation_range_and_density_on_a_hand_map():
    saliency = torch.zeros(2, 4, 5)
    saliency[0, 0, 0], saliency[0, 3, 4], saliency[0, 1, 2] = 0.95, 0.6, 0.2
    ranges, densities = range_and_density(saliency, torch.tensor([1, 1]), torch.tensor([2, 2]))
    diagonal = math.hypot(4, 5)
    # t = 0.1: pixels (0,0), (3,4), (1,2): farthest from the target (1,2) is (3,4) at √8; t = 0.5: (0,0) at √5 and
    # (3,4) at √8; t = 0.9: (0,0) at √5. An all-zero map has no active pixel: range and density 0.
    assert ranges[0].tolist() == pytest.approx([math.sqrt(8) / diagonal, math.sqrt(8) / diagonal,
                                                math.sqrt(5) / diagonal])
    assert densities[0].tolist() == pytest.approx([3 / 20, 2 / 20, 1 / 20])
    assert ranges[1].tolist() == [0, 0, 0] and densities[1].tolist() == [0, 0, 0]


def test_region_iou_on_hand_maps():
    first = torch.tensor([[[1.0, 0.6, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])
    second = torch.tensor([[[1.0, 0.0, 0.6, 0.07]], [[0.0, 0.0, 0.0, 0.0]]])
    ious = region_iou(first, second, thresholds=(0.05, 0.5, 0.9))
    assert ious[0].tolist() == pytest.approx([1 / 4, 1 / 3, 1.0])
    assert torch.isnan(ious[1]).all(), "both regions empty: 0/0 as the seed"


# Every subcommand on models trained for two iterations on the built-in dataset.

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Configs and checkpoints of a segmentation and a depth DeepLab (ResNet-18) trained for 2 iterations."""
    root = tmp_path_factory.mktemp("saliency")
    runs = {}
    for task in ("seg", "depth"):
        cfg = tiny_config(task, training={"train_iters": 2, "val_interval": 2, "out_dir": str(root / task)},
                          data={"length": {"train": 8, "val": 3}})
        path = root / f"{task}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        train_main(["--config", str(path)])
        runs[task] = (str(path), str(root / task / "last.pt"))
    return root, runs


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_demo_writes_the_picture_and_the_maps_of_one_pixel(trained, capsys):
    root, runs = trained
    config, checkpoint = runs["seg"]
    image_path = str(root / "frame.png")
    cv2.imwrite(image_path, np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    main(["demo", "--config", config, "--model_path", checkpoint, "--image", image_path, "--pixel", "10", "20",
          "--out", str(root / "demo")])
    assert "pixel (row 10, col 20): class" in capsys.readouterr().out
    main(["demo", "--config", config, "--model_path", checkpoint, "--index", "1", "--pixel", "31", "0",
          "--out", str(root / "demo")])
    picture = cv2.imread(str(root / "demo" / "saliency_val1_seg_31_0.png"))
    assert picture is not None and picture.shape[1] > 600
    maps = np.load(root / "demo" / "saliency_val1_seg_31_0.npz")
    assert os.path.isfile(root / "demo" / "saliency_frame_seg_10_20.png")

    cfg = load_config(config)
    model, device, autocast = load_saliency_model(cfg, checkpoint)
    inputs = frame_inputs(split_dataset(cfg, "val")[1], model, device, cfg["training"]["channels_last"])
    expected, _, _ = saliency_maps(model, inputs, "seg", [31], [0], autocast=autocast)
    assert maps["image"].shape == (32, 48)
    np.testing.assert_allclose(maps["image"], expected["image"][0].numpy(), rtol=1e-6)


def test_eval_iou_and_analysis_run_end_to_end(trained):
    root, runs = trained
    out = str(root / "eval")
    sweep = ["--num_image", "2", "--sample_rate", "8", "--crop", "garg", "--out", out]
    for task in ("seg", "depth"):
        main(["eval", "--config", runs[task][0], "--model_path", runs[task][1], *sweep])
    main(["iou", "--seg-config", runs["seg"][0], "--seg-model", runs["seg"][1], "--depth-config", runs["depth"][0],
          "--depth-model", runs["depth"][1], *sweep])
    # Garg crop of 32×48: rows 13..31, cols 1..46; targets at rows 21, 29 and cols 9, 17, 25, 33, 41.
    seg = read_rows(os.path.join(out, "saliency_seg_val.csv"))
    assert [(row["image"], row["row"], row["col"]) for row in seg] == [
        (str(image), str(r), str(c)) for image in (0, 1) for r in (21, 29) for c in (9, 17, 25, 33, 41)]
    metrics = [name for name in seg[0] if "@" in name]
    assert metrics == [f"image/{m}@{t}" for m in ("act_d", "act_ratio") for t in ("0.1", "0.5", "0.9")]
    assert all(0 <= float(row[name]) <= 1 for row in seg for name in metrics)
    assert all(float(row["image/act_d@0.1"]) >= float(row["image/act_d@0.9"]) for row in seg)
    summary = json.loads(open(os.path.join(out, "saliency_seg_val.json")).read())
    assert summary["targets"] == 20 and summary["method"] == "loop"
    assert summary["mean"]["image/act_ratio@0.5"] == pytest.approx(
        np.mean([float(row["image/act_ratio@0.5"]) for row in seg]), abs=1e-5)
    depth = read_rows(os.path.join(out, "saliency_depth_val.csv"))
    assert {row["channel"] for row in depth} == {"0"}
    ious = read_rows(os.path.join(out, "saliency_iou_val.csv"))
    assert len(ious) == 20 and all(0 <= float(row["image/iou@0.05"]) <= 1 for row in ious)

    analysis_dir = root / "analysis"
    main(["analysis", "--seg", os.path.join(out, "saliency_seg_val.csv"), "--depth",
          os.path.join(out, "saliency_depth_val.csv"), "--iou", os.path.join(out, "saliency_iou_val.csv"),
          "--out", str(analysis_dir)])
    pictures = sorted(name for name in os.listdir(analysis_dir) if name.endswith(".png"))
    assert len(pictures) == 6 + 4 and all(cv2.imread(str(analysis_dir / name)) is not None for name in pictures)
    report = json.loads((analysis_dir / "saliency_analysis.json").read_text())
    assert [result["metric"] for result in report["metrics"]] == metrics
    assert set(report["iou"]) == {f"image/iou@{t}" for t in ("0.05", "0.1", "0.5", "0.9")}


def write_eval_csv(path, values):
    """An eval CSV with `values[image]` as the act_d@0.1 of 6 targets per image."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "name", "row", "col", "channel", "image/act_d@0.1"])
        for image, column in enumerate(values):
            writer.writerows([image, f"f{image}", 5, col, 0, value] for col, value in enumerate(column))


def test_analysis_counts_images_where_depth_uses_more_of_the_input(tmp_path):
    seg = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.5] * 6]
    depth = [[0.2, 0.4, 0.5, 0.7, 0.9, 1.1], [0.5] * 6]  # image 0: every pixel larger, exact two-sided p = 2/64
    write_eval_csv(tmp_path / "seg.csv", seg)
    write_eval_csv(tmp_path / "depth.csv", depth)
    main(["analysis", "--seg", str(tmp_path / "seg.csv"), "--depth", str(tmp_path / "depth.csv"),
          "--out", str(tmp_path / "out")])
    (result,) = json.loads((tmp_path / "out" / "saliency_analysis.json").read_text())["metrics"]
    assert result["images_depth_larger"] == 1 and result["images_seg_larger"] == 0
    assert result["seg_mean"] == pytest.approx(np.mean(seg)) and result["depth_mean"] == pytest.approx(np.mean(depth))
    assert os.path.isfile(tmp_path / "out" / "hist_image_act_d_0.1.png")


def test_mistakes_fail_in_one_line(trained, tmp_path):
    root, runs = trained
    config, checkpoint = runs["seg"]
    result = run_script("saliency.py", "demo", "--config", config, "--model_path", checkpoint, "--index", "0",
                        "--pixel", "32", "5", "--out", str(tmp_path / "demo"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "(row 32, col 5) is outside the 32×48 output" in result.stderr
    write_eval_csv(tmp_path / "seg.csv", [[0.1] * 6])
    write_eval_csv(tmp_path / "depth.csv", [[0.1] * 5])
    with pytest.raises(PtsemsegError, match="hold different target pixels"):
        main(["analysis", "--seg", str(tmp_path / "seg.csv"), "--depth", str(tmp_path / "depth.csv"),
              "--out", str(tmp_path / "out")])
    with pytest.raises(PtsemsegError, match="was trained for seg, the config's task is depth"):
        main(["eval", "--config", runs["depth"][0], "--model_path", checkpoint, "--out", str(tmp_path / "eval")])
    with pytest.raises(PtsemsegError, match="--channel 6: output 'seg' has channels 0..5"):
        main(["eval", "--config", config, "--model_path", checkpoint, "--channel", "6", "--out", str(tmp_path / "eval")])
    with pytest.raises(PtsemsegError, match="is not a CSV of saliency.py eval or iou"):
        main(["analysis", "--seg", config, "--depth", config, "--out", str(tmp_path / "out")])
    assert not os.path.exists(tmp_path / "eval") and not os.path.exists(tmp_path / "out")
