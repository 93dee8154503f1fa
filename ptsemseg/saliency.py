"""Pixel-wise saliency maps: which input pixels a network uses to predict one output pixel (docs/saliency.md).

The saliency map of a target output pixel is the seed project's vanilla back-propagation map
(Semseg-MonoDepth-Pytorch): the gradient of that output value - a segmentation head's logit of the class it predicts
there (or of a given class), a depth head's predicted depth - with respect to every input pixel, in absolute value,
maximised over the input's channels. A model with several inputs (RGB-D) gets one map per input key.

One forward pass per frame serves every target. With `method="vmap"`, `torch.func.vjp` gives the model's
vector-Jacobian product at the input and `torch.func.vmap` applies it to a chunk of one-hot cotangents at once:
many targets per backward pass, each map the gradient a backward pass of its own gives (equal to float32 rounding).
With `method="loop"`, one backward pass per target runs through the ordinary autograd graph, with respect to the
inputs alone (no weight gradients, unlike the seed). `auto` takes vmap on a GPU and the loop on a CPU, where the
batched pass measured slower; a model torch.func cannot run falls back to the loop.

The metrics are the seed's (saliency_eval.py, saliency_iou.py): within a crop of the frame (KITTI's Garg crop by
default), each map is normalised as (s - min) / max, and measured by its activation range (the farthest pixel with
s >= t from the target, over the crop's diagonal), its activation density (the fraction of pixels with s >= t) and the
IoU of the {s >= t} regions of a segmentation and a depth model.
"""
import contextlib
import functools
import warnings

import torch
import torch.nn as nn
from torch.func import functional_call, vjp, vmap

from ptsemseg.errors import PtsemsegError

GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)  # top, bottom, left, right as fractions of the frame
CROPS = ("garg", "full")
RANGE_THRESHOLDS = (0.1, 0.5, 0.9)
IOU_THRESHOLDS = (0.05, 0.1, 0.5, 0.9)
METHODS = ("auto", "vmap", "loop")


def _affine_batch_norm(norm, x):
    """An eval-mode batch norm as the per-channel affine map it is, in float32, returned in x's dtype."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x.float() * scale.view(shape) + shift.view(shape)).to(x.dtype)


@contextlib.contextmanager
def batch_norms_as_affine(model):
    """Run the eval-mode batch norms of `model` (those with running statistics) as their affine maps meanwhile.

    functorch's batching rule for the batch-norm backward fails on a bfloat16 input with float32 statistics, which
    is what CPU autocast gives; the affine map is the same function, and its backward batches.
    """
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
             and not module.training and module.running_var is not None]
    for norm in norms:
        norm.forward = functools.partial(_affine_batch_norm, norm)
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def _detached_weights(model):
    """The model's parameters (detached: no weight gradients are computed) and buffers, for functional_call."""
    weights = {name: param.detach() for name, param in model.named_parameters()}
    weights.update(model.named_buffers())
    return weights


