"""Depth-map helpers shared by the RGB-D datasets and tools: metric PNG codecs, back-projection,
surface normals, gravity estimation, HHA encoding and hole filling.

Conventions: depth is H×W float32 in metres with 0 = no measurement; camera coordinates are x right,
y down, z forward; `K` is the 3×3 pinhole matrix in pixel units with (0, 0) at the centre of the
top-left pixel.
"""
import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from ptsemseg.errors import PtsemsegError

# HHA constants of Gupta et al. (ECCV 2014) and their public MATLAB code: disparity = 31000 / depth in cm
# (depth clamped to at least 1 m), height in cm above the lowest point, angle in degrees shifted by 38.
HHA_DISPARITY_NUMERATOR_CM = 31000.0
HHA_MIN_DEPTH_M = 1.0
HHA_ANGLE_OFFSET_DEG = 128.0 - 90.0
# When the lowest point is less than 0.9 m below the camera the floor is not in view: assume 1.3 m.
HHA_FLOOR_VISIBLE_BELOW_M = 0.9
HHA_ASSUMED_CAMERA_HEIGHT_M = 1.3


def decode_sunrgbd_depth(raw):
    """Metres from a SUN RGB-D depth PNG: the 16 bits are rotated right by 3, then millimetres.

    This is the decoding of the official toolbox (read3dPoints.m) without its 8 m cap.
    """
    raw = np.asarray(raw, dtype=np.uint16)
    millimetres = (raw >> np.uint16(3)) | (raw << np.uint16(13))
    return millimetres.astype(np.float32) / 1000.0


def encode_sunrgbd_depth(depth):
    """Inverse of `decode_sunrgbd_depth` (metres -> the rotated 16-bit PNG values)."""
    millimetres = depth_to_mm(depth)
    return (millimetres << np.uint16(3)) | (millimetres >> np.uint16(13))


