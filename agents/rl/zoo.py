"""The Stable-Baselines3 agents of the zoo behind the agent interface."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import set_random_seed

from agents.base import (
    VALIDATION_STREAM,
    LearnableAgent,
    stream_rng,
    thread_limits,
)
from agents.learning.checkpoints import check_finite, read_state
from agents.learning.settings import check_device, differences, other_settings
from agents.models import (
    MAX_HIDDEN_LAYERS,
    MAX_HIDDEN_WIDTH,
    check_int,
    check_parameter_count,
    check_widths,
    mlp_parameter_count,
)
from agents.models.quantum import SUPPORTED_N_QUBITS
from agents.models.sb3 import HQCNNExtractor
from agents.rl.callbacks import _Progress, _Validation
from agents.rl.envs import SpacesVecEnv, flat_observation, make_vec_env
from agents.specs.options import RLBudget
from agents.storage import atomic_write_bytes
from cfenv import __version__
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.sequential import sequential_observation
from cfenv.units import size_slug

VALIDATION_SNAPSHOTS = 256
"""fixed validation snapshots behind ``val/sum_rate_mbps``"""
POLICY_PT = "policy.pt"
"""the SB3 policy's ``state_dict`` (tensors only, loaded with ``torch.load(weights_only=True)``)"""
CONFIG_JSON = "config.json"
"""what rebuilds the model around the policy: agent, algorithm, system, options, SB3
hyperparameters, ``n_envs`` (plain JSON)"""
CHECKPOINT_DIR = "checkpoint"
"""subfolder of a run folder holding the latest training checkpoint while :meth:`RLAgent.fit`
runs (``config.json`` + ``policy.pt`` at every validation; removed once the finished model is saved)"""
MODEL_ZIP = "model.zip"
"""SB3's own format (a cloudpickle inside a zip), written by cfpilot 0.2.0 and earlier: refused, never unpickled"""
CHECKPOINT_FORMAT = "sb3-policy-state-dict-1"
"""``format`` of an RL ``config.json`` that goes with a ``policy.pt``"""
MAX_N_ENVS = 4096
"""most training environments a checkpoint may ask to be rebuilt for (``n_envs``)"""
MAX_ROLLOUT = 1 << 20
"""most ``n_steps * n_envs`` transitions of an on-policy rollout buffer, and most ``batch_size``"""
MAX_BUFFER_SIZE = 1_000_000
"""largest DQN replay buffer (``buffer_size``)"""
POLICY_KWARGS = ("net_arch", "ortho_init", "share_features_extractor", "normalize_images", "log_std_init")
"""the SB3 ``policy_kwargs`` an RL agent accepts (JSON values only)"""
_NOT_OPTIONS = ("self", "policy", "env", "device", "verbose", "tensorboard_log", "_init_setup_model",
                "replay_buffer_class", "replay_buffer_kwargs", "rollout_buffer_class", "rollout_buffer_kwargs")
"""SB3 constructor arguments the agent sets itself or that take classes: never options"""
HQCNN_OPTIONS = ("n_qubits", "share", "readout", "backend")
"""``ppo-hqcnn`` options that configure :class:`HQCNNExtractor` rather than PPO"""

_ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "DQN": DQN}