class Saliency:
    """Saliency maps of one dense head's output pixels on one frame.

    `forward(inputs)` runs the model (put in eval mode) on a batch of one, in its `input_keys` order;
    `maps(rows, cols, channels)` then yields the maps of the targets chunk by chunk, as {input key: k×H×W}
    float32 tensors (`meta` has none). `autocast` is a function returning the autocast context of the run
    (ptsemseg.device.autocast); `chunk_size` targets share a backward pass under vmap, which bounds the memory.

    `method`: `vmap` (`chunk_size` targets per backward pass), `loop` (one backward pass per target, on the
    ordinary autograd graph, with respect to the inputs alone), or `auto`: vmap on a GPU and the loop on a CPU,
    where the batched backward pass measured slower (BENCHMARKS.md). Both are exact. A model that torch.func cannot
    run falls back from vmap to the loop with a warning; `method` then says `loop`.
    """

    def __init__(self, model, head, autocast=contextlib.nullcontext, chunk_size=16, method="auto"):
        if method not in METHODS:
            raise PtsemsegError(f"saliency method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise PtsemsegError(f"saliency chunk size must be a positive integer, got {chunk_size!r}")
        self.model = model.eval()
        self.head = head
        self.autocast = autocast
        self.chunk_size = chunk_size
        self.method = method
        self.keys = tuple(getattr(model, "input_keys", ("image",)))
        self.map_keys = tuple(key for key in self.keys if key != "meta")
        self.inputs = None
        self.output = None
        self._vjp = None
        self._graph = None

    def forward(self, inputs):
        """Run the model on one frame; returns the head's output (1×C×H×W, float32), kept for the targets."""
        inputs = list(inputs)
        if len(inputs) != len(self.keys):
            raise PtsemsegError(f"the model takes {', '.join(self.keys)}; got {len(inputs)} inputs")
        maps = [x for key, x in zip(self.keys, inputs) if key != "meta"]
        sizes = {tuple(x.shape[-2:]) for x in maps}
        if any(x.shape[0] != 1 for x in maps) or len(sizes) != 1:
            raise PtsemsegError("saliency maps take one frame at a time: inputs of batch size 1 and one size")
        if self.method == "auto":
            self.method = "vmap" if maps[0].device.type == "cuda" else "loop"
        self.inputs = inputs
        self._vjp = self._graph = None
        outputs = None
        if self.method == "vmap":
            try:
                outputs = self._vjp_forward()
            except RuntimeError as err:
                self._fall_back(err)
        if outputs is None:
            outputs = self._graph_forward()
        output = outputs[self.head].detach()
        if output.dim() != 4 or tuple(output.shape[-2:]) != sizes.pop():
            raise PtsemsegError(f"output '{self.head}' is not a dense map at the input's size")
        self.output = output
        return output.float()

    def _head_of(self, outputs):
        if self.head not in outputs:
            raise PtsemsegError(f"the model has no output '{self.head}' (it has {', '.join(outputs)})")
        return outputs[self.head]

    def _with_maps(self, maps):
        """The inputs with the map inputs replaced by `maps` (meta kept)."""
        maps = iter(maps)
        return tuple(value if key == "meta" else next(maps) for key, value in zip(self.keys, self.inputs))

    def _vjp_forward(self):
        """The model's outputs, keeping the vector-Jacobian product of the head's output at the map inputs."""
        weights = _detached_weights(self.model)
        outputs = {}

        def head_output(*maps):
            outputs.update(functional_call(self.model, weights, self._with_maps(maps)))
            return self._head_of(outputs)

        norms = batch_norms_as_affine(self.model) if self._autocasts() else contextlib.nullcontext()
        with norms, self.autocast():
            self._vjp = vjp(head_output, *(x for key, x in zip(self.keys, self.inputs) if key != "meta"))[1]
        return outputs

    def _autocasts(self):
        """Whether the run's autocast is on: then batch norms run as their affine maps under vmap (the float32 maps
        keep the model's own batch norms, and so its exact forward values)."""
        with self.autocast():
            return any(torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))

    def _graph_forward(self):
        """The model's outputs, keeping the ordinary autograd graph from the head's output to the map inputs."""
        maps = [x.detach().requires_grad_() for key, x in zip(self.keys, self.inputs) if key != "meta"]
        with torch.enable_grad(), self.autocast():
            outputs = functional_call(self.model, _detached_weights(self.model), self._with_maps(maps))
        self._graph = (self._head_of(outputs), maps)
        return outputs

    def target_channels(self, rows, cols, channel=None):
        """The output channel of each target: `channel` when given, else the predicted class where the head has
        several channels (segmentation), else its only one (depth)."""
        rows, cols = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
        self._check_inside(rows, cols)
        count = self.output.shape[1]
        if channel is None:
            if count == 1:
                return torch.zeros(len(rows), dtype=torch.long)
            return self.output[0, :, rows, cols].float().argmax(0).cpu()
        if not 0 <= channel < count:
            raise PtsemsegError(f"channel {channel} is outside output '{self.head}' (channels 0..{count - 1})")
        return torch.full((len(rows),), channel, dtype=torch.long)

    def _check_inside(self, rows, cols):
        height, width = self.output.shape[-2:]
        outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
        if outside.any():
            first = int(outside.nonzero()[0])
            raise PtsemsegError(f"target pixel (row {int(rows[first])}, col {int(cols[first])}) is outside the "
                                f"{height}×{width} output")

    def maps(self, rows, cols, channels):
        """Yield (start, {input key: k×H×W}) for successive chunks of the targets (rows[i], cols[i], channels[i])."""
        rows, cols, channels = (torch.as_tensor(v, dtype=torch.long) for v in (rows, cols, channels))
        self._check_inside(rows, cols)
        for start in range(0, len(rows), self.chunk_size):
            chunk = slice(start, start + self.chunk_size)
            grads = self._chunk_gradients(rows[chunk], cols[chunk], channels[chunk])
            yield start, {key: grad.detach().abs().amax(1).float() for key, grad in zip(self.map_keys, grads)}

    def _chunk_gradients(self, rows, cols, channels):
        """Gradients (one k×C×H×W per map input) of the chunk's target outputs."""
        if self._vjp is None:
            return self._loop_gradients(rows, cols, channels)
        count = len(rows)
        cotangents = self.output.new_zeros((count, *self.output.shape))
        device = self.output.device
        cotangents[torch.arange(count, device=device), 0, channels.to(device), rows.to(device), cols.to(device)] = 1
        try:
            grads = vmap(self._vjp)(cotangents)
        except RuntimeError as err:
            self._fall_back(err)
            self._graph_forward()
            return self._loop_gradients(rows, cols, channels)
        return [grad[:, 0] for grad in grads]

    def _fall_back(self, err):
        """Continue with the loop after torch.func failed on this model."""
        reason = str(err).strip().splitlines()[0][:160]
        warnings.warn(f"{type(self.model).__name__}: torch.func cannot run it ({reason}); saliency maps come from one "
                      "backward pass per target (exact, slower on a GPU)")
        self.method = "loop"
        self._vjp = None

    def _loop_gradients(self, rows, cols, channels):
        """One backward pass per target through the kept graph, with respect to the map inputs alone."""
        output, maps = self._graph
        per_target = []
        for row, col, channel in zip(rows.tolist(), cols.tolist(), channels.tolist()):
            grads = torch.autograd.grad(output[0, channel, row, col], maps, retain_graph=True, allow_unused=True)
            per_target.append([torch.zeros_like(x) if grad is None else grad for x, grad in zip(maps, grads)])
        return [torch.cat(grads) for grads in zip(*per_target)]


def saliency_maps(model, inputs, head, rows, cols, channel=None, **options):
    """Every target's maps at once: ({input key: T×H×W}, the head's output, the targets' channels).

    For a few targets (a picture, a test); `options` are Saliency's."""
    saliency = Saliency(model, head, **options)
    output = saliency.forward(inputs)
    channels = saliency.target_channels(rows, cols, channel)
    chunks = [maps for _, maps in saliency.maps(rows, cols, channels)]
    return {key: torch.cat([maps[key] for maps in chunks]) for key in saliency.map_keys}, output, channels


