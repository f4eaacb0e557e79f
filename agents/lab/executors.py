"""Where independent tasks run: in this process, in a local process pool, or on Ray.

The evaluation harness (:mod:`agents.lab.evaluation`) cuts its grid into independent
tasks (size x agent x chunk of snapshots) and hands them to one of these
executors. Every executor takes a picklable function and a list of payloads and
yields ``(index, Outcome)`` pairs as tasks finish, in completion order; the caller
puts the results back in grid order, so the output does not depend on the
executor. A task that raises is retried ``retries`` times (Ray's own
``retry_exceptions`` on Ray) and then reported as a failed :class:`Outcome`
with its error, while the other tasks go on.

Ray is optional (``pip install 'cfpilot[distributed]'``): only
:class:`RayExecutor` and :mod:`agents.lab.sweep` import it, and only when used.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

EXECUTORS = ("local", "processes", "ray")
RAY_MISSING = ("Ray is not installed: pip install 'cfpilot[distributed]' (or pip install 'ray[tune]'), "
               "or use --executor local|processes")


def ray_available() -> bool:
    """Whether ``import ray`` would work (without importing it)."""
    return importlib.util.find_spec("ray") is not None


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its value, or the error of its last attempt."""

    ok: bool
    value: Any = None
    error: str = ""
    attempts: int | None = None
    """attempts made (None where Ray retried on its own and does not say)"""


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (first line of the message)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def call_with_retries(fn: Callable[[Any], Any], payload: Any, retries: int) -> Outcome:
    """Run ``fn(payload)`` up to ``1 + retries`` times (a :class:`TaskTimeout` once: it would hang
    again); never raises an ``Exception`` (KeyboardInterrupt still stops the run)."""
    last: Exception | None = None
    for attempt in range(1, retries + 2):
        try:
            return Outcome(True, fn(payload), attempts=attempt)
        except Exception as err:  # noqa: BLE001 - reported, not swallowed
            last = err
            if isinstance(err, TaskTimeout):
                return Outcome(False, error=one_line(err), attempts=attempt)
    assert last is not None
    return Outcome(False, error=one_line(last), attempts=retries + 1)


class TaskTimeout(Exception):
    """A task ran past its time limit (:func:`time_limit`)."""


HARD_STOP_GRACE_S = 30.0
"""how long past its limit a task that the alarm could not interrupt may go on before its process ends"""


