"""The run directory: its exclusive lock, the checks that it can be written, and metrics.jsonl.

One run owns a run directory at a time: `RunDirLock` holds an flock on its `.lock` file for the whole run,
so a second run into the same directory fails in one line instead of racing on the same files. The kernel
drops the lock when the owning process dies, so a crashed run never leaves a stale lock behind.
"""
import errno
import fcntl
import glob
import json
import math
import os
import tempfile

from ptsemseg.checkpoint import write_atomic
from ptsemseg.errors import PtsemsegError

LOCK_NAME = ".lock"
METRICS_NAME = "metrics.jsonl"


def check_writable_dir(path, what):
    """Fail in one line unless directory `path` exists or can be created, and files can be written into it.

    Probes the nearest existing ancestor with an anonymous temporary file, so the check writes nothing
    that stays (and catches read-only file systems and refusing mounts that permission bits do not show).
    """
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PtsemsegError(f"{what} {path}: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise PtsemsegError(f"{what} {path}: cannot write into {existing} ({err.strerror})") from None


def find_run_dirs(path, is_run, holds):
    """`path` if `is_run(path)`, else every folder below it for which `is_run` holds (not searched further), sorted;
    `holds` says in the error what a run folder has."""
    if not os.path.isdir(path):
        raise PtsemsegError(f"run directory not found: {path}")
    if is_run(path):
        return [path]
    found = []
    for folder, subfolders, _ in os.walk(path):
        subfolders.sort()
        if is_run(folder):
            found.append(folder)
            subfolders.clear()
    if not found:
        raise PtsemsegError(f"{path}: no run directory ({holds}) in it")
    return found


def check_output_file(path, what):
    """Fail in one line unless file `path` can be written: its directory exists and takes files."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise PtsemsegError(f"{what} {path} is a directory")
    if not os.path.isdir(directory):
        raise PtsemsegError(f"{what} {path}: directory {directory} does not exist")
    check_writable_dir(directory, what)


class RunDirLock:
    """Exclusive ownership of a run directory for the life of a run (a context manager).

    The lock file records the owner's pid for the message another run gets. On entry, temporary files that
    a killed run left behind (see `write_atomic`) are removed: no other run can be writing them.
    """

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.fd = None

    def __enter__(self):
        try:
            os.makedirs(self.run_dir, exist_ok=True)
            fd = os.open(os.path.join(self.run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise PtsemsegError(f"cannot create run directory {self.run_dir}: {err.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise PtsemsegError(f"cannot lock run directory {self.run_dir}: {err.strerror}") from None
            if _has_ended(owner):  # its forked DataLoader workers still hold the lock for a few seconds
                raise PtsemsegError(f"run directory {self.run_dir} is still locked by the workers of run pid {owner}, "
                                    "which has ended: retry in a few seconds") from None
            raise PtsemsegError(f"run directory {self.run_dir} is in use by another run (pid {owner}); "
                                "wait for it to end or set training.out_dir to another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        for pattern in ("*.pt.*.tmp", f"{METRICS_NAME}.*.tmp"):
            for stale in glob.glob(os.path.join(glob.escape(self.run_dir), pattern)):
                os.remove(stale)
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _has_ended(pid):
    """Whether process `pid` (a string read from a lock file) no longer exists."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # no pid recorded, or a process of another user
        pass
    return False


def json_safe(value):
    """`value` with every non-finite float replaced by None, so it serialises as strict JSON (`null`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def append_metrics(run_dir, record):
    """Append one validation record to metrics.jsonl as strict JSON (non-finite values as null)."""
    with open(os.path.join(run_dir, METRICS_NAME), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


def drop_metrics_after(run_dir, iteration):
    """Keep only metrics.jsonl records up to `iteration`, the checkpoint a run resumes from.

    A run killed after writing a record but before its checkpoint replays those iterations on resume;
    without this the file would hold them twice. A torn last line (killed mid-write) goes too.
    """
    path = os.path.join(run_dir, METRICS_NAME)
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    kept = [line for line in lines if _iteration_of(line) <= iteration]
    if kept != lines:
        text = "".join(line + "\n" for line in kept)
        write_atomic(path, lambda handle: handle.write(text.encode("utf-8")))


def _iteration_of(line):
    """The iteration of a metrics.jsonl line; infinity for a line that does not parse, so it is dropped."""
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return math.inf
