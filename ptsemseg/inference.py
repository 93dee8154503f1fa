"""Model outputs at test time, shared by the evaluation, the trainer's validation and prediction.

`infer(model, batch, testing, net_size)` runs a model on the input keys of a batch and returns its outputs at the
batch's spatial size, as the `testing:` options say:

- for each of `testing.scales` the inputs are resized to `net_size` × scale (the network's size at scale 1:
  `data.img_rows × img_cols`, or the batch's own size), every key with its schema interpolation (image and HHA
  bilinear, depth nearest); `meta["K"]` follows every resize, crop and flip (pixel-centre convention, as the
  geometric augmentations);
- `testing.mode: whole` runs the whole resized image; `slide` runs `crop_size` windows every `stride` pixels, the
  last one flush with the border, and averages the outputs where windows overlap; a side shorter than the crop is
  padded at the bottom / right with each key's fill (image 0, depth 0) and the padding cut from the output;
- with `testing.flip` every scale also runs on the left-right mirrored inputs; the output is mirrored back, and an
  output whose task's target is a vector field (schema motion `vector`) has its x component negated;
- dense outputs are resized bilinearly to the output size and averaged over the passes as the model gives them:
  seg logits (not probabilities), depth in metres; image-level outputs (scene logits) are averaged as they are.

One pass at scale 1 without flip in whole mode returns the model's own outputs (in float32).
"""
import contextlib
import math

import cv2
import torch
import torch.nn.functional as F

from ptsemseg.schema import VECTOR, key_spec

# torch modes matching cv2's sampling for the schema's interpolation flags (pixel centres, no antialiasing).
TORCH_MODES = {cv2.INTER_LINEAR: "bilinear", cv2.INTER_NEAREST: "nearest"}


