"""Device and precision: which device a run uses, what `auto` picks for bf16/fp16 autocast and channels_last,
and moving batches there."""
import contextlib

import torch

from ptsemseg.errors import PtsemsegError


def resolve_device(name):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PtsemsegError("training.device is cuda, but PyTorch finds no usable CUDA GPU here: use auto or cpu")
    return torch.device(name)


def native_bf16_cpu():
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles), so oneDNN's bf16 convs beat fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_speed_modes(training, device, arch=None):
    """Replace `auto` (and `amp: true`) in `training.amp` / `training.channels_last` by the choice for `device`.

    `auto` is the fastest mode that still trains correctly, as measured by benchmarks/bench_models.py
    (BENCHMARKS.md): on a CPU with native bf16, bf16 autocast in channels_last; on other CPUs fp32 (emulated bf16
    is slower); on CUDA, channels_last with bf16 autocast where the GPU has bf16, else fp16 (the usual choice on
    tensor-core GPUs; the GPU runs of BENCHMARKS.md trained in it without fault, its speed against fp32 is not
    measured there). `amp: true` means bf16 on CPU, fp16 on CUDA.
    bf16 is safe for every architecture: FCN-8s's upsamplers with fewer than 16 classes, whose bf16 kernels were
    seen to corrupt the heap, compute in fp32 inside the model (models/_utils.py, NarrowFp32ConvTranspose2d).
    An architecture whose builder sets `cpu_bf16_safe = False` gets fp32 from `auto` on a CPU (DispNet: its weights
    turned NaN within 2 steps in bf16 autocast at small inputs, nondeterministically; fp32 never did, BENCHMARKS.md).
    The concrete values are written back, so the run directory's config.yaml records what ran.
    """
    from ptsemseg.models import MODELS

    cuda = device.type == "cuda"
    fast_cpu = not cuda and native_bf16_cpu()
    bf16_safe = arch is None or getattr(MODELS.get(arch), "cpu_bf16_safe", True)
    if training["amp"] == "auto" and cuda:
        training["amp"] = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    elif training["amp"] == "auto":
        training["amp"] = "bf16" if fast_cpu and bf16_safe else False
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
