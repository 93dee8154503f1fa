"""Augmentations: value checks, joint alignment of the spatial keys, intrinsics, determinism and seed semantics."""
import copy
import random

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from ptsemseg.augmentations import AUGMENTATIONS, get_composed_augmentations, photometric
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders.base import DenseDataset

ROWS, COLS = 48, 64
BLOCK_ROWS, BLOCK_COLS = 12, 16
INTRINSICS = np.array([[50.0, 0.0, 30.5], [0.0, 50.0, 22.25], [0.0, 0.0, 1.0]], dtype=np.float32)
SEEDS = (0, 1, 2, 7)

# Valid YAML values of every key; the last one is random (for the determinism test).
VALUES = {
    "gamma": [0.5],
    "hue": [0.5, 0.05],
    "brightness": [0.5],
    "saturation": [0.5],
    "contrast": [0.5],
    "rcrop": [[32, 40], [60, 80], 50],
    "ccrop": [[30, 50], [60, 70]],
    "translate": [8, [10, 6]],
    "rotate": [180, 30],
    "scale": [40, [30, 90]],
    "hflip": [1.0, 0.5],
    "vflip": [1.0, 0.5],
    "rsize": [40],
    "rsizecrop": [32, [24, 40]],
    "rscalecrop": [{"scale": [0.5, 2.0], "size": [32, 48]}, {"scale": [0.3, 0.5], "size": [40, 40]}],
    "normalize": ["imagenet", {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "keys": ["image", "hha"]}],
}
BAD_VALUES = {
    "gamma": [-0.1, "0.2", None, 11],
    "hue": [0.6, -0.1],
    "brightness": [1.5, [0.2]],
    "saturation": [-1, True],
    "contrast": [2, None],
    "rcrop": [[10], [10, 0], 0, "10", [10.5, 4]],
    "ccrop": [[10, -1], []],
    "translate": [-1, [1, 2, 3], 1.5],
    "rotate": [200, -1, [10]],
    "scale": [0, [10], 2.5],
    "hflip": [2, -0.1, True],
    "vflip": [1.5, "0.5"],
    "rsize": [0, [10, 10], 1.5],
    "rsizecrop": [[0, 3], -4],
    "rscalecrop": [{"scale": [2, 1], "size": 10}, {"scale": [0.5, 2]}, {"scale": [0.5, 2], "size": [10]},
                   {"scale": 1, "size": 10}, [0.5, 2], {"scale": [0, 2], "size": 10},
                   {"scale": [0.5, 2], "size": 10, "pad": 0}],
    "normalize": ["cifar", {"mean": [0.5, 0.5], "std": [1, 1, 1]}, {"mean": [120, 110, 100], "std": [50, 50, 50]},
                  {"mean": [0.5] * 3, "std": [0, 1, 1]}, {"mean": [0.5] * 3, "std": [1] * 3, "keys": ["depth"]},
                  {"mean": [0.5] * 3}],
}
# Keys whose output does not depend on the random generator.
DETERMINISTIC = {"ccrop", "scale", "normalize"}
# Output (rows, cols) of the first value of the keys that set the size, on a ROWS×COLS input.
OUTPUT_SIZE = {"rcrop": (32, 40), "ccrop": (30, 50), "scale": (30, 40), "rsize": (40, 40), "rsizecrop": (32, 32),
               "rscalecrop": (32, 48)}
# How a flip mirrors the 3D scene, for the projection check.
WORLD_MIRROR = {"hflip": np.diag([-1.0, 1.0, 1.0]), "vflip": np.diag([1.0, -1.0, 1.0])}

GEOMETRIC = [name for name in AUGMENTATIONS.names() if not AUGMENTATIONS.get(name).photometric]


