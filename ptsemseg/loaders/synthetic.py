"""Built-in procedural indoor RGB-D scenes, ray cast in NumPy, so every part of the zoo runs with no download.

Each item is a box-shaped room (floor, four walls, ceiling) seen by a pinhole camera with a random pose, with
2 to 6 boxes (turned about the vertical), spheres and vertical cylinders resting on the floor in front of the
camera. A point light gives Lambertian shading with cast shadows; every surface gets a random colour pair and
a random texture (flat, stripes, checker or smooth noise) drawn from the same distribution whatever its class,
so a pixel's colour says little about its class and models have to use shape and context.

World frame: x, y span the floor (metres), z points up, the floor is z = 0. Camera frame: x right, y down,
z forward; `depth` is the z coordinate of the visible point in the camera frame (what depth sensors give) and
`normals` the unit normal of the visible surface in the camera frame (pointing towards the camera).
"""
import dataclasses
import math
import os

import cv2
import numpy as np

from ptsemseg.depth_utils import hha_encode
from ptsemseg.errors import PtsemsegError
from ptsemseg.loaders import DATASETS
from ptsemseg.loaders.base import DenseDataset
from ptsemseg.loaders.io import read_rgb, write_rgb_png_atomic

CLASS_NAMES = ("floor", "wall", "ceiling", "box", "sphere", "cylinder")
FLOOR, WALL, CEILING, BOX, SPHERE, CYLINDER = range(6)
SCENE_NAMES = ("small_room", "large_room", "corridor")
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 2000, "val": 200, "test": 200}
FOCAL_PER_WIDTH = 0.8125  # focal length / image width at the native size: a 63° horizontal field of view

# Surface ids: 0 floor, 1 ceiling, 2..5 the walls x = 0, x = width, y = 0, y = length, then one per object.
ROOM_CLASSES = (FLOOR, CEILING, WALL, WALL, WALL, WALL)
ROOM_NORMALS = ((0, 0, 1), (0, 0, -1), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0))
N_ROOM_SURFACES = 6
TILE = 64  # texture tile side in texels; tiles repeat over each surface
EPS = 1e-4


class Box:
    """Box on the floor: centre (x, y), half extents (ex, ey), height h, turned by `angle` about the vertical."""

    label = BOX

    def __init__(self, x, y, ex, ey, h, angle):
        self.x, self.y, self.ex, self.ey, self.h = float(x), float(y), float(ex), float(ey), float(h)
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.radius = math.hypot(ex, ey)

    def _local(self, px, py):
        rx, ry = px - self.x, py - self.y
        return self.cos * rx + self.sin * ry, self.cos * ry - self.sin * rx

    def intersect(self, ox, oy, oz, dx, dy, dz):
        """Ray parameter of the first hit of o + t·d (slab method in the box frame), inf where missed."""
        lox, loy = self._local(ox, oy)
        ldx, ldy = self.cos * dx + self.sin * dy, self.cos * dy - self.sin * dx
        near, far = None, None
        for lo, ld, low, high in ((lox, ldx, -self.ex, self.ex), (loy, ldy, -self.ey, self.ey), (oz, dz, 0.0, self.h)):
            t1, t2 = (low - lo) / ld, (high - lo) / ld
            lower, upper = np.fmin(t1, t2), np.fmax(t1, t2)
            near = lower if near is None else np.fmax(near, lower)
            far = upper if far is None else np.fmin(far, upper)
        return np.where((near <= far) & (near > EPS), near, np.inf)

    def surface(self, px, py, pz):
        """World normal and texture coordinates (metres) of surface points: the face nearest to each point."""
        lx, ly = self._local(px, py)
        gap_x, gap_y, gap_z = self.ex - np.abs(lx), self.ey - np.abs(ly), self.h - pz
        on_x = (gap_x <= gap_y) & (gap_x <= gap_z)
        on_y = ~on_x & (gap_y <= gap_z)
        on_top = ~on_x & ~on_y
        nlx, nly = np.where(on_x, np.sign(lx), 0.0), np.where(on_y, np.sign(ly), 0.0)
        nx, ny = self.cos * nlx - self.sin * nly, self.sin * nlx + self.cos * nly
        u = np.where(on_x, ly, lx)
        v = np.where(on_top, ly, pz)
        return nx, ny, on_top.astype(np.float32), u, v

    def corners(self):
        """The 8 corners of the box, (8, 3) world coordinates."""
        sx = np.array([-1, 1, 1, -1]) * self.ex
        sy = np.array([-1, -1, 1, 1]) * self.ey
        x = self.x + self.cos * sx - self.sin * sy
        y = self.y + self.sin * sx + self.cos * sy
        return np.stack([np.tile(x, 2), np.tile(y, 2), np.repeat([0.0, self.h], 4)], axis=1)


