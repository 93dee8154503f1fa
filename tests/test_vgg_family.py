"""Architecture-specific checks of FCN-8s, SegNet, FRRN and DispNet: VGG16 weight mapping, exact sizes, FRRU
chaining, SegNet's signed logits, DispNet's multi-scale heads and every head combination (seg, depth, seg + depth,
seg + scene); single-task shapes, modes and AMP are in test_models.py."""
import shutil

import pytest
import torch
import torchvision

from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS, fcn, frrn, get_model
from ptsemseg.models.vgg import stage_batch_norms, stage_convs

# Exact sizes of these implementations. Against the seed projects' counts: FCN-8s is identical (seg and depth);
# SegNet's last layer is a plain conv (the seeds add BN + ReLU: 2 params per output); FRRN chains its units, so the
# units after a stage's first take that stage's width (+850,176 for A, +829,440 for B), has no bias before BN in
# the stem (-48) and a 1×1 classifier (B: -7,296 against Semseg-MonoDepth's 3×3); DispNet's depth head is
# SfmLearner's (identical) and its seg heads are 3×3 convs to n classes (+36,480 against Semseg-MonoDepth's 1×1).
EXACT_PARAMS = {
    ("fcn8s", "seg"): 134_456_985, ("fcn8s", "depth"): 69_489_729,
    ("segnet", "seg"): 29_453_971, ("segnet", "depth"): 29_443_585,
    ("frrnA", "seg"): 17_409_203, ("frrnA", "depth"): 17_408_321,
    ("frrnB", "seg"): 24_721_075, ("frrnB", "depth"): 24_720_193,
    ("dispnet", "seg"): 31_653_996, ("dispnet", "depth"): 31_596_900,
}


def build(arch, task="seg", n_classes=19, **options):
    return get_model({"arch": arch, **options}, {task: n_classes if task == "seg" else 1})


@pytest.mark.parametrize("arch, task", sorted(EXACT_PARAMS))
def test_exact_parameter_counts(arch, task):
    with torch.device("meta"):
        model = build(arch, task)
    assert sum(p.numel() for p in model.parameters()) == EXACT_PARAMS[arch, task]


@pytest.fixture(scope="module")
def vgg_files(tmp_path_factory):
    """Randomly initialised torchvision vgg16 and vgg16_bn, saved as state dicts (no network needed)."""
    folder = tmp_path_factory.mktemp("vgg")
    torch.manual_seed(0)
    files = {}
    for name in ("vgg16", "vgg16_bn"):
        state = getattr(torchvision.models, name)().state_dict()
        files[name] = (str(folder / f"{name}.pth"), state)
        torch.save(state, files[name][0])
    yield files
    shutil.rmtree(folder)  # 1 GB of weights: gone as soon as the module is done


def vgg_convs(state):
    """The 13 conv (weight, bias) pairs of a torchvision VGG16 state dict, in order."""
    keys = [key[:-len(".weight")] for key, value in state.items() if key.startswith("features.") and value.dim() == 4]
    return [(state[f"{key}.weight"], state[f"{key}.bias"]) for key in keys]


def test_fcn_takes_vgg16_convs_and_fc_layers_as_convolutions(vgg_files):
    path, state = vgg_files["vgg16"]
    model = build("fcn8s", pretrained=path)
    for conv, (weight, bias) in zip(stage_convs(model.encoder.stages), vgg_convs(state), strict=True):
        assert torch.equal(conv.weight, weight) and torch.equal(conv.bias, bias)
    assert torch.equal(model.fc6.weight, state["classifier.0.weight"].view(4096, 512, 7, 7))
    assert torch.equal(model.fc7.weight, state["classifier.3.weight"].view(4096, 4096, 1, 1))
    assert torch.equal(model.fc6.bias, state["classifier.0.bias"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])


def test_fcn_from_scratch_starts_from_he_init():
    """Without ImageNet weights the VGG convs and fc6/fc7 are He-initialised (normal, fan-out) with zero bias."""
    torch.manual_seed(0)
    model = build("fcn8s", "depth")
    for conv in stage_convs(model.encoder.stages) + [model.fc6, model.fc7]:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert not conv.bias.any()
        assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_fcn_depth_takes_only_the_vgg16_convs(vgg_files):
    path, state = vgg_files["vgg16"]
    model = build("fcn8s", "depth", pretrained=path)
    assert torch.equal(stage_convs(model.encoder.stages)[12].weight, vgg_convs(state)[12][0])
    assert model.fc6.weight.shape == (2048, 512, 7, 7)
    assert not torch.equal(model.fc6.weight, state["classifier.0.weight"][:2048].reshape(2048, 512, 7, 7))


