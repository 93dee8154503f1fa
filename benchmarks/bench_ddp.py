"""Training throughput across processes (DDP) on CPU and, with `--device cuda`, per architecture on one GPU.

CPU (default): the train step of one architecture, as benchmarks/bench_models.py times it (forward + the task's
default loss on every output + backward + Adam, on random batches), in three set-ups on the same cores:
- 1 process × 1 thread, batch B;
- 1 process × N threads, batch N·B (what one process makes of all the cores, same global batch);
- N processes × 1 thread, batch B each: DistributedDataParallel over Gloo, gradients averaged every step.
Each set-up starts fresh processes (spawn); the set-ups run --repeats times round-robin, each round starting at
the next one, so that load from other jobs hits them alike. Step time: rank 0's median over --iters steps after
--warmup (under DDP the ranks wait for each other in the gradient all-reduce), then the median over rounds;
images/s = global batch / step time; speed-ups against the first two set-ups.

CUDA (`--device cuda`): for every architecture (or --archs), one GPU, batch B at --size (default 512x1024), the same
train step in fp32 (torch's defaults: TF32 in convolutions, not in matmuls) and in the mode `training.amp: auto` /
`training.channels_last: auto` choose (ptsemseg.device.resolve_speed_modes: channels_last + bf16 autocast, or fp16
with a gradient scaler): images/s, peak memory (torch.cuda.max_memory_allocated) and model FLOPs utilisation, MFU =
model FLOPs per second / the GPU's peak. Model FLOPs of a train step = 3 × batch × the eval forward's FLOPs at
--size (FlopCounterMode, 2 per multiply-add; backward ≈ 2 × forward); the peak is the GPU's dense bf16/fp16
tensor-core peak (--peak-tflops, or the datasheet value of a known GPU), for both modes.

    python benchmarks/bench_ddp.py [--processes 2] [--arch deeplab] [--option backbone=resnet18] [--size 128x256]
        [--batch 2] [--iters 10] [--warmup 3] [--repeats 3] [--json out.json]
    python benchmarks/bench_ddp.py --device cuda [--archs deeplab pspnet] [--size 512x1024] [--batch 4]
        [--peak-tflops 989]
"""
import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.bench_models import (Mode, build, count_flops, default_mode, describe_error,  # noqa: E402
                                     device_name, distinct_archs, format_table, make_batch, mode_cfg, modes_for,
                                     outputs_loss, parse_size, synchronize, task_loss)
from ptsemseg.device import autocast, to_device  # noqa: E402
from ptsemseg.models import model_inputs  # noqa: E402
from ptsemseg.tasks import get_task_class  # noqa: E402

N_CLASSES = 19
# Dense (no sparsity) bf16/fp16 tensor-core peaks from NVIDIA's datasheets, TFLOP/s, by a part of the GPU's name;
# the first match counts (PCIe H100s are slower than SXM ones).
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200 NVL", 835.0), ("H200", 989.4), ("A100", 312.0),
               ("L40S", 362.1), ("L4", 121.0))


def parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"model option must be KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_step(model, module, optimizer, scaler, loss_fn, batch, task, mode, device):
    """One training iteration as the trainer runs it (`module`: the model, or its DDP wrapper)."""
    with autocast(mode_cfg(mode), device):
        loss = outputs_loss(loss_fn, module(*model_inputs(model, batch)), batch[get_task_class(task).target_key])
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def step_times(step, device, iters, warmup):
    times = []
    for repetition in range(warmup + iters):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        if repetition >= warmup:
            times.append(time.perf_counter() - start)
    return times