class Cylinder:
    """Vertical cylinder standing on the floor: axis at (x, y), radius r, height h."""

    label = CYLINDER

    def __init__(self, x, y, r, h):
        self.x, self.y, self.r, self.h = float(x), float(y), float(r), float(h)
        self.radius = self.r

    def intersect(self, ox, oy, oz, dx, dy, dz):
        """First hit on the side or the top disc, inf where missed."""
        rx, ry = ox - self.x, oy - self.y
        a = dx * dx + dy * dy
        half_b = rx * dx + ry * dy
        disc = half_b * half_b - a * (rx * rx + ry * ry - self.r * self.r)
        t_side = (-half_b - np.sqrt(np.maximum(disc, 0.0))) / a
        z_side = oz + t_side * dz
        t = np.where((disc >= 0) & (t_side > EPS) & (z_side >= 0) & (z_side <= self.h), t_side, np.inf)
        t_top = (self.h - oz) / dz
        qx, qy = rx + t_top * dx, ry + t_top * dy
        on_top = (t_top > EPS) & (qx * qx + qy * qy <= self.r * self.r)
        return np.where(on_top, np.fmin(t, t_top), t)

    def surface(self, px, py, pz):
        rx, ry = px - self.x, py - self.y
        radial = np.sqrt(rx * rx + ry * ry)
        on_top = (self.h - pz) < (self.r - radial)
        inv = 1.0 / np.maximum(radial, 1e-6)
        nx, ny = np.where(on_top, 0.0, rx * inv), np.where(on_top, 0.0, ry * inv)
        u = np.where(on_top, rx, np.arctan2(ry, rx) * self.r)
        v = np.where(on_top, ry, pz)
        return nx, ny, on_top.astype(np.float32), u, v

    def corners(self):
        return _box_corners(self.x, self.y, self.r, self.h)


class Sphere:
    """Sphere resting on the floor: centre (x, y, r), radius r."""

    label = SPHERE

    def __init__(self, x, y, r):
        self.x, self.y, self.r = float(x), float(y), float(r)
        self.h = 2 * self.r
        self.radius = self.r

    def intersect(self, ox, oy, oz, dx, dy, dz):
        rx, ry, rz = ox - self.x, oy - self.y, oz - self.r
        a = dx * dx + dy * dy + dz * dz
        half_b = rx * dx + ry * dy + rz * dz
        disc = half_b * half_b - a * (rx * rx + ry * ry + rz * rz - self.r * self.r)
        t = (-half_b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > EPS), t, np.inf)

    def surface(self, px, py, pz):
        inv = 1.0 / self.r
        nx, ny, nz = (px - self.x) * inv, (py - self.y) * inv, (pz - self.r) * inv
        u = np.arctan2(ny, nx) * self.r
        v = np.arcsin(np.clip(nz, -1.0, 1.0)) * self.r
        return nx, ny, nz, u, v

    def corners(self):
        return _box_corners(self.x, self.y, self.r, self.h)


def _box_corners(x, y, r, h):
    """Corners of the upright square prism of half side r and height h around (x, y)."""
    return np.array([[x + sx * r, y + sy * r, z] for z in (0.0, h) for sx in (-1, 1) for sy in (-1, 1)])


@dataclasses.dataclass
class Scene:
    """Everything drawn for one item, independent of the rendering size (world frame, metres)."""

    kind: int  # index into SCENE_NAMES
    room: tuple  # (width along x, length along y, height)
    position: np.ndarray  # camera centre
    rotation: np.ndarray  # 3x3 world-from-camera: columns are the camera's x, y, z axes
    light: np.ndarray  # point light position
    objects: list
    tiles: np.ndarray  # (n_surfaces, TILE, TILE, 3) float32 albedo, one per surface id
    texel_scales: np.ndarray  # texels per metre, per surface id
    ambient: float
    light_power: float
    light_reach: float  # distance at which the light's fall-off halves it


