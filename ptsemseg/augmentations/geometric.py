"""Geometric augmentations: every per-pixel key moves with the image and `meta["K"]` follows.

Each key is resampled with the interpolation and padded with the fill of its schema entry (ptsemseg/schema.py):
`image` and `hha` bilinearly with 0; `label`, `depth` and `raw_depth` with nearest neighbour and 255 (ignore) or
0 (invalid), so a label or depth value is never blended or invented; vector fields also turn their values with
flips and rotations. Resampling follows cv2.resize's pixel-centre convention (a source pixel x lands at
s·(x + 0.5) − 0.5), which keeps image, labels, depth and intrinsics aligned; it is done with one affine warp that
computes only the output window, so a scale-up followed by a crop costs no more than the crop. Depth values are
never rescaled: the updated intrinsics describe the new view of the same 3D points.
"""
import math

import cv2
import numpy as np

from ptsemseg.augmentations import Augmentation, augmentation, is_integer
from ptsemseg.schema import VECTOR, key_spec, spatial_keys, spatial_size


def _with_intrinsics(out, sample, update):
    """Put update(K) into a copy of `meta` when the sample carries intrinsics."""
    meta = sample.get("meta")
    if isinstance(meta, dict) and meta.get("K") is not None:
        meta = dict(meta)
        meta["K"] = update(np.array(meta["K"], dtype=np.float64)).astype(np.float32)
        out["meta"] = meta
    return out


def _affine_intrinsics(scale_x, scale_y, shift_x, shift_y):
    """K -> A·K for the pixel map A: (x, y) -> (scale_x·x + shift_x, scale_y·y + shift_y)."""
    pixel_map = np.array([[scale_x, 0, shift_x], [0, scale_y, shift_y], [0, 0, 1]], dtype=np.float64)
    return lambda K: pixel_map @ K


def _overlap(start, size, length):
    """The part [low, high) of [0, length) covered by the window [start, start + size)."""
    low = min(max(start, 0), length)
    return low, max(min(start + size, length), low)


