"""Training steps in every precision mode never take the process down; the cases run in child processes.

A heap corruption in a kernel aborts or segfaults the whole process, so the cases run in tests/train_step_child.py
and a dead child is a failed case, named, not a dead test run. The full matrix (every architecture × task × mode ×
class count × odd size) is marked slow; CI runs a representative subset.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from ptsemseg.device import resolve_speed_modes
from ptsemseg.models import MODELS
from ptsemseg.models._utils import NarrowFp32ConvTranspose2d

from tests.test_model_contract import MODEL_CASES

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step_child.py")
MODES = ("fp32", "channels_last", "bf16", "bf16+channels_last")
SEG_CLASSES = (1, 2, 4, 6, 8, 19, 40, 150)
SIZES = ((61, 83), (64, 96))
CHILD_TIMEOUT = 3600
PROTOCOL = re.compile(r"(start|ok|fail) (\d+)(?: (.*))?")


def case(arch, task, n_classes, mode, size, **options):
    return {"arch": arch, "options": options, "task": task, "n_classes": n_classes, "mode": mode, "size": list(size)}


def describe(case):
    rows, cols = case["size"]
    options = "".join(f" {key}={value}" for key, value in case["options"].items())
    return f"{case['arch']}{options} {case['task']} n_classes={case['n_classes']} {case['mode']} {rows}x{cols}"


def run_cases(cases, env=None, child=CHILD):
    """Run `cases` in `child` processes; returns ({case index: problem}, the children's stdout lines).

    A child that dies is restarted after the case it died in, so one crash neither hides the others nor stops
    the run.
    """
    problems, stdout_lines, start = {}, [], 0
    while start < len(cases):
        try:
            proc = subprocess.run([sys.executable, child], input=json.dumps(cases[start:]), capture_output=True,
                                  text=True, timeout=CHILD_TIMEOUT, env=env)
            stdout, stderr, returncode = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as err:
            stdout, stderr = (out.decode() if isinstance(out, bytes) else out or "" for out in (err.stdout, err.stderr))
            returncode = f"timeout after {CHILD_TIMEOUT} s"
        stdout_lines += stdout.splitlines()
        current, finished, other = None, start, []
        for line in stderr.splitlines():
            match = PROTOCOL.fullmatch(line)
            if not match:
                other.append(line)
                continue
            word, index = match.group(1), start + int(match.group(2))
            current = index if word == "start" else None
            finished = index + 1 if word != "start" else finished
            if word == "fail":
                problems[index] = match.group(3)
        if returncode == 0:
            break
        current = finished if current is None else current  # died between cases: blame the next one
        problems[current] = f"process died (exit {returncode}) {(other or [''])[-1][:200]}".strip()
        start = current + 1
    return problems, stdout_lines


def assert_all_pass(cases, env=None):
    problems, _ = run_cases(cases, env)
    report = [f"{describe(cases[index])}: {problem}" for index, problem in sorted(problems.items())]
    assert not report, f"{len(report)} of {len(cases)} cases failed:\n" + "\n".join(report)


def architectures():
    """Every registered architecture once (a name registered for another's builder, like fcn, is left out)."""
    names, builders = [], []
    for name in MODELS.names():
        if MODELS.get(name) not in builders:
            names.append(name)
            builders.append(MODELS.get(name))
    return names


FAKE_CHILD = """
import json, os, sys
for index, case in enumerate(json.load(sys.stdin)):
    print(f"start {index}", file=sys.stderr, flush=True)
    if case["arch"] == "abort":
        print("free(): invalid next size (fast)", file=sys.stderr, flush=True)
        os.abort()
    print(f"fail {index} ValueError: bad" if case["arch"] == "fail" else f"ok {index}", file=sys.stderr, flush=True)
"""


def test_run_cases_names_the_case_that_kills_its_process(tmp_path):
    """A case that kills its child is reported by index, and the cases after it still run in a new child."""
    child = tmp_path / "child.py"
    child.write_text(FAKE_CHILD)
    cases = [case(arch, "seg", 2, "fp32", (8, 8)) for arch in ("good", "abort", "fail", "good", "abort", "good")]
    problems, _ = run_cases(cases, child=str(child))
    died = "process died (exit -6) free(): invalid next size (fast)"
    assert problems == {1: died, 2: "ValueError: bad", 4: died}


def narrow_bf16_deconvolutions(onednn_log):
    """oneDNN verbose lines of bf16 transposed convolutions with fewer than 16 input or output channels."""
    found = []
    for line in onednn_log:
        channels = re.search(r"_ic(\d+)oc(\d+)_", line)
        if ",exec,cpu,deconvolution," in line and "bf16" in line and channels and \
                min(map(int, channels.groups())) < 16:
            found.append(line)
    return found


@pytest.mark.parametrize("channels, dtype", [(6, torch.float32), (15, torch.float32), (16, torch.bfloat16)])
def test_narrow_transposed_convolution_leaves_bf16_autocast(monkeypatch, channels, dtype):
    """Under bf16 autocast a transposed convolution with fewer than 16 channels computes in fp32, exactly as
    outside autocast; wider ones stay in bf16. (oneDNN off: only the dispatch is checked here, in process.)"""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    upsample = NarrowFp32ConvTranspose2d(channels, channels, 4, stride=2, bias=False)
    x = torch.randn(1, channels, 5, 7).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = upsample(x)
    assert y.dtype == dtype and y.shape == (1, channels, 12, 16)
    if dtype == torch.float32:
        assert torch.equal(y, upsample(x.float()))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="checks which oneDNN kernels run")
def test_fcn8s_small_class_count_trains_in_bf16_channels_last():
    """The reported crash: FCN-8s, 6 classes, 64×96, bf16 autocast in channels_last (what `auto` picks on a CPU
    with native bf16), three steps of fused Adam. It exits cleanly, and no bf16 transposed convolution with fewer
    channels than one 16-channel oneDNN block runs: the upsamplers at this class count run in fp32."""
    cases = [case("fcn8s", "seg", 6, "bf16+channels_last", (64, 96))] * 3
    problems, onednn_log = run_cases(cases, env=dict(os.environ, ONEDNN_VERBOSE="1"))
    assert not problems
    deconvolutions = [line for line in onednn_log if ",exec,cpu,deconvolution," in line]
    assert len(deconvolutions) == 3 * 3 * 3  # three upsamplers × (forward, backward data, backward weights) × steps
    assert narrow_bf16_deconvolutions(deconvolutions) == []


def test_representative_cases_train_in_every_precision_mode():
    """CI's share of the matrix: FCN-8s at class counts that crashed, small ResNet-18 DeepLab/PSPNet, depth."""
    cases = [case("fcn8s", "seg", 4, "bf16+channels_last", (61, 83)),
             case("fcn8s", "seg", 8, "bf16", (61, 83)),
             case("pspnet", "seg", 2, "bf16+channels_last", (61, 83), backbone="resnet18"),
             case("pspnet", "seg", 150, "channels_last", (64, 96), backbone="resnet18"),
             case("deeplab", "seg", 1, "bf16", (61, 83), backbone="resnet18"),
             case("deeplab", "depth", 1, "bf16+channels_last", (61, 83), backbone="resnet18"),
             case("dispnet", "depth", 1, "fp32", (61, 83))]
    assert_all_pass(cases)


def auto_mode(arch):
    """The MODES name of what `training.amp: auto` and `channels_last: auto` pick for `arch` on this CPU."""
    training = {"amp": "auto", "channels_last": "auto"}
    resolve_speed_modes(training, torch.device("cpu"), arch)
    return {(False, False): "fp32", (False, True): "channels_last", ("bf16", False): "bf16",
            ("bf16", True): "bf16+channels_last"}[training["amp"], training["channels_last"]]


@pytest.mark.parametrize("arch", list(MODEL_CASES))
def test_every_architecture_trains_both_tasks_at_odd_and_paper_sizes_in_fp32_and_auto(arch):
    """Registry-wide: seg and depth, 97×131 and 240×320, fp32 and the `auto` modes, each one training step with
    the model's declared inputs (the contract tests' small options), in a child process."""
    cases = [case(arch, task, 5 if task == "seg" else 1, mode, size, **MODEL_CASES[arch])
             for task in ("seg", "depth") for mode in ("fp32", auto_mode(arch)) for size in ((97, 131), (240, 320))]
    assert_all_pass(cases)


def matrix_cases(arch, task):
    classes = SEG_CLASSES if task == "seg" else (1,)
    return [case(arch, task, n_classes, mode, size) for n_classes in classes for mode in MODES for size in SIZES]


@pytest.mark.slow
@pytest.mark.parametrize("task", ("seg", "depth"))
@pytest.mark.parametrize("arch", architectures())
def test_full_matrix_trains_in_every_precision_mode(arch, task):
    """Every architecture at its default size: 8 class counts (seg) × 4 modes × 2 odd sizes, one child per group."""
    assert_all_pass(matrix_cases(arch, task))
