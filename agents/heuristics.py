"""Model-based pilot assignment heuristics of docs/model.md §4: RPA, GPA, MPA, LPA.

All are batched over snapshots (numpy); the sequential ones loop over users or
iterations, never over snapshots.
"""

from __future__ import annotations

import math

import numpy as np

from agents.base import Agent
from cfenv.channel import Snapshot, as_snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of


class RandomAgent(Agent):
    """RPA: every user draws a pilot uniformly at random."""

    name = "random"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, config.tau_p, (snapshots.beta.shape[0], config.K))


def master_ap_pilots(beta: np.ndarray, tau_p: int) -> np.ndarray:
    """Master-AP assignment for ``(B, M, K)`` beta -> ``(B, K)`` pilots: the scalable pilot
    assignment of Björnson & Sanguinetti (IEEE TCOM 68(7), 2020) as Zaher et al. (2022) coded it.

    Users are taken in index order. User k < tau_p gets pilot k; every later user
    takes the pilot whose current holders have the least summed fading at that
    user's master AP ``argmax_m beta[m, k]`` (ties: the lowest pilot index).
    """
    B, _, K = beta.shape
    batch = np.arange(B)
    master = beta.argmax(axis=1)  # (B, K)
    pilots = np.zeros((B, K), dtype=np.int64)
    load = np.zeros((B, tau_p))  # summed beta of each pilot's holders at the current master AP
    for k in range(K):
        if k < tau_p:
            pilots[:, k] = k
            continue
        at_master = beta[batch, master[:, k], :k]  # (B, k): beta of earlier users at k's master AP
        load[:] = 0.0
        np.add.at(load, (np.repeat(batch, k), pilots[:, :k].ravel()), at_master.ravel())
        pilots[:, k] = load.argmin(axis=1)
    return pilots


class MasterAPAgent(Agent):
    """MPA: Björnson & Sanguinetti's scalable rule (TCOM 2020) as Zaher et al. (2022) coded it;
    see :func:`master_ap_pilots`."""

    name = "master-ap"

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        return master_ap_pilots(model_of(config).gains(snapshots), config.tau_p)


class GreedyAgent(Agent):
    """GPA (Ngo et al. 2017).

    Start from a random assignment; ``iterations`` times: take the user with the
    lowest rate R_k and give it the pilot t minimising the contamination it would
    see, ``sum_m sum_{j != k, pilots[j] = t} beta[m, j]`` (ties: lowest index; the
    current pilot is kept when it is already the minimiser).

    Args:
        iterations: number of re-assignments N (default: K).
    """

    name = "greedy"

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, iterations: int | None = None) -> None:
        super().__init__(config, seed)
        if iterations is not None and iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        self.iterations = iterations

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        start = rng.integers(0, config.tau_p, (snapshots.beta.shape[0], config.K))
        iterations = config.K if self.iterations is None else self.iterations
        return greedy_pilots(snapshots, start, config, iterations)


def greedy_pilots(snapshots: Snapshot | np.ndarray, pilots: np.ndarray, config: SystemConfig,
                  iterations: int) -> np.ndarray:
    """GPA iterations from given ``(B, K)`` pilots on a batch of snapshots (or their ``(B, M, K)``
    beta); the weakest user by the model's exact rates, contamination from its gains. Returns new pilots."""
    model = model_of(config)
    snapshots = as_snapshot(snapshots)
    beta = model.gains(snapshots)
    pilots = np.array(pilots, dtype=np.int64)
    B, K = pilots.shape
    batch = np.arange(B)
    total_gain = beta.sum(axis=1)  # (B, K): sum_m beta[m, j]
    for _ in range(iterations):
        weakest = model.user_rates(snapshots, pilots).argmin(axis=1)  # (B,)
        others = total_gain.copy()
        others[batch, weakest] = 0.0
        contamination = np.zeros((B, config.tau_p))
        np.add.at(contamination, (np.repeat(batch, K), pilots.ravel()), others.ravel())
        pilots[batch, weakest] = contamination.argmin(axis=1)
    return pilots


class LocationAgent(Agent):
    """LPA (after Nguyen et al. 2023): pilots reused across grid regions, never within one.

    The rule implemented (the paper gives no formula; this is our reading):

    1. Split the D x D area into a G x G grid of square regions, G = ``grid`` or,
       by default, ``max(1, round(sqrt(K / tau_p)))``, so a region holds about
       tau_p users on average.
    2. Region r (row-major index) gets the pilot sequence ``(o_r, o_r + 1, ...)``
       modulo tau_p, with offset ``o_r = floor(r tau_p / G^2)``: neighbouring regions
       start on different pilots.
    3. Within a region, users sorted by their distance to the region's centre take
       that sequence in turn. Users of one region thus get distinct pilots as long
       as the region has at most tau_p of them, so co-pilot users sit in different
       regions, far apart; only overcrowded regions reuse pilots, and then the
       user farthest from the centre shares with the one nearest to it.

    It uses only the user positions, like the original.
    """

    name = "location"
    needs_positions = True

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, grid: int | None = None) -> None:
        super().__init__(config, seed)
        if grid is not None and grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = grid

    def grid_size(self, config: SystemConfig) -> int:
        return self.grid or max(1, round(math.sqrt(config.K / config.tau_p)))

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        ue = snapshots.ue_positions  # (B, K, 2)
        B, K = ue.shape[:2]
        G = self.grid_size(config)
        cell = config.area_side_m / G
        ij = np.clip((ue // cell).astype(np.int64), 0, G - 1)  # (B, K, 2): column, row
        region = ij[..., 1] * G + ij[..., 0]
        centre = (ij + 0.5) * cell
        dist = np.hypot(*(ue - centre).transpose(2, 0, 1))
        batch = np.repeat(np.arange(B), K)
        order = np.lexsort((dist.ravel(), region.ravel(), batch))  # by snapshot, region, distance
        group = batch[order] * G * G + region.ravel()[order]
        new_group = np.r_[True, group[1:] != group[:-1]]
        start = np.maximum.accumulate(np.where(new_group, np.arange(B * K), 0))
        rank = np.empty(B * K, dtype=np.int64)
        rank[order] = np.arange(B * K) - start
        offset = region * config.tau_p // (G * G)
        return (offset + rank.reshape(B, K)) % config.tau_p
