"""Segmentation losses on logits N×C×H×W and labels N×H×W (int64, `ignore_index` = 255 by default).

Options shared by both losses:
- `weight`: one weight per class (list). With averaging, the denominator is the sum of the weights of the
  labelled pixels (PyTorch's convention for weighted cross entropy).
- `size_average` (seed key): true averages over labelled pixels, false sums over them.

A batch with no labelled pixel gives a zero loss (not NaN) that still backpropagates.
"""
import torch
import torch.nn.functional as F

from ptsemseg.errors import PtsemsegError
from ptsemseg.losses import LOSSES


def _check_class_weight(weight):
    if weight is not None and not (isinstance(weight, (list, tuple))
                                   and all(isinstance(w, (int, float)) and w >= 0 for w in weight)):
        raise PtsemsegError(f"cross entropy weight must be a list of non-negative numbers (one per class), "
                            f"got {weight!r}")


def pixel_cross_entropy(logits, target, weight, ignore_index):
    """Per-pixel class-weighted cross entropy (N×H×W, 0 at ignored pixels) and each pixel's weight."""
    if weight is not None and len(weight) != logits.shape[1]:
        raise PtsemsegError(f"cross entropy weight has {len(weight)} values for {logits.shape[1]} classes")
    class_weight = None if weight is None else torch.tensor(weight, dtype=logits.dtype, device=logits.device)
    losses = F.cross_entropy(logits, target, weight=class_weight, ignore_index=ignore_index, reduction="none")
    labelled = target != ignore_index
    if class_weight is None:
        return losses, labelled.to(logits.dtype)
    return losses, class_weight[torch.where(labelled, target, 0)] * labelled


def _safe_denominator(total_weight):
    """The averaging denominator, 1 where nothing is labelled (the numerator is then 0)."""
    return torch.where(total_weight > 0, total_weight, torch.ones_like(total_weight))


@LOSSES.register("cross_entropy", "multi_scale_cross_entropy")
def cross_entropy(weight=None, size_average=True, ignore_index=255):
    """Pixel-wise cross entropy.

    `multi_scale_cross_entropy` is the seed's name for the same loss summed over a model's outputs with
    `scale_weight`; here every loss handles several outputs, so the two names build the same loss.
    """
    _check_class_weight(weight)

    def loss(logits, target):
        losses, pixel_weight = pixel_cross_entropy(logits, target, weight, ignore_index)
        if not size_average:
            return losses.sum()
        return losses.sum() / _safe_denominator(pixel_weight.sum())

    return loss


@LOSSES.register("bootstrapped_cross_entropy")
def bootstrapped_cross_entropy(K, weight=None, size_average=True, ignore_index=255):
    """Hard-pixel mining: per image, the mean of its K largest pixel losses (ignored pixels count as 0).

    With `size_average` the per-image values are averaged over the batch, otherwise summed. K larger than
    an image's pixel count uses all its pixels.
    """
    if isinstance(K, bool) or not isinstance(K, int) or K <= 0:
        raise PtsemsegError(f"bootstrapped_cross_entropy K must be a positive integer, got {K!r}")
    _check_class_weight(weight)

    def loss(logits, target):
        losses, _ = pixel_cross_entropy(logits, target, weight, ignore_index)
        per_pixel = losses.flatten(1)
        k = min(K, per_pixel.shape[1])
        per_image = per_pixel.topk(k, dim=1).values.sum(1) / k
        return per_image.mean() if size_average else per_image.sum()

    return loss