def test_segnet_takes_convs_and_batch_norm_statistics_from_vgg16_bn(vgg_files):
    path, state = vgg_files["vgg16_bn"]
    model = build("segnet", pretrained=path)
    bn_keys = [key[:-len(".running_mean")] for key in state if key.endswith(".running_mean")]
    encoder = model.encoder.stages
    pairs = zip(stage_convs(encoder), stage_batch_norms(encoder), vgg_convs(state), bn_keys, strict=True)
    for conv, bn, (weight, bias), bn_key in pairs:
        assert torch.equal(conv.weight, weight) and torch.equal(conv.bias, bias)
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(bn, name), state[f"{bn_key}.{name}"])


def test_segnet_from_plain_vgg16_copies_convs_and_one_channel_input_takes_the_rgb_mean(vgg_files):
    path, state = vgg_files["vgg16"]
    model = build("segnet", "depth", pretrained=path, in_channels=1)
    convs, source = stage_convs(model.encoder.stages), vgg_convs(state)
    assert torch.allclose(convs[0].weight, source[0][0].mean(dim=1, keepdim=True))
    assert torch.equal(convs[5].weight, source[5][0])
    assert torch.equal(stage_batch_norms(model.encoder.stages)[5].running_var, torch.ones(256))
    assert model(torch.rand(1, 1, 19, 23))["depth"].shape == (1, 1, 19, 23)


