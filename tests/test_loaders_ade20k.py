"""ADE20K (ADEChallengeData2016) on a miniature copy written in the official layout, and its PSPNet-50 config."""
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from miniature_datasets import ADE_FRAMES, write_ade20k
from ptsemseg.config import load_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.ade20k import ADE20K_CLASS_NAMES
from ptsemseg.loaders.io import CorruptFileError
from ptsemseg.models import get_model

CONFIG = os.path.join(REPO, "configs", "ade20k", "pspnet50_seg.yaml")


@pytest.fixture
def ade(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    return root, write_ade20k(root)


def test_splits_images_and_labels(ade):
    root, annotations = ade
    for split, folder in (("train", "training"), ("val", "validation")):
        dataset = get_loader("ade20k")(str(root), split)
        assert dataset.stems == sorted(ADE_FRAMES[folder]) and dataset.n_classes == 150
        for index, stem in enumerate(dataset.stems):
            sample = dataset.load(index)
            assert set(sample) == {"image", "label", "meta"} and sample["meta"] == {"name": stem, "index": index}
            image = cv2.imread(str(root / "images" / folder / f"{stem}.jpg"), cv2.IMREAD_COLOR)
            assert np.array_equal(sample["image"], cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            label, raw = sample["label"], annotations[stem]
            assert label.dtype == np.uint8 and label.shape == raw.shape == ADE_FRAMES[folder][stem]
            assert label[0, :3].tolist() == [255, 0, 149]  # other → ignored, 1 → 0, 150 → 149
            assert np.array_equal(label == 255, raw == 0) and np.array_equal(label[raw > 0], raw[raw > 0] - 1)
    images_only = get_loader("ade20k")(str(root), "val", keys=("image",)).load(1)
    assert set(images_only) == {"image", "meta"}
    item = get_loader("ade20k")(str(root), "train", img_size=(8, 8))[1]
    assert item["label"].dtype == torch.int64 and item["label"].shape == (8, 8) and item["image"].shape == (3, 8, 8)


def test_class_names_are_object_info_150():
    """Spot checks against objectInfo150.txt (Idx: Name): 1 wall, 2 building, 13 person, 90 television, 150 flag."""
    assert len(ADE20K_CLASS_NAMES) == len(set(ADE20K_CLASS_NAMES)) == 150
    assert [ADE20K_CLASS_NAMES[i - 1] for i in (1, 2, 13, 90, 150)] == ["wall", "building", "person", "television",
                                                                         "flag"]


def test_a_label_above_150_fails_naming_the_file(ade):
    root, annotations = ade
    path = root / "annotations" / "validation" / "ADE_val_00000002.png"
    label = annotations["ADE_val_00000002"].copy()
    label[3, 4] = 151
    assert cv2.imwrite(str(path), label)
    dataset = get_loader("ade20k")(str(root), "val")
    dataset.load(0)
    with pytest.raises(CorruptFileError) as err:
        dataset.load(1)
    assert str(err.value) == (f"label id 151 in {path} is above ADE20K's 150 classes (0 = other, 1..150): not an "
                              "ADEChallengeData2016 annotation?")


def test_missing_and_mismatched_files_fail_in_one_line(ade, tmp_path):
    root, _ = ade
    loader = get_loader("ade20k")
    with pytest.raises(PtsemsegError, match="ADE20K split must be one of train, val, got 'validation'"):
        loader(str(root), "validation")
    with pytest.raises(PtsemsegError, match=f"ADE20K root not found: expected {tmp_path / 'none'} .*section 'ADE20K'"):
        loader(str(tmp_path / "none"), "train")
    with pytest.raises(PtsemsegError, match="data.path is not set"):
        loader(None, "train")
    with pytest.raises(PtsemsegError, match="asked for 'depth'; dataset ade20k gives image, label for split train"):
        loader(str(root), "train", keys=("image", "depth"))
    missing = root / "annotations" / "training" / "ADE_train_00000002.png"
    os.remove(missing)
    with pytest.raises(PtsemsegError) as err:
        loader(str(root), "train")
    assert str(err.value) == f"1 of 2 ADE20K train images have no annotation, first: {missing}"
    assert len(loader(str(root), "train", keys=("image",))) == 2  # images alone need no annotation
    shutil.rmtree(root / "annotations")
    with pytest.raises(PtsemsegError, match=f"ADE20K val annotations not found: expected {root}/annotations/"):
        loader(str(root), "val")
    wrong = root / "annotations" / "validation"
    wrong.mkdir(parents=True)
    for stem in ADE_FRAMES["validation"]:
        assert cv2.imwrite(str(wrong / f"{stem}.png"), np.ones((5, 5), np.uint8))
    with pytest.raises(CorruptFileError, match=f"{wrong}/ADE_val_00000001.png is 5×5, its image 13×11"):
        loader(str(root), "val").load(0)


def test_pspnet50_config_is_the_papers_recipe():
    cfg = load_config(CONFIG)
    model, training = cfg["model"], cfg["training"]
    assert (model["arch"], model["backbone"], model["output_stride"], model["bins"]) == ("pspnet", "resnet50", 8,
                                                                                         [1, 2, 3, 6])
    assert cfg["data"]["dataset"] == "ade20k" and cfg["task"] == "seg"
    assert training["optimizer"] == {"name": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4}
    assert training["lr_schedule"] == {"name": "poly_lr", "gamma": 0.9}
    assert (training["batch_size"], training["train_iters"], training["aux_weights"]) == (16, 150000, {"seg/aux": 0.4})
    assert training["augmentations"] == {"rotate": 10, "rscalecrop": {"scale": [0.5, 2.0], "size": [473, 473]},
                                         "hflip": 0.5}
    net = get_model({**model, "pretrained": "none"}, {"seg": 150})
    assert net.head["seg"][-1].out_channels == 150 and net.pyramid.out_channels == 2048 + 4 * 512
    net.train()
    outputs = net(torch.zeros(2, 3, 65, 65))
    assert outputs["seg"].shape == (2, 150, 65, 65) and outputs["seg/aux"].shape == (2, 150, 9, 9)


def test_pspnet50_config_trains_on_the_miniature_copy(ade, tmp_path):
    """The ready config, at a 48×48 crop, two iterations and no ImageNet download, through the trainer."""
    from ptsemseg.trainer import Trainer

    root, _ = ade
    cfg = yaml.safe_load(open(CONFIG, encoding="utf-8"))
    cfg["model"]["pretrained"] = "none"
    cfg["data"]["path"] = str(root)
    cfg["training"].update(train_iters=2, batch_size=2, val_interval=2, n_workers=0, print_interval=1,
                           device="cpu", out_dir=str(tmp_path / "run"))
    cfg["training"]["augmentations"]["rscalecrop"]["size"] = [48, 48]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    scores = Trainer(load_config(str(path)), str(path)).run()
    assert 0.0 <= scores["seg/mean_iou"] <= 1.0
    assert os.path.isfile(tmp_path / "run" / "last.pt")
