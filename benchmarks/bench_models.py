"""Size, cost and speed of every registered architecture for both tasks, in each precision / memory-format mode.

For each architecture (default full-size options, `pretrained: none`; one name per distinct model, so aliases and
`frrn` = `frrnB` collapse) and task (seg with --classes outputs, depth with 1) it reports:
- parameters;
- GFLOPs of one eval forward at batch 1 and --flops-size, counted by torch.utils.flop_counter.FlopCounterMode on the
  meta device (no memory, no compute). FlopCounterMode counts 2 FLOPs per multiply-add of convolutions and matrix
  products only (pooling, normalisation, activations, interpolation and unpooling are not counted); GMACs = GFLOPs / 2;
- forward latency: eval mode, no_grad, batch 1 at --size, median over --iters after --warmup;
- train-step throughput in images/s: train mode, batch --batch at --size, forward + the task's default loss (seg
  cross_entropy, depth scale_invariant_loss) summed over every output the model returns in train mode (the head,
  then its auxiliary outputs `<task>/<aux>`, weights 0.4^i) + backward + Adam step, as the trainer runs it (median
  step time over --iters);
for the modes fp32 (eager, contiguous), channels_last, bf16 (autocast) and channels_last+bf16 (on CUDA also fp16 and
channels_last+fp16). Within one architecture and task the modes are interleaved round-robin, each repetition
starting at the next mode, and a mode's ratio is the median over repetitions of (fp32 time / mode time) in that
repetition, so load changes on a shared machine hit every mode alike. Ratio > 1 means faster than fp32.

A mode is correct when, on the same weights and input as fp32, its eval output is close (seg: argmax agrees on at
least 99% of pixels or the relative L2 error is below 5e-2; depth: relative L2 error below 5e-2) and its train-mode
loss is finite and within 5e-2 (relative) of fp32's. The weights are random (seeded, then one fp32 Adam step), not
trained.
The last lines count, per measure, the architectures for which each mode was the fastest correct one, and compare
with what `training.amp: auto` / `training.channels_last: auto` choose on this device (ptsemseg.device).

    python benchmarks/bench_models.py [--archs deeplab fcrn] [--tasks seg depth] [--size 256x512] [--batch 2]
        [--iters 5] [--warmup 2] [--device cpu|cuda] [--json results.json] [--markdown] [--flops-only]

The CPU run behind BENCHMARKS.md (2 cores, 15-25 minutes; GFLOPs at 256x512, timing at 128x256). On a machine that
other jobs share, give --threads so that threads + load stay within the cores: OpenMP threads that wait for a busy
core make the times vary several-fold.

    python benchmarks/bench_models.py --size 128x256 --batch 2 --iters 5 --warmup 2 --markdown \
        --json bench_models_cpu.json
"""
import argparse
import copy
import gc
import inspect
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ptsemseg.losses import LOSSES  # noqa: E402
from ptsemseg.models import MODELS, get_model, model_inputs  # noqa: E402
from ptsemseg.device import autocast, native_bf16_cpu, resolve_speed_modes, to_device  # noqa: E402
from ptsemseg.models._inputs import example_inputs  # noqa: E402
from ptsemseg.tasks import get_task_class  # noqa: E402

TASKS = ("seg", "depth")
SEG_AGREEMENT = 0.99  # fraction of pixels whose argmax must match fp32's (seg)
REL_L2_TOLERANCE = 5e-2  # relative L2 error of the eval output against fp32's
LOSS_TOLERANCE = 5e-2  # relative difference of the train-mode loss against fp32's
OPTIONS = {"pretrained": "none"}  # what every builder that has the option gets: no weight download, random init


@dataclass(frozen=True)
class Mode:
    name: str
    channels_last: bool
    amp: object  # False, "bf16" or "fp16" (the values of a resolved training.amp)


def modes_for(device):
    """The modes measured on `device`; fp32 first (the reference)."""
    modes = [Mode("fp32", False, False), Mode("channels_last", True, False), Mode("bf16", False, "bf16"),
             Mode("channels_last+bf16", True, "bf16")]
    if device.type == "cuda":
        modes += [Mode("fp16", False, "fp16"), Mode("channels_last+fp16", True, "fp16")]
    return modes


