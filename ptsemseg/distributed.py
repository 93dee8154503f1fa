"""Training on several processes: the launch environment (torchrun, SLURM), the process group, and what the
processes must agree on.

One process per device: torchrun (or srun) starts N copies of train.py; each reads its rank from the environment,
joins the process group (Gloo for CPU tensors, NCCL for CUDA ones) and trains a DistributedDataParallel replica on
`training.batch_size` samples of every global batch. Rank 0 alone writes the run directory. What a process can fail
on before training (config, data, checkpoint, run directory) is checked on every rank and agreed on
(`Processes.agree`): when any rank fails, rank 0 prints that rank's one line and every rank exits with code 2.
"""
import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ptsemseg.errors import PtsemsegError

# Port of the rendezvous under SLURM without MASTER_PORT: this base plus the job id modulo 10000, so that two jobs
# sharing a node do not collide.
SLURM_PORT_BASE = 20000


class PeerFailure(PtsemsegError):
    """This process stops because another one failed; rank 0 prints that one's message, this one prints nothing."""

    silent = True


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a launch: its rank among `world_size`, its rank on its node, the rendezvous."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def _int_variable(environ, name):
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise PtsemsegError(f"environment variable {name} must be an integer, got {value!r}") from None


def first_slurm_host(nodelist):
    """The first host name of a SLURM node list (`node[01-04]`), as `scontrol show hostnames` expands it."""
    try:
        hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        hosts = []
    if not hosts:
        raise PtsemsegError(f"cannot find the first host of SLURM node list {nodelist!r} with scontrol: set "
                            "MASTER_ADDR to it")
    return hosts[0]


def launch_environment(environ, first_host=first_slurm_host):
    """This process's Launch from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or,
    where they are absent, SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; MASTER_ADDR default: the first host
    of the step's nodes, MASTER_PORT default: 20000 + SLURM_JOB_ID % 10000). None for a single process."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        rank, world_size = _int_variable(environ, "RANK"), _int_variable(environ, "WORLD_SIZE")
        local_rank = _int_variable(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else rank
        master_addr = environ.get("MASTER_ADDR", "127.0.0.1")
        master_port = _int_variable(environ, "MASTER_PORT") if "MASTER_PORT" in environ else 29500
    elif "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        rank, world_size = _int_variable(environ, "SLURM_PROCID"), _int_variable(environ, "SLURM_NTASKS")
        local_rank = _int_variable(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0
        if world_size <= 1:
            return None
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
        if "MASTER_ADDR" in environ:
            master_addr = environ["MASTER_ADDR"]
        elif nodelist:
            master_addr = first_host(nodelist)
        else:
            raise PtsemsegError("SLURM task without SLURM_JOB_NODELIST: set MASTER_ADDR to the first node's host")
        if "MASTER_PORT" in environ:
            master_port = _int_variable(environ, "MASTER_PORT")
        else:
            master_port = SLURM_PORT_BASE + (_int_variable(environ, "SLURM_JOB_ID") % 10000
                                             if "SLURM_JOB_ID" in environ else 0)
    else:
        return None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size or local_rank < 0:
        raise PtsemsegError(f"rank {rank} (local rank {local_rank}) does not fit a world of {world_size} processes")
    return Launch(rank, world_size, local_rank, master_addr, master_port)


@dataclass(frozen=True)
class Processes:
    """The processes of one run: this one's rank, their number, this one's rank on its node.

    Every method works for a single process (the default) without a process group, so the trainer has one code path.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def device(self, device):
        """This process's device: on CUDA the GPU of its local rank (see `gpu_of`)."""
        if not self.enabled or device.type != "cuda":
            return device
        index = gpu_of(self.local_rank)
        if index is None:
            visible = torch.cuda.device_count()
            raise PtsemsegError(f"local rank {self.local_rank} needs GPU {self.local_rank}, but this process sees "
                                f"{visible}: launch at most {visible} processes per node (--nproc_per_node)")
        return torch.device("cuda", index)

    def all_gather(self, value):
        """Every rank's `value` (any picklable object), in rank order."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def broadcast(self, value):
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def decide(self, flag):
        """Rank 0's boolean `flag` on every rank (one CPU byte: with NCCL for CUDA, it travels over Gloo)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([int(flag)], dtype=torch.uint8)
        dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def mean(self, tensor):
        """The mean of `tensor` over the ranks."""
        if not self.enabled:
            return tensor
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / self.world_size

    def broadcast_buffers(self, module):
        """Rank 0's buffers of `module` (BatchNorm running statistics, which without SyncBN each process updates from
        its own samples) on every rank."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def raise_first(self, message):
        """Fail on every rank when any rank has a `message` (None: nothing wrong here): rank 0 raises the first
        failing rank's message (prefixed with that rank unless it is 0), the others PeerFailure."""
        if not self.enabled:
            if message is not None:
                raise PtsemsegError(message)
            return
        failures = [(rank, text) for rank, text in enumerate(self.all_gather(message)) if text is not None]
        if not failures:
            return
        if not self.is_main:
            raise PeerFailure()
        rank, text = failures[0]
        raise PtsemsegError(text if rank == 0 else f"rank {rank}: {text}")

    def agree(self, action):
        """`action()`, ending every rank when it raises PtsemsegError on any (see `raise_first`)."""
        if not self.enabled:
            return action()
        result, message = None, None
        try:
            result = action()
        except PeerFailure:
            raise
        except PtsemsegError as err:
            message = str(err)
        self.raise_first(message)
        return result

    def shard(self, n_items):
        """The indices of `n_items` this rank handles: rank, rank + N, ...: each item once, none padded."""
        return range(self.rank, n_items, self.world_size)

    def merge_metrics(self, metrics, fresh):
        """Metric accumulators holding every rank's: `fresh()` gives empty ones (by task name), into which each
        rank's state is merged in rank order, so every rank computes the same scores (confusion matrices and counts
        add up exactly; float sums up to rounding)."""
        if not self.enabled:
            return metrics
        states = self.all_gather({name: {key: value.cpu() for key, value in metric.state().items()}
                                  for name, metric in metrics.items()})
        merged = fresh()
        for state in states:
            for name, metric in merged.items():
                metric.merge(state[name])
        return merged


