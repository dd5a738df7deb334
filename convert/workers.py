"""Worker processes die with the process that started them.

A process pool's workers are separate processes: when the main process is
killed outright (SIGKILL, the OOM killer, a closed terminal's hard kill) nothing
in it runs any more, so it cannot stop them, and a worker would go on reading
its queue and writing outputs nobody asked for. Every pool medconvert starts
passes :func:`die_with_parent` as its initializer:

* on Linux the kernel sends the worker SIGKILL the moment its parent dies
  (``prctl(PR_SET_PDEATHSIG)``, through :mod:`ctypes`; no dependency);
* elsewhere (or where prctl is refused) a daemon thread in the worker checks
  every :data:`WATCH_INTERVAL_S` seconds whether its parent is still the one
  that started it (an orphan is re-parented, so ``os.getppid()`` changes) and
  ends the worker at once (``os._exit``) when it is not.

A worker killed mid-write leaves only a temporary file whose name holds its
pid (:func:`convert.atomic.temporary_name`), which the next run removes.

Memory (issue 13: whole-archive peak bounded by a few series, not by the archive):

* :func:`shared_heap` freezes the parent's objects (:func:`gc.freeze`) while a fork pool runs:
  the workers' garbage collections then never write to the objects they inherited (the scan's
  instances of every file, the plan), so those pages stay shared with the parent instead of
  being copied into every worker;
* :func:`release_freed_memory` hands the memory a finished job freed back to the system
  (glibc ``malloc_trim``): glibc's dynamic mmap threshold otherwise serves the next large
  arrays from the heap and keeps a series' worth of freed pages per process.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1

#: Seconds between two checks of the portable fallback (no prctl).
WATCH_INTERVAL_S = 0.2


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process end when ``parent_pid``, the process that started it, ends.

    Call it first thing in a pool initializer, with ``os.getpid()`` of the parent
    taken before the pool starts. Exits at once if the parent is already gone.
    """
    if _parent_death_signal():
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)
        return
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="medconvert-parent-watch",
                     daemon=True).start()


def _parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError, TypeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """The portable fallback: end this process as soon as its parent is no longer ``parent_pid``."""
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)


def _init_worker(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def process_pool(n_workers: int, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = ()) -> "ProcessPoolExecutor":
    """The one way medconvert starts worker processes: ``n_workers`` of them, ending with this process.

    Workers are forked where the platform allows (no re-import, the parent's state inherited:
    ``initargs`` are then not pickled), else spawned; each first calls :func:`die_with_parent`,
    then ``initializer(*initargs)``. Use it as a context manager.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ProcessPoolExecutor(max_workers=n_workers, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(), initializer, initargs))


_LIBC: Any = None


def _libc() -> Any:
    """The C library (``ctypes.CDLL(None)``), loaded once; False where there is none."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL(None)
        except (OSError, ImportError):  # pragma: no cover - no C library to load
            _LIBC = False
    return _LIBC


def release_freed_memory() -> bool:
    """Return memory freed by this process to the system (glibc ``malloc_trim(0)``); True if it could.

    Call it between jobs (a series read, converted and written: its arrays are freed). glibc
    keeps freed heap memory for reuse, and after a large array is freed it raises its mmap
    threshold so that the next arrays of that size come from the heap too: without a trim a
    worker keeps the largest series' worth of pages it no longer uses for the rest of the run.
    Well under a millisecond (0.04-0.13 ms measured after freeing three 28 MB arrays); a no-op
    (False) where the C library has no ``malloc_trim`` (musl, macOS, Windows).
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc else None
    if trim is None:
        return False
    trim(0)
    return True


@contextmanager
def shared_heap() -> Iterator[None]:
    """Keep the objects of this process out of the garbage collector's reach while a fork pool runs.

    Every object alive on entry is moved to the collector's permanent generation
    (:func:`gc.freeze`), so the collections of forked workers never touch them (a collection
    writes to the header of every object it examines, copying its page into the worker) and
    the pages stay shared between the parent and its workers. On exit the objects are handed
    back to the collector (:func:`gc.unfreeze`). Objects created inside are collected as usual.
    Before freezing, garbage is collected and the freed memory handed back
    (:func:`release_freed_memory`): the workers inherit neither.
    """
    gc.collect()
    release_freed_memory()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
