"""FuseNet: the reference's exact sizes, fusion by summation before each pool, dropout placement, both scene heads,
the input variants (depth, raw depth, HHA, RGB alone), the depth stream's conv1_1 from pretrained RGB filters, and
one-line errors. Registry-wide shapes and gradients are in test_model_contract.py."""
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision

from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import fusenet as fusenet_module
from ptsemseg.models import get_model, model_input_keys
from tests.conftest import REPO

# Reference counts (FuseNet_PyTorch, seeds_anatomy §2a), matched exactly; the others follow from the same layers.
EXACT_PARAMS = [
    ({}, {"seg": 40}, 44_188_072),
    ({}, {"seg": 37}, 44_186_341),
    ({"scene_head": "paper"}, {"seg": 40, "scene": 10}, 207_815_090),
    ({}, {"seg": 40, "scene": 10}, 63_111_602),  # pooled scene head: 512 → 4096 → 4096 → 10
    ({}, {"depth": 1}, 44_165_569),  # the last conv is 64 → 1
    ({}, {"seg": 40, "depth": 1}, 44_188_649),  # one last conv per dense head on the shared decoder
    ({"inputs": ["image", "hha"]}, {"seg": 40}, 44_189_224),  # conv1_1 of the second stream on 3 channels
    ({"inputs": ["image", "raw_depth"]}, {"seg": 40}, 44_188_072),
    ({"inputs": ["image"]}, {"seg": 40}, 29_466_088),  # no depth encoder
]
PAPER_HEAD, POOLED_HEAD = 163_627_018, 18_923_530  # at 10 scenes
DEPTH_RANGE = 8.0


def count(options, heads):
    with torch.device("meta"):
        model = get_model({"arch": "fusenet", **options}, heads)
    return sum(p.numel() for p in model.parameters())


def build(heads, seed=0, **options):
    torch.manual_seed(seed)
    return get_model({"arch": "fusenet", **options}, heads)


def inputs_for(keys, size, batch=2):
    channels = {"image": 3, "depth": 1, "raw_depth": 1, "hha": 3}
    return [torch.rand(batch, channels[key], *size) * (DEPTH_RANGE if "depth" in key else 1.0) for key in keys]


@pytest.mark.parametrize("options, heads, expected", EXACT_PARAMS,
                         ids=lambda value: str(value) if isinstance(value, int) else None)
def test_exact_parameter_counts(options, heads, expected):
    assert count(options, heads) == expected


def test_scene_heads_alone_and_the_docstring_figures():
    assert count({"scene_head": "paper"}, {"seg": 40, "scene": 10}) - count({}, {"seg": 40}) == PAPER_HEAD
    assert count({}, {"seg": 40, "scene": 10}) - count({}, {"seg": 40}) == POOLED_HEAD
    for figure in (44_188_072, 44_186_341, 207_815_090, 63_111_602, 44_165_569, 29_466_088, PAPER_HEAD,
                   POOLED_HEAD):
        assert f"{figure:,}" in fusenet_module.__doc__


def check_forward_backward(model, inputs, heads):
    size = inputs[0].shape[-2:]
    batch = inputs[0].shape[0]
    model.train()
    outputs = model(*inputs)
    assert list(outputs) == list(heads), "no auxiliary outputs: one output per head in train mode too"
    for name, channels in heads.items():
        shape = (batch, channels) if name == "scene" else (batch, channels, *size)
        assert outputs[name].shape == shape, name
    sum(output.mean() for output in outputs.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:3]
    model.eval()
    with torch.no_grad():
        evaluated = model(*inputs)
    assert all(torch.isfinite(output).all() for output in evaluated.values())
    if "depth" in evaluated:
        assert (evaluated["depth"] > 0).all()


@pytest.mark.parametrize("heads", [{"seg": 5}, {"depth": 1}, {"seg": 5, "depth": 1, "scene": 3}],
                         ids=lambda heads: "+".join(heads))
def test_forward_backward_at_an_odd_size(heads):
    check_forward_backward(build(heads), inputs_for(("image", "depth"), (97, 131)), heads)


def test_forward_backward_at_240x320_with_the_paper_scene_head():
    heads = {"seg": 40, "depth": 1, "scene": 10}
    check_forward_backward(build(heads, scene_head="paper"), inputs_for(("image", "depth"), (240, 320), batch=1),
                           heads)