# The seed's measures of a map. `box` is (top, bottom, left, right), rows top..bottom-1 and columns left..right-1.

def crop_box(size, crop="garg"):
    """The box of frame `size` = (rows, cols) the metrics look at: KITTI's Garg crop, as the seed truncates its
    fractions, or the full frame."""
    rows, cols = size
    if crop == "full":
        return 0, rows, 0, cols
    if crop == "garg":
        top, bottom, left, right = GARG_CROP
        return int(top * rows), int(bottom * rows), int(left * cols), int(right * cols)
    raise PtsemsegError(f"saliency crop must be one of {', '.join(CROPS)}, got {crop!r}")


def target_grid(box, sample_rate):
    """The seed's target pixels: every `sample_rate` pixels along both axes of the box, starting `sample_rate`
    pixels below and right of its top-left corner. Returns (rows, cols), row-major."""
    if not isinstance(sample_rate, int) or sample_rate < 1:
        raise PtsemsegError(f"sample rate must be a positive integer, got {sample_rate!r}")
    top, bottom, left, right = box
    rows = torch.arange(top + sample_rate, bottom, sample_rate)
    cols = torch.arange(left + sample_rate, right, sample_rate)
    if not len(rows) or not len(cols):
        raise PtsemsegError(f"sample rate {sample_rate} leaves no target pixel in the {bottom - top}×{right - left} "
                            "crop")
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    return grid_rows.flatten(), grid_cols.flatten()


def normalized_crop(maps, box):
    """k×H×W maps cut to the box and normalised as the seed does, (s - min) / max (a map that is 0 everywhere
    stays 0)."""
    top, bottom, left, right = box
    cropped = maps[:, top:bottom, left:right]
    low = cropped.amin((1, 2), keepdim=True)
    high = cropped.amax((1, 2), keepdim=True)
    return torch.where(high > 0, (cropped - low) / torch.where(high > 0, high, 1), cropped)


def range_and_density(maps, rows, cols, thresholds=RANGE_THRESHOLDS):
    """Activation range and density of normalised, cropped k×h×w maps whose targets sit at (rows, cols) of the crop.

    Range (act_d): the largest Euclidean distance from the target to a pixel with saliency >= t, divided by the
    crop's diagonal (0 when no pixel reaches t). Density (act_ratio): the fraction of the crop's pixels with
    saliency >= t. Returns two k×len(thresholds) tensors.
    """
    count, height, width = maps.shape
    ys = torch.arange(height, device=maps.device, dtype=torch.float64).view(1, -1, 1)
    xs = torch.arange(width, device=maps.device, dtype=torch.float64).view(1, 1, -1)
    rows = rows.to(maps.device, torch.float64).view(-1, 1, 1)
    cols = cols.to(maps.device, torch.float64).view(-1, 1, 1)
    distance = torch.sqrt((ys - rows) ** 2 + (xs - cols) ** 2)
    diagonal = (height ** 2 + width ** 2) ** 0.5
    ranges, densities = [], []
    for threshold in thresholds:
        active = maps >= threshold
        ranges.append(torch.where(active, distance, 0).amax((1, 2)) / diagonal)
        densities.append(active.flatten(1).double().mean(1))
    return torch.stack(ranges, 1), torch.stack(densities, 1)


def region_iou(maps_a, maps_b, thresholds=IOU_THRESHOLDS):
    """IoU of the regions {s >= t} of two sets of normalised k×h×w maps, per threshold: k×len(thresholds) (NaN
    where both regions are empty, as the seed's 0/0)."""
    ious = []
    for threshold in thresholds:
        a, b = maps_a >= threshold, maps_b >= threshold
        inter = (a & b).flatten(1).sum(1).double()
        union = (a | b).flatten(1).sum(1).double()
        ious.append(inter / union)
    return torch.stack(ious, 1)


def metric_names(keys, thresholds=RANGE_THRESHOLDS):
    """Column names of the range and density metrics per input key: `image/act_d@0.1`, ..."""
    return [f"{key}/{metric}@{threshold:g}" for key in keys for metric in ("act_d", "act_ratio")
            for threshold in thresholds]


def iou_names(keys, thresholds=IOU_THRESHOLDS):
    return [f"{key}/iou@{threshold:g}" for key in keys for threshold in thresholds]


# Commands of saliency.py: demo, eval, iou, analysis.

def load_saliency_model(cfg, model_path, head=None, channel=None):
    """The checkpoint's model built from `cfg` on the run's device, in eval mode, and its autocast function.

    The heads come from the checkpoint's own record of its tasks, so no dataset is read; a checkpoint of another
    architecture or of other tasks than the config's, or a `channel` outside output `head`, fails in one line.
    """
    from ptsemseg.build import build_model
    from ptsemseg.checkpoint import check_compatible, checkpoint_tasks, load_checkpoint, load_model_state
    from ptsemseg.device import autocast, resolve_device, resolve_speed_modes
    from ptsemseg.tasks import parse_task_spec

    state = load_checkpoint(model_path)
    heads = checkpoint_tasks(state.get("meta") or {})
    if heads is None:
        raise PtsemsegError(f"checkpoint {model_path} does not record its tasks (meta.tasks); save it with train.py")
    check_compatible(state, model_path, cfg["model"]["arch"], heads)
    tasks = list(parse_task_spec(cfg["task"]))
    if sorted(tasks) != sorted(heads):
        raise PtsemsegError(f"checkpoint {model_path} was trained for {', '.join(heads)}, the config's task is "
                            f"{', '.join(tasks)}")
    if channel is not None and not 0 <= channel < heads[head]:
        raise PtsemsegError(f"--channel {channel}: output '{head}' has channels 0..{heads[head] - 1}")
    device = resolve_device(cfg["training"]["device"])
    resolve_speed_modes(cfg["training"], device, cfg["model"]["arch"])
    model = build_model(cfg, heads, device)
    load_model_state(model, state, model_path)
    return model.eval(), device, functools.partial(autocast, cfg, device)


