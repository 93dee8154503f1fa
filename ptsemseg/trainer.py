"""One iteration-based trainer for every architecture and task.

Task-specific behaviour (heads, target keys, default losses, metrics, best-model criterion, drawing) comes from
the run's TaskSet; architecture-specific behaviour lives in the model. Exact resume: the checkpoint holds the
model, optimizer, scheduler, AMP scaler, RNG states and the iteration, and the data order is a pure function
of (seed, sample counter), so a resumed run replays exactly what an uninterrupted run would have done.
"""
import datetime
import os
import time

import cv2
import numpy as np
import torch
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
from ptsemseg.evaluation import evaluate, evaluation_dataset
from ptsemseg.schedulers import get_scheduler
from ptsemseg.tasks import TaskSet
from ptsemseg.visualize import image_grid


class ResumableSampler(torch.utils.data.Sampler):
    """Endless shuffled stream of (index, augmentation seed) starting at any sample counter.

    Epoch e visits the permutation drawn from (seed, e); sample k gets augmentation seed (seed, k). Both
    depend only on the counter, so resuming at counter k needs no replay of earlier batches.
    """

    def __init__(self, n_samples, seed, start=0):
        self.n_samples = n_samples
        self.seed = seed
        self.start = start

    def __iter__(self):
        counter = self.start
        epoch, order = None, None
        while True:
            current_epoch, position = divmod(counter, self.n_samples)
            if current_epoch != epoch:
                epoch = current_epoch
                order = np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)
            yield int(order[position]), (self.seed, counter)
            counter += 1


# Widest validation picture written to TensorBoard: frames scored at native size (2048 wide for Cityscapes) are
# shrunk to fit, so the event file does not grow by tens of megabytes at every validation.
GRID_MAX_WIDTH = 2048