@pytest.mark.parametrize("inputs", [["image", "hha"], ["image", "raw_depth"], ["image"]], ids="+".join)
def test_input_variants(inputs):
    model = build({"seg": 5}, inputs=inputs)
    assert model.input_keys == tuple(inputs) == model_input_keys({"arch": "fusenet", "inputs": inputs})
    if len(inputs) == 1:
        assert model.second is None
    else:
        assert model.second.stages[0][0].in_channels == (3 if inputs[1] == "hha" else 1)
    check_forward_backward(model, inputs_for(inputs, (97, 131)), {"seg": 5})


def test_default_inputs_are_image_and_depth():
    assert fusenet_module.fusenet.input_keys == model_input_keys({"arch": "fusenet"}) == ("image", "depth")


def test_depth_is_summed_into_the_rgb_stream_before_each_pool():
    """SF5: the input of RGB stage i+1 is pool(rgb_i + depth_i); the depth stream goes on with pool(depth_i)."""
    model = build({"seg": 3}).eval()
    rgb, depth = {}, {}
    hooks = [stage.register_forward_hook(lambda module, args, out, i=i: rgb.update({i: (args[0], out)}))
             for i, stage in enumerate(model.rgb.stages)]
    hooks += [stage.register_forward_hook(lambda module, args, out, i=i: depth.update({i: (args[0], out)}))
              for i, stage in enumerate(model.second.stages)]
    with torch.no_grad():
        model(*inputs_for(("image", "depth"), (64, 96)))
    for hook in hooks:
        hook.remove()
    for i in range(4):
        assert torch.equal(rgb[i + 1][0], F.max_pool2d(rgb[i][1] + depth[i][1], 2)), i
        assert torch.equal(depth[i + 1][0], F.max_pool2d(depth[i][1], 2)), i


def test_a_silent_depth_stream_leaves_the_rgb_only_network():
    """With every depth BN at zero the depth blocks output 0, and fusion gives RGB-alone's outputs exactly."""
    fused = build({"seg": 3}, seed=1).eval()
    alone = build({"seg": 3}, seed=2, inputs=["image"]).eval()
    alone.load_state_dict({key: value for key, value in fused.state_dict().items()
                           if not key.startswith(("second.", "second_norm."))})
    for layer in fused.second.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    image, depth = inputs_for(("image", "depth"), (45, 67))
    with torch.no_grad():
        assert torch.equal(fused(image, depth)["seg"], alone(image)["seg"])
        assert not torch.equal(build({"seg": 3}, seed=1).eval()(image, depth)["seg"], alone(image)["seg"])


@pytest.mark.parametrize("inputs, widths", [
    (["image", "depth"], [256, 256, 512, 512, 512, 512, 256, 128]),  # pool3 rgb, depth; pool4 both; pool5; decoder
    (["image"], [256, 512, 512, 512, 256, 128]),
])
def test_dropout_placement(inputs, widths):
    model = build({"seg": 3}, inputs=inputs).train()
    seen = []
    model.dropout.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    model(*inputs_for(inputs, (64, 64)))
    assert sorted(seen) == sorted(widths) and model.dropout.p == 0.5


def test_paper_scene_head_needs_240x320_and_pooled_takes_any_size():
    paper = build({"seg": 3, "scene": 10}, scene_head="paper").eval()
    with torch.no_grad(), pytest.raises(PtsemsegError, match=r"^fusenet scene_head paper flattens the 7×10 pool5 "
                                                            r"of a 240×320 input; a 97×131 input gives 3×4"):
        paper(*inputs_for(("image", "depth"), (97, 131)))
    pooled = build({"seg": 3, "scene": 10}).eval()
    with torch.no_grad():
        assert pooled(*inputs_for(("image", "depth"), (37, 53)))["scene"].shape == (2, 10)


def test_inputs_smaller_than_five_pools_are_padded_and_cropped_back():
    model = build({"seg": 3, "depth": 1}).eval()
    with torch.no_grad():
        outputs = model(*inputs_for(("image", "depth"), (20, 45)))
    assert outputs["seg"].shape == (2, 3, 20, 45) and outputs["depth"].shape == (2, 1, 20, 45)