def depth_to_mm(depth):
    """Metres -> uint16 millimetres (lossless 16-bit PNG storage up to 65.535 m; 0 stays invalid)."""
    depth = np.nan_to_num(np.asarray(depth, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16)


def mm_to_depth(millimetres, scale=1000.0):
    """uint16 PNG values -> float32 metres (`scale` values per metre)."""
    return np.asarray(millimetres, dtype=np.float32) / np.float32(scale)


# Indoor RGB-D sensors measure up to about 10 m: a frame whose median depth lies beyond this was decoded
# with the wrong unit or encoding.
PLAUSIBLE_INDOOR_MEDIAN_M = 12.0


def median_depth(depth):
    """Median of the valid (> 0) depths of a map, 0 when it has none."""
    valid = np.asarray(depth)[np.asarray(depth) > 0]
    return float(np.median(valid)) if valid.size else 0.0


def scale_intrinsics(K, from_size, to_size):
    """Intrinsics for an image resized from (rows, cols) `from_size` to `to_size`."""
    K = np.array(K, dtype=np.float32)
    K[0] *= to_size[1] / from_size[1]
    K[1] *= to_size[0] / from_size[0]
    return K


def backproject(depth, K):
    """H×W×3 camera-frame points (metres) of every pixel; pixels without depth get (0, 0, 0)."""
    depth = np.asarray(depth, dtype=np.float32)
    rows, cols = depth.shape
    u = (np.arange(cols, dtype=np.float32) - K[0, 2]) / K[0, 0]
    v = (np.arange(rows, dtype=np.float32) - K[1, 2]) / K[1, 1]
    return np.stack([depth * u[None, :], depth * v[:, None], depth], axis=-1)


def project(points, K):
    """Pixel coordinates (N×2, column then row) of N×3 camera-frame points."""
    points = np.asarray(points, dtype=np.float64)
    uvw = points @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def surface_normals(depth, K, valid=None, radius=3):
    """Unit normals (H×W×3) from a least-squares plane fit in each (2·radius+1)² window.

    A plane a·x + b·y + c·z = 1 reads a·u + b·v + c = 1/z in normalised image coordinates (u, v), which
    is linear in (a, b, c); window sums come from box filters, so the whole image is solved at once.
    Normals point away from the camera; pixels whose window holds fewer than 3 valid points are NaN.
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = depth > 0 if valid is None else (np.asarray(valid, dtype=bool) & (depth > 0))
    rows, cols = depth.shape
    u = np.broadcast_to((np.arange(cols) - K[0, 2]) / K[0, 0], (rows, cols))
    v = np.broadcast_to(((np.arange(rows) - K[1, 2]) / K[1, 1])[:, None], (rows, cols))
    one = valid.astype(np.float64)
    inverse_depth = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0)
    u, v = u * one, v * one
    terms = [u * u, u * v, u, v * v, v, one, u * inverse_depth, v * inverse_depth, inverse_depth]
    size = (2 * radius + 1, 2 * radius + 1)
    sums = [cv2.boxFilter(term, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT) for term in terms]
    uu, uv, us, vv, vs, count, ur, vr, rs = sums
    normal_matrix = np.stack([np.stack([uu, uv, us], -1), np.stack([uv, vv, vs], -1),
                              np.stack([us, vs, count], -1)], -2)
    rhs = np.stack([ur, vr, rs], -1)
    solvable = (count >= 3) & (np.abs(np.linalg.det(normal_matrix)) > 1e-12 * np.maximum(count, 1) ** 3)
    normals = np.full((rows, cols, 3), np.nan)
    normals[solvable] = np.linalg.solve(normal_matrix[solvable], rhs[solvable][..., None])[..., 0]
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    return normals.astype(np.float32)


def estimate_gravity(normals, thresholds_deg=(45.0, 15.0), iterations=(5, 5), initial=(0.0, 1.0, 0.0)):
    """Unit 'down' vector in camera coordinates, estimated from surface normals.

    Gupta et al.'s scheme: starting from `initial` (the camera's y axis, i.e. a level camera), repeatedly
    pick the normals nearly parallel to the current estimate (floors, ceilings, table tops) and those
    nearly perpendicular to it (walls), and take the direction that best aligns with the first set while
    being orthogonal to the second: the eigenvector of the smallest eigenvalue of
    sum(n nᵀ, perpendicular) − sum(n nᵀ, parallel). The threshold tightens from 45° to 15°.
    """
    flat = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    flat = flat[np.isfinite(flat).all(axis=1)]
    gravity = np.asarray(initial, dtype=np.float64)
    gravity /= np.linalg.norm(gravity)
    for threshold, steps in zip(thresholds_deg, iterations):
        angle = np.deg2rad(threshold)
        for _ in range(steps):
            cosine = flat @ gravity
            parallel = flat[np.abs(cosine) > np.cos(angle)]
            perpendicular = flat[np.abs(cosine) < np.sin(angle)]
            if len(parallel) == 0 and len(perpendicular) == 0:
                return gravity
            scatter = perpendicular.T @ perpendicular - parallel.T @ parallel
            _, vectors = np.linalg.eigh(scatter)
            candidate = vectors[:, 0]
            gravity = candidate * np.sign(candidate @ gravity or 1.0)
    return gravity


def hha_encode(depth, K, valid=None, gravity=None, normal_radius=3, gravity_radius=10):
    """HHA image (H×W×3 uint8: horizontal disparity, height above ground, angle with gravity).

    `depth` should be hole-filled (points, disparity and height use it everywhere); `valid` marks the
    measured pixels used for normals (default: depth > 0). Gravity is estimated from the normals of
    larger windows unless given (a 'down' vector in camera coordinates). Height is measured from the
    lowest point, or from 1.3 m below the camera when nothing lies 0.9 m below it. Pixels without a
    normal get an angle of 180° (what the reference MATLAB code produces); pixels without depth are 0.
    """
    depth = np.asarray(depth, dtype=np.float32)
    K = np.asarray(K, dtype=np.float64)
    has_depth = depth > 0
    if not has_depth.any():
        return np.zeros(depth.shape + (3,), dtype=np.uint8)
    valid = has_depth if valid is None else (np.asarray(valid, dtype=bool) & has_depth)
    normals = surface_normals(depth, K, valid, normal_radius)
    if gravity is None:
        gravity = estimate_gravity(surface_normals(depth, K, valid, gravity_radius))
    gravity = np.asarray(gravity, dtype=np.float64)
    gravity /= np.linalg.norm(gravity)

    points = backproject(depth, K).astype(np.float64)
    height = -(points @ gravity)
    floor = height[has_depth].min()
    if floor > -HHA_FLOOR_VISIBLE_BELOW_M:
        floor = -HHA_ASSUMED_CAMERA_HEIGHT_M
    cosine = np.clip(normals.astype(np.float64) @ gravity, -1.0, 1.0)
    angle = np.nan_to_num(np.degrees(np.arccos(cosine)), nan=180.0)
    disparity = HHA_DISPARITY_NUMERATOR_CM / (100.0 * np.maximum(depth, HHA_MIN_DEPTH_M))

    channels = np.stack([disparity, 100.0 * (height - floor), angle + HHA_ANGLE_OFFSET_DEG], axis=-1)
    hha = np.clip(np.rint(channels), 0, 255).astype(np.uint8)
    hha[~has_depth] = 0
    return hha


def fill_depth_inpaint(depth, radius=5, algorithm="telea"):
    """Fill pixels without depth by OpenCV inpainting (Telea's fast marching or Navier-Stokes).

    The depth is inpainted as uint16 millimetres (OpenCV's float path of Telea's method is unreliable).
    """
    flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
    if algorithm not in flags:
        raise PtsemsegError(f"inpainting algorithm must be one of {sorted(flags)}, got '{algorithm}'")
    depth = np.asarray(depth, dtype=np.float32)
    holes = (depth <= 0).astype(np.uint8)
    if not holes.any() or holes.all():
        return depth.copy()
    filled = cv2.inpaint(depth_to_mm(depth), holes, radius, flags[algorithm])
    return np.where(holes, mm_to_depth(filled), depth)


def fill_depth_colorization(depth, image, weight=1.0, window=1):
    """Fill pixels without depth by Levin et al.'s colorization, guided by the RGB image.

    This is the scheme the NYUv2 toolbox (fill_depth_colorization.m) used to make the labeled set's
    filled `depths`: every pixel's depth is the affinity-weighted average of its neighbours, where the
    affinity is a Gaussian of the grey-level difference scaled by the local variance, and measured
    pixels are tied to their value with `weight`. One sparse linear solve per image.
    """
    depth = np.asarray(depth, dtype=np.float64)
    rows, cols = depth.shape
    if image.shape[:2] != depth.shape:
        raise PtsemsegError(f"image {image.shape[:2]} and depth {depth.shape} sizes differ")
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64) / 255.0 if image.ndim == 3 \
        else image.astype(np.float64) / 255.0
    known = depth > 0
    if known.all() or not known.any():
        return depth.astype(np.float32)
    max_depth = depth[known].max()
    index = np.arange(rows * cols).reshape(rows, cols)

    # Neighbour offsets of the (2·window+1)² patch, excluding the centre.
    offsets = [(dy, dx) for dy in range(-window, window + 1) for dx in range(-window, window + 1) if dy or dx]
    padded = np.pad(gray, window, mode="constant", constant_values=np.nan)
    neighbours = np.stack([padded[window + dy:window + dy + rows, window + dx:window + dx + cols]
                           for dy, dx in offsets], axis=0)
    present = np.isfinite(neighbours)
    patch = np.concatenate([neighbours, gray[None]], axis=0)
    variance = np.nanvar(patch, axis=0)
    differences = np.nanmin(np.where(present, (neighbours - gray[None]) ** 2, np.inf), axis=0)
    sigma = np.maximum(np.maximum(variance * 0.6, -differences / np.log(0.01)), 2e-6)
    affinity = np.where(present, np.exp(-np.nan_to_num((neighbours - gray[None]) ** 2) / sigma[None]), 0.0)
    affinity /= np.maximum(affinity.sum(axis=0, keepdims=True), 1e-12)

    padded_index = np.pad(index, window, mode="constant", constant_values=-1)
    columns = np.stack([padded_index[window + dy:window + dy + rows, window + dx:window + dx + cols]
                        for dy, dx in offsets], axis=0)
    keep = present & (columns >= 0)
    rows_idx = np.broadcast_to(index[None], columns.shape)[keep]
    smoothness = scipy.sparse.csr_matrix((-affinity[keep], (rows_idx, columns[keep])), shape=(rows * cols,) * 2)
    system = scipy.sparse.identity(rows * cols, format="csr") + smoothness
    data_term = weight * known.ravel().astype(np.float64)
    system = system + scipy.sparse.diags(data_term)
    rhs = data_term * (depth.ravel() / max_depth)
    solution = scipy.sparse.linalg.spsolve(system.tocsc(), rhs)
    filled = np.clip(solution.reshape(rows, cols), 0, None) * max_depth
    return filled.astype(np.float32)


def fill_depth(depth, method="inpaint", image=None, **kwargs):
    """Dispatch to `fill_depth_inpaint` (method 'inpaint') or `fill_depth_colorization` ('colorization')."""
    if method == "inpaint":
        return fill_depth_inpaint(depth, **kwargs)
    if method == "colorization":
        if image is None:
            raise PtsemsegError("depth filling by colorization needs the RGB image")
        return fill_depth_colorization(depth, image, **kwargs)
    raise PtsemsegError(f"depth filling method must be 'inpaint' or 'colorization', got '{method}'")
