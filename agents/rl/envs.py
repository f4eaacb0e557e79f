"""Training environments of the SB3 agents: the flat observation, relative rewards, and an SB3
``VecEnv`` over cfenv's batched vector environment (docs/rl.md has its speed)."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.base import (
    TRAIN_STREAM,
    stream_rng,
)
from agents.heuristics import master_ap_pilots
from cfenv.channel import Snapshot, as_snapshot
from cfenv.config import SystemConfig
from cfenv.env import CellFreePilotEnv, CellFreePilotVectorEnv, fading_observation
from cfenv.models import model_of
from cfenv.models.base import SystemModel
from cfenv.sequential import CellFreePilotSequentialEnv
from cfenv.units import MBPS, normalise_db
from cfenv.wrappers import FlattenFadingObservation

REWARD_SCALINGS = ("mbps", "master-ap")
VEC_ENVS = ("batched", "dummy", "subproc")


def flat_observation(beta: np.ndarray) -> np.ndarray:
    """``(B, M, K)`` linear beta -> ``(B, M K)`` float32, the observation of
    :class:`cfenv.wrappers.FlattenFadingObservation` over ``CellFreePilot-v0``, batched."""
    return _flatten_db(fading_observation(beta))


def _flatten_db(db: np.ndarray) -> np.ndarray:
    """``(B, M, K)`` dB observations -> ``(B, M K)`` float32, normalised as by FlattenFadingObservation."""
    return normalise_db(db.reshape(db.shape[0], -1)).astype(np.float32)


def _master_ap(snapshots: Snapshot | np.ndarray | dict, config: SystemConfig) -> tuple[SystemModel, Snapshot, np.ndarray]:
    model = model_of(config)
    snapshots = as_snapshot(snapshots, tuple(model.snapshot_extras))
    return model, snapshots, master_ap_pilots(model.gains(snapshots), config.tau_p)


def master_ap_sum_rate_mbps(snapshots: Snapshot | np.ndarray | dict, config: SystemConfig) -> np.ndarray:
    """``(B,)`` sum rate [Mbit/s] of the master-AP assignment on a batch of snapshots (a
    :class:`Snapshot`, an ``info``-style dict or a bare beta ``(B, M, K)``)."""
    model, snapshots, pilots = _master_ap(snapshots, config)
    return model.sum_rate(snapshots, pilots) / MBPS


def master_ap_objective(snapshots: Snapshot | np.ndarray | dict, config: SystemConfig) -> np.ndarray:
    """``(B,)`` ``config.objective`` of the master-AP assignment (snapshots as
    :func:`master_ap_sum_rate_mbps`), in the environments' reward units (Mbit/s; nats for
    "proportional"); under "sum" :func:`master_ap_sum_rate_mbps` itself."""
    if config.objective.is_default:  # the sum rate as computed before objectives, bit for bit
        return master_ap_sum_rate_mbps(snapshots, config)
    model, snapshots, pilots = _master_ap(snapshots, config)
    return config.objective.reward(model.user_rates(snapshots, pilots) / MBPS)


def _check_reward_scaling(reward_scaling: str) -> None:
    if reward_scaling not in REWARD_SCALINGS:
        raise ValueError(f"reward_scaling must be one of {REWARD_SCALINGS}, got {reward_scaling!r}")


class RelativeReward(gym.Wrapper):
    """Divide every reward by master-AP's on the episode's snapshot (``info["beta"]`` of ``reset``;
    the environment's objective, :func:`master_ap_objective`); works for both cfpilot environments."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._reference = 1.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        config = self.env.unwrapped.config
        extras = tuple(model_of(config).snapshot_extras)
        self._reference = float(master_ap_objective(as_snapshot(info, extras)[None], config)[0])
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) / self._reference, terminated, truncated, info


