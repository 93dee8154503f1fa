"""Config loading: seed schema, `_base_` inheritance, overrides and validation messages."""
import pytest
import yaml

from ptsemseg.config import load_config, parse_overrides
from ptsemseg.errors import PtsemsegError
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


def test_base_inheritance_child_wins(tmp_path):
    (tmp_path / "sub").mkdir()
    dump(tmp_path / "base.yaml", tiny_config())
    dump(tmp_path / "extra.yaml", {"training": {"batch_size": 5, "print_interval": 7}})
    child = {"_base_": ["../base.yaml", "../extra.yaml"], "training": {"batch_size": 3}}
    resolved = load_config(dump(tmp_path / "sub" / "child.yaml", child))
    assert resolved["training"]["batch_size"] == 3
    assert resolved["training"]["print_interval"] == 7
    assert resolved["model"]["backbone"] == "resnet18"


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
    ("model.backbon=resnet18", "model.backbon: not an option (closest: backbone"),
    ("data.lenght=3", "data.lenght: not an option (closest: length"),
    ("training.batch_size=0", "training.batch_size: must be a positive integer"),
    ("task=segmentation", "task: must be 'seg' or 'depth'"),
    ("data.img_rows=same", "img_rows and img_cols must both"),
])
def test_validation_names_file_key_and_closest(tmp_path, override, message):
    path = dump(tmp_path / "c.yaml", tiny_config())
    with pytest.raises(PtsemsegError) as err:
        load_config(path, [override])
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_seed_project_keys_warn_instead_of_failing(tmp_path):
    cfg = tiny_config()
    cfg["training"].update({"visdom": False, "l_rate": 1e-4, "momentum": 0.99})
    with pytest.warns(UserWarning, match="training.visdom is ignored"):
        resolved = load_config(dump(tmp_path / "c.yaml", cfg))
    assert "visdom" not in resolved["training"]


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
