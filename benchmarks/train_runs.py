"""One training run through the trainer, measured: the shared step of bench_joint.py and bench_fusion.py."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_models import count_flops  # noqa: E402
from ptsemseg.config import load_config  # noqa: E402
from ptsemseg.trainer import Trainer  # noqa: E402


def train_run(config, overrides, out_dir, iters=None, edit=None):
    """Train `config` with `overrides` into `out_dir` (after `edit(cfg)`, if given); `iters` shortens the run and
    validates once at its end. Returns the final validation scores with the run's wall-clock training time,
    parameters (millions), GFLOPs of one eval forward at the training size, iterations, device and precision."""
    cfg = load_config(config, [*overrides, f"training.out_dir={out_dir}"])
    if edit:
        edit(cfg)
    if iters:
        cfg["training"]["train_iters"] = iters
        cfg["training"]["val_interval"] = iters
    trainer = Trainer(cfg, config)
    start = time.perf_counter()
    scores = trainer.run()
    seconds = time.perf_counter() - start
    size = (cfg["data"]["img_rows"], cfg["data"]["img_cols"])
    return {**scores, "train_s": round(seconds, 1),
            "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 3),
            "gflops": round(count_flops(trainer.model, size, device=trainer.device) / 1e9, 3),
            "iters": cfg["training"]["train_iters"], "device": str(trainer.device), "amp": cfg["training"]["amp"]}


def markdown_table(rows, header, scores):
    """`rows` as a Markdown table of the `header` columns; `scores` columns get 4 decimals, None a dash."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [("–" if row.get(key) is None else
                  f"{row[key]:.4f}" if key in scores and isinstance(row[key], float) else str(row[key]))
                 for key in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