def crop_window(sample, top, left, height, width):
    """The height×width window whose corner is pixel (top, left); where it leaves the image each key gets its fill."""
    rows, cols = spatial_size(sample)
    y0, y1 = _overlap(top, height, rows)
    x0, x1 = _overlap(left, width, cols)
    out = dict(sample)
    for key in spatial_keys(sample):
        array = sample[key]
        if (y1 - y0, x1 - x0) == (height, width):
            out[key] = array[y0:y1, x0:x1].copy()
        else:
            window = np.full((height, width) + array.shape[2:], key_spec(key).fill, dtype=array.dtype)
            window[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
            out[key] = window
    return _with_intrinsics(out, sample, _affine_intrinsics(1, 1, -left, -top))


def _footprint(scale, shift, length, size):
    """Output range [start, stop) whose source coordinate (x' − shift) / scale lies in [−0.5, length − 0.5)."""
    start = math.ceil(shift - 0.5 * scale)
    stop = math.ceil(shift + scale * (length - 0.5))
    return min(max(start, 0), size), min(max(stop, 0), size)


def resample(sample, scale_x, scale_y, shift_x, shift_y, height, width):
    """Move each source pixel centre (x, y) to (scale_x·x + shift_x, scale_y·y + shift_y) in a height×width output.

    Output pixels whose nearest source pixel lies outside the image get each key's fill (the same pixels for
    every key); an integer shift without scaling is an exact crop.
    """
    if scale_x == scale_y == 1 and float(shift_x).is_integer() and float(shift_y).is_integer():
        return crop_window(sample, -int(shift_y), -int(shift_x), height, width)
    rows, cols = spatial_size(sample)
    matrix = np.array([[scale_x, 0, shift_x], [0, scale_y, shift_y]], dtype=np.float64)
    top, bottom = _footprint(scale_y, shift_y, rows, height)
    left, right = _footprint(scale_x, shift_x, cols, width)
    out = dict(sample)
    for key in spatial_keys(sample):
        warped = cv2.warpAffine(sample[key], matrix, (width, height), flags=key_spec(key).interpolation,
                                borderMode=cv2.BORDER_REPLICATE)
        fill = key_spec(key).fill
        warped[:top] = fill
        warped[bottom:] = fill
        warped[:, :left] = fill
        warped[:, right:] = fill
        out[key] = warped
    return _with_intrinsics(out, sample, _affine_intrinsics(scale_x, scale_y, shift_x, shift_y))


def resize_crop(sample, scaled_height, scaled_width, top, left, height, width):
    """Resize to scaled_height×scaled_width (as cv2.resize would), then cut the height×width window at (top, left)."""
    rows, cols = spatial_size(sample)
    scale_y, scale_x = scaled_height / rows, scaled_width / cols
    return resample(sample, scale_x, scale_y, 0.5 * scale_x - 0.5 - left, 0.5 * scale_y - 0.5 - top, height, width)


def _turn_vectors(out, linear):
    """Map the x, y components (channels 0 and 1) of the vector fields of `out`, arrays the caller has just made,
    in place by the 2×2 matrix `linear`."""
    for key in spatial_keys(out):
        if key_spec(key).motion == VECTOR:
            field = out[key]
            x, y = field[..., 0].copy(), field[..., 1].copy()
            field[..., 0] = linear[0][0] * x + linear[0][1] * y
            field[..., 1] = linear[1][0] * x + linear[1][1] * y
    return out


def flip(sample, horizontal):
    """Mirror every spatial key; K becomes the intrinsics of the mirrored scene (fx, fy stay positive) and vector
    fields the directions of the mirrored scene (x negated for a left-right mirror, y for an up-down one)."""
    rows, cols = spatial_size(sample)
    out = dict(sample)
    for key in spatial_keys(sample):
        out[key] = cv2.flip(sample[key], 1 if horizontal else 0)
    axis = 0 if horizontal else 1
    _turn_vectors(out, np.diag([-1.0, 1.0]) if horizontal else np.diag([1.0, -1.0]))
    pixel_map = np.eye(3)
    pixel_map[axis, axis], pixel_map[axis, 2] = -1, (cols if horizontal else rows) - 1
    world_mirror = np.eye(3)
    world_mirror[axis, axis] = -1
    return _with_intrinsics(out, sample, lambda K: pixel_map @ K @ world_mirror)


def random_offset(rng, length, window):
    """Start of a window on an axis: inside the image when it fits, else placing the image inside the window."""
    low, high = sorted((0, length - window))
    return int(rng.integers(low, high, endpoint=True))


def fit_longer_side(rows, cols, side):
    """The seed's Scale: the size whose longer side is `side`, aspect kept (shorter side truncated)."""
    if cols >= rows:
        return max(1, int(side * rows / cols)), side
    return side, max(1, int(side * cols / rows))


@augmentation("rcrop")
class RandomCrop(Augmentation):
    """rcrop: [h, w] (or s for s×s) — a random h×w window.

    Where the image is smaller than the window it is padded (image 0, label 255, depth 0) at a random position
    instead of being resized up as in the seed, so pixels keep their scale and K stays a pure shift.
    """

    def __init__(self, value):
        self.height, self.width = self.size(value)

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        top = random_offset(rng, rows, self.height)
        left = random_offset(rng, cols, self.width)
        return crop_window(sample, top, left, self.height, self.width)


@augmentation("ccrop")
class CenterCrop(Augmentation):
    """ccrop: [h, w] (or s for s×s) — the centred h×w window, corner at floor((H − h) / 2), floor((W − w) / 2).

    A smaller image is padded evenly (the odd pixel at the bottom/right).
    """

    def __init__(self, value):
        self.height, self.width = self.size(value)

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        return crop_window(sample, (rows - self.height) // 2, (cols - self.width) // 2, self.height, self.width)


@augmentation("translate")
class RandomTranslate(Augmentation):
    """translate: [dx, dy] (or d for both) — shift by integers drawn uniformly from [−dx, dx] and [−dy, dy].

    The order is (x, y) as in the seed's code. Uncovered pixels get the fills image 0 (the seed reflected the
    image), label 255 (the seed used 250) and depth 0; K's principal point moves with the content.
    """

    def __init__(self, value):
        if is_integer(value) and value >= 0:
            value = [value, value]
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_integer(v) and v >= 0 for v in value)):
            raise self.invalid("[dx, dy] or d of integers >= 0", value)
        self.max_x, self.max_y = int(value[0]), int(value[1])

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        shift_x = int(rng.integers(-self.max_x, self.max_x, endpoint=True))
        shift_y = int(rng.integers(-self.max_y, self.max_y, endpoint=True))
        return crop_window(sample, -shift_y, -shift_x, rows, cols)


@augmentation("rotate")
class RandomRotate(Augmentation):
    """rotate: d — rotation by U(−d, d) degrees (positive: counter-clockwise), 0 ≤ d ≤ 180.

    Fills: image 0, label 255 (the seed used 250), depth 0. With intrinsics the rotation turns about the
    principal point, which is the view of the camera rolled about its optical axis, so K stays valid (exactly
    when fx = fy); without them it turns about the image centre. Vector fields turn their (x, y) by the angle.
    """

    def __init__(self, value):
        self.max_angle = self.number(value, 0, 180, "a number of degrees in [0, 180]")

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        angle = rng.uniform(-self.max_angle, self.max_angle)
        K = (sample.get("meta") or {}).get("K")
        center = (float(K[0][2]), float(K[1][2])) if K is not None else ((cols - 1) / 2, (rows - 1) / 2)
        matrix = cv2.getRotationMatrix2D(center, angle, 1.0)
        out = dict(sample)
        for key in spatial_keys(sample):
            out[key] = cv2.warpAffine(sample[key], matrix, (cols, rows), flags=key_spec(key).interpolation,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=(key_spec(key).fill,) * 4)
        return _turn_vectors(out, matrix[:, :2])


