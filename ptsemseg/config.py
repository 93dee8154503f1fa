"""YAML configs: the seed schema, `_base_` inheritance, command-line overrides and validation.

Everything is checked before any work starts, so a typo fails in one line naming the file, the key and
the closest valid names instead of an hour into a run.
"""
import copy
import math
import os
import re
import warnings
from collections.abc import Hashable

import yaml

from ptsemseg.errors import PtsemsegError, closest
from ptsemseg.tasks import parse_task_spec

SCHEMA = {
    "model": None,  # arch + builder kwargs, checked against the builder's signature
    "task": "a task name, or a mapping of task names to loss weights",
    "seed": "int",
    "data": {
        "dataset": "name", "path": "root folder", "train_split": "str", "val_split": "str",
        "test_split": "str", "img_rows": "int or 'same'", "img_cols": "int or 'same'", "img_norm": "bool",
    },
    "training": {
        "train_iters": "int", "batch_size": "int", "val_interval": "int", "n_workers": "int",
        "print_interval": "int", "optimizer": "mapping", "loss": "mapping", "lr_schedule": "mapping",
        "augmentations": "mapping", "resume": "checkpoint path", "out_dir": "run directory",
        "amp": "auto | false | bf16 | fp16", "channels_last": "auto | bool", "device": "auto | cpu | cuda",
        "checkpoint_interval": "int", "checkpoint_minutes": "number", "val_batch_size": "int",
        "best_metric": "<task>/<metric>", "aux_weights": "mapping of <task>/<output> to weights",
        "sync_bn": "auto | true | false", "accumulate": "int", "ema": "{decay, start_iter}", "compile": "bool",
        "grad_clip": "max gradient norm",
    },
    "testing": {
        "protocol": "a preset of the keys below (train.py --list)", "cap_gt": "bool", "pred_disp": "bool",
        "trained_model": "checkpoint path", "min_depth": "float", "max_depth": "float",
        "crop": "none | garg | eigen | nyu_eigen | cityscapes", "median_scaling": "bool",
        "pred_depth_scale": "positive number (monodepth2 stereo: 5.4)",
        "mode": "whole | slide", "crop_size": "int or [rows, cols]", "stride": "int or [rows, cols]",
        "scales": "list of numbers", "flip": "bool", "score_at": "native | input",
    },
}

# Keys that the seed projects' own configs carry: warn, do not fail. pytorch-semseg's first configs had no
# `training.optimizer` and trained SGD(lr=l_rate, momentum, weight_decay): without an optimizer mapping these three
# keep that meaning; beside one, the seed ignored them too. Its code never read `l_schedule` (always empty).
LEGACY_KEYS = {"training": {"visdom", "l_rate", "l_schedule", "momentum", "weight_decay"}}
LEGACY_SGD_OPTIONS = {"l_rate": "lr", "momentum": "momentum", "weight_decay": "weight_decay"}

DEFAULTS = {
    "task": "seg",
    "seed": 1337,
    "data": {"path": None, "train_split": "train", "val_split": "val", "test_split": "test",
             "img_rows": "same", "img_cols": "same", "img_norm": True},
    "training": {"train_iters": 1000, "batch_size": 2, "val_interval": 500, "n_workers": 0,
                 "print_interval": 50, "optimizer": None, "loss": None, "lr_schedule": None,
                 "augmentations": None, "resume": None, "out_dir": None, "amp": "auto",
                 "channels_last": "auto", "device": "auto", "checkpoint_interval": None,
                 "checkpoint_minutes": 10, "val_batch_size": None, "best_metric": None, "aux_weights": None,
                 "sync_bn": "auto", "accumulate": 1, "ema": None, "compile": False, "grad_clip": None},
    "testing": {"protocol": None, "cap_gt": True, "pred_disp": False,
                "trained_model": None, "min_depth": 1e-3, "max_depth": 80.0, "crop": None,
                "median_scaling": False, "pred_depth_scale": 1.0,
                "mode": "whole", "crop_size": None, "stride": None, "scales": [1.0], "flip": False,
                "score_at": "native"},
}

POSITIVE_INTS = ("train_iters", "batch_size", "val_interval", "print_interval", "checkpoint_interval",
                 "val_batch_size", "accumulate")

