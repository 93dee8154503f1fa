"""Every registered encoder: declared feature channels and strides, input channels, dilation, independence, weights."""
import math
from typing import Callable, NamedTuple, Optional

import pytest
import torch
import torch.nn as nn
import torchvision

from ptsemseg.encoders import ENCODERS, get_encoder
from ptsemseg.encoders import resnet as resnet_module
from ptsemseg.errors import PtsemsegError


class Case(NamedTuple):
    """What an encoder must declare, and torchvision's model with the same parameter names (None: no counterpart)."""

    out_channels: tuple
    strides: tuple
    torchvision_model: Optional[Callable] = None
    imagenet_weights: Optional[object] = None


BASIC, BOTTLENECK = (64, 128, 256, 512), (256, 512, 1024, 2048)
RESNET_STRIDES = (4, 8, 16, 32)
tv = torchvision.models
CASES = {
    "resnet18": Case(BASIC, RESNET_STRIDES, tv.resnet18, tv.ResNet18_Weights.IMAGENET1K_V1),
    "resnet34": Case(BASIC, RESNET_STRIDES, tv.resnet34, tv.ResNet34_Weights.IMAGENET1K_V1),
    "resnet50": Case(BOTTLENECK, RESNET_STRIDES, tv.resnet50, tv.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": Case(BOTTLENECK, RESNET_STRIDES, tv.resnet101, tv.ResNet101_Weights.IMAGENET1K_V1),
    "resnet152": Case(BOTTLENECK, RESNET_STRIDES, tv.resnet152, tv.ResNet152_Weights.IMAGENET1K_V1),
    "resnet18_v1c": Case(BASIC, RESNET_STRIDES),
    "resnet34_v1c": Case(BASIC, RESNET_STRIDES),
    "resnet50_v1c": Case(BOTTLENECK, RESNET_STRIDES),
    "resnet101_v1c": Case(BOTTLENECK, RESNET_STRIDES),
    "resnet152_v1c": Case(BOTTLENECK, RESNET_STRIDES),
    # VGG16 parameters are mapped from torchvision's names (tests/test_encoders_vgg.py checks the mapping).
    "vgg16": Case((64, 128, 256, 512, 512), (2, 4, 8, 16, 32)),
    "vgg16_bn": Case((64, 128, 256, 512, 512), (2, 4, 8, 16, 32)),
}
# Encoders that dilate their deepest stages for these output strides.
DILATED_OUTPUT_STRIDES = {name: (8, 16) for name in CASES if name.startswith("resnet")}

NAMES = ENCODERS.names()
TORCHVISION_NAMES = [name for name in NAMES if CASES.get(name, Case((), ())).torchvision_model is not None]
DEEP_STEM_NAMES = [name for name in NAMES if name.endswith("_v1c")]
SIZE = (61, 83)  # odd on purpose: every stride rounds up


def feature_shapes(encoder, in_channels, size=SIZE):
    encoder.eval()
    with torch.no_grad():
        features = encoder(torch.rand(1, in_channels, *size))
    return [tuple(f.shape) for f in features]


def expected_shapes(out_channels, strides, size=SIZE):
    return [(1, c, math.ceil(size[0] / s), math.ceil(size[1] / s)) for c, s in zip(out_channels, strides)]


def test_every_registered_encoder_has_a_case():
    missing = [name for name in NAMES if name not in CASES]
    assert not missing, f"add test cases for the encoders {missing} to CASES"


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("name", NAMES)
def test_features_match_the_declared_channels_and_strides(name, in_channels):
    case = CASES[name]
    encoder = get_encoder(name, in_channels=in_channels)
    assert encoder.in_channels == in_channels
    assert tuple(encoder.out_channels) == case.out_channels and tuple(encoder.strides) == case.strides
    assert feature_shapes(encoder, in_channels) == expected_shapes(case.out_channels, case.strides)


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("name", NAMES)
def test_output_stride_by_dilation_keeps_the_deep_maps_large(name, output_stride):
    """Dilation instead of stride: the deep maps stop shrinking at `output_stride`, with the same parameters;
    an encoder without a dilated variant refuses the output stride in one line."""
    if output_stride not in DILATED_OUTPUT_STRIDES.get(name, ()):
        with pytest.raises(PtsemsegError, match=f"output_stride.*{output_stride}"):
            get_encoder(name, output_stride=output_stride)
        return
    case = CASES[name]
    encoder = get_encoder(name, output_stride=output_stride)
    strides = tuple(min(stride, output_stride) for stride in case.strides)
    assert encoder.output_stride == output_stride and tuple(encoder.strides) == strides
    assert feature_shapes(encoder, 3) == expected_shapes(case.out_channels, strides)
    with torch.device("meta"):
        undilated = get_encoder(name)
    assert {k: v.shape for k, v in encoder.state_dict().items()} == \
        {k: v.shape for k, v in undilated.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
def test_two_encoders_of_one_kind_side_by_side_are_independent(name):
    """An RGB and a 1-channel encoder of one kind in one module: no parameter or buffer is shared."""
    with torch.device("meta"):
        pair = nn.ModuleDict({"rgb": get_encoder(name), "depth": get_encoder(name, in_channels=1)})
    for tensors in (nn.Module.parameters, nn.Module.buffers):
        per_encoder = [len(list(tensors(encoder))) for encoder in pair.values()]
        assert len(list(tensors(pair))) == sum(per_encoder)
    assert len(list(pair["rgb"].parameters())) > 0
    assert pair["depth"].in_channels == 1 and pair["rgb"].in_channels == 3


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_parameter_names_and_shapes_equal_torchvision(name):
    """So torchvision's ImageNet weights load without renaming: torchvision's state dict without the classifier."""
    with torch.device("meta"):
        encoder, reference = get_encoder(name), CASES[name].torchvision_model()
    expected = {k: v.shape for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in encoder.state_dict().items()} == expected


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_imagenet_comes_from_the_torchvision_weights_enum(name, monkeypatch):
    requested = []

    def fake_state_dict(pretrained, weights):
        requested.append((pretrained, weights))
        return CASES[name].torchvision_model().state_dict()

    monkeypatch.setattr(resnet_module, "pretrained_state_dict", fake_state_dict)
    with torch.device("meta"):
        get_encoder(name, pretrained="imagenet")
    assert requested == [("imagenet", CASES[name].imagenet_weights)]


@pytest.mark.parametrize("name", DEEP_STEM_NAMES)
def test_deep_stem_is_three_3x3_convs_without_imagenet_weights(name):
    with torch.device("meta"):
        encoder = get_encoder(name)
    convs = [m for m in encoder.stem.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == \
        [(64, (3, 3), (2, 2)), (64, (3, 3), (1, 1)), (128, (3, 3), (1, 1))]
    with pytest.raises(PtsemsegError, match=f"encoder {name}: torchvision has no ImageNet weights"):
        with torch.device("meta"):
            get_encoder(name, pretrained="imagenet")


def test_pretrained_torchvision_file_loads_exactly_and_adapts_the_first_conv(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(reference, path)
    torch.manual_seed(1)
    rgb = get_encoder("resnet18", pretrained=str(path)).state_dict()
    assert set(rgb) == {key for key in reference if not key.startswith("fc.")}
    assert all(torch.equal(value, reference[key]) for key, value in rgb.items())
    four = get_encoder("resnet18", in_channels=4, pretrained=str(path)).state_dict()
    assert torch.equal(four["conv1.weight"], reference["conv1.weight"].mean(1, keepdim=True).repeat(1, 4, 1, 1))
    assert all(torch.equal(value, reference[key]) for key, value in four.items() if key != "conv1.weight")


def test_pretrained_deep_stem_file_adapts_the_first_stem_conv(tmp_path):
    torch.manual_seed(0)
    source = get_encoder("resnet18_v1c").state_dict()
    path = tmp_path / "resnet18_v1c.pth"
    torch.save(source, path)
    torch.manual_seed(1)
    four = get_encoder("resnet18_v1c", in_channels=4, pretrained=str(path)).state_dict()
    assert torch.equal(four["stem.0.0.weight"], source["stem.0.0.weight"].mean(1, keepdim=True).repeat(1, 4, 1, 1))
    assert torch.equal(four["layer3.1.conv2.weight"], source["layer3.1.conv2.weight"])


@pytest.mark.parametrize("name, options, message", [
    ("resnet19", {}, "unknown encoder 'resnet19'"),
    ("resnet18", {"output_stride": 4}, r"encoder resnet18: output_stride must be one of \[8, 16, 32\]"),
])
def test_bad_options_fail_in_one_line(name, options, message):
    with pytest.raises(PtsemsegError, match=message):
        get_encoder(name, **options)


def test_torchvision_file_does_not_fit_the_deep_stem(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(PtsemsegError, match=r"resnet18.pth lack \d+ resnet18_v1c encoder tensors"):
        get_encoder("resnet18_v1c", pretrained=str(path))


def test_frozen_bn_stays_in_eval_mode_without_gradients():
    encoder = get_encoder("resnet18", freeze_bn=True).train()
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(bn.training or bn.weight.requires_grad for bn in norms)
    assert encoder.layer1[0].conv1.weight.requires_grad


def test_imagenet_offline_fails_in_one_line_naming_the_file(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(PtsemsegError) as info:
        get_encoder("resnet18", pretrained="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path) in message and "\n" not in message
