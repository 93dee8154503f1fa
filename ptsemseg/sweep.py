"""Parameter sweeps: one training per value of one or more config keys, and a table of their final scores.

`train.py --config F --sweep task.scene=0.004:0.01:5` trains with `task.scene` = 0.004, 0.0055, 0.007, 0.0085 and
0.01 (start:stop:count, both ends included, as FuseNet's `--lambda_class_range`); `--sweep key=[a, b, c]` takes
the listed YAML values. Several `--sweep` options give every combination. Each run has its own run directory,
`<sweep dir>/<key>=<value>,...`, under `training.out_dir` (default `runs/<config stem>/sweep-<time>`); every
config is checked before the first run starts. `sweep.csv` and `sweep.md` beside the runs hold one row per
finished run: the swept values and the final validation scores, rewritten after each run.
"""
import csv
import io
import itertools
import math
import os

from ptsemseg.checkpoint import write_atomic
from ptsemseg.config import load_config, safe_load
from ptsemseg.errors import PtsemsegError


def parse_sweep(spec):
    """`key=start:stop:count` or `key=[v1, v2, ...]` -> (key, [values])."""
    key, sep, raw = spec.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise PtsemsegError(f"bad sweep '{spec}': expected dotted.key=start:stop:count or dotted.key=[v1, v2]")
    if raw.startswith("["):
        try:
            values = safe_load(raw)
        except Exception:  # noqa: BLE001 - any YAML error is the same bad input
            values = None
        if not isinstance(values, list) or not values:
            raise PtsemsegError(f"bad sweep '{spec}': the values must be a non-empty YAML list")
        return key, values
    parts = raw.split(":")
    try:
        start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise PtsemsegError(f"bad sweep '{spec}': expected start:stop:count (numbers, count an integer)") from None
    if len(parts) != 3 or count < 1 or not (math.isfinite(start) and math.isfinite(stop)):
        raise PtsemsegError(f"bad sweep '{spec}': expected start:stop:count with a count of at least 1")
    if count == 1:
        return key, [start]
    return key, [float(f"{start + (stop - start) * i / (count - 1):.6g}") for i in range(count)]


def run_name(assignment):
    """Directory name of one run: `key=value,key=value`."""
    return ",".join(f"{key}={value}" for key, value in assignment)


def plan_sweep(config_path, overrides, sweeps, sweep_dir):
    """Every run of the sweep as (name, cfg), all configs loaded and validated before anything runs."""
    axes = [parse_sweep(spec) for spec in sweeps]
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise PtsemsegError(f"a sweep names a key twice: {', '.join(keys)}")
    runs = []
    for values in itertools.product(*(values for _, values in axes)):
        assignment = list(zip(keys, values))
        name = run_name(assignment)
        run_overrides = [*overrides, *(f"{key}={value}" for key, value in assignment),
                         f"training.out_dir={os.path.join(sweep_dir, name)}"]
        runs.append((assignment, load_config(config_path, run_overrides)))
    return runs


def write_tables(sweep_dir, rows):
    """sweep.csv and sweep.md: one row per run (swept values, then every scalar final score)."""
    columns = list(dict.fromkeys(key for row in rows for key, value in row.items()
                                 if not isinstance(value, (list, dict))))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(os.path.join(sweep_dir, "sweep.csv"), lambda handle: handle.write(text.getvalue().encode()))

    def cell(value):
        if value is None:
            return "–"
        return f"{value:.4f}" if isinstance(value, float) and not isinstance(value, bool) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column)) for column in columns) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    write_atomic(os.path.join(sweep_dir, "sweep.md"), lambda handle: handle.write(markdown.encode()))