# Largest image side accepted: far above any dataset's native size, below OpenCV's 32767-pixel warp limit.
MAX_SIDE = 16384


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads `1e-4` as a float (YAML 1.2), as researchers write learning rates, and
    refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, Hashable) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key}' (first on line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def safe_load(text):
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - ConfigLoader is a SafeLoader


def merge(base, child):
    """Recursive dict merge where the child's values win.

    A child mapping with `_delete_: true` replaces the base's mapping instead of merging into it (as in
    mmsegmentation's configs), e.g. per-task losses over a base's single loss.
    """
    out = copy.deepcopy(base)
    for key, value in child.items():
        replace = isinstance(value, dict) and value.get("_delete_") is True
        if replace:
            value = {k: v for k, v in value.items() if k != "_delete_"}
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not replace:
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_yaml(path):
    """Parse one YAML file with safe_load; syntax errors name the file and line."""
    if not os.path.isfile(path):
        raise PtsemsegError(f"config file not found: {path}")
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise PtsemsegError(f"config {path} line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 text "
                            "(save the file as UTF-8)") from None
    try:
        cfg = safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise PtsemsegError(f"YAML syntax error in {path}{where}: {problem}") from None
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise PtsemsegError(f"config {path} must be a mapping of keys, got {type(cfg).__name__}")
    return cfg


