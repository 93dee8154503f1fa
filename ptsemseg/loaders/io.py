"""File readers shared by the datasets: every failure names the file instead of yielding a blank sample."""
import os

import cv2
import numpy as np
import scipy.io

from ptsemseg.errors import PtsemsegError

README_DATASETS = "README.md#datasets"


class CorruptFileError(PtsemsegError):
    """An input file exists but cannot be decoded (truncated, wrong format)."""


def require_path(path, what, section):
    """Fail with the expected path and the README section on getting the data when `path` is missing."""
    if not os.path.exists(path):
        raise PtsemsegError(f"{what} not found: expected {path} (see {README_DATASETS}, section '{section}')")
    return path


def require_root(root, holding, what, section):
    """The dataset's `data.path`: when unset, a one-line error saying it should point at `holding`; when missing,
    require_path's."""
    if not root:
        raise PtsemsegError(f"data.path is not set: point it at {holding} (see {README_DATASETS}, section '{section}')")
    return require_path(root, what, section)


def _imread(path, flags):
    if not os.path.isfile(path):
        raise PtsemsegError(f"file not found: {path}")
    image = cv2.imread(path, flags)
    if image is None:
        raise CorruptFileError(f"cannot decode image {path} (corrupt or truncated?)")
    return image


def read_rgb(path):
    """H×W×3 uint8 RGB image."""
    image = _imread(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_gray(path):
    """H×W single-channel image with its stored bit depth (8-bit labels, 16-bit depth PNGs)."""
    image = _imread(path, cv2.IMREAD_UNCHANGED)
    if image.ndim != 2:
        raise CorruptFileError(f"expected a single-channel image, got shape {image.shape}: {path}")
    return image


def read_png16(path):
    """H×W uint16 PNG (depth and disparity maps), refusing 8-bit files that would lose metric depth."""
    image = read_gray(path)
    if image.dtype != np.uint16:
        raise CorruptFileError(f"expected a 16-bit PNG, got {image.dtype}: {path}")
    return image


def write_rgb_png_atomic(path, image):
    """Write an H×W×3 uint8 RGB array as PNG, atomically (a cache that workers may read while it is written)."""
    from ptsemseg.checkpoint import write_atomic

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise PtsemsegError(f"cannot encode {path} as PNG")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, lambda handle: handle.write(encoded.tobytes()))


def read_mat(path, names, required=None, **options):
    """The variables `names` of the MATLAB file `path` (scipy.io.loadmat with `options`) as a dict; a file that
    cannot be read or lacks one of `required` (default: every name) fails in one line naming it."""
    try:
        mat = scipy.io.loadmat(path, variable_names=list(names), **options)
    except (ValueError, OSError, NotImplementedError) as err:
        raise CorruptFileError(f"cannot read {path} ({type(err).__name__}: {err})") from None
    missing = [name for name in (names if required is None else required) if name not in mat]
    if missing:
        raise CorruptFileError(f"{path} has no '{missing[0]}' variable")
    return mat
