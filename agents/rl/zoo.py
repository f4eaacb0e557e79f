"""The Stable-Baselines3 agents of the zoo behind the agent interface."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed

from agents.base import (
    VALIDATION_STREAM,
    LearnableAgent,
    run_folder,
    stream_rng,
)
from agents.models.sb3 import HQCNNExtractor
from agents.rl.callbacks import _Progress, _threads, _Validation
from agents.rl.envs import flat_observation, make_vec_env
from agents.storage import atomic_write_bytes
from cfenv import __version__
from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import SystemConfig
from cfenv.sequential import sequential_observation
from cfenv.units import size_slug

VALIDATION_SNAPSHOTS = 256
"""fixed validation snapshots behind ``val/sum_rate_mbps``"""
MODEL_ZIP = "model.zip"
CONFIG_JSON = "config.json"
HQCNN_OPTIONS = ("n_qubits", "share", "readout", "backend")
"""``ppo-hqcnn`` options that configure :class:`HQCNNExtractor` rather than PPO"""

@dataclass(frozen=True)
class RLBudget:
    """The training budget :meth:`RLAgent.fit` takes (``None``: the agent's :attr:`~RLAgent.default_budget`)."""

    total_timesteps: int | None = None
    """environment steps (for dqn a step is one user, an episode K steps)"""
    reward_scaling: str | None = None
    """reward: mbps (the sum rate) or master-ap (divided by master-AP's on the same snapshot)"""
    n_envs: int | None = None
    """environments stepped at once"""


_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "DQN": DQN}