def _rotation(yaw, pitch, roll):
    """World-from-camera rotation for a camera looking along `yaw`, tilted down by `pitch`, rolled by `roll`."""
    forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    right, down = math.cos(roll) * right + math.sin(roll) * down, math.cos(roll) * down - math.sin(roll) * right
    return np.stack([right, down, forward], axis=1)


def _project(points, position, rotation, half_fov_tan):
    """Image coordinates of world points scaled to [-1, 1] across the field of view, and their camera z."""
    cam = (points - position) @ rotation
    z = cam[..., 2]
    return cam[..., 0] / z / half_fov_tan[0], cam[..., 1] / z / half_fov_tan[1], z


def _draw_room(rng, kind):
    """Room size (x, y, z extents in metres) and camera position and yaw for a scene kind."""
    if kind == 2:  # corridor: narrow and long; the camera stands near one end and looks down it
        width, length = rng.uniform(1.8, 2.6), rng.uniform(7.0, 12.0)
        height = rng.uniform(2.3, 2.8)
        cam_x, cam_y = rng.uniform(0.5, width - 0.5), rng.uniform(0.3, 1.5)
        yaw = math.pi / 2 + rng.uniform(-0.25, 0.25)
        if rng.random() < 0.5:  # run the corridor along x instead
            width, length, cam_x, cam_y, yaw = length, width, cam_y, cam_x, yaw - math.pi / 2
        return (width, length, height), (cam_x, cam_y), yaw
    low, high = ((3.0, 4.5), (5.0, 8.0))[kind]
    width, length = rng.uniform(low, high, size=2)
    height = rng.uniform(2.4, 2.8) if kind == 0 else rng.uniform(2.6, 3.4)
    # stand in an outer third of the room, like someone by a corner or a wall, and look across it
    cam = rng.uniform(0.3, [width / 3, length / 3])
    cam = np.where(rng.random(2) < 0.5, cam, [width, length] - cam)
    targets = rng.uniform([0.3, 0.3], [width - 0.3, length - 0.3], size=(4, 2))
    target = targets[np.argmax(np.linalg.norm(targets - cam, axis=1))]
    yaw = math.atan2(target[1] - cam[1], target[0] - cam[0]) + rng.uniform(-0.2, 0.2)
    return (width, length, height), tuple(cam), yaw


def _place_objects(rng, room, position, rotation, half_fov_tan):
    """2 to 6 non-overlapping objects on the floor, each with its centre well inside the camera's view."""
    width, length, _ = room
    yaw = math.atan2(rotation[1, 2], rotation[0, 2])
    objects = []
    for _ in range(rng.integers(2, 7)):
        kind = rng.integers(3)
        for shrink in (1.0, 0.7, 0.5, 0.35):
            if kind == 0:
                ex, ey = rng.uniform(0.15, 0.6, size=2) * shrink
                height, radius = rng.uniform(0.25, 1.2) * shrink, math.hypot(ex, ey)
            elif kind == 1:
                radius = rng.uniform(0.15, 0.45) * shrink
                height = 2 * radius
            else:
                radius, height = rng.uniform(0.1, 0.4) * shrink, rng.uniform(0.3, 1.4) * shrink
            bearing = yaw + rng.uniform(-1.0, 1.0, size=64) * math.atan(half_fov_tan[0])
            distance = rng.uniform(radius + 0.8, 7.0, size=64)
            x, y = position[0] + distance * np.cos(bearing), position[1] + distance * np.sin(bearing)
            ok = (x > radius + 0.05) & (x < width - radius - 0.05) & (y > radius + 0.05) & (y < length - radius - 0.05)
            for other in objects:
                ok &= np.hypot(x - other.x, y - other.y) > radius + other.radius + 0.05
            centres = np.stack([x, y, np.full_like(x, height / 2)], axis=1)
            u, v, z = _project(centres, position, rotation, half_fov_tan)
            ok &= (z > 0) & (np.abs(u) < 0.85) & (np.abs(v) < 0.85)
            if ok.any():
                i = int(np.argmax(ok))
                if kind == 0:
                    objects.append(Box(x[i], y[i], ex, ey, height, rng.uniform(0, math.pi / 2)))
                elif kind == 1:
                    objects.append(Sphere(x[i], y[i], radius))
                else:
                    objects.append(Cylinder(x[i], y[i], radius, height))
                break
    return objects


DIRECTIONS = np.array([(1, 0), (0, 1), (1, 1), (1, -1), (2, 1), (1, 2), (2, -1), (1, -2)])  # periodic in a tile
_TEXELS = np.arange(TILE, dtype=np.float32) / TILE
_FREQUENCIES = np.hypot(*np.meshgrid(np.fft.rfftfreq(TILE, 1 / TILE), np.fft.fftfreq(TILE, 1 / TILE)))


