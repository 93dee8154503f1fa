"""Malleable 2.5D: the convolution itself (flat depth = one plain conv, learnable bins, invalid depth, any stride
and dilation), the reference's exact size, the network's inputs, heads and auxiliary outputs."""
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import get_model, model_input_keys
from ptsemseg.models.malleable25d import INVALID_WEIGHT, MalleableConv2d
from ptsemseg.trainer import Trainer
from tests.conftest import REPO
from tests.miniature_datasets import write_nyu_mat, write_sun

# The reference (RGBD_Semantic_Segmentation_PyTorch, malleable2_5d.nyu.res101) at 40 classes, and its four
# malleable convs: three 3×3 kernels each (64, 128, 256, 512 channels) plus 5 anchors, a temperature, 3 mix weights.
REFERENCE_PARAMS = 100_622_004
MALLEABLE_PARAMS = 9_400_356
# [image] builds plain 3×3 convs there: one kernel instead of three, no bin parameters.
RGB_ONLY_PARAMS = REFERENCE_PARAMS - sum(2 * 9 * width * width + 9 for width in (64, 128, 256, 512))
SMALL = {"backbone": "resnet18"}


def intrinsics(batch, fx=300.0, size=(240, 320)):
    K = torch.tensor([[fx, 0.0, size[1] / 2], [0.0, fx, size[0] / 2], [0.0, 0.0, 1.0]])
    return {"K": K.expand(batch, 3, 3).clone()}


def perturbed_conv(in_channels=4, out_channels=6, **options):
    """A malleable conv with distinct kernels and moved anchors, temperature and mix weights."""
    torch.manual_seed(0)
    conv = MalleableConv2d(in_channels, out_channels, **options)
    with torch.no_grad():
        for weight in conv.kernels():
            weight.normal_()
        conv.depth_anchor.add_(torch.tensor([0.3, -0.2, 0.0, 0.1, -0.4]))
        conv.temperature.fill_(1.7)
        conv.kernel_weight.copy_(torch.tensor([0.5, -0.3, 0.2]))
    return conv


def flat_depth_kernel(conv):
    """The one kernel a malleable conv equals on a plane facing the camera: every tap at the centre's depth."""
    anchors = conv.anchors()
    bins = (-anchors.pow(2) / conv.temperature).softmax(dim=0)[1:-1]
    mix = 3 * conv.kernel_weight.softmax(dim=0)
    return sum(m * b * w for m, b, w in zip(mix, bins, conv.kernels()))


def build(heads=None, **options):
    torch.manual_seed(0)
    return get_model({"arch": "malleable25d", **SMALL, **options}, heads or {"seg": 5})


def test_exact_parameter_count_of_the_reference():
    with torch.device("meta"):
        model = get_model({"arch": "malleable25d"}, {"seg": 40})
        rgb_only = get_model({"arch": "malleable25d", "inputs": ["image"]}, {"seg": 40})
    assert sum(p.numel() for p in model.parameters()) == REFERENCE_PARAMS
    malleable = [m for m in model.modules() if isinstance(m, MalleableConv2d)]
    assert [m.pixel_size for m in malleable] == [4, 8, 16, 16]
    assert sum(p.numel() for m in malleable for p in m.parameters()) == MALLEABLE_PARAMS
    assert sum(p.numel() for p in rgb_only.parameters()) == RGB_ONLY_PARAMS
    assert not any(isinstance(m, MalleableConv2d) for m in rgb_only.modules())


def test_reference_dilations_and_strides():
    with torch.device("meta"):
        model = get_model({"arch": "malleable25d"}, {"seg": 40})
    layer4 = model.backbone.layer4
    assert [block.conv2.dilation for block in layer4] == [(2, 2), (4, 4), (8, 8)]  # multi-grid, output stride 16
    assert layer4[0].conv2.stride == (1, 1) and model.backbone.layer3[0].conv2.stride == (2, 2)
    assert [block.conv2.dilation for block in model.task] == [(16, 16), (16, 16)]


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (2, 3, 3), (1, 0, 1),
                                                       (3, 2, 4)])