class RLAgent(LearnableAgent):
    """An SB3 algorithm behind the agent interface.

    Args:
        config: the system size the agent is (or will be) trained for.
        seed: seed of the policy initialisation, the training snapshots and the validation set.
        device: torch device of the policy.
        loss: accepted and ignored (the harness passes the neural agents' loss); RL agents
            train on the environment's reward.
        **options: keyword arguments of the SB3 algorithm overriding :attr:`hyperparameters`
            (``learning_rate``, ``n_steps``, ``batch_size``, ``gamma``, ``ent_coef``, ...;
            ``net_arch`` goes into ``policy_kwargs``), plus agent options (``reward_mode`` for
            ``dqn``; ``n_qubits``, ``share``, ``readout``, ``backend`` for ``ppo-hqcnn``).
            Saved in ``config.json``, so they must be JSON values.
    """

    name: ClassVar[str] = "rl"
    algorithm: ClassVar[str] = "PPO"
    """SB3 algorithm class name"""
    sequential: ClassVar[bool] = False
    """train on ``CellFreePilotSequential-v0`` (one user per step) instead of ``CellFreePilot-v0``"""
    hyperparameters: ClassVar[dict[str, Any]] = {}
    """default SB3 keyword arguments (``net_arch`` -> ``policy_kwargs``)"""
    default_budget: ClassVar[dict[str, Any]] = {"total_timesteps": 20_000, "n_envs": 64,
                                                "reward_scaling": "master-ap", "vec_env": "batched"}
    """:meth:`fit`'s defaults (what ``evaluate.py`` trains a missing agent with): environment
    steps, parallel environments, reward scaling (``"mbps"`` or ``"master-ap"``) and training
    VecEnv (``"batched"``, ``"dummy"`` or ``"subproc"``)"""
    agent_options: ClassVar[tuple[str, ...]] = ()
    """option names that configure the agent rather than the SB3 algorithm"""

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "rl", **options: Any) -> None:
        super().__init__(config, seed)
        self.device = device
        self.options = dict(options)
        self.model: BaseAlgorithm | None = None
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------ protocol
    @classmethod
    def run_dir(cls, runs_dir: str | Path, config: SystemConfig, seed: int,
                loss: str = "unsupervised") -> Path:
        """``runs_dir/<agent>/<M>-<L>-<K>-<tau_p>/rl-seed<seed>`` (``loss`` is ignored)."""
        return run_folder(runs_dir, cls.name, config.size, f"rl-seed{seed}")

    @property
    def trained(self) -> bool:
        return self.model is not None

    def _trained_config(self) -> SystemConfig:
        if self.model is None or self.config is None:
            raise ValueError(f"{self.name} is not trained: call fit() or load() first")
        return self.config

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        trained = self._trained_config()
        if trained.size != config.size:
            raise ValueError(f"{self.name} was trained for (M, L, K, tau_p) = {trained.size}, "
                             f"not {config.size}")
        return self._predict(snapshots.beta, config)

    def _predict(self, beta: np.ndarray, config: SystemConfig) -> np.ndarray:
        """Deterministic ``(B, K)`` pilots for ``(B, M, K)`` beta: one ``model.predict`` on the batch."""
        assert self.model is not None
        actions, _ = self.model.predict(flat_observation(beta), deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(beta.shape[0], config.K)

    def parameter_count(self) -> int:
        """Trainable parameters of the policy (each shared tensor once)."""
        if self.model is None:
            raise ValueError(f"{self.name} has no model yet")
        return sum(p.numel() for p in self._parameters() if p.requires_grad)

    def _parameters(self) -> Any:
        return self.model.policy.parameters()  # type: ignore[union-attr]

    # ------------------------------------------------------------ building
    def algorithm_options(self) -> dict[str, Any]:
        """The SB3 keyword arguments as JSON data: :attr:`hyperparameters` updated by the options."""
        chosen = {k: v for k, v in self.options.items() if k not in self.agent_options}
        return {**self.hyperparameters, **chosen}

    def _algorithm_kwargs(self) -> dict[str, Any]:
        kwargs = self.algorithm_options()
        policy_kwargs = dict(kwargs.pop("policy_kwargs", {}) or {})
        if "net_arch" in kwargs:
            policy_kwargs["net_arch"] = kwargs.pop("net_arch")
        policy_kwargs.update(self._policy_kwargs())
        if policy_kwargs:
            kwargs["policy_kwargs"] = policy_kwargs
        return kwargs

    def _policy_kwargs(self) -> dict[str, Any]:
        return {}

    def initialise(self, config: SystemConfig | None = None, *, n_envs: int | None = None,
                   reward_scaling: str | None = None, vec_env: str | None = None,
                   tensorboard_log: str | Path | None = None) -> "RLAgent":
        """Give the agent a freshly initialised (untrained) SB3 model on its training
        environment; the initial policy depends only on the seed and the options."""
        cfg = self._resolve_config(config)
        budget = self.default_budget
        n_envs = budget["n_envs"] if n_envs is None else int(n_envs)
        reward_scaling = budget["reward_scaling"] if reward_scaling is None else reward_scaling
        vec_env = budget["vec_env"] if vec_env is None else vec_env
        env = make_vec_env(cfg, n_envs, seed=self.seed, kind=vec_env, sequential=self.sequential,
                           reward_scaling=reward_scaling,
                           reward_mode=self.options.get("reward_mode", "final"))
        set_random_seed(self.seed)
        self.model = _ALGORITHMS[self.algorithm]("MlpPolicy", env, device=self.device, verbose=0,
                                                 tensorboard_log=None if tensorboard_log is None
                                                 else str(tensorboard_log), **self._algorithm_kwargs())
        self.model.action_space.seed(self.seed)
        self.config = cfg
        return self

    # ------------------------------------------------------------ training
    def fit(self, config: SystemConfig | None = None, *, total_timesteps: int | None = None,
            runs_dir: str | Path = "runs", progress: bool = True, n_envs: int | None = None,
            reward_scaling: str | None = None, vec_env: str | None = None,
            val_snapshots: int = VALIDATION_SNAPSHOTS, val_every: int | None = None,
            save: bool = True, threads: int | None = 1) -> dict[str, Any]:
        """Train from scratch with SB3's ``learn``; save into :meth:`run_dir` at the end.

        Args:
            config: the system (defaults to the agent's).
            total_timesteps: environment steps (default from :attr:`default_budget`; for the
                sequential agent a step is one user, an episode K steps).
            runs_dir: root of run folders / TensorBoard logs.
            progress: tqdm bar with the latest validation sum rate.
            n_envs: parallel environments (default from :attr:`default_budget`).
            reward_scaling: ``"mbps"`` or ``"master-ap"`` (default from :attr:`default_budget`).
            vec_env: ``"batched"``, ``"dummy"`` or ``"subproc"`` (default from :attr:`default_budget`).
            val_snapshots: fixed validation snapshots.
            val_every: steps between validations (default: a tenth of the budget).
            save: write the model into the run folder at the end.
            threads: torch intra-op threads and numba threads (the rate kernel) while
                training, restored afterwards; ``None`` leaves both as they are. The policies
                are small (batches of ~100 x 60) and the kernel calls short, so one thread is
                fastest: on a 2-core machine, numba's OpenMP pool spinning between torch calls
                made env steps and updates several times slower (measured: docs/rl.md).

        Returns:
            ``run_dir``, ``train_time_s``, ``total_timesteps``, ``n_envs``, ``reward_scaling``,
            ``vec_env``, ``initial_val_sum_rate_mbps`` (untrained policy),
            ``val_sum_rate_mbps`` and ``val_ratio_to_master_ap`` (trained), ``val_history``
            and ``parameters``.
        """
        cfg = self._resolve_config(config)
        budget = self.default_budget
        total = budget["total_timesteps"] if total_timesteps is None else int(total_timesteps)
        if total < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total}")
        n_envs = budget["n_envs"] if n_envs is None else int(n_envs)
        reward_scaling = budget["reward_scaling"] if reward_scaling is None else reward_scaling
        vec_env = budget["vec_env"] if vec_env is None else vec_env
        run_dir = self.run_dir(runs_dir, cfg, self.seed)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _threads(threads):
            return self._fit(cfg, total, run_dir, progress, n_envs, reward_scaling, vec_env, val_snapshots,
                             val_every, save)

    def _fit(self, cfg: SystemConfig, total: int, run_dir: Path, progress: bool, n_envs: int,
             reward_scaling: str, vec_env: str, val_snapshots: int, val_every: int | None,
             save: bool) -> dict[str, Any]:
        started = time.perf_counter()
        self.initialise(cfg, n_envs=n_envs, reward_scaling=reward_scaling, vec_env=vec_env,
                        tensorboard_log=run_dir)
        assert self.model is not None
        settings = {"agent": self.name, "algorithm": self.algorithm, "size": list(cfg.size),
                    "seed": self.seed,
                    "total_timesteps": total, "n_envs": n_envs, "reward_scaling": reward_scaling,
                    "vec_env": vec_env, "val_snapshots": int(val_snapshots),
                    "hyperparameters": self.algorithm_options(), "options": dict(self.options)}
        val = draw_snapshots(cfg, stream_rng(self.seed, VALIDATION_STREAM, *cfg.size), (int(val_snapshots),))
        bar = _Progress(total, f"{self.name} {size_slug(cfg.size)}") if progress else None
        validation = _Validation(self, val, val_every or max(total // 10, 1),
                                 {k: json.dumps(v) for k, v in settings.items()}, bar)
        callbacks = [validation] if bar is None else [bar, validation]
        try:
            self.model.learn(total_timesteps=total, callback=callbacks, tb_log_name=self.name,
                             progress_bar=False)
        finally:
            self.model.get_env().close()
        train_time = time.perf_counter() - started
        final = validation.history[-1]
        self.meta = {"train_time_s": train_time, "train": settings,
                     "final_metrics": {k: v for k, v in final.items() if k != "timesteps"},
                     "initial_val_sum_rate_mbps": validation.history[0]["val/sum_rate_mbps"],
                     "val_master_ap_sum_rate_mbps": validation.master}
        if save:
            self.save(run_dir)
        return {"run_dir": str(run_dir), "train_time_s": train_time, "total_timesteps": total,
                "n_envs": n_envs,
                "reward_scaling": reward_scaling, "vec_env": vec_env,
                "initial_val_sum_rate_mbps": validation.history[0]["val/sum_rate_mbps"],
                "val_sum_rate_mbps": final["val/sum_rate_mbps"],
                "val_ratio_to_master_ap": final["val/ratio_to_master_ap"],
                "val_master_ap_sum_rate_mbps": validation.master,
                "val_history": validation.history, "parameters": self.parameter_count(),
                "final": {k: v for k, v in final.items() if k.startswith("val/")}}

    # ------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path) -> Path:
        """``model.zip`` (SB3's ``save``) + ``config.json`` (agent, system, options, seed,
        training summary, versions: plain JSON) into ``directory``; returns it."""
        import stable_baselines3


        if self.model is None or self.config is None:
            raise ValueError(f"{self.name} has no trained model to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / MODEL_ZIP)
        meta = {**self.meta, "agent": self.name, "algorithm": self.algorithm,
                "system": dataclasses.asdict(self.config), "options": self.options, "seed": self.seed,
                "train_time_s": self.meta.get("train_time_s"), "parameters": self.parameter_count(),
                "cfpilot_version": __version__, "stable_baselines3_version": stable_baselines3.__version__}
        atomic_write_bytes(directory / CONFIG_JSON, lambda f: f.write(json.dumps(meta, indent=1).encode()))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu",
             config: SystemConfig | None = None) -> "RLAgent":
        """Rebuild an agent saved by :meth:`save`; ``ValueError`` if ``config`` is given and its
        (M, L, K, tau_p) differs from the saved one, or the folder holds another agent."""
        directory = Path(directory)
        if not (directory / CONFIG_JSON).exists():
            raise FileNotFoundError(f"no {CONFIG_JSON} in {directory}")
        meta = json.loads((directory / CONFIG_JSON).read_text())
        saved = SystemConfig(**meta["system"])
        if config is not None and config.size != saved.size:
            raise ValueError(f"checkpoint {directory} was trained for (M, L, K, tau_p) = {saved.size}, "
                             f"not {config.size}")
        if cls is not RLAgent and meta.get("agent") != cls.name:
            raise ValueError(f"{directory} holds a {meta.get('agent')!r} model, not {cls.name!r}")
        agent_cls = {c.name: c for c in RL_AGENTS}.get(meta.get("agent"))
        if agent_cls is None:
            raise ValueError(f"{directory} holds a {meta.get('agent')!r} model, not an RL agent")
        agent = agent_cls(config=saved, seed=meta["seed"], device=device, **meta["options"])
        agent.model = _ALGORITHMS[agent_cls.algorithm].load(directory / MODEL_ZIP, device=device)
        agent.meta = meta
        return agent


class PPOAgent(RLAgent):
    """SB3 PPO on ``CellFreePilot-v0`` (one-step episodes), ``MlpPolicy`` on the flat fading."""

    name = "ppo"
    algorithm = "PPO"
    hyperparameters = {"n_steps": 8, "batch_size": 128, "n_epochs": 5, "learning_rate": 1e-3,
                       "gamma": 0.0, "gae_lambda": 1.0, "ent_coef": 0.0, "net_arch": [64, 64]}
    default_budget = {**RLAgent.default_budget, "total_timesteps": 60_000}


class A2CAgent(RLAgent):
    """SB3 A2C on ``CellFreePilot-v0`` (one-step episodes), ``MlpPolicy`` on the flat fading."""

    name = "a2c"
    algorithm = "A2C"
    hyperparameters = {"n_steps": 1, "learning_rate": 1e-3, "gamma": 0.0, "gae_lambda": 1.0,
                       "ent_coef": 0.0, "normalize_advantage": True, "net_arch": [64, 64]}
    default_budget = {**RLAgent.default_budget, "total_timesteps": 40_000}


class PPOHQCNNAgent(RLAgent):
    """PPO whose features extractor is the HQCNN circuit (:class:`HQCNNExtractor`)."""

    name = "ppo-hqcnn"
    algorithm = "PPO"
    hyperparameters = {"n_steps": 8, "batch_size": 128, "n_epochs": 5, "learning_rate": 1e-2,
                       "gamma": 0.0, "gae_lambda": 1.0, "ent_coef": 0.0,
                       "net_arch": {"pi": [], "vf": [64]}}
    default_budget = {**RLAgent.default_budget, "total_timesteps": 20_000}
    agent_options = HQCNN_OPTIONS

    def _policy_kwargs(self) -> dict[str, Any]:
        extractor = {k: self.options[k] for k in HQCNN_OPTIONS if k in self.options}
        return {"features_extractor_class": HQCNNExtractor, "features_extractor_kwargs": extractor}


class DQNAgent(RLAgent):
    """SB3 DQN on ``CellFreePilotSequential-v0``: one user per step, K steps per snapshot."""

    name = "dqn"
    algorithm = "DQN"
    sequential = True
    hyperparameters = {"learning_rate": 5e-4, "buffer_size": 50_000, "learning_starts": 1_000,
                       "batch_size": 128,
                       "gamma": 1.0, "train_freq": 4, "gradient_steps": 1, "target_update_interval": 500,
                       "exploration_fraction": 0.5, "exploration_final_eps": 0.05, "net_arch": [64, 64]}
    default_budget = {**RLAgent.default_budget, "total_timesteps": 40_000, "n_envs": 4, "vec_env": "dummy"}
    agent_options = ("reward_mode",)

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "rl", **options: Any) -> None:
        options.setdefault("reward_mode", "increments")
        super().__init__(config, seed, device, loss, **options)

    def _predict(self, beta: np.ndarray, config: SystemConfig) -> np.ndarray:
        """Step the K users over the whole batch: one ``model.predict`` per user."""
        assert self.model is not None
        pilots = np.full((beta.shape[0], config.K), -1, dtype=np.int64)
        for user in range(config.K):
            obs = sequential_observation(beta, pilots, user, config)
            actions, _ = self.model.predict(obs, deterministic=True)
            pilots[:, user] = np.asarray(actions).reshape(-1)
        return pilots

    def _parameters(self) -> Any:
        return self.model.q_net.parameters()  # type: ignore[union-attr]


RL_AGENTS: tuple[type[RLAgent], ...] = (PPOAgent, A2CAgent, PPOHQCNNAgent, DQNAgent)
"""the Stable-Baselines3 agents of the zoo (what a checkpoint's ``agent`` may name)"""

