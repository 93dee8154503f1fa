"""Depth scores under the Eigen protocol: metrics per image, then the mean over images.

Per image, the evaluated pixels are those with min_depth < gt < max_depth (with `cap_gt: false` every gt > 0,
as monodepth2 scores the annotated eigen_benchmark maps) inside the crop. The prediction is first multiplied by
`pred_depth_scale` (monodepth2's `pred_depth_scale_factor`: 5.4 for its stereo-trained models, whose depth is in
units of the stereo baseline; 1 by default). With `median_scaling` it is then multiplied by
median(gt) / median(pred) over those pixels (NumPy's median: the mean of the two middle values for an even
count); the prediction is then clamped to [min_depth, max_depth]. Median scaling also
reports the per-image ratios as monodepth2 prints them: their median `ratio_median` and the standard
deviation of ratio / median `ratio_std`, with their mean `ratio_mean`. With d = log pred − log gt:

- abs_rel = mean |pred − gt| / gt, sq_rel = mean (pred − gt)² / gt
- rmse = sqrt(mean (pred − gt)²), rmse_log = sqrt(mean d²), log10 = mean |log10 pred − log10 gt|
- silog = sqrt(mean d² − (mean d)²) · 100 (the Monocular-Depth-Estimation-Toolbox convention; MMSeg's
  DepthMetric uses 0.5·(mean d)² and no ×100, so its numbers are not comparable)
- delta_k = fraction of pixels with max(pred/gt, gt/pred) < 1.25^k, k = 1, 2, 3

Images without any evaluated pixel are skipped (`n_images` counts the others).

Crops (`CROPS`) are boxes of the ground truth's frame: `garg` (Garg et al. 2016; monodepth2's evaluation) and
`eigen` (Eigen et al. 2014; monodepth's) as fractions of the height and width truncated to integers, as
their code does; `nyu_eigen`, rows 45:471 and columns 41:601 of NYUv2's 480×640 frame (scaled, rounded down,
for another size); `cityscapes`, the seed project's rows 5–80 % and columns 5–99 % (no ego-vehicle hood, no left
border without stereo matches).
"""
import math
from dataclasses import dataclass

import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.metrics import METRICS

@dataclass(frozen=True)
class FractionCrop:
    """A box given as fractions (top, bottom, left, right) of the frame, truncated to whole pixels."""

    top: float
    bottom: float
    left: float
    right: float

    def bounds(self, height, width):
        return (int(self.top * height), int(self.bottom * height), int(self.left * width), int(self.right * width))


