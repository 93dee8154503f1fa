"""The training benchmarks (bench_joint.py, bench_fusion.py) run end to end on a tiny budget and print their table."""
from tests.conftest import run_script

TINY = ["data.img_rows=32", "data.img_cols=48", "data.length={train: 8, val: 2}", "training.n_workers=0",
        "training.batch_size=2"]


def test_bench_fusion_trains_fused_and_rgb_only_and_reports_the_gain(tmp_path):
    result = run_script("benchmarks/bench_fusion.py", "--configs", "configs/synthetic/fusenet_seg.yaml",
                        "--iters", "1", "--out", str(tmp_path), "--opts", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| fusenet")]
    assert [row.split(" | ")[0] for row in rows] == ["| fusenet [image, depth]", "| fusenet [image]"]
    gain = float(rows[0].split(" | ")[4])
    assert abs(gain - (float(rows[0].split(" | ")[1]) - float(rows[1].split(" | ")[1]))) < 1e-3


def test_bench_joint_trains_three_task_sets(tmp_path):
    result = run_script("benchmarks/bench_joint.py", "--iters", "1", "--out", str(tmp_path), "--opts", *TINY)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split(" | ")[0] for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["| run", "| seg only", "| depth only", "| joint"]
