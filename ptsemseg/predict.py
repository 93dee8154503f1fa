"""Prediction on a user's images, or on a dataset split without targets (predict.py).

Inputs: image files, folders (their images, not recursive) or globs; or `--split NAME`, every frame of
`data.path`'s split, read by the config's dataset with the model's input keys only (Cityscapes `demoVideo` or
`test`). RGB-D models take a depth map per image: the file with the image's stem in `--depth DIR`, a 16-bit PNG
(value / `--depth-scale` = metres: 1000 for millimetres, 256 for KITTI's convention, the default with
`data.dataset: kitti`) or a `.npy` of float metres; it serves every depth input of the model (`depth`,
`raw_depth`), and HHA is computed from it (ptsemseg.depth_utils.hha_encode) with the intrinsics of
`--intrinsics fx,fy,cx,cy` or else the dataset's camera scaled to the image's size.

The network runs as in evaluation (ptsemseg.inference.infer with the config's `testing:` keys: whole or sliding
window, scales, flip; at `data.img_rows × img_cols`, or each image's size with `same`), and every output comes
back at the input's size. Written per input and task, named after the input's stem (a split's frames by their
names in the dataset):
- classes (seg): `<stem>_<task>.png`, the train ids as uint8; `<stem>_<task>_picture.png`, the input with the
  prediction overlaid beside the prediction in the dataset's palette, and a legend of the class names shown;
- depth: `<stem>_<task>.png`, uint16 metres × 256 (KITTI's convention, clipped to 1..65535), `<stem>_<task>.npy`
  float32 metres, and `<stem>_<task>_picture.png`, the input beside the depth with a colour bar;
- image-level classes (scene): `<stem>_<task>.json`, the class id, its name and its probability.

The config may be left out when the checkpoint sits in its run directory (the trainer saves the resolved config
there as config.yaml). Class names and palettes come from the config's dataset class, so its files are not needed
for image inputs. Nothing is written before the config, the checkpoint, the output folder and every input
(present, an image by its header, depth of the same size) have been checked; a file that turns out corrupt when
decoded stops the run in one line naming it.
"""
import contextlib
import glob
import json
import os

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import CorruptFileError, read_png16, read_rgb

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEPTH_EXTENSIONS = (".png", ".npy")
DEPTH_KEYS = ("depth", "raw_depth")
KITTI_DEPTH_SCALE = 256.0
PLAUSIBLE_MEDIAN_M = 300.0  # a depth map whose median is farther than this was read in the wrong unit


# ---- inputs ------------------------------------------------------------------------------------------------------
def find_images(inputs):
    """The image files named by `inputs` (files, folders: their images sorted, globs), in order, without repeats."""
    found = []
    for item in inputs:
        if os.path.isdir(item):
            paths = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(item, name)))
            if not paths:
                raise PtsemsegError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {item}")
        elif os.path.isfile(item):
            paths = [item]
        elif glob.has_magic(item):
            paths = sorted(path for path in glob.glob(item) if os.path.isfile(path))
            if not paths:
                raise PtsemsegError(f"no files match {item}")
        else:
            raise PtsemsegError(f"input not found: {item}")
        found += paths
    return list(dict.fromkeys(found))


