"""The pilot length as a decision (docs/model.md §8.7): any agent run at every pilot count up to the
budget, the best per network kept.

With ``pilot_overhead="used"`` the scalable model's pre-log counts the pilots an assignment uses, so fewer
pilots cost less overhead and more contamination. :class:`PilotLengthChoice` runs an inner agent with
``tau_p = 1 .. budget`` (each run an ordinary assignment of that many pilots, scored on its own fast path)
and keeps, per network, the assignment whose configured objective under the budget's config -- pre-log
of the pilots it uses -- is highest. The exact joint optimum at small sizes is ``exhaustive`` with
``pilot_overhead="used"`` (it enumerates every assignment of up to tau_p pilots).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from agents.base import Agent
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of


class PilotLengthChoice(Agent):
    """``inner`` at every pilot count from 1 to tau_p, the best by the objective with the pilots used counted.

    Runs only where the pre-log counts the pilots used (``pilot_overhead="used"``); elsewhere fewer pilots
    cannot pay and the cell is skipped with that reason. Costs tau_p runs of the inner agent.
    """

    name = "pilot-length-choice"
    inner: ClassVar[str] = "master-ap"
    """the registry name of the agent run at each pilot count"""

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        if config.pilot_overhead != "used":
            return ("the pilot length is a decision only where the pre-log counts the pilots used "
                    "(--pilot-overhead used on the scalable model)")
        return None

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        import agents

        model = model_of(config)
        best = np.zeros((snapshots.beta.shape[0], config.K), dtype=np.int64)
        best_value = np.full(snapshots.beta.shape[0], -np.inf)
        for length in range(1, config.tau_p + 1):
            shorter = config.replace(tau_p=length, pilot_overhead="budget")
            pilots = agents.make(self.inner, config=shorter, seed=self.seed).assign(snapshots, shorter, rng)
            value = model.objective(snapshots, pilots)
            better = value > best_value
            best[better], best_value[better] = pilots[better], value[better]
        return best


class MasterAPLengthChoice(PilotLengthChoice):
    """master-AP (Björnson & Sanguinetti 2020) at every pilot count, the best per network."""

    name = "master-ap-tau"
    inner = "master-ap"


class TabuLengthChoice(PilotLengthChoice):
    """cfpilot's tabu search at every pilot count, the best per network."""

    name = "tabu-tau"
    inner = "tabu"


class LocalSearchLengthChoice(PilotLengthChoice):
    """Local search at every pilot count, the best per network."""

    name = "local-search-tau"
    inner = "local-search"
