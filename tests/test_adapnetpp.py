"""AdapNet++ and SSMA: exact sizes against the reference code's layers, outputs at odd and NYU sizes for seg and
depth, auxiliary outputs, input variants, the multiscale units, ImageNet weights and one-line errors."""
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import adapnetpp as adapnetpp_module
from ptsemseg.models import get_model, model_input_keys
from ptsemseg.models.adapnetpp import AdapNetPP, MultiscaleConv2d
from ptsemseg.models.heads import HeadSpec
from ptsemseg.models.ssma import SSMA
from tests.conftest import REPO

SMALL = {"width": 8, "decoder_channels": 32}


def conv(kernel, in_channels, out_channels, bias=False):
    return kernel * kernel * in_channels * out_channels + (out_channels if bias else 0)


def bn(channels):
    return 2 * channels


def reference_expert(in_channels=3):
    """Parameters of one expert of the authors' code (AdapNet_pp.py `_setup` up to eASPP; network_base.py units):
    input BN, conv1, 16 bottleneck units with one BN after each unit's sum, the two skips and eASPP."""
    total, block_in = bn(in_channels) + conv(7, in_channels, 64) + bn(64), 64
    for units, width in zip((3, 4, 6, 3), (64, 128, 256, 512)):
        for unit in range(units):
            unit_in = block_in if unit == 0 else 4 * width
            total += conv(1, unit_in, width) + bn(width) + conv(3, width, width) + bn(width)
            total += conv(1, width, 4 * width) + bn(4 * width)
            total += conv(1, unit_in, 4 * width) if unit == 0 else 0  # projection shortcut
        block_in = 4 * width
    skips = conv(1, 256, 24) + bn(24) + conv(1, 512, 24) + bn(24)
    cascade = conv(1, 2048, 64) + bn(64) + 2 * (conv(3, 64, 64) + bn(64)) + conv(1, 64, 256) + bn(256)
    easpp = 2 * (conv(1, 2048, 256) + bn(256)) + 3 * cascade + conv(1, 1280, 256) + bn(256)
    return total + skips + easpp


def reference_decoder(classes, aux, skip_attention):
    """conv41/conv16 (ConvT 4×4 + BN), conv89/96 and conv88/95, conv78 + conv5 (ConvT 8×8 + BN), conv911/912,
    and SSMA's conv550/551."""
    stage = 4 * 4 * 256 * 256 + bn(256) + conv(3, 280, 256) + bn(256) + conv(3, 256, 256) + bn(256)
    head = conv(1, 256, classes) + bn(classes) + 8 * 8 * classes * classes + bn(classes)
    extra = 2 * (conv(1, 256, classes) + bn(classes)) if aux else 0
    extra += 2 * (conv(1, 256, 24) + bn(24)) if skip_attention else 0
    return 2 * stage + head + extra


def reference_fusion():
    """SSMA.py: conv511/512 (gate), conv515 (1×1 + BN); per skip conv513/514 (or 518/519) and conv552 (or 553)."""
    context = conv(3, 512, 32, bias=True) + conv(3, 32, 512, bias=True) + conv(1, 512, 256) + bn(256)
    skip = conv(3, 48, 8, bias=True) + conv(3, 8, 48, bias=True) + conv(3, 48, 24, bias=True)
    return context + 2 * skip


def count(arch, heads, **options):
    with torch.device("meta"):
        model = get_model({"arch": arch, **options}, heads)
    return sum(p.numel() for p in model.parameters())


EXACT_PARAMS = {
    ("adapnetpp", "seg", 19, ()): 30_170_878,
    ("adapnetpp", "seg", 40, ()): 30_266_470,
    ("adapnetpp", "depth", 1, ()): 30_133_870,
    ("ssma", "seg", 19, ("image", "hha")): 56_198_136,
    ("ssma", "seg", 40, ("image", "hha")): 56_282_892,
    ("ssma", "seg", 40, ("image", "depth")): 56_276_616,
    ("ssma", "depth", 1, ("image", "depth")): 56_164_140,
}


@pytest.mark.parametrize("arch, task, channels, inputs", sorted(EXACT_PARAMS))
def test_exact_parameter_counts(arch, task, channels, inputs):
    options = {"inputs": list(inputs)} if inputs else {}
    assert count(arch, {task: channels}, **options) == EXACT_PARAMS[arch, task, channels, inputs]


