"""Config loading: seed schema, `_base_` inheritance, overrides and validation messages."""
import pytest
import torch
import yaml

from ptsemseg.config import load_config, parse_overrides, safe_load
from ptsemseg.errors import PtsemsegError
from ptsemseg.models import MODELS, head_specs
from tests.conftest import tiny_config


def dump(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_defaults_and_empty_values(tmp_path):
    cfg = tiny_config()
    cfg["training"].update({"lr_schedule": None, "resume": None})
    cfg["data"].update({"img_rows": "same", "img_cols": "same"})
    resolved = load_config(dump(tmp_path / "c.yaml", cfg))
    assert resolved["training"]["lr_schedule"] is None
    assert resolved["training"]["resume"] is None
    assert resolved["data"]["img_rows"] == "same"
    assert resolved["testing"]["max_depth"] == 80.0
    assert resolved["training"]["checkpoint_minutes"] == 10


def test_base_inheritance_child_wins(tmp_path):
    (tmp_path / "sub").mkdir()
    dump(tmp_path / "base.yaml", tiny_config())
    dump(tmp_path / "extra.yaml", {"training": {"batch_size": 5, "print_interval": 7}})
    child = {"_base_": ["../base.yaml", "../extra.yaml"], "training": {"batch_size": 3}}
    resolved = load_config(dump(tmp_path / "sub" / "child.yaml", child))
    assert resolved["training"]["batch_size"] == 3
    assert resolved["training"]["print_interval"] == 7
    assert resolved["model"]["backbone"] == "resnet18"


def test_delete_replaces_the_base_mapping(tmp_path):
    dump(tmp_path / "base.yaml", tiny_config(training={"augmentations": {"hflip": 0.5, "gamma": 0.2}}))
    merged = {"_base_": "base.yaml", "training": {"augmentations": {"vflip": 0.5}}}
    replaced = {"_base_": "base.yaml", "training": {"augmentations": {"_delete_": True, "vflip": 0.5}}}
    assert load_config(dump(tmp_path / "merged.yaml", merged))["training"]["augmentations"] == \
        {"hflip": 0.5, "gamma": 0.2, "vflip": 0.5}
    assert load_config(dump(tmp_path / "replaced.yaml", replaced))["training"]["augmentations"] == {"vflip": 0.5}


def test_overrides_parse_yaml_values(tmp_path):
    resolved = load_config(dump(tmp_path / "c.yaml", tiny_config()),
                           ["training.batch_size=4", "model.arch=deeplab", "training.optimizer.lr=1e-2",
                            "training.augmentations={vflip: 0.5}"])
    assert resolved["training"]["batch_size"] == 4
    assert resolved["training"]["optimizer"]["lr"] == 0.01
    assert resolved["training"]["augmentations"] == {"hflip": 0.5, "vflip": 0.5}
    assert parse_overrides(["a.b=[1, 2]"]) == {"a": {"b": [1, 2]}}


@pytest.mark.parametrize("override", ["training.batch_size", "=3", "training..x=1", ".a=1"])
def test_bad_override_syntax(override):
    with pytest.raises(PtsemsegError, match="bad override"):
        parse_overrides([override])


@pytest.mark.parametrize("override, message", [
    ("model.arch=deeplap", "unknown arch 'deeplap' (closest: deeplab"),
    ("data.dataset=synthetik", "unknown dataset 'synthetik' (closest: synthetic"),
    ("training.loss={name: cross_entropi}", "unknown loss 'cross_entropi' (closest: cross_entropy"),
    ("training.optimizer={name: adamm}", "unknown optimizer 'adamm' (closest: adam"),
    ("training.lr_schedule={name: poly}", "unknown scheduler 'poly' (closest: poly_lr"),
    ("training.augmentations={hflipp: 0.5}", "unknown augmentation 'hflipp' (closest: hflip"),
    ("training.batch_sise=2", "training.batch_sise: unknown key (closest: batch_size"),
    ("model.backbon=resnet18", "model: arch 'deeplab': unknown option 'backbon' (closest: backbone; valid: "),
    ("data.lenght=3", "data: dataset 'synthetic': unknown option 'lenght' (closest: length; valid: "),
    ("training.batch_size=0", "training.batch_size: must be a positive integer"),
    ("task=segmentation", "task: unknown task 'segmentation'"),
    ("task={seg: 1.0, depth: -1}", "task: task 'depth': the loss weight must be a number ≥ 0"),
    ("training.best_metric=seg/miou", "training.best_metric: task seg has no score 'miou'"),
    ("training.aux_weights={depth/aux: 0.4}", "aux_weights: 'depth/aux' is not '<task>/<output>' for a task of"),
    ("training.loss={seg: {name: cross_entropy}, depth: {name: l1_loss}}", "'depth' is not a task of this run (seg)"),
    ("data.img_rows=same", "img_rows and img_cols must both"),
    ("training.n_workers=-1", "training.n_workers: must be 0 (load in the main process) or more, got -1"),
    ("training.checkpoint_interval=0", "training.checkpoint_interval: must be a positive integer, got 0"),
    ("training.val_batch_size=0", "training.val_batch_size: must be a positive integer, got 0"),
    ("training.checkpoint_minutes=-5", "training.checkpoint_minutes: must be a positive number of minutes"),
    ("data.img_norm=maybe", "data.img_norm: must be true or false, got 'maybe'"),
    ("data.img_rows=100000", "data.img_rows: 100000 pixels is more than the largest supported side, 16384"),
    ("testing.min_depth=abc", "testing.min_depth: must be a positive number of metres, got 'abc'"),
    ("testing.max_depth=-1", "testing.max_depth: must be a positive number of metres, got -1"),
    ("testing.min_depth=80", "testing.min_depth: must be below testing.max_depth, got 80 and 80.0"),
    ("testing.median_scaling=maybe", "testing.median_scaling: must be true or false, got 'maybe'"),
    ("testing.pred_depth_scale=0", "testing.pred_depth_scale: must be a positive number, got 0"),
    ("testing.trained_model=[a.pt]", "testing.trained_model: must be a checkpoint path"),
])
def test_validation_names_file_key_and_closest(tmp_path, override, message):
    path = dump(tmp_path / "c.yaml", tiny_config())
    with pytest.raises(PtsemsegError) as err:
        load_config(path, [override])
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_seed_project_keys_warn_instead_of_failing(tmp_path):
    cfg = tiny_config()
    cfg["training"].update({"visdom": False, "l_rate": 1e-4, "momentum": 0.99, "l_schedule": None})
    with pytest.warns(UserWarning) as caught:
        resolved = load_config(dump(tmp_path / "c.yaml", cfg))
    messages = {str(warning.message) for warning in caught}
    for key in ("visdom", "l_rate", "momentum", "l_schedule"):
        assert f"config {tmp_path / 'c.yaml'}: training.{key} is ignored (seed-project key)" in messages
        assert key not in resolved["training"]
    assert resolved["training"]["optimizer"] == {"name": "adam", "lr": 1e-3}


def test_seed_sgd_keys_without_an_optimizer_keep_their_meaning(tmp_path):
    """pytorch-semseg's first configs had no optimizer mapping: training SGD(lr=l_rate, momentum, weight_decay)."""
    cfg = tiny_config()
    cfg["training"].update({"optimizer": None, "l_rate": 1.0e-10, "momentum": 0.99, "weight_decay": 5.0e-4,
                            "l_schedule": None})
    with pytest.warns(UserWarning) as caught:
        resolved = load_config(dump(tmp_path / "c.yaml", cfg))
    messages = " | ".join(str(warning.message) for warning in caught)
    assert "training.l_rate is a seed-project key: used as training.optimizer.lr of sgd" in messages
    assert "training.momentum is a seed-project key: used as training.optimizer.momentum of sgd" in messages
    assert "training.l_schedule is ignored (seed-project key)" in messages
    assert resolved["training"]["optimizer"] == {"name": "sgd", "lr": 1.0e-10, "momentum": 0.99,
                                                 "weight_decay": 5.0e-4}
    assert "l_rate" not in resolved["training"] and "l_schedule" not in resolved["training"]


def test_optimizer_without_name_is_sgd(tmp_path):
    cfg = tiny_config()
    cfg["training"]["optimizer"] = {"lr": 1.0e-4, "momentum": 0.9}
    with pytest.warns(UserWarning, match="training.optimizer has no name: sgd"):
        resolved = load_config(dump(tmp_path / "c.yaml", cfg))
    assert resolved["training"]["optimizer"] == {"name": "sgd", "lr": 1.0e-4, "momentum": 0.9}


@pytest.mark.parametrize("arch", MODELS.names())
def test_every_architecture_accepts_pretrained_none(tmp_path, arch):
    """Swapping model.arch in a YAML that says `pretrained: none` keeps working."""
    cfg = tiny_config()
    cfg["model"] = {"arch": arch, "pretrained": "none"}
    assert load_config(dump(tmp_path / "c.yaml", cfg))["model"] == {"arch": arch, "pretrained": "none"}


DEPTH_HEAD = head_specs({"depth": 1})


@pytest.mark.parametrize("arch", ["frrnA", "dispnet"])
def test_architectures_without_imagenet_weights_take_a_weights_file(tmp_path, arch):
    torch.manual_seed(0)
    source = MODELS.get(arch)(DEPTH_HEAD)
    torch.save({"model_state": source.state_dict()}, tmp_path / "weights.pt")
    loaded = MODELS.get(arch)(DEPTH_HEAD, pretrained=str(tmp_path / "weights.pt"))
    assert all(torch.equal(value, loaded.state_dict()[key]) for key, value in source.state_dict().items())
    with pytest.raises(PtsemsegError, match=f"{arch} has no ImageNet weights"):
        MODELS.get(arch)(DEPTH_HEAD, pretrained="imagenet")
    with pytest.raises(PtsemsegError, match=f"weights.pt do not fit {arch}"):
        MODELS.get(arch)(head_specs({"seg": 5}), pretrained=str(tmp_path / "weights.pt"))


def test_duplicate_keys_fail_naming_file_key_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(tiny_config()) + "training:\n  batch_size: 4\n")
    with pytest.raises(PtsemsegError) as err:
        load_config(str(path))
    line = len(path.read_text().splitlines()) - 1
    assert f"{path} line {line}" in str(err.value) and "duplicate key 'training'" in str(err.value)
    nested = tmp_path / "nested.yaml"
    nested.write_text("model:\n  arch: deeplab\n  backbone: resnet18\n  arch: segnet\n")
    with pytest.raises(PtsemsegError, match="nested.yaml line 4, column 3: duplicate key 'arch' \\(first on line 2\\)"):
        load_config(str(nested))
    with pytest.raises(PtsemsegError, match="bad override"):
        load_config(dump(tmp_path / "c.yaml", tiny_config()), ["training.optimizer={name: adam, name: sgd}"])


