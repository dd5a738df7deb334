"""convert/workers.py: pool workers end when the process that started them is killed (issue 17)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from convert.atomic import process_alive

pytestmark = pytest.mark.skipif(os.name != "posix", reason="fork pools and signals: POSIX only")

#: A parent that starts a two-worker fork pool with die_with_parent, prints the worker pids, then waits.
PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
import convert.workers as workers
if sys.argv[1] == "fallback":
    workers._parent_death_signal = lambda: False  # the portable watcher thread instead of prctl
def pid(_):
    time.sleep(0.2)
    return os.getpid()
pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"),
                           initializer=workers.die_with_parent, initargs=(os.getpid(),))
print(" ".join(str(p) for p in sorted(set(pool.map(pid, range(8))))), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["prctl", "fallback"])
def test_workers_end_when_their_parent_is_killed(mode: str) -> None:
    if mode == "prctl" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.Popen([sys.executable, "-c", PARENT, mode], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": repo})
    try:
        line = proc.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert workers and all(process_alive(p) for p in workers)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 3
    while any(process_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(process_alive(p) for p in workers)


def test_die_with_parent_exits_when_the_parent_is_already_gone() -> None:
    code = "import convert.workers as w; w.die_with_parent(1 << 22); print('alive')"  # not its parent's pid
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "alive" not in proc.stdout


def test_shared_heap_freezes_the_objects_alive_and_hands_them_back() -> None:
    import gc

    import convert.workers as workers

    before = gc.get_freeze_count()
    kept = [object() for _ in range(10)]
    with workers.shared_heap():
        assert gc.get_freeze_count() >= before + len(kept)
    assert gc.get_freeze_count() == before


def test_release_freed_memory_trims_with_glibc_and_is_a_no_op_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    import convert.workers as workers

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert workers.release_freed_memory() is True
    monkeypatch.setattr(workers, "_LIBC", False)  # no C library (or one without malloc_trim)
    assert workers.release_freed_memory() is False