def check_rl_options(agent: str, algorithm: str, hyperparameters: Mapping[str, Any],
                     options: Mapping[str, Any], n_envs: int) -> None:
    """Bounds on what builds an RL agent's model (its options, or a ``config.json``), checked
    before anything is allocated; one ``ValueError`` naming the option.

    * SB3 keywords: those of the algorithm's constructor except :data:`_NOT_OPTIONS`, plus
      ``net_arch``; ``policy_kwargs`` keys in :data:`POLICY_KWARGS`;
    * ``net_arch``: a list of widths, or a ``{"pi": [...], "vf": [...]}`` (``"qf"``) mapping of
      them, each list at most :data:`~agents.models.MAX_HIDDEN_LAYERS` widths in
      ``1..``:data:`~agents.models.MAX_HIDDEN_WIDTH`;
    * ``n_envs`` in ``1..``:data:`MAX_N_ENVS`; ``n_steps * n_envs`` and ``batch_size`` at most
      :data:`MAX_ROLLOUT`; ``buffer_size`` at most :data:`MAX_BUFFER_SIZE`;
    * ``n_qubits`` (``ppo-hqcnn``) one of :data:`agents.models.quantum.SUPPORTED_N_QUBITS`.
    """
    if not isinstance(hyperparameters, Mapping) or not isinstance(options, Mapping):
        raise ValueError(f"{agent}: hyperparameters and options must be JSON objects")  # noqa: TRY004
    valid = [k for k in inspect.signature(_ALGORITHMS[algorithm].__init__).parameters if k not in _NOT_OPTIONS]
    unknown = sorted(set(hyperparameters) - {*valid, "net_arch"})
    if unknown:
        raise ValueError(f"{agent} has no option {', '.join(unknown)}; valid: net_arch, {', '.join(valid)}")
    policy_kwargs = hyperparameters.get("policy_kwargs") or {}
    if not isinstance(policy_kwargs, Mapping) or set(policy_kwargs) - set(POLICY_KWARGS):
        raise ValueError(f"{agent} option policy_kwargs may only set {', '.join(POLICY_KWARGS)}; "
                         f"got {policy_kwargs!r}")
    for net_arch in (hyperparameters.get("net_arch"), policy_kwargs.get("net_arch")):
        if isinstance(net_arch, Mapping):
            if set(net_arch) - {"pi", "vf", "qf"}:
                raise ValueError(f"{agent} option net_arch may map only pi, vf, qf; got {net_arch!r}")
            for key, widths in net_arch.items():
                check_widths(f"{agent} option net_arch[{key!r}]", widths, MAX_HIDDEN_WIDTH, MAX_HIDDEN_LAYERS)
        elif net_arch is not None:
            check_widths(f"{agent} option net_arch", net_arch, MAX_HIDDEN_WIDTH, MAX_HIDDEN_LAYERS)
    n_envs = check_int(f"{agent} n_envs", n_envs, 1, MAX_N_ENVS)
    if "n_steps" in hyperparameters:
        check_int(f"{agent} option n_steps", hyperparameters["n_steps"], 1, MAX_ROLLOUT // n_envs)
    if "batch_size" in hyperparameters:
        check_int(f"{agent} option batch_size", hyperparameters["batch_size"], 1, MAX_ROLLOUT)
    if "buffer_size" in hyperparameters:
        check_int(f"{agent} option buffer_size", hyperparameters["buffer_size"], 1, MAX_BUFFER_SIZE)
    if options.get("n_qubits") is not None and options["n_qubits"] not in SUPPORTED_N_QUBITS:
        raise ValueError(f"{agent} option n_qubits must be one of {', '.join(map(str, SUPPORTED_N_QUBITS))}; "
                         f"got {options['n_qubits']!r}")


def _retrain_hint(name: str, size: Any) -> str:
    size_text = ",".join(map(str, size)) if size else "M,L,K,tau_p"
    return f"retrain it: python train.py --agent {name} --sizes {size_text}"



class RLAgent(LearnableAgent):
    """An SB3 algorithm behind the agent interface.

    Args:
        config: the system size the agent is (or will be) trained for.
        seed: seed of the policy initialisation, the training snapshots and the validation set.
        device: torch device of the policy; ``"auto"`` keeps MLP policies on the CPU (SB3
            runs them faster there) and puts quantum feature extractors on CUDA when available.
        loss: accepted and ignored (the harness passes the neural agents' loss); RL agents
            train on the environment's reward.
        **options: keyword arguments of the SB3 algorithm overriding :attr:`hyperparameters`
            (``learning_rate``, ``n_steps``, ``batch_size``, ``gamma``, ``ent_coef``, ...;
            ``net_arch`` goes into ``policy_kwargs``), plus agent options (``reward_mode`` for
            ``dqn``; ``n_qubits``, ``share``, ``readout``, ``backend`` for ``ppo-hqcnn``).
            Saved in ``config.json``, so they must be JSON values; checked by
            :func:`check_rl_options` (``ValueError`` naming an unknown or out-of-bounds one).
    """

    name: ClassVar[str] = "rl"
    run_kind: ClassVar[str | None] = "rl"
    """runs are ``rl-seed<seed>`` (``rl-<objective>-seed<seed>``): SB3 agents have no loss"""
    settings_class: ClassVar[type | None] = RLBudget
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
        self.device = self.resolve_device(device)
        self.options = dict(options)
        self.model: BaseAlgorithm | None = None
        self.meta: dict[str, Any] = {}
        self.built_hyperparameters: dict[str, Any] = {}
        """the SB3 keywords the model was built with (what ``config.json`` stores)"""
        check_rl_options(self.name, self.algorithm, self.algorithm_options(), self.options, 1)

    # ------------------------------------------------------------ protocol
    @classmethod
    def has_checkpoint(cls, directory: str | Path) -> bool:
        """Whether ``directory`` holds a finished model in cfpilot's format (``config.json`` +
        ``policy.pt``); an old SB3 ``model.zip`` is none (it would be retrained)."""
        return (Path(directory) / CONFIG_JSON).exists() and (Path(directory) / POLICY_PT).exists()

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

    def _algorithm_kwargs(self, hyperparameters: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(hyperparameters)
        policy_kwargs = dict(kwargs.pop("policy_kwargs", {}) or {})
        if "net_arch" in kwargs:
            policy_kwargs["net_arch"] = kwargs.pop("net_arch")
        policy_kwargs.update(self._policy_kwargs())
        if policy_kwargs:
            kwargs["policy_kwargs"] = policy_kwargs
        return kwargs

    def _policy_kwargs(self) -> dict[str, Any]:
        return {}

    def _hidden_widths(self, hyperparameters: dict[str, Any]) -> dict[str, list[int]]:
        """The policy's fully connected networks (their ``state_dict`` prefixes) and the hidden widths
        ``net_arch`` gives each (``{}``: SB3's default)."""
        net_arch = self._algorithm_kwargs(hyperparameters).get("policy_kwargs", {}).get("net_arch")
        if net_arch is None:
            return {}
        if self.algorithm == "DQN":
            widths = list(net_arch.get("qf", [])) if isinstance(net_arch, Mapping) else list(net_arch)
            return {"q_net.q_net": widths, "q_net_target.q_net": widths}
        if isinstance(net_arch, Mapping):
            return {"mlp_extractor.policy_net": list(net_arch.get("pi", [])),
                    "mlp_extractor.value_net": list(net_arch.get("vf", []))}
        return {"mlp_extractor.policy_net": list(net_arch), "mlp_extractor.value_net": list(net_arch)}

    def check_policy_size(self, cfg: SystemConfig, hyperparameters: dict[str, Any], spaces: Any) -> None:
        """``ValueError`` when the policy ``hyperparameters`` ask for at ``cfg`` would have more than
        :data:`agents.models.MAX_PARAMETERS` parameters (counted from ``net_arch`` on the observation and
        action ``spaces``, an upper bound for a features extractor), before anything is allocated."""
        n_in = int(np.prod(spaces.observation_space.shape))
        action = spaces.action_space
        n_out = int(np.sum(action.nvec)) if hasattr(action, "nvec") else int(action.n)
        nets = self._hidden_widths(hyperparameters)
        if self.algorithm == "DQN":
            count = sum(mlp_parameter_count([n_in, *widths, n_out]) for widths in nets.values())
        else:
            pi, vf = nets.get("mlp_extractor.policy_net", []), nets.get("mlp_extractor.value_net", [])
            count = mlp_parameter_count([n_in, *pi, n_out]) + mlp_parameter_count([n_in, *vf, 1])
        check_parameter_count(self.name, cfg, count)

    def _check_widths(self, state: dict[str, Any], hyperparameters: dict[str, Any], path: Path,
                      config_path: Path) -> None:
        """``ValueError`` unless the layers of ``state`` (a ``policy.pt``) have the widths ``net_arch`` asks for."""
        for prefix, widths in self._hidden_widths(hyperparameters).items():
            layers = sorted((int(k[len(prefix) + 1:-len(".weight")]), v) for k, v in state.items()
                            if k.startswith(prefix + ".") and k.endswith(".weight")
                            and k[len(prefix) + 1:-len(".weight")].isdigit())
            held = [int(v.shape[0]) for _, v in layers if isinstance(v, torch.Tensor) and v.dim() == 2]
            if self.algorithm == "DQN":
                held = held[:-1]  # the q-network's last layer is its output
            if held != widths:
                raise ValueError(f"{path} does not fit the model of {config_path}: net_arch asks for {prefix} "
                                 f"widths {widths}, {path.name} holds {held}")

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
        hyperparameters = self.algorithm_options()
        check_rl_options(self.name, self.algorithm, hyperparameters, self.options, n_envs)
        self.check_policy_size(cfg, hyperparameters, SpacesVecEnv(1, cfg, self.sequential))
        env = make_vec_env(cfg, n_envs, seed=self.seed, kind=vec_env, sequential=self.sequential,
                           reward_scaling=reward_scaling,
                           reward_mode=self.options.get("reward_mode", "final"))
        set_random_seed(self.seed)
        self._build(cfg, env, hyperparameters, tensorboard_log)
        return self

    def resolve_device(self, device: str) -> str:
        """The device the policy runs on (see ``device`` in the class doc)."""
        return "cpu" if device == "auto" and not self.gpu_worthy else check_device(device)

    gpu_worthy: ClassVar[bool] = False
    """``device="auto"`` puts this agent's policy on CUDA (MLP policies: no, SB3 runs them faster on the CPU)"""

    def _build(self, cfg: SystemConfig, env: Any, hyperparameters: dict[str, Any],
               tensorboard_log: str | Path | None = None) -> None:
        """The SB3 model on ``env`` with ``hyperparameters`` (already checked by :func:`check_rl_options`)."""
        self.model = _ALGORITHMS[self.algorithm]("MlpPolicy", env, device=self.device, verbose=0,
                                                 tensorboard_log=None if tensorboard_log is None
                                                 else str(tensorboard_log),
                                                 **self._algorithm_kwargs(hyperparameters))
        self.model.action_space.seed(self.seed)
        self.built_hyperparameters = dict(hyperparameters)
        self.config = cfg

    # ------------------------------------------------------------ training
    def fit(self, config: SystemConfig | None = None, *, total_timesteps: int | None = None,
            runs_dir: str | Path = "runs", progress: bool = True, n_envs: int | None = None,
            reward_scaling: str | None = None, vec_env: str | None = None,
            val_snapshots: int = VALIDATION_SNAPSHOTS, val_every: int | None = None,
            save: bool = True, threads: int | None = 1) -> dict[str, Any]:
        """Train from scratch with SB3's ``learn``; save into :meth:`run_dir` at the end.

        While it trains, the policy at every validation is saved (as data, like the final
        model) into ``run_dir/checkpoint/``; Ctrl-C prints where that checkpoint is (load it with
        :meth:`load`) and re-raises, so an interrupted run loses at most one validation interval.
        SB3 training does not resume: a new ``fit`` starts from scratch.

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
            save: write the model into the run folder at the end (and the checkpoints on the way).
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
        settings = self._run_settings(cfg, total_timesteps, n_envs, reward_scaling, vec_env, val_snapshots)
        run_dir = self.run_dir(runs_dir, cfg, self.seed)
        finished = self._finished_run(run_dir, settings, cfg) if save else None
        if finished is not None:
            return finished
        run_dir.mkdir(parents=True, exist_ok=True)
        with thread_limits(threads, threads):
            return self._fit(cfg, settings, run_dir, progress, val_every, save)

    def _run_settings(self, cfg: SystemConfig, total_timesteps: int | None = None, n_envs: int | None = None,
                      reward_scaling: str | None = None, vec_env: str | None = None,
                      val_snapshots: int = VALIDATION_SNAPSHOTS) -> dict[str, Any]:
        """What a :meth:`fit` computes (its ``config.json``'s ``train``), the :attr:`default_budget` filling
        what is not given; ``ValueError`` for a budget below one step."""
        budget = self.default_budget
        total = budget["total_timesteps"] if total_timesteps is None else int(total_timesteps)
        if total < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total}")
        return {"agent": self.name, "algorithm": self.algorithm, "size": list(cfg.size), "seed": self.seed,
                "total_timesteps": total, "n_envs": budget["n_envs"] if n_envs is None else int(n_envs),
                "reward_scaling": budget["reward_scaling"] if reward_scaling is None else reward_scaling,
                "vec_env": budget["vec_env"] if vec_env is None else vec_env, "val_snapshots": int(val_snapshots),
                "hyperparameters": self.algorithm_options(), "options": dict(self.options)}

    def check_fit(self, config: SystemConfig, *, runs_dir: str | Path = "runs", **settings: Any) -> None:
        """``ValueError`` if :meth:`fit` would be refused: a budget below one step, or a run folder whose
        finished model was trained with other settings (found before any training)."""
        known = ("total_timesteps", "n_envs", "reward_scaling", "vec_env", "val_snapshots")
        run = self._run_settings(config, **{k: v for k, v in settings.items() if k in known})
        self._finished_run(self.run_dir(runs_dir, config, self.seed), run, config, load=False)

    def _finished_run(self, run_dir: Path, settings: dict[str, Any], cfg: SystemConfig,
                      load: bool = True) -> dict[str, Any] | None:
        """The summary of the finished model in ``run_dir`` if it was trained with ``settings`` (loaded into
        this agent: training again would change nothing), None if there is none; ``ValueError`` if it
        was trained with other settings (it is never silently replaced)."""
        if not self.has_checkpoint(run_dir):
            return None
        try:
            saved = json.loads((run_dir / CONFIG_JSON).read_text()).get("train")
        except (OSError, ValueError, AttributeError):
            saved = None
        changed = differences(saved if isinstance(saved, dict) else {}, json.loads(json.dumps(settings)))
        if changed:
            raise other_settings(run_dir, changed)
        if not load:
            return None
        trained = type(self).load(run_dir, self.device, cfg)
        self.model, self.config, self.meta = trained.model, trained.config, trained.meta
        self.built_hyperparameters = trained.built_hyperparameters
        print(f"{self.name} at {cfg.size} is already trained with these settings in {run_dir}: nothing to do")
        final = self.meta.get("final_metrics", {})
        return {"run_dir": str(run_dir), "train_time_s": self.meta.get("train_time_s") or 0.0,
                "total_timesteps": settings["total_timesteps"], "parameters": self.parameter_count(),
                "final": {k: v for k, v in final.items() if k.startswith("val/")}, "already_trained": True}

    def _learn(self, cfg: SystemConfig, settings: dict[str, Any], run_dir: Path, progress: bool,
               val_every: int | None, save: bool, started: float, saved_at: list[int],
               built: list[BaseAlgorithm]) -> _Validation:
        """Build the model and its environments (into ``built``) and run SB3's ``learn`` with the validation
        callback, checkpointing at every validation when ``save`` (their steps into ``saved_at``)."""
        total = settings["total_timesteps"]
        self.initialise(cfg, n_envs=settings["n_envs"], reward_scaling=settings["reward_scaling"],
                        vec_env=settings["vec_env"], tensorboard_log=run_dir)
        assert self.model is not None
        built.append(self.model)
        val = model_of(cfg).draw(stream_rng(self.seed, VALIDATION_STREAM, *cfg.size),
                                 (int(settings["val_snapshots"]),))
        bar = _Progress(total, f"{self.name} {size_slug(cfg.size)}") if progress else None
        checkpoint_dir = run_dir / CHECKPOINT_DIR

        def checkpoint(timesteps: int) -> None:
            self._write(checkpoint_dir, {"train": settings, "timesteps_done": timesteps,
                                         "train_time_s": time.perf_counter() - started,
                                         "val_history": validation.history})
            saved_at.append(timesteps)

        validation = _Validation(self, val, val_every or max(total // 10, 1),
                                 {k: json.dumps(v) for k, v in settings.items()}, bar,
                                 on_evaluate=checkpoint if save else None)
        callbacks = [validation] if bar is None else [bar, validation]
        try:
            self.model.learn(total_timesteps=total, callback=callbacks, tb_log_name=self.name,
                             progress_bar=False)
        finally:
            self.model.get_env().close()
        return validation

    def _fit(self, cfg: SystemConfig, settings: dict[str, Any], run_dir: Path, progress: bool,
             val_every: int | None, save: bool) -> dict[str, Any]:
        started = time.perf_counter()
        total, n_envs, reward_scaling, vec_env = (
            settings[k] for k in ("total_timesteps", "n_envs", "reward_scaling", "vec_env"))
        checkpoint_dir = run_dir / CHECKPOINT_DIR
        saved_at: list[int] = []
        built: list[BaseAlgorithm] = []
        try:
            validation = self._learn(cfg, settings, run_dir, progress, val_every, save, started, saved_at, built)
        except KeyboardInterrupt:  # from the first moment: building the model and its environments counts
            where = (f"the last checkpoint (step {saved_at[-1]}) is in {checkpoint_dir}: "
                     f"{type(self).__name__}.load('{checkpoint_dir}') loads it" if saved_at
                     else "no checkpoint was written yet (none before the first validation)")
            print(f"\ninterrupted at step {built[0].num_timesteps if built else 0} of {total}: {where}; SB3 "
                  f"training does not resume, {_retrain_hint(self.name, cfg.size)}", flush=True)
            raise
        train_time = time.perf_counter() - started
        final = validation.history[-1]
        self.meta = {"train_time_s": train_time, "train": settings, "device": self.device,
                     "final_metrics": {k: v for k, v in final.items() if k != "timesteps"},
                     "initial_val_sum_rate_mbps": validation.history[0]["val/sum_rate_mbps"],
                     "val_master_ap_sum_rate_mbps": validation.master}
        if save:
            self.save(run_dir)
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        return {"run_dir": str(run_dir), "train_time_s": train_time, "total_timesteps": total,
                "n_envs": n_envs, "device": self.device,
                "reward_scaling": reward_scaling, "vec_env": vec_env,
                "initial_val_sum_rate_mbps": validation.history[0]["val/sum_rate_mbps"],
                "val_sum_rate_mbps": final["val/sum_rate_mbps"],
                "val_ratio_to_master_ap": final["val/ratio_to_master_ap"],
                "val_master_ap_sum_rate_mbps": validation.master,
                "val_history": validation.history, "parameters": self.parameter_count(),
                "final": {k: v for k, v in final.items() if k.startswith("val/")}}

    # ------------------------------------------------------------ checkpoints
    def save(self, directory: str | Path) -> Path:
        """``policy.pt`` (the SB3 policy's ``state_dict``: tensors only) + ``config.json`` (agent,
        algorithm, system, options, SB3 hyperparameters, ``n_envs``, seed, training summary,
        versions: plain JSON) into ``directory``, each written atomically; an old ``model.zip``
        there is removed. Returns ``directory``."""
        directory = Path(directory)
        self._write(directory, self.meta)
        (directory / MODEL_ZIP).unlink(missing_ok=True)
        return directory

    def _write(self, directory: Path, meta: dict[str, Any]) -> None:
        """``policy.pt`` then ``config.json`` into ``directory`` (the JSON is built first, so
        an option that is not JSON fails before anything is written)."""
        import stable_baselines3

        if self.model is None or self.config is None:
            raise ValueError(f"{self.name} has no trained model to save")
        meta = {**meta, "format": CHECKPOINT_FORMAT, "agent": self.name, "algorithm": self.algorithm,
                "system": dataclasses.asdict(self.config), "options": self.options, "seed": self.seed,
                "hyperparameters": self.built_hyperparameters, "n_envs": int(self.model.n_envs),
                "train_time_s": meta.get("train_time_s"), "parameters": self.parameter_count(),
                "cfpilot_version": __version__, "stable_baselines3_version": stable_baselines3.__version__}
        text = json.dumps(meta, indent=1).encode()
        state = {k: v.detach().cpu() for k, v in self.model.policy.state_dict().items()}
        atomic_write_bytes(Path(directory) / POLICY_PT, lambda f: torch.save(state, f))
        atomic_write_bytes(Path(directory) / CONFIG_JSON, lambda f: f.write(text))

    @classmethod
    def _legacy_identity(cls, directory: Path, meta: dict[str, Any]) -> tuple[str, Any]:
        """Agent name and size of an old-format folder: from its ``config.json``, else from the
        run-folder layout ``<agent>/<M>-<L>-<K>-<tau_p>/rl-seed<seed>``."""
        names = {c.name for c in RL_AGENTS}
        system = meta.get("system") if isinstance(meta.get("system"), dict) else {}
        size: Any = [system.get(k) for k in ("M", "L", "K", "tau_p")] if system else None
        if size is None and directory.parent.name.count("-") == 3 and directory.parent.name.replace("-", "").isdigit():
            size = directory.parent.name.split("-")
        name = meta.get("agent") if meta.get("agent") in names else cls.name
        if name not in names and directory.parent.parent.name in names:
            name = directory.parent.parent.name
        return (name if name in names else "NAME"), size

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu",
             config: SystemConfig | None = None) -> "RLAgent":
        """Rebuild an agent saved by :meth:`save`: the SB3 model built from ``config.json`` (as
        :meth:`initialise` builds it, on a :class:`agents.rl.envs.SpacesVecEnv`, no training),
        then the policy's ``state_dict`` from ``policy.pt`` with ``torch.load(weights_only=True)``;
        nothing is unpickled. ``ValueError`` if ``config`` is given and its (M, L, K, tau_p)
        differs from the saved one, the folder holds another agent, options out of the bounds
        of :func:`check_rl_options`, a ``policy.pt`` that is not a plain state dict of that
        model, or only an old SB3 ``model.zip`` (never opened; retrain)."""
        directory = Path(directory)
        meta: dict[str, Any] = {}
        if (directory / CONFIG_JSON).exists():
            meta = json.loads((directory / CONFIG_JSON).read_text())
            if not isinstance(meta, dict):
                raise ValueError(f"{directory / CONFIG_JSON} is not a JSON object")
        if not (directory / POLICY_PT).exists():
            if (directory / MODEL_ZIP).exists():
                name, size = cls._legacy_identity(directory, meta)
                raise ValueError(f"{directory} holds an old-format Stable-Baselines3 {MODEL_ZIP} (a pickle, "
                                 f"not loaded for safety): {_retrain_hint(name, size)}")
            missing = CONFIG_JSON if not meta else POLICY_PT
            raise FileNotFoundError(f"no {missing} in {directory}")
        if not meta:
            raise FileNotFoundError(f"no {CONFIG_JSON} in {directory}")
        saved = SystemConfig(**meta["system"])
        if config is not None and config.size != saved.size:
            raise ValueError(f"checkpoint {directory} was trained for (M, L, K, tau_p) = {saved.size}, "
                             f"not {config.size}")
        if config is not None and config.objective != saved.objective:  # saved before objectives: "sum"
            raise ValueError(f"checkpoint {directory} was trained for the {saved.objective!r} objective, "
                             f"not {config.objective!r}")
        if cls is not RLAgent and meta.get("agent") != cls.name:
            raise ValueError(f"{directory} holds a {meta.get('agent')!r} model, not {cls.name!r}")
        agent_cls = {c.name: c for c in RL_AGENTS}.get(meta.get("agent"))
        if agent_cls is None or meta.get("algorithm") != agent_cls.algorithm:
            raise ValueError(f"{directory} holds a {meta.get('agent')!r} model, not an RL agent")
        options, hyperparameters, n_envs = meta.get("options"), meta.get("hyperparameters"), meta.get("n_envs")
        check_rl_options(agent_cls.name, agent_cls.algorithm, hyperparameters, options, n_envs)
        agent = agent_cls(config=saved, seed=check_int("seed", meta.get("seed"), 0, 2**63 - 1), device=device,
                          **options)
        spaces = SpacesVecEnv(n_envs, saved, agent_cls.sequential)
        agent.check_policy_size(saved, hyperparameters, spaces)
        state = read_state(directory / POLICY_PT)  # read and checked against config.json before building
        check_finite(state, directory / POLICY_PT)
        agent._check_widths(state, hyperparameters, directory / POLICY_PT, directory / CONFIG_JSON)
        agent._build(saved, spaces, dict(hyperparameters))
        assert agent.model is not None
        try:
            agent.model.policy.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise ValueError(f"{directory / POLICY_PT} does not fit the model of {directory / CONFIG_JSON}: "
                             f"{' '.join(str(err).split())[:300]}") from None
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
    gpu_worthy = True

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

