"""The HQCNN circuit as a Stable-Baselines3 features extractor (the policy of ``ppo-hqcnn``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from agents.models import quantum
from agents.models.hybrid import HybridFrontEnd


class HQCNNExtractor(BaseFeaturesExtractor):
    """The HQCNN's hybrid front end as an SB3 features extractor.

    ``(B, M K)`` flat observation -> :class:`agents.models.hybrid.HybridFrontEnd` (FC ->
    ``n_qubits`` angles -> QCNN) -> ``(B, output_width)`` Pauli-Z expectation values in
    [-1, 1], returned as float32 features.

    Args:
        observation_space: the flat ``Box`` of the policy.
        n_qubits, share, readout, backend: :class:`agents.models.quantum.QCNNLayer` options
            (``backend=None``: the quantum module's default).
    """

    def __init__(self, observation_space: gym.spaces.Box, n_qubits: int = 8, share: str = "level",
                 readout: str = "all", backend: str | None = None) -> None:
        super().__init__(observation_space, features_dim=quantum.output_width(n_qubits, readout))
        self.front = HybridFrontEnd(int(np.prod(observation_space.shape)), n_qubits, share, readout, backend)
        self.register_load_state_dict_pre_hook(HybridFrontEnd.upgrade_state_dict)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.front(observations.flatten(1))