@contextmanager
def time_limit(seconds: float | None, flag: str = "--task-timeout") -> Iterator[None]:
    """Raise :class:`TaskTimeout` in the block after ``seconds`` (``None`` or inf: no limit).

    The limit is a ``SIGALRM`` timer, so the task runs where it is (the numbers and the speed of a
    run are those without a limit) and is interrupted wherever it returns to Python (sleeps, waits,
    Python loops, between numpy / torch calls). A task stuck inside one compiled call that never
    returns cannot be interrupted in its process: :data:`HARD_STOP_GRACE_S` later the process ends
    with one line (a pool worker: the pool reports the unfinished tasks; the driver: the finished
    chunks are saved for ``--resume``). Off the main thread, or without ``setitimer``, no limit."""
    import math
    import signal

    if (seconds is None or math.isinf(seconds) or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TaskTimeout(f"no result within {flag} {seconds:g} s (the task was stopped; the other tasks go on)")

    previous = signal.signal(signal.SIGALRM, expire)
    backstop = threading.Timer(seconds + HARD_STOP_GRACE_S, _hard_stop, args=(seconds, flag))
    backstop.daemon = True
    backstop.start()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        backstop.cancel()
        signal.signal(signal.SIGALRM, previous)


def _hard_stop(seconds: float, flag: str) -> None:
    """End this process: its task is stuck past ``flag`` where no signal reaches it (compiled code)."""
    import sys

    print(f"a task ran {HARD_STOP_GRACE_S:g} s past {flag} {seconds:g} s inside compiled code that cannot be "
          f"interrupted: ending process {os.getpid()}; the finished chunks are saved, and the same command with "
          "--resume continues (--executor processes confines such an agent to a worker)", file=sys.stderr, flush=True)
    os._exit(124)


def limit_worker_threads() -> None:
    """One thread per worker for torch and numba: parallelism comes from the workers, and
    nested thread pools oversubscribe the cores (called at the start of every remote task)."""
    import torch

    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


PARENT_POLL_S = 0.5
"""how often a pool worker checks that the process that started it is alive"""


def _exit_with_parent(parent_pid: int) -> None:
    """Block until the parent (``parent_pid``, the driver) is gone, then end this process at once.

    The parent's end of the spawn pipe closes when the parent dies, however it dies (``kill -9``
    included), so :func:`multiprocessing.parent_process`'s sentinel wakes us; the parent pid
    changing (re-parented to init or a subreaper) is checked too."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    while True:
        if parent is not None:
            parent.join(PARENT_POLL_S)  # returns when the sentinel becomes readable, or after the timeout
        else:
            time.sleep(PARENT_POLL_S)
        if os.getppid() != parent_pid or (parent is not None and not parent.is_alive()):
            os._exit(1)  # no cleanup: nobody is left to hand results to


def init_pool_worker(parent_pid: int) -> None:
    """Initializer of every :class:`ProcessExecutor` worker: a daemon thread ends the worker when
    its parent dies (an orphaned worker would otherwise wait forever on the task queue, or finish a
    task nobody will read, and keep the resource tracker alive), then one thread for torch and numba."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="exit-with-parent", daemon=True).start()
    limit_worker_threads()


class LocalExecutor:
    """Every task in this process, one after the other (the reference)."""

    name = "local"

    def __init__(self, retries: int = 1, **_: Any) -> None:
        self.retries = retries

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map_unordered(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        for i, payload in enumerate(payloads):
            yield i, call_with_retries(fn, payload, self.retries)


class ProcessExecutor:
    """A pool of local worker processes (``spawn``: no forked torch or numba thread state).

    A task that raises is retried in its worker. A worker that dies outright (killed, out of
    memory) breaks the whole pool: the unfinished tasks are then reported failed, the
    finished ones are kept, and ``--resume`` completes the run. (Ray, by contrast, restarts
    the worker and retries only the task that was on it.) Workers end themselves within
    :data:`PARENT_POLL_S` when the driver dies, even by ``kill -9`` (:func:`init_pool_worker`)."""

    name = "processes"

    def __init__(self, workers: int | None = None, retries: int = 1, **_: Any) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.retries = retries
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "ProcessExecutor":
        import multiprocessing

        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=init_pool_worker, initargs=(os.getpid(),))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def map_unordered(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        assert self.pool is not None, "use the executor as a context manager"
        pending: dict[Future, int] = {self.pool.submit(call_with_retries, fn, p, self.retries): i
                                      for i, p in enumerate(payloads)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                try:
                    yield i, future.result()
                except BrokenProcessPool:
                    yield i, Outcome(False, error="a worker process died (killed, or out of memory?) and took the "
                                                  "pool down; rerun with --resume to finish the unfinished tasks")
                except Exception as err:  # noqa: BLE001 - e.g. a result that cannot be unpickled
                    yield i, Outcome(False, error=f"worker process failed: {one_line(err)}")


@contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block: the cluster at ``address``, else a local instance with
    ``workers`` CPUs (default: all cores). A Ray already initialised by the caller is used as it
    is and left running; one started here is shut down on exit. (The executor and
    :func:`agents.lab.sweep.run_sweep` both use it.)"""
    if not ray_available():
        raise ValueError(RAY_MISSING)
    import logging

    import ray

    started_here = not ray.is_initialized()
    if started_here:
        where = {"address": address} if address else {"num_cpus": workers or os.cpu_count() or 1}
        ray.init(**where, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


class RayExecutor:
    """Tasks on a Ray cluster (``address``) or on a local Ray instance with ``workers`` CPUs
    (see :func:`ray_session`).

    Ray's scheduler places the tasks; a task that raises (or whose worker dies) is retried
    by Ray ``retries`` times.
    """

    name = "ray"

    def __init__(self, workers: int | None = None, retries: int = 1, address: str | None = None, **_: Any) -> None:
        if not ray_available():
            raise ValueError(RAY_MISSING)
        self.retries = retries
        self.session = ray_session(address, workers)

    def __enter__(self) -> "RayExecutor":
        self.session.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.session.__exit__(*exc)

    def map_unordered(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        remote = ray.remote(_ray_task).options(num_cpus=1, max_retries=self.retries, retry_exceptions=True)
        pending = {remote.remote(fn, p): i for i, p in enumerate(payloads)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        yield i, Outcome(True, ray.get(ref))
                    except RayTaskError as err:
                        cause = err.as_instanceof_cause()
                        yield i, Outcome(False, error=one_line(getattr(err, "cause", None) or cause))
                    except RayError as err:
                        yield i, Outcome(False, error=f"Ray: {one_line(err)}")
        finally:
            for ref in pending:
                ray.cancel(ref)


def _ray_task(fn: Callable[[Any], Any], payload: Any) -> Any:
    limit_worker_threads()
    return fn(payload)


def make_executor(name: str, workers: int | None = None, retries: int = 1,
                  address: str | None = None) -> LocalExecutor | ProcessExecutor | RayExecutor:
    """The executor called ``name`` (one of :data:`EXECUTORS`)."""
    kinds = {"local": LocalExecutor, "processes": ProcessExecutor, "ray": RayExecutor}
    if name not in kinds:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {name!r}")
    return kinds[name](workers=workers, retries=retries, address=address)