def make_sample(float_image=False):
    """A sample whose image encodes each pixel's coordinates and whose label and depth follow a 4×4 grid of regions.

    The uint8 image is (40 + 3x, 40 + 4y, 200): bilinear resampling of this ramp gives back the source coordinates,
    and the constant channel drops below 200 wherever the fill was blended in. The float image is (x, y, 1), for
    sub-pixel checks. `hha` is a copy of the uint8 image, so it must move exactly like it.
    """
    y, x = np.mgrid[:ROWS, :COLS]
    region = (y // BLOCK_ROWS) * (COLS // BLOCK_COLS) + x // BLOCK_COLS
    label = (3 * region).astype(np.uint8)
    label[region == 5] = 255
    depth = (0.5 + region).astype(np.float32)
    depth[region == 6] = 0
    meta = {"name": "pattern", "index": 0, "K": INTRINSICS.copy()}
    sample = {"label": label, "depth": depth, "scene": 3, "meta": meta}
    if float_image:
        sample["image"] = np.stack([x, y, np.ones_like(x)], axis=-1).astype(np.float32)
    else:
        sample["image"] = np.stack([40 + 3 * x, 40 + 4 * y, np.full_like(x, 200)], axis=-1).astype(np.uint8)
        sample["hha"] = sample["image"].copy()
    return sample


def decode(image):
    """Source (x, y) of every pixel of a resampled pattern image, and where no fill was blended in."""
    image = image.astype(np.float64)
    if image[..., 2].max() <= 1:
        return image[..., 0], image[..., 1], image[..., 2] > 0.999
    return (image[..., 0] - 40) / 3, (image[..., 1] - 40) / 4, image[..., 2] == 200


def steady(label):
    """Pixels whose 3×3 neighbourhood lies in one region (their label and depth do not depend on rounding)."""
    padded = np.pad(label, 1, mode="edge")
    rows, cols = label.shape
    same = np.ones(label.shape, dtype=bool)
    for dy in range(3):
        for dx in range(3):
            same &= padded[dy:dy + rows, dx:dx + cols] == label
    return same


def bilinear(image, x, y):
    """Bilinear samples of image at float positions (x, y), exact in float64; positions must be inside."""
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, image.shape[1] - 1), np.minimum(y0 + 1, image.shape[0] - 1)
    wx, wy = (x - x0)[:, None], (y - y0)[:, None]
    image = image.astype(np.float64)
    top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
    bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


def samples_equal(first, second):
    if first.keys() != second.keys():
        return False
    for key, value in first.items():
        other = second[key]
        if key == "meta":
            if value.keys() != other.keys() or not all(np.array_equal(value[k], other[k]) for k in value):
                return False
        elif not np.array_equal(value, other):
            return False
    return True


def check_alignment(source, out):
    """Every pixel that shows a source pixel carries that pixel's label and depth; fill pixels carry 255 and 0."""
    src_x, src_y, clean = decode(out["image"])
    col, row = np.rint(src_x).astype(int), np.rint(src_y).astype(int)
    checked = clean & (row >= 0) & (row < ROWS) & (col >= 0) & (col < COLS)
    checked[checked] = steady(source["label"])[row[checked], col[checked]]
    assert checked.sum() >= 50
    np.testing.assert_array_equal(out["label"][checked], source["label"][row[checked], col[checked]])
    np.testing.assert_array_equal(out["depth"][checked], source["depth"][row[checked], col[checked]])
    fill = (out["image"] == 0).all(axis=-1)
    assert (out["label"][fill] == 255).all() and (out["depth"][fill] == 0).all()
    if "hha" in out:
        np.testing.assert_array_equal(out["hha"], out["image"])


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_every_key_has_values_to_test(name):
    assert VALUES[name] and BAD_VALUES[name]


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_bad_values_name_the_key(name):
    for value in BAD_VALUES[name]:
        with pytest.raises(PtsemsegError, match=f"augmentation '{name}"):
            AUGMENTATIONS.get(name)(value)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_properties(name):
    """Shapes, dtypes, value sets, untouched input; geometric ops keep the keys aligned, photometric ops touch image."""
    for index, value in enumerate(VALUES[name]):
        aug = AUGMENTATIONS.get(name)(value)
        for seed in SEEDS:
            source = make_sample()
            before = copy.deepcopy(source)
            out = aug(source, np.random.default_rng(seed))
            assert samples_equal(source, before)
            rows, cols = out["image"].shape[:2]
            if index == 0 and name in OUTPUT_SIZE:
                assert (rows, cols) == OUTPUT_SIZE[name]
            assert out["image"].shape == (rows, cols, 3) and out["hha"].shape == (rows, cols, 3)
            assert out["label"].shape == out["depth"].shape == (rows, cols)
            assert out["label"].dtype == np.uint8 and out["depth"].dtype == np.float32
            assert out["image"].dtype == (np.float32 if name == "normalize" else np.uint8)
            assert out["scene"] == 3 and out["meta"]["name"] == "pattern"
            assert set(np.unique(out["label"])) <= set(np.unique(source["label"])) | {255}
            assert set(np.unique(out["depth"])) <= set(np.unique(source["depth"])) | {0.0}
            if AUGMENTATIONS.get(name).photometric:
                assert (rows, cols) == (ROWS, COLS)
                changed = {"image"} | set(getattr(aug, "keys", ()))
                for key in ("label", "depth", "hha", "meta"):
                    if key not in changed:
                        assert samples_equal({key: out[key]}, {key: source[key]})
            else:
                check_alignment(source, out)