def default_mode(device):
    """The mode `training.amp: auto` and `training.channels_last: auto` resolve to on `device`."""
    training = resolve_speed_modes({"amp": "auto", "channels_last": "auto"}, device)
    for mode in modes_for(device):
        if (mode.amp, mode.channels_last) == (training["amp"], training["channels_last"]):
            return mode.name
    return f"amp={training['amp']}, channels_last={training['channels_last']}"


def builder_options(arch):
    """OPTIONS restricted to the keyword arguments the builder of `arch` takes."""
    params = inspect.signature(MODELS.get(arch)).parameters
    return {key: value for key, value in OPTIONS.items() if key in params}


def head_channels(task, n_classes):
    """Output channels of the task's head on a dataset of `n_classes` classes (seg: n_classes, depth: 1)."""
    return get_task_class(task).channels_of(SimpleNamespace(n_classes=n_classes))


def build(arch, task, n_classes, device="cpu", options=None):
    """The architecture with the head of `task` on `device`, at its default options unless `options` (model.* keys)
    says otherwise."""
    with torch.device(device):
        return get_model({"arch": arch, **builder_options(arch), **(options or {})},
                         {task: head_channels(task, n_classes)})


def task_loss(task):
    """The loss of one output: the task's default loss, from the loss registry."""
    options = dict(get_task_class(task).default_loss)
    return LOSSES.get(options.pop("name"))(**options)


def outputs_loss(loss, outputs, target):
    """`loss` summed over a model's output dict (the head, then its auxiliary outputs, weights 0.4^i), each output
    in float32 and bilinearly resized to the target's size."""
    total = 0.0
    for i, output in enumerate(outputs.values()):
        output = output.float()
        if output.shape[-2:] != target.shape[-2:]:
            output = F.interpolate(output, size=target.shape[-2:], mode="bilinear", align_corners=False)
        total = total + 0.4 ** i * loss(output, target)
    return total


def distinct_archs():
    """One name per distinct model: aliases of a builder collapse to the longest name (fcn -> fcn8s), and names
    whose default models are identical collapse too (frrn builds frrnB by default)."""
    by_builder = {}
    for name in MODELS.names():
        by_builder.setdefault(MODELS.get(name), []).append(name)
    names = sorted(max(aliases, key=lambda name: (len(name), name)) for aliases in by_builder.values())
    by_model = {}
    for name in names:
        by_model.setdefault(repr(build(name, "seg", 19, device="meta")), []).append(name)
    return sorted(max(same, key=lambda name: (len(name), name)) for same in by_model.values())


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def count_flops(model, size, device="meta"):
    """FLOPs (FlopCounterMode: 2 per multiply-add) of one eval forward of `model` at batch 1 and size=(H, W)."""
    was_training = model.training
    model.eval()
    inputs = example_inputs(getattr(model, "input_keys", ("image",)), 1, size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*inputs)
    model.train(was_training)
    return counter.get_total_flops()


def size_and_flops(arch, task, n_classes, flops_size, options=None):
    """Parameters and GFLOPs (batch 1, eval) of an architecture, from a model on the meta device."""
    model = build(arch, task, n_classes, device="meta", options=options)
    flops = count_flops(model, flops_size)
    return {"arch": arch, "task": task, "n_outputs": head_channels(task, n_classes),
            "params": count_params(model), "flops": flops, "gflops": flops / 1e9, "gmacs": flops / 2e9,
            "flops_size": list(flops_size)}


def make_batch(task, n_classes, batch, size, device, seed=0, input_keys=("image",)):
    """Random images in [0, 1] and targets: class ids (seg) or depths in 0.5..10 m (depth); the model's other input
    keys (an RGB-D model's depth or HHA) as the schema shapes them, in [0, 1] or 0.5..10 m for metric keys."""
    gen = torch.Generator().manual_seed(seed)
    sample = {"image": torch.rand(batch, 3, *size, generator=gen)}
    if task == "seg":
        sample["label"] = torch.randint(0, n_classes, (batch, *size), generator=gen)
    else:
        sample["depth"] = 0.5 + 9.5 * torch.rand(batch, 1, *size, generator=gen)
    sample = {key: value.to(device) for key, value in sample.items()}
    extra = [key for key in input_keys if key not in sample]
    sample.update(zip(extra, example_inputs(extra, batch, size, device=device, generator=gen)))
    return sample


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mode_cfg(mode):
    """The part of a resolved config that device.autocast reads."""
    return {"training": {"amp": mode.amp, "channels_last": mode.channels_last}}