def load_yaml_with_bases(path, _seen=()):
    """Read `path` and merge the files named by its `_base_` (one path or a list, relative to it) underneath."""
    path = os.path.abspath(path)
    if path in _seen:
        raise PtsemsegError(f"config {path}: _base_ inheritance loops back to itself")
    cfg = read_yaml(path)
    bases = cfg.pop("_base_", None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged = {}
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        merged = merge(merged, load_yaml_with_bases(base_path, _seen + (path,)))
    return merge(merged, cfg)


def parse_overrides(overrides):
    """Turn ["training.batch_size=4", "model.arch=segnet"] into a nested dict; values are parsed as YAML."""
    result = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not key or any(not part for part in parts):
            raise PtsemsegError(f"bad override '{item}': expected dotted.key=value")
        try:
            value = safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            raise PtsemsegError(f"bad override '{item}': the value is not valid YAML") from None
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PtsemsegError(f"bad override '{item}': '{part}' is set twice")
        node[parts[-1]] = value
    return result


def load_config(path, overrides=None):
    """The resolved, validated config: bases merged, overrides applied, the protocol's keys under the config's
    own, defaults filled in."""
    cfg = merge(load_yaml_with_bases(path), parse_overrides(overrides))
    cfg = _apply_protocol(cfg, path)
    validate(cfg, path)
    return merge(DEFAULTS, _drop_empty(cfg))


def _drop_empty(cfg):
    """Remove keys left empty in YAML (`lr_schedule:`), which mean 'the default'."""
    if not isinstance(cfg, dict):
        return cfg
    return {key: _drop_empty(value) for key, value in cfg.items() if value is not None}


def _apply_protocol(cfg, path):
    """`cfg` over the keys its `testing.protocol` sets (an empty key of `cfg` takes the protocol's value)."""
    from ptsemseg.protocols import protocol_keys

    try:
        keys = protocol_keys(cfg)
    except PtsemsegError as err:
        _fail(path, "testing.protocol", str(err))
    return merge(keys, _drop_empty(cfg)) if keys else cfg


def _fail(path, key, message):
    raise PtsemsegError(f"config {path}: {key}: {message}")


def _check_name(path, key, name, registry):
    if name not in registry:
        _fail(path, key, f"unknown {registry.kind} '{name}'{closest(name, registry.names())}")


def _check_options(path, key, registry, name, options, given, shared=()):
    """Fail on YAML options the builder registered as `name` does not take, or required ones missing."""
    try:
        registry.check_options(name, options, given=given, shared=shared)
    except PtsemsegError as err:
        _fail(path, key, str(err))


def validate(cfg, path):
    """Check keys, names and values before any work starts."""
    from ptsemseg.augmentations import AUGMENTATIONS
    from ptsemseg.loaders import DATASETS
    from ptsemseg.models import MODELS
    from ptsemseg.optimizers import OPTIMIZERS
    from ptsemseg.schedulers import SCHEDULERS

    for key in cfg:
        if key not in SCHEMA:
            _fail(path, key, f"unknown key{closest(key, SCHEMA)}")
    for section, keys in SCHEMA.items():
        value = cfg.get(section)
        if isinstance(keys, dict) and value is not None:
            if not isinstance(value, dict):
                _fail(path, section, "must be a mapping")
            _apply_seed_keys(path, section, value)
            for key in value:
                if key not in keys and section != "data":
                    _fail(path, f"{section}.{key}", f"unknown key{closest(key, keys)}")

    model = cfg.get("model")
    if not isinstance(model, dict) or "arch" not in model:
        _fail(path, "model.arch", "missing")
    _check_name(path, "model.arch", model["arch"], MODELS)
    _check_options(path, "model", MODELS, model["arch"],
                   {k: v for k, v in model.items() if k != "arch" and v is not None}, given=("heads",),
                   shared=("inputs",))

    task = cfg.get("task", DEFAULTS["task"])
    try:
        parse_task_spec(task)
    except PtsemsegError as err:
        _fail(path, "task", str(err))
    if not isinstance(cfg.get("seed", 0), int):
        _fail(path, "seed", "must be an integer")

    data = cfg.get("data") or {}
    if "dataset" not in data:
        _fail(path, "data.dataset", "missing")
    _check_name(path, "data.dataset", data["dataset"], DATASETS)
    options = {k: v for k, v in data.items() if k not in SCHEMA["data"] and v is not None}
    _check_options(path, "data", DATASETS, data["dataset"], options,
                   given=("root", "split", "keys", "img_size", "augmentations", "img_norm"))
    _check_sample_keys(path, model, task, DATASETS.get(data["dataset"]), data, options)
    for key in ("img_rows", "img_cols"):
        value = data.get(key, "same")
        if value != "same" and not (_is_int(value) and value > 0):
            _fail(path, f"data.{key}", f"must be a positive integer or 'same', got {value!r}")
        if value != "same" and value > MAX_SIDE:
            _fail(path, f"data.{key}", f"{value} pixels is more than the largest supported side, {MAX_SIDE}")
    if (data.get("img_rows", "same") == "same") != (data.get("img_cols", "same") == "same"):
        _fail(path, "data.img_rows", "img_rows and img_cols must both be sizes or both 'same'")
    _check_bool(path, "data.img_norm", data.get("img_norm"))

    training = cfg.get("training") or {}
    for key in POSITIVE_INTS:
        value = training.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            _fail(path, f"training.{key}", f"must be a positive integer, got {value!r}")
    n_workers = training.get("n_workers")
    if n_workers is not None and not (_is_int(n_workers) and n_workers >= 0):
        _fail(path, "training.n_workers", f"must be 0 (load in the main process) or more, got {n_workers!r}")
    minutes = training.get("checkpoint_minutes")
    if minutes is not None and not _is_positive_number(minutes):
        _fail(path, "training.checkpoint_minutes", f"must be a positive number of minutes, got {minutes!r}")
    for key, registry in (("optimizer", OPTIMIZERS), ("lr_schedule", SCHEDULERS)):
        value = training.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or "name" not in value:
            _fail(path, f"training.{key}", "must be a mapping with a 'name'")
        _check_name(path, f"training.{key}.name", value["name"], registry)
    augmentations = training.get("augmentations") or {}
    if not isinstance(augmentations, dict):
        _fail(path, "training.augmentations", "must be a mapping of augmentation: value")
    for name in augmentations:
        _check_name(path, f"training.augmentations.{name}", name, AUGMENTATIONS)
    _build_training_components(path, training, task)
    if training.get("amp") not in (None, False, True, "auto", "bf16", "fp16"):
        _fail(path, "training.amp", f"must be auto, false, true, bf16 or fp16, got {training['amp']!r}")
    if training.get("channels_last") not in (None, False, True, "auto"):
        _fail(path, "training.channels_last", f"must be auto, true or false, got {training['channels_last']!r}")
    if training.get("device") not in (None, "auto", "cpu", "cuda"):
        _fail(path, "training.device", f"must be auto, cpu or cuda, got {training['device']!r}")
    _validate_scaling(path, training)
    _validate_testing(path, cfg.get("testing") or {})


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_bool(path, key, value):
    if value is not None and not isinstance(value, bool):
        _fail(path, key, f"must be true or false, got {value!r}")


def _validate_scaling(path, training):
    """The keys of training at scale: SyncBN, gradient accumulation, EMA, torch.compile and gradient clipping."""
    if training.get("sync_bn") not in (None, True, False, "auto"):
        _fail(path, "training.sync_bn", f"must be auto, true or false, got {training['sync_bn']!r}")
    _check_bool(path, "training.compile", training.get("compile"))
    grad_clip = training.get("grad_clip")
    if grad_clip is not None and not _is_positive_number(grad_clip):
        _fail(path, "training.grad_clip", f"must be a positive number (the largest gradient norm), got {grad_clip!r}")
    ema = training.get("ema")
    if ema is None:
        return
    if not isinstance(ema, dict) or "decay" not in ema:
        _fail(path, "training.ema", f"must be a mapping with a decay (and optionally start_iter), got {ema!r}")
    for key in ema:
        if key not in ("decay", "start_iter"):
            _fail(path, f"training.ema.{key}", f"unknown key{closest(key, ('decay', 'start_iter'))}")
    if not (_is_positive_number(ema["decay"]) and ema["decay"] < 1):
        _fail(path, "training.ema.decay", f"must lie between 0 and 1 (e.g. 0.999), got {ema['decay']!r}")
    if not (_is_int(ema.get("start_iter", 0)) and ema.get("start_iter", 0) >= 0):
        _fail(path, "training.ema.start_iter", f"must be an iteration (0 or more), got {ema['start_iter']!r}")


def _validate_testing(path, testing):
    """The evaluation protocol's keys, which training also uses at every validation."""
    from ptsemseg.metrics.depth import CROPS

    crop = testing.get("crop")
    if crop is not None and crop not in ("none", *CROPS):
        _fail(path, "testing.crop", f"must be none or one of {', '.join(CROPS)}, got {crop!r}")
    for key in ("min_depth", "max_depth"):
        value = testing.get(key)
        if value is not None and not _is_positive_number(value):
            _fail(path, f"testing.{key}", f"must be a positive number of metres, got {value!r}")
    scale = testing.get("pred_depth_scale")
    if scale is not None and not _is_positive_number(scale):
        _fail(path, "testing.pred_depth_scale", f"must be a positive number, got {scale!r}")
    min_depth = testing.get("min_depth") or DEFAULTS["testing"]["min_depth"]
    max_depth = testing.get("max_depth") or DEFAULTS["testing"]["max_depth"]
    if min_depth >= max_depth:
        _fail(path, "testing.min_depth", f"must be below testing.max_depth, got {min_depth} and {max_depth}")
    for key in ("median_scaling", "cap_gt", "pred_disp"):
        _check_bool(path, f"testing.{key}", testing.get(key))
    trained_model = testing.get("trained_model")
    if trained_model is not None and not isinstance(trained_model, str):
        _fail(path, "testing.trained_model", f"must be a checkpoint path, got {trained_model!r}")
    _validate_inference(path, testing)


def _validate_inference(path, testing):
    """How the network is run and scored at test time (ptsemseg.inference, ptsemseg.evaluation)."""
    mode = testing.get("mode")
    if mode not in (None, "whole", "slide"):
        _fail(path, "testing.mode", f"must be whole or slide, got {mode!r}")
    sizes = {}
    for key in ("crop_size", "stride"):
        value = testing.get(key)
        if value is None:
            continue
        pair = [value, value] if _is_int(value) else value
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(side) and side > 0 for side in pair)):
            _fail(path, f"testing.{key}", f"must be a positive number of pixels or [rows, cols], got {value!r}")
        sizes[key] = pair
    if mode == "slide" and "crop_size" not in sizes:
        _fail(path, "testing.crop_size", "needed with testing.mode slide (the window, e.g. [512, 1024])")
    if "stride" in sizes and "crop_size" in sizes and any(s > c for s, c in zip(sizes["stride"], sizes["crop_size"])):
        _fail(path, "testing.stride", f"must not exceed testing.crop_size (pixels between windows would be left out), "
                                      f"got {testing['stride']!r} and {testing['crop_size']!r}")
    scales = testing.get("scales")
    if scales is not None and not (isinstance(scales, list) and scales
                                   and all(_is_positive_number(scale) for scale in scales)):
        _fail(path, "testing.scales", f"must be a list of positive numbers (e.g. [0.75, 1.0, 1.25]), got {scales!r}")
    _check_bool(path, "testing.flip", testing.get("flip"))
    score_at = testing.get("score_at")
    if score_at not in (None, "native", "input"):
        _fail(path, "testing.score_at", f"must be native (the target's resolution) or input (the network's), "
                                        f"got {score_at!r}")


