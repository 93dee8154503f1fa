"""NYUv2 extras: 13-class label files in the folder layout (`label_set`), also on the real 13-class PNG of
../shared/realdata."""
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import SHARED
from miniature_datasets import NYU_TRAIN, write_nyu_folder13
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import get_loader
from ptsemseg.loaders.io import CorruptFileError
from ptsemseg.loaders.nyuv2 import NYU13_CLASS_NAMES, NYU40_TO_13

REAL_13_CLASS_PNG = os.path.join(SHARED, "realdata", "nyu_depth_v2", "test_labels_13", "new_nyu_class13_0001.png")


# --------------------------------------------------------------------------------------- 13-class label files
@pytest.fixture
def folder13(tmp_path):
    return tmp_path, write_nyu_folder13(tmp_path)


def test_13_class_label_files_are_read_as_they_are(folder13):
    root, labels = folder13
    dataset = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13)
    assert dataset.layout == "folder" and dataset.n_classes == 13 and dataset.class_names == NYU13_CLASS_NAMES
    for index, frame in enumerate(NYU_TRAIN):
        label = dataset.load(index)["label"]
        assert np.array_equal(label, np.where(labels[frame] == 0, 255, labels[frame].astype(int) - 1))
    explicit = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13, n_classes=13)
    assert np.array_equal(explicit.load(0)["label"], dataset.load(0)["label"])
    assert get_loader("nyuv2")(str(root), "train", keys=("image", "depth"), label_set=13).n_classes == 13
    # What the 40→13 table made of these files before label_set existed: a different, wrong labelling.
    as_40 = np.concatenate([[255], np.array(NYU40_TO_13) - 1, np.full(215, 255)])[labels[NYU_TRAIN[0]]]
    assert not np.array_equal(as_40, dataset.load(0)["label"])


def test_label_set_auto_decides_or_asks(folder13, tmp_path_factory):
    root, _ = folder13
    with pytest.raises(PtsemsegError, match="the first 3 hold ids 0..13 only, which fits the 13-class set .* set "
                                            "data.label_set: 13 or 40") as err:
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"))
    assert "\n" not in str(err.value)
    assert get_loader("nyuv2")(str(root), "train", keys=("image", "depth")).n_classes == 40  # no labels read
    forty = tmp_path_factory.mktemp("nyu40")
    shutil.copytree(root, forty, dirs_exist_ok=True)
    label40 = np.full((12, 16), 40, np.uint8)
    label40[0, :3] = [0, 1, 22]
    assert cv2.imwrite(str(forty / "Label" / f"{NYU_TRAIN[1]:04d}.png"), label40)
    dataset = get_loader("nyuv2")(str(forty), "train", keys=("image", "label"))
    assert dataset.label_set == 40 and dataset.n_classes == 40
    assert dataset.load(1)["label"][0, :3].tolist() == [255, 0, 21]
    assert dataset.load(0)["label"][0, :3].tolist() == [255, 0, 12]  # ids 1..13 are 40-class ids too


def test_label_ids_above_the_set_fail_naming_the_file(folder13):
    root, _ = folder13
    path = root / "Label" / f"{NYU_TRAIN[2]:04d}.png"
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    label[5, 5] = 40
    assert cv2.imwrite(str(path), label)
    dataset = get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13)
    with pytest.raises(CorruptFileError, match=f"label id 40 in {path} is above the 13-class set \\(0 = void, "
                                               "1..13\\); 40-class files need data.label_set: 40"):
        dataset.load(2)
    label[5, 5] = 41
    assert cv2.imwrite(str(path), label)
    with pytest.raises(CorruptFileError, match=f"label id 41 in {path} is above the 40-class set"):
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=40).load(2)
    with pytest.raises(PtsemsegError, match="13-class set cannot give n_classes: 40"):
        get_loader("nyuv2")(str(root), "train", keys=("image", "label"), label_set=13, n_classes=40)
    with pytest.raises(PtsemsegError, match="label_set must be auto, 40 or 13, got 37"):
        get_loader("nyuv2")(str(root), "train", label_set=37)


def test_label_set_13_is_refused_for_the_mat_file(tmp_path):
    from miniature_datasets import write_nyu_mat
    write_nyu_mat(tmp_path)
    with pytest.raises(PtsemsegError, match="label_set: 13 applies to label files of the folder layout; layout mat "
                                            "holds 894-class labels"):
        get_loader("nyuv2")(str(tmp_path), "train", label_set=13)


def test_real_13_class_png_reads_as_13_classes(tmp_path):
    if not os.path.isfile(REAL_13_CLASS_PNG):
        pytest.skip(f"real dataset sample absent: {REAL_13_CLASS_PNG} (../shared/realdata)")
    real = cv2.imread(REAL_13_CLASS_PNG, cv2.IMREAD_UNCHANGED)
    for folder in ("Label", "RGB"):
        (tmp_path / folder).mkdir()
    shutil.copy(REAL_13_CLASS_PNG, tmp_path / "Label" / "0001.png")
    assert cv2.imwrite(str(tmp_path / "RGB" / "0001.png"), np.zeros((480, 640, 3), np.uint8))
    (tmp_path / "test.txt").write_text("RGB/0001.png\tLabel/0001.png\n")
    with pytest.raises(PtsemsegError, match="hold ids 0..12 only"):
        get_loader("nyuv2")(str(tmp_path), "test", keys=("image", "label"))
    label = get_loader("nyuv2")(str(tmp_path), "test", keys=("image", "label"), label_set=13).load(0)["label"]
    assert np.array_equal(label == 255, real == 0) and np.array_equal(label[real > 0], real[real > 0] - 1)
    names = [NYU13_CLASS_NAMES[c] for c in np.unique(label) if c != 255]
    assert {"wall", "floor"} <= set(names)