@pytest.mark.parametrize("name", [name for name in GEOMETRIC if name != "rotate"])
def test_intrinsics_project_3d_points_where_the_image_shows_them(name):
    """A 3D point seen at source pixel (u, v) projects through the new K to where the output shows (u, v)."""
    aug = AUGMENTATIONS.get(name)(VALUES[name][0])
    u, v = np.meshgrid(np.linspace(2, COLS - 3, 9), np.linspace(2, ROWS - 3, 7))
    u, v = u.ravel(), v.ravel()
    distance = np.linspace(1.0, 4.0, u.size)
    points = np.linalg.inv(INTRINSICS.astype(np.float64)) @ np.stack([u, v, np.ones_like(u)]) * distance
    points = WORLD_MIRROR.get(name, np.eye(3)) @ points
    for seed in SEEDS:
        out = aug(make_sample(float_image=True), np.random.default_rng(seed))
        projected = out["meta"]["K"].astype(np.float64) @ points
        x, y = projected[0] / projected[2], projected[1] / projected[2]
        rows, cols = out["image"].shape[:2]
        inside = (x >= 0) & (x <= cols - 1) & (y >= 0) & (y <= rows - 1)
        seen = bilinear(out["image"], x[inside], y[inside])
        clean = seen[:, 2] > 0.999
        assert clean.sum() >= 5
        np.testing.assert_allclose(seen[clean, 0], u[inside][clean], atol=0.1)
        np.testing.assert_allclose(seen[clean, 1], v[inside][clean], atol=0.1)


@pytest.mark.parametrize("with_intrinsics", [True, False])
def test_rotate_turns_about_the_principal_point(with_intrinsics):
    aug = AUGMENTATIONS.get("rotate")(30)
    center = INTRINSICS[:2, 2] if with_intrinsics else np.array([(COLS - 1) / 2, (ROWS - 1) / 2])
    angles = []
    for seed in SEEDS:
        source = make_sample(float_image=True)
        if not with_intrinsics:
            del source["meta"]["K"]
        out = aug(source, np.random.default_rng(seed))
        assert samples_equal({"meta": out["meta"]}, {"meta": source["meta"]})
        src_x, src_y, clean = decode(out["image"])
        y, x = np.mgrid[:ROWS, :COLS]
        radius = np.hypot(x - center[0], y - center[1])
        keep = clean & (radius > 5)
        np.testing.assert_allclose(np.hypot(src_x - center[0], src_y - center[1])[keep], radius[keep], atol=0.1)
        turn = np.angle(np.exp(1j * (np.arctan2(y - center[1], x - center[0])
                                     - np.arctan2(src_y - center[1], src_x - center[0]))))[keep]
        assert np.ptp(turn) < 0.02 and abs(np.degrees(turn.mean())) <= 30
        angles.append(turn.mean())
    assert np.ptp(angles) > 0.01


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_same_seed_same_output(name):
    """All randomness comes from the passed generator (the global ones are reseeded in between)."""
    aug = AUGMENTATIONS.get(name)(VALUES[name][-1])
    outputs = []
    for global_seed, seed in enumerate((5, 5, 6, 7, 8, 9)):
        np.random.seed(global_seed)
        random.seed(global_seed)
        outputs.append(aug(make_sample(), np.random.default_rng(seed)))
    assert samples_equal(outputs[0], outputs[1])
    assert any(not samples_equal(outputs[0], other) for other in outputs[2:]) == (name not in DETERMINISTIC)


