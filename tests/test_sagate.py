"""SA-Gate: the reference's exact size and structure (shared downsample modules, multi-grid layer4, output stride
16), the gate's arithmetic, every input variant and head set on a small backbone, options and configs."""
import os

import pytest
import torch
import torch.nn as nn

from ptsemseg.config import load_config
from ptsemseg.encoders import get_encoder
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import get_model, model_input_keys
from ptsemseg.models.sagate import SAGate
from tests.conftest import REPO

SMALL = {"backbone": "resnet18_v1c"}

# The reference (seeds_anatomy §2a) at 40 classes with image + HHA, and its parts.
REFERENCE_TOTAL = 110_875_160
REFERENCE_PARTS = {"paths": 84_567_400 - 2_112_488, "gates": 2_112_488, "head": 26_307_760, "aux": 9_458_728}
# Other configurations: a 1-channel first conv for metric depth (3·64·9 → 1·64·9 weights); one path, no gates.
EXACT_PARAMS = {
    (("image", "hha"), "seg"): REFERENCE_TOTAL,
    (("image", "depth"), "seg"): REFERENCE_TOTAL - 2 * 64 * 9,
    (("image",), "seg"): 68_931_696,
    (("image", "hha"), "depth"): REFERENCE_TOTAL - 39 * (256 + 1 + 512 + 1),
}


def count(module):
    return sum(p.numel() for p in module.parameters())


def build(heads, **options):
    return get_model({"arch": "sagate", **options}, heads)


def inputs_for(keys, size, batch=2):
    channels = {"image": 3, "hha": 3, "depth": 1, "raw_depth": 1}
    return [torch.rand(batch, channels[key], *size) * (8.0 if channels[key] == 1 else 1.0) for key in keys]


def test_reference_parameter_count_and_its_parts():
    with torch.device("meta"):
        model = build({"seg": 40})
    assert count(model) == REFERENCE_TOTAL
    head = count(model.aspp) + count(model.decoders) + count(model.aux_heads)
    parts = {"paths": count(model.paths), "gates": count(model.gates), "head": head, "aux": count(model.aux_heads)}
    assert parts == REFERENCE_PARTS


@pytest.mark.parametrize("inputs, task", sorted(EXACT_PARAMS))
def test_exact_parameter_counts(inputs, task):
    with torch.device("meta"):
        model = build({task: 40 if task == "seg" else 1}, inputs=list(inputs))
    assert count(model) == EXACT_PARAMS[inputs, task]


def test_paths_share_their_downsample_modules_as_the_reference():
    with torch.device("meta"):
        model = build({"seg": 40})
        single = get_encoder("resnet101_v1c")
    rgb, other = model.paths
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert getattr(rgb, stage)[0].downsample is getattr(other, stage)[0].downsample
    shared = sum(count(getattr(single, stage)[0].downsample) for stage in ("layer1", "layer2", "layer3", "layer4"))
    assert count(model.paths) == 2 * count(single) - shared


def test_layer4_is_multi_grid_at_output_stride_16():
    with torch.device("meta"):
        model = build({"seg": 40})
        merges = model.encode(inputs_for(("image", "hha"), (480, 480), batch=1))
    for path in model.paths:
        assert [block.conv2.dilation[0] for block in path.layer4] == [2, 4, 8]
        assert all(conv.stride == (1, 1) for conv in path.layer4.modules() if isinstance(conv, nn.Conv2d))
    assert [tuple(m.shape[1:]) for m in merges] == [(256, 120, 120), (512, 60, 60), (1024, 30, 30), (2048, 30, 30)]


def test_gate_separates_aggregates_and_propagates_as_the_paper():
    torch.manual_seed(0)
    gate = SAGate(32, reduction=16)
    rgb, other = torch.randn(2, 32, 5, 7), torch.randn(2, 32, 5, 7)
    rgb_out, other_out, merged = gate(rgb, other)

    def separate(fsp, guide, main):
        pooled = torch.cat([guide, main], 1).mean(dim=(2, 3))
        first, second = fsp.weights[0], fsp.weights[2]
        weight = torch.sigmoid(second(torch.relu(first(pooled))))
        return main + weight[:, :, None, None] * guide

    both = torch.cat([separate(gate.separate_rgb, other, rgb), separate(gate.separate_other, rgb, other)], 1)
    a, b = gate.gate_rgb(both), gate.gate_other(both)
    expected = rgb * torch.exp(a) / (torch.exp(a) + torch.exp(b)) + other * torch.exp(b) / (torch.exp(a) + torch.exp(b))
    torch.testing.assert_close(merged, expected)
    torch.testing.assert_close(rgb_out, torch.relu((rgb + expected) / 2))
    torch.testing.assert_close(other_out, torch.relu((other + expected) / 2))
    assert gate.separate_rgb.weights[0].out_features == 2  # reduction 16 of 32 channels