def compare_outputs(task, output, reference):
    """Relative L2 error, max abs difference relative to max |reference|, and (seg) argmax agreement."""
    output, reference = output.float(), reference.float()
    diff = (output - reference).double()
    norm = reference.double().norm().item()
    rel_l2 = diff.norm().item() / norm if norm > 0 else (0.0 if diff.abs().max().item() == 0 else float("inf"))
    scale = reference.abs().max().item()
    max_abs = diff.abs().max().item()
    max_rel_diff = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    result = {"rel_l2": rel_l2, "max_rel_diff": max_rel_diff, "finite": bool(torch.isfinite(output).all())}
    if task == "seg":
        result["argmax_agreement"] = (output.argmax(1) == reference.argmax(1)).double().mean().item()
    return result


def is_close(task, comparison):
    if not comparison["finite"]:
        return False
    if task == "seg" and comparison["argmax_agreement"] >= SEG_AGREEMENT:
        return True
    return comparison["rel_l2"] < REL_L2_TOLERANCE


class Runner:
    """Models, optimizers and inputs of one architecture and task in every mode.

    The weights are the seeded initialisation after one fp32 training step, so that zero-initialised layers (FCN-8s'
    score layers) do not make the output trivially equal in every mode. Two copies of the model hold these weights:
    a contiguous one (fp32, bf16, fp16) and a channels_last one, each with its own Adam whose state follows the
    parameters' memory format.
    """

    def __init__(self, arch, task, n_classes, size, batch, device, modes, seed=0, options=None):
        self.task, self.device, self.modes = get_task_class(task), device, modes
        torch.manual_seed(seed)
        self.models = {False: build(arch, task, n_classes, options=options).to(device)}
        self.optimizers = {False: torch.optim.Adam(self.models[False].parameters(), lr=1e-4)}
        self.scalers = {mode.name: torch.amp.GradScaler(device.type,
                                                        enabled=mode.amp == "fp16" and device.type == "cuda")
                        for mode in modes}
        self.loss_fn = task_loss(task)
        input_keys = getattr(self.models[False], "input_keys", ("image",))
        eval_batch = make_batch(task, n_classes, 1, size, device, seed=seed + 1, input_keys=input_keys)
        train_batch = make_batch(task, n_classes, batch, size, device, seed=seed + 2, input_keys=input_keys)
        self.eval_batches = {False: eval_batch}
        self.train_batches = {False: train_batch}
        self.train_step(modes[0])
        if any(mode.channels_last for mode in modes):
            self.models[True] = copy.deepcopy(self.models[False]).to(memory_format=torch.channels_last)
            self.optimizers[True] = torch.optim.Adam(self.models[True].parameters(), lr=1e-4)
            self.eval_batches[True] = to_device(eval_batch, device, channels_last=True)
            self.train_batches[True] = to_device(train_batch, device, channels_last=True)

    def forward(self, mode):
        """The eval output of the task's head."""
        model = self.models[mode.channels_last].eval()
        with torch.no_grad(), autocast(mode_cfg(mode), self.device):
            return model(*model_inputs(model, self.eval_batches[mode.channels_last]))[self.task.name]

    def train_loss(self, mode, seed=0):
        """The train-mode loss of the current weights (no step; the same dropout draws in every mode)."""
        model = self.models[mode.channels_last].train()
        batch = self.train_batches[mode.channels_last]
        torch.manual_seed(seed)
        with torch.no_grad(), autocast(mode_cfg(mode), self.device):
            return outputs_loss(self.loss_fn, model(*model_inputs(model, batch)), batch[self.task.target_key]).float()

    def train_step(self, mode):
        """One training iteration as the trainer runs it; returns the (detached) loss."""
        model = self.models[mode.channels_last].train()
        optimizer, scaler = self.optimizers[mode.channels_last], self.scalers[mode.name]
        batch = self.train_batches[mode.channels_last]
        with autocast(mode_cfg(mode), self.device):
            loss = outputs_loss(self.loss_fn, model(*model_inputs(model, batch)), batch[self.task.target_key])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()