def _smooth_noise(rng, cycles):
    """Periodic noise tiles in [0, 1], one per entry of `cycles` (detail up to about that many periods per tile)."""
    white = rng.random((len(cycles), TILE, TILE), dtype=np.float32)
    lowpass = np.exp(-((_FREQUENCIES / cycles[:, None, None]) ** 2))
    field = np.fft.irfft2(np.fft.rfft2(white) * lowpass, s=(TILE, TILE))
    low, high = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    return (field - low) / (high - low + 1e-12)


def _random_colours(rng, n):
    """n RGB colours in [0, 1]: any hue, saturation up to 0.8, value from dark to bright."""
    hsv = np.stack([rng.uniform(0, 360, n), rng.uniform(0, 0.8, n), rng.uniform(0.15, 1.0, n)], axis=1)
    return cv2.cvtColor(hsv[None].astype(np.float32), cv2.COLOR_HSV2RGB)[0]


def draw_materials(rng, n):
    """n surface materials as (n, TILE, TILE, 3) albedo tiles in [0, 1] that repeat seamlessly.

    Each mixes two colours (unrelated, or one a darker tone of the other) by a flat, striped, checker or smooth
    noise pattern of random orientation and period, and adds a little grain.
    """
    kind = rng.integers(4, size=n)
    steps = DIRECTIONS[rng.integers(len(DIRECTIONS), size=n)] * rng.integers(1, 5, size=(n, 1))
    a, b = (steps[:, i, None, None].astype(np.float32) for i in range(2))
    rows, cols = _TEXELS[:, None], _TEXELS[None, :]
    along = a * cols + b * rows + rng.random((n, 1, 1), dtype=np.float32)
    across = a * rows - b * cols + rng.random((n, 1, 1), dtype=np.float32)
    duty = rng.uniform(0.2, 0.8, size=(n, 1, 1)).astype(np.float32)
    squares = np.floor(along) + np.floor(across)
    pattern = np.where(kind[:, None, None] == 1, along - np.floor(along) < duty, squares - 2 * np.floor(squares / 2))
    pattern[kind == 0] = 0
    noisy = kind == 3
    pattern[noisy] = _smooth_noise(rng, rng.uniform(2, 10, size=int(noisy.sum())))
    first, second = _random_colours(rng, 2 * n).reshape(2, n, 3)
    tone = rng.random(n) < 0.5
    second[tone] = first[tone] * rng.uniform(0.4, 0.8, size=(int(tone.sum()), 1)).astype(np.float32)
    grain = rng.uniform(0, 0.3, size=(n, 1, 1)).astype(np.float32)
    grain = 1 + grain * (rng.random((n, TILE, TILE), dtype=np.float32) - 0.5)
    albedo = np.empty((n, 3, TILE, TILE), np.float32)  # channel planes: NumPy broadcasts these fast
    for channel, plane in enumerate(albedo.transpose(1, 0, 2, 3)):
        np.multiply(pattern, (second - first)[:, channel, None, None], out=plane)
        plane += first[:, channel, None, None]
        plane *= grain
    return np.clip(albedo, np.float32(0), np.float32(1)).transpose(0, 2, 3, 1)


def draw_scene(rng, half_fov_tan):
    """Draw one scene (room, camera, light, objects, materials) from `rng`; `half_fov_tan` = tan of the half FOVs."""
    kind = int(rng.integers(len(SCENE_NAMES)))
    room, (cam_x, cam_y), yaw = _draw_room(rng, kind)
    room = tuple(float(size) for size in room)
    position = np.array([cam_x, cam_y, rng.uniform(1.0, 1.7)])
    pitch = rng.uniform(0.15, 0.45) if kind == 0 else rng.uniform(0.0, 0.35)  # small rooms: look down at the floor
    rotation = _rotation(yaw, pitch, rng.uniform(-0.05, 0.05))
    objects = _place_objects(rng, room, position, rotation, half_fov_tan)
    width, length, height = room
    light = np.array([rng.uniform(0.3, width - 0.3), rng.uniform(0.3, length - 0.3),
                      rng.uniform(max(1.6, 0.6 * height), height - 0.15)])
    n_surfaces = N_ROOM_SURFACES + len(objects)
    tiles = draw_materials(rng, n_surfaces)
    texel_scales = TILE / np.exp(rng.uniform(math.log(0.3), math.log(2.5), n_surfaces))
    if rng.random() < 0.5:  # walls painted alike
        tiles[3:N_ROOM_SURFACES] = tiles[2]
        texel_scales[3:N_ROOM_SURFACES] = texel_scales[2]
    return Scene(kind, room, position, rotation, light, objects, tiles, texel_scales.astype(np.float32),
                 ambient=float(rng.uniform(0.2, 0.45)), light_power=float(rng.uniform(0.7, 1.2)),
                 light_reach=float(rng.uniform(2.5, 6.0)))


