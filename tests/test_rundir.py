"""Run directories: the exclusive lock, atomic writes with unique temporary names, writability checks, metrics."""
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

from ptsemseg.checkpoint import save_atomic
from ptsemseg.errors import PtsemsegError
from ptsemseg.rundir import RunDirLock, check_output_file, check_writable_dir, drop_metrics_after, json_safe
from tests.conftest import REPO


def test_lock_is_exclusive_and_released(tmp_path):
    run_dir = str(tmp_path / "run")
    with RunDirLock(run_dir):
        assert open(os.path.join(run_dir, ".lock")).read() == f"{os.getpid()}\n"
        busy = f"run directory {run_dir} is in use by another run \\(pid {os.getpid()}\\)"
        with pytest.raises(PtsemsegError, match=busy):
            with RunDirLock(run_dir):
                pass
    with RunDirLock(run_dir):
        pass


def test_lock_held_by_a_dead_runs_workers_says_so(tmp_path):
    """A killed run's forked DataLoader workers hold its lock until they notice and exit: the message says the run
    has ended and to retry."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from ptsemseg.rundir import RunDirLock
        RunDirLock({str(tmp_path)!r}).__enter__()
        worker = os.fork()
        if worker == 0:
            for fd in (1, 2):  # let the caller's reads of stdout and stderr end
                os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
            time.sleep(120)
            os._exit(0)
        print(worker, flush=True)
        os._exit(0)  # ends without releasing the lock, as a killed run does
    """)
    owner = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    worker = int(owner.stdout)
    try:
        pid = open(tmp_path / ".lock").read().strip()
        with pytest.raises(PtsemsegError, match=f"still locked by the workers of run pid {pid}, which has ended"):
            RunDirLock(str(tmp_path)).__enter__()
    finally:
        os.kill(worker, signal.SIGKILL)


def test_lock_removes_temporaries_of_killed_writers(tmp_path):
    for name in ("last.pt.0123456789abcdef.tmp", "metrics.jsonl.0123456789abcdef.tmp", "notes.tmp"):
        (tmp_path / name).write_text("left by a killed run")
    with RunDirLock(str(tmp_path)):
        assert sorted(os.listdir(tmp_path)) == [".lock", "notes.tmp"]


def test_save_atomic_never_touches_another_writers_temporary(tmp_path):
    """The temporary name is unique: a file at the old fixed name `<path>.tmp` (another writer's) stays as it is."""
    path = tmp_path / "last.pt"
    other = tmp_path / "last.pt.tmp"
    other.write_bytes(b"another writer's half-written checkpoint")
    save_atomic({"iteration": 1}, str(path))
    assert other.read_bytes() == b"another writer's half-written checkpoint"
    assert torch.load(path, weights_only=True) == {"iteration": 1}
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "last.pt.tmp"]


def test_concurrent_atomic_saves_do_not_collide(tmp_path):
    path = str(tmp_path / "last.pt")
    errors = []

    def save_many(writer):
        try:
            for iteration in range(20):
                save_atomic({"writer": writer, "iteration": iteration, "weights": torch.zeros(1000)}, path)
        except Exception as err:  # noqa: BLE001 - collected for the assertion below
            errors.append(err)

    threads = [threading.Thread(target=save_many, args=(writer,)) for writer in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert torch.load(path, weights_only=True)["iteration"] == 19
    assert os.listdir(tmp_path) == ["last.pt"]


def test_failed_save_leaves_no_temporary(tmp_path):
    with pytest.raises(AttributeError, match="pickle"):
        save_atomic({"not saveable": lambda: None}, str(tmp_path / "last.pt"))
    assert os.listdir(tmp_path) == []


def test_writability_checks(tmp_path):
    check_writable_dir(str(tmp_path / "new" / "run"), "training.out_dir")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(PtsemsegError, match="file is a file, not a directory"):
        check_writable_dir(str(tmp_path / "file" / "run"), "training.out_dir")
    with pytest.raises(PtsemsegError, match="cannot write into /sys"):
        check_writable_dir("/sys/ptsemseg-run", "training.out_dir")
    with pytest.raises(PtsemsegError, match="does not exist"):
        check_output_file(str(tmp_path / "missing" / "scores.json"), "--out-json")
    check_output_file(str(tmp_path / "scores.json"), "--out-json")
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_json_safe_turns_non_finite_into_null():
    assert json_safe({"a": float("nan"), "b": [1.0, float("inf"), -float("inf")], "c": 2, "d": "x"}) == \
        {"a": None, "b": [1.0, None, None], "c": 2, "d": "x"}


def test_drop_metrics_after_keeps_the_file_when_nothing_is_past(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 3}\n{"iteration": 6}\n')
    before = os.stat(path).st_ino
    drop_metrics_after(str(tmp_path), 6)
    assert os.stat(path).st_ino == before
    drop_metrics_after(str(tmp_path), 5)
    assert path.read_text() == '{"iteration": 3}\n'
