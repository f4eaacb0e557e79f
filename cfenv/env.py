"""Gymnasium environments for pilot assignment: one snapshot per episode, one step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import DEFAULT_CONFIG, SystemConfig
from cfenv.rates import as_pilot_indices, user_rates
from cfenv.units import MBPS, fading_db

OBS_DB_LOW = -300.0
"""lower observation bound [dB]; a -300 dB gain needs shadowing beyond -20 sigma"""
OBS_DB_HIGH = 0.0
"""upper observation bound [dB]: a passive channel never gains power"""


def fading_observation(beta: np.ndarray) -> np.ndarray:
    """``(..., M, K)`` linear beta -> float32 dB, clipped to [OBS_DB_LOW, OBS_DB_HIGH]."""
    return np.clip(fading_db(beta), OBS_DB_LOW, OBS_DB_HIGH).astype(np.float32)


def snapshot_from_options(options: dict[str, Any], config: SystemConfig) -> Snapshot:
    """A :class:`Snapshot` given as ``options["snapshot"]`` (a Snapshot or a dict with
    ``beta``, ``ap_positions``, ``ue_positions``); raises ``ValueError`` on bad shapes/values."""
    given = options["snapshot"]
    if isinstance(given, dict):
        try:
            given = Snapshot(
                np.asarray(given["beta"], dtype=np.float64),
                np.asarray(given["ap_positions"], dtype=np.float64),
                np.asarray(given["ue_positions"], dtype=np.float64),
            )
        except KeyError as err:
            raise ValueError(f"options['snapshot'] lacks {err.args[0]!r}") from None
    if not isinstance(given, Snapshot):
        raise ValueError(f"options['snapshot'] must be a Snapshot or a dict, got {type(given).__name__}")
    expected = {
        "beta": (config.M, config.K),
        "ap_positions": (config.M, 2),
        "ue_positions": (config.K, 2),
    }
    for name, shape in expected.items():
        got = getattr(given, name).shape
        if got != shape:
            raise ValueError(f"snapshot {name} must have shape {shape}, got {got}")
    beta = given.beta
    if not np.all(np.isfinite(beta)) or not np.all(beta > 0):
        raise ValueError("snapshot beta must be finite and strictly positive")
    return Snapshot(beta.astype(np.float64), given.ap_positions.astype(np.float64),
                    given.ue_positions.astype(np.float64))


def _config_from_kwargs(config: SystemConfig | None, fields: dict[str, Any]) -> SystemConfig:
    return (config or DEFAULT_CONFIG).replace(**fields)


class SnapshotEpisodes:
    """What every cfpilot environment shares: one network snapshot per episode, drawn from
    ``self.np_random`` or given through ``reset(options={"snapshot": ...})``."""

    config: SystemConfig
    np_random: np.random.Generator
    _snapshot: Snapshot | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The current episode's snapshot; ``RuntimeError`` before ``reset``."""
        if self._snapshot is None:
            raise RuntimeError("call reset() before using the environment")
        return self._snapshot

    def _new_snapshot(self, options: dict[str, Any] | None) -> Snapshot:
        """Load ``options["snapshot"]`` if given, else draw one; call after ``super().reset``."""
        if options and "snapshot" in options:
            self._snapshot = snapshot_from_options(options, self.config)
        else:
            self._snapshot = draw_snapshots(self.config, self.np_random)
        return self._snapshot