def describe_error(err):
    """`Type: first line of the message` (at most 200 characters of it)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def check_correctness(runner):
    """Per mode: eval output and train-mode loss against fp32's on the same weights and inputs (before timing).

    Every eval forward runs before any train-mode one, which updates the BN running statistics.
    """
    checks, losses = {}, {}
    reference = runner.forward(runner.modes[0]).float()
    for mode in runner.modes:
        try:
            checks[mode.name] = compare_outputs(runner.task.name, runner.forward(mode), reference)
        except Exception as err:  # noqa: BLE001 - an op a mode lacks on this device makes the mode incorrect
            checks[mode.name] = {"correct": False, "error": describe_error(err)}
    for mode in runner.modes:
        if "error" in checks[mode.name]:
            continue
        try:
            losses[mode.name] = runner.train_loss(mode).item()
        except Exception as err:  # noqa: BLE001
            checks[mode.name] = {"correct": False, "error": describe_error(err)}
    reference_loss = losses.get(runner.modes[0].name, float("nan"))
    for name, loss in losses.items():
        check = checks[name]
        check["loss"] = loss
        check["loss_rel_diff"] = abs(loss - reference_loss) / max(abs(reference_loss), 1e-12)
        check["correct"] = bool(is_close(runner.task.name, check) and check["loss_rel_diff"] < LOSS_TOLERANCE)
    return checks


def interleaved_times(function, modes, device, iters, warmup):
    """Seconds per call of function(mode) for every mode: `warmup` + `iters` repetitions, each calling every mode
    once, starting at the next mode each time; returns {mode name: [times of the timed repetitions]}."""
    times = {mode.name: [] for mode in modes}
    for repetition in range(warmup + iters):
        shift = repetition % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            synchronize(device)
            start = time.perf_counter()
            function(mode)
            synchronize(device)
            if repetition >= warmup:
                times[mode.name].append(time.perf_counter() - start)
    return times


def ratios(times, reference):
    """Per mode, the median over repetitions of reference time / mode time (same repetition)."""
    return {name: statistics.median(ref / t for ref, t in zip(times[reference], values))
            for name, values in times.items()}


def benchmark(arch, task, n_classes=19, size=(256, 512), batch=2, iters=5, warmup=2, device="cpu", modes=None,
              flops_size=(256, 512), options=None):
    """All measures of one architecture and task; see the module docstring. Returns a JSON-ready dict.

    `options`: model.* keys replacing the defaults (the tests use small backbones)."""
    device = torch.device(device)
    modes = modes or modes_for(device)
    result = size_and_flops(arch, task, n_classes, flops_size, options)
    result.update({"options": dict(options or {}), "size": list(size), "batch": batch, "iters": iters,
                   "warmup": warmup, "modes": {}})
    runner = Runner(arch, task, n_classes, size, batch, device, modes, options=options)
    try:
        checks = check_correctness(runner)
        usable = [mode for mode in modes if "error" not in checks[mode.name]]
        latency = interleaved_times(runner.forward, usable, device, iters, warmup)
        losses = {mode.name: [] for mode in usable}
        step_times = interleaved_times(lambda mode: losses[mode.name].append(runner.train_step(mode)),
                                       usable, device, iters, warmup)
    finally:
        del runner
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    reference = modes[0].name
    latency_ratio, train_ratio = ratios(latency, reference), ratios(step_times, reference)
    for mode in modes:
        entry = dict(checks[mode.name])
        if mode.name in latency:
            finite = bool(all(torch.isfinite(loss).item() for loss in losses[mode.name]))
            entry.update({
                "latency_ms": 1e3 * statistics.median(latency[mode.name]),
                "latency_ratio": latency_ratio[mode.name],
                "train_images_per_s": batch / statistics.median(step_times[mode.name]),
                "train_ratio": train_ratio[mode.name],
                "train_loss_finite": finite,
            })
            entry["correct"] = bool(entry["correct"] and finite)
        else:
            entry.update({"latency_ms": None, "latency_ratio": None, "train_images_per_s": None,
                          "train_ratio": None, "train_loss_finite": False})
        result["modes"][mode.name] = entry
    result["fastest_correct"] = {measure: fastest_correct(result, measure) for measure in ("latency", "train")}
    return result


def fastest_correct(result, measure):
    """The correct mode with the highest `measure`_ratio (None when no mode is correct)."""
    candidates = [(entry[f"{measure}_ratio"], name) for name, entry in result["modes"].items()
                  if entry["correct"] and entry[f"{measure}_ratio"] is not None]
    return max(candidates)[1] if candidates else None


def parse_size(text):
    try:
        rows, cols = (int(value) for value in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 256x512, got {text!r}") from None
    return rows, cols


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return name


def environment(device):
    env = {"torch": torch.__version__, "device": device.type, "device_name": device_name(device),
           "threads": torch.get_num_threads(), "default_mode": default_mode(device)}
    if device.type == "cpu":
        env["native_bf16"] = native_bf16_cpu()
        env["cpu_count"] = os.cpu_count()
        env["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    else:
        env["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
        env["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return env


def describe_environment(env, args):
    lines = [f"torch {env['torch']}, device {env['device']}: {env['device_name']}"]
    if env["device"] == "cpu":
        lines[0] += f", torch.get_num_threads() = {env['threads']} of {env['cpu_count']} CPUs, " \
                    f"native bf16: {env['native_bf16']}"
        load = env["load_average"]
        if load is not None:
            lines[0] += f", load average {load:.1f} at the start"
        if not args.flops_only and load is not None and load + env["threads"] > env["cpu_count"] + 0.5:
            lines.append("warning: other processes are using the CPUs; threads that wait for a busy core make times "
                         "vary several-fold (use --threads so that threads + load <= CPUs, or stop the other jobs)")
    else:
        lines[0] += f", TF32 in fp32 convs: {env['cudnn_tf32']}, in fp32 matmuls: {env['matmul_tf32']}"
    lines.append(f"GFLOPs: one eval forward, batch 1, {args.flops_size[0]}x{args.flops_size[1]}, counted by "
                 "torch.utils.flop_counter.FlopCounterMode (2 FLOPs per multiply-add; convolutions and matrix "
                 "products only); GMACs = GFLOPs / 2")
    if not args.flops_only:
        lines.append(f"timing at {args.size[0]}x{args.size[1]}: forward = eval, no_grad, batch 1, median of "
                     f"{args.iters} after {args.warmup} warm-up; train = forward + default loss on all outputs + "
                     f"backward + Adam, batch {args.batch}, images/s from the median step; ×N = fp32 time / mode "
                     "time (median of per-repetition ratios, modes interleaved); ✗ = not correct")
        lines.append(f"correct: eval output vs fp32 on the same weights (seg: argmax agreement >= {SEG_AGREEMENT:.0%} "
                     f"or relative L2 < {REL_L2_TOLERANCE:g}; depth: relative L2 < {REL_L2_TOLERANCE:g}) and "
                     f"train loss finite and within {LOSS_TOLERANCE:g} of fp32's (random weights after one fp32 step)")
    return lines


def format_table(rows, markdown):
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in rows[1:]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def table(results, mode_names, markdown=False, flops_only=False):
    """One row per architecture and task: size, cost, and per measure the fp32 figure and the other modes' ratios."""
    header = ["arch", "task", "params", "GFLOPs", "GMACs"]
    if not flops_only:
        header += ["fwd fp32 ms"] + [f"fwd {name}" for name in mode_names[1:]]
        header += ["train fp32 img/s"] + [f"train {name}" for name in mode_names[1:]]
        header += ["fastest correct fwd / train"]
    rows = [header]
    for result in results:
        row = [result["arch"], result["task"], f"{result['params']:,}", f"{result['gflops']:.1f}",
               f"{result['gmacs']:.1f}"]
        if not flops_only:
            if "error" in result:
                row += ["error: " + result["error"]] + [""] * (len(header) - len(row) - 1)
                rows.append(row)
                continue
            modes = result["modes"]
            for measure, unit in (("latency", "latency_ms"), ("train", "train_images_per_s")):
                reference = modes[mode_names[0]]
                value = reference[unit]
                row.append("—" if value is None else f"{value:.1f}" + ("" if reference["correct"] else " ✗"))
                for name in mode_names[1:]:
                    ratio = modes[name][f"{measure}_ratio"]
                    mark = "" if modes[name]["correct"] else " ✗"
                    row.append("—" if ratio is None else f"×{ratio:.2f}{mark}")
            fastest = result["fastest_correct"]
            row.append(f"{fastest['latency'] or '—'} / {fastest['train'] or '—'}")
        rows.append(row)
    return format_table(rows, markdown)