def intrinsics(size, native_size):
    """3x3 pinhole matrix for rendering at `size`: the native camera with focal lengths scaled per axis."""
    rows, cols = size
    focal = FOCAL_PER_WIDTH * native_size[1]
    return np.array([[focal * cols / native_size[1], 0, (cols - 1) / 2],
                     [0, focal * rows / native_size[0], (rows - 1) / 2],
                     [0, 0, 1]], dtype=np.float32)


def _screen_rect(obj, scene, K, rows, cols):
    """Slices of the pixels that can see `obj` (its projected bounding box), None when it is off screen."""
    cam = (obj.corners() - scene.position) @ scene.rotation
    if cam[:, 2].min() < 0.05:
        return slice(0, rows), slice(0, cols)
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    c0, c1 = max(int(u.min()) - 1, 0), min(int(u.max()) + 2, cols)
    r0, r1 = max(int(v.min()) - 1, 0), min(int(v.max()) + 2, rows)
    if c0 >= c1 or r0 >= r1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _ray_directions(scene, K, rows, cols):
    """World direction of each pixel's ray, scaled so that its camera z component is 1 (t = z-depth)."""
    a = ((np.arange(cols) - K[0, 2]) / K[0, 0]).astype(np.float32)[None, :]
    b = ((np.arange(rows) - K[1, 2]) / K[1, 1]).astype(np.float32)[:, None]
    return [float(r[0]) * a + (float(r[1]) * b + float(r[2])) for r in scene.rotation]


def _cast_room(origin, directions, room):
    """Ray parameter and surface id (0 floor, 1 ceiling, 2..5 walls x=0, x=W, y=0, y=L) of the room surfaces.

    The camera is inside the room, so along each axis the exit is the larger of the two plane crossings.
    """
    inverse = [1.0 / d for d in directions]
    tx, ty, tz = (np.maximum(-o * i, (size - o) * i) for o, i, size in zip(origin, inverse, room))
    dx, dy, dz = directions
    t_wall = np.minimum(tx, ty)
    sid = 4 + (dy > 0).view(np.uint8)
    np.copyto(sid, 2 + (dx > 0).view(np.uint8), where=tx <= ty)
    on_z = tz <= t_wall
    np.copyto(sid, (dz > 0).view(np.uint8), where=on_z)
    return np.minimum(t_wall, tz), sid


def _cast_shadows(scene, points, to_light, inv_dist, lit):
    """Clear `lit` where the segment from a point to the light crosses an object.

    Only pixels inside each object's cone of shadow (its bounding sphere seen from the light) are ray cast. An
    object's own lit points need no exclusion: a ray leaving a convex surface towards the light meets it at t = 0.
    """
    dist = 1.0 / inv_dist
    for obj in scene.objects:
        axis = np.array([obj.x, obj.y, obj.h / 2]) - scene.light
        reach = float(np.linalg.norm(axis))
        ax, ay, az = (float(c) for c in axis / reach)
        bound = math.hypot(obj.radius, obj.h / 2)
        cos_cone = math.sqrt(1 - (bound / reach) ** 2) if bound < reach else -1.0
        inside = (to_light[0] * ax + to_light[1] * ay + to_light[2] * az) < -cos_cone * dist
        index = np.flatnonzero(inside & lit)
        if index.size:
            t = obj.intersect(*(p.ravel()[index] for p in points), *(d.ravel()[index] for d in to_light))
            lit.ravel()[index[t < 1]] = False


