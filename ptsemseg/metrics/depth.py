"""Depth scores under the Eigen protocol: metrics per image, then the mean over images.

Per image, the evaluated pixels are those with min_depth < gt < max_depth inside the crop. With
`median_scaling` the prediction is first multiplied by median(gt) / median(pred) over those pixels
(NumPy's median: the mean of the two middle values for an even count); the prediction is then clamped
to [min_depth, max_depth]. With d = log pred − log gt:

- abs_rel = mean |pred − gt| / gt, sq_rel = mean (pred − gt)² / gt
- rmse = sqrt(mean (pred − gt)²), rmse_log = sqrt(mean d²), log10 = mean |log10 pred − log10 gt|
- silog = sqrt(mean d² − (mean d)²) · 100 (the Monocular-Depth-Estimation-Toolbox convention; MMSeg's
  DepthMetric uses 0.5·(mean d)² and no ×100, so its numbers are not comparable)
- delta_k = fraction of pixels with max(pred/gt, gt/pred) < 1.25^k, k = 1, 2, 3

Images without any evaluated pixel are skipped (`n_images` counts the others).
"""
import math

import torch

from ptsemseg.errors import PtsemsegError
from ptsemseg.metrics import METRICS

# Crops as fractions (top, bottom, left, right) of the image height and width; bounds are truncated to
# integers, as in the KITTI evaluation code that introduced them.
CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),  # Garg et al. (2016)
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),  # Eigen et al. (2014)
}

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")


def crop_mask(height, width, crop, device):
    """H×W boolean mask of the named crop (all True without one)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        return mask.fill_(True)
    top, bottom, left, right = CROPS[crop]
    mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
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

    def __init__(self, min_depth=1e-3, max_depth=80.0, crop=None, median_scaling=False):
        if crop is not None and crop not in CROPS:
            raise PtsemsegError(f"depth crop must be one of {', '.join(CROPS)} or none, got {crop!r}")
        if not 0 < min_depth < max_depth:
            raise PtsemsegError(f"depth range needs 0 < min_depth < max_depth, got {min_depth} and {max_depth}")
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.crop = crop
        self.median_scaling = median_scaling
        self.sums = torch.zeros(len(METRIC_NAMES), dtype=torch.float64)
        self.n_images = torch.zeros((), dtype=torch.int64)

    def reset(self):
        self.sums.zero_()
        self.n_images.zero_()

    def update(self, pred, target):
        """Add a batch of predicted and ground-truth depths, N×1×H×W in metres (gt 0 = invalid)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if self.sums.device != target.device:
            self.sums, self.n_images = self.sums.to(target.device), self.n_images.to(target.device)
        gt = target.double()
        pred = pred.to(target.device).double()
        valid = (gt > self.min_depth) & (gt < self.max_depth) & crop_mask(*gt.shape[-2:], self.crop, gt.device)
        if self.median_scaling:
            ratio = masked_median(gt, valid) / masked_median(pred, valid)
            pred = pred * torch.where(torch.isfinite(ratio), ratio, 1.0).view(-1, *[1] * (pred.dim() - 1))
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
        return {"sums": self.sums, "n_images": self.n_images}

    def merge(self, state):
        self.sums += state["sums"].to(self.sums.device)
        self.n_images += state["n_images"].to(self.n_images.device)

    def compute(self):
        """The mean over evaluated images of each metric, and `n_images`; NaN metrics when no image counted."""
        n_images = int(self.n_images)
        means = (self.sums.cpu() / n_images).tolist() if n_images else [math.nan] * len(METRIC_NAMES)
        return {**dict(zip(METRIC_NAMES, means)), "n_images": n_images}