@pytest.mark.parametrize(("name", "value", "low", "high"), [
    ("gamma", 0.4, 1.0, 1.4), ("hue", 0.2, -0.2, 0.2), ("brightness", 0.3, 0.7, 1.3),
    ("saturation", 0.5, 0.5, 1.5), ("contrast", 0.25, 0.75, 1.25)])
def test_photometric_factors_follow_the_seed(name, value, low, high):
    aug = AUGMENTATIONS.get(name)(value)
    draws = np.array([aug.draw(np.random.default_rng(seed)) for seed in range(300)])
    margin = 0.1 * (high - low)
    assert low <= draws.min() < low + margin and high - margin < draws.max() <= high


@pytest.mark.parametrize(("ours", "reference", "tolerance"), [
    (photometric.adjust_gamma, TF.adjust_gamma, 0),
    (photometric.adjust_brightness, TF.adjust_brightness, 1),
    (photometric.adjust_contrast, TF.adjust_contrast, 1),
    (photometric.adjust_saturation, TF.adjust_saturation, 1)])
def test_photometric_matches_torchvision(ours, reference, tolerance):
    """Same pixels as torchvision on PIL images, up to PIL truncating where OpenCV rounds."""
    image = np.random.default_rng(0).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    for factor in (0.5, 0.8, 1.0, 1.3, 1.7):
        expected = np.asarray(reference(Image.fromarray(image), factor)).astype(int)
        assert np.abs(ours(image, factor).astype(int) - expected).max() <= tolerance