def _sensor_holes(rng, depth, sid, normals, directions, holes, max_range):
    """Mask of pixels a depth sensor would miss: beyond range, along occluding edges, at grazing angles, in blobs."""
    rows, cols = depth.shape
    kernel = np.ones((3, 3), np.uint8)
    jump = cv2.dilate(depth, kernel) - cv2.erode(depth, kernel)
    surface_edge = cv2.dilate(sid, kernel) != cv2.erode(sid, kernel)
    missing = (depth > max_range) | (surface_edge & (jump > 0.05 * depth))
    ray_norm = np.sqrt(sum(d * d for d in directions))
    cos_view = np.abs(sum(n * d for n, d in zip(normals, directions))) / ray_norm
    missing |= rng.random((rows, cols), dtype=np.float32) < holes * np.clip(1 - cos_view / 0.3, 0, 1)
    field = cv2.resize(rng.random((12, 16), dtype=np.float32), (cols, rows), interpolation=cv2.INTER_CUBIC)
    missing |= field < 0.15 * holes  # blobs around the field's lowest points
    return missing


def _cast(scene, K, rows, cols):
    """Ray parameter (= z-depth) and surface id of the first surface each pixel's ray meets, and the rays."""
    origin = [float(c) for c in scene.position]
    directions = _ray_directions(scene, K, rows, cols)
    t, sid = _cast_room(origin, directions, scene.room)
    for k, obj in enumerate(scene.objects):
        rect = _screen_rect(obj, scene, K, rows, cols)
        if rect is not None:
            t_obj = obj.intersect(*origin, *(d[rect] for d in directions))
            closer = t_obj < t[rect]
            np.copyto(t[rect], t_obj, where=closer)
            sid[rect][closer] = N_ROOM_SURFACES + k
    points = [o + t * d for o, d in zip(origin, directions)]
    return t, sid, directions, points


def _surface_frames(scene, sid, points):
    """World normals (3 arrays) and texture coordinates u, v in metres of the visible surface points."""
    normal_table = np.zeros((N_ROOM_SURFACES + len(scene.objects), 3), np.float32)
    normal_table[:N_ROOM_SURFACES] = ROOM_NORMALS
    normals = [np.take(column, sid) for column in normal_table.T]
    px, py, pz = points
    u, v = px.copy(), pz.copy()
    np.copyto(u, py, where=(sid >> 1) == 1)  # walls x = const: along-wall coordinate is y
    np.copyto(v, py, where=sid < 2)  # floor and ceiling: (x, y)
    flat_points, flat_normals = [p.ravel() for p in points], [n.ravel() for n in normals]
    for k, obj in enumerate(scene.objects):
        index = np.flatnonzero(sid == N_ROOM_SURFACES + k)
        nx, ny, nz, u.ravel()[index], v.ravel()[index] = obj.surface(*(p[index] for p in flat_points))
        for flat, value in zip(flat_normals, (nx, ny, nz)):
            flat[index] = value
    return normals, u, v


def _shade(scene, points, normals):
    """Irradiance factor: ambient plus Lambertian light from the point light, with distance fall-off and shadows."""
    to_light = [float(c) - p for c, p in zip(scene.light, points)]
    dist2 = sum(d * d for d in to_light)
    inv_dist = 1.0 / np.sqrt(dist2)
    cos_light = sum(n * d for n, d in zip(normals, to_light)) * inv_dist
    lit = cos_light > 0
    _cast_shadows(scene, points, to_light, inv_dist, lit)
    return cos_light * lit * (scene.light_power / (1 + dist2 * (1 / scene.light_reach ** 2))) + scene.ambient


def _texture(scene, sid, u, v):
    """Albedo (H, W, 3 float32) of every pixel, sampled from its surface's tile with one remap.

    The tiles are stacked in rows of an atlas; each carries a copy of its first row and column so that
    bilinear interpolation across its edges wraps around.
    """
    scale = np.take(scene.texel_scales, sid)
    map_x, map_y = u * scale, v * scale
    for coordinate in (map_x, map_y):
        coordinate -= np.floor(coordinate * (1 / TILE)) * TILE
    map_y += sid.astype(np.float32) * (TILE + 1)
    atlas = np.pad(scene.tiles, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="wrap").reshape(-1, TILE + 1, 3)
    return cv2.remap(atlas, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _camera(rng, radiance):
    """8-bit RGB as a camera records `radiance`: slight lens blur, sensor noise, auto exposure."""
    image = cv2.GaussianBlur(radiance, (3, 3), rng.uniform(0.3, 0.8))
    noise = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape).astype(np.float32)
    image += (noise - 127.5) * float(rng.uniform(0.01, 0.04) / 255)
    exposure = rng.uniform(0.3, 0.55) / max(float(image.mean()), 1e-3)  # to a random mean level
    return cv2.convertScaleAbs(image, alpha=255 * exposure)  # rounds and saturates; noise folds back at black