def test_bf16_autocast_trains():
    model = build({"seg": 5, "depth": 1}).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(*inputs_for(("image", "depth"), (61, 83)))
    loss = sum(output.float().mean() for output in outputs.values())
    loss.backward()
    assert torch.isfinite(loss) and outputs["seg"].shape == (2, 5, 61, 83)


@pytest.fixture(scope="module")
def vgg16_bn_file(tmp_path_factory):
    """A random torchvision vgg16_bn `features` state dict (the encoders read no other key)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"], batch_norm=True)
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    path = tmp_path_factory.mktemp("vgg") / "vgg16_bn_features.pth"
    torch.save(state, path)
    return str(path), state


@pytest.mark.parametrize("second, channels", [("depth", 1), ("hha", 3)])
def test_second_stream_conv1_1_from_the_rgb_filters(vgg16_bn_file, second, channels):
    path, state = vgg16_bn_file
    model = build({"seg": 3}, inputs=["image", second], pretrained=path)
    rgb_filters = state["features.0.weight"]
    assert torch.equal(model.rgb.stages[0][0].weight, rgb_filters)
    expected = rgb_filters.mean(1, keepdim=True) if channels == 1 else rgb_filters
    assert torch.allclose(model.second.stages[0][0].weight, expected)
    assert torch.equal(model.second.stages[4][-3].weight, state["features.40.weight"])  # conv5_3, both streams
    assert torch.equal(model.rgb.stages[4][-3].weight, state["features.40.weight"])


@pytest.mark.parametrize("options, heads, message", [
    ({"inputs": ["depth"]}, {"seg": 3}, r"arch fusenet takes inputs \[image\] or \[image, depth \| raw_depth \| hha\], "
                                        r"got \[depth\]"),
    ({"inputs": ["depth", "image"]}, {"seg": 3}, r"got \[depth, image\]"),
    ({"inputs": ["image", "depth", "hha"]}, {"seg": 3}, r"got \[image, depth, hha\]"),
    ({"inputs": ["image", "meta"]}, {"seg": 3}, r"got \[image, meta\]"),
    ({"inputs": ["image", "label"]}, {"seg": 3}, "'label' cannot be a model input"),
    ({"scene_head": "flat"}, {"seg": 3, "scene": 4}, "fusenet scene_head must be paper or pooled, got 'flat'"),
    ({"dropout": 1.0}, {"seg": 3}, r"fusenet dropout must be a number in \[0, 1\), got 1.0"),
    ({}, {"scene": 4}, "arch fusenet needs a dense head"),
    ({"pretrained": "/nonexistent/vgg.pth"}, {"seg": 3}, "/nonexistent/vgg.pth"),
])
def test_bad_options_fail_in_one_line(options, heads, message):
    with pytest.raises(PtsemsegError, match=message) as err:
        with torch.device("meta"):
            get_model({"arch": "fusenet", **options}, heads)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("config, classes", [("nyuv2/fusenet_seg.yaml", 40), ("sunrgbd/fusenet_seg.yaml", 37)])
def test_dataset_configs_validate_with_the_reference_settings(config, classes):
    cfg = load_config(os.path.join(REPO, "configs", config))
    assert cfg["model"]["arch"] == "fusenet" and cfg["model"]["inputs"] == ["image", "depth"]
    assert (cfg["data"]["img_rows"], cfg["data"]["img_cols"]) == (240, 320)
    assert cfg["training"]["batch_size"] == 4
    assert cfg["training"]["optimizer"] == {"name": "sgd", "lr": 5e-3, "momentum": 0.9, "weight_decay": 5e-4}
    if classes == 40:
        assert cfg["task"] == {"seg": 1.0, "scene": 0.001} and cfg["model"]["scene_head"] == "paper"
        assert cfg["data"]["n_classes"] == 40
    else:
        assert len(cfg["training"]["loss"]["weight"]) == classes


def test_scene_head_starts_from_the_reference_init():
    """FuseNet_PyTorch draws its FC weights from a normal with std sqrt(4 / (fan_in + fan_out))."""
    model = build({"seg": 3, "scene": 10}, inputs=["image"])
    for layer in model.image["scene"].classifier:
        if isinstance(layer, torch.nn.Linear):
            fan_out, fan_in = layer.weight.shape
            assert layer.weight.std().item() == pytest.approx((4 / (fan_in + fan_out)) ** 0.5, rel=0.05)
