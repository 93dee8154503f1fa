"""Learning-rate schedules, registered by their YAML name (`training.lr_schedule.name`), stepped once per iteration.

A builder takes the total number of training iterations and the YAML options and returns the closed-form
multiplier `factor(iteration, base_lr)` of the base learning rate. `get_scheduler` turns it into a
`LambdaLR`, so the learning rate at iteration i is a pure function of i: a scheduler restored with
`load_state_dict` continues the exact curve.

Warm-up (any schedule): `warmup_iters` (default 100 when any warm-up key is present), `warmup_mode`
linear | constant (default linear) and `warmup_factor` γ (default 0.2). For iteration i < warmup_iters the
schedule is multiplied by γ(1 − α) + α with α = i / warmup_iters (linear) or by γ (constant).
"""
import bisect
import math

from torch.optim.lr_scheduler import LambdaLR

from ptsemseg.errors import PtsemsegError
from ptsemseg.registry import Registry

SCHEDULERS = Registry("scheduler")

WARMUP_KEYS = ("warmup_iters", "warmup_mode", "warmup_factor")


def _require(condition, key, expected, value):
    if not condition:
        raise PtsemsegError(f"lr_schedule.{key} must be {expected}, got {value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@SCHEDULERS.register("constant_lr")
def constant_lr(total_iters):
    """The base learning rate throughout."""
    return lambda iteration, base_lr: 1.0


@SCHEDULERS.register("poly_lr")
def poly_lr(total_iters, max_iter=None, decay_iter=1, gamma=0.9):
    """lr = base · (1 − i/max_iter)^gamma, updated every `decay_iter` iterations, 0 from max_iter on.

    Seed keys: `max_iter` (default: the run's train_iters), `decay_iter`, `gamma` (the power, default 0.9).
    The seed's version never decayed; this one does.
    """
    max_iter = total_iters if max_iter is None else max_iter
    _require(_is_int(max_iter) and max_iter > 0, "max_iter", "a positive integer", max_iter)
    _require(_is_int(decay_iter) and decay_iter > 0, "decay_iter", "a positive integer", decay_iter)
    _require(_is_number(gamma) and gamma >= 0, "gamma", "a non-negative number", gamma)

    def factor(iteration, base_lr):
        updated_at = iteration - iteration % decay_iter
        return (1.0 - min(updated_at, max_iter) / max_iter) ** gamma

    return factor


@SCHEDULERS.register("multi_step")
def multi_step(total_iters, milestones, gamma=0.1):
    """lr = base · gamma^(number of milestones ≤ i)."""
    _require(isinstance(milestones, (list, tuple)) and all(_is_int(m) and m >= 0 for m in milestones),
             "milestones", "a list of iteration numbers", milestones)
    _require(_is_number(gamma), "gamma", "a number", gamma)
    milestones = sorted(milestones)
    return lambda iteration, base_lr: gamma ** bisect.bisect_right(milestones, iteration)


@SCHEDULERS.register("cosine_annealing")
def cosine_annealing(total_iters, T_max=None, eta_min=0.0):
    """lr = eta_min + (base − eta_min)(1 + cos(π i / T_max)) / 2, held at eta_min after T_max.

    T_max defaults to the run's train_iters.
    """
    T_max = total_iters if T_max is None else T_max
    _require(_is_int(T_max) and T_max > 0, "T_max", "a positive integer", T_max)
    _require(_is_number(eta_min) and eta_min >= 0, "eta_min", "a non-negative number", eta_min)

    def factor(iteration, base_lr):
        floor = eta_min / base_lr if base_lr > 0 else 0.0
        return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * min(iteration, T_max) / T_max)) / 2

    return factor


@SCHEDULERS.register("exp_lr")
def exp_lr(total_iters, gamma):
    """lr = base · gamma^i."""
    _require(_is_number(gamma) and gamma > 0, "gamma", "a positive number", gamma)
    return lambda iteration, base_lr: gamma ** iteration


def warmup(warmup_iters=100, warmup_mode="linear", warmup_factor=0.2):
    """The warm-up multiplier of iteration i (1 from warmup_iters on)."""
    _require(_is_int(warmup_iters) and warmup_iters >= 0, "warmup_iters", "a non-negative integer",
             warmup_iters)
    _require(warmup_mode in ("linear", "constant"), "warmup_mode", "linear or constant", warmup_mode)
    _require(_is_number(warmup_factor) and warmup_factor >= 0, "warmup_factor", "a non-negative number",
             warmup_factor)

    def factor(iteration):
        if iteration >= warmup_iters:
            return 1.0
        if warmup_mode == "constant":
            return warmup_factor
        alpha = iteration / warmup_iters
        return warmup_factor * (1.0 - alpha) + alpha

    return factor


def _group_lambda(schedule, warmup_multiplier, base_lr):
    """LambdaLR multiplier of one parameter group (a plain function, so state_dict stores only the position)."""

    def lr_lambda(iteration):
        return schedule(iteration, base_lr) * warmup_multiplier(iteration)

    return lr_lambda


def get_scheduler(optimizer, sched_cfg, total_iters):
    """The schedule of a YAML mapping (`name`, options, optional warm-up keys); None or empty is constant."""
    options = dict(sched_cfg or {"name": "constant_lr"})
    if "name" not in options:
        raise PtsemsegError(f"lr_schedule options {sorted(options)} lack a 'name'")
    name = options.pop("name")
    SCHEDULERS.check_options(name, options, given=("total_iters",), shared=WARMUP_KEYS)
    warmup_options = {key: options.pop(key) for key in WARMUP_KEYS if key in options}
    schedule = SCHEDULERS.get(name)(total_iters, **options)
    warmup_multiplier = warmup(**warmup_options) if warmup_options else (lambda iteration: 1.0)
    return LambdaLR(optimizer, [_group_lambda(schedule, warmup_multiplier, group.get("initial_lr", group["lr"]))
                                for group in optimizer.param_groups])