class CellFreePilotEnv(SnapshotEpisodes, gym.Env[np.ndarray, np.ndarray]):
    """
    ## Description

    Pilot assignment in a cell-free massive MIMO network (the system model of
    *Hybrid Quantum Convolutional Neural Network-Aided Pilot Assignment in
    Cell-Free Massive MIMO Systems*). ``M`` access points with ``L`` antennas
    each and ``K`` single-antenna users are dropped uniformly on a 1 km x 1 km
    torus; the agent sees the large-scale fading between every AP and user and
    gives every user one of ``tau_p`` orthonormal pilots. Users that share a
    pilot contaminate each other's channel estimates; the reward is the
    closed-form downlink sum rate (conjugate beamforming, uniform power
    control). Each episode is one network snapshot and one decision.

    ## Action Space

    ``MultiDiscrete([tau_p] * K)``: entry ``k`` is the pilot of user ``k``.
    ``step`` also accepts the ``(K, tau_p)`` one-hot pilot matrix (any
    float/bool dtype), and raises ``ValueError`` for anything else (wrong
    shape, index outside ``[0, tau_p)``, a row that is not one-hot).

    ## Observation Space

    ``Box(-300, 0, (M, K), float32)``: the large-scale fading beta[m, k] in
    dB. The dB scale is what learners can use (linear gains span ~1e-8 to
    1e-15) and what the paper's networks take as input. The bounds are
    physical: a passive channel never gains power (0 dB), and values are
    clipped at -300 dB, which would take shadowing 20 standard deviations
    down. The exact linear matrix (float64) is in ``info["beta"]``.

    | index  | meaning                                 | min  | max |
    |--------|-----------------------------------------|------|-----|
    | [m, k] | fading between AP m and user k, in dB   | -300 | 0   |

    ## Rewards

    The downlink sum rate sum_k R_k in **Mbit/s** (docs/model.md §2) of the
    chosen assignment on the episode's snapshot, a Python ``float``.

    ## Starting State

    ``reset`` drops APs and users uniformly at random and draws shadowing,
    all from ``self.np_random``; ``reset(options={"snapshot": s})`` loads a
    given snapshot instead (a :class:`cfenv.channel.Snapshot` or a dict with
    ``beta`` ``(M, K)``, ``ap_positions`` ``(M, 2)`` and ``ue_positions``
    ``(K, 2)`` [m]), so that agents can be compared on identical networks.

    ``info`` after ``reset``: ``beta`` (linear, float64 ``(M, K)``),
    ``ap_positions`` ``(M, 2)`` and ``ue_positions`` ``(K, 2)`` [m];
    after ``step`` also ``pilots`` ``(K,)``, ``rates`` (per user, Mbit/s) and
    ``sum_rate`` (Mbit/s).

    ## Episode End

    * Termination: after the single ``step``.
    * Truncation: never.

    ## Arguments

    ``gym.make("CellFreePilot-v0", **kwargs)`` accepts ``config`` (a
    :class:`cfenv.config.SystemConfig`), ``render_mode`` and any
    ``SystemConfig`` field, which overrides ``config`` (an unknown one raises
    ``TypeError``):

    | parameter         | type  | default | description                          |
    |-------------------|-------|---------|--------------------------------------|
    | M                 | int   | 10      | access points                        |
    | L                 | int   | 2       | antennas per AP                      |
    | K                 | int   | 6       | users                                |
    | tau_p             | int   | 3       | orthonormal pilots                   |
    | area_side_m       | float | 1000    | side of the square area [m]          |
    | shadowing_std_db  | float | 8       | shadowing standard deviation [dB]    |
    | wrap_around       | bool  | True    | torus distances                      |
    | ...               |       |         | every other ``SystemConfig`` field   |
    | render_mode       | str   | None    | ``"rgb_array"`` or ``"ansi"``        |

    ## Vectorized environment

    ``gym.make_vec("CellFreePilot-v0", num_envs=N)`` gives
    :class:`CellFreePilotVectorEnv`, which draws and scores all N snapshots
    in one batched call (same-step autoreset: every step starts new episodes).

    ## Version History

    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, config: SystemConfig | None = None,
                 **config_fields: Any) -> None:
        self.config = _config_from_kwargs(config, config_fields)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        cfg = self.config
        self.observation_space = spaces.Box(OBS_DB_LOW, OBS_DB_HIGH, (cfg.M, cfg.K), np.float32)
        self.action_space = spaces.MultiDiscrete(np.full(cfg.K, cfg.tau_p, dtype=np.int64))
        self._snapshot = None
        self._pilots: np.ndarray | None = None
        self._rates_mbps: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._new_snapshot(options)
        self._pilots = None
        self._rates_mbps = None
        return fading_observation(self._snapshot.beta), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        snapshot = self.snapshot
        pilots = self.action_to_pilots(action)
        rates = user_rates(snapshot.beta, pilots, self.config) / MBPS
        self._pilots, self._rates_mbps = pilots, rates
        info = self._info()
        info.update(pilots=pilots, rates=rates, sum_rate=float(rates.sum()))
        return fading_observation(snapshot.beta), float(rates.sum()), True, False, info

    def action_to_pilots(self, action: Any) -> np.ndarray:
        """An action (``(K,)`` indices or ``(K, tau_p)`` one-hot) -> ``(K,)`` int64 pilots."""
        cfg = self.config
        action = np.asarray(action)
        if action.shape == (cfg.K, cfg.tau_p) and not np.issubdtype(action.dtype, np.integer):
            return as_pilot_indices(action, cfg)
        if action.shape == (cfg.K, cfg.tau_p):  # integer one-hot matrix
            return as_pilot_indices(action.astype(np.float64), cfg)
        if action.shape != (cfg.K,):
            raise ValueError(
                f"action must be (K,) = ({cfg.K},) pilot indices or a (K, tau_p) = "
                f"({cfg.K}, {cfg.tau_p}) one-hot matrix, got shape {action.shape}"
            )
        if not np.issubdtype(action.dtype, np.integer):
            if not np.all(np.isfinite(action)) or not np.all(action == np.round(action)):
                raise ValueError(f"pilot indices must be integers, got {action!r}")
            action = action.astype(np.int64)
        return as_pilot_indices(action, cfg)

    def _info(self) -> dict[str, Any]:
        s = self.snapshot
        return {"beta": s.beta.copy(), "ap_positions": s.ap_positions.copy(),
                "ue_positions": s.ue_positions.copy()}

    def render(self) -> np.ndarray | str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode= to gym.make")
            return None
        if self.render_mode == "ansi":
            return self._render_ansi()
        from cfenv.render import draw_network

        return draw_network(self.snapshot, self._pilots, self.config)

    def _render_ansi(self) -> str:
        cfg, s = self.config, self.snapshot
        lines = [f"CellFreePilot (M={cfg.M}, L={cfg.L}, K={cfg.K}, tau_p={cfg.tau_p})"]
        master = s.beta.argmax(axis=0)
        for k in range(cfg.K):
            best_db = 10 * np.log10(s.beta[master[k], k])
            pilot = "-" if self._pilots is None else str(int(self._pilots[k]))
            rate = "" if self._rates_mbps is None else f"  rate {self._rates_mbps[k]:7.2f} Mbit/s"
            lines.append(f"  user {k:2d}  pilot {pilot:>2}  master AP {master[k]:2d} ({best_db:6.1f} dB){rate}")
        if self._rates_mbps is not None:
            lines.append(f"  sum rate {self._rates_mbps.sum():.2f} Mbit/s")
        return "\n".join(lines) + "\n"


class CellFreePilotVectorEnv(VectorEnv):
    """``num_envs`` independent :class:`CellFreePilotEnv` copies, drawn and scored as arrays.

    Every step ends every episode, so autoreset is same-step: the observation
    returned by ``step`` is already the next snapshot; the scored one is in
    ``infos["final_obs"]`` and its positions/fading in ``infos["final_info"]``.
    ``infos`` always holds the current ``beta`` ``(N, M, K)``, ``ap_positions``
    and ``ue_positions``; after ``step`` also ``pilots``, ``rates`` ``(N, K)``
    and ``sum_rate`` ``(N,)`` (Mbit/s) of the scored snapshots.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, config: SystemConfig | None = None, **config_fields: Any) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.config = _config_from_kwargs(config, config_fields)
        cfg = self.config
        self.single_observation_space = spaces.Box(OBS_DB_LOW, OBS_DB_HIGH, (cfg.M, cfg.K), np.float32)
        self.single_action_space = spaces.MultiDiscrete(np.full(cfg.K, cfg.tau_p, dtype=np.int64))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._snapshots: Snapshot | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._snapshots = draw_snapshots(self.config, self.np_random, (self.num_envs,))
        return fading_observation(self._snapshots.beta), self._infos()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._snapshots is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        actions = np.asarray(actions)
        if actions.shape not in ((self.num_envs, cfg.K), (self.num_envs, cfg.K, cfg.tau_p)):
            raise ValueError(
                f"actions must have shape (num_envs, K) = ({self.num_envs}, {cfg.K}) or "
                f"(num_envs, K, tau_p), got {actions.shape}"
            )
        if actions.ndim == 3 and np.issubdtype(actions.dtype, np.integer):
            actions = actions.astype(np.float64)
        pilots = as_pilot_indices(actions, cfg)
        scored = self._snapshots
        rates = user_rates(scored.beta, pilots, cfg) / MBPS
        sum_rate = rates.sum(-1)
        final_obs = fading_observation(scored.beta)
        final_info = {"beta": scored.beta, "ap_positions": scored.ap_positions,
                      "ue_positions": scored.ue_positions, "pilots": pilots, "rates": rates,
                      "sum_rate": sum_rate}
        self._snapshots = draw_snapshots(cfg, self.np_random, (self.num_envs,))
        infos = self._infos()
        infos.update(pilots=pilots, rates=rates, sum_rate=sum_rate, final_obs=final_obs,
                     final_info=final_info)
        done = np.ones(self.num_envs, dtype=np.bool_)
        return (fading_observation(self._snapshots.beta), sum_rate.astype(np.float64), done,
                np.zeros(self.num_envs, dtype=np.bool_), infos)

    def _infos(self) -> dict[str, Any]:
        s = self._snapshots
        assert s is not None
        return {"beta": s.beta.copy(), "ap_positions": s.ap_positions.copy(),
                "ue_positions": s.ue_positions.copy()}
