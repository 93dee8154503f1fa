"""The sample contract, driven by the registries: every registered dataset on its miniature official layout gives
exactly the keys asked for, with the schema's dtypes and shapes, labels in range and depth in metres; every schema
key survives resizing, every geometric augmentation and `to_tensor`; configs fail in one line when a needed key
cannot be given."""
import dataclasses
import glob
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from miniature_datasets import (DATE, make_cityscapes, make_kitti_semantics, make_raw_drive, write_ade20k,
                                write_fusenet_h5, write_kitti_depth_png, write_nyu_folder13, write_nyu_mat,
                                write_nyu_raw, write_sun)
from conftest import tiny_config
from test_augmentations import GEOMETRIC, SEEDS, VALUES, make_sample
from ptsemseg.augmentations import AUGMENTATIONS
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import check_keys, resize_sample, to_tensor
from ptsemseg.models import MODELS
from ptsemseg.schema import CLASS, IGNORE_INDEX, KEYS, VECTOR, key_spec, register_key


@dataclasses.dataclass
class Case:
    """One dataset on a miniature copy: `write(tmp_path)` returns its root; `max_depth` bounds plausible metres."""

    dataset: str
    split: str
    write: object
    max_depth: float = None
    options: dict = dataclasses.field(default_factory=dict)


def into(writer):
    """A case writer for the helpers that write a layout into the folder they are given."""

    def write(tmp_path):
        writer(tmp_path)
        return tmp_path

    return write


def kitti_depth(tmp_path):
    """A raw drive with data_depth_annotated and data_depth_velodyne maps of both cameras for frame 5."""
    drive = f"{DATE}_drive_0001_sync"
    make_raw_drive(tmp_path / "raw", drive, frames=(5,), speeds=(5.0,))
    gt, scan = np.zeros((2, 40, 64), dtype=np.uint16)
    gt[10, 20], gt[30, 40], scan[10, 20], scan[3, 4] = 256 * 12, 256 * 75, 256 * 11, 256 * 30
    for camera in (2, 3):
        write_kitti_depth_png(tmp_path / "data_depth_annotated", "val", drive, "groundtruth", camera, 5, gt)
        write_kitti_depth_png(tmp_path / "data_depth_velodyne", "val", drive, "velodyne_raw", camera, 5, scan)
    (tmp_path / "raw" / "one.txt").write_text(f"{DATE}/{drive} 5 l\n{DATE}/{drive} 5 r\n")
    return tmp_path


CASES = {
    "synthetic": Case("synthetic", "val", lambda tmp_path: None, 20.0,
                      {"length": 2, "holes": 0.3, "native_size": (24, 32)}),
    "cityscapes": Case("cityscapes", "train", lambda tmp_path: make_cityscapes(tmp_path / "cityscapes"), 500.0),
    "kitti_semantics": Case("kitti", "val", lambda tmp_path: make_kitti_semantics(tmp_path / "semantics")),
    "kitti_annotated": Case("kitti", "val", lambda tmp_path: kitti_depth(tmp_path) / "data_depth_annotated", 100.0,
                            {"layout": "annotated", "raw_root": "../raw"}),
    "kitti_raw_annotated_gt": Case("kitti", "test", lambda tmp_path: kitti_depth(tmp_path) / "raw", 100.0,
                                   {"layout": "raw", "split_file": "one.txt", "gt": "annotated",
                                    "annotated_root": "../data_depth_annotated"}),
    "nyuv2_mat": Case("nyuv2", "test", into(write_nyu_mat), 10.0),
    "nyuv2_fusenet_h5": Case("nyuv2", "train", into(write_fusenet_h5), 10.0, {"layout": "fusenet_h5"}),
    "sunrgbd": Case("sunrgbd", "test", into(write_sun), 10.0),
    "nyuv2_folder_13_classes": Case("nyuv2", "train", into(write_nyu_folder13), 10.0, {"label_set": 13}),
    "nyuv2_raw": Case("nyuv2_raw", "train", into(write_nyu_raw), 10.0),
    "ade20k": Case("ade20k", "val", into(write_ade20k)),
}


def test_every_registered_dataset_has_a_case():
    assert sorted({case.dataset for case in CASES.values()}) == DATASETS.names()