def _apply_seed_keys(path, section, values):
    """Give the seed projects' keys of `section` their seed meaning, or drop them, with a warning naming each."""
    from ptsemseg.optimizers import DEFAULT_OPTIMIZER

    if section == "training" and isinstance(values.get("optimizer"), dict) and "name" not in values["optimizer"]:
        warnings.warn(f"config {path}: training.optimizer has no name: sgd, as in the seed projects")
        values["optimizer"] = {"name": "sgd", **values["optimizer"]}
    sgd_options = {}
    for key in [key for key in values if key in LEGACY_KEYS.get(section, ())]:
        value = values.pop(key)
        if key in LEGACY_SGD_OPTIONS and values.get("optimizer") is None and value is not None:
            warnings.warn(f"config {path}: {section}.{key} is a seed-project key: used as "
                          f"training.optimizer.{LEGACY_SGD_OPTIONS[key]} of sgd, as in the seed projects")
            sgd_options[LEGACY_SGD_OPTIONS[key]] = value
        else:
            warnings.warn(f"config {path}: {section}.{key} is ignored (seed-project key)")
    if sgd_options:
        values["optimizer"] = {**DEFAULT_OPTIMIZER, **sgd_options}


def _check_sample_keys(path, model, task, dataset_cls, data, options):
    """Fail when the dataset cannot give the task's target or a model input, for any split the config names."""
    from ptsemseg.loaders.base import check_keys
    from ptsemseg.models import model_input_keys
    from ptsemseg.tasks import TASKS

    for split_key in ("train_split", "val_split", "test_split"):
        split = data.get(split_key, DEFAULTS["data"][split_key])
        try:
            for name in parse_task_spec(task):
                check_keys([TASKS.get(name).target_key], dataset_cls, split, options, who=f"task {name}",
                           as_targets=True)
        except PtsemsegError as err:
            _fail(path, "data.dataset", str(err))
        try:
            inputs = model_input_keys(model)
        except PtsemsegError as err:
            _fail(path, "model.inputs", str(err))
        try:
            check_keys(inputs, dataset_cls, split, options, who=f"model {model['arch']}")
        except PtsemsegError as err:
            _fail(path, "data.dataset", str(err))