def test_flat_depth_equals_a_plain_conv_with_the_kernel_mix(stride, padding, dilation):
    conv = perturbed_conv(stride=stride, padding=padding, dilation=dilation, pixel_size=8)
    x = torch.randn(2, 4, 23, 30)
    depth = torch.tensor([1.5, 4.0]).view(2, 1, 1, 1).expand(2, 1, 23, 30)  # one plane per image
    fx = torch.tensor([200.0, 350.0])
    expected = F.conv2d(x, flat_depth_kernel(conv), stride=stride, padding=padding, dilation=dilation)
    out = conv(x, depth, fx)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_anchors_temperature_and_mix_learn():
    conv = MalleableConv2d(3, 5, pixel_size=4)
    x = torch.randn(2, 3, 16, 20)
    depth = 2.0 + torch.rand(2, 1, 16, 20) * 0.2  # neighbours within a few grid ranges of each other
    conv(x, depth, torch.tensor([300.0, 300.0])).square().mean().backward()
    anchor_grad = conv.depth_anchor.grad
    assert (anchor_grad[[0, 1, 3, 4]].abs() > 0).all() and anchor_grad[2] == 0  # the centre anchor stays at 0
    assert conv.temperature.grad.abs() > 0 and (conv.kernel_weight.grad.abs() > 0).all()
    assert all(weight.grad.abs().sum() > 0 for weight in conv.kernels())