@pytest.mark.parametrize("classes", [12, 19, 40])
def test_counts_equal_the_reference_code_layer_by_layer(classes):
    adapnet = reference_expert() + reference_decoder(classes, aux=True, skip_attention=False)
    ssma = 2 * reference_expert() + reference_fusion() + reference_decoder(classes, aux=False, skip_attention=True)
    assert count("adapnetpp", {"seg": classes}) == adapnet == 30_133_030 + 64 * classes ** 2 + 776 * classes
    assert count("ssma", {"seg": classes}, inputs=["image", "hha"]) == ssma == \
        56_170_092 + 64 * classes ** 2 + 260 * classes
    one_channel = bn(3) + conv(7, 3, 64) - bn(1) - conv(7, 1, 64)
    assert count("ssma", {"seg": classes}) == ssma - one_channel == ssma - 6_276
    # the authors' README: AdapNet++ 30.20 M, SSMA 56.44 M
    assert abs(adapnet - 30.20e6) < 0.01 * 30.20e6 and abs(ssma - 56.44e6) < 0.01 * 56.44e6


def test_rgb_only_ssma_is_adapnetpp_without_aux():
    model = get_model({"arch": "ssma", "inputs": ["image"], **SMALL}, {"seg": 5})
    assert type(model) is AdapNetPP and model.input_keys == ("image",)
    assert count("ssma", {"seg": 40}, inputs=["image"]) == count("adapnetpp", {"seg": 40}, aux=False)
    assert count("ssma", {"seg": 40}, inputs=["image"], aux=True) == EXACT_PARAMS["adapnetpp", "seg", 40, ()]


def run(model, inputs, task):
    """Train-mode outputs and a backward pass; every parameter gets a finite gradient."""
    model.train()
    outputs = model(*inputs)
    sum(output.float().mean() for output in outputs.values()).backward()
    bad = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not bad, bad[:3]
    return outputs


