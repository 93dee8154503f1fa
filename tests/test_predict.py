"""predict.py: every output for a folder of images of mixed sizes, predictions equal to the model's own output at each
image's size, the config's testing options, RGB-D inputs with matched depth files and HHA, a dataset split without
targets, and bad inputs refused in one line before anything is written."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import SHARED, run_script, tiny_config
from miniature_datasets import CITYSCAPES_COLS, CITYSCAPES_ROWS, make_cityscapes
from ptsemseg.build import DATASET_KEYS, build_model
from ptsemseg.checkpoint import load_checkpoint, load_model_state, save_atomic
from ptsemseg.config import load_config
from ptsemseg.depth_utils import hha_encode, scale_intrinsics
from ptsemseg.errors import PtsemsegError
from ptsemseg.inference import infer
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.labels import CITYSCAPES_COLORS
from ptsemseg.loaders.nyuv2 import NYU13_CLASS_NAMES
from ptsemseg.predict import DatasetClasses, predict_main
from ptsemseg.tasks import TaskSet
from ptsemseg.trainer import Trainer

CPU = torch.device("cpu")
SIZES = {"wide.png": (30, 40), "tall.jpg": (64, 48), "big.png": (100, 200)}  # rows, cols; not the net's 32×48


def write_images(folder, sizes=SIZES, seed=0):
    """Random RGB images of `sizes` (name -> rows, cols) in `folder`; returns them as read back (JPEG is lossy)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for name, size in sizes.items():
        cv2.imwrite(str(folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        images[os.path.splitext(name)[0]] = cv2.imread(str(folder / name))[..., ::-1].copy()
    return images


def classes_of(cfg):
    options = {key: value for key, value in cfg["data"].items() if key not in DATASET_KEYS}
    return DatasetClasses(DATASETS.get(cfg["data"]["dataset"]), options)


def random_run(folder, cfg):
    """A run directory holding `cfg` (in float32) as config.yaml and a checkpoint of its model with random weights."""
    cfg["training"].update(amp=False, channels_last=False)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_config(str(folder / "config.yaml"))
    tasks = TaskSet(cfg["task"], classes_of(cfg))
    torch.manual_seed(0)
    model = build_model(cfg, tasks.heads(), CPU).eval()
    save_atomic({"model_state": model.state_dict(), "meta": {"arch": cfg["model"]["arch"], "tasks": tasks.meta()}},
                str(folder / "model.pt"))
    return str(folder / "model.pt"), model


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory):
    """The run directory of a tiny seg + depth model trained for one iteration (config.yaml, last.pt)."""
    root = tmp_path_factory.mktemp("joint")
    cfg = tiny_config({"seg": 1.0, "depth": 1.0}, training={"train_iters": 1, "val_interval": 1, "amp": False,
                                                            "channels_last": False, "out_dir": str(root / "run")})
    cfg["data"]["length"] = 2
    (root / "joint.yaml").write_text(yaml.safe_dump(cfg))
    trainer = Trainer(load_config(str(root / "joint.yaml")), str(root / "joint.yaml"))
    trainer.run()
    return trainer.run_dir


def trained_model(run_dir):
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    model = build_model(cfg, TaskSet(cfg["task"], classes_of(cfg)).heads(), CPU)
    load_model_state(model, load_checkpoint(os.path.join(run_dir, "last.pt")), "last.pt")
    return model.eval()


def image_tensor(image):
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).float()[None] / 255.0


