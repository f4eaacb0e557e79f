"""Misbehaving plug-in agents of the fault drill (``--agents drill_agents:NAME``, with ``benchmarks/``
on ``PYTHONPATH``), and the naive harness that shows each one really misbehaves (the controls).

    python benchmarks/drill_agents.py NAME [NAME ...]   # the naive harness: one JSON line per agent
"""

from __future__ import annotations

import json
import pickle
import signal
import sys
import time

import numpy as np

from agents.base import Agent


class Zeros(Agent):
    """Every user on pilot 0: what a mutating agent must be scored like."""

    name = "drill-zeros"

    def _assign(self, snapshots, config, rng):
        return np.zeros((snapshots.beta.shape[0], config.K), dtype=np.int64)


class Mutator(Zeros):
    """Scales the fading it is given, in place."""

    def _assign(self, snapshots, config, rng):
        snapshots.beta[...] *= 10
        return super()._assign(snapshots, config, rng)


class ForcedMutator(Zeros):
    """Makes its input writable again (where it can) and scales it, in an overridden ``assign``."""

    def assign(self, snapshots, config=None, rng=None):
        try:
            snapshots.beta.setflags(write=True)
        except ValueError:
            pass
        if snapshots.beta.flags.writeable:
            snapshots.beta[...] *= 10
        return super().assign(snapshots, config, rng)


class Fractional(Agent):
    def _assign(self, snapshots, config, rng):
        pilots = np.full((snapshots.beta.shape[0], config.K), 0.9)
        pilots[:, ::2] = 1.9
        return pilots


class Bools(Agent):
    def _assign(self, snapshots, config, rng):
        return np.ones((snapshots.beta.shape[0], config.K), dtype=bool)


class Strings(Agent):
    def _assign(self, snapshots, config, rng):
        return np.full((snapshots.beta.shape[0], config.K), "1")


class Exits(Zeros):
    def _assign(self, snapshots, config, rng):
        raise SystemExit(3)


class Interrupts(Zeros):
    def _assign(self, snapshots, config, rng):
        raise KeyboardInterrupt


class Sleeps(Zeros):
    def _assign(self, snapshots, config, rng):
        time.sleep(3600)


class _Unpicklable(np.ndarray):
    """An integer array that cannot cross a process boundary."""

    def __reduce__(self):
        raise pickle.PicklingError("drill: this result cannot be pickled")


class UnpicklableResult(Zeros):
    def _assign(self, snapshots, config, rng):
        return super()._assign(snapshots, config, rng).view(_Unpicklable)


class _TwoArgError(Exception):
    """Pickles, but does not unpickle (its ``__init__`` needs two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"{a}{b}")


class UnpicklableError(Zeros):
    def _assign(self, snapshots, config, rng):
        raise _TwoArgError("drill", ": an exception that cannot be unpickled")


class Huge(Zeros):
    """Asks for 800 TB (refused by the allocator at once: nothing is touched)."""

    def _assign(self, snapshots, config, rng):
        np.ones((10**7, 10**7))
        return super()._assign(snapshots, config, rng)


def naive(name: str) -> dict:
    """What a harness without checks sees: it calls ``_assign`` on writable fading, casts with
    ``astype(int)``, scores, and ships the result through pickle (as a process pool does)."""
    from cfenv import SystemConfig, draw_snapshots, sum_rate

    config = SystemConfig.from_size((6, 1, 4, 2))
    snaps = draw_snapshots(config, np.random.default_rng(0), (3,))
    before = snaps.beta.copy()
    seen: dict = {"agent": name}
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("no return within 3 s")))
    signal.alarm(3)
    try:
        agent = globals()[name](seed=0)
        raw = agent.assign(snaps, config) if name == "ForcedMutator" else agent._assign(snaps, config, None)
        signal.alarm(0)
        seen["mutated"] = bool(not np.array_equal(before, snaps.beta))
        cast = np.asarray(raw).astype(int)
        seen["accepted_after_cast"] = bool(cast.min() >= 0 and cast.max() < config.tau_p)
        seen["rate"] = float(np.mean(sum_rate(snaps.beta, cast, config)))
        pickle.loads(pickle.dumps(raw))
        seen["escaped"] = None
    except BaseException as exc:  # noqa: BLE001 - the point: what escapes an agent call
        signal.alarm(0)
        seen["escaped"] = type(exc).__name__
        if isinstance(exc, Exception):
            try:
                pickle.loads(pickle.dumps(exc))
            except Exception as again:  # noqa: BLE001
                seen["escaped"] = f"{type(exc).__name__} (unpickling it: {type(again).__name__})"
    return seen


if __name__ == "__main__":
    for agent_name in sys.argv[1:]:
        print(json.dumps(naive(agent_name)), flush=True)
