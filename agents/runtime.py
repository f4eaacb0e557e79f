"""Process-wide settings applied where work starts (the CLIs, the harness, the trainer), never on import."""

from __future__ import annotations

import os

THREAD_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
"""OpenMP threads (torch, numba) that spin while waiting burn the cores a busy neighbour needs: on a
loaded 2-core machine they made training several times slower, so they sleep instead"""


def set_thread_policy() -> None:
    """Let OpenMP threads sleep when idle (:data:`THREAD_POLICY`), unless the user chose otherwise.

    An OpenMP runtime reads the variable when it loads: ``evaluate.py`` and ``train.py`` call this
    first thing in ``main``, before anything imports torch; the harness and the trainer call it
    too, which reaches what loads after them (numba's threading layer, worker processes) when
    they are used from Python."""
    for name, value in THREAD_POLICY.items():
        os.environ.setdefault(name, value)
