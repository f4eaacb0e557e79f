"""Reinforcement-learning agents: Stable-Baselines3 on ``CellFreePilot-v0`` and its sequential view.

The only package of cfpilot that imports ``stable_baselines3``, besides the HQCNN features
extractor :mod:`agents.models.sb3` (reached through :mod:`agents.registry`, so ``import agents``
stays light). :mod:`agents.rl.envs` holds the training environments, :mod:`agents.rl.callbacks`
the SB3 callbacks, :mod:`agents.rl.zoo` the agents.

Agents (all :class:`agents.base.LearnableAgent` s, deterministic actions at evaluation):

* ``ppo`` / ``a2c``: SB3 PPO / A2C on the one-step ``CellFreePilot-v0`` (one snapshot, one
  ``MultiDiscrete([tau_p] * K)`` action per episode), ``MlpPolicy`` on the flat, normalised
  fading of :class:`cfenv.wrappers.FlattenFadingObservation`.
* ``ppo-hqcnn``: PPO whose features extractor is the HQCNN's quantum circuit
  (:class:`HQCNNExtractor`: FC ``M K -> n`` angles, :class:`agents.models.quantum.QCNNLayer`, its
  ``n`` Pauli-Z expectation values as features); the action head is one linear layer from
  those features to the ``K tau_p`` logits, so the policy is FC -> QCNN -> FC like ``hqcnn``.
* ``dqn``: SB3 DQN on ``CellFreePilotSequential-v0`` (one user per step,
  :class:`cfenv.sequential.CellFreePilotSequentialEnv`); assigning a batch steps the K users
  over the whole batch at once.

Training environments. SB3 2.9 does not accept a Gymnasium ``VectorEnv``: ``PPO(...,
gym.make_vec("CellFreePilot-v0", num_envs=N))`` raises ``ValueError`` ("not a Gymnasium
environment"). :class:`BatchedPilotVecEnv` is a thin SB3 ``VecEnv`` over
:class:`cfenv.env.CellFreePilotVectorEnv` that draws and scores all N snapshots with one
batched call per step; ``fit(vec_env="dummy"|"subproc")`` uses SB3's ``DummyVecEnv`` /
``SubprocVecEnv`` of N single environments instead (far slower: docs/rl.md). The
sequential DQN agent uses ``DummyVecEnv``.

Reward scaling (``fit(reward_scaling=...)``):

The reward is the environments' ``config.objective`` (``train.py --objective``): the sum rate
(default) or the minimum user rate in Mbit/s, or sum_k ln(R_k / 1 Mbit/s) in nats.

* ``"mbps"``: the raw objective in Mbit/s (what the environments return; nats for "proportional");
* ``"master-ap"``: the objective divided by master-AP's (:func:`agents.heuristics.master_ap_pilots`)
  on the same snapshot, a dimensionless ratio near 1. Raw rates vary by tens of Mbit/s
  from snapshot to snapshot, more than any assignment changes them; the ratio removes
  most of that variance (for the sequential env every step's reward is divided by the
  episode's master-AP sum rate, so the increments add up to the ratio).

Episode statistics logged by SB3 (``rollout/ep_rew_mean``) are always in Mbit/s.

Seeds: the policy initialisation comes from ``set_random_seed(seed)``; training
snapshots from :func:`agents.base.stream_rng` ``(seed, TRAIN_STREAM, M, L, K, tau_p[, env index])``;
the validation sum rate logged during training is measured on 256 fixed snapshots from
``(seed, VALIDATION_STREAM, M, L, K, tau_p)``, the neural trainer's validation set.

Run folders: ``runs/<agent>/<M>-<L>-<K>-<tau_p>/rl-seed<seed>/`` with ``policy.pt`` (the SB3
policy's ``state_dict``, loaded with ``torch.load(weights_only=True)``), ``config.json``
(agent, algorithm, system, options, SB3 hyperparameters, ``n_envs``, training settings,
metrics: plain JSON; what rebuilds the model) and the TensorBoard events of SB3's
``tensorboard_log`` under ``<agent>_<n>/`` (SB3's ``rollout/``, ``train/``, ``time/`` scalars
plus ``val/sum_rate_mbps``, ``val/ratio_to_master_ap``, ``val/distinct_assignments``). While
``fit`` runs, ``checkpoint/`` holds the same two files for the policy at the latest
validation (what a Ctrl-C leaves). Checkpoints are data: SB3's own ``model.zip`` (a pickle
that runs code when loaded) is never read; a folder with only one is refused (retrain).
"""

from __future__ import annotations

try:
    import stable_baselines3  # noqa: F401
except ImportError as err:  # pragma: no cover
    raise ImportError("the RL agents need Stable-Baselines3: pip install 'stable-baselines3>=2.3'") from err

from agents.models.sb3 import HQCNNExtractor
from agents.rl.envs import (
    REWARD_SCALINGS,
    VEC_ENVS,
    BatchedPilotVecEnv,
    RelativeReward,
    SpacesVecEnv,
    flat_observation,
    make_vec_env,
    master_ap_sum_rate_mbps,
)
from agents.rl.zoo import (
    CHECKPOINT_DIR,
    CONFIG_JSON,
    MAX_BUFFER_SIZE,
    MAX_N_ENVS,
    MAX_ROLLOUT,
    MODEL_ZIP,
    POLICY_PT,
    RL_AGENTS,
    VALIDATION_SNAPSHOTS,
    A2CAgent,
    DQNAgent,
    PPOAgent,
    PPOHQCNNAgent,
    RLAgent,
    RLBudget,
    check_rl_options,
)

__all__ = ["CHECKPOINT_DIR", "CONFIG_JSON", "MAX_BUFFER_SIZE", "MAX_N_ENVS", "MAX_ROLLOUT", "MODEL_ZIP", "POLICY_PT",
           "REWARD_SCALINGS", "RL_AGENTS", "VALIDATION_SNAPSHOTS", "VEC_ENVS",
           "A2CAgent", "BatchedPilotVecEnv", "DQNAgent", "HQCNNExtractor", "PPOAgent", "PPOHQCNNAgent",
           "RLAgent", "RLBudget", "RelativeReward", "SpacesVecEnv", "check_rl_options", "flat_observation",
           "make_vec_env", "master_ap_sum_rate_mbps"]