def _build_training_components(path, training, task):
    """Build losses, optimizer, schedule and augmentations once and read the best-model criterion, so their
    options fail now, not mid-run."""
    import torch

    from ptsemseg.augmentations import get_composed_augmentations
    from ptsemseg.losses import TaskSetLoss
    from ptsemseg.optimizers import get_optimizer
    from ptsemseg.schedulers import get_scheduler
    from ptsemseg.tasks import TASKS, parse_best_metric

    def build_schedule():
        optimizer = get_optimizer(training.get("optimizer"), [torch.nn.Parameter(torch.zeros(1))])
        return get_scheduler(optimizer, training.get("lr_schedule"), training.get("train_iters") or 1)

    weights = parse_task_spec(task)
    steps = (
        ("loss", lambda: TaskSetLoss(weights, {name: TASKS.get(name) for name in weights}, training.get("loss"),
                                     training.get("aux_weights"))),
        ("best_metric", lambda: parse_best_metric(training.get("best_metric"), weights)),
        ("optimizer", lambda: get_optimizer(training.get("optimizer"), [torch.nn.Parameter(torch.zeros(1))])),
        ("lr_schedule", build_schedule),
        ("augmentations", lambda: get_composed_augmentations(training.get("augmentations"))),
    )
    for key, build in steps:
        try:
            build()
        except PtsemsegError as err:
            _fail(path, f"training.{key}", str(err))


def save_config(cfg, path):
    """Write the resolved config next to the run's outputs."""
    with open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(cfg, handle, sort_keys=False)