def gpu_of(local_rank):
    """The GPU of the process of `local_rank` on its node: GPU `local_rank` when the process sees every GPU of the
    node (torchrun), GPU 0 when it sees one alone (Slurm's --gpus-per-task, CUDA_VISIBLE_DEVICES per process), else
    None."""
    visible = torch.cuda.device_count()
    if local_rank < visible:
        return local_rank
    return 0 if visible == 1 else None


def init_processes(environ=None):
    """Join the process group this process was launched into (torchrun or SLURM); a single process joins none."""
    environ = os.environ if environ is None else environ
    launch = launch_environment(environ)
    if launch is None:
        return Processes()
    environ.setdefault("MASTER_ADDR", launch.master_addr)
    environ.setdefault("MASTER_PORT", str(launch.master_port))
    cuda = torch.cuda.is_available()
    if cuda and gpu_of(launch.local_rank) is not None:
        torch.cuda.set_device(gpu_of(launch.local_rank))
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", rank=launch.rank,
                                world_size=launch.world_size)
    except (RuntimeError, ValueError) as err:
        raise PtsemsegError(f"rank {launch.rank} of {launch.world_size} cannot join the process group at "
                            f"{launch.master_addr}:{launch.master_port}: {str(err).splitlines()[0][:200]}") from None
    return Processes(launch.rank, launch.world_size, launch.local_rank)


def close_processes(processes):
    if processes.enabled and dist.is_initialized():
        dist.destroy_process_group()


def lost_peer(err):
    """Whether `err` says that another process of the group went away (killed, or failed and exited)."""
    text = str(err)
    return isinstance(err, dist.DistError) or any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "Broken pipe"))


def sync_batchnorm(module):
    """`module` with every BatchNorm that trains replaced by SyncBatchNorm (torch's conversion, layer by layer);
    frozen ones (`freeze_bn`: affine parameters without gradient, kept in eval mode) stay as they are."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            frozen = child.affine and not child.weight.requires_grad
            if not frozen:
                setattr(module, name, torch.nn.SyncBatchNorm.convert_sync_batchnorm(child))
        else:
            sync_batchnorm(child)
    return module


def resolve_sync_bn(value, processes, device):
    """Whether the run converts BatchNorm to SyncBatchNorm: `auto` when several processes train on GPUs; `true`
    with several processes on CPU fails (torch's SyncBatchNorm computes only on GPUs); one process needs none."""
    if value == "auto":
        return processes.enabled and device.type == "cuda"
    if value and processes.enabled and device.type != "cuda":
        raise PtsemsegError("training.sync_bn: true needs GPUs: torch's SyncBatchNorm has no CPU implementation "
                            "(use auto or false; compare runs with a BN-free model or freeze_bn)")
    return bool(value) and processes.enabled
