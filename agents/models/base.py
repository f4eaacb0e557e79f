"""The base classes of every trainable pilot-assignment model.

A model maps a batch of fading matrices to assignments. :class:`PilotModel` s emit
pilot logits ``beta_db (B, M, K) float -> logits (B, K, tau_p)`` (softmax per user gives
pilot probabilities, argmax per user the assignment); their input is beta in dB,
standardised with a mean and a standard deviation computed on the training set (scalars:
APs and users are exchangeable, so one statistic fits every entry), kept as buffers so
that they travel in the ``state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cfenv.config import SystemConfig


class AssignmentModel(nn.Module):
    """Anything trainable that turns a batch of fading matrices (dB) into assignments."""

    size_generalisable = False
    """True if one trained model runs at any (M, K, tau_p)"""

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters: classical, quantum and total (the paper's Table I)."""
        quantum = sum(p.numel() for n, p in self.named_parameters() if ".quantum." in f".{n}")
        total = sum(p.numel() for p in self.parameters())
        return {"classical": total - quantum, "quantum": quantum, "total": total}

    def greedy(self, beta_db: torch.Tensor, tau_p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic assignments ``(B, K)`` and the mean decision entropy ``(B,)`` [nats]."""
        raise NotImplementedError


class PilotModel(AssignmentModel):
    """Base of the label-emitting models: input standardisation and the (B, K, tau_p) logits."""

    def __init__(self, config: SystemConfig) -> None:
        super().__init__()
        self.M, self.K, self.tau_p = config.M, config.K, config.tau_p
        self.register_buffer("input_mean", torch.zeros(()))
        self.register_buffer("input_std", torch.ones(()))

    def set_normalisation(self, mean: float, std: float) -> None:
        """Store the training set's dB mean and standard deviation."""
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ValueError(f"normalisation needs a finite mean and a positive std, got {mean}, {std}")
        self.input_mean.fill_(mean)
        self.input_std.fill_(std)

    def forward(self, beta_db: torch.Tensor) -> torch.Tensor:
        """``(B, M, K)`` fading in dB -> ``(B, K, tau_p)`` logits."""
        if beta_db.shape[-2:] != (self.M, self.K):
            raise ValueError(f"input must be (B, M, K) = (B, {self.M}, {self.K}), got {tuple(beta_db.shape)}")
        x = (beta_db.to(self.input_mean.dtype) - self.input_mean) / self.input_std
        return self.body(x).reshape(-1, self.K, self.tau_p)

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def greedy(self, beta_db: torch.Tensor, tau_p: int) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(beta_db)
        logp = torch.log_softmax(logits.double(), -1)
        return logits.argmax(-1), -(logp.exp() * logp).sum(-1).mean(-1)