@dataclass(frozen=True)
class PixelCrop:
    """A box in pixels (top, bottom, left, right) of a frame of `size` (rows, cols), scaled to another size."""

    top: int
    bottom: int
    left: int
    right: int
    size: tuple

    def bounds(self, height, width):
        rows, cols = self.size
        return (self.top * height // rows, self.bottom * height // rows, self.left * width // cols,
                self.right * width // cols)


CROPS = {
    "garg": FractionCrop(0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": FractionCrop(0.3324324, 0.91351351, 0.0359477, 0.96405229),
    "nyu_eigen": PixelCrop(45, 471, 41, 601, size=(480, 640)),
    "cityscapes": FractionCrop(0.05, 0.80, 0.05, 0.99),
}

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")
RATIO_NAMES = ("ratio_median", "ratio_std", "ratio_mean")


def crop_mask(height, width, crop, device):
    """H×W boolean mask of the named crop (all True without one)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        return mask.fill_(True)
    top, bottom, left, right = CROPS[crop].bounds(height, width)
    mask[top:bottom, left:right] = True
    return mask


def masked_median(values, mask):
    """Per-image median of `values` (N×...) over `mask`; NaN for an image without masked pixels."""
    flat = torch.where(mask, values, math.inf).flatten(1).sort(1).values
    count = mask.flatten(1).sum(1)
    low = ((count - 1) // 2).clamp_min(0)
    high = (count // 2).clamp_max(flat.shape[1] - 1)
    median = (flat.gather(1, low[:, None]) + flat.gather(1, high[:, None]))[:, 0] / 2
    return torch.where(count > 0, median, math.nan)


@METRICS.register("depth")
class DepthMetrics:
    """Accumulates per-image depth metrics (see the module docstring for the exact conventions)."""

    def __init__(self, min_depth=1e-3, max_depth=80.0, crop=None, median_scaling=False, cap_gt=True,
                 pred_depth_scale=1.0):
        if crop is not None and crop not in CROPS:
            raise PtsemsegError(f"depth crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
        if not 0 < min_depth < max_depth:
            raise PtsemsegError(f"depth range needs 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        if not pred_depth_scale > 0:
            raise PtsemsegError(f"pred_depth_scale must be a positive number, got {pred_depth_scale}")
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.crop = crop
        self.median_scaling = median_scaling
        self.cap_gt = cap_gt
        self.pred_depth_scale = float(pred_depth_scale)
        self.sums = torch.zeros(len(METRIC_NAMES), dtype=torch.float64)
        self.n_images = torch.zeros((), dtype=torch.int64)
        self.ratios = torch.zeros(0, dtype=torch.float64)  # per image, with median scaling

    def reset(self):
        self.sums.zero_()
        self.n_images.zero_()
        self.ratios = self.ratios.new_zeros(0)

    def update(self, pred, target):
        """Add a batch of predicted and ground-truth depths, N×1×H×W in metres (gt 0 = invalid)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if self.sums.device != target.device:
            self.sums, self.n_images = self.sums.to(target.device), self.n_images.to(target.device)
            self.ratios = self.ratios.to(target.device)
        gt = target.double()
        pred = pred.to(target.device).double() * self.pred_depth_scale
        in_range = (gt > self.min_depth) & (gt < self.max_depth) if self.cap_gt else gt > 0
        valid = in_range & crop_mask(*gt.shape[-2:], self.crop, gt.device)
        if self.median_scaling:
            ratio = masked_median(gt, valid) / masked_median(pred, valid)
            finite = torch.isfinite(ratio)
            self.ratios = torch.cat([self.ratios, ratio[finite]])
            pred = pred * torch.where(finite, ratio, 1.0).view(-1, *[1] * (pred.dim() - 1))
        pred = pred.clamp(self.min_depth, self.max_depth)
        # Outside the evaluated pixels both are set to 1 so that every per-pixel term below is finite.
        gt = torch.where(valid, gt, 1.0)
        pred = torch.where(valid, pred, 1.0)
        count = valid.flatten(1).sum(1)

        def image_mean(per_pixel):
            return torch.where(valid, per_pixel, 0.0).flatten(1).sum(1) / count.clamp_min(1)

        log_diff = pred.log() - gt.log()
        mean_sq_log = image_mean(log_diff ** 2)
        ratio = torch.maximum(pred / gt, gt / pred)
        per_image = torch.stack([
            image_mean((pred - gt).abs() / gt),
            image_mean((pred - gt) ** 2 / gt),
            image_mean((pred - gt) ** 2).sqrt(),
            mean_sq_log.sqrt(),
            image_mean((pred.log10() - gt.log10()).abs()),
            (mean_sq_log - image_mean(log_diff) ** 2).clamp_min(0).sqrt() * 100,
            *(image_mean((ratio < 1.25 ** k).double()) for k in (1, 2, 3)),
        ], dim=1)
        evaluated = count > 0
        self.sums += torch.where(evaluated[:, None], per_image, 0.0).sum(0)
        self.n_images += evaluated.sum()

    def state(self):
        """Sums and counts (to add up across processes) and the median-scaling ratios (to concatenate)."""
        return {"sums": self.sums, "n_images": self.n_images, "ratios": self.ratios}

    def merge(self, state):
        self.sums += state["sums"].to(self.sums.device)
        self.n_images += state["n_images"].to(self.n_images.device)
        self.ratios = torch.cat([self.ratios, state["ratios"].to(self.ratios.device)])

    def compute(self):
        """The mean over evaluated images of each metric, and `n_images`; NaN metrics when no image counted.
        With median scaling also the ratios' median, spread and mean (`RATIO_NAMES`)."""
        n_images = int(self.n_images)
        means = (self.sums.cpu() / n_images).tolist() if n_images else [math.nan] * len(METRIC_NAMES)
        scores = {**dict(zip(METRIC_NAMES, means)), "n_images": n_images}
        if self.median_scaling:
            scores.update(zip(RATIO_NAMES, ratio_statistics(self.ratios.cpu())))
        return scores


def ratio_statistics(ratios):
    """(median, std of ratio / median, mean) of median-scaling ratios as monodepth2 reports them (NumPy's median
    and population std); NaN without ratios."""
    if not len(ratios):
        return (math.nan,) * 3
    median = float(masked_median(ratios[None], torch.ones(1, len(ratios), dtype=torch.bool))[0])
    return median, float((ratios / median).std(correction=0)), float(ratios.mean())
