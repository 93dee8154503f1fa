"""`model.inputs`: choosing the sample keys a model consumes (early fusion for single-stream architectures),
their validation against the dataset, and the HHA the built-in dataset computes on the fly."""
import numpy as np
import pytest
import torch
import yaml

from ptsemseg.build import sample_keys
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.synthetic import Synthetic
from ptsemseg.models import get_model, model_input_keys, model_inputs
from ptsemseg.models._inputs import EarlyFusion
from tests.conftest import run_script, tiny_config


def test_early_fusion_concatenates_inputs_into_the_first_conv():
    torch.manual_seed(0)
    model = get_model({"arch": "deeplab", "backbone": "resnet18", "inputs": ["image", "depth"]}, {"seg": 4})
    assert isinstance(model, EarlyFusion) and model.input_keys == ("image", "depth")
    assert model.net.backbone.conv1.in_channels == 4
    batch = {"image": torch.randn(2, 3, 33, 41), "depth": torch.rand(2, 1, 33, 41) * 8, "label": None}
    outputs = model(*model_inputs(model, batch))
    assert outputs["seg"].shape == (2, 4, 33, 41)
    outputs["seg"].mean().backward()
    assert model.net.backbone.conv1.weight.grad[:, 3].abs().sum() > 0, "the depth channel gets no gradient"


def test_metric_inputs_are_standardised_inside_the_model_without_parameters():
    plain = get_model({"arch": "deeplab", "backbone": "resnet18", "in_channels": 4}, {"seg": 4})
    fused = get_model({"arch": "deeplab", "backbone": "resnet18", "inputs": ["image", "depth"]}, {"seg": 4})
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in plain.parameters())
    fused.train()
    fused.input_norms[1](torch.rand(4, 1, 8, 8) * 50 + 20)
    assert fused.input_norms[1].norm.running_mean.item() > 1.0  # depth statistics, learned from batches
    assert isinstance(fused.input_norms[0].norm, torch.nn.Identity)  # the image is normalised by the loader


def test_default_inputs_build_the_plain_model():
    model = get_model({"arch": "deeplab", "backbone": "resnet18", "inputs": ["image"]}, {"seg": 4})
    assert not isinstance(model, EarlyFusion)
    assert model_input_keys({"arch": "deeplab"}) == ("image",)


def test_run_asks_the_dataset_for_model_inputs_and_targets():
    cfg = tiny_config(model={"arch": "deeplab", "inputs": ["image", "hha"]})
    assert sample_keys(cfg) == ("image", "hha", "label")


@pytest.mark.parametrize("inputs, key, message", [
    (["image", "label"], "model.inputs", "'label' cannot be a model input"),
    (["image", "dept"], "model.inputs", "unknown sample key 'dept' (closest: depth"),
    ([], "model.inputs", "inputs must be a non-empty list"),
    (["image", "image"], "model.inputs", "inputs name a key twice"),
])
def test_bad_inputs_fail_in_one_line(tmp_path, inputs, key, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(model={"arch": "deeplab", "inputs": inputs})))
    with pytest.raises(PtsemsegError) as err:
        load_config(str(path))
    assert f"{key}: " in str(err.value) and message in str(err.value)


def test_input_the_dataset_cannot_give_names_key_dataset_and_model(tmp_path):
    cfg = tiny_config(model={"arch": "deeplab", "inputs": ["image", "raw_depth"]})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(PtsemsegError, match="model deeplab needs 'raw_depth'; dataset synthetic gives"):
        load_config(str(path))
    cfg["data"]["holes"] = 0.3
    path.write_text(yaml.safe_dump(cfg))
    load_config(str(path))


def test_synthetic_hha_is_deterministic_cached_and_encodes_the_scene(tmp_path):
    fresh = Synthetic(None, "train", keys=("depth", "hha"), holes=0.3)
    cached = Synthetic(None, "train", keys=("hha",), holes=0.3, hha_cache=str(tmp_path))
    sample = fresh.load(2)
    first, again = cached.load(2)["hha"], cached.load(2)["hha"]
    assert sample["hha"].shape == (240, 320, 3) and sample["hha"].dtype == np.uint8
    assert np.array_equal(sample["hha"], first) and np.array_equal(first, again)
    assert len(list(tmp_path.rglob("*.png"))) == 1
    holes = sample["depth"] == 0
    assert holes.any() and (sample["hha"][holes] == 0).all()  # no depth, no encoding
    # channel 0 is disparity: nearer pixels get larger values
    near, far = sample["depth"] < np.percentile(sample["depth"][~holes], 20), sample["depth"] > np.percentile(
        sample["depth"][~holes], 80)
    assert sample["hha"][near, 0].mean() > sample["hha"][far, 0].mean()


def test_train_py_runs_an_early_fusion_model_on_hha(write_config):
    config = write_config(model={"arch": "deeplab", "backbone": "resnet18", "inputs": ["image", "hha"]})
    result = run_script("train.py", "--config", config)
    assert result.returncode == 0, result.stderr[-2000:]