@pytest.mark.parametrize("size", [(97, 131), (240, 320)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("task", ["seg", "depth"])
def test_adapnetpp_outputs_and_aux_at_the_input_size(task, size):
    torch.manual_seed(0)
    channels = 5 if task == "seg" else 1
    model = get_model({"arch": "adapnetpp", **SMALL}, {task: channels})
    outputs = run(model, [torch.randn(2, 3, *size)], task)
    assert list(outputs) == [task, f"{task}/aux1", f"{task}/aux2"]
    assert all(output.shape == (2, channels, *size) for output in outputs.values())
    if task == "depth":
        assert all((output > 0).all() for output in outputs.values())
    model.eval()
    with torch.no_grad():
        assert list(model(torch.randn(1, 3, *size))) == [task]


@pytest.mark.parametrize("size", [(97, 131), (240, 320)], ids=lambda size: f"{size[0]}x{size[1]}")
@pytest.mark.parametrize("task", ["seg", "depth"])
def test_ssma_fuses_image_and_depth_at_any_size(task, size):
    torch.manual_seed(0)
    channels = 5 if task == "seg" else 1
    model = get_model({"arch": "ssma", **SMALL}, {task: channels, "scene": 4})
    assert type(model) is SSMA and model.input_keys == ("image", "depth")
    outputs = run(model, [torch.randn(2, 3, *size), torch.rand(2, 1, *size) * 8], task)
    assert {name: tuple(out.shape) for name, out in outputs.items()} == {task: (2, channels, *size), "scene": (2, 4)}
    if task == "depth":
        assert (outputs["depth"] > 0).all()


@pytest.mark.parametrize("arch, inputs, channels", [
    ("adapnetpp", ["depth"], [1]), ("adapnetpp", ["raw_depth"], [1]), ("adapnetpp", ["hha"], [3]),
    ("ssma", ["image", "hha"], [3, 3]), ("ssma", ["image", "raw_depth"], [3, 1]), ("ssma", ["image"], [3]),
])
def test_input_variants(arch, inputs, channels):
    torch.manual_seed(0)
    model = get_model({"arch": arch, "inputs": inputs, **SMALL}, {"seg": 3})
    assert model.input_keys == tuple(inputs) == model_input_keys({"arch": arch, "inputs": inputs})
    encoders = model.encoders if isinstance(model, SSMA) else [model.encoder]
    assert [encoder.conv1.in_channels for encoder in encoders] == channels
    metric = [isinstance(encoder.input_norm.norm, torch.nn.BatchNorm2d) for encoder in encoders]
    assert metric == [key in ("depth", "raw_depth") for key in inputs]
    tensors = [torch.rand(2, c, 37, 53) * (8 if key.endswith("depth") else 1) for key, c in zip(inputs, channels)]
    assert model.train()(*tensors)["seg"].shape == (2, 3, 37, 53)


def test_default_inputs_of_the_builders():
    assert model_input_keys({"arch": "adapnetpp"}) == ("image",)
    assert model_input_keys({"arch": "ssma"}) == ("image", "depth")


def test_aux_heads_follow_the_option():
    torch.manual_seed(0)
    image, depth = torch.randn(2, 3, 40, 56), torch.rand(2, 1, 40, 56)
    with_aux = get_model({"arch": "ssma", "aux": True, **SMALL}, {"seg": 3, "depth": 1}).train()
    assert list(with_aux(image, depth)) == ["seg", "seg/aux1", "seg/aux2", "depth", "depth/aux1", "depth/aux2"]
    without = get_model({"arch": "adapnetpp", "aux": False, **SMALL}, {"seg": 3}).train()
    assert list(without(image)) == ["seg"]


def test_batch_of_one_trains():
    """The image-pooling branch normalises after broadcasting, so a single image works in train mode."""
    model = get_model({"arch": "ssma", **SMALL}, {"seg": 3}).train()
    assert model(torch.randn(1, 3, 32, 48), torch.rand(1, 1, 32, 48))["seg"].shape == (1, 3, 32, 48)


def test_multiscale_units_and_dropout_where_the_reference_puts_them():
    with torch.device("meta"):
        model = get_model({"arch": "adapnetpp"}, {"seg": 3})
    rates = [[getattr(unit.conv2, "rates", None) for unit in block] for block in model.encoder.blocks]
    assert rates == [[None] * 3, [None] * 3 + [(1, 2)], [None] * 2 + [(1, 2)] * 4, [(2, 2)] * 3]
    dropouts = [(b, u, unit.dropout.p) for b, block in enumerate(model.encoder.blocks) for u, unit in enumerate(block)
                if isinstance(unit.dropout, torch.nn.Dropout)]
    assert dropouts == [(3, 2, 0.7)]
    strides = [block[0].conv2.stride for block in model.encoder.blocks]
    assert strides == [(1, 1), (2, 2), (2, 2), (1, 1)]


def test_ssma_blocks_as_the_reference():
    """Gates 512 -> 32 -> 512 at eASPP, 48 -> 8 -> 48 at the skips (3×3); projections 1×1 + BN and 3×3 with bias."""
    with torch.device("meta"):
        model = get_model({"arch": "ssma"}, {"seg": 3})
    blocks = [model.fuse_context, *model.fuse_skips]
    assert [(conv.out_channels, conv.kernel_size) for block in blocks for conv in block.gate[::2]] == \
        [(32, (3, 3)), (512, (3, 3)), (8, (3, 3)), (48, (3, 3)), (8, (3, 3)), (48, (3, 3))]
    assert isinstance(model.fuse_context.project[1], torch.nn.BatchNorm2d)
    assert model.fuse_context.project[0].kernel_size == (1, 1) and model.fuse_context.project[0].bias is None
    assert all(block.project.kernel_size == (3, 3) and block.project.bias is not None for block in blocks[1:])
    assert model.decoder.attention is not None


def test_multiscale_conv_is_a_plain_and_a_dilated_half():
    torch.manual_seed(0)
    layer = MultiscaleConv2d(6, 8, (1, 2))
    x = torch.randn(1, 6, 11, 13)
    expected = torch.cat([F.conv2d(x, layer.weight[:4], padding=1), F.conv2d(x, layer.weight[4:], padding=2,
                                                                               dilation=2)], dim=1)
    assert torch.allclose(layer(x), expected)


def test_imagenet_weights_map_as_the_reference_init_checkpoint(monkeypatch):
    torch.manual_seed(0)
    source = torchvision.models.resnet50().state_dict()
    requested = []

    def fake_state_dict(pretrained, weights):
        requested.append((pretrained, weights))
        return source

    monkeypatch.setattr(adapnetpp_module, "pretrained_state_dict", fake_state_dict)
    model = get_model({"arch": "ssma", "pretrained": "imagenet"}, {"seg": 3})
    assert requested == [("imagenet", torchvision.models.ResNet50_Weights.IMAGENET1K_V1)] * 2
    rgb, depth = model.encoders
    assert torch.equal(rgb.conv1.weight, source["conv1.weight"])
    assert torch.equal(depth.conv1.weight, source["conv1.weight"].mean(1, keepdim=True))
    assert torch.equal(rgb.blocks[2][3].conv2.weight, source["layer3.3.conv2.weight"])  # a multiscale unit
    assert torch.equal(depth.blocks[3][0].shortcut.weight, source["layer4.0.downsample.0.weight"])
    assert torch.equal(rgb.blocks[1][3].bn3.running_var, source["layer2.3.bn3.running_var"])


def test_pretrained_path_restores_the_model(tmp_path):
    torch.manual_seed(0)
    model = get_model({"arch": "ssma", **SMALL}, {"seg": 3})
    path = tmp_path / "ssma.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(1)
    again = get_model({"arch": "ssma", "pretrained": str(path), **SMALL}, {"seg": 3})
    assert torch.equal(again.fuse_context.gate[0].weight, model.fuse_context.gate[0].weight)


@pytest.mark.parametrize("arch, options, heads, message", [
    ("adapnetpp", {"inputs": ["image", "depth"]}, {"seg": 3}, "model adapnetpp takes one input of image"),
    ("adapnetpp", {"inputs": ["normals"]}, {"seg": 3}, "'normals' cannot be a model input"),
    ("ssma", {"inputs": ["depth", "image"]}, {"seg": 3}, r"model ssma takes \[image, X\]"),
    ("ssma", {"inputs": ["image", "depth", "hha"]}, {"seg": 3}, r"model ssma takes \[image, X\]"),
    ("ssma", {"inputs": ["hha"]}, {"seg": 3}, r"model ssma takes \[image, X\]"),
    ("adapnetpp", {"width": 0}, {"seg": 3}, "width must be a positive integer"),
    ("ssma", {"decoder_channels": 12}, {"seg": 3}, "decoder_channels must be a multiple of 8"),
    ("adapnetpp", {"easpp_rates": []}, {"seg": 3}, "easpp_rates must be a list of positive integers"),
    ("adapnetpp", {"dropout": 1.0}, {"seg": 3}, r"dropout must be in \[0, 1\)"),
    ("ssma", {"aux": "yes"}, {"seg": 3}, "aux must be true or false"),
    ("adapnetpp", {}, {"scene": 4}, "needs a dense head"),
    ("adapnetpp", {"width": 8, "pretrained": "imagenet"}, {"seg": 3}, "imagenet needs width 64"),
    ("ssma", {"pretrained": "/nonexistent/ssma.pt"}, {"seg": 3}, "/nonexistent/ssma.pt"),
])
def test_bad_options_fail_in_one_line(arch, options, heads, message):
    with pytest.raises(PtsemsegError, match=message) as err:
        get_model({"arch": arch, **SMALL, **options}, heads)
    assert "\n" not in str(err.value)


def test_unsupported_head_kind_fails_in_one_line():
    with pytest.raises(PtsemsegError, match="arch ssma cannot build the point-level head 'keypoints'"):
        get_model({"arch": "ssma", **SMALL}, (HeadSpec("keypoints", 17, kind="point"),))


def test_ssma_trains_a_step_under_bf16_autocast_in_channels_last():
    torch.manual_seed(0)
    model = get_model({"arch": "ssma", **SMALL}, {"seg": 6}).to(memory_format=torch.channels_last).train()
    image = torch.randn(2, 3, 37, 53).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(image, torch.rand(2, 1, 37, 53) * 8)["seg"]
        loss = F.cross_entropy(logits.float(), torch.randint(0, 6, (2, 37, 53)))
    loss.backward()
    assert logits.shape == (2, 6, 37, 53) and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("config", ["nyuv2/adapnetpp_seg.yaml", "nyuv2/ssma_seg.yaml", "sunrgbd/adapnetpp_seg.yaml",
                                    "sunrgbd/ssma_seg.yaml"])
def test_dataset_configs_keep_the_reference_training(config):
    """Adam at 1e-3 with polynomial decay (power 0.9), batch 8, 768×384 frames; AdapNet++'s aux losses 0.6 / 0.5."""
    cfg = load_config(os.path.join(REPO, "configs", config))
    training = cfg["training"]
    assert training["optimizer"] == {"name": "adam", "lr": 1.0e-3}
    assert training["lr_schedule"] == {"name": "poly_lr", "gamma": 0.9} and training["batch_size"] == 8
    assert (cfg["data"]["img_rows"], cfg["data"]["img_cols"]) == (384, 768)
    if cfg["model"]["arch"] == "adapnetpp":
        assert training["aux_weights"] == {"seg/aux1": 0.6, "seg/aux2": 0.5}
    else:
        assert cfg["model"]["inputs"] == ["image", "depth"] and not training["aux_weights"]