def check_numpy_sample(sample, dataset, case):
    rows, cols = next(value.shape[:2] for key, value in sample.items() if key_spec(key).spatial)
    for key, value in sample.items():
        spec = key_spec(key)
        if spec.spatial:
            assert value.dtype == spec.dtype, key
            assert value.shape == ((rows, cols) if spec.channels == 1 else (rows, cols, spec.channels)), key
        elif spec.kind == CLASS:
            assert isinstance(value, (int, np.integer)), key
    if "label" in sample:
        assert ((sample["label"] < dataset.n_classes) | (sample["label"] == IGNORE_INDEX)).all()
    for key in ("depth", "raw_depth"):
        if key in sample:
            depth = sample[key]
            assert np.isfinite(depth).all() and depth.min() >= 0 and depth.max() <= case.max_depth, key
            assert (depth > 0).any(), key
    if "scene" in sample:
        assert dataset.n_scene_classes and len(dataset.scene_names) == dataset.n_scene_classes
        assert 0 <= sample["scene"] < dataset.n_scene_classes or sample["scene"] == IGNORE_INDEX
    if "normals" in sample:
        norms = np.linalg.norm(sample["normals"], axis=-1)
        assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
    meta = sample["meta"]
    assert isinstance(meta["name"], str) and isinstance(meta["index"], int)
    if "K" in meta:
        assert np.asarray(meta["K"]).shape == (3, 3)


def check_tensor_item(item, numpy_sample):
    for key, value in item.items():
        spec = key_spec(key)
        if spec.spatial:
            shape = numpy_sample[key].shape
            assert value.dtype == spec.tensor_dtype, key
            assert value.shape == (((spec.channels,) if spec.channel_axis else ()) + shape[:2]), key
        elif spec.kind == CLASS:
            assert value.dtype == spec.tensor_dtype and value.dim() == 0
    if "K" in item["meta"]:
        assert item["meta"]["K"].dtype == torch.float32


@pytest.mark.parametrize("name", sorted(CASES))
def test_dataset_gives_the_keys_asked_for(name, tmp_path):
    case = CASES[name]
    cls = DATASETS.get(case.dataset)
    root = case.write(tmp_path)
    given = cls.keys_for(case.split, **case.options)
    assert "image" in given and set(given) <= set(KEYS) - {"meta"}
    root = str(root) if root else None
    dataset = cls(root, case.split, keys=given, **case.options)
    samples = [dataset.load(index) for index in range(min(len(dataset), 2))]
    assert samples
    for sample in samples:
        assert set(sample) == {*given, "meta"}
        check_numpy_sample(sample, dataset, case)
    check_tensor_item(dataset[0], samples[0])
    for key in given:
        alone = cls(root, case.split, keys=(key,), **case.options).load(0)
        assert set(alone) == {key, "meta"}, key
        np.testing.assert_array_equal(alone[key], samples[0][key], key)


# Per case, the files of every key but `image` in its miniature tree (globs under the folder the case writes into),
# removed to check that the images alone load, as for an unlabelled split (Cityscapes demoVideo or test).
TARGET_FILES = {
    "synthetic": (),  # rendered, no files
    "cityscapes": ("cityscapes/gtFine", "cityscapes/disparity", "cityscapes/camera"),
    "kitti_semantics": ("semantics/training/semantic",),
    # The annotated maps list the frames of this layout; the Velodyne maps (raw_depth) are not needed for images.
    "kitti_annotated": ("data_depth_velodyne",),
    "kitti_raw_annotated_gt": ("data_depth_annotated", "raw/*/*/velodyne_points"),
    "nyuv2_mat": ("classMapping40.mat",),  # depth and labels share the .mat file with the images
    "nyuv2_fusenet_h5": (),  # one h5 file holds images, depth and labels
    "sunrgbd": ("SUNRGBD/**/depth", "SUNRGBD/**/depth_bfx", "SUNRGBD/**/scene.txt", "sunrgbd_train_test_labels",
                "SUNRGBDtoolbox"),
    "nyuv2_folder_13_classes": ("Depth", "RawDepth", "Label", "scenes.txt"),
    "nyuv2_raw": ("*/d-*.pgm",),
    "ade20k": ("annotations",),
}


