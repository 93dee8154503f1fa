"""Depth losses on predictions and targets N×1×H×W in metres (target 0 = invalid, predictions positive).

Every loss is a masked mean over the valid pixels (target > 0): the denominator is the number of valid
pixels. (The seed divided by the number of *invalid* pixels and used a signed Huber residual; both are
fixed here.) A batch without any valid pixel gives a zero loss that still backpropagates.

`smooth: true` adds the seed's second-order smoothness term of the whole prediction divided by 1000.
The seed switched it on by default; here it is off unless asked for.
"""
import torch
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.losses import LOSSES

SMOOTH_WEIGHT = 1e-3
BERHU_THRESHOLD = 0.2  # c = 0.2 · the batch's largest valid residual (Laina et al.)
LOG_FLOOR = 1e-3  # depths are clamped here before taking logs


def valid_residual_inputs(pred, target):
    """The valid mask, and the prediction with invalid pixels replaced by the target (residual exactly 0 there)."""
    if pred.shape != target.shape:
        raise PtsemsegError(f"depth loss needs prediction and target of the same shape N×1×H×W, "
                            f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    valid = target > 0
    return valid, torch.where(valid, pred, target)


def masked_mean(per_pixel, valid):
    """Sum over valid pixels / their count (0 when there are none)."""
    return torch.where(valid, per_pixel, 0.0).sum() / valid.sum().clamp_min(1)


def _mean_abs(values):
    return values.abs().sum() / max(values.numel(), 1)


def second_order_smoothness(pred):
    """mean|∂xx| + mean|∂xy| + mean|∂yx| + mean|∂yy| of the prediction (finite differences).

    The two mixed differences are equal, so this is mean|∂xx| + 2·mean|∂xy| + mean|∂yy|, as in the seed.
    """
    dx = pred[..., :, 1:] - pred[..., :, :-1]
    dy = pred[..., 1:, :] - pred[..., :-1, :]
    dxx = dx[..., :, 1:] - dx[..., :, :-1]
    dxy = dx[..., 1:, :] - dx[..., :-1, :]
    dyy = dy[..., 1:, :] - dy[..., :-1, :]
    return _mean_abs(dxx) + 2 * _mean_abs(dxy) + _mean_abs(dyy)


def _with_smoothness(loss, smooth):
    if not isinstance(smooth, bool):
        raise PtsemsegError(f"depth loss option smooth must be true or false, got {smooth!r}")
    if not smooth:
        return loss
    return lambda pred, target: loss(pred, target) + SMOOTH_WEIGHT * second_order_smoothness(pred)


@LOSSES.register("l1_loss")
def l1_loss(smooth=False):
    """Mean absolute error over valid pixels."""

    def loss(pred, target):
        valid, pred = valid_residual_inputs(pred, target)
        return masked_mean((pred - target).abs(), valid)

    return _with_smoothness(loss, smooth)


@LOSSES.register("berhu_loss")
def berhu_loss(smooth=False):
    """Reverse Huber: |r| up to c, (r² + c²)/2c beyond, c = 0.2 · max |r| over the batch's valid pixels.

    c is a constant of the batch (no gradient through the max).
    """

    def loss(pred, target):
        valid, pred = valid_residual_inputs(pred, target)
        residual = (pred - target).abs()
        c = (BERHU_THRESHOLD * residual.max()).detach().clamp_min(1e-6)
        per_pixel = torch.where(residual <= c, residual, (residual ** 2 + c ** 2) / (2 * c))
        return masked_mean(per_pixel, valid)

    return _with_smoothness(loss, smooth)


@LOSSES.register("huber_loss")
def huber_loss(delta=1.0, smooth=False):
    """Huber on |residual|: r²/2 up to `delta`, delta·(|r| − delta/2) beyond (delta = 1 is the seed's threshold)."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta <= 0:
        raise PtsemsegError(f"huber_loss delta must be a positive number, got {delta!r}")

    def loss(pred, target):
        valid, pred = valid_residual_inputs(pred, target)
        return masked_mean(F.huber_loss(pred, target, reduction="none", delta=delta), valid)

    return _with_smoothness(loss, smooth)


@LOSSES.register("scale_invariant_loss")
def scale_invariant_loss(variance_focus=0.85, smooth=False):
    """Eigen et al. (2014) scale-invariant log loss, per image, averaged over images with valid pixels.

    With d = log pred − log target over an image's n valid pixels: mean(d²) − λ·mean(d)², where λ is the
    YAML key `variance_focus` (`lambda` is a Python keyword). λ = 1 (the seed's form) is blind to a global
    scale of each image, so a model trained with it alone never learns metric depth (abs_rel stays near
    whatever scale it starts at); the default 0.85 (Lee et al., BTS) keeps a little of the log MSE to fix the
    scale. λ = 0 is the plain log MSE. Depths are clamped at 1e-3 before the log.
    """
    if isinstance(variance_focus, bool) or not isinstance(variance_focus, (int, float)):
        raise PtsemsegError(f"scale_invariant_loss variance_focus must be a number, got {variance_focus!r}")

    def loss(pred, target):
        valid, pred = valid_residual_inputs(pred, target)
        log_diff = torch.where(valid, pred.clamp_min(LOG_FLOOR).log() - target.clamp_min(LOG_FLOOR).log(), 0.0)
        n_valid = valid.flatten(1).sum(1)
        count = n_valid.clamp_min(1)
        mean_sq, mean = (log_diff ** 2).flatten(1).sum(1) / count, log_diff.flatten(1).sum(1) / count
        per_image = mean_sq - variance_focus * mean ** 2
        has_valid = n_valid > 0
        return torch.where(has_valid, per_image, 0.0).sum() / has_valid.sum().clamp_min(1)

    return _with_smoothness(loss, smooth)