def image_size(path):
    """(rows, cols) of an image from its header, without decoding it; one line when it is no image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            cols, rows = image.size
            return rows, cols
    except (UnidentifiedImageError, OSError) as err:
        raise PtsemsegError(f"cannot read image {path}: {type(err).__name__}: {str(err)[:120]}") from None


def depth_size(path):
    """(rows, cols) of a depth map (16-bit PNG or .npy) from its header; one line when it cannot be one."""
    if path.endswith(".npy"):
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as err:
            raise PtsemsegError(f"cannot read depth {path}: {str(err)[:120]}") from None
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
            raise PtsemsegError(f"depth {path} must be an H×W array of float metres, got {array.dtype} "
                                f"{'×'.join(map(str, array.shape))}")
        return tuple(array.shape)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            cols, rows = image.size
            mode = image.mode
    except (UnidentifiedImageError, OSError) as err:
        raise PtsemsegError(f"cannot read depth {path}: {type(err).__name__}: {str(err)[:120]}") from None
    if mode not in ("I;16", "I;16B", "I"):
        raise PtsemsegError(f"depth {path} must be a 16-bit single-channel PNG (or a .npy of metres), got mode {mode}")
    return rows, cols


def match_depth(images, depth_dir):
    """The depth file of each image: `<depth_dir>/<image stem>.png|.npy`, of the image's size; one line for the
    first image without one."""
    if not os.path.isdir(depth_dir):
        raise PtsemsegError(f"--depth {depth_dir} is not a folder")
    matched = []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        candidates = [os.path.join(depth_dir, stem + ext) for ext in DEPTH_EXTENSIONS]
        path = next((candidate for candidate in candidates if os.path.isfile(candidate)), None)
        if path is None:
            raise PtsemsegError(f"no depth for {image}: expected {os.path.join(depth_dir, stem)}.png or .npy")
        if depth_size(path) != image_size(image):
            raise PtsemsegError(f"depth {path} is {'×'.join(map(str, depth_size(path)[::-1]))} but image {image} is "
                                f"{'×'.join(map(str, image_size(image)[::-1]))}")
        matched.append(path)
    return matched


def parse_intrinsics(text):
    """3×3 float32 K from 'fx,fy,cx,cy' (pixels)."""
    try:
        fx, fy, cx, cy = (float(value) for value in text.split(","))
    except ValueError:
        raise PtsemsegError(f"--intrinsics must be fx,fy,cx,cy in pixels, got {text!r}") from None
    if not (fx > 0 and fy > 0):
        raise PtsemsegError(f"--intrinsics: focal lengths must be positive, got {text!r}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float32)


def read_depth(path, scale):
    """Metres (float32, 0 = none) from a 16-bit PNG (value / scale) or a .npy of metres, refusing a map with no
    valid pixel or a median beyond PLAUSIBLE_MEDIAN_M (the wrong --depth-scale)."""
    if path.endswith(".npy"):
        try:
            depth = np.load(path).astype(np.float32)
        except (ValueError, OSError, EOFError) as err:
            raise CorruptFileError(f"cannot read depth {path} ({err})") from None
        depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    else:
        depth = read_png16(path).astype(np.float32) / scale
    valid = depth[depth > 0]
    if not valid.size:
        raise CorruptFileError(f"depth {path} has no valid pixel")
    if np.median(valid) > PLAUSIBLE_MEDIAN_M:
        raise CorruptFileError(f"depth {path} has a median of {np.median(valid):.0f} m: not metres "
                               f"(a PNG's value / --depth-scale {scale:g})?")
    return depth


class ImageFiles(DenseDataset):
    """A user's images (and depth maps) giving the model's input keys: image, depth and raw_depth (the depth file),
    hha (computed from it), with `meta.K` where intrinsics are known. Not registered: it reads no dataset layout."""

    given_keys = ("image", "depth", "raw_depth", "hha")

    def __init__(self, images, keys, depth_files=None, depth_scale=1000.0, K=None, camera=None, augmentations=None,
                 img_norm=True):
        super().__init__(None, "inputs", keys, None, augmentations, img_norm)
        self.images = list(images)
        self.depth_files = depth_files
        self.depth_scale = depth_scale
        self.K = K
        self.camera = camera

    def __len__(self):
        return len(self.images)

    def intrinsics(self, size):
        """K of an image of `size` (rows, cols): --intrinsics as given, or the dataset's camera scaled to it."""
        from ptsemseg.depth_utils import scale_intrinsics

        if self.K is not None:
            return self.K.copy()
        if self.camera is not None:
            K, camera_size = self.camera
            return scale_intrinsics(np.asarray(K, dtype=np.float32), camera_size, size).astype(np.float32)
        return None

    def load(self, index):
        from ptsemseg.depth_utils import hha_encode

        image = read_rgb(self.images[index])
        sample = {"image": image, "meta": {"name": os.path.splitext(os.path.basename(self.images[index]))[0],
                                           "index": index}}
        K = self.intrinsics(image.shape[:2])
        if K is not None:
            sample["meta"]["K"] = K
        if {"hha", *DEPTH_KEYS} & set(self.keys):
            depth = read_depth(self.depth_files[index], self.depth_scale)
            sample.update({"depth": depth, "raw_depth": depth.copy()})
            if "hha" in self.keys:
                sample["hha"] = hha_encode(depth, K, valid=depth > 0)
        return self.asked(sample)


class DatasetClasses:
    """What the tasks read from a dataset (class and scene names, counts, palette), from the dataset class and its
    options alone: prediction on a user's images needs no copy of the dataset."""

    def __init__(self, dataset_cls, options):
        self.class_names = dataset_cls.class_names_for(**options)
        self.n_classes = len(self.class_names) if self.class_names else dataset_cls.n_classes
        self.class_colors = dataset_cls.class_colors
        self.n_scene_classes = dataset_cls.n_scene_classes
        self.scene_names = dataset_cls.scene_names


# ---- outputs -----------------------------------------------------------------------------------------------------
def output_stem(out_dir, name):
    """The path prefix of an input's outputs: `<out_dir>/<name>`, refusing names that leave the folder."""
    relative = os.path.normpath(name)
    if os.path.isabs(relative) or relative.split(os.sep)[0] == "..":
        raise PtsemsegError(f"input name {name!r} would write outside --out")
    return os.path.join(out_dir, relative)