def render(scene, K, rows, cols, rng, holes=0.0, max_range=6.0, with_normals=False, depth_noise=0.0):
    """Ray cast `scene` at rows x cols; returns the maps by sample key: image (uint8 RGB), depth (float32 metres,
    complete), label (uint8), with `holes` or `depth_noise` > 0 raw_depth (depth as a sensor measures it: with
    its holes, 0 = missing, and Gaussian axial noise of standard deviation depth_noise · depth²) and with
    `with_normals` normals (H×W×3 float32, camera frame)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # rays parallel to a plane meet it at infinity
        depth, sid, directions, points = _cast(scene, K, rows, cols)
        normals, u, v = _surface_frames(scene, sid, points)
        shade = _shade(scene, points, normals)
    image = _camera(rng, _texture(scene, sid, u, v) * shade[..., None])
    classes = np.array(ROOM_CLASSES + tuple(obj.label for obj in scene.objects), np.uint8)
    maps = {"image": image, "depth": depth, "label": np.take(classes, sid)}
    if with_normals:  # camera-frame components: dot products with the camera's axes (the rotation's columns)
        maps["normals"] = np.stack([sum(float(scene.rotation[j, i]) * normals[j] for j in range(3))
                                    for i in range(3)], axis=-1).astype(np.float32)
    if holes > 0 or depth_noise > 0:
        raw_depth = depth.copy()
        if holes > 0:
            raw_depth[_sensor_holes(rng, depth, sid, normals, directions, holes, max_range)] = 0
        if depth_noise > 0:
            noise = rng.standard_normal(depth.shape, dtype=np.float32) * (depth_noise * depth * depth)
            raw_depth = np.where(raw_depth > 0, np.maximum(raw_depth + noise, 1e-3), 0).astype(np.float32)
        maps["raw_depth"] = raw_depth
    return maps


@DATASETS.register("synthetic")
class Synthetic(DenseDataset):
    """Procedural indoor RGB-D scenes (see the module docstring); `root` is ignored.

    Options (YAML `data.<option>`):
    - `length`: items in the split, an int or a {split: int} mapping (default 2000 train, 200 val, 200 test,
      also for splits a mapping leaves out);
    - `seed`: scene stream; items are deterministic per (seed, split, index) and the splits never share scenes;
    - `holes`: strength in [0, 1] of sensor-like depth holes (0, the default, gives complete depth). Above 0,
      returns beyond `max_range` metres and along occluding edges are missing, grazing surfaces drop out with a
      probability rising to `holes`, and random blobs cover about 9·holes % of the frame; the depth with holes
      is also given as `raw_depth`;
    - `depth_noise`: k of a structured-light sensor's axial noise, standard deviation k · depth² metres (default 0;
      about 0.0025 for a Kinect v1 at 1-4 m). Above 0 the noisy depth is given as `raw_depth` (with the holes,
      if any), and `depth` follows `depth_source` as with holes;
    - `depth_source`: what `depth` holds when there are holes: `raw` (default) the depth with holes, `filled`
      the complete render (with `raw_depth` as the input, the setting of depth completion);
    - `native_size`: (rows, cols) rendered when no `img_size` is set (default 240x320). With `img_size` the
      scene is rendered directly at that size with the intrinsics scaled, so the base class's resize does nothing;
    - `hha_cache`: a folder where the HHA encodings are kept as PNG once computed (default none: computed on
      every load). `hha` is computed from the depth the sensor gives (with holes where `holes` > 0) and the
      scene's true gravity, with the same encoder as NYUv2 and SUN RGB-D (ptsemseg.depth_utils.hha_encode).
    """

    n_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    n_scene_classes = len(SCENE_NAMES)
    scene_names = SCENE_NAMES
    given_keys = ("image", "depth", "label", "scene", "normals", "hha")

    @classmethod
    def camera(cls, native_size=(240, 320), **options):
        return intrinsics(native_size, native_size), tuple(native_size)

    @classmethod
    def keys_for(cls, split, holes=0.0, depth_noise=0.0, **options):
        def positive(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        return cls.given_keys + (("raw_depth",) if positive(holes) or positive(depth_noise) else ())

    def __init__(self, root, split, keys=("image", "label"), img_size=None, augmentations=None, img_norm=True,
                 skip_bad=False, length=None, seed=0, holes=0.0, max_range=6.0, native_size=(240, 320),
                 depth_source="raw", hha_cache=None, depth_noise=0.0):
        super().__init__(root, split, keys, img_size, augmentations, img_norm, skip_bad)
        if split not in SPLIT_STREAMS:
            raise PtsemsegError(f"synthetic split must be one of {', '.join(SPLIT_STREAMS)}, got '{split}'")
        lengths = length if isinstance(length, dict) else {split: length}
        self.length = DEFAULT_LENGTHS[split] if lengths.get(split) is None else lengths[split]
        if not _is_int(self.length) or self.length < 1:
            raise PtsemsegError(f"data.length must be a positive integer, got {self.length!r}")
        if not _is_int(seed) or seed < 0:
            raise PtsemsegError(f"data.seed must be a non-negative integer, got {seed!r}")
        if isinstance(holes, bool) or not isinstance(holes, (int, float)) or not 0 <= holes <= 1:
            raise PtsemsegError(f"data.holes must be a number in [0, 1], got {holes!r}")
        if isinstance(max_range, bool) or not isinstance(max_range, (int, float)) or max_range <= 0:
            raise PtsemsegError(f"data.max_range must be a positive number of metres, got {max_range!r}")
        if not isinstance(native_size, (list, tuple)) or len(native_size) != 2 or not all(
                _is_int(n) and n > 0 for n in native_size):
            raise PtsemsegError(f"data.native_size must be two positive integers (rows, cols), got {native_size!r}")
        if depth_source not in ("raw", "filled"):
            raise PtsemsegError(f"data.depth_source must be 'raw' or 'filled', got {depth_source!r}")
        if isinstance(depth_noise, bool) or not isinstance(depth_noise, (int, float)) or not 0 <= depth_noise <= 0.1:
            raise PtsemsegError(f"data.depth_noise must be a number in [0, 0.1] (σ = depth_noise · depth²), "
                                f"got {depth_noise!r}")
        if hha_cache is not None and not isinstance(hha_cache, str):
            raise PtsemsegError(f"data.hha_cache must be a folder path, got {hha_cache!r}")
        self.require_keys(holes=holes, depth_noise=depth_noise)
        self.hha_cache = hha_cache
        self.depth_noise = float(depth_noise)
        self.seed, self.holes, self.max_range = seed, float(holes), float(max_range)
        self.depth_source = depth_source
        self.native_size = tuple(native_size)
        self.render_size = self.img_size or self.native_size
        self.K = intrinsics(self.render_size, self.native_size)
        focal = FOCAL_PER_WIDTH * self.native_size[1]
        self.half_fov_tan = (self.native_size[1] / 2 / focal, self.native_size[0] / 2 / focal)

    def __len__(self):
        return self.length

    def load(self, index):
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index])
        scene = draw_scene(rng, self.half_fov_tan)
        holed = ("raw_depth" in self.keys or "hha" in self.keys
                 or ("depth" in self.keys and self.depth_source == "raw"))
        maps = render(scene, self.K, *self.render_size, rng, self.holes if holed else 0.0, self.max_range,
                      with_normals="normals" in self.keys, depth_noise=self.depth_noise if holed else 0.0)
        name = f"{self.split}_{index:06d}"
        if "hha" in self.keys:
            sensor_depth = maps.get("raw_depth", maps["depth"])
            maps["hha"] = self._hha(name, lambda: hha_encode(sensor_depth, self.K, gravity=-scene.rotation[2]))
        if "raw_depth" in maps and self.depth_source == "raw" and "depth" in self.keys:
            maps["depth"] = maps["raw_depth"].copy()
        maps["scene"] = scene.kind
        sample = {key: maps[key] for key in self.keys}
        sample["meta"] = {"name": name, "index": index, "K": self.K.copy()}
        return sample

    def _hha(self, name, compute):
        """The HHA of item `name`: from `hha_cache` when there, else computed (and then cached)."""
        if self.hha_cache is None:
            return compute()
        rows, cols = self.render_size
        path = os.path.join(self.hha_cache, f"seed{self.seed}_holes{self.holes:g}_noise{self.depth_noise:g}_"
                                            f"range{self.max_range:g}_{rows}x{cols}", f"{name}.png")
        if os.path.isfile(path):
            return read_rgb(path)
        hha = compute()
        write_rgb_png_atomic(path, hha)
        return hha


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