def test_yaml_merge_keys_may_repeat_keys():
    """`<<: *anchor` followed by one of the anchor's keys overrides it: that is not a duplicate."""
    assert safe_load("base: &base {batch_size: 2, train_iters: 6}\ntraining:\n  <<: *base\n  batch_size: 4\n") == \
        {"base": {"batch_size": 2, "train_iters": 6}, "training": {"batch_size": 4, "train_iters": 6}}


def test_non_utf8_config_names_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"model:\n  arch: deeplab # caf\xe9\n")
    with pytest.raises(PtsemsegError, match=r"latin1.yaml line 2: byte 0xe9 is not UTF-8 text"):
        load_config(str(path))


def test_yaml_syntax_error_shows_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model:\n  arch: deeplab\ntraining: [unclosed\n")
    with pytest.raises(PtsemsegError, match=r"YAML syntax error in .*broken.yaml line \d+"):
        load_config(str(path))


def test_base_loop_is_reported(tmp_path):
    dump(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    dump(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(PtsemsegError, match="loops back"):
        load_config(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize("override, message", [
    ("training.loss={name: scale_invariant_loss, lambda: 0.5}", "unknown option 'lambda'"),
    ("training.optimizer={name: adam, lr: 1e-3, momentum: 0.9}", "momentum"),
    ("training.lr_schedule={name: multi_step}", "missing option 'milestones'"),
    ("training.augmentations={hflip: 2}", "hflip"),
    ("training.amp=fp8", "training.amp: must be auto, false, true, bf16 or fp16"),
    ("training.channels_last=maybe", "training.channels_last: must be auto, true or false"),
])
def test_component_options_fail_at_load(tmp_path, override, message):
    path = dump(tmp_path / "c.yaml", tiny_config())
    with pytest.raises(PtsemsegError, match=message):
        load_config(path, [override])