def write_png(path, array):
    """An H×W(×3) array as PNG (RGB given, BGR stored), written atomically."""
    from ptsemseg.checkpoint import write_atomic

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array)
    if not ok:
        raise PtsemsegError(f"cannot encode {path} as PNG")
    write_atomic(path, lambda handle: handle.write(encoded.tobytes()))


def depth_to_kitti_png(depth):
    """uint16 metres × 256 (KITTI's depth PNGs), clipped to 1..65535 so that no prediction reads as invalid (0)."""
    return np.clip(np.round(depth * KITTI_DEPTH_SCALE), 1, np.iinfo(np.uint16).max).astype(np.uint16)


def write_prediction(stem, name, task, output, image):
    """Write one task's outputs for one input (`output`: the head's 1×C×H×W or 1×C tensor at the input's size);
    returns the paths written."""
    from ptsemseg.checkpoint import write_atomic
    from ptsemseg.models.heads import DENSE
    from ptsemseg.visualize import depth_picture, save_figure, seg_picture

    prediction = task.predict(output)[0].cpu()
    base = f"{stem}_{name}"
    if task.kind != DENSE:
        probabilities = torch.softmax(output[0].float(), 0)
        class_id = int(prediction)
        names = task.class_names
        record = {"class": class_id, "name": names[class_id] if names else str(class_id),
                  "probability": round(float(probabilities[class_id]), 6)}
        write_atomic(base + ".json", lambda handle: handle.write(json.dumps(record).encode("utf-8")))
        return [base + ".json"]
    title = os.path.basename(stem)
    if task.activation == "positive_depth":
        depth = prediction[0].numpy().astype(np.float32)
        write_png(base + ".png", depth_to_kitti_png(depth))
        write_atomic(base + ".npy", lambda handle: np.save(handle, depth))
        save_figure(depth_picture(image, depth, title), base + "_picture.png")
        return [base + ".png", base + ".npy", base + "_picture.png"]
    label = prediction.numpy().astype(np.uint8)
    write_png(base + ".png", label)
    save_figure(seg_picture(image, label, task.palette, task.class_names, title), base + "_picture.png")
    return [base + ".png", base + "_picture.png"]


# ---- the command -------------------------------------------------------------------------------------------------
def resolve_config(config, model_path, overrides):
    """(config, checkpoint path): `--config`, or the config.yaml of the checkpoint's run directory."""
    from ptsemseg.config import load_config

    if config is None:
        if not model_path:
            raise PtsemsegError("give --model_path (and --config unless the checkpoint sits in its run directory)")
        config = os.path.join(os.path.dirname(os.path.abspath(model_path)), "config.yaml")
        if not os.path.isfile(config):
            raise PtsemsegError(f"no --config given and no config.yaml beside {model_path}: give --config")
    cfg = load_config(config, overrides)
    model_path = model_path or cfg["testing"]["trained_model"]
    if not model_path:
        raise PtsemsegError(f"no --model_path given and {config} sets no testing.trained_model")
    return cfg, model_path


def parse_args(argv):
    from ptsemseg.cli import config_parser

    parser = config_parser("Predict segmentation / depth for images, folders or globs (or a dataset split) and "
                           "write the raw predictions and pictures.")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs (quoted)")
    parser.add_argument("--model_path", help="checkpoint (default: testing.trained_model); the config.yaml beside "
                                             "it is used when --config is not given")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", help="instead of INPUT: every frame of data.path's split NAME (no targets read)")
    parser.add_argument("--depth", metavar="DIR", help="depth maps of RGB-D inputs: <image stem>.png (16-bit) or .npy "
                                                       "(float metres)")
    parser.add_argument("--depth-scale", dest="depth_scale", type=float,
                        help="16-bit depth PNG values per metre (default 1000, millimetres; 256 with a kitti config)")
    parser.add_argument("--intrinsics", help="fx,fy,cx,cy of the inputs in pixels (HHA and models that read K; "
                                             "default: the dataset's camera, scaled to each image)")
    parser.add_argument("--measure-time", dest="measure_time", action="store_true",
                        help="print the inference time per image (data loading and writing excluded)")
    args = parser.parse_args(argv)
    if bool(args.inputs) == bool(args.split):
        parser.error("give INPUT files, folders or globs, or --split, not both")
    if args.depth_scale is not None and not args.depth_scale > 0:
        parser.error("--depth-scale must be positive")
    return args


