"""benchmarks/bench_models.py on a small model at a tiny size: the structure of its results, not its timings."""
import importlib.util
import json
import os

import pytest
import torch

from ptsemseg.models import get_model
from tests.conftest import REPO

SPEC = importlib.util.spec_from_file_location("bench_models", os.path.join(REPO, "benchmarks", "bench_models.py"))
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)

ARCH, OPTIONS = "frrn", {"model_type": "A"}  # the smaller FRRN, chosen through a model option
SIZE = (32, 48)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task", ["seg", "depth"])
def test_benchmark_result_structure(task):
    result = bench.benchmark(ARCH, task, n_classes=5, size=SIZE, batch=2, iters=1, warmup=0, device="cpu",
                             flops_size=SIZE, options=OPTIONS)
    with torch.device("meta"):
        model = get_model({"arch": ARCH, **OPTIONS}, {task: 5 if task == "seg" else 1})
    assert result["params"] == sum(p.numel() for p in model.parameters())
    assert result["gflops"] > 0 and result["gmacs"] == pytest.approx(result["gflops"] / 2)
    names = [mode.name for mode in bench.modes_for(torch.device("cpu"))]
    assert list(result["modes"]) == names
    for name, entry in result["modes"].items():
        assert isinstance(entry["correct"], bool) and isinstance(entry["train_loss_finite"], bool), name
        for key in ("latency_ratio", "train_ratio", "latency_ms", "train_images_per_s", "rel_l2"):
            assert isinstance(entry[key], float) and entry[key] >= 0, (name, key)
        if task == "seg":
            assert 0 <= entry["argmax_agreement"] <= 1
    assert result["modes"]["fp32"]["latency_ratio"] == 1.0 and result["modes"]["fp32"]["rel_l2"] == 0.0
    assert result["modes"]["fp32"]["correct"]
    assert set(result["fastest_correct"]) == {"latency", "train"}
    assert all(best in names for best in result["fastest_correct"].values())
    json.dumps(result)
    rows = bench.table([result], names, markdown=True)
    assert len(rows) == 3 and rows[2].startswith(f"| {ARCH} | {task}")
    assert len(bench.summary([result], names, bench.default_mode(torch.device("cpu")))) == 3
    assert len(bench.correctness_table([result], names)) == 2


def test_train_loss_sums_the_head_and_its_auxiliary_outputs_resized_to_the_target():
    loss = bench.task_loss("depth")
    target = 1.0 + torch.rand(2, 1, 8, 12)
    head, aux = 1.0 + torch.rand(2, 1, 8, 12), 1.0 + torch.rand(2, 1, 4, 6)
    resized = torch.nn.functional.interpolate(aux, size=(8, 12), mode="bilinear", align_corners=False)
    total = bench.outputs_loss(loss, {"depth": head, "depth/scale1": aux}, target)
    assert torch.allclose(total, loss(head, target) + 0.4 * loss(resized, target))
    assert torch.allclose(bench.outputs_loss(loss, {"depth": head}, target), loss(head, target))


def test_meta_flop_count_equals_a_real_forward():
    meta = bench.size_and_flops(ARCH, "depth", 19, SIZE, options=OPTIONS)
    torch.manual_seed(0)
    real = bench.count_flops(bench.build(ARCH, "depth", 19, options=OPTIONS), SIZE, device="cpu")
    assert meta["flops"] == real > 0


def test_distinct_archs_collapse_aliases_and_identical_defaults():
    archs = bench.distinct_archs()
    assert {"fcn8s", "frrnA", "frrnB", "deeplab"} <= set(archs)
    assert "fcn" not in archs and "frrn" not in archs  # alias of fcn8s; default model equals frrnB


def test_flops_only_command_line(tmp_path, capsys):
    path = tmp_path / "flops.json"
    results = bench.main(["--archs", "dispnet", "--flops-only", "--flops-size", "64x128", "--json", str(path),
                          "--markdown"])
    assert [(r["arch"], r["task"]) for r in results] == [("dispnet", "seg"), ("dispnet", "depth")]
    assert json.loads(path.read_text())["results"][0]["flops_size"] == [64, 128]
    out = capsys.readouterr().out
    assert "FlopCounterMode (2 FLOPs per multiply-add" in out and "| dispnet | depth |" in out


def test_readme_table_states_the_measured_size_and_cost():
    """README's architecture table gives each model's parameters (M) and GFLOPs at 256×512 as the script counts them."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as readme:
        rows = [line for line in readme if line.startswith("| `")]
    for arch in bench.distinct_archs():
        row = next(line for line in rows if f"`{arch}`" in line.split(" | ")[0])
        for task in ("seg", "depth"):
            result = bench.size_and_flops(arch, task, 19, (256, 512))
            assert f"{result['params'] / 1e6:.2f} M" in row, (arch, task, result["params"])
            assert f"{result['gflops']:.1f}" in row, (arch, task, result["gflops"])