def test_a_state_dict_that_is_not_vgg16_is_refused_in_one_line(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(PtsemsegError, match=r"resnet18\.pth: not a torchvision VGG16 state dict"):
        build("segnet", pretrained=str(path))


@pytest.mark.parametrize("arch, filename", [("fcn8s", "vgg16-397923af.pth"), ("segnet", "vgg16_bn-6c64b313.pth")])
def test_imagenet_offline_fails_in_one_line_naming_the_file(arch, filename, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(PtsemsegError) as info:
        build(arch, pretrained="imagenet")
    message = str(info.value)
    assert filename in message and str(tmp_path) in message and "\n" not in message


def test_fcn_upsamplers_start_as_bilinear_interpolation():
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    weight = fcn.bilinear_upsampling_weight(2, 4)
    assert torch.equal(weight[0, 0], taps[:, None] * taps[None, :]) and torch.equal(weight[0, 1], torch.zeros(4, 4))
    upsample = fcn._upsampler(1, 4, 2)
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(1, 1, 6, 6)
    # Away from the borders a bilinear ×2 of a linear ramp is again a linear ramp with half the slope.
    row = upsample(ramp)[0, 0, 4, 2:-2]
    assert torch.allclose(row[1:] - row[:-1], torch.full((row.numel() - 1,), 0.5))


def test_segnet_logits_can_be_negative():
    model = build("segnet", n_classes=4).eval()
    with torch.no_grad():
        assert (model(torch.rand(1, 3, 32, 32))["seg"] < 0).any()


def test_frrn_names_build_the_variant_they_say():
    assert build("frrnA").model_type == "A" and len(build("frrnA").stages) == 7
    assert build("frrnB").model_type == "B" and len(build("frrnB").stages) == 9
    assert build("frrn").model_type == "B"
    assert build("frrn", model_type="A").model_type == "A"
    assert build("frrnB").stages[-1].units[-1].body[-1][0].out_channels == 96
    with pytest.raises(PtsemsegError, match="model_type"):
        build("frrn", model_type="C")


def test_frru_units_are_chained_within_a_stage():
    model = build("frrnA", n_classes=3).eval()
    seen = []
    hooks = [unit.register_forward_hook(lambda module, inputs, outputs: seen.append((module, inputs, outputs)))
             for unit in model.modules() if isinstance(unit, frrn.FRRU)]
    with torch.no_grad():
        model(torch.rand(1, 3, 35, 45))
    for hook in hooks:
        hook.remove()
    for stage in model.stages:
        calls = [call for call in seen if call[0] in list(stage.units)]
        assert len(calls) == len(stage.units)
        for (_, _, (y_out, z_out)), (_, (y_in, z_in), _) in zip(calls, calls[1:]):
            assert y_in is y_out and z_in is z_out


def test_frrn_pads_inside_so_the_output_ignores_the_padding():
    model = build("frrnB", n_classes=3).eval()
    image = torch.rand(1, 3, 40, 70)
    with torch.no_grad():
        padded = model(torch.nn.functional.pad(image, (0, 26, 0, 24)))["seg"][..., :40, :70]
        assert torch.allclose(model(image)["seg"], padded, atol=1e-5)


@pytest.mark.parametrize("task", ["seg", "depth"])
def test_dispnet_returns_its_scales_in_train_mode_and_full_resolution_in_eval(task):
    model = build("dispnet", task, n_classes=3).train()
    outputs = model(torch.rand(2, 3, 37, 51))
    assert {name: tuple(out.shape[-2:]) for name, out in outputs.items()} == {
        task: (37, 51), f"{task}/scale1": (19, 26), f"{task}/scale2": (10, 13), f"{task}/scale3": (5, 7)}
    assert list(build("dispnet", task, n_classes=3, scales=2).train()(torch.rand(1, 3, 32, 32))) == \
        [task, f"{task}/scale1"]
    assert list(build("dispnet", task, n_classes=3, scales=1).train()(torch.rand(1, 3, 32, 32))) == [task]
    eval_outputs = model.eval()(torch.rand(2, 3, 37, 51))
    assert list(eval_outputs) == [task] and eval_outputs[task].shape == (2, 3 if task == "seg" else 1, 37, 51)
    with pytest.raises(PtsemsegError, match="scales"):
        build("dispnet", task, scales=5)


def test_dispnet_depth_is_inverse_disparity_starting_mid_range():
    model = build("dispnet", "depth", alpha=10.0, beta=0.01).train()
    for depth in model(torch.rand(1, 3, 64, 64)).values():
        assert depth.min() >= 1 / 10.01 and depth.max() <= 100.0
    with torch.no_grad():
        for stage in model.decoder:
            if stage.predict is not None:
                stage.predict["depth"].weight.zero_()
        start = model.eval()(torch.rand(1, 3, 16, 16))["depth"]
    assert torch.allclose(start, torch.full_like(start, 1 / (0.01 * 10.01) ** 0.5), rtol=1e-4)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


def test_fcn_joint_model_is_the_seg_trunk_with_the_depth_score_path_on_its_fc7():
    with torch.device("meta"):
        joint = get_model({"arch": "fcn8s"}, {"seg": 19, "depth": 1})
        depth = build("fcn8s", "depth")
    assert (joint.fc6.out_channels, joint.fc7.out_channels) == (4096, 4096)
    assert isinstance(joint.drop, torch.nn.Dropout2d) and isinstance(depth.drop, torch.nn.Identity)
    assert joint.dense["depth"].score_fr.in_channels == 4096 and joint.dense["depth"].score_fr.out_channels == 64
    wider_score_fr = (4096 - 1024) * fcn.DEPTH_WIDTH
    assert parameter_count(joint) == \
        EXACT_PARAMS["fcn8s", "seg"] + parameter_count(depth.dense["depth"]) + wider_score_fr


def test_dispnet_joint_iconvs_read_the_predictions_of_every_head():
    with torch.device("meta"):
        joint = get_model({"arch": "dispnet"}, {"seg": 6, "depth": 1})
        seg = build("dispnet", n_classes=6)
    extra = [j.iconv[0].in_channels - s.iconv[0].in_channels for j, s in zip(joint.decoder, seg.decoder, strict=True)]
    # The last four stages predict; the three after the first also read the upsampled depth prediction.
    assert extra == [0, 0, 0, 0, 1, 1, 1]
    assert [list(stage.predict or ()) for stage in joint.decoder] == [[]] * 3 + [["seg", "depth"]] * 4


@pytest.mark.parametrize("arch", ["fcn8s", "segnet", "frrn", "dispnet"])
def test_image_level_heads_alone_are_refused_in_one_line(arch):
    with torch.device("meta"), pytest.raises(PtsemsegError, match=f"arch {arch} needs a dense head"):
        get_model({"arch": arch}, {"scene": 10})


@pytest.mark.parametrize("arch", ["fcn8s", "segnet", "frrn", "frrnA", "frrnB", "dispnet"])
def test_builders_and_models_declare_the_image_as_their_input(arch):
    with torch.device("meta"):
        model = get_model({"arch": arch}, {"seg": 3})
    assert MODELS.get(arch).input_keys == model.input_keys == ("image",)