def test_a_folder_of_mixed_sizes_gets_every_output(joint_run, tmp_path):
    """No --config: the run directory's config.yaml. Each image's label map and depth are the model's outputs at the
    network's size (32×48) resized bilinearly to the image's size; PNG, .npy and pictures for every input."""
    images = write_images(tmp_path / "images")
    out = tmp_path / "out"
    result = run_script("predict.py", "--model_path", os.path.join(joint_run, "last.pt"), str(tmp_path / "images"),
                        "--out", str(out), "--measure-time")
    assert result.returncode == 0, result.stderr
    assert "3 images, 15 files written" in result.stdout and "ms per image" in result.stdout
    expected_files = {f"{stem}_{suffix}" for stem in images for suffix in
                      ("seg.png", "seg_picture.png", "depth.png", "depth.npy", "depth_picture.png")}
    assert set(os.listdir(out)) == expected_files
    model = trained_model(joint_run)
    for stem, image in images.items():
        size = image.shape[:2]
        with torch.no_grad():
            outputs = model(F.interpolate(image_tensor(image), size=(32, 48), mode="bilinear", align_corners=False))
        logits = F.interpolate(outputs["seg"], size=size, mode="bilinear", align_corners=False)
        depth = F.interpolate(outputs["depth"], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
        label = cv2.imread(str(out / f"{stem}_seg.png"), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and label.shape == size
        np.testing.assert_array_equal(label, logits.argmax(1)[0].numpy())
        saved = np.load(out / f"{stem}_depth.npy")
        assert saved.dtype == np.float32 and saved.shape == size
        np.testing.assert_allclose(saved, depth, rtol=1e-5)
        kitti = cv2.imread(str(out / f"{stem}_depth.png"), cv2.IMREAD_UNCHANGED)
        assert kitti.dtype == np.uint16 and kitti.shape == size
        np.testing.assert_array_equal(kitti, np.clip(np.round(saved * 256), 1, 65535).astype(np.uint16))
        for picture in ("seg", "depth"):
            drawn = cv2.imread(str(out / f"{stem}_{picture}_picture.png"))
            assert drawn is not None and drawn.shape[1] >= 1000


def test_the_testing_options_of_the_config_apply(joint_run, tmp_path):
    """Windows, scales and flips from --opts: the label map is infer()'s under them, and not the whole-image one."""
    images = write_images(tmp_path / "images", {"frame.png": (40, 64)})
    testing = ["testing.mode=slide", "testing.crop_size=[16, 24]", "testing.scales=[0.75, 1.0]", "testing.flip=true"]
    predict_main(["--model_path", os.path.join(joint_run, "last.pt"), str(tmp_path / "images" / "frame.png"),
                  "--out", str(tmp_path / "out"), "--opts", *testing])
    label = cv2.imread(str(tmp_path / "out" / "frame_seg.png"), cv2.IMREAD_UNCHANGED)
    model, batch = trained_model(joint_run), {"image": image_tensor(images["frame"])}
    options = {"mode": "slide", "crop_size": [16, 24], "scales": [0.75, 1.0], "flip": True}
    with torch.no_grad():
        expected = infer(model, batch, options, net_size=(32, 48))["seg"].argmax(1)[0].numpy()
        whole = infer(model, batch, {}, net_size=(32, 48))["seg"].argmax(1)[0].numpy()
    np.testing.assert_array_equal(label, expected)
    assert (label != whole).any()


def rgbd_config(tmp_path):
    """A random-weight DeepLab taking image, depth and HHA (early fusion) on the synthetic dataset's camera."""
    cfg = tiny_config("seg")
    cfg["model"]["inputs"] = ["image", "depth", "hha"]
    cfg["data"]["native_size"] = [30, 40]
    return random_run(tmp_path / "rgbd_run", cfg)


def test_rgbd_inputs_take_matched_depth_files_and_hha_from_the_dataset_camera(tmp_path):
    """A 16-bit PNG in millimetres and a .npy in metres, matched by stem; HHA from that depth and the synthetic
    camera scaled to each image: the label map is the model's on those inputs."""
    checkpoint, model = rgbd_config(tmp_path)
    images = write_images(tmp_path / "images", {"one.png": (30, 40), "two.png": (45, 60)})
    rng = np.random.default_rng(1)
    depths = {stem: rng.uniform(0.5, 6.0, image.shape[:2]).astype(np.float32) for stem, image in images.items()}
    (tmp_path / "depth").mkdir()
    millimetres = np.round(depths["one"] * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "depth" / "one.png"), millimetres)
    depths["one"] = millimetres.astype(np.float32) / 1000
    np.save(tmp_path / "depth" / "two.npy", depths["two"])
    predict_main(["--model_path", checkpoint, str(tmp_path / "images"), "--depth", str(tmp_path / "depth"),
                  "--out", str(tmp_path / "out")])
    K_native, native = DATASETS.get("synthetic").camera(native_size=(30, 40))
    for stem, image in images.items():
        size, depth = image.shape[:2], depths[stem]
        hha = hha_encode(depth, scale_intrinsics(K_native, native, size), valid=depth > 0)
        inputs = (F.interpolate(image_tensor(image), size=(32, 48), mode="bilinear", align_corners=False),
                  F.interpolate(torch.from_numpy(depth)[None, None], size=(32, 48), mode="nearest"),
                  F.interpolate(image_tensor(hha), size=(32, 48), mode="bilinear", align_corners=False))
        with torch.no_grad():
            logits = F.interpolate(model(*inputs)["seg"], size=size, mode="bilinear", align_corners=False)
        label = cv2.imread(str(tmp_path / "out" / f"{stem}_seg.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(label, logits.argmax(1)[0].numpy())


def test_image_level_tasks_write_the_class_its_name_and_probability(tmp_path):
    cfg = tiny_config({"seg": 1.0, "scene": 0.1})
    checkpoint, model = random_run(tmp_path / "run", cfg)
    images = write_images(tmp_path / "images", {"room.png": (30, 40)})
    predict_main(["--model_path", checkpoint, str(tmp_path / "images"), "--out", str(tmp_path / "out")])
    assert sorted(os.listdir(tmp_path / "out")) == ["room_scene.json", "room_seg.png", "room_seg_picture.png"]
    with torch.no_grad():
        logits = model(F.interpolate(image_tensor(images["room"]), size=(32, 48), mode="bilinear",
                                     align_corners=False))["scene"][0]
    record = json.loads((tmp_path / "out" / "room_scene.json").read_text())
    assert record["class"] == int(logits.argmax())
    assert record["name"] == DATASETS.get("synthetic").scene_names[record["class"]]
    assert record["probability"] == pytest.approx(float(torch.softmax(logits, 0).max()), abs=1e-6)


def cityscapes_config(root):
    cfg = tiny_config("seg")
    cfg["data"] = {"dataset": "cityscapes", "path": str(root), "img_rows": 16, "img_cols": 32}
    return cfg


def test_a_split_without_targets_is_predicted_with_the_dataset_palette(tmp_path):
    """Cityscapes demoVideo (images only, no gtFine, disparity or camera): every frame, named as in the dataset."""
    root = make_cityscapes(tmp_path / "cityscapes")
    frames = ["stuttgart_00_000000_000001", "stuttgart_00_000000_000002"]
    demo = root / "leftImg8bit" / "demoVideo" / "stuttgart_00"
    demo.mkdir(parents=True)
    for stem in frames:
        shutil.copy(root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png",
                    demo / f"{stem}_leftImg8bit.png")
    checkpoint, _ = random_run(tmp_path / "run", cityscapes_config(root))
    predict_main(["--model_path", checkpoint, "--split", "demoVideo", "--out", str(tmp_path / "out")])
    for stem in frames:
        label = cv2.imread(str(tmp_path / "out" / "stuttgart_00" / f"{stem}_seg.png"), cv2.IMREAD_UNCHANGED)
        assert label.shape == (CITYSCAPES_ROWS, CITYSCAPES_COLS) and label.max() < 19
        assert os.path.isfile(tmp_path / "out" / "stuttgart_00" / f"{stem}_seg_picture.png")


def test_class_names_and_palettes_come_from_the_dataset_class():
    cityscapes = TaskSet("seg", DatasetClasses(DATASETS.get("cityscapes"), {})).tasks["seg"]
    np.testing.assert_array_equal(cityscapes.palette[:19], CITYSCAPES_COLORS)
    assert cityscapes.class_names[0] == "road" and cityscapes.channels == 19
    nyu13 = TaskSet("seg", DatasetClasses(DATASETS.get("nyuv2"), {"n_classes": 13})).tasks["seg"]
    assert nyu13.channels == 13 and nyu13.class_names == NYU13_CLASS_NAMES
    assert TaskSet("seg", DatasetClasses(DATASETS.get("nyuv2"), {})).tasks["seg"].channels == 40


def bad_inputs(tmp_path, joint_run):
    """(arguments, message fragment) of each kind of bad input."""
    images = tmp_path / "images"
    write_images(images, {"ok.png": (20, 30)})
    (tmp_path / "empty").mkdir()
    (tmp_path / "notimage.png").write_bytes(b"not a png at all")
    (tmp_path / "other").mkdir()
    shutil.copy(images / "ok.png", tmp_path / "other" / "ok.jpg")
    alone = tmp_path / "alone" / "model.pt"
    alone.parent.mkdir()
    shutil.copy(os.path.join(joint_run, "last.pt"), alone)
    checkpoint = os.path.join(joint_run, "last.pt")
    rgbd_checkpoint, _ = rgbd_config(tmp_path)
    for folder, rows in (("small_depth", 10), ("depth", 20)):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "ok.png"), np.full((rows, 30), 1000, np.uint16))
    depth = ["--depth", str(tmp_path / "depth")]
    return [
        (["--model_path", checkpoint, str(tmp_path / "empty")], "no images (.png"),
        (["--model_path", checkpoint, str(tmp_path / "missing.png")], "input not found: "),
        (["--model_path", checkpoint, str(tmp_path / "nothing*.png")], "no files match "),
        (["--model_path", checkpoint, str(tmp_path / "notimage.png")], "cannot read image "),
        (["--model_path", checkpoint, str(images), str(tmp_path / "other")], "would write the same outputs"),
        (["--model_path", str(alone), str(images)], "no config.yaml beside"),
        (["--model_path", checkpoint, str(images), "--opts", "model.arch=pspnet"],
         "was trained with arch=deeplab, this config needs pspnet"),
        (["--model_path", rgbd_checkpoint, str(images)], "give --depth DIR"),
        (["--model_path", rgbd_checkpoint, str(images), "--depth", str(tmp_path / "empty")], "no depth for "),
        (["--model_path", rgbd_checkpoint, str(images), "--depth", str(tmp_path / "small_depth")],
         "ok.png is 30×10 but image"),
        (["--model_path", rgbd_checkpoint, str(images), *depth, "--intrinsics", "1,2"], "--intrinsics must be fx,fy,"),
        (["--model_path", rgbd_checkpoint, str(images), *depth, "--opts", "data.dataset=sunrgbd", "data.length=",
          "data.native_size="], "dataset sunrgbd has no single camera: give --intrinsics fx,fy,cx,cy"),
    ]


def test_bad_inputs_fail_in_one_line_before_anything_is_written(joint_run, tmp_path):
    out = tmp_path / "out"
    for args, fragment in bad_inputs(tmp_path, joint_run):
        with pytest.raises(PtsemsegError) as err:
            predict_main(["--out", str(out), *args])
        assert fragment in str(err.value) and "\n" not in str(err.value), (args, str(err.value))
        assert not out.exists(), args
    result = run_script("predict.py", "--model_path", str(tmp_path / "alone" / "model.pt"), str(tmp_path / "images"),
                        "--out", str(out))
    assert result.returncode == 2 and result.stderr.startswith("error: no --config given and no config.yaml beside")
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


REAL_FRAME = os.path.join(SHARED, "realdata", "cityscapes", "leftImg8bit", "val", "frankfurt",
                          "frankfurt_000001_058914_leftImg8bit.png")


@pytest.mark.skipif(not os.path.isfile(REAL_FRAME), reason="../shared/realdata (the real Cityscapes frame) is absent")
def test_the_real_cityscapes_frame_runs_at_2048_by_1024(tmp_path):
    """configs/cityscapes/deeplab_seg.yaml (ResNet-18 instead of 101 to stay fast, random weights) on the real frame:
    the network runs at the frame's own size (img_rows: same) and the label map and picture come out at it."""
    cfg = yaml.safe_load(open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "cityscapes",
                                           "deeplab_seg.yaml")))
    cfg["model"].update(backbone="resnet18", pretrained="none")
    checkpoint, _ = random_run(tmp_path / "run", cfg)
    predict_main(["--model_path", checkpoint, REAL_FRAME, "--out", str(tmp_path / "out")])
    label = cv2.imread(str(tmp_path / "out" / "frankfurt_000001_058914_leftImg8bit_seg.png"), cv2.IMREAD_UNCHANGED)
    assert label.shape == (1024, 2048) and label.max() < 19
    picture = cv2.imread(str(tmp_path / "out" / "frankfurt_000001_058914_leftImg8bit_seg_picture.png"))
    assert picture.shape[1] >= 1400
