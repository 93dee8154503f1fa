"""Checkpoints: atomic writes, safe loading and the checks that a checkpoint fits the model being built."""
import os
import random
import secrets

import numpy as np
import torch

from ptsemseg.errors import PtsemsegError


def write_atomic(path, write):
    """Call `write(handle)` on a new temporary file next to `path`, then rename it over `path`.

    A crash never leaves half a file; the temporary name is unique (`<path>.<random>.tmp`, created
    exclusively), so two writers never write into, or rename away, each other's file.
    """
    tmp_path = f"{path}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def save_atomic(state, path):
    """Write `state` to `path` with torch.save through `write_atomic`."""
    write_atomic(path, lambda handle: torch.save(state, handle))


def first_non_finite(model, optimizer):
    """Name of the first model weight, buffer (BN running statistics...) or optimizer state tensor holding
    NaN or inf, or None when all are finite: such a state must never become a checkpoint."""
    names = {id(param): name for name, param in model.named_parameters()}
    named = list(model.named_parameters()) + list(model.named_buffers())
    named += [(f"optimizer {key} of {names.get(id(param), 'a parameter')}", value)
              for param, state in optimizer.state.items() for key, value in state.items()
              if isinstance(value, torch.Tensor)]
    named = [(name, tensor) for name, tensor in named if tensor.is_floating_point()]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(tensor.detach()).all().to(named[0][1].device) for _, tensor in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def load_checkpoint(path):
    """Read a checkpoint with `weights_only=True`; a missing, truncated or foreign file fails in one line."""
    if not path or not os.path.isfile(path):
        raise PtsemsegError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncated zips, bad pickles and foreign files all land here
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PtsemsegError(f"cannot read checkpoint {path} (corrupt or truncated?): {reason[:160]}") from None
    if not isinstance(state, dict) or "model_state" not in state:
        raise PtsemsegError(f"checkpoint {path} has no 'model_state'")
    return state


def strip_module_prefix(state_dict):
    """Drop the `module.` prefix that DataParallel/DDP checkpoints (seed projects included) carry."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def checkpoint_tasks(meta):
    """The tasks a checkpoint's meta records, as {task: output channels} (older files: `task` + `n_outputs`)."""
    if "tasks" in meta:
        return dict(meta["tasks"])
    if "task" in meta:
        return {meta["task"]: meta.get("n_outputs")}
    return None


def check_compatible(state, path, arch, tasks):
    """Fail with one line when a checkpoint was trained for another architecture, other tasks or class counts.

    `tasks` maps the run's task names to their output channels.
    """
    meta = state.get("meta") or {}
    if "arch" in meta and meta["arch"] != arch:
        raise PtsemsegError(f"checkpoint {path} was trained with arch={meta['arch']}, this config needs {arch}")
    trained = checkpoint_tasks(meta)
    if trained is not None and trained != dict(tasks):
        def show(heads):
            return ", ".join(f"{name} ({channels} outputs)" for name, channels in heads.items())
        raise PtsemsegError(f"checkpoint {path} was trained for {show(trained)}, this config needs {show(tasks)}")


def weights_entry(state, path, requested=None):
    """The checkpoint entry to evaluate: `ema_state` or `model_state` as `requested` ("ema" | "model"), by default
    the EMA weights when the run kept them (training.ema)."""
    weights = requested or ("ema" if state.get("ema_state") is not None else "model")
    if weights == "ema" and state.get("ema_state") is None:
        raise PtsemsegError(f"checkpoint {path} has no EMA weights (its run had no training.ema)")
    return f"{weights}_state"


def load_model_state(model, state, path, entry="model_state"):
    """Load the weights of `entry` (`ema_state`: the EMA weights), naming the first mismatching tensor when shapes or
    keys differ (e.g. other class count)."""
    weights = strip_module_prefix(state[entry])
    own = model.state_dict()
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    if missing or unexpected:
        raise PtsemsegError(f"checkpoint {path} does not fit this architecture "
                            f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    for key, value in weights.items():
        if own[key].shape != value.shape:
            raise PtsemsegError(f"checkpoint {path} does not fit this model: {key} has shape "
                                f"{tuple(value.shape)}, the model needs {tuple(own[key].shape)} (another class count?)")
    model.load_state_dict(weights)


def rng_state():
    """Python, NumPy and torch RNG states in a form `weights_only` loading accepts."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
