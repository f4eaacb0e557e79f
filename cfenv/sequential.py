"""Pilot assignment one user at a time: ``CellFreePilotSequential-v0``.

The same network, rate engine and snapshot handling as :class:`cfenv.env.CellFreePilotEnv`,
seen as a K-step decision process so that value-based agents (DQN) apply.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cfenv.channel import Snapshot, as_snapshot
from cfenv.config import SystemConfig
from cfenv.env import (
    OBS_DB_HIGH,
    OBS_DB_LOW,
    SnapshotEpisodes,
    _config_from_kwargs,
    fading_observation,
    rate_info,
    snapshot_info,
)
from cfenv.models import model_of
from cfenv.units import MBPS, normalise_db

REWARD_MODES = ("final", "increments")
UNASSIGNED = -1
"""pilot index of a user that has not been given a pilot yet"""


def observation_size(config: SystemConfig) -> int:
    """Length of the sequential observation: ``M K + K tau_p + K``."""
    return config.M * config.K + config.K * config.tau_p + config.K


def sequential_observation(beta: np.ndarray, pilots: np.ndarray, user: int,
                           config: SystemConfig) -> np.ndarray:
    """The observation of :class:`CellFreePilotSequentialEnv`, batched.

    Args:
        beta: ``(..., M, K)`` large-scale fading, linear, float64.
        pilots: ``(..., K)`` int pilots given so far, :data:`UNASSIGNED` (-1) for the others.
        user: the user to be assigned next, in ``[0, K]`` (``K``: episode over).
        config: supplies M, K and tau_p.

    Returns:
        ``(..., M K + K tau_p + K)`` float32: normalised fading (row-major ``[m, k]``),
        one-hot pilots (row-major ``[k, t]``, zeros for unassigned users), one-hot next user.
    """
    cfg = config
    db = fading_observation(beta)
    batch = db.shape[:-2]
    fading = normalise_db(db.reshape(*batch, cfg.M * cfg.K))
    pilots = np.asarray(pilots)
    one_hot = (pilots[..., None] == np.arange(cfg.tau_p)).astype(np.float32)
    one_hot = one_hot.reshape(*batch, cfg.K * cfg.tau_p)
    current = np.zeros((*batch, cfg.K), dtype=np.float32)
    if user < cfg.K:
        current[..., user] = 1.0
    return np.concatenate([fading.astype(np.float32), one_hot, current], axis=-1)


def _partial_rates_mbps(snapshot: Snapshot | np.ndarray, pilots: np.ndarray, n_assigned: int,
                        config: SystemConfig) -> np.ndarray:
    """Per-user rates [Mbit/s] ``(n,)`` of the network reduced to its first ``n`` users
    (:meth:`cfenv.models.base.SystemModel.restrict_users`); a bare beta ``(M, K)`` is a snapshot
    without positions."""
    sub, sub_config = model_of(config).restrict_users(as_snapshot(snapshot), n_assigned)
    return model_of(sub_config).user_rates(sub, pilots[:n_assigned]) / MBPS


def partial_sum_rate_mbps(snapshot: Snapshot | np.ndarray, pilots: np.ndarray, n_assigned: int,
                          config: SystemConfig) -> float:
    """Sum rate [Mbit/s] of the network reduced to its first ``n_assigned`` users (0 for none).

    The rates are the model's (:func:`cfenv.models.model_of`) on the first ``n`` users with
    ``K = n``; at ``n = K`` it is the sum rate of the full assignment. ``snapshot`` is a
    :class:`Snapshot` or its beta ``(M, K)``.
    """
    if n_assigned == 0:
        return 0.0
    return float(_partial_rates_mbps(snapshot, pilots, n_assigned, config).sum())


def partial_objective(snapshot: Snapshot | np.ndarray, pilots: np.ndarray, n_assigned: int,
                      config: SystemConfig) -> float:
    """``config.objective`` (Mbit/s, or nats for ``"proportional"``; :meth:`cfenv.objectives.Objective.reward`)
    of the network reduced to its first ``n_assigned`` users (0 for none); with ``"sum"`` it is
    :func:`partial_sum_rate_mbps`."""
    if config.objective.is_default:  # the sum rate as computed before objectives, bit for bit
        return partial_sum_rate_mbps(snapshot, pilots, n_assigned, config)
    if n_assigned == 0:
        return 0.0
    return float(config.objective.reward(_partial_rates_mbps(snapshot, pilots, n_assigned, config)))


class CellFreePilotSequentialEnv(SnapshotEpisodes, gym.Env[np.ndarray, np.int64]):
    """
    ## Description

    The pilot-assignment problem of :class:`cfenv.env.CellFreePilotEnv` (``CellFreePilot-v0``),
    one user per step: at step ``k`` the agent gives user ``k`` one of ``tau_p`` pilots,
    seeing the fading matrix and the pilots given so far. After ``K`` steps the assignment
    is complete and scored with the same closed-form downlink sum rate. This turns the
    one-shot combinatorial action ``MultiDiscrete([tau_p] * K)`` into ``K`` ``Discrete``
    decisions, so value-based agents (DQN) apply.

    ## Action Space

    ``Discrete(tau_p)``: the pilot of the current user (users in index order 0, 1, ...,
    K - 1). Anything else raises ``ValueError``.

    ## Observation Space

    ``Box(low, high, (M K + K tau_p + K,), float32)``, flat so that Stable-Baselines3's
    ``MlpPolicy`` (and DQN) takes it directly; the fading part is normalised exactly like
    :class:`cfenv.wrappers.FlattenFadingObservation`, ``(beta_db - (-120)) / 20``:

    | index                          | meaning                                          | min | max |
    |--------------------------------|--------------------------------------------------|-----|-----|
    | ``m K + k``                    | fading AP m - user k, ``(dB + 120) / 20``        | -9  | 6   |
    | ``M K + k tau_p + t``          | 1 if user k has been given pilot t, else 0       | 0   | 1   |
    | ``M K + K tau_p + k``          | 1 if user k is the one to assign now, else 0     | 0   | 1   |

    After the last step the "current user" part is all zeros. The exact linear fading
    (float64) is in ``info["beta"]``; :func:`sequential_observation` builds the same
    observation for a batch of snapshots.

    ## Rewards

    The ``objective`` (a ``SystemConfig`` field) as in ``CellFreePilot-v0``: the sum rate
    (``"sum"``, default) or the minimum user rate (``"min"``) in **Mbit/s**, or
    sum_k ln(R_k / 1 Mbit/s) (``"proportional"``) in **nats**; a Python ``float``, by
    ``reward_mode``:

    * ``"final"`` (default): 0 at every step but the last, which returns the objective of
      the completed assignment, equal to ``CellFreePilot-v0``'s reward for the same
      pilots (under ``"sum"``, ``cfenv.sum_rate(beta, pilots, config) / 1e6``).
    * ``"increments"``: step ``k`` returns ``S_{k+1} - S_k``, where ``S_n`` is the objective of
      the network reduced to its first ``n`` users (:func:`partial_objective`, ``S_0 = 0``);
      the increments add up to the final objective.

    ## Starting State

    As ``CellFreePilot-v0``: ``reset`` draws a snapshot from ``self.np_random``;
    ``reset(options={"snapshot": s})`` loads a given one. No user has a pilot.

    ``info`` after ``reset`` and ``step``: ``beta`` (linear, float64 ``(M, K)``),
    ``ap_positions`` ``(M, 2)``, ``ue_positions`` ``(K, 2)`` [m], ``pilots`` ``(K,)`` int64
    (-1 for unassigned users) and ``user`` (the next user, ``K`` when done); after the last
    step also ``rates`` (per user, Mbit/s), ``sum_rate`` and ``min_rate`` (Mbit/s) and
    ``objective`` (the final reward's value), whatever the objective.

    ## Episode End

    * Termination: after ``K`` steps, when every user has a pilot.
    * Truncation: never. ``step`` after termination raises ``RuntimeError`` (call ``reset``).

    ## Arguments

    ``gym.make("CellFreePilotSequential-v0", **kwargs)`` accepts ``reward_mode``
    (``"final"`` or ``"increments"``), ``config`` (a :class:`cfenv.config.SystemConfig`),
    ``render_mode`` (``"ansi"`` or ``None``) and any ``SystemConfig`` field (M, L, K, tau_p,
    ...; see ``CellFreePilot-v0``), which overrides ``config``.

    | parameter    | type  | default   | description                                   |
    |--------------|-------|-----------|-----------------------------------------------|
    | reward_mode  | str   | "final"   | "final" or "increments" (see Rewards)         |
    | M, L, K, ... |       |           | every ``SystemConfig`` field                  |
    | render_mode  | str   | None      | ``"ansi"``                                    |

    ## Vectorized environment

    None of its own; ``gym.make_vec(..., vectorization_mode="sync")`` or SB3's
    ``DummyVecEnv`` step copies of it.

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, config: SystemConfig | None = None,
                 reward_mode: str = "final", **config_fields: Any) -> None:
        self.config = _config_from_kwargs(config, config_fields)
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        cfg = self.config
        fading_low, fading_high = normalise_db(OBS_DB_LOW), normalise_db(OBS_DB_HIGH)
        n_fading = cfg.M * cfg.K
        low = np.zeros(observation_size(cfg), dtype=np.float32)
        high = np.ones(observation_size(cfg), dtype=np.float32)
        low[:n_fading], high[:n_fading] = fading_low, fading_high
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(cfg.tau_p)
        self._snapshot = None
        self._pilots = np.full(cfg.K, UNASSIGNED, dtype=np.int64)
        self._user = 0
        self._partial = 0.0
        self._rates_mbps: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        given = self._given_snapshot(options)
        super().reset(seed=seed)
        self._new_snapshot(given)
        self._pilots = np.full(self.config.K, UNASSIGNED, dtype=np.int64)
        self._user = 0
        self._partial = 0.0
        self._rates_mbps = None
        return self._observation(), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        cfg, snapshot = self.config, self.snapshot
        if self._user >= cfg.K:
            raise RuntimeError("the episode is over (every user has a pilot): call reset()")
        pilot = np.asarray(action)
        if pilot.shape != () or not np.issubdtype(pilot.dtype, np.integer) or not 0 <= int(pilot) < cfg.tau_p:
            raise ValueError(f"action must be one integer pilot index in [0, {cfg.tau_p}), got {action!r}")
        self._pilots[self._user] = int(pilot)
        self._user += 1
        done = self._user == cfg.K
        reward = 0.0
        if self.reward_mode == "increments":
            partial = partial_objective(snapshot, self._pilots, self._user, cfg)
            reward, self._partial = partial - self._partial, partial
        info = self._info()
        if done:
            rates = model_of(cfg).user_rates(snapshot, self._pilots) / MBPS
            self._rates_mbps = rates
            scores = rate_info(rates, cfg)
            if self.reward_mode == "final":
                reward = scores["objective"]
            info.update(scores)
        return self._observation(), float(reward), done, False, info

    def _observation(self) -> np.ndarray:
        return sequential_observation(self.snapshot.beta, self._pilots, self._user, self.config)

    def _info(self) -> dict[str, Any]:
        return {**snapshot_info(self.snapshot), "pilots": self._pilots.copy(), "user": self._user}

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' to gym.make")
            return None
        cfg = self.config
        given = " ".join("-" if p == UNASSIGNED else str(int(p)) for p in self._pilots)
        text = (f"CellFreePilotSequential (M={cfg.M}, L={cfg.L}, K={cfg.K}, tau_p={cfg.tau_p})\n"
                f"  pilots [{given}]\n")
        if self._rates_mbps is not None:
            text += f"  sum rate {self._rates_mbps.sum():.2f} Mbit/s\n"
        return text