def test_every_case_names_its_target_files():
    assert sorted(TARGET_FILES) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_images_load_alone_from_a_tree_without_targets(name, tmp_path):
    case = CASES[name]
    root = case.write(tmp_path)
    for pattern in TARGET_FILES[name]:
        paths = glob.glob(str(tmp_path / pattern), recursive=True)
        assert paths, pattern
        for path in paths:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    dataset = DATASETS.get(case.dataset)(str(root) if root else None, case.split, keys=("image",), **case.options)
    assert len(dataset) >= 1
    for index in range(min(len(dataset), 2)):
        sample = dataset.load(index)
        assert set(sample) == {"image", "meta"}
        check_numpy_sample(sample, dataset, case)
    assert dataset[0]["image"].dtype == torch.float32


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_key_the_dataset_cannot_give_fails_in_one_line(name, tmp_path):
    case = CASES[name]
    cls = DATASETS.get(case.dataset)
    missing = sorted(set(KEYS) - set(cls.keys_for(case.split, **case.options)) - {"meta"})
    if not missing:
        pytest.skip(f"{name} gives every key of the schema")
    root = case.write(tmp_path)
    with pytest.raises(PtsemsegError, match=f"asked for '{missing[0]}'; dataset {case.dataset} gives ") as err:
        cls(str(root) if root else None, case.split, keys=("image", missing[0]), **case.options)
    assert "\n" not in str(err.value)


# ---- the schema on its own -----------------------------------------------------------------------------------

def schema_sample():
    """The pattern image of test_augmentations with every registered per-pixel key: values that never equal the
    key's fill (nearest keys), the image's first channel (linear keys), a unit field pointing away from the image
    centre (vector keys); plus a scene and K."""
    sample = make_sample()
    rows, cols = sample["image"].shape[:2]
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:rows, :cols].astype(np.float64)
    radial = np.stack([x - (cols - 1) / 2, y - (rows - 1) / 2], axis=-1)
    radial /= np.maximum(np.linalg.norm(radial, axis=-1, keepdims=True), 1e-9)
    for key, spec in KEYS.items():
        if not spec.spatial or key == "image":
            continue
        shape = (rows, cols) if spec.channels == 1 else (rows, cols, spec.channels)
        if spec.motion == VECTOR:
            value = np.zeros(shape)
            value[..., :2] = radial
        elif spec.interpolation != key_spec("image").interpolation:
            value = rng.choice([v for v in (1, 7, 42, 200) if v != spec.fill], size=shape)
        else:
            value = sample["image"][..., [0] * spec.channels].reshape(shape)
        sample[key] = value.astype(spec.dtype)
    return sample, radial


def check_keys_moved(source, out):
    """Dtypes and shapes kept, each key's fill where the image shows the fill, nearest values never invented."""
    rows, cols = out["image"].shape[:2]
    uncovered = (out["image"] == 0).all(axis=-1)
    assert out["scene"] == source["scene"] and out["meta"]["name"] == source["meta"]["name"]
    for key, spec in KEYS.items():
        if not spec.spatial or key == "image":
            continue
        value = out[key]
        assert value.dtype == spec.dtype and value.shape[:2] == (rows, cols), key
        assert (value[uncovered] == spec.fill).all(), key
        if spec.motion == VECTOR:
            norms = np.linalg.norm(value, axis=-1)
            assert ((np.abs(norms - 1) < 1e-5) | (norms == 0)).all(), key
        elif spec.interpolation == key_spec("image").interpolation:
            np.testing.assert_array_equal(value, out["image"][..., [0] * spec.channels].reshape(value.shape), key)
        else:
            assert set(np.unique(value)) <= set(np.unique(source[key])) | {spec.fill}, key


@pytest.mark.parametrize("name", GEOMETRIC)
def test_every_schema_key_survives_every_geometric_augmentation_and_to_tensor(name):
    for value in VALUES[name]:
        aug = AUGMENTATIONS.get(name)(value)
        for seed in SEEDS:
            source, _ = schema_sample()
            out = aug(source, np.random.default_rng(seed))
            check_keys_moved(source, out)
            check_tensor_item(to_tensor(out), out)


def test_every_schema_key_survives_resizing_and_to_tensor():
    source, _ = schema_sample()
    for size in ((24, 32), (96, 100), (source["image"].shape[:2])):
        out = resize_sample(source, size)
        assert out["image"].shape[:2] == size
        for key, spec in KEYS.items():
            if spec.spatial:
                assert out[key].dtype == spec.dtype and out[key].shape[:2] == size, key
        check_tensor_item(to_tensor(out), out)


