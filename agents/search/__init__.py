"""Search baselines (docs/model.md §5), one module each: exact exhaustive search (EPAS,
:mod:`~agents.search.exhaustive`), screened local search (:mod:`~agents.search.local`), tabu
search (:mod:`~agents.search.tabu`), and the incremental move / swap evaluation kernels they
and the polish share (:mod:`~agents.search.screening`, the public kernel API). The kernels need
the system model's ``paper-pairwise`` fast path (:func:`~agents.search.generic.pairwise_kernel`);
on any other model the same agents run :mod:`~agents.search.generic`, vectorised numpy built on
``model.objective`` alone (docs/model.md §5.3).

All optimise ``SystemConfig.objective`` (sum rate, minimum rate or proportional fairness:
:func:`cfenv._kernels.objective_of`) and score every reported value with the rate engine's
per-assignment kernel (:func:`cfenv._kernels.rates_one`), compiled (numba) and in parallel
over the machine's cores; EPAS can also run on a torch device. All are deterministic
functions of (seed, snapshot): every parallel work item is independent and ties go to a
fixed order, so the pilots (canonical, restricted-growth labels:
:func:`agents.base.canonical_pilots`) and their values do not depend on the batch a
snapshot comes in, on the thread count or on the load.

Every name the former single module ``agents/search.py`` offered is importable from here.
"""

from agents.search.exhaustive import (
    DEFAULT_MAX_ASSIGNMENTS,
    PREFIX_TARGET,
    ExhaustiveAgent,
    count_assignments,
    rgs_batches,
    rgs_prefixes,
    unrank_rgs,
)
from agents.search.generic import pairwise_kernel
from agents.search.local import DEFAULT_KICKS, EXACT_NEIGHBOURHOOD, LocalSearchAgent, snapshot_key
from agents.search.screening import DEFAULT_MARGIN, DEFAULT_N_EXACT, IMPROVEMENT_RTOL, objective_values
from agents.search.tabu import TabuAgent, tabu_search

__all__ = [
    "DEFAULT_KICKS", "DEFAULT_MARGIN", "DEFAULT_MAX_ASSIGNMENTS", "DEFAULT_N_EXACT", "EXACT_NEIGHBOURHOOD",
    "IMPROVEMENT_RTOL", "PREFIX_TARGET", "ExhaustiveAgent", "LocalSearchAgent", "TabuAgent", "count_assignments",
    "objective_values", "pairwise_kernel", "rgs_batches", "rgs_prefixes", "snapshot_key", "tabu_search",
    "unrank_rgs",
]