class BatchedPilotVecEnv(VecEnv):
    """An SB3 ``VecEnv`` over :class:`cfenv.env.CellFreePilotVectorEnv`: N one-step episodes
    drawn and scored as arrays, observations flattened and normalised as by
    :class:`cfenv.wrappers.FlattenFadingObservation`.

    Every step ends every episode: ``dones`` is all True, ``infos[i]`` holds
    ``terminal_observation`` (the scored snapshot's observation), ``episode``
    (``{"r": the objective (``config.objective``: sum rate by default) in Mbit/s, "l": 1, "t": seconds}``,
    as SB3's ``Monitor`` writes it) and ``sum_rate`` [Mbit/s]; the returned observations are the next
    snapshots.

    Args:
        num_envs: episodes per step N.
        config: the system.
        seed: snapshots come from ``stream_rng(seed, TRAIN_STREAM, M, L, K, tau_p)``.
        reward_scaling: ``"mbps"`` or ``"master-ap"`` (see the module docstring).
    """

    def __init__(self, num_envs: int, config: SystemConfig, seed: int = 0,
                 reward_scaling: str = "mbps") -> None:
        _check_reward_scaling(reward_scaling)
        self.config = config
        self.reward_scaling = reward_scaling
        self.venv = CellFreePilotVectorEnv(num_envs, config=config)
        self.venv.np_random = stream_rng(seed, TRAIN_STREAM, *config.size)
        observation_space = FlattenFadingObservation(CellFreePilotEnv(config=config)).observation_space
        super().__init__(int(num_envs), observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._started = time.perf_counter()

    def reset(self) -> np.ndarray:
        obs, _ = self.venv.reset()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return _flatten_db(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, raw, terminated, truncated, infos = self.venv.step(self._actions)
        final = infos["final_info"]
        rewards = raw
        if self.reward_scaling == "master-ap":
            rewards = raw / master_ap_objective(final, self.config)
        terminal = _flatten_db(infos["final_obs"])
        elapsed = round(time.perf_counter() - self._started, 6)
        info_list = [{"episode": {"r": float(r), "l": 1, "t": elapsed}, "sum_rate": float(final["sum_rate"][i]),
                      "terminal_observation": terminal[i], "TimeLimit.truncated": False}
                     for i, r in enumerate(raw)]
        return _flatten_db(obs), rewards.astype(np.float32), terminated | truncated, info_list

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Restart the snapshot stream at ``stream_rng(seed, TRAIN_STREAM, *size)``."""
        if seed is not None:
            self.venv.np_random = stream_rng(seed, TRAIN_STREAM, *self.config.size)
        return [seed] * self.num_envs

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.venv, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result] * len(list(self._get_indices(indices)))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


class SpacesVecEnv(VecEnv):
    """A VecEnv with the spaces of an RL agent's training environment and nothing behind
    them: what :meth:`agents.rl.RLAgent.load` rebuilds a saved model on (no snapshots are
    drawn; resetting or stepping it is a ``RuntimeError``).

    Args:
        num_envs: the training run's number of environments (sizes SB3's buffers as in training).
        config: the system.
        sequential: the spaces of ``CellFreePilotSequential-v0`` instead of the flat
            ``CellFreePilot-v0`` observation.
    """

    def __init__(self, num_envs: int, config: SystemConfig, sequential: bool = False) -> None:
        self.env: gym.Env = (CellFreePilotSequentialEnv(config=config) if sequential
                             else FlattenFadingObservation(CellFreePilotEnv(config=config)))
        super().__init__(int(num_envs), self.env.observation_space, self.env.action_space)

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a loaded RL model has no training environment: train with fit() instead")

    reset = step_async = step_wait = _refuse  # type: ignore[assignment]

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        self._refuse()

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None,
                   **method_kwargs: Any) -> list[Any]:
        return self._refuse()

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def _env_factory(config: SystemConfig, seed: int, index: int, sequential: bool, reward_scaling: str,
                 reward_mode: str) -> Any:
    """A thunk for SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` (which cloudpickles it): environment
    ``index`` with its own snapshot stream ``(seed, TRAIN_STREAM, *size, index)``."""

    def make() -> gym.Env:
        if sequential:
            env: gym.Env = CellFreePilotSequentialEnv(config=config, reward_mode=reward_mode)
        else:
            env = FlattenFadingObservation(CellFreePilotEnv(config=config))
        env.unwrapped.np_random = stream_rng(seed, TRAIN_STREAM, *config.size, index)
        env = Monitor(env)  # inside the scaling: episode returns are logged in Mbit/s
        return RelativeReward(env) if reward_scaling == "master-ap" else env

    return make


def make_vec_env(config: SystemConfig, n_envs: int, *, seed: int = 0, kind: str = "batched",
                 sequential: bool = False, reward_scaling: str = "mbps",
                 reward_mode: str = "final") -> VecEnv:
    """The SB3 training environment of an RL agent.

    Args:
        config: the system.
        n_envs: parallel environments N.
        seed: training-stream seed.
        kind: ``"batched"`` (:class:`BatchedPilotVecEnv`, one-step env only), ``"dummy"`` or
            ``"subproc"`` (SB3's ``DummyVecEnv`` / ``SubprocVecEnv`` of N environments).
        sequential: ``CellFreePilotSequential-v0`` instead of ``CellFreePilot-v0``.
        reward_scaling: ``"mbps"`` or ``"master-ap"``.
        reward_mode: the sequential env's ``"final"`` or ``"increments"``.
    """
    _check_reward_scaling(reward_scaling)
    if kind not in VEC_ENVS:
        raise ValueError(f"vec_env must be one of {VEC_ENVS}, got {kind!r}")
    if int(n_envs) < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}")
    if kind == "batched":
        if sequential:
            raise ValueError("vec_env='batched' exists for CellFreePilot-v0 only; "
                             "use 'dummy' for the sequential env")
        return BatchedPilotVecEnv(n_envs, config, seed, reward_scaling)
    fns = [_env_factory(config, seed, i, sequential, reward_scaling, reward_mode) for i in range(int(n_envs))]
    return DummyVecEnv(fns) if kind == "dummy" else SubprocVecEnv(fns)