def dense_head(cfg, head):
    """`head` (default: the config's first dense task) checked to be a dense task of the config."""
    from ptsemseg.models.heads import DENSE
    from ptsemseg.tasks import TASKS, parse_task_spec

    tasks = list(parse_task_spec(cfg["task"]))
    dense = [name for name in tasks if TASKS.get(name).kind == DENSE]
    if head is None and dense:
        return dense[0]
    if head not in dense:
        raise PtsemsegError(f"--head {head}: saliency needs a per-pixel output; this model's are "
                            f"{', '.join(dense) or 'none'}")
    return head


def frame_inputs(sample, model, device, channels_last):
    """One dataset sample (tensors) as the model's inputs: a batch of one on `device`."""
    from ptsemseg.device import to_device
    from ptsemseg.models import model_inputs

    batch = to_device(torch.utils.data.default_collate([sample]), device, channels_last)
    if "meta" in batch:
        batch["meta"] = to_device(batch["meta"], device)
    return model_inputs(model, batch)


def split_dataset(cfg, split):
    """The config's `data.<split>_split` at the network's size, giving only the model's inputs."""
    from ptsemseg.build import build_dataset
    from ptsemseg.models import model_input_keys

    return build_dataset(cfg, cfg["data"][f"{split}_split"], model_input_keys(cfg["model"]))


def sample_name(sample, index):
    meta = sample.get("meta") or {}
    return str(meta.get("name", index))


def write_csv(path, columns, produce):
    """Write a CSV file whose rows `produce(add_row)` adds as they come; the file appears whole at the end."""
    import csv
    import io

    from ptsemseg.checkpoint import write_atomic

    def write(handle):
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        produce(lambda row: writer.writerow([f"{value:.6g}" if isinstance(value, float) else value for value in row]))
        text.flush()
        text.detach()

    write_atomic(path, write)


def write_json(path, record):
    import json

    from ptsemseg.checkpoint import write_atomic
    from ptsemseg.rundir import json_safe

    text = json.dumps(json_safe(record), indent=2, allow_nan=False)
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def frame_targets(saliency, inputs, crop, sample_rate, channel=None):
    """Run the model on a frame; the metrics' crop box and the target pixels (rows, cols, channels) in it."""
    saliency.forward(inputs)
    box = crop_box(tuple(saliency.output.shape[-2:]), crop)
    rows, cols = target_grid(box, sample_rate)
    return box, rows, cols, saliency.target_channels(rows, cols, channel)


def resolve_crop(cfg, crop):
    """`--crop`, by default the Garg crop on KITTI (as the seed measures) and the full frame elsewhere."""
    crop = crop or ("garg" if cfg["data"]["dataset"] == "kitti" else "full")
    crop_box((1, 1), crop)
    return crop


def eval_main(args):
    """Range and density of the saliency of every `sample_rate`-th pixel of `num_image` frames, to CSV and JSON."""
    import os

    from tqdm import tqdm

    from ptsemseg.config import load_config
    from ptsemseg.rundir import check_writable_dir

    cfg = load_config(args.config, args.opts)
    head = dense_head(cfg, args.head)
    crop = resolve_crop(cfg, args.crop)
    check_writable_dir(args.out, "--out")
    model, device, run_autocast = load_saliency_model(cfg, args.model_path, head, args.channel)
    dataset = split_dataset(cfg, args.split)
    count = min(args.num_image, len(dataset))
    saliency = Saliency(model, head, autocast=run_autocast, chunk_size=args.chunk, method=args.method)
    columns = ["image", "name", "row", "col", "channel", *metric_names(saliency.map_keys)]
    sums, targets = torch.zeros(len(columns) - 5, dtype=torch.float64), 0
    stem = os.path.join(args.out, f"saliency_{head}_{args.split}")
    os.makedirs(args.out, exist_ok=True)

    def produce(add_row):
        nonlocal sums, targets
        with tqdm(total=0, unit="px", desc=f"saliency {head}") as progress:
            for index in range(count):
                sample = dataset[index]
                inputs = frame_inputs(sample, model, device, cfg["training"]["channels_last"])
                box, rows, cols, channels = frame_targets(saliency, inputs, crop, args.sample_rate, args.channel)
                progress.total += len(rows)
                for start, maps in saliency.maps(rows, cols, channels):
                    part = slice(start, start + saliency.chunk_size)
                    table = torch.cat([torch.cat(range_and_density(normalized_crop(maps[key], box),
                                                                   rows[part] - box[0], cols[part] - box[2]), 1)
                                       for key in saliency.map_keys], 1).cpu()
                    sums += table.sum(0)
                    targets += len(table)
                    for row, col, channel, metrics in zip(rows[part].tolist(), cols[part].tolist(),
                                                          channels[part].tolist(), table.tolist()):
                        add_row([index, sample_name(sample, index), row, col, channel, *metrics])
                    progress.update(len(table))

    write_csv(f"{stem}.csv", columns, produce)
    summary = {"config": os.path.abspath(args.config), "checkpoint": os.path.abspath(args.model_path),
               "arch": cfg["model"]["arch"], "head": head, "split": cfg["data"][f"{args.split}_split"],
               "images": count, "targets": targets, "sample_rate": args.sample_rate, "crop": crop,
               "thresholds": list(RANGE_THRESHOLDS), "amp": cfg["training"]["amp"], "method": saliency.method,
               "mean": {name: float(value) / max(targets, 1) for name, value in zip(columns[5:], sums.tolist())}}
    write_json(f"{stem}.json", summary)
    print(f"{cfg['model']['arch']} {head}: {targets} target pixels on {count} images ({saliency.method})")
    print("\n".join(f"{name:>28s}  {value:.4f}" for name, value in summary["mean"].items()))
    print(f"per pixel: {stem}.csv; summary: {stem}.json")