def file_inputs(args, cfg, keys, augmentations):
    """The ImageFiles dataset of the INPUT arguments, every file checked."""
    from ptsemseg.loaders import DATASETS
    from ptsemseg.build import DATASET_KEYS

    images = find_images(args.inputs)
    for path in images:
        image_size(path)
    stems = {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in stems:
            raise PtsemsegError(f"{stems[stem]} and {path} would write the same outputs (same name)")
        stems[stem] = path
    unknown = [key for key in keys if key not in (*ImageFiles.given_keys, "meta")]
    if unknown:
        raise PtsemsegError(f"model {cfg['model']['arch']} takes {', '.join(unknown)}, which predict.py cannot give "
                            "from files: use --split with a dataset that has it")
    depth_files = None
    if {"hha", *DEPTH_KEYS} & set(keys):
        if not args.depth:
            raise PtsemsegError(f"model {cfg['model']['arch']} takes {', '.join(k for k in keys if k != 'image')}: "
                                "give --depth DIR with a depth map per image")
        depth_files = match_depth(images, args.depth)
    dataset_cls = DATASETS.get(cfg["data"]["dataset"])
    options = {key: value for key, value in cfg["data"].items() if key not in DATASET_KEYS}
    K = parse_intrinsics(args.intrinsics) if args.intrinsics else None
    camera = dataset_cls.camera(**options)
    if K is None and camera is None and {"hha", "meta"} & set(keys):
        needs = "HHA" if "hha" in keys else "meta.K"
        raise PtsemsegError(f"model {cfg['model']['arch']} needs the camera intrinsics ({needs}) and dataset "
                            f"{cfg['data']['dataset']} has no single camera: give --intrinsics fx,fy,cx,cy")
    scale = args.depth_scale or (KITTI_DEPTH_SCALE if cfg["data"]["dataset"] == "kitti" else 1000.0)
    dataset = ImageFiles(images, keys, depth_files, scale, K, camera, augmentations, cfg["data"]["img_norm"])
    pictures = ImageFiles(images, ("image",))
    return dataset, pictures, DatasetClasses(dataset_cls, options)


def split_inputs(args, cfg, keys):
    """The config's dataset over `--split`, asked for the model's inputs alone, at native size."""
    from ptsemseg.build import build_dataset

    dataset = build_dataset(cfg, args.split, keys).keep_native_size()
    pictures = build_dataset(cfg, args.split, ("image",)).keep_native_size()
    return dataset, pictures, dataset


def predict_main(argv=None):
    """The predict.py command: see the module docstring."""
    args = parse_args(argv)
    from ptsemseg.augmentations import get_composed_augmentations
    from ptsemseg.build import build_model
    from ptsemseg.checkpoint import check_compatible, load_checkpoint, load_model_state, weights_entry
    from ptsemseg.device import autocast, resolve_device, resolve_speed_modes, to_device
    from ptsemseg.evaluation import InferenceTimer, network_size
    from ptsemseg.inference import bilinear, infer
    from ptsemseg.models import model_input_keys
    from ptsemseg.rundir import check_writable_dir
    from ptsemseg.tasks import TaskSet

    cfg, model_path = resolve_config(args.config, args.model_path, args.opts)
    state = load_checkpoint(model_path)
    keys = model_input_keys(cfg["model"])
    if args.split:
        dataset, pictures, classes = split_inputs(args, cfg, keys)
    else:
        augmentations = get_composed_augmentations(cfg["training"]["augmentations"], evaluation=True)
        dataset, pictures, classes = file_inputs(args, cfg, keys, augmentations)
    tasks = TaskSet(cfg["task"], classes, cfg["training"]["best_metric"])
    check_compatible(state, model_path, cfg["model"]["arch"], tasks.meta())
    device = resolve_device(cfg["training"]["device"])
    resolve_speed_modes(cfg["training"], device, cfg["model"]["arch"])
    model = build_model(cfg, tasks.heads(), device)
    load_model_state(model, state, model_path, entry=weights_entry(state, model_path))  # EMA weights if kept
    model.eval()
    check_writable_dir(args.out, "--out")

    testing, net_size = cfg["testing"], network_size(cfg)

    def resize(name, output, size):  # each task resizes its own output (depth as disparity under pred_disp)
        task = tasks.tasks.get(name)
        return task.resize_output(output, size, testing) if task else bilinear(name, output, size)

    workers = cfg["training"]["n_workers"] if len(dataset) > 1 else 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    timer = InferenceTimer(device) if args.measure_time else None
    written = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="predict", disable=len(dataset) < 2):
            batch = to_device(batch, device, cfg["training"]["channels_last"])
            with timer.measure(1) if timer else contextlib.nullcontext():
                outputs = infer(model, batch, testing, net_size, forward_context=lambda: autocast(cfg, device),
                                resize=resize)
            index = int(batch["meta"]["index"][0])
            stem = output_stem(args.out, batch["meta"]["name"][0])
            os.makedirs(os.path.dirname(stem) or ".", exist_ok=True)
            image = pictures.load(index)["image"]
            for name, task in tasks.items():
                written += len(write_prediction(stem, name, task, outputs[name], image))
    print(f"{len(dataset)} images, {written} files written to {args.out} ({model_path})")
    if timer:
        print(timer.summary())
