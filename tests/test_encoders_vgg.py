"""The VGG16 and VGG16-BN encoders of the encoder registry: feature info, input channels, independence, weights."""
import math

import pytest
import torch
import torchvision

from ptsemseg.encoders import ENCODERS, get_encoder
from ptsemseg.encoders import vgg as vgg_encoders
from ptsemseg.errors import PtsemsegError
from ptsemseg.models.vgg import stage_batch_norms, stage_convs

NAMES = ("vgg16", "vgg16_bn")
ODD_SIZE = (37, 51)


def features_state_dict(batch_norm, seed):
    """A torchvision-format VGG16(-BN) state dict of the `features` part, random weights and BN statistics."""
    torch.manual_seed(seed)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=batch_norm)
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            value.uniform_(0.5, 1.5)
    return state


def torchvision_convs(state):
    """(weight, bias) of the 13 convs of a torchvision VGG16 state dict, in order."""
    keys = [key[:-len(".weight")] for key, value in state.items() if key.endswith(".weight") and value.dim() == 4]
    return [(state[f"{key}.weight"], state[f"{key}.bias"]) for key in keys]


def test_both_are_registered():
    assert set(NAMES) <= set(ENCODERS.names())


@pytest.mark.parametrize("in_channels", [3, 4])
@pytest.mark.parametrize("name", NAMES)
def test_features_match_out_channels_and_strides_at_an_odd_size(name, in_channels):
    encoder = get_encoder(name, in_channels=in_channels).eval()
    assert encoder.out_channels == (64, 128, 256, 512, 512) and encoder.strides == (2, 4, 8, 16, 32)
    with torch.no_grad():
        features = encoder(torch.rand(1, in_channels, *ODD_SIZE))
    assert [f.shape[1] for f in features] == list(encoder.out_channels)
    assert [tuple(f.shape[-2:]) for f in features] == [tuple(math.ceil(side / stride) for side in ODD_SIZE)
                                                       for stride in encoder.strides]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules()) == (name == "vgg16_bn")


def test_first_padding_widens_every_feature_map():
    encoder = get_encoder("vgg16", first_padding=100).eval()
    with torch.no_grad():
        features = encoder(torch.rand(1, 3, *ODD_SIZE))
    padded = tuple(side + 2 * 99 for side in ODD_SIZE)
    assert [tuple(f.shape[-2:]) for f in features] == [tuple(math.ceil(side / stride) for side in padded)
                                                       for stride in encoder.strides]


def test_forward_with_indices_gives_the_features_and_what_unpooling_needs():
    encoder = get_encoder("vgg16_bn").eval()
    x = torch.rand(1, 3, *ODD_SIZE)
    with torch.no_grad():
        features, pooling = encoder.forward_with_indices(x)
        plain = encoder(x)
        pre_pool = encoder.stages[0](x)
    assert all(torch.equal(a, b) for a, b in zip(features, plain, strict=True))
    indices, size = pooling[0]
    assert tuple(size) == ODD_SIZE
    unpooled = torch.nn.functional.max_unpool2d(features[0], indices, 2, stride=2, output_size=size)
    kept = unpooled != 0
    assert torch.equal(unpooled[kept], pre_pool[kept])


def test_two_encoders_side_by_side_are_independent():
    first, second = get_encoder("vgg16_bn", in_channels=1), get_encoder("vgg16_bn", in_channels=1)
    assert {id(p) for p in first.parameters()}.isdisjoint(id(p) for p in second.parameters())
    x = torch.rand(2, 1, 32, 32)
    before = second(x)[-1].detach()
    optimizer = torch.optim.SGD(first.parameters(), lr=0.1)
    first(x)[-1].sum().backward()
    optimizer.step()
    assert all(p.grad is None for p in second.parameters())
    assert torch.equal(second(x)[-1].detach(), before)


@pytest.mark.parametrize("name, file_batch_norm", [("vgg16", False), ("vgg16_bn", True), ("vgg16_bn", False),
                                                   ("vgg16", True)])
def test_pretrained_file_loads_exactly(name, file_batch_norm, tmp_path):
    """Convs from either torchvision format; BN affine and statistics only from a vgg16_bn file into vgg16_bn."""
    state = features_state_dict(file_batch_norm, seed=1)
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    torch.manual_seed(2)
    encoder = get_encoder(name, pretrained=str(path))
    for conv, (weight, bias) in zip(stage_convs(encoder.stages), torchvision_convs(state), strict=True):
        assert torch.equal(conv.weight, weight) and torch.equal(conv.bias, bias)
    if name == "vgg16_bn":
        bn_keys = [key[:-len(".running_mean")] for key in state if key.endswith(".running_mean")]
        for number, bn in enumerate(stage_batch_norms(encoder.stages)):
            for field in ("weight", "bias", "running_mean", "running_var"):
                expected = state[f"{bn_keys[number]}.{field}"] if file_batch_norm else getattr(
                    torch.nn.BatchNorm2d(bn.num_features), field)
                assert torch.equal(getattr(bn, field), expected), (number, field)


def test_pretrained_with_four_input_channels_takes_the_rgb_mean(tmp_path):
    state = features_state_dict(True, seed=3)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    encoder = get_encoder("vgg16_bn", in_channels=4, pretrained=str(path))
    first = stage_convs(encoder.stages)[0]
    assert first.weight.shape == (64, 4, 3, 3)
    assert torch.allclose(first.weight, state["features.0.weight"].mean(1, keepdim=True).expand(-1, 4, -1, -1))
    assert torch.equal(stage_convs(encoder.stages)[1].weight, state["features.3.weight"])
    assert encoder.eval()(torch.rand(1, 4, 16, 16))[-1].shape == (1, 512, 1, 1)


@pytest.mark.parametrize("name, weights", [("vgg16", torchvision.models.VGG16_Weights.IMAGENET1K_V1),
                                           ("vgg16_bn", torchvision.models.VGG16_BN_Weights.IMAGENET1K_V1)])
def test_imagenet_asks_torchvision_for_its_weights(name, weights, monkeypatch):
    requested = []
    state = features_state_dict(name == "vgg16_bn", seed=4)

    def fake_state_dict(pretrained, weights):
        requested.append((pretrained, weights))
        return state

    monkeypatch.setattr(vgg_encoders, "pretrained_state_dict", fake_state_dict)
    encoder = get_encoder(name, pretrained="imagenet")
    assert requested == [("imagenet", weights)]
    assert torch.equal(stage_convs(encoder.stages)[12].weight, torchvision_convs(state)[12][0])


def test_without_weights_the_convs_start_from_he_init_with_zero_bias():
    torch.manual_seed(0)
    for conv in stage_convs(get_encoder("vgg16").stages):
        assert not conv.bias.any()
        fan_out = conv.out_channels * 9
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.1)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_stride_other_than_32_is_refused_in_one_line(output_stride):
    with pytest.raises(PtsemsegError, match="output_stride 32 only") as info:
        get_encoder("vgg16", output_stride=output_stride)
    assert "\n" not in str(info.value)