def default_run_dir(config_path, prefix=""):
    """`runs/<config stem>/<prefix><date-time>`: a new directory for every run."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return os.path.join("runs", stem, prefix + stamp)


class Trainer:
    """Builds everything a config describes, checks it, then trains with periodic validation and checkpoints."""

    def __init__(self, cfg, config_path):
        self.cfg = cfg
        self.config_path = config_path
        training = cfg["training"]
        self.device = resolve_device(training["device"])
        resolve_speed_modes(training, self.device, cfg["model"]["arch"])
        seed_everything(cfg["seed"])

        keys = sample_keys(cfg)
        self.train_set = build_dataset(cfg, cfg["data"]["train_split"], keys, augment=True)
        self.val_set = evaluation_dataset(cfg, cfg["data"]["val_split"], keys)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise PtsemsegError(f"empty dataset split: train has {len(self.train_set)}, val {len(self.val_set)} items")
        self.tasks = TaskSet(cfg["task"], self.train_set, training["best_metric"])
        self.model = build_model(cfg, self.tasks.heads(), self.device)
        self.optimizer = get_optimizer(training["optimizer"], self.model.parameters())
        self.scheduler = get_scheduler(self.optimizer, training["lr_schedule"], training["train_iters"])
        self.loss_fn = TaskSetLoss(self.tasks.weights, self.tasks.tasks, training["loss"], training["aux_weights"])
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=training["amp"] == "fp16" and self.device.type == "cuda")
        self.meta = {"arch": cfg["model"]["arch"], "tasks": self.tasks.meta()}

        self.start_iter, self.best = 0, None
        resume = training["resume"]
        if resume:
            self._restore(load_checkpoint(resume), resume)
        self.run_dir = training["out_dir"] or (os.path.dirname(os.path.abspath(resume)) if resume
                                               else default_run_dir(config_path))
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
            set_rng_state(state["rng_state"])
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise PtsemsegError(f"checkpoint {path} cannot resume this run: {type(err).__name__}: "
                                f"{str(err).splitlines()[0][:160] if str(err) else ''}") from None

    def _state(self, iteration):
        return {
            "model_state": self.model.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.scheduler.state_dict(), "scaler_state": self.scaler.state_dict(),
            "iteration": iteration, "epoch": iteration, "best_metric": self.best,
            "rng_state": rng_state(), "meta": self.meta,
            "data_position": iteration * self.cfg["training"]["batch_size"],
        }

    def _train_loader(self):
        training = self.cfg["training"]
        sampler = ResumableSampler(len(self.train_set), self.cfg["seed"],
                                   start=self.start_iter * training["batch_size"])
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=training["batch_size"], sampler=sampler, drop_last=True,
            num_workers=training["n_workers"], pin_memory=self.device.type == "cuda",
            persistent_workers=training["n_workers"] > 0,
            # Its own generator keeps worker seeding off the global torch RNG that resume restores.
            generator=torch.Generator().manual_seed(self.cfg["seed"]))

    def run(self):
        """Train to `train_iters` holding the run directory's lock; returns the last validation scores.

        Under the lock, the run directory is checked again (another run may have finished there since
        __init__) and, on resume, metrics.jsonl loses the records past the checkpoint, which are replayed.
        """
        with RunDirLock(self.run_dir):
            self._check_new_run()
            drop_metrics_after(self.run_dir, self.start_iter)
            return self._train()

    def _train(self):
        training = self.cfg["training"]
        save_config(self.cfg, os.path.join(self.run_dir, "config.yaml"))
        writer = SummaryWriter(self.run_dir)
        val_loader = eval_loader(self.cfg, self.val_set, self.device)
        checkpoint_interval = training["checkpoint_interval"] or training["val_interval"]
        last_write = time.monotonic()
        batches = iter(self._train_loader())
        scores = {}
        running_loss = torch.zeros((), device=self.device)
        running_parts = dict.fromkeys(self.tasks.weights, 0.0)
        finite = torch.ones((), dtype=torch.bool, device=self.device)
        window_start, window_iters = time.perf_counter(), 0
        self.model.train()
        progress = tqdm(total=training["train_iters"], initial=self.start_iter, desc="train", dynamic_ncols=True)
        for iteration in range(self.start_iter + 1, training["train_iters"] + 1):
            batch = to_device(next(batches), self.device, training["channels_last"])
            with autocast(self.cfg, self.device):
                outputs = self.model(*model_inputs(self.model, batch))
                loss, parts = self.loss_fn(outputs, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss = loss.detach()
            running_loss += loss
            for name, value in parts.items():
                running_parts[name] = running_parts[name] + value
            finite &= torch.isfinite(loss)
            window_iters += 1
            progress.update(1)

            if iteration % training["print_interval"] == 0 or iteration == training["train_iters"]:
                self._check_finite(finite, iteration)
                images_per_s = window_iters * training["batch_size"] / (time.perf_counter() - window_start)
                mean_loss = (running_loss / window_iters).item()
                lr = self.optimizer.param_groups[0]["lr"]
                progress.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}")
                writer.add_scalar("train/loss", mean_loss, iteration)
                writer.add_scalar("train/lr", lr, iteration)
                writer.add_scalar("train/images_per_s", images_per_s, iteration)
                if len(running_parts) > 1:
                    for name, value in running_parts.items():
                        writer.add_scalar(f"train/loss_{name}", float(value) / window_iters, iteration)
                running_parts = dict.fromkeys(running_parts, 0.0)
                running_loss.zero_()
                window_start, window_iters = time.perf_counter(), 0

            validate = iteration % training["val_interval"] == 0 or iteration == training["train_iters"]
            # last.pt also every checkpoint_minutes of wall-clock time; its content depends only on the iteration.
            checkpoint = (validate or iteration % checkpoint_interval == 0
                          or time.monotonic() - last_write >= 60 * training["checkpoint_minutes"])
            if checkpoint:
                self._check_state(finite, iteration)
            if validate:
                scores = self._validate(val_loader, iteration, writer)
            if checkpoint:
                save_atomic(self._state(iteration), os.path.join(self.run_dir, "last.pt"))
                last_write = time.monotonic()
        progress.close()
        writer.close()
        return scores

    def _check_finite(self, finite, iteration):
        if not bool(finite):
            raise PtsemsegError(f"non-finite loss before iteration {iteration}; {self._stopped()}")

    def _check_state(self, finite, iteration):
        """The loss, then every weight, buffer and optimizer state, before they are validated or saved."""
        self._check_finite(finite, iteration)
        name = first_non_finite(self.model, self.optimizer)
        if name is not None:
            raise PtsemsegError(f"non-finite values in {name} at iteration {iteration}; {self._stopped()}")

    def _stopped(self):
        kept = (f"the last good checkpoint is kept in {self.run_dir}"
                if os.path.exists(os.path.join(self.run_dir, "last.pt")) else "no checkpoint was written")
        return f"the run stopped, {kept} (lower the learning rate?)"

    def _validate(self, val_loader, iteration, writer):
        scores, batch, predictions = evaluate(self.model, val_loader, self.tasks, self.cfg, self.device)
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
        tqdm.write(f"iter {iteration}: {summary}")
        if self.tasks.is_better(scores, self.best):
            self.best = scores[self.tasks.best_key]
            save_atomic(self._state(iteration), os.path.join(self.run_dir, "best.pt"))
        return scores