def pair(value):
    """An int or [rows, cols] as (rows, cols)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def default_stride(crop_size):
    """The windows' step when `testing.stride` is not given: 2/3 of the crop (PSPNet's stride rate), rounded up."""
    return tuple(math.ceil(2 * side / 3) for side in pair(crop_size))


def window_starts(length, crop, stride):
    """Start of each window along an axis of `length` pixels: every `stride`, the last one flush with the end."""
    if length <= crop:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def scaled_size(size, scale):
    """(rows, cols) × scale, rounded to the nearest pixel."""
    return tuple(max(1, int(side * scale + 0.5)) for side in size)


def is_map(key):
    return key != "meta" and key_spec(key).spatial


def map_size(view):
    """(rows, cols) of the per-pixel inputs of `view`."""
    return next(tuple(value.shape[-2:]) for key, value in view.items() if is_map(key))


def _with_intrinsics(view, update):
    """`view` with `meta["K"]` replaced by update(K) when the batch carries intrinsics."""
    meta = view.get("meta")
    if not isinstance(meta, dict) or meta.get("K") is None:
        return view
    return {**view, "meta": {**meta, "K": update(meta["K"].float())}}


def _pixel_map(K, scale_x, scale_y, shift_x, shift_y):
    """A·K for the pixel map A: (x, y) -> (scale_x·x + shift_x, scale_y·y + shift_y)."""
    A = K.new_tensor([[scale_x, 0.0, shift_x], [0.0, scale_y, shift_y], [0.0, 0.0, 1.0]])
    return A @ K


def resize_inputs(view, size):
    """Every per-pixel input resized to size=(rows, cols) with its schema interpolation; K follows."""
    rows, cols = map_size(view)
    if (rows, cols) == tuple(size):
        return view
    out = dict(view)
    for key in filter(is_map, view):
        mode = TORCH_MODES[key_spec(key).interpolation]
        out[key] = F.interpolate(view[key], size=tuple(size), mode=mode,
                                 align_corners=False if mode == "bilinear" else None)
    scale_x, scale_y = size[1] / cols, size[0] / rows
    return _with_intrinsics(out, lambda K: _pixel_map(K, scale_x, scale_y, 0.5 * scale_x - 0.5, 0.5 * scale_y - 0.5))


def _mirror(tensor, vector):
    """Left-right mirror of an N×C×H×W map; a vector field also gets its x component (channel 0) negated."""
    mirrored = tensor.flip(-1)
    if vector:
        mirrored[:, 0] = -mirrored[:, 0]
    return mirrored


def flip_inputs(view):
    """The inputs of the left-right mirrored scene: maps mirrored, K of the mirror image (fx stays positive)."""
    cols = map_size(view)[1]
    out = {key: _mirror(value, key_spec(key).motion == VECTOR) if is_map(key) else value for key, value in view.items()}
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    return _with_intrinsics(out, lambda K: _pixel_map(K, -1.0, 1.0, cols - 1.0, 0.0) @ mirror.to(K))


def crop_inputs(view, top, left, height, width):
    """The height×width window at (top, left) inside the image; past the bottom / right edge each key gets its fill."""
    out = dict(view)
    for key in filter(is_map, view):
        window = view[key][..., top:top + height, left:left + width]
        missing_rows, missing_cols = height - window.shape[-2], width - window.shape[-1]
        if missing_rows or missing_cols:
            window = F.pad(window, (0, missing_cols, 0, missing_rows), value=float(key_spec(key).fill))
        out[key] = window
    return _with_intrinsics(out, lambda K: _pixel_map(K, 1.0, 1.0, -float(left), -float(top)))


def output_is_vector(name):
    """Whether output `name` (a head named after its task, or `<head>/<aux>`) predicts a vector field."""
    from ptsemseg.tasks import TASKS

    task = name.partition("/")[0]
    return task in TASKS and key_spec(TASKS.get(task).target_key).motion == VECTOR


def _forward(model, view, keys, forward_context):
    with forward_context():
        outputs = model(*[view[key] for key in keys])
    return {name: output.float() for name, output in outputs.items()}


def sliding_window(model, view, keys, crop_size, stride, forward_context=contextlib.nullcontext):
    """The model's outputs over overlapping windows: dense ones averaged where windows overlap, image-level ones
    averaged over the windows."""
    rows, cols = map_size(view)
    crop_rows, crop_cols = pair(crop_size)
    stride_rows, stride_cols = pair(stride)
    sums, coverage, n_windows = {}, None, 0
    for top in window_starts(rows, crop_rows, stride_rows):
        for left in window_starts(cols, crop_cols, stride_cols):
            outputs = _forward(model, crop_inputs(view, top, left, crop_rows, crop_cols), keys, forward_context)
            height, width = min(crop_rows, rows - top), min(crop_cols, cols - left)
            for name, output in outputs.items():
                if output.dim() == 4:
                    total = sums.setdefault(name, output.new_zeros(*output.shape[:2], rows, cols))
                    total[..., top:top + height, left:left + width] += output[..., :height, :width]
                else:
                    sums[name] = sums[name] + output if name in sums else output
            if coverage is None:
                coverage = torch.zeros(rows, cols, device=next(iter(sums.values())).device)
            coverage[top:top + height, left:left + width] += 1
            n_windows += 1
    return {name: total / (coverage if total.dim() == 4 else n_windows) for name, total in sums.items()}


def bilinear(name, output, size):
    """The default resizing of a dense output: bilinear (logits, metres)."""
    return F.interpolate(output, size=size, mode="bilinear", align_corners=False)


def infer(model, batch, testing, net_size=None, out_size=None, forward_context=contextlib.nullcontext,
          resize=bilinear):
    """The outputs of `model` on `batch` (a dict of tensors holding its input keys) under the `testing` options.

    net_size: (rows, cols) the network runs at scale 1 (None: the batch's size); out_size: size of the dense
    outputs (None: the batch's size); forward_context: a callable giving the context of each forward pass
    (autocast); resize(name, output, size): how a dense output is resized (a task's `resize_output`: depth
    predicted as disparity is resized as disparity). Returns {output name: float32 tensor}, dense
    N×C×rows×cols, image-level N×C.
    """
    keys = tuple(getattr(model, "input_keys", ("image",)))
    view = {key: batch[key] for key in keys}
    size = map_size(view)
    out_size = tuple(out_size or size)
    base_size = tuple(net_size or size)
    slide = testing.get("mode", "whole") == "slide"
    crop_size = testing.get("crop_size")
    stride = testing.get("stride") or (default_stride(crop_size) if slide else None)
    sums, n_passes = {}, 0
    for scale in testing.get("scales") or (1.0,):
        scaled = resize_inputs(view, scaled_size(base_size, scale))
        for flipped in (False, True) if testing.get("flip") else (False,):
            inputs = flip_inputs(scaled) if flipped else scaled
            outputs = (sliding_window(model, inputs, keys, crop_size, stride, forward_context) if slide
                       else _forward(model, inputs, keys, forward_context))
            for name, output in outputs.items():
                if flipped and output.dim() == 4:
                    output = _mirror(output, output_is_vector(name))
                if output.dim() == 4 and tuple(output.shape[-2:]) != out_size:
                    output = resize(name, output, out_size)
                sums[name] = sums[name] + output if name in sums else output
            n_passes += 1
    return {name: total / n_passes if n_passes > 1 else total for name, total in sums.items()}