@pytest.mark.parametrize("name, component", [("hflip", 0), ("vflip", 1)])
def test_flips_mirror_vector_fields(name, component):
    """A field pointing away from the centre still does after a mirror: the mirrored component changes sign."""
    source, radial = schema_sample()
    out = AUGMENTATIONS.get(name)(1.0)(source, np.random.default_rng(0))
    mirror = (slice(None), slice(None, None, -1)) if component == 0 else (slice(None, None, -1), slice(None))
    for key, spec in KEYS.items():
        if spec.motion == VECTOR:
            np.testing.assert_allclose(out[key][..., :2], radial, atol=1e-6, err_msg=key)
            flipped = source[key][mirror].copy()
            flipped[..., component] *= -1
            np.testing.assert_array_equal(out[key], flipped, key)


def test_rotations_turn_vector_fields():
    """Rotated about the centre, a field pointing away from the centre still does (up to nearest-pixel sampling)."""
    source, radial = schema_sample()
    rows, cols = radial.shape[:2]
    del source["meta"]["K"]  # turn about the image centre
    y, x = np.mgrid[:rows, :cols]
    far = np.hypot(x - (cols - 1) / 2, y - (rows - 1) / 2) > 8
    for seed in SEEDS:
        out = AUGMENTATIONS.get("rotate")(180)(source, np.random.default_rng(seed))
        shown = ~(out["image"] == 0).all(axis=-1) & far
        for key, spec in KEYS.items():
            if spec.motion == VECTOR:
                turned = shown & (np.linalg.norm(out[key], axis=-1) > 0)  # not the fill along the border
                cosine = (out[key][..., :2] * radial).sum(axis=-1)
                assert turned.sum() > 200 and cosine[turned].min() > 0.95, (key, seed)


def test_keys_are_registered_once_and_unknown_keys_name_the_closest():
    with pytest.raises(PtsemsegError, match="unknown sample key 'lable' \\(closest: label"):
        key_spec("lable")
    with pytest.raises(ValueError, match="registered twice"):
        register_key(KEYS["depth"])
    with pytest.raises(PtsemsegError, match="unknown sample key 'rgb'"):
        DATASETS.get("synthetic")(None, "val", keys=("rgb",))


# ---- configs -------------------------------------------------------------------------------------------------

class RGBDProbe(torch.nn.Module):
    """A model that consumes depth beside the image, for the configuration check."""

    input_keys = ("image", "depth")

    def __init__(self, heads):
        super().__init__()


def write_config(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_config_fails_in_one_line_when_the_model_needs_a_key_the_dataset_cannot_give(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS._builders, "rgbd_probe", RGBDProbe)
    cfg = tiny_config()
    cfg["model"] = {"arch": "rgbd_probe"}
    cfg["data"] = {"dataset": "kitti", "path": str(tmp_path), "layout": "semantics", "train_split": "train",
                   "val_split": "val"}
    with pytest.raises(PtsemsegError) as err:
        load_config(write_config(tmp_path, cfg))
    assert str(err.value).endswith("data.dataset: model rgbd_probe needs 'depth'; dataset kitti gives image, label "
                                   "for split train")
    cfg["data"]["layout"] = "annotated"
    with pytest.raises(PtsemsegError, match="task seg needs 'label'; dataset kitti gives image, depth, raw_depth "
                                            "for split train"):
        load_config(write_config(tmp_path, cfg))
    cfg["task"] = "depth"
    assert load_config(write_config(tmp_path, cfg))["model"]["arch"] == "rgbd_probe"


def test_config_refuses_a_target_the_dataset_gives_only_as_an_input(tmp_path):
    cfg = tiny_config("depth")
    cfg["data"] = {"dataset": "nyuv2", "path": str(tmp_path), "layout": "fusenet_h5"}
    with pytest.raises(PtsemsegError, match="data.dataset: task depth needs 'depth'; dataset nyuv2 gives image, depth, "
                                            "label, scene for split train \\('depth' only as an input: FuseNet"):
        load_config(write_config(tmp_path, cfg))
    check_keys(["depth"], DATASETS.get("nyuv2"), "train", {"layout": "fusenet_h5"}, who="model fusenet")