def iou_main(args):
    """IoU of the thresholded saliency regions of a segmentation and a depth model, per target pixel."""
    import os

    from tqdm import tqdm

    from ptsemseg.config import load_config
    from ptsemseg.rundir import check_writable_dir

    cfgs = [load_config(args.seg_config, args.opts), load_config(args.depth_config, args.opts)]
    heads = [dense_head(cfgs[0], args.seg_head), dense_head(cfgs[1], args.depth_head)]
    frames = [(cfg["data"]["dataset"], cfg["data"]["path"], cfg["data"][f"{args.split}_split"]) for cfg in cfgs]
    if frames[0] != frames[1]:
        raise PtsemsegError(f"the two configs read different frames: {frames[0]} and {frames[1]} (dataset, path, "
                            "split)")
    crop = resolve_crop(cfgs[0], args.crop)
    check_writable_dir(args.out, "--out")
    loaded = [load_saliency_model(cfg, path) for cfg, path in zip(cfgs, (args.seg_model, args.depth_model))]
    datasets = [split_dataset(cfg, args.split) for cfg in cfgs]
    saliencies = [Saliency(model, head, autocast=run_autocast, chunk_size=args.chunk, method=args.method)
                  for (model, _, run_autocast), head in zip(loaded, heads)]
    keys = [key for key in saliencies[0].map_keys if key in saliencies[1].map_keys]
    if not keys:
        raise PtsemsegError("the two models share no input to compare saliency on")
    count = min(args.num_image, len(datasets[0]))
    columns = ["image", "name", "row", "col", "seg_channel", *iou_names(keys)]
    sums, valid, targets = torch.zeros(len(columns) - 5, dtype=torch.float64), torch.zeros(len(columns) - 5), 0
    stem = os.path.join(args.out, f"saliency_iou_{args.split}")
    os.makedirs(args.out, exist_ok=True)

    def produce(add_row):
        nonlocal sums, valid, targets
        with tqdm(total=0, unit="px", desc="saliency iou") as progress:
            for index in range(count):
                samples = [dataset[index] for dataset in datasets]
                inputs = [frame_inputs(sample, model, device, cfg["training"]["channels_last"])
                          for sample, (model, device, _), cfg in zip(samples, loaded, cfgs)]
                outputs = [saliency.forward(frame) for saliency, frame in zip(saliencies, inputs)]
                size = tuple(outputs[0].shape[-2:])
                if tuple(outputs[1].shape[-2:]) != size:
                    raise PtsemsegError(f"frame {index}: the seg model sees {size[0]}×{size[1]}, the depth model "
                                        f"{outputs[1].shape[-2]}×{outputs[1].shape[-1]}: give both configs one size")
                box = crop_box(size, crop)
                rows, cols = target_grid(box, args.sample_rate)
                channels = [saliency.target_channels(rows, cols) for saliency in saliencies]
                progress.total += len(rows)
                chunks = zip(*(saliency.maps(rows, cols, channel) for saliency, channel in zip(saliencies, channels)))
                for (start, seg_maps), (_, depth_maps) in chunks:
                    part = slice(start, start + saliencies[0].chunk_size)
                    table = torch.cat([region_iou(normalized_crop(seg_maps[key], box),
                                                  normalized_crop(depth_maps[key], box)).cpu() for key in keys], 1)
                    sums += torch.nan_to_num(table).sum(0)
                    valid += (~table.isnan()).sum(0)
                    targets += len(table)
                    for row, col, channel, ious in zip(rows[part].tolist(), cols[part].tolist(),
                                                       channels[0][part].tolist(), table.tolist()):
                        add_row([index, sample_name(samples[0], index), row, col, channel, *ious])
                    progress.update(len(table))

    write_csv(f"{stem}.csv", columns, produce)
    summary = {"seg": {"config": os.path.abspath(args.seg_config), "checkpoint": os.path.abspath(args.seg_model),
                       "arch": cfgs[0]["model"]["arch"], "head": heads[0]},
               "depth": {"config": os.path.abspath(args.depth_config), "checkpoint": os.path.abspath(args.depth_model),
                         "arch": cfgs[1]["model"]["arch"], "head": heads[1]},
               "split": frames[0][2], "images": count, "sample_rate": args.sample_rate, "crop": crop,
               "thresholds": list(IOU_THRESHOLDS),
               "targets": targets, "mean": {name: float(total) / valid_targets if valid_targets else float("nan")
                                            for name, total, valid_targets in zip(columns[5:], sums.tolist(),
                                                                                  valid.tolist())},
               "targets_with_both_regions_empty": {name: targets - int(valid_targets)
                                                   for name, valid_targets in zip(columns[5:], valid.tolist())}}
    write_json(f"{stem}.json", summary)
    print(f"{summary['seg']['arch']} {heads[0]} against {summary['depth']['arch']} {heads[1]}: {targets} target "
          f"pixels on {count} images")
    print("\n".join(f"{name:>28s}  {value:.4f}" for name, value in summary["mean"].items()))
    print(f"per pixel: {stem}.csv; summary: {stem}.json")