@pytest.mark.parametrize("size", [(97, 131), (240, 320)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("heads", [{"seg": 5}, {"depth": 1}], ids=lambda heads: next(iter(heads)))
def test_forward_backward_at_odd_and_full_size(heads, size):
    torch.manual_seed(0)
    model = build(heads, **SMALL).train()
    name, channels = next(iter(heads.items()))
    outputs = model(*inputs_for(("image", "hha"), size))
    aux_size = tuple(-(-side // 16) for side in size)
    assert {key: tuple(out.shape) for key, out in outputs.items()} == {
        name: (2, channels, *size), f"{name}/aux": (2, channels, *aux_size)}
    (outputs[name].mean() + 0.2 * outputs[f"{name}/aux"].mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    if name == "depth":
        assert all((out > 0).all() for out in outputs.values())


@pytest.mark.parametrize("inputs", [["image", "hha"], ["image", "depth"], ["image", "raw_depth"], ["image"],
                                    ["hha"]], ids="+".join)
def test_input_variants(inputs):
    torch.manual_seed(0)
    model = build({"seg": 5, "scene": 3}, inputs=inputs, **SMALL)
    assert model.input_keys == tuple(inputs) == model_input_keys({"arch": "sagate", "inputs": inputs})
    assert len(model.paths) == len(inputs) and len(model.gates) == (4 if len(inputs) == 2 else 0)
    assert model.paths[-1].stem[0][0].in_channels == (1 if "depth" in inputs[-1] else 3)
    for key, norm in zip(inputs, model.input_norms):
        assert isinstance(norm.norm, nn.BatchNorm2d if "depth" in key else nn.Identity)
    model.eval()
    with torch.no_grad():
        outputs = model(*inputs_for(inputs, (37, 53)))
    assert {key: tuple(out.shape) for key, out in outputs.items()} == {"seg": (2, 5, 37, 53), "scene": (2, 3)}


def test_the_second_input_reaches_the_output_through_the_gates():
    torch.manual_seed(0)
    model = build({"seg": 5}, **SMALL).eval()
    image, hha = inputs_for(("image", "hha"), (64, 64))
    with torch.no_grad():
        assert not torch.allclose(model(image, hha)["seg"], model(image, torch.zeros_like(hha))["seg"])


def test_default_inputs_are_image_and_hha():
    assert model_input_keys({"arch": "sagate"}) == ("image", "hha")


def test_pretrained_file_starts_every_path_and_the_depth_stem_from_its_channel_mean(tmp_path):
    torch.manual_seed(0)
    state = get_encoder("resnet18_v1c").state_dict()
    torch.save(state, tmp_path / "r18.pth")
    model = build({"seg": 5}, inputs=["image", "depth"], pretrained=str(tmp_path / "r18.pth"), **SMALL)
    rgb, depth = model.paths
    for path in model.paths:
        assert torch.equal(path.layer3[1].conv1.weight, state["layer3.1.conv1.weight"])
    assert torch.equal(rgb.stem[0][0].weight, state["stem.0.0.weight"])
    torch.testing.assert_close(depth.stem[0][0].weight, state["stem.0.0.weight"].mean(dim=1, keepdim=True))


@pytest.mark.parametrize("options, message", [
    ({"inputs": ["hha", "image"]}, "takes inputs [image, hha | depth | raw_depth] or one of them alone"),
    ({"inputs": ["image", "depth", "hha"]}, "takes inputs [image, hha | depth | raw_depth]"),
    ({"inputs": ["image", "meta"]}, "takes inputs [image, hha | depth | raw_depth]"),
    ({"backbone": "vgg16"}, "backbone must be a ResNet encoder"),
    ({"backbone": "resnet101v1c"}, "(closest: resnet101_v1c"),
    ({"reduction": 0}, "reduction must be an integer from 1 to 64"),
    ({"aspp_rates": []}, "aspp_rates must be a list of positive integers"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"pretrained": "imagenet"}, "no ImageNet weights for the deep stem"),
])
def test_bad_options_fail_in_one_line(options, message):
    with pytest.raises(PtsemsegError) as err:
        build({"seg": 5}, **{**SMALL, **options})
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("path", ["configs/nyuv2/sagate_seg.yaml", "configs/sunrgbd/sagate_seg.yaml"])
def test_real_data_configs_follow_the_reference_recipe(path):
    cfg = load_config(os.path.join(REPO, path))
    training = cfg["training"]
    assert cfg["model"]["arch"] == "sagate" and cfg["model"]["inputs"] == ["image", "hha"]
    assert training["optimizer"] == {"name": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4}
    assert training["aux_weights"] == {"seg/aux": 0.2}
    schedule = training["lr_schedule"]
    assert (training["batch_size"], training["train_iters"], schedule["warmup_iters"]) == (16, 39200, 980)
    assert (schedule["name"], schedule["gamma"], schedule["warmup_factor"]) == ("poly_lr", 0.9, 0.0)
    assert training["augmentations"]["rscalecrop"] == {"scale": [0.5, 1.75], "size": [480, 480]}


def test_fusion_trains_in_bf16_autocast_channels_last():
    torch.manual_seed(0)
    model = build({"seg": 5, "depth": 1}, inputs=["image", "raw_depth"], **SMALL)
    model = model.to(memory_format=torch.channels_last).train()
    inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs_for(("image", "raw_depth"), (61, 83))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(*inputs)
    loss = sum(out.float().mean() for out in outputs.values())
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
