"""Hybrid quantum-classical models: one FC -> QCNN front end, and the paper's HQCNN on it.

:class:`HybridFrontEnd` (FC to ``n`` angles, the QCNN circuit of
:mod:`agents.models.quantum`, its Pauli-Z expectation values) is the quantum part of
``hqcnn``/``hqcnn-hur`` (:class:`HQCNN`), of ``hqcnn-ar``'s per-decision scorer
(:class:`agents.models.gnn.QuantumScorer`) and of ``ppo-hqcnn``'s features extractor
(:class:`agents.models.sb3.HQCNNExtractor`); docs/model.md §6.2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from agents.models import quantum
from agents.models.base import PilotModel
from cfenv.config import SystemConfig


class HybridFrontEnd(nn.Module):
    """FC ``in_features -> n_qubits`` angles -> QCNN (float64) -> ``out_features`` Pauli-Z values.

    Args:
        in_features: width of the (flattened) input.
        n_qubits, share, readout, backend: :class:`agents.models.quantum.QCNNLayer` options
            (``backend=None``: the quantum module's default).
    """

    def __init__(self, in_features: int, n_qubits: int = 8, share: str = "level", readout: str = "all",
                 backend: str | None = None) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"n_qubits": n_qubits, "share": share, "readout": readout}
        if backend is not None:
            kwargs["backend"] = backend
        self.pre = nn.Linear(in_features, n_qubits)
        self.quantum = quantum.QCNNLayer(**kwargs)
        self.out_features = quantum.output_width(n_qubits, readout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` -> ``(B, out_features)`` expectation values in [-1, 1], ``x``'s dtype."""
        angles = self.pre(x)
        return self.quantum(angles.to(torch.float64)).to(angles.dtype)

    @staticmethod
    def upgrade_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Load-state-dict pre-hook of a module owning ``front``: checkpoints written before the
        front end was its own module name its parameters ``pre.*`` and ``quantum.*``."""
        for key in list(state_dict):
            for old in ("pre.", "quantum."):
                if key.startswith(prefix + old):
                    state_dict[prefix + "front." + key[len(prefix):]] = state_dict.pop(key)


class HQCNN(PilotModel):
    """Hybrid quantum CNN: FC (M K -> n angles) -> QCNN (:mod:`agents.models.quantum`) -> FC (-> K tau_p).

    Args:
        n_qubits: 4, 8 or 16.
        share: ``"level"`` (one parameter set per level, the paper's text), ``"all"`` (one set for
            the circuit, its abstract/Table I) or ``"block"`` (every block its own: Hur et al.).
        readout: ``"all"`` (Z on every wire) or ``"final"`` (Z on the last survivor of pooling).
        backend: ``"torch"`` (batched statevector) or ``"pennylane"`` (TorchLayer, default.qubit).
    """

    def __init__(self, config: SystemConfig, n_qubits: int = 8, share: str = "level", readout: str = "all",
                 backend: str | None = None) -> None:
        super().__init__(config)
        self.front = HybridFrontEnd(config.M * config.K, n_qubits, share, readout, backend)
        self.post = nn.Linear(self.front.out_features, config.K * config.tau_p)
        self.n_qubits, self.share, self.readout = n_qubits, share, readout
        self.backend = self.front.quantum.backend
        self.register_load_state_dict_pre_hook(HybridFrontEnd.upgrade_state_dict)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.front(x.flatten(1)))


def hqcnn_parameter_count(config: SystemConfig, n_qubits: int = 8, share: str = "level",
                          readout: str = "all") -> int:
    """Trainable parameters of :class:`HQCNN` (Table I): FC in, quantum, FC out."""
    width = quantum.output_width(n_qubits, readout)
    n_in, n_out = config.M * config.K, config.K * config.tau_p
    return (n_in + 1) * n_qubits + quantum.count_quantum_parameters(n_qubits, share) + (width + 1) * n_out
