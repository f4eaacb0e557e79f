"""Torch-free option records the command lines read (their ``--help`` loads no model):
:class:`ModelOptions` (the neural models' constructor options, :func:`agents.models.build_model`) and
:class:`RLBudget` (the Stable-Baselines3 agents' training budget, :meth:`agents.rl.RLAgent.fit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelOptions:
    """Constructor options of the models that a command line sets (``None``: the model's default).
    :func:`build_model` says which model takes which (:data:`MODEL_OPTIONS`)."""

    n_qubits: int | None = None
    """HQCNN qubits: 4, 8 or 16 (hqcnn, hqcnn-hur, hqcnn-ar, ppo-hqcnn; default 8)"""
    share: str | None = None
    """HQCNN parameter sharing: level (the paper's text), all (its abstract) or block (Hur et al.)"""
    readout: str | None = None
    """HQCNN readout: all (Pauli-Z on every wire) or final (the last pooled qubit)"""
    backend: str | None = None
    """HQCNN simulator: torch (batched statevector) or pennylane (default.qubit TorchLayer)"""
    hidden: tuple[int, ...] | None = None
    """MLP hidden widths (default: one layer sized to hqcnn's parameter count)"""

    def given(self) -> dict[str, Any]:
        """The options that were set, as :func:`build_model` keywords."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class RLBudget:
    """The training budget :meth:`RLAgent.fit` takes (``None``: the agent's :attr:`~RLAgent.default_budget`)."""

    total_timesteps: int | None = None
    """environment steps (for dqn a step is one user, an episode K steps)"""
    reward_scaling: str | None = None
    """reward: mbps (the sum rate) or master-ap (divided by master-AP's on the same snapshot)"""
    n_envs: int | None = None
    """environments stepped at once"""