def test_bins_follow_depth_relative_to_the_grid_range():
    """A tap one grid range behind the centre goes to the far kernel, one in front to the near kernel; taps far
    off leave all three; scaling the depth changes nothing (the grid range scales with it)."""
    conv = MalleableConv2d(1, 1, pixel_size=4)
    with torch.no_grad():
        conv.temperature.fill_(0.05)  # sharp bins
    fx, centre = torch.tensor([400.0]), 2.0
    grid = 4 * centre / 400.0
    depth = torch.full((1, 1, 3, 3), centre)
    depth[0, 0, 0, 0], depth[0, 0, 0, 1], depth[0, 0, 0, 2] = centre - grid, centre + grid, centre + 10 * grid
    masks = conv.kernel_masks(depth, fx)[0, :, :, 4]  # 3 kernels × 9 taps of the middle output pixel
    torch.testing.assert_close(masks[:, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(masks[:, 1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(masks[:, 2], torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(masks[:, 4], torch.tensor([0.0, 1.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(conv.kernel_masks(depth * 3.7, fx), conv.kernel_masks(depth, fx))


def test_invalid_depth_weighs_one_fifth_in_every_kernel():
    conv = perturbed_conv()
    depth = 1.0 + torch.rand(1, 1, 9, 11) * 3
    depth[0, 0, 4, 5] = 0.0  # a hole
    masks = conv.kernel_masks(depth, torch.tensor([300.0])).view(1, 3, 9, 9, 11)
    assert (masks[0, :, :, 4, 5] == INVALID_WEIGHT).all()  # the hole as the centre: every tap
    assert (masks[0, :, 0, 5, 6] == INVALID_WEIGHT).all()  # the hole as the top-left tap of its neighbour
    assert (masks[0, :, 1, 5, 6] != INVALID_WEIGHT).all()
    x = torch.randn(1, 4, 9, 11)
    no_depth = conv(x, torch.zeros(1, 1, 9, 11), torch.tensor([300.0]))
    mix = 3 * conv.kernel_weight.softmax(dim=0)
    plain = F.conv2d(x, INVALID_WEIGHT * sum(m * w for m, w in zip(mix, conv.kernels())), padding=1)
    torch.testing.assert_close(no_depth, plain, rtol=1e-4, atol=1e-4)


def test_focal_length_is_per_image():
    conv = perturbed_conv()
    x, depth = torch.randn(2, 4, 12, 15), 1.0 + torch.rand(2, 1, 12, 15)
    fx = torch.tensor([150.0, 600.0])
    batched = conv(x, depth, fx)
    for index in range(2):
        single = conv(x[index:index + 1], depth[index:index + 1], fx[index:index + 1])
        torch.testing.assert_close(batched[index:index + 1], single, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(conv(x, depth, fx.flip(0)), batched)


@pytest.mark.parametrize("size", [(97, 131), (240, 320)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("task, channels", [("seg", 5), ("depth", 1)])
def test_forward_backward_with_depth(task, channels, size):
    model = build({task: channels}).train()
    depth = 0.5 + torch.rand(2, 1, *size) * 6
    depth[:, :, : size[0] // 5] = 0.0  # sensor holes
    outputs = model(torch.randn(2, 3, *size), depth, intrinsics(2, size=size))
    aux_size = tuple(-(-side // 8) for side in size)
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {
        task: (2, channels, *size), f"{task}/aux": (2, channels, *aux_size)}
    (outputs[task].mean() + 0.4 * outputs[f"{task}/aux"].mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.backbone.layer3[0].conv1.depth_anchor.grad.abs().sum() > 0
    if task == "depth":
        assert (outputs[task] > 0).all()


def test_input_variants():
    size = (45, 61)
    image, depth, meta = torch.randn(2, 3, *size), 1.0 + torch.rand(2, 1, *size) * 4, intrinsics(2, size=size)
    raw = depth * (torch.rand_like(depth) > 0.3)
    assert model_input_keys({"arch": "malleable25d"}) == ("image", "depth", "meta")
    for inputs, tensors in ((["image", "depth", "meta"], (image, depth, meta)),
                            (["image", "raw_depth", "meta"], (image, raw, meta)),
                            (["meta", "image", "depth"], (meta, image, depth)),
                            (["image"], (image,))):
        model = build({"seg": 4, "scene": 3}, inputs=inputs).eval()
        assert model.input_keys == tuple(inputs)
        with torch.no_grad():
            out = model(*tensors)
        assert out["seg"].shape == (2, 4, *size) and out["scene"].shape == (2, 3), inputs


def test_focal_length_comes_from_meta():
    model = build().eval()
    image, depth = torch.randn(1, 3, 40, 52), 1.0 + torch.rand(1, 1, 40, 52) * 4
    with torch.no_grad():
        near, far = (model(image, depth, intrinsics(1, fx=fx))["seg"] for fx in (100.0, 800.0))
    assert not torch.allclose(near, far)


def test_trains_in_bf16_autocast_channels_last_with_depth():
    """The `auto` mode of CPUs with native bf16."""
    model = build({"seg": 5}).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    image = torch.randn(2, 3, 61, 83).contiguous(memory_format=torch.channels_last)
    depth = (1.0 + torch.rand(2, 1, 61, 83) * 4).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(image, depth, intrinsics(2, size=(61, 83)))
            loss = sum(F.cross_entropy(F.interpolate(out.float(), size=(61, 83)), torch.zeros(2, 61, 83).long())
                       for out in outputs.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)


def test_pretrained_resnet_starts_all_three_kernels(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, path)
    model = build(pretrained=str(path), deep_stem=False)
    conv = model.backbone.layer2[0].conv1
    assert all(torch.equal(weight, state["layer2.0.conv1.weight"]) for weight in conv.kernels())
    assert torch.equal(model.backbone.layer2[1].conv1.weight, state["layer2.1.conv1.weight"])


@pytest.mark.parametrize("options, message", [
    ({"inputs": ["image", "depth"]}, "depth is given without meta"),
    ({"inputs": ["image", "meta"]}, "meta is given without depth or raw_depth"),
    ({"inputs": ["image", "hha", "meta"]}, r"takes \[image, depth or raw_depth, meta\] or \[image\]"),
    ({"inputs": ["depth", "meta"]}, r"takes \[image, depth or raw_depth, meta\] or \[image\]"),
    ({"inputs": ["image", "depth", "raw_depth", "meta"]}, "takes"),
    ({"backbone": "resnet77"}, "unknown backbone 'resnet77'"),
    ({"pretrained": "imagenet"}, "no ImageNet weights for the deep stem"),
])
def test_bad_options_fail_in_one_line(options, message):
    with pytest.raises(PtsemsegError, match=message) as err:
        get_model({"arch": "malleable25d", **SMALL, **options}, {"seg": 3})
    assert "\n" not in str(err.value)


def test_batches_without_intrinsics_fail_in_one_line():
    model = build().eval()
    image, depth = torch.randn(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    with pytest.raises(PtsemsegError, match=r"needs the camera intrinsics meta\['K'\]"):
        model(image, depth, {"name": ["frame"]})
    with pytest.raises(PtsemsegError, match="must be N×3×3 for a batch of 1"):
        model(image, depth, {"K": torch.eye(3)})
    with pytest.raises(PtsemsegError, match=r"takes 3 inputs \(image, depth, meta\), got 1"):
        model(image)
    with pytest.raises(PtsemsegError, match="odd kernel size"):
        MalleableConv2d(4, 4, kernel_size=2)


@pytest.mark.parametrize("dataset, write", [("nyuv2", write_nyu_mat), ("sunrgbd", write_sun)])
def test_dataset_config_trains_on_the_miniature_layout(dataset, write, tmp_path):
    """The paper's config, shrunk (ResNet-18, 2 iterations, 12×16 windows): the loaders' intrinsics reach the
    malleable convs through collation, scaling and cropping."""
    root = tmp_path / dataset
    root.mkdir()
    write(root)
    path = os.path.join(REPO, "configs", dataset, "malleable25d_seg.yaml")
    overrides = [f"data.path={root}", "model.backbone=resnet18", "model.deep_stem=true", "model.pretrained=none",
                 "training.train_iters=2", "training.val_interval=2", "training.batch_size=2", "training.n_workers=0",
                 "training.print_interval=1", "training.device=cpu", "training.augmentations.rscalecrop.size=[12,16]",
                 f"training.out_dir={tmp_path / 'run'}"]
    scores = Trainer(load_config(path, overrides), path).run()
    assert "seg/mean_iou" in scores
