"""Metric accumulators, registered by task: `METRICS.get("seg")`, `"depth"` and `"scene"`.

Each has `update(prediction, target)`, `compute() -> dict`, `reset()`, and keeps its running state in
tensors on the data's device: `state()` returns them (live, so they can be all-reduced in place across
processes) and `merge(state)` adds another accumulator's state.
"""
from ptsemseg.registry import Registry

METRICS = Registry("metric")

from ptsemseg.metrics.depth import DepthMetrics  # noqa: E402
from ptsemseg.metrics.scene import SceneMetrics  # noqa: E402
from ptsemseg.metrics.seg import SegMetrics  # noqa: E402

__all__ = ["METRICS", "DepthMetrics", "SceneMetrics", "SegMetrics"]
