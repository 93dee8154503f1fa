"""One iteration-based trainer for every architecture and task, in one process or several (DDP).

Task-specific behaviour (heads, target keys, default losses, metrics, best-model criterion, drawing) comes from
the run's TaskSet; architecture-specific behaviour lives in the model. Exact resume: the checkpoint holds the
model, optimizer, scheduler, AMP scaler, EMA weights, every process's RNG states and the iteration, and the data
order is a pure function of (seed, sample counter), so a resumed run replays exactly what an uninterrupted run
would have done.

Several processes (ptsemseg.distributed) split every global batch of `processes × batch_size × accumulate`
samples: process r takes samples r, r + N, ... of the global batch's share of the sample stream, so the union is
what one process with the whole batch would see. Rank 0 alone writes the run directory.
"""
import contextlib
import datetime
import logging
import os
import time
import warnings

import cv2
import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ptsemseg.checkpoint import (check_compatible, first_non_finite, load_checkpoint, load_model_state, rng_state,
                                 save_atomic, set_rng_state)
from ptsemseg.config import save_config
from ptsemseg.errors import PtsemsegError
from ptsemseg.losses import TaskSetLoss
from ptsemseg.models import model_inputs
from ptsemseg.optimizers import get_optimizer
from ptsemseg.rundir import RunDirLock, append_metrics, check_writable_dir, drop_metrics_after
from ptsemseg.build import build_dataset, build_model, eval_loader, sample_keys, seed_everything
from ptsemseg.device import autocast, resolve_device, resolve_speed_modes, to_device
from ptsemseg.distributed import Processes, resolve_sync_bn, sync_batchnorm
from ptsemseg.evaluation import evaluate, evaluation_dataset
from ptsemseg.schedulers import get_scheduler
from ptsemseg.tasks import TaskSet
from ptsemseg.visualize import image_grid


class ResumableSampler(torch.utils.data.Sampler):
    """Endless shuffled stream of (index, augmentation seed) starting at any sample counter, or one process's
    share of it.

    Epoch e visits the permutation drawn from (seed, e); sample k gets augmentation seed (seed, k). Both
    depend only on the counter, so resuming at counter k needs no replay of earlier batches. Process `rank` of
    `world_size` takes the counters start + rank, start + rank + world_size, ...: the processes' shares
    interleave into the one stream.
    """

    def __init__(self, n_samples, seed, start=0, rank=0, world_size=1):
        self.n_samples = n_samples
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size

    def __iter__(self):
        counter = self.start + self.rank
        epoch, order = None, None
        while True:
            current_epoch, position = divmod(counter, self.n_samples)
            if current_epoch != epoch:
                epoch = current_epoch
                order = np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)
            yield int(order[position]), (self.seed, counter)
            counter += self.world_size


# Widest validation picture written to TensorBoard: frames scored at native size (2048 wide for Cityscapes) are
# shrunk to fit, so the event file does not grow by tens of megabytes at every validation.
GRID_MAX_WIDTH = 2048