def test_hue_matches_torchvision_float_hsv():
    image = np.random.default_rng(1).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    tensor = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    for shift in (-0.5, -0.2, 0.0, 0.1, 0.37):
        expected = (TF.adjust_hue(tensor, shift).permute(1, 2, 0).numpy() * 255).round().astype(int)
        assert np.abs(photometric.adjust_hue(image, shift).astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(photometric.adjust_hue(image, 0.0), image)


def test_normalize():
    sample = make_sample()
    out = AUGMENTATIONS.get("normalize")("imagenet")(sample, np.random.default_rng(0))
    expected = (sample["image"] / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert out["image"].dtype == np.float32 and out["hha"] is sample["hha"]
    np.testing.assert_allclose(out["image"], expected, atol=1e-5)
    both = AUGMENTATIONS.get("normalize")({"mean": [0.5] * 3, "std": [0.5] * 3, "keys": ["image", "hha"]})
    out = both(sample, np.random.default_rng(0))
    np.testing.assert_allclose(out["hha"], sample["hha"] / 127.5 - 1, atol=1e-6)
    with pytest.raises(PtsemsegError, match="uint8"):
        AUGMENTATIONS.get("brightness")(0.2)(out, np.random.default_rng(0))


def test_rcrop_pads_a_smaller_image_instead_of_resizing():
    for seed in SEEDS:
        out = AUGMENTATIONS.get("rcrop")([60, 80])(make_sample(), np.random.default_rng(seed))
        src_x, src_y, clean = decode(out["image"])
        y, x = np.mgrid[:60, :80]
        assert clean.sum() == ROWS * COLS
        shift_x, shift_y = np.unique(x[clean] - src_x[clean]), np.unique(y[clean] - src_y[clean])
        assert shift_x.size == shift_y.size == 1 and 0 <= shift_x[0] <= 16 and 0 <= shift_y[0] <= 12
        assert (out["label"][~clean] == 255).all() and (out["depth"][~clean] == 0).all()
        np.testing.assert_allclose(out["meta"]["K"][:2, 2], INTRINSICS[:2, 2] + [shift_x[0], shift_y[0]])


def test_ccrop_takes_the_centre():
    out = AUGMENTATIONS.get("ccrop")([30, 50])(make_sample(), np.random.default_rng(0))
    src_x, src_y, _ = decode(out["image"])
    assert (src_x[0, 0], src_y[0, 0]) == (7, 9)


def test_translate_shifts_within_range_and_fills():
    for seed in SEEDS:
        out = AUGMENTATIONS.get("translate")([10, 6])(make_sample(), np.random.default_rng(seed))
        src_x, src_y, clean = decode(out["image"])
        y, x = np.mgrid[:ROWS, :COLS]
        shift_x, shift_y = np.unique(x[clean] - src_x[clean]), np.unique(y[clean] - src_y[clean])
        assert abs(shift_x[0]) <= 10 and abs(shift_y[0]) <= 6 and shift_x.size == shift_y.size == 1
        assert clean.sum() == (ROWS - abs(shift_y[0])) * (COLS - abs(shift_x[0]))
        assert (out["label"][~clean] == 255).all() and (out["depth"][~clean] == 0).all()


def test_scale_seed_int_means_longer_side():
    portrait = {"image": np.zeros((64, 48, 3), np.uint8), "label": np.zeros((64, 48), np.uint8)}
    assert AUGMENTATIONS.get("scale")(40)(portrait, None)["label"].shape == (40, 30)
    assert AUGMENTATIONS.get("scale")([30, 90])(portrait, None)["image"].shape == (30, 90, 3)


def test_resampling_follows_cv2_resize():
    """The pixel-centre convention of cv2.resize, so a scale here matches a resize done anywhere else."""
    sample = make_sample()
    out = AUGMENTATIONS.get("scale")([30, 90])(sample, None)
    expected = cv2.resize(sample["image"], (90, 30), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out["image"].astype(int) - expected).max() <= 1


def test_flip_probability_extremes():
    sample = make_sample()
    for name, axis in (("hflip", 1), ("vflip", 0)):
        flipped = AUGMENTATIONS.get(name)(1)(sample, np.random.default_rng(0))
        for key in ("image", "hha", "label", "depth"):
            np.testing.assert_array_equal(flipped[key], np.flip(sample[key], axis))
        kept = AUGMENTATIONS.get(name)(0)(sample, np.random.default_rng(0))
        assert samples_equal(kept, sample)


def test_rscalecrop_scale_stays_in_range():
    aug = AUGMENTATIONS.get("rscalecrop")({"scale": [0.5, 2.0], "size": [32, 48]})
    factors = []
    for seed in range(12):
        out = aug(make_sample(float_image=True), np.random.default_rng(seed))
        factors.append(out["meta"]["K"][0, 0] / INTRINSICS[0, 0])
        src_x, _, clean = decode(out["image"])
        step = np.diff(src_x, axis=1)[clean[:, 1:] & clean[:, :-1]]
        np.testing.assert_allclose(step, 1 / factors[-1], atol=0.05)
    assert 0.5 <= min(factors) < 0.8 and 1.7 < max(factors) <= 2.0


def test_rsizecrop_falls_back_to_fit_and_centre():
    wide = {"image": np.full((8, 200, 3), 9, np.uint8), "label": np.ones((8, 200), np.uint8)}
    out = AUGMENTATIONS.get("rsizecrop")(32)(wide, np.random.default_rng(0))
    covered_rows, covered_cols = np.nonzero(out["label"] != 255)
    assert out["image"].shape == (32, 32, 3)
    assert set(covered_rows) == {16} and set(covered_cols) == set(range(32))


def test_composed_seed_keys_in_yaml_order():
    seed_yaml = {"gamma": 0.05, "hue": 0.05, "brightness": 0.2, "saturation": 0.2, "contrast": 0.2,
                 "translate": [4, 4], "rotate": 10, "hflip": 0.5, "vflip": 0.5, "scale": 80, "rsize": 56,
                 "rsizecrop": 48, "rcrop": [40, 44], "ccrop": [32, 32], "normalize": "imagenet"}
    compose = get_composed_augmentations(seed_yaml)
    assert [aug.key for aug in compose.augmentations] == list(seed_yaml)
    source = make_sample()
    first = compose(source, np.random.default_rng(4))
    assert samples_equal(first, compose(source, np.random.default_rng(4)))
    assert first["image"].shape == (32, 32, 3) and first["image"].dtype == np.float32
    assert set(np.unique(first["label"])) <= set(np.unique(source["label"])) | {255}
    assert get_composed_augmentations(None) is None and get_composed_augmentations({}) is None
    assert get_composed_augmentations({"normalize": "imagenet", "hflip": 0.5, "rcrop": 20}) is not None


@pytest.mark.parametrize(("aug_dict", "message"), [
    ({"normalize": "imagenet", "hue": 0.1}, "'hue' comes after 'normalize'"),
    ({"hflipp": 0.5}, "unknown augmentation 'hflipp'"),
    ({"hflip": 2}, "'hflip' must be a probability"),
    ([("hflip", 0.5)], "must be a mapping")])
def test_composed_rejects_bad_configs(aug_dict, message):
    with pytest.raises(PtsemsegError, match=message):
        get_composed_augmentations(aug_dict)


class PatternDataset(DenseDataset):
    def __len__(self):
        return 2

    def load(self, index):
        return make_sample()


def test_dataset_applies_the_training_pipeline():
    """rscalecrop + hflip + photometric + normalize through a dataset: tensors of the crop size, seeded per sample."""
    augmentations = get_composed_augmentations({"rscalecrop": {"scale": [0.5, 2.0], "size": [32, 48]}, "hflip": 0.5,
                                                "brightness": 0.2, "normalize": "imagenet"})
    dataset = PatternDataset(None, "train", augmentations=augmentations)
    first, again = dataset[(0, [3, 10])], dataset[(0, [3, 10])]
    assert first["image"].shape == (3, 32, 48) and first["label"].shape == (32, 48)
    assert first["label"].dtype == torch.int64
    expected = augmentations(make_sample(), np.random.default_rng([3, 10]))
    assert torch.equal(first["image"], torch.from_numpy(expected["image"].transpose(2, 0, 1)))
    for key in ("image", "hha", "label", "depth"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["image"], dataset[(0, [3, 11])]["image"])


def test_evaluation_splits_get_normalize_and_nothing_random():
    from ptsemseg.build import build_dataset
    from tests.conftest import tiny_config

    cfg = tiny_config(training={"augmentations": {"hflip": 1.0, "normalize": "imagenet"}})
    cfg["data"]["img_rows"], cfg["data"]["img_cols"] = 32, 48
    train = build_dataset(cfg, "val", ("image", "label"), augment=True)
    val = build_dataset(cfg, "val", ("image", "label"))
    plain = build_dataset(tiny_config(training={"augmentations": None}), "val", ("image", "label"))
    flipped, evaluated, raw = train[0]["image"], val[0]["image"], plain[0]["image"]
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    assert torch.allclose(evaluated, (raw - mean) / std, atol=1e-4)  # normalised as in training
    assert torch.allclose(flipped, evaluated.flip(-1), atol=1e-4)  # but not flipped