def read_saliency_csv(path, what):
    """(metric columns, N×3 int array of image, row, col, N×M float array of metrics) of an eval or iou CSV."""
    import csv
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise PtsemsegError(f"{what} {path}: file not found")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            if header[:4] != ["image", "name", "row", "col"] or len(header) < 6:
                raise ValueError("its header is not image, name, row, col, channel, metrics...")
            rows = [row for row in reader]
            targets = np.array([[int(row[0]), int(row[2]), int(row[3])] for row in rows], dtype=np.int64)
            values = np.array([[float(value) for value in row[5:]] for row in rows], dtype=np.float64)
    except (ValueError, IndexError, UnicodeDecodeError, StopIteration, csv.Error) as err:
        raise PtsemsegError(f"{what} {path} is not a CSV of saliency.py eval or iou ({err})") from None
    if not len(rows):
        raise PtsemsegError(f"{what} {path} holds no target pixel")
    return header[5:], targets.reshape(-1, 3), values.reshape(len(rows), len(header) - 5)


def wilcoxon_p(first, second):
    """Two-sided Wilcoxon signed-rank p-value of paired samples (NaN when they never differ)."""
    import numpy as np
    from scipy.stats import wilcoxon

    if np.array_equal(first, second):
        return float("nan")
    return float(wilcoxon(first, second).pvalue)


def file_stem(name):
    return "".join(char if char.isalnum() or char in "-." else "_" for char in name)


def save_histogram(path, series, metric, xlabel):
    """A PNG of overlaid histograms, one per (label, values, colour) of `series`, on shared bins."""
    import numpy as np
    from matplotlib.figure import Figure

    from ptsemseg.checkpoint import write_atomic

    values = np.concatenate([data for _, data, _ in series])
    bins = np.histogram_bin_edges(values[np.isfinite(values)], bins="auto") if np.isfinite(values).any() else 10
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    for label, data, colour in series:
        data = data[np.isfinite(data)]
        axes.hist(data, bins=bins, color=colour, alpha=0.5, label=f"{label} (mean {data.mean():.4g})")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("images")
    axes.set_title(metric)
    axes.grid(axis="y", alpha=0.75)
    axes.legend()
    write_atomic(path, lambda handle: figure.savefig(handle, format="png", dpi=100))