def correctness_table(results, mode_names, markdown=False):
    """Per architecture and task and per mode against fp32: relative L2 error of the eval output, (seg) argmax
    agreement, relative difference of the train-mode loss, and whether the mode counts as correct."""
    rows = [["arch", "task"] + [f"{name}: rel L2 / argmax / loss" for name in mode_names[1:]]]
    for result in results:
        if "error" in result:
            continue
        row = [result["arch"], result["task"]]
        for name in mode_names[1:]:
            entry = result["modes"][name]
            if "error" in entry:
                row.append("error: " + entry["error"])
                continue
            agreement = f"{entry['argmax_agreement']:.2%}" if "argmax_agreement" in entry else "—"
            row.append(f"{entry['rel_l2']:.1e} / {agreement} / {entry['loss_rel_diff']:.1e} "
                       + ("✓" if entry["correct"] else "✗"))
        rows.append(row)
    return format_table(rows, markdown)


def summary(results, mode_names, default):
    """Per measure, how many architecture/task pairs each mode was the fastest correct one for."""
    done = [result for result in results if "error" not in result]
    lines = []
    for measure, label in (("latency", "forward latency"), ("train", "train throughput")):
        counts = {name: 0 for name in mode_names}
        for result in done:
            best = result["fastest_correct"][measure]
            if best is not None:
                counts[best] += 1
        ranked = ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda item: -item[1]))
        lines.append(f"fastest correct mode for {label} ({len(done)} architecture/task pairs): {ranked}")
    agree = [sum(result["fastest_correct"][measure] == default for result in done) for measure in ("train", "latency")]
    lines.append(f"training.amp/channels_last 'auto' on this device = {default}: the fastest correct mode for "
                 f"{agree[0]} of {len(done)} in training, {agree[1]} of {len(done)} in forward latency")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--archs", nargs="+", help="architectures (default: every distinct registered one)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--classes", type=int, default=19, help="seg outputs (default 19)")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="timing input size HxW (default 256x512)")
    parser.add_argument("--flops-size", type=parse_size, default=(256, 512),
                        help="input size HxW of the FLOP count (default 256x512)")
    parser.add_argument("--batch", type=int, default=2, help="train-step batch (default 2; PSPNet needs >= 2)")
    parser.add_argument("--iters", type=int, default=5, help="timed repetitions per mode (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--modes", nargs="+", help="subset of the modes to time (fp32 is always included)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", help="write every result (and the environment) to this file")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for BENCHMARKS.md)")
    parser.add_argument("--flops-only", action="store_true", help="parameters and GFLOPs only (meta device, instant)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    archs = args.archs or distinct_archs()
    for arch in archs:
        if arch not in MODELS:
            parser.error(f"unknown architecture {arch!r} (registered: {', '.join(MODELS.names())})")
    modes = modes_for(device)
    if args.modes:
        unknown = sorted(set(args.modes) - {mode.name for mode in modes})
        if unknown:
            parser.error(f"unknown modes {unknown} on {device.type} (available: {[mode.name for mode in modes]})")
        modes = [mode for mode in modes if mode.name == "fp32" or mode.name in args.modes]
    mode_names = [mode.name for mode in modes]

    env = environment(device)
    for line in describe_environment(env, args):
        print(line, flush=True)
    results = []
    for arch in archs:
        for task in args.tasks:
            start = time.perf_counter()
            try:
                if args.flops_only:
                    result = size_and_flops(arch, task, args.classes, args.flops_size)
                else:
                    result = benchmark(arch, task, args.classes, args.size, args.batch, args.iters, args.warmup,
                                       device, modes, args.flops_size)
            except Exception as err:  # noqa: BLE001 - one failing architecture (out of memory...) must not end the run
                result = size_and_flops(arch, task, args.classes, args.flops_size)
                result["error"] = describe_error(err)
            result["seconds"] = time.perf_counter() - start
            results.append(result)
            print(f"[{len(results)}/{len(archs) * len(args.tasks)}] " + table([result], mode_names,
                  flops_only=args.flops_only)[-1] + f"  ({result['seconds']:.0f} s)", flush=True)
            if args.json:  # after every architecture, so an interrupted run keeps what it measured
                with open(args.json, "w", encoding="utf-8") as out:
                    json.dump({"environment": env, "args": {k: v for k, v in vars(args).items()},
                               "results": results}, out, indent=1)
    print()
    for line in table(results, mode_names, markdown=args.markdown, flops_only=args.flops_only):
        print(line)
    if not args.flops_only:
        print()
        for line in correctness_table(results, mode_names, markdown=args.markdown):
            print(line)
        print()
        for line in summary(results, mode_names, env["default_mode"]):
            print(line)
    return results


if __name__ == "__main__":
    main()
