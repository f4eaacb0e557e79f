"""Gymnasium environments for pilot assignment: one snapshot per episode, one step."""

from __future__ import annotations

import numbers
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from cfenv.channel import Snapshot
from cfenv.config import DEFAULT_CONFIG, MAX_SNAPSHOT_BYTES, SystemConfig, check_config
from cfenv.models import model_of
from cfenv.rates import as_pilot_indices
from cfenv.units import MBPS, fading_db

OBS_DB_LOW = -300.0
"""lower observation bound [dB]; a -300 dB gain needs shadowing beyond -20 sigma"""
OBS_DB_HIGH = 0.0
"""upper observation bound [dB]: a passive channel never gains power"""


def fading_observation(beta: np.ndarray) -> np.ndarray:
    """``(..., M, K)`` linear beta -> float32 dB, clipped to [OBS_DB_LOW, OBS_DB_HIGH]."""
    return np.clip(fading_db(beta), OBS_DB_LOW, OBS_DB_HIGH).astype(np.float32)


RESET_OPTIONS = ("snapshot",)
"""the keys ``reset(options=...)`` understands"""


def check_options(options: Any) -> dict[str, Any]:
    """``reset``'s ``options``: ``None`` or a dict whose keys are among :data:`RESET_OPTIONS`
    (``{}`` for ``None``); ``ValueError`` otherwise."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ValueError(  # noqa: TRY004 -- bad reset input is one ValueError, whatever its kind
            f"options must be a dict such as {{'snapshot': s}} or None, got {type(options).__name__}")
    unknown = sorted(str(key) for key in options if key not in RESET_OPTIONS)
    if unknown:
        raise ValueError(f"unknown reset option {unknown[0]!r}; valid: {', '.join(RESET_OPTIONS)}")
    return options


def snapshot_from_options(options: dict[str, Any], config: SystemConfig,
                          batch_shape: tuple[int, ...] = ()) -> Snapshot:
    """A :class:`Snapshot` given as ``options["snapshot"]`` (a Snapshot or a dict with
    ``beta``, ``ap_positions``, ``ue_positions``, arrays or lists) with leading dimensions
    ``batch_shape``, as float64; ``ValueError`` on bad shapes or values
    (:func:`cfenv.channel.validate_snapshot`: beta float32/float64 in (0, 1], positions
    finite and inside the area)."""
    return model_of(config).validate(options["snapshot"], batch_shape=batch_shape, where="options['snapshot']")


def rate_info(rates_mbps: np.ndarray, config: SystemConfig) -> dict[str, Any]:
    """What ``info`` reports after a step, whatever the objective: ``rates`` ``(..., K)``, ``sum_rate``
    and ``min_rate`` ``(...)`` [Mbit/s], ``se`` ``(..., K)`` [bit/s/Hz] (rate / bandwidth) and ``objective``
    (the reward's value, ``config.objective``); scalars as ``float``."""
    def scalar(x: Any) -> Any:
        return float(x) if np.ndim(x) == 0 else x
    return {"rates": rates_mbps, "se": rates_mbps * MBPS / config.bandwidth_hz, "sum_rate": scalar(rates_mbps.sum(-1)),
            "min_rate": scalar(rates_mbps.min(-1)), "objective": scalar(config.objective.reward(rates_mbps))}


def snapshot_info(snapshot: Snapshot) -> dict[str, Any]:
    """Copies of a snapshot's arrays for ``info``: ``beta``, ``ap_positions``, ``ue_positions`` and the
    model's extras by name (:attr:`cfenv.channel.Snapshot.extras`)."""
    return {"beta": snapshot.beta.copy(), "ap_positions": snapshot.ap_positions.copy(),
            "ue_positions": snapshot.ue_positions.copy(), **{k: v.copy() for k, v in snapshot.extras.items()}}


def _config_from_kwargs(config: SystemConfig | None, fields: dict[str, Any]) -> SystemConfig:
    """``config`` (default :data:`DEFAULT_CONFIG`; ``ValueError`` if it is not a :class:`SystemConfig`)
    with ``fields`` replaced."""
    return (DEFAULT_CONFIG if config is None else check_config(config)).replace(**fields)


def actions_to_pilots(actions: Any, config: SystemConfig, batch_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Environment actions -> ``(*batch_shape, K)`` int64 pilots.

    Two forms, told apart by their number of dimensions (so even at ``K == tau_p``):

    * ``(*batch_shape, K)`` pilot indices in ``[0, tau_p)``: integers, or floats holding whole
      numbers (as some RL libraries give them);
    * ``(*batch_shape, K, tau_p)`` one-hot pilot matrices: 0/1 entries, one 1 per row, any
      real dtype (bool, integer, float).

    Anything else (another shape, a complex or non-numeric dtype, a non-integer or
    out-of-range index, a row that is not one-hot) raises ``ValueError``.
    """
    K, tau_p = config.K, config.tau_p
    try:
        actions = np.asarray(actions)
    except (TypeError, ValueError) as err:
        raise ValueError(f"an action must be an array, got {type(actions).__name__} ({err})") from None
    if actions.dtype.kind not in "biuf":
        raise ValueError(f"an action must hold real numbers (pilot indices or a 0/1 one-hot matrix), got {actions.dtype}")
    batch = tuple(batch_shape)
    if actions.shape == (*batch, K, tau_p):
        return as_pilot_indices(actions, config, form="one-hot")
    if actions.shape != (*batch, K):
        lead = "".join(f"{n}, " for n in batch)
        raise ValueError(
            f"action must be ({lead}K) = ({lead}{K}) pilot indices or a ({lead}K, tau_p) = ({lead}{K}, {tau_p}) "
            f"one-hot matrix, got shape {actions.shape}"
        )
    if actions.dtype.kind == "b":
        raise ValueError("pilot indices must be integers, got a bool array (a one-hot matrix is (K, tau_p))")
    if actions.dtype.kind == "f":
        if not np.all(np.isfinite(actions)) or not np.all(actions == np.round(actions)):
            raise ValueError(f"pilot indices must be integers, got {actions!r}")
        if actions.size and (actions.min() < 0 or actions.max() >= tau_p):
            bad = actions.min() if actions.min() < 0 else actions.max()
            raise ValueError(f"pilot indices must lie in [0, tau_p={tau_p}), got {bad:g}")
        actions = actions.astype(np.int64)
    return as_pilot_indices(actions, config, form="indices")


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

    def _given_snapshot(self, options: Any) -> Snapshot | None:
        """The validated ``options["snapshot"]``, or ``None``; call before ``super().reset`` so
        that bad options raise before anything changes."""
        options = check_options(options)
        return snapshot_from_options(options, self.config) if "snapshot" in options else None

    def _new_snapshot(self, given: Snapshot | None) -> Snapshot:
        """The episode's snapshot: ``given`` if not ``None``, else one drawn from ``self.np_random``
        (call after ``super().reset``)."""
        self._snapshot = given if given is not None else model_of(self.config).draw(self.np_random)
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
    ``step`` takes either form, told apart by the number of dimensions (so
    also at ``K == tau_p``; :func:`actions_to_pilots`):

    * ``(K,)`` pilot indices in ``[0, tau_p)``: integers, or floats holding
      whole numbers;
    * the ``(K, tau_p)`` one-hot pilot matrix: 0/1 entries, one 1 per row,
      any real dtype (bool, integer, float).

    Anything else raises ``ValueError`` (another shape, a complex dtype, a
    non-integer index or one outside ``[0, tau_p)``, a row that is not
    one-hot).

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

    The ``objective`` (a ``SystemConfig`` field, default ``"sum"``) of the
    chosen assignment's per-user downlink rates R_k on the episode's
    snapshot (docs/model.md §2), a Python ``float``:

    * ``"sum"``: the sum rate sum_k R_k in **Mbit/s**;
    * ``"min"``: the minimum user rate min_k R_k in **Mbit/s** (max-min fairness);
    * ``"proportional"``: sum_k ln(R_k / 1 Mbit/s) in **nats** (proportional
      fairness; rates floored at 1e-300 bit/s).

    ## Starting State

    ``reset`` drops APs and users uniformly at random and draws shadowing,
    all from ``self.np_random``; ``reset(options={"snapshot": s})`` loads a
    given snapshot instead (a :class:`cfenv.channel.Snapshot` or a dict with
    ``beta`` ``(M, K)``, ``ap_positions`` ``(M, 2)`` and ``ue_positions``
    ``(K, 2)`` [m]; arrays or lists), so that agents can be compared on
    identical networks. ``options`` must be ``None`` or a dict with no key but
    ``"snapshot"``; the snapshot must have beta real float32/float64 in
    (0, 1] and finite positions inside the ``[0, D]`` square, else
    ``ValueError`` (:func:`cfenv.channel.validate_snapshot`).

    ``info`` after ``reset``: ``beta`` (linear, float64 ``(M, K)``),
    ``ap_positions`` ``(M, 2)`` and ``ue_positions`` ``(K, 2)`` [m];
    after ``step`` also ``pilots`` ``(K,)``, ``rates`` (per user, Mbit/s),
    ``sum_rate`` and ``min_rate`` (Mbit/s) and ``objective`` (the reward),
    whatever the objective.

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
    | objective         | str   | "sum"   | reward: "sum", "min", "proportional" |
    | ...               |       |         | every other ``SystemConfig`` field   |
    | render_mode       | str   | None    | ``"rgb_array"`` or ``"ansi"``        |

    ## Vectorized environment

    ``gym.make_vec("CellFreePilot-v0", num_envs=N)`` (N a positive int) gives
    :class:`CellFreePilotVectorEnv`, which draws and scores all N snapshots
    in one batched call (same-step autoreset: every step starts new episodes);
    ``reset(options={"snapshot": s})`` takes a batch of N snapshots.

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
        self._warned = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        given = self._given_snapshot(options)
        super().reset(seed=seed)
        self._new_snapshot(given)
        self._pilots = None
        self._rates_mbps = None
        self._warned = False
        return fading_observation(self._snapshot.beta), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        snapshot = self.snapshot
        if self._pilots is not None and not self._warned:  # as Gymnasium's own envs: warn once, then go on
            gym.logger.warn("step() called after the episode terminated: it scores another assignment of the same "
                            "network; call reset() for a new one")
            self._warned = True
        pilots = self.action_to_pilots(action)
        rates = model_of(self.config).user_rates(snapshot, pilots) / MBPS
        self._pilots, self._rates_mbps = pilots, rates
        info = self._info()
        info.update(pilots=pilots, **rate_info(rates, self.config))
        return fading_observation(snapshot.beta), info["objective"], True, False, info

    def action_to_pilots(self, action: Any) -> np.ndarray:
        """An action, ``(K,)`` pilot indices or the ``(K, tau_p)`` one-hot matrix, -> ``(K,)``
        int64 pilots (:func:`actions_to_pilots`)."""
        return actions_to_pilots(action, self.config)

    def _info(self) -> dict[str, Any]:
        return snapshot_info(self.snapshot)

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
            lines.append(f"  sum rate {self._rates_mbps.sum():.2f} Mbit/s, minimum {self._rates_mbps.min():.2f} Mbit/s")
        return "\n".join(lines) + "\n"


class CellFreePilotVectorEnv(VectorEnv):
    """``num_envs`` independent :class:`CellFreePilotEnv` copies, drawn and scored as arrays.

    Every step ends every episode, so autoreset is same-step: the observation
    returned by ``step`` is already the next snapshot; the scored one is in
    ``infos["final_obs"]`` and its positions/fading in ``infos["final_info"]``.
    ``infos`` always holds the current ``beta`` ``(N, M, K)``, ``ap_positions``
    and ``ue_positions``; after ``step`` also ``pilots``, ``rates`` ``(N, K)``,
    ``sum_rate`` and ``min_rate`` ``(N,)`` (Mbit/s) of the scored snapshots and
    ``objective`` ``(N,)``, the rewards (units as :class:`CellFreePilotEnv`).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, config: SystemConfig | None = None, **config_fields: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, numbers.Integral) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = int(num_envs)
        self.config = _config_from_kwargs(config, config_fields)
        cfg = self.config
        if self.num_envs * cfg.snapshot_bytes > MAX_SNAPSHOT_BYTES:
            raise ValueError(
                f"num_envs={self.num_envs} snapshots of size {cfg.size} need about "
                f"{self.num_envs * cfg.snapshot_bytes / 2**30:.3g} GiB per batch, above the cap of "
                f"{MAX_SNAPSHOT_BYTES / 2**30:g} GiB (cfenv.config.MAX_SNAPSHOT_BYTES)"
            )
        self.single_observation_space = spaces.Box(OBS_DB_LOW, OBS_DB_HIGH, (cfg.M, cfg.K), np.float32)
        self.single_action_space = spaces.MultiDiscrete(np.full(cfg.K, cfg.tau_p, dtype=np.int64))
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._snapshots: Snapshot | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start ``num_envs`` episodes: snapshots drawn from ``self.np_random``, or the batch given as
        ``options={"snapshot": s}`` (a :class:`Snapshot` or dict whose arrays have a leading
        ``num_envs`` dimension: beta ``(N, M, K)``, positions ``(N, M, 2)`` and ``(N, K, 2)``). Later
        episodes (after ``step``) are drawn again."""
        options = check_options(options)
        given = None
        if "snapshot" in options:
            given = snapshot_from_options(options, self.config, batch_shape=(self.num_envs,))
        super().reset(seed=seed)
        self._snapshots = given if given is not None else model_of(self.config).draw(self.np_random,
                                                                        (self.num_envs,))
        return fading_observation(self._snapshots.beta), self._infos()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Score ``(num_envs, K)`` pilot indices or ``(num_envs, K, tau_p)`` one-hot matrices
        (the forms of :func:`actions_to_pilots`)."""
        if self._snapshots is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        shape = np.shape(actions)
        if shape not in ((self.num_envs, cfg.K), (self.num_envs, cfg.K, cfg.tau_p)):
            raise ValueError(
                f"actions must have shape (num_envs, K) = ({self.num_envs}, {cfg.K}) or "
                f"(num_envs, K, tau_p), got {shape}"
            )
        pilots = actions_to_pilots(actions, cfg, (self.num_envs,))
        scored = self._snapshots
        rates = model_of(cfg).user_rates(scored, pilots) / MBPS
        scores = rate_info(rates, cfg)
        final_obs = fading_observation(scored.beta)
        final_info = {**snapshot_info(scored), "pilots": pilots, **scores}
        self._snapshots = model_of(cfg).draw(self.np_random, (self.num_envs,))
        infos = self._infos()
        infos.update(pilots=pilots, **scores, final_obs=final_obs, final_info=final_info)
        done = np.ones(self.num_envs, dtype=np.bool_)
        return (fading_observation(self._snapshots.beta), scores["objective"].astype(np.float64), done,
                np.zeros(self.num_envs, dtype=np.bool_), infos)

    def _infos(self) -> dict[str, Any]:
        assert self._snapshots is not None
        return snapshot_info(self._snapshots)