def analysis_main(args):
    """The seed's comparison of the segmentation and the depth saliency of the same target pixels."""
    import os

    import numpy as np

    from ptsemseg.rundir import check_writable_dir

    check_writable_dir(args.out, "--out")
    seg_metrics, seg_targets, seg_values = read_saliency_csv(args.seg, "--seg")
    depth_metrics, depth_targets, depth_values = read_saliency_csv(args.depth, "--depth")
    if not np.array_equal(seg_targets, depth_targets):
        raise PtsemsegError(f"--seg {args.seg} and --depth {args.depth} hold different target pixels: run eval with "
                            "the same split, num_image, sample_rate and crop for both")
    metrics = [name for name in seg_metrics if name in depth_metrics]
    if not metrics:
        raise PtsemsegError(f"--seg {args.seg} and --depth {args.depth} share no metric column")
    iou = read_saliency_csv(args.iou, "--iou") if args.iou else None
    os.makedirs(args.out, exist_ok=True)
    images = np.unique(seg_targets[:, 0])
    masks = [seg_targets[:, 0] == image for image in images]
    results, pictures = [], []
    for metric in metrics:
        seg, depth = seg_values[:, seg_metrics.index(metric)], depth_values[:, depth_metrics.index(metric)]
        seg_means = np.array([seg[mask].mean() for mask in masks])
        depth_means = np.array([depth[mask].mean() for mask in masks])
        p_values = np.array([wilcoxon_p(seg[mask], depth[mask]) for mask in masks])
        significant = p_values < args.alpha
        results.append({"metric": metric, "seg_mean": float(seg.mean()), "depth_mean": float(depth.mean()),
                        "images": len(images),
                        "images_depth_larger": int((significant & (depth_means > seg_means)).sum()),
                        "images_seg_larger": int((significant & (seg_means > depth_means)).sum()),
                        "p_over_image_means": wilcoxon_p(seg_means, depth_means)})
        path = os.path.join(args.out, f"hist_{file_stem(metric)}.png")
        save_histogram(path, [("seg", seg_means, "red"), ("depth", depth_means, "blue")], metric,
                       f"mean {metric} of an image")
        pictures.append(path)
    iou_means = {}
    if iou:
        iou_metrics, iou_targets, iou_values = iou
        for column, name in enumerate(iou_metrics):
            values = iou_values[:, column]
            per_image = np.array([np.nanmean(values[iou_targets[:, 0] == image]) if
                                  np.isfinite(values[iou_targets[:, 0] == image]).any() else np.nan
                                  for image in np.unique(iou_targets[:, 0])])
            iou_means[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            path = os.path.join(args.out, f"hist_{file_stem(name)}.png")
            save_histogram(path, [("seg-depth IoU", per_image, "purple")], name, f"mean {name} of an image")
            pictures.append(path)
    write_json(os.path.join(args.out, "saliency_analysis.json"),
               {"seg": os.path.abspath(args.seg), "depth": os.path.abspath(args.depth), "alpha": args.alpha,
                "metrics": results, "iou": iou_means})
    print(f"{len(images)} images, {len(seg_targets)} target pixels; per image, Wilcoxon signed-rank over its pixels "
          f"(p < {args.alpha:g})")
    print("| metric | seg mean | depth mean | images depth > seg | images seg > depth | p over image means |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(f"| {result['metric']} | {result['seg_mean']:.4f} | {result['depth_mean']:.4f} | "
              f"{result['images_depth_larger']}/{result['images']} | {result['images_seg_larger']}/{result['images']} "
              f"| {result['p_over_image_means']:.3g} |")
    for name, value in iou_means.items():
        print(f"mean {name}: {value:.4f}")
    print(f"histograms: {', '.join(pictures)}")


def file_sample(cfg, image_path, extra_inputs, keys):
    """A user's image (and `KEY=FILE.npy` arrays for the model's other inputs) prepared as the config's evaluation
    frames are: resized to the network's size, encoded by `normalize`, as tensors."""
    import numpy as np

    from ptsemseg.augmentations import get_composed_augmentations
    from ptsemseg.loaders.base import resize_sample, to_tensor
    from ptsemseg.loaders.io import read_rgb
    from ptsemseg.schema import key_spec

    if "meta" in keys:
        raise PtsemsegError(f"model {cfg['model']['arch']} needs the camera intrinsics (meta): take a frame of the "
                            "dataset with --index")
    sample = {"image": read_rgb(image_path)}
    for item in extra_inputs:
        key, _, path = item.partition("=")
        if key not in keys or key == "image" or not path:
            raise PtsemsegError(f"--input {item}: give KEY=FILE.npy for one of the model's inputs "
                                f"{', '.join(k for k in keys if k != 'image') or '(it has none besides image)'}")
        spec = key_spec(key)
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise PtsemsegError(f"--input {item}: cannot read {path} as a .npy array ({err})") from None
        shape = sample["image"].shape[:2] + ((spec.channels,) if spec.channels > 1 else ())
        if array.shape != shape:
            raise PtsemsegError(f"--input {item}: {key} must be {'×'.join(map(str, shape))} like the image, "
                                f"got {'×'.join(map(str, array.shape))}")
        sample[key] = array.astype(spec.dtype)
    missing = [key for key in keys if key not in sample]
    if missing:
        raise PtsemsegError(f"model {cfg['model']['arch']} also takes {', '.join(missing)}: give --input "
                            f"{missing[0]}=FILE.npy ({key_spec(missing[0]).description})")
    if cfg["data"]["img_rows"] != "same":
        sample = resize_sample(sample, (cfg["data"]["img_rows"], cfg["data"]["img_cols"]))
    augmentations = get_composed_augmentations(cfg["training"]["augmentations"], evaluation=True)
    if augmentations is not None:
        sample = augmentations(sample, np.random.default_rng(0))
    return to_tensor(sample, cfg["data"]["img_norm"])


def input_picture(key, tensor):
    """An input map as H×W×3 uint8 for display: colour keys stretched, metric keys as a depth colour map."""
    import numpy as np

    from ptsemseg.schema import key_spec
    from ptsemseg.visualize import colorize_depth, image_to_uint8

    if key_spec(key).channels == 3:
        return image_to_uint8(tensor)
    values = tensor.detach().float().cpu().numpy()[0]
    return colorize_depth(values, max(float(np.percentile(values, 99)), 1e-6))


def saliency_figure(sample, maps, row, col, title):
    """Per input key: the input with the target pixel marked, its saliency map, and the map over the input."""
    import numpy as np
    from matplotlib.figure import Figure

    keys = list(maps)
    height, width = maps[keys[0]].shape
    panel = 4.0
    figure = Figure(figsize=(3 * panel, len(keys) * panel * height / width + 0.6), layout="constrained")
    figure.suptitle(title)
    axes = figure.subplots(len(keys), 3, squeeze=False)
    for (input_axes, map_axes, overlay_axes), key in zip(axes, keys):
        picture = input_picture(key, sample[key])
        shown = normalized_crop(maps[key][None], (0, height, 0, width))[0].cpu().numpy()
        input_axes.imshow(picture)
        input_axes.set_title(f"input: {key}")
        image = map_axes.imshow(shown, cmap="viridis", vmin=0, vmax=1)
        map_axes.set_title(f"saliency of {key}")
        figure.colorbar(image, ax=map_axes, fraction=0.046, pad=0.02)
        overlay_axes.imshow(picture.mean(2), cmap="gray", vmin=0, vmax=255)
        overlay_axes.imshow(shown, cmap="inferno", alpha=np.clip(shown * 1.5, 0, 1))
        overlay_axes.set_title("saliency over the input")
        for ax in (input_axes, map_axes, overlay_axes):
            ax.plot(col, row, marker="*", markersize=14, color="red", markeredgecolor="white")
            ax.set_axis_off()
    return figure


def demo_main(args):
    """The saliency maps of one target pixel of one frame, as a picture and as arrays."""
    import io
    import os

    import numpy as np

    from ptsemseg.checkpoint import write_atomic
    from ptsemseg.config import load_config
    from ptsemseg.loaders import get_loader
    from ptsemseg.models import model_input_keys
    from ptsemseg.rundir import check_writable_dir

    cfg = load_config(args.config, args.opts)
    head = dense_head(cfg, args.head)
    check_writable_dir(args.out, "--out")
    model, device, run_autocast = load_saliency_model(cfg, args.model_path, head, args.channel)
    if args.image:
        sample = file_sample(cfg, args.image, args.input, model_input_keys(cfg["model"]))
        name = os.path.splitext(os.path.basename(args.image))[0]
    else:
        dataset = split_dataset(cfg, args.split)
        if not 0 <= args.index < len(dataset):
            raise PtsemsegError(f"--index {args.index}: split {cfg['data'][f'{args.split}_split']} has "
                                f"{len(dataset)} frames")
        sample = dataset[args.index]
        name = f"{args.split}{args.index}"
    row, col = args.pixel
    inputs = frame_inputs(sample, model, device, cfg["training"]["channels_last"])
    maps, output, channels = saliency_maps(model, inputs, head, [row], [col], args.channel, autocast=run_autocast,
                                           method=args.method)
    maps = {key: value[0] for key, value in maps.items()}
    channel = int(channels[0])
    value = float(output[0, channel, row, col])
    if output.shape[1] > 1:
        names = getattr(get_loader(cfg["data"]["dataset"]), "class_names", None) or []
        target = f"class {names[channel] if channel < len(names) else channel} (logit {value:.3g})"
    else:
        target = f"{head} {value:.3g}"
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"saliency_{file_stem(name)}_{head}_{row}_{col}")
    title = f"{cfg['model']['arch']} {head}, pixel (row {row}, col {col}): {target}"
    figure = saliency_figure(sample, maps, row, col, title)
    write_atomic(f"{stem}.png", lambda handle: figure.savefig(handle, format="png", dpi=100))
    arrays = io.BytesIO()
    np.savez(arrays, **{key: value.cpu().numpy() for key, value in maps.items()})
    write_atomic(f"{stem}.npz", lambda handle: handle.write(arrays.getvalue()))
    print(title)
    print(f"picture: {stem}.png; maps (|d output / d input|, max over channels): {stem}.npz")


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Pixel-wise saliency maps of segmentation and depth models "
                                                 "(docs/saliency.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of config keys (of both configs for iou), e.g. training.amp=false")
    shared.add_argument("--method", choices=METHODS, default="auto",
                        help="vmap: --chunk targets per backward pass; loop: one backward pass per target; auto "
                             "(default): vmap on a GPU, the loop on a CPU")
    shared.add_argument("--chunk", type=int, default=16,
                        help="target pixels per backward pass under vmap (default: 16)")
    sweep = argparse.ArgumentParser(add_help=False)
    sweep.add_argument("--split", choices=("train", "val", "test"), default="val",
                       help="which data.<split>_split to take frames from (default: val; the seed used train)")
    sweep.add_argument("--num_image", type=int, default=100, help="frames to evaluate (default: 100)")
    sweep.add_argument("--sample_rate", type=int, default=10,
                       help="a target pixel every this many pixels along both axes of the crop (default: 10)")
    sweep.add_argument("--crop", choices=CROPS, help="where targets and metrics lie: Garg crop or full frame "
                                                      "(default: garg on kitti, full elsewhere)")
    sweep.add_argument("--out", default="saliency", help="output folder (default: saliency)")

    demo = commands.add_parser("demo", parents=[shared], help="the saliency maps of one pixel, as a picture")
    demo.add_argument("--config", required=True)
    demo.add_argument("--model_path", required=True, help="checkpoint")
    source = demo.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="an image file, resized to the network's size")
    source.add_argument("--index", type=int, help="a frame of the config's --split instead")
    demo.add_argument("--input", action="append", default=[], metavar="KEY=FILE.npy",
                      help="another input of an RGB-D model for --image, e.g. depth=frame.npy (metres)")
    demo.add_argument("--split", choices=("train", "val", "test"), default="val")
    demo.add_argument("--pixel", type=int, nargs=2, required=True, metavar=("ROW", "COL"),
                      help="the target pixel in the network's input")
    demo.add_argument("--head", help="the output (default: the config's first per-pixel task)")
    demo.add_argument("--channel", type=int, help="the class whose logit to explain (default: the predicted one)")
    demo.add_argument("--out", default="saliency", help="output folder (default: saliency)")

    evaluate = commands.add_parser("eval", parents=[shared, sweep], help="activation range and density per pixel")
    evaluate.add_argument("--config", required=True)
    evaluate.add_argument("--model_path", required=True, help="checkpoint")
    evaluate.add_argument("--head", help="the output (default: the config's first per-pixel task)")
    evaluate.add_argument("--channel", type=int, help="explain this class's logit (default: the predicted one)")

    iou = commands.add_parser("iou", parents=[shared, sweep], help="IoU of seg and depth saliency regions")
    iou.add_argument("--seg-config", dest="seg_config", required=True)
    iou.add_argument("--seg-model", dest="seg_model", required=True, help="segmentation checkpoint")
    iou.add_argument("--seg-head", dest="seg_head", help="default: the seg config's first per-pixel task")
    iou.add_argument("--depth-config", dest="depth_config", required=True)
    iou.add_argument("--depth-model", dest="depth_model", required=True, help="depth checkpoint")
    iou.add_argument("--depth-head", dest="depth_head", help="default: the depth config's first per-pixel task")

    analysis = commands.add_parser("analysis", help="histograms and Wilcoxon tests, seg against depth")
    analysis.add_argument("--seg", required=True, help="CSV of eval on the segmentation model")
    analysis.add_argument("--depth", required=True, help="CSV of eval on the depth model, same pixels")
    analysis.add_argument("--iou", help="CSV of iou on the same models (optional)")
    analysis.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    analysis.add_argument("--out", default="saliency", help="output folder (default: saliency)")

    args = parser.parse_args(argv)
    for name in ("num_image", "sample_rate", "chunk"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be at least 1")
    {"demo": demo_main, "eval": eval_main, "iou": iou_main, "analysis": analysis_main}[args.command](args)