@augmentation("scale")
class Scale(Augmentation):
    """scale: s or [h, w] — resize (not random).

    An integer s is the seed's meaning: longer side s, aspect kept. [h, w] (what the seed's README promised)
    resizes to exactly h×w.
    """

    def __init__(self, value):
        if is_integer(value) and value > 0:
            self.side, self.target = int(value), None
        else:
            self.side, self.target = None, self.size(value)

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        height, width = self.target or fit_longer_side(rows, cols, self.side)
        return resize_crop(sample, height, width, 0, 0, height, width)


class RandomFlip(Augmentation):
    """Mirror with probability p."""

    horizontal = True

    def __init__(self, value):
        self.probability = self.number(value, 0, 1, "a probability in [0, 1]")

    def __call__(self, sample, rng):
        if rng.random() < self.probability:
            return flip(sample, self.horizontal)
        return dict(sample)


@augmentation("hflip")
class RandomHorizontalFlip(RandomFlip):
    """hflip: p — left-right mirror with probability p; K's cx becomes W − 1 − cx."""


@augmentation("vflip")
class RandomVerticalFlip(RandomFlip):
    """vflip: p — up-down mirror with probability p; K's cy becomes H − 1 − cy."""

    horizontal = False


@augmentation("rsize")
class RandomSized(Augmentation):
    """rsize: s — the seed's RandomSized: width and height scaled by independent U(0.5, 2), then resized so the
    longer side is s, then a random s×s crop, done as one resampling.

    The shorter side, now below s, is padded at a random position (the seed's crop resized it up to s instead).
    """

    def __init__(self, value):
        if not (is_integer(value) and value > 0):
            raise self.invalid("a positive integer", value)
        self.side = int(value)

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        stretched_cols = max(1, int(rng.uniform(0.5, 2) * cols))
        stretched_rows = max(1, int(rng.uniform(0.5, 2) * rows))
        height, width = fit_longer_side(stretched_rows, stretched_cols, self.side)
        top = random_offset(rng, height, self.side)
        left = random_offset(rng, width, self.side)
        return resize_crop(sample, height, width, top, left, self.side, self.side)


@augmentation("rsizecrop")
class RandomSizedCrop(Augmentation):
    """rsizecrop: s or [h, w] — the seed's RandomSizedCrop: a random box of U(0.45, 1) of the area and aspect
    U(0.5, 2) (width and height swapped with probability 1/2) resized to h×w.

    After 10 boxes that do not fit, the image is resized to fit inside h×w (aspect kept) and centred with padding,
    which for s×s is the seed's fallback Scale(s) + CenterCrop(s).
    """

    attempts = 10

    def __init__(self, value):
        self.height, self.width = self.size(value)

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        for _ in range(self.attempts):
            area = rng.uniform(0.45, 1.0) * rows * cols
            aspect = rng.uniform(0.5, 2)
            box_width, box_height = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if rng.random() < 0.5:
                box_width, box_height = box_height, box_width
            if box_width <= cols and box_height <= rows:
                top = int(rng.integers(0, rows - box_height, endpoint=True))
                left = int(rng.integers(0, cols - box_width, endpoint=True))
                scale_x, scale_y = self.width / box_width, self.height / box_height
                return resample(sample, scale_x, scale_y, scale_x * (0.5 - left) - 0.5,
                                scale_y * (0.5 - top) - 0.5, self.height, self.width)
        factor = min(self.height / rows, self.width / cols)
        height, width = max(1, round(rows * factor)), max(1, round(cols * factor))
        return resize_crop(sample, height, width, (height - self.height) // 2, (width - self.width) // 2,
                           self.height, self.width)


@augmentation("rscalecrop")
class RandomScaleCrop(Augmentation):
    """rscalecrop: {scale: [lo, hi], size: [h, w] or s} — resize by U(lo, hi), then a random h×w window.

    The DeepLab / SA-Gate training recipe. Where the scaled image is smaller than the window it is padded
    (image 0, label 255, depth 0) at a random position. Only the window is computed.
    """

    def __init__(self, value):
        if not isinstance(value, dict) or set(value) != {"scale", "size"}:
            raise self.invalid("a mapping {scale: [lo, hi], size: [h, w]}", value)
        scale = value["scale"]
        if not (isinstance(scale, (list, tuple)) and len(scale) == 2):
            raise self.invalid("[lo, hi] with 0 < lo <= hi", scale, "scale")
        self.low = self.number(scale[0], 1e-3, 1e3, "[lo, hi] with 0 < lo <= hi", "scale")
        self.high = self.number(scale[1], self.low, 1e3, "[lo, hi] with 0 < lo <= hi", "scale")
        self.height, self.width = self.size(value["size"], "size")

    def __call__(self, sample, rng):
        rows, cols = spatial_size(sample)
        factor = rng.uniform(self.low, self.high)
        scaled_rows, scaled_cols = max(1, round(rows * factor)), max(1, round(cols * factor))
        top = random_offset(rng, scaled_rows, self.height)
        left = random_offset(rng, scaled_cols, self.width)
        return resize_crop(sample, scaled_rows, scaled_cols, top, left, self.height, self.width)
