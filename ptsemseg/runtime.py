"""Building what a config describes (datasets, model, device, precision) and running evaluation.

Shared by the trainer and the evaluation scripts so both read a config the same way.
"""
import contextlib
import random

import numpy as np
import torch
from tqdm import tqdm

from ptsemseg.augmentations import get_composed_augmentations
from ptsemseg.loaders import get_loader
from ptsemseg.models import get_model, model_inputs

DATASET_KEYS = ("dataset", "path", "train_split", "val_split", "test_split", "img_rows", "img_cols", "img_norm")


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_dataset(cfg, split, augment=False):
    """The dataset of `data.<split>` with the config's size, normalisation, options and (for training) augmentations."""
    data = cfg["data"]
    img_size = None if data["img_rows"] == "same" else (data["img_rows"], data["img_cols"])
    augmentations = get_composed_augmentations(cfg["training"]["augmentations"]) if augment else None
    options = {key: value for key, value in data.items() if key not in DATASET_KEYS}
    return get_loader(data["dataset"])(data["path"], split, task=cfg["task"], img_size=img_size,
                                       augmentations=augmentations, img_norm=data["img_norm"], **options)


def build_model(cfg, n_classes, device):
    model = get_model(cfg["model"], cfg["task"], n_classes).to(device)
    if cfg["training"]["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    return model


def native_bf16_cpu():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), so oneDNN's bf16 convs beat fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_speed_modes(training, device):
    """Replace `auto` (and `amp: true`) in `training.amp` / `training.channels_last` by the choice for `device`.

    `auto` is the fastest mode that still trains correctly, as measured by benchmarks/bench_models.py
    (BENCHMARKS.md): on a CPU with native bf16, bf16 autocast in channels_last; on other CPUs fp32 (emulated bf16
    is slower); on CUDA, channels_last with bf16 autocast where the GPU has bf16, else fp16 (the usual choice on
    tensor-core GPUs, not measured by this project's benchmark runs). `amp: true` means bf16 on CPU, fp16 on CUDA.
    bf16 is safe for every architecture: FCN-8s's upsamplers with fewer than 16 classes, whose bf16 kernels were
    seen to corrupt the heap, compute in fp32 inside the model (models/_utils.py, NarrowFp32ConvTranspose2d).
    The concrete values are written back, so the run directory's config.yaml records what ran.
    """
    cuda = device.type == "cuda"
    fast_cpu = not cuda and native_bf16_cpu()
    if training["amp"] == "auto" and cuda:
        training["amp"] = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif training["amp"] == "auto":
        training["amp"] = "bf16" if fast_cpu else False
    elif training["amp"] is True:
        training["amp"] = "fp16" if cuda else "bf16"
    elif not training["amp"]:
        training["amp"] = False
    if training["channels_last"] == "auto":
        training["channels_last"] = cuda or fast_cpu
    training["channels_last"] = bool(training["channels_last"])
    return training


def autocast(cfg, device):
    """The autocast context of a resolved `training.amp` (false, bf16 or fp16; see resolve_speed_modes)."""
    amp = cfg["training"]["amp"]
    if not amp:
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch, device, channels_last=False):
    """Move the batch's tensors to `device` (images in channels_last when asked)."""
    moved = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.dim() == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


@torch.no_grad()
def evaluate(model, loader, task, metrics, cfg, device, progress=False):
    """Run `model` over `loader`, accumulate `metrics`; returns (scores, last batch, last prediction)."""
    was_training = model.training
    model.eval()
    metrics.reset()
    batch = prediction = None
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress):
        batch = to_device(batch, device, cfg["training"]["channels_last"])
        with autocast(cfg, device):
            output = model(*model_inputs(model, batch))
        prediction = task.predict(output.float())
        metrics.update(prediction, batch[task.target_key])
    model.train(was_training)
    return metrics.compute(), batch, prediction


def n_classes_of(dataset):
    """Class count of a dataset (1 for depth-only datasets that define none)."""
    return dataset.n_classes or 1


def eval_loader(cfg, dataset, device):
    """A deterministic loader over an evaluation split (one image per batch at native size)."""
    training = cfg["training"]
    batch_size = training["val_batch_size"] or (training["batch_size"] if cfg["data"]["img_rows"] != "same" else 1)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=training["n_workers"],
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))