def default_run_dir(config_path, prefix=""):
    """`runs/<config stem>/<prefix><date-time>`: a new directory for every run."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return os.path.join("runs", stem, prefix + stamp)


class Trainer:
    """Builds everything a config describes, checks it, then trains with periodic validation and checkpoints.

    `processes` (ptsemseg.distributed.Processes) places this trainer among the processes of a distributed run;
    the default is a single process.
    """

    def __init__(self, cfg, config_path, processes=None):
        self.cfg = cfg
        self.config_path = config_path
        self.processes = processes or Processes()
        training = cfg["training"]
        self.device = self.processes.device(resolve_device(training["device"]))
        sync_bn = resolve_sync_bn(training["sync_bn"], self.processes, self.device)
        resolve_speed_modes(training, self.device, cfg["model"]["arch"])
        seed_everything(cfg["seed"])

        keys = sample_keys(cfg)
        self.train_set = build_dataset(cfg, cfg["data"]["train_split"], keys, augment=True)
        self.val_set = evaluation_dataset(cfg, cfg["data"]["val_split"], keys)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise PtsemsegError(f"empty dataset split: train has {len(self.train_set)}, val {len(self.val_set)} items")
        self.tasks = TaskSet(cfg["task"], self.train_set, training["best_metric"])
        self.model = build_model(cfg, self.tasks.heads(), self.device)
        if sync_bn:
            self.model = sync_batchnorm(self.model)
        self.optimizer = get_optimizer(training["optimizer"], self.model.parameters())
        self.scheduler = get_scheduler(self.optimizer, training["lr_schedule"], training["train_iters"])
        self.loss_fn = TaskSetLoss(self.tasks.weights, self.tasks.tasks, training["loss"], training["aux_weights"])
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=training["amp"] == "fp16" and self.device.type == "cuda")
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(training["ema"]["decay"]),
                                  use_buffers=True) if training["ema"] else None)
        self.meta = {"arch": cfg["model"]["arch"], "tasks": self.tasks.meta()}
        # Samples of the stream that one iteration consumes, over all processes and micro-batches.
        self.global_batch = training["batch_size"] * training["accumulate"] * self.processes.world_size

        self.start_iter, self.best, self.start_sample = 0, None, 0
        resume = training["resume"]
        if resume:
            self._restore(load_checkpoint(resume), resume)
        elif self.processes.rank > 0:
            seed_everything(cfg["seed"] + self.processes.rank)  # its own dropout draws; rank 0 keeps the seed's
        self.run_dir = training["out_dir"] or (os.path.dirname(os.path.abspath(resume)) if resume
                                               else default_run_dir(config_path))
        if self.processes.is_main:
            check_writable_dir(self.run_dir, "training.out_dir")
            self._check_new_run()

    def _check_new_run(self):
        if not self.cfg["training"]["resume"] and os.path.exists(os.path.join(self.run_dir, "last.pt")):
            raise PtsemsegError(f"run directory {self.run_dir} already holds a run: set training.resume to continue "
                                "it or training.out_dir to start another")

    def _restore(self, state, path):
        check_compatible(state, path, self.meta["arch"], self.meta["tasks"])
        load_model_state(self.model, state, path)
        try:
            self.optimizer.load_state_dict(state["optimizer_state"])
            self.scheduler.load_state_dict(state["scheduler_state"])
            if state.get("scaler_state"):
                self.scaler.load_state_dict(state["scaler_state"])
            self.start_iter = int(state["iteration"])
            self.best = state.get("best_metric")
            self.start_sample = int(state.get("data_position", self.start_iter * self.cfg["training"]["batch_size"]))
            if self.ema is not None and state.get("ema_state") is not None:
                self.ema.module.load_state_dict(state["ema_state"])
                self.ema.n_averaged.fill_(int(state["ema_updates"]))
            self._restore_rng(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise PtsemsegError(f"checkpoint {path} cannot resume this run: {type(err).__name__}: "
                                f"{str(err).splitlines()[0][:160] if str(err) else ''}") from None
        self._report_new_data_order(state)

    def _restore_rng(self, state):
        """Each process's RNG states as the checkpoint saved them; with another number of processes, rank 0 takes
        the saved rank 0's and the others start from the seed (`seed + rank`)."""
        per_rank = state.get("rank_rng_states") or [state["rng_state"]]
        if len(per_rank) == self.processes.world_size or self.processes.is_main:
            set_rng_state(per_rank[self.processes.rank])
        else:
            seed_everything(self.cfg["seed"] + self.processes.rank)

    def _report_new_data_order(self, state):
        """Say so when the resumed run splits the sample stream otherwise than the checkpoint's run did."""
        saved_processes = int(state.get("world_size", 1))
        saved_batch = int(state.get("global_batch", self.cfg["training"]["batch_size"] * saved_processes))
        if not self.processes.is_main or (saved_processes, saved_batch) == (self.processes.world_size,
                                                                             self.global_batch):
            return
        if saved_batch == self.global_batch:
            change = (f"each iteration still takes the same {saved_batch} samples, but their split over processes "
                      "changes (and with it per-process BatchNorm statistics, dropout draws and rounding)")
        else:
            change = (f"the global batch changes from {saved_batch} to {self.global_batch} samples, so the data order "
                      "(which samples form each batch) differs from the uninterrupted run's")
        tqdm.write(f"resuming at iteration {self.start_iter} on {self.processes.world_size} process(es), the "
                   f"checkpoint was trained on {saved_processes}: {change}; the sample stream continues at sample "
                   f"{self.start_sample}")

    def _state(self, iteration):
        """The checkpoint of `iteration` on rank 0 (None elsewhere); every process calls it (RNG states are
        gathered)."""
        rng_states = self.processes.all_gather(rng_state())
        if not self.processes.is_main:
            return None
        state = {
            "model_state": self.model.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(), "scaler_state": self.scaler.state_dict(),
            "iteration": iteration, "epoch": iteration, "best_metric": self.best,
            "rng_state": rng_states[0], "meta": self.meta,
            "data_position": self.start_sample + (iteration - self.start_iter) * self.global_batch,
            "world_size": self.processes.world_size, "global_batch": self.global_batch,
        }
        if self.processes.enabled:
            state["rank_rng_states"] = rng_states
        if self.ema is not None:
            state["ema_state"] = self.ema.module.state_dict()
            state["ema_updates"] = int(self.ema.n_averaged)
        return state

    def _save(self, iteration, name):
        state = self._state(iteration)
        if state is not None:
            save_atomic(state, os.path.join(self.run_dir, name))

    def _train_loader(self):
        training = self.cfg["training"]
        sampler = ResumableSampler(len(self.train_set), self.cfg["seed"], start=self.start_sample,
                                   rank=self.processes.rank, world_size=self.processes.world_size)
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=training["batch_size"], sampler=sampler, drop_last=True,
            num_workers=training["n_workers"], pin_memory=self.device.type == "cuda",
            persistent_workers=training["n_workers"] > 0,
            # Its own generator keeps worker seeding off the global torch RNG that resume restores.
            generator=torch.Generator().manual_seed(self.cfg["seed"]))

    def _val_loader(self):
        """This process's share of the validation split: items rank, rank + N, ... (no padding, no duplicates)."""
        shard = self.val_set
        if self.processes.enabled:
            shard = torch.utils.data.Subset(self.val_set, self.processes.shard(len(self.val_set)))
        return eval_loader(self.cfg, shard, self.device)

    def _training_module(self):
        """What the training step calls: the model, in DistributedDataParallel across processes, compiled with
        `training.compile`. Validation and checkpoints use `self.model` itself (eager, no `module.` prefix)."""
        self.ddp = None
        module = self.model
        if self.processes.enabled:
            module = self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg["training"]["compile"]:
            module = compiled(module, self.device, self.processes)
        return module

    def run(self):
        """Train to `train_iters`, rank 0 holding the run directory's lock; returns the last validation scores.

        Under the lock, the run directory is checked again (another run may have finished there since
        __init__) and, on resume, metrics.jsonl loses the records past the checkpoint, which are replayed.
        """
        with contextlib.ExitStack() as stack:
            def own_run_dir():
                if self.processes.is_main:
                    stack.enter_context(RunDirLock(self.run_dir))
                    self._check_new_run()
                    drop_metrics_after(self.run_dir, self.start_iter)

            self.processes.agree(own_run_dir)
            return self._train()

    def _train(self):
        training = self.cfg["training"]
        main = self.processes.is_main
        micro_batches = training["accumulate"]
        if main:
            save_config(self.cfg, os.path.join(self.run_dir, "config.yaml"))
            if self.global_batch != training["batch_size"]:
                tqdm.write(f"global batch {self.global_batch}: {self.processes.world_size} process(es) × batch_size "
                           f"{training['batch_size']} × accumulate {micro_batches}")
        writer = SummaryWriter(self.run_dir) if main else None
        train_model = self._training_module()
        val_loader = self._val_loader()
        checkpoint_interval = training["checkpoint_interval"] or training["val_interval"]
        last_write = time.monotonic()
        batches = iter(self._train_loader())
        scores = {}
        running = torch.zeros(1 + len(self.tasks.weights), device=self.device)  # loss, then each task's
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        window_start, window_iters = time.perf_counter(), 0
        train_model.train()
        progress = tqdm(total=training["train_iters"], initial=self.start_iter, desc="train", dynamic_ncols=True,
                        disable=not main)
        for iteration in range(self.start_iter + 1, training["train_iters"] + 1):
            self.optimizer.zero_grad(set_to_none=True)
            for micro_batch in range(micro_batches):
                batch = to_device(next(batches), self.device, training["channels_last"])
                # Gradients are averaged across processes once, after the last micro-batch.
                last = micro_batch == micro_batches - 1
                with contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync():
                    with autocast(self.cfg, self.device):
                        outputs = train_model(*model_inputs(self.model, batch))
                        loss, parts = self.loss_fn(outputs, batch)
                    self.scaler.scale(loss / micro_batches).backward()
                loss = loss.detach()
                running += torch.stack([value.float() for value in (loss, *parts.values())]) / micro_batches
                finite &= torch.isfinite(loss)
            if training["grad_clip"]:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), training["grad_clip"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None and iteration >= training["ema"].get("start_iter", 0):
                self.ema.update_parameters(self.model)
            window_iters += 1
            progress.update(1)

            if iteration % training["print_interval"] == 0 or iteration == training["train_iters"]:
                self._check_finite(finite, iteration)
                images_per_s = window_iters * self.global_batch / (time.perf_counter() - window_start)
                means = (self.processes.mean(running) / window_iters).tolist()
                lr = self.optimizer.param_groups[0]["lr"]
                progress.set_postfix(loss=f"{means[0]:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}")
                if writer:
                    writer.add_scalar("train/loss", means[0], iteration)
                    writer.add_scalar("train/lr", lr, iteration)
                    writer.add_scalar("train/images_per_s", images_per_s, iteration)
                    if len(self.tasks.weights) > 1:
                        for name, value in zip(self.tasks.weights, means[1:]):
                            writer.add_scalar(f"train/loss_{name}", value, iteration)
                running.zero_()
                window_start, window_iters = time.perf_counter(), 0

            validate = iteration % training["val_interval"] == 0 or iteration == training["train_iters"]
            # last.pt also every checkpoint_minutes of wall-clock time (rank 0's clock decides for every process);
            # its content depends only on the iteration.
            due = time.monotonic() - last_write >= 60 * training["checkpoint_minutes"]
            checkpoint = validate or iteration % checkpoint_interval == 0 or self.processes.decide(due)
            if checkpoint:
                self._check_state(finite, iteration)
            if validate:
                scores = self._validate(val_loader, iteration, writer)
            if checkpoint:
                self._save(iteration, "last.pt")
                last_write = time.monotonic()
        progress.close()
        if writer:
            writer.close()
        return scores

    def _check_finite(self, finite, iteration):
        """Stop every process when the loss of any was not finite since the last check."""
        self.processes.raise_first(None if bool(finite) else
                                   f"non-finite loss before iteration {iteration}; {self._stopped()}")

    def _check_state(self, finite, iteration):
        """The loss, then every weight, buffer and optimizer state, before they are validated or saved (rank 0's:
        the weights are the same on every process, and its buffers are the ones DDP broadcasts and saves)."""
        self._check_finite(finite, iteration)
        name = first_non_finite(self.model, self.optimizer) if self.processes.is_main else None
        self.processes.raise_first(None if name is None else
                                   f"non-finite values in {name} at iteration {iteration}; {self._stopped()}")

    def _stopped(self):
        kept = (f"the last good checkpoint is kept in {self.run_dir}"
                if os.path.exists(os.path.join(self.run_dir, "last.pt")) else "no checkpoint was written")
        return f"the run stopped, {kept} (lower the learning rate?)"

    def _validate(self, val_loader, iteration, writer):
        """Score the EMA weights once the EMA has started (`training.ema`), else the model's; every process scores
        its share of the split and all get the whole split's scores."""
        use_ema = self.ema is not None and int(self.ema.n_averaged) > 0
        model = self.ema.module if use_ema else self.model
        self.processes.broadcast_buffers(model)  # rank 0's BatchNorm statistics, the ones it saves
        scores, batch, predictions = evaluate(model, val_loader, self.tasks, self.cfg, self.device,
                                              processes=self.processes)
        if self.processes.is_main:
            for name, value in scores.items():
                if isinstance(value, (int, float)):
                    writer.add_scalar(f"val/{name}", value, iteration)
            grid = image_grid(self.tasks, batch, predictions)
            if grid.shape[1] > GRID_MAX_WIDTH:
                scale = GRID_MAX_WIDTH / grid.shape[1]
                grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            writer.add_image("val/input_truth_prediction", grid, iteration, dataformats="HWC")
            append_metrics(self.run_dir, {"iteration": iteration, **scores})
            summary = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float))
            tqdm.write(f"iter {iteration}{' (EMA weights)' if use_ema else ''}: {summary}")
        if self.tasks.is_better(scores, self.best):
            self.best = scores[self.tasks.best_key]
            self._save(iteration, "best.pt")
        return scores


def compiled(module, device, processes):
    """`module` compiled with torch.compile, or `module` itself with a one-line warning where the compiler backend
    fails on this machine (every process must succeed, so that all run the same code).

    A tiny function is compiled first: a missing backend (no C++ compiler for CPU code, no Triton for GPU code) fails
    there, before the model's first step. Graphs of the model that the backend still cannot compile run eagerly
    (`suppress_errors`)."""
    loggers = [logging.getLogger(name) for name in ("torch._dynamo", "torch._inductor")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:  # the warning below says it in one line
            logger.setLevel(logging.ERROR)
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2, device=device))
        reason = None
    except Exception as err:  # noqa: BLE001 - any backend failure means: train eagerly
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    reasons = [text for text in processes.all_gather(reason) if text is not None]
    if reasons:
        warnings.warn(f"training.compile: torch.compile fails on this {device.type} ({reasons[0]}); the model runs "
                      "eagerly")
        return module
    torch._dynamo.config.suppress_errors = True
    return torch.compile(module)