def cpu_worker(rank, world_size, threads, batch, port, args, out_path):
    """One process of a CPU set-up: `threads` intra-op threads, batch `batch`, DDP when `world_size` > 1."""
    torch.set_num_threads(threads)
    if world_size > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build(args.arch, args.task, N_CLASSES, options=dict(args.option))
    module = torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    data = make_batch(args.task, N_CLASSES, batch, args.size, device, seed=rank,
                      input_keys=getattr(model, "input_keys", ("image",)))
    mode = Mode("fp32", False, False)
    loss_fn = task_loss(args.task)
    model.train()
    times = step_times(lambda: train_step(model, module, optimizer, scaler, loss_fn, data, args.task, mode, device),
                       device, args.iters, args.warmup)
    if rank == 0:
        with open(out_path, "w", encoding="utf-8") as handle:
            json.dump(times, handle)
    if world_size > 1:
        dist.destroy_process_group()


def run_cpu_setup(processes, threads, batch, args):
    """Median step time (s) of rank 0 in a set-up of `processes` × `threads`, batch `batch` per process."""
    with tempfile.TemporaryDirectory() as folder:
        out_path = os.path.join(folder, "times.json")
        os.environ["OMP_NUM_THREADS"] = str(threads)  # inherited by the spawned processes
        mp.spawn(cpu_worker, args=(processes, threads, batch, free_port(), args, out_path), nprocs=processes,
                 join=True)
        with open(out_path, encoding="utf-8") as handle:
            return statistics.median(json.load(handle))


def cpu_benchmark(args):
    n = args.processes
    setups = [(f"1 process × 1 thread, batch {args.batch}", 1, 1, args.batch),
              (f"1 process × {n} threads, batch {n * args.batch}", 1, n, n * args.batch),
              (f"{n} processes × 1 thread, batch {args.batch} each (DDP, Gloo)", n, 1, args.batch)]
    steps = {name: [] for name, *_ in setups}
    for repeat in range(args.repeats):
        shift = repeat % len(setups)
        for name, processes, threads, batch in setups[shift:] + setups[:shift]:
            steps[name].append(run_cpu_setup(processes, threads, batch, args))
            print(f"round {repeat + 1}, {name}: {processes * batch / steps[name][-1]:.2f} images/s", flush=True)
    results = []
    for name, processes, threads, batch in setups:
        step = statistics.median(steps[name])
        results.append({"setup": name, "processes": processes, "threads": threads, "global_batch": processes * batch,
                        "step_s": step, "images_per_s": processes * batch / step, "round_steps_s": steps[name]})
    single, threaded, distributed = results
    rows = [["set-up", "global batch", "step s", "images/s", "× 1 process 1 thread", f"× 1 process {n} threads"]]
    for result in results:
        rows.append([result["setup"], str(result["global_batch"]), f"{result['step_s']:.3f}",
                     f"{result['images_per_s']:.2f}", f"{result['images_per_s'] / single['images_per_s']:.2f}",
                     f"{result['images_per_s'] / threaded['images_per_s']:.2f}"])
    print("\n".join(format_table(rows, args.markdown)))
    print(f"scaling efficiency of {n} processes: {distributed['images_per_s'] / (n * single['images_per_s']):.0%} "
          f"of {n} × one single-thread process")
    return results


def peak_flops(device, override):
    if override:
        return override * 1e12
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for part, tflops in PEAK_TFLOPS if part in name), None)


