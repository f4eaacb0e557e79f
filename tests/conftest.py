"""Shared fixtures and tolerances."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cfenv.config import SystemConfig

RTOL_FLOAT64 = 1e-12
"""relative agreement between float64 implementations of the same formula"""
RTOL_FLOAT32 = 1e-4
"""relative agreement of a float32 evaluation with the float64 reference"""

SMALL_SIZES = [(2, 1, 3, 2), (10, 2, 6, 3), (4, 2, 5, 5), (6, 1, 7, 2)]


def interrupted_while_starting(script: str, *args: str) -> tuple[int, str]:
    """Run ``python SCRIPT ARGS`` from the repository root, send it SIGINT half a second in (while it
    loads its packages and checks its settings) and return its exit status and stderr."""
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, script, *args], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def single_moves(pilots: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K * tau_p, K)``: assignment ``pilots`` (K,) with user k on pilot t in row k * tau_p + t
    (a user's own pilot included), the brute-force move neighbourhood of the search tests."""
    K = len(pilots)
    moved = np.repeat(np.asarray(pilots)[None], K * tau_p, 0).reshape(K, tau_p, K)
    moved[np.arange(K), :, np.arange(K)] = np.arange(tau_p)
    return moved.reshape(K * tau_p, K)


def pair_swaps(pilots: np.ndarray) -> np.ndarray:
    """``(K (K - 1) / 2, K)``: ``pilots`` with users k < j exchanging pilots, one row per pair."""
    k, j = np.triu_indices(len(pilots), 1)
    swapped = np.repeat(np.asarray(pilots)[None], len(k), 0)
    rows = np.arange(len(k))
    swapped[rows, k], swapped[rows, j] = pilots[j], pilots[k]
    return swapped


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(params=SMALL_SIZES, ids=lambda s: "x".join(map(str, s)))
def small_config(request: pytest.FixtureRequest) -> SystemConfig:
    return SystemConfig.from_size(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.cuda`` tests where torch sees no CUDA device (CI has none)."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


# ------------------------------------------------------------- harness faults
@dataclass(frozen=True)
class FailingTasks:
    """The harness's task function with injected faults: a task whose key starts with one of
    ``patterns`` raises; a pattern prefixed ``once:`` fails only the first attempt (a marker file
    in the output folder remembers it across processes and machines sharing the folder), one
    prefixed ``crash:`` kills its worker process outright (``os._exit``, as an out-of-memory kill
    would) -- only where the task runs in a worker, never in the driver. Picklable (by reference
    to this module), so worker processes and Ray nodes run it too."""

    patterns: tuple[str, ...]

    def __call__(self, payload: Any) -> Any:
        from agents.lab.outdir import CELLS_DIR
        from agents.lab.tasks import run_task

        task, settings, _ = payload
        for pattern in self.patterns:
            kind, _, prefix = pattern.partition(":") if pattern.startswith(("once:", "crash:")) else ("", "", pattern)
            if not task.key.startswith(prefix):
                continue
            if kind == "crash":
                if settings.executor != "local":
                    os._exit(13)
                continue
            if kind == "once":
                marker = Path(settings.out) / CELLS_DIR / ".failed-once" / re.sub(r"[^\w.@,#-]", "_", task.key)
                if marker.exists():
                    continue
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            raise RuntimeError(f"injected failure in task {task.key} (FailingTasks test hook)")
        return run_task(payload)


@pytest.fixture
def failing_tasks() -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with failing_tasks("agent@M,L,K,tau_p#0", "once:...", "crash:..."):`` runs the harness with
    :class:`FailingTasks` as its task function."""

    @contextlib.contextmanager
    def install(*patterns: str) -> Iterator[None]:
        from agents.lab import evaluation

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(evaluation, "run_task", FailingTasks(tuple(patterns)))
            yield

    return install
