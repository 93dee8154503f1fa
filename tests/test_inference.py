"""Test-time inference (ptsemseg/inference.py): whole image, sliding window, scales and flips, multi-input models."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ptsemseg.augmentations import geometric
from ptsemseg.inference import (crop_inputs, default_stride, flip_inputs, infer, resize_inputs, scaled_size,
                                window_starts)
from ptsemseg.loaders.base import resize_sample
from ptsemseg.tasks import TASKS, Task

WHOLE = {"mode": "whole", "scales": [1.0], "flip": False}


class ContextNet(nn.Module):
    """Seg logits from 3×3 convolutions (spatial context, not mirror-symmetric) and a scene head."""

    input_keys = ("image",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
        self.scene = nn.Linear(8, 3)

    def forward(self, image):
        features = self.body[1](self.body[0](image))
        return {"seg": self.body[2](features), "scene": self.scene(features.mean((2, 3)))}


class PointwiseNet(nn.Module):
    """Seg logits from a 1×1 convolution: no spatial context, so windows and mirrors cannot change them."""

    input_keys = ("image",)

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.classifier = nn.Conv2d(3, 4, 1)

    def forward(self, image):
        return {"seg": self.classifier(image)}


class WindowMean(nn.Module):
    """Every pixel of a window gets the mean of the window's image (padding included): shows which pixels each
    window covered and what it was padded with."""

    input_keys = ("image",)

    def forward(self, image):
        return {"seg": image.mean((1, 2, 3), keepdim=True).expand(-1, 1, *image.shape[-2:])}


def test_one_pass_whole_image_returns_the_models_own_outputs():
    model = ContextNet().eval()
    image = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        expected = model(image)
        outputs = infer(model, {"image": image}, WHOLE)
        # One window exactly the size of the image is the whole image.
        windowed = infer(model, {"image": image}, {**WHOLE, "mode": "slide", "crop_size": [20, 28], "stride": 10})
    for name in ("seg", "scene"):
        assert torch.equal(outputs[name], expected[name])
        assert torch.equal(windowed[name], expected[name])


def test_windows_scales_and_flips_change_a_model_with_context_but_not_a_pointwise_one():
    image = torch.rand(1, 3, 20, 28)
    context, pointwise = ContextNet().eval(), PointwiseNet().eval()
    slide = {**WHOLE, "mode": "slide", "crop_size": [12, 12], "stride": [8, 8]}
    flip = {**WHOLE, "flip": True}
    with torch.no_grad():
        whole = infer(context, {"image": image}, WHOLE)["seg"]
        assert not torch.allclose(infer(context, {"image": image}, slide)["seg"], whole, atol=1e-3)
        assert not torch.allclose(infer(context, {"image": image}, flip)["seg"], whole, atol=1e-3)
        reference = pointwise(image)["seg"]
        torch.testing.assert_close(infer(pointwise, {"image": image}, slide)["seg"], reference)
        torch.testing.assert_close(infer(pointwise, {"image": image}, flip)["seg"], reference)
        # The padded last window (28 columns, crops of 12 every 8: starts 0, 8, 16) changes nothing either.
        padded = {**slide, "crop_size": [32, 40], "stride": [32, 40]}
        torch.testing.assert_close(infer(pointwise, {"image": image}, padded)["seg"], reference)


def test_flip_averages_the_mirrored_pass_and_scales_average_resized_passes():
    model = ContextNet().eval()
    image = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        outputs = infer(model, {"image": image}, {**WHOLE, "flip": True})
        plain, mirrored = model(image), model(image.flip(-1))
        torch.testing.assert_close(outputs["seg"], (plain["seg"] + mirrored["seg"].flip(-1)) / 2)
        torch.testing.assert_close(outputs["scene"], (plain["scene"] + mirrored["scene"]) / 2)

        outputs = infer(model, {"image": image}, {**WHOLE, "scales": [0.5, 1.0]})
        half = model(F.interpolate(image, size=(8, 12), mode="bilinear", align_corners=False))
        up = F.interpolate(half["seg"], size=(16, 24), mode="bilinear", align_corners=False)
        torch.testing.assert_close(outputs["seg"], (plain["seg"] + up) / 2)
        torch.testing.assert_close(outputs["scene"], (plain["scene"] + half["scene"]) / 2)


def test_overlapping_windows_are_averaged_and_small_images_padded():
    image = torch.arange(24, dtype=torch.float32).reshape(1, 1, 4, 6).expand(1, 3, 4, 6).contiguous()
    model = WindowMean()
    # Columns 0-3 and 2-5: columns 2 and 3 lie in both windows.
    out = infer(model, {"image": image}, {**WHOLE, "mode": "slide", "crop_size": 4, "stride": [4, 2]})["seg"]
    left, right = float(image[..., :4].mean()), float(image[..., 2:].mean())
    expected = torch.tensor([left, left, (left + right) / 2, (left + right) / 2, right, right]).expand(4, 6)
    torch.testing.assert_close(out[0, 0], expected)
    # One 8×8 window over the 4×6 image, padded with the image's fill (0), the padding cut from the output.
    out = infer(model, {"image": image}, {**WHOLE, "mode": "slide", "crop_size": 8})["seg"]
    assert out.shape == (1, 1, 4, 6)
    torch.testing.assert_close(out, torch.full((1, 1, 4, 6), float(image.sum()) / (3 * 64)))


def test_window_grid():
    assert window_starts(1024, 512, 341) == [0, 341, 512]
    assert window_starts(2048, 1024, 683) == [0, 683, 1024]
    assert window_starts(300, 512, 341) == [0]
    assert window_starts(512, 512, 100) == [0]
    assert default_stride([512, 1024]) == (342, 683)
    assert scaled_size((1024, 2048), 0.75) == (768, 1536)


def test_outputs_come_back_at_the_input_size_whatever_the_network_size():
    model = ContextNet().eval()
    image = torch.rand(1, 3, 30, 40)
    options = {"mode": "slide", "crop_size": [8, 16], "scales": [0.75, 1.0, 1.25], "flip": True}
    with torch.no_grad():
        outputs = infer(model, {"image": image}, options, net_size=(16, 24))
    assert outputs["seg"].shape == (1, 4, 30, 40) and outputs["scene"].shape == (1, 3)
    assert torch.isfinite(outputs["seg"]).all()


class RgbdProbe(nn.Module):
    """An RGB-D model with intrinsics whose seg output is image channel 0 minus depth: zero wherever the two inputs
    were cropped and mirrored alike. Records the K of every window."""

    input_keys = ("image", "depth", "meta")

    def __init__(self):
        super().__init__()
        self.seen_K = []

    def forward(self, image, depth, meta):
        self.seen_K.append(meta["K"].clone())
        return {"seg": image[:, :1] - depth}


def test_rgbd_inputs_and_intrinsics_move_together():
    depth = torch.rand(2, 1, 10, 14) * 5
    image = torch.cat([depth, torch.rand(2, 2, 10, 14)], 1)
    K = torch.tensor([[20.0, 0, 6.5], [0, 21.0, 4.5], [0, 0, 1]]).expand(2, 3, 3)
    model = RgbdProbe()
    options = {"mode": "slide", "crop_size": [6, 8], "stride": [4, 6], "scales": [1.0], "flip": True}
    out = infer(model, {"image": image, "depth": depth, "meta": {"K": K}}, options)["seg"]
    assert out.abs().max() == 0
    # Windows start at rows 0, 4 and columns 0, 6: unflipped first, then the mirrored image.
    corners = [(0, 0), (0, 6), (4, 0), (4, 6)]
    principal = [(6.5 - left, 4.5 - top) for top, left in corners]
    principal += [(14 - 1 - 6.5 - left, 4.5 - top) for top, left in corners]
    assert len(model.seen_K) == 8
    for seen, (cx, cy) in zip(model.seen_K, principal):
        torch.testing.assert_close(seen[:, :2, 2], torch.tensor([cx, cy]).expand(2, 2))
        torch.testing.assert_close(seen[:, 0, 0], torch.full((2,), 20.0))


def test_intrinsics_follow_the_geometric_augmentations_conventions():
    """Crops, flips and resizes of the inputs give the K that the NumPy augmentations give for the same change."""
    K = np.array([[30.0, 0, 15.5], [0, 28.0, 9.0], [0, 0, 1]], dtype=np.float32)
    sample = {"image": np.zeros((20, 32, 3), np.uint8), "meta": {"K": K}}
    view = {"image": torch.zeros(1, 3, 20, 32), "meta": {"K": torch.from_numpy(K)[None]}}
    cases = [
        (flip_inputs(view), geometric.flip(sample, horizontal=True)),
        (crop_inputs(view, 4, 6, 12, 16), geometric.crop_window(sample, 4, 6, 12, 16)),
        (resize_inputs(view, (30, 40)), geometric.resize_crop(sample, 30, 40, 0, 0, 30, 40)),
    ]
    for moved, expected in cases:
        np.testing.assert_allclose(moved["meta"]["K"][0].numpy(), expected["meta"]["K"], rtol=1e-6, atol=1e-5)
        assert tuple(moved["image"].shape[-2:]) == expected["image"].shape[:2]


@pytest.mark.parametrize("size", [(7, 9), (24, 40), (13, 17)])
def test_inputs_are_resized_as_the_loaders_resize_them(size):
    """Image bilinear and depth nearest, sampled as cv2.resize samples them (the loaders' resize, base.py)."""
    rng = np.random.default_rng(0)
    image = rng.random((16, 20, 3), dtype=np.float32)
    depth = rng.random((16, 20), dtype=np.float32) * 10
    view = resize_inputs({"image": torch.from_numpy(image.transpose(2, 0, 1))[None],
                          "depth": torch.from_numpy(depth)[None, None]}, size)
    expected = resize_sample({"image": image, "depth": depth}, size)
    np.testing.assert_array_equal(view["depth"][0, 0].numpy(), expected["depth"])
    np.testing.assert_allclose(view["image"][0].numpy().transpose(1, 2, 0), expected["image"], atol=1e-4)


class NormalsTask(Task):
    """A task predicting a vector field (its target, `normals`, moves as a vector)."""

    name = "normals"
    target_key = "normals"


class Gradient(nn.Module):
    """A 'normals' output whose x component is the horizontal image gradient: a vector field that a mirror negates."""

    input_keys = ("image",)

    def __init__(self, name):
        super().__init__()
        self.name = name

    def forward(self, image):
        padded = F.pad(image[:, :1], (1, 1, 0, 0), mode="replicate")
        gradient_x = (padded[..., 2:] - padded[..., :-2]) / 2
        return {self.name: torch.cat([gradient_x, torch.zeros_like(gradient_x), torch.ones_like(gradient_x)], 1)}


def test_flipped_vector_outputs_have_their_x_component_negated(monkeypatch):
    monkeypatch.setitem(TASKS._builders, "normals", NormalsTask)
    image = torch.rand(1, 3, 8, 10)
    model = Gradient("normals")
    flipped = infer(model, {"image": image}, {**WHOLE, "flip": True})["normals"]
    torch.testing.assert_close(flipped, model(image)["normals"])
    # The same output read as a scalar map: the mirrored pass cancels the x component.
    scalar = infer(Gradient("seg"), {"image": image}, {**WHOLE, "flip": True})["seg"]
    assert scalar[:, 0].abs().max() < 1e-6 < model(image)["normals"][:, 0].abs().max()


@pytest.mark.parametrize("options", [WHOLE, {"mode": "slide", "crop_size": 8, "scales": [0.5, 1.0], "flip": True}])
def test_infer_under_autocast_returns_float32(options):
    model = ContextNet().eval()
    with torch.no_grad():
        outputs = infer(model, {"image": torch.rand(1, 3, 16, 16)}, options,
                        forward_context=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert all(output.dtype == torch.float32 for output in outputs.values())