def gpu_mode_result(arch, mode, args, device, flops_per_step, peak):
    """Images/s, peak memory and MFU of one architecture in one mode; 'out of memory' when it does not fit."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = optimizer = data = None
    try:
        model = build(arch, args.task, N_CLASSES, device=device, options=dict(args.option))
        data = make_batch(args.task, N_CLASSES, args.batch, args.size, device,
                          input_keys=getattr(model, "input_keys", ("image",)))
        if mode.channels_last:
            model = model.to(memory_format=torch.channels_last)
            data = to_device(data, device, channels_last=True)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=mode.amp == "fp16")
        loss_fn = task_loss(args.task)
        times = step_times(lambda: train_step(model, model, optimizer, scaler, loss_fn, data, args.task, mode, device),
                           device, args.iters, args.warmup)
    except torch.cuda.OutOfMemoryError:
        return {"mode": mode.name, "error": "out of memory"}
    except Exception as err:  # noqa: BLE001 - a mode this GPU cannot run is a row, not the end of the benchmark
        return {"mode": mode.name, "error": describe_error(err)}
    finally:
        model = optimizer = data = None  # freed before the next mode's peak is measured
    step = statistics.median(times)
    return {"mode": mode.name, "step_s": step, "images_per_s": args.batch / step,
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2 ** 30,
            "tflops_per_s": flops_per_step / step / 1e12, "mfu": flops_per_step / step / peak if peak else None}


def gpu_benchmark(args):
    device = torch.device("cuda")
    peak = peak_flops(device, args.peak_tflops)
    auto = next(mode for mode in modes_for(device) if mode.name == default_mode(device))
    modes = [Mode("fp32", False, False), auto]
    peak_text = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown (give --peak-tflops)"
    print(f"{device_name(device)}, torch {torch.__version__}, {args.task}, batch {args.batch} at "
          f"{args.size[0]}x{args.size[1]}, auto = {auto.name}, peak for MFU: {peak_text}", flush=True)
    results = []
    for arch in args.archs or distinct_archs():
        flops = 3 * args.batch * count_flops(build(arch, args.task, N_CLASSES, device="meta",
                                                   options=dict(args.option)), args.size)
        for mode in modes:
            result = {"arch": arch, "train_gflops_per_image": flops / args.batch / 1e9,
                      **gpu_mode_result(arch, mode, args, device, flops, peak)}
            results.append(result)
            print(json.dumps(result), flush=True)
    rows = [["arch", "mode", "GFLOPs / image (train)", "images/s", "peak GiB", "TFLOP/s", "MFU"]]
    for result in results:
        if "error" in result:
            rows.append([result["arch"], result["mode"], f"{result['train_gflops_per_image']:.0f}", result["error"],
                         "", "", ""])
            continue
        mfu = f"{result['mfu']:.1%}" if result["mfu"] is not None else "—"
        rows.append([result["arch"], result["mode"], f"{result['train_gflops_per_image']:.0f}",
                     f"{result['images_per_s']:.1f}", f"{result['peak_memory_gib']:.1f}",
                     f"{result['tflops_per_s']:.1f}", mfu])
    print("\n".join(format_table(rows, args.markdown)))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--processes", type=int, default=2, help="CPU: processes of the DDP set-up (and threads)")
    parser.add_argument("--arch", default="deeplab", help="CPU: the architecture")
    parser.add_argument("--archs", nargs="*", help="CUDA: architectures (default: every distinct one)")
    parser.add_argument("--option", type=parse_option, action="append", default=None, metavar="KEY=VALUE",
                        help="model option (YAML value); CPU default backbone=resnet18, CUDA default: none")
    parser.add_argument("--task", choices=("seg", "depth"), default="seg")
    parser.add_argument("--size", type=parse_size, help="HxW (CPU default 128x256, CUDA 512x1024)")
    parser.add_argument("--batch", type=int, help="per process (CPU default 2, CUDA 4)")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="CPU: rounds over the set-ups")
    parser.add_argument("--peak-tflops", dest="peak_tflops", type=float, help="CUDA: the GPU's peak for MFU")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch finds no CUDA GPU here")
    args.size = args.size or ((512, 1024) if cuda else (128, 256))
    args.batch = args.batch or (4 if cuda else 2)
    args.option = args.option if args.option is not None else ([] if cuda else [("backbone", "resnet18")])
    if not cuda:
        load = os.getloadavg()[0]
        print(f"{device_name(torch.device('cpu'))}, {os.cpu_count()} CPUs, load average {load:.1f} at the start; "
              f"torch {torch.__version__}; {args.arch} {dict(args.option)} {args.task}, {args.size[0]}x{args.size[1]}, "
              f"median of {args.iters} steps after {args.warmup}", flush=True)
    results = gpu_benchmark(args) if cuda else cpu_benchmark(args)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": {key: value for key, value in vars(args).items()}, "results": results}, handle,
                      indent=2)


if __name__ == "__main__":
    main()
