"""Child process of tests/test_precision.py: one training step (forward, backward, fused Adam) per case.

Reads a JSON list of cases on stdin; a case is {"arch", "options", "task", "n_classes", "mode", "size"} with mode
one of MODES. Writes `start <i>` before and `ok <i>` or `fail <i> <error>` after case i to stderr, a whole line
at a time, so that the parent can name the case that took the process down (a heap corruption aborts or
segfaults the whole process); stdout is left to the libraries (oneDNN's verbose log). Consecutive cases that
differ only in size share one model.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ptsemseg.models import get_model  # noqa: E402
from ptsemseg.models._inputs import example_inputs  # noqa: E402
from ptsemseg.optimizers import get_optimizer  # noqa: E402
from ptsemseg.device import autocast  # noqa: E402

# mode -> (training.amp, training.channels_last)
MODES = {"fp32": (False, False), "channels_last": (False, True), "bf16": ("bf16", False),
         "bf16+channels_last": ("bf16", True)}
BATCH = 2  # batch norm in train mode needs more than one value per channel (PSPNet's 1×1 pyramid bin)


def build_model(arch, options, task, n_classes):
    """The model under test, with the one head of `task`."""
    return get_model({"arch": arch, **options}, {task: n_classes if task == "seg" else 1})


def loss_of(outputs, task, n_classes, generator):
    """The task's loss (cross-entropy or L1 against random targets) summed over the model's named outputs."""
    total = 0.0
    for out in outputs.values():
        out = out.float()
        if task == "seg":
            target = torch.randint(0, n_classes, (out.shape[0], *out.shape[2:]), generator=generator)
            total = total + F.cross_entropy(out, target)
        else:
            total = total + F.l1_loss(out, torch.rand(out.shape, generator=generator) + 0.5)
    return total


def train_step(model, optimizer, case, cfg, generator):
    rows, cols = case["size"]
    memory_format = torch.channels_last if cfg["training"]["channels_last"] else torch.contiguous_format
    inputs = [value.contiguous(memory_format=memory_format) if isinstance(value, torch.Tensor) else value
              for value in example_inputs(model.input_keys, BATCH, (rows, cols), generator=generator)]
    with autocast(cfg, torch.device("cpu")):
        loss = loss_of(model(*inputs), case["task"], case["n_classes"], generator)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss {loss.item()}")


def say(line):
    print(line, file=sys.stderr, flush=True)


def main():
    cases = json.load(sys.stdin)
    generator = torch.Generator().manual_seed(0)
    built_for = model = optimizer = None
    for index, case in enumerate(cases):
        say(f"start {index}")
        amp, channels_last = MODES[case["mode"]]
        cfg = {"training": {"amp": amp, "channels_last": channels_last}}
        key = (case["arch"], json.dumps(case["options"], sort_keys=True), case["task"], case["n_classes"], case["mode"])
        try:
            if key != built_for:
                built_for, model, optimizer = None, None, None
                torch.manual_seed(0)
                model = build_model(case["arch"], case["options"], case["task"], case["n_classes"]).train()
                if channels_last:
                    model = model.to(memory_format=torch.channels_last)
                optimizer = get_optimizer({"name": "adam", "lr": 1.0e-5}, model.parameters())
                built_for = key
            train_step(model, optimizer, case, cfg, generator)
        except Exception as err:  # noqa: BLE001 - any error is this case's failure; the next cases still run
            say(f"fail {index} {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        say(f"ok {index}")


if __name__ == "__main__":
    main()
