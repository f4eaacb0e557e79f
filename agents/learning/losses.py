"""Training losses: supervised (docs/model.md eq. (6.6)), unsupervised (eq. (6.7)) and
REINFORCE with a greedy-rollout baseline (eq. (6.8)), each for ``config.objective``: the
unsupervised loss maximises the relaxed objective (the model's ``differentiable`` path, for the paper
model :func:`cfenv.rates.relaxed_objective`), REINFORCE the exact one (the model's ``objective``)."""

from __future__ import annotations

import numpy as np
import torch

from agents.models import AssignmentModel, PilotModel
from cfenv.config import SystemConfig
from cfenv.channel import as_snapshot
from cfenv.models import model_of

PILOT_MODEL_LOSSES = ("supervised", "unsupervised")
"""what a model emitting K x tau_p pilot logits (:class:`PilotModel`) trains with"""
POLICY_LOSSES = ("reinforce", "supervised")
"""what an autoregressive policy trains with (supervised: teacher-forced imitation)"""


def loss_refusal(name: str, pilot_logits: bool, loss: str) -> str | None:
    """Why model ``name`` (``pilot_logits``: a :class:`PilotModel`) cannot train with ``loss``; None if it can."""
    losses = PILOT_MODEL_LOSSES if pilot_logits else POLICY_LOSSES
    return None if loss in losses else f"{name} trains with {losses[0]!r} or {losses[1]!r}, not {loss!r}"


def check_loss(name: str, loss: str) -> None:
    """``ValueError`` if the registered model ``name`` cannot train with ``loss`` (an unknown model passes:
    building it names the problem)."""
    from agents.models import MODELS

    reason = loss_refusal(name, MODELS[name].labels, loss) if name in MODELS else None
    if reason:
        raise ValueError(reason)


def model_refusal(config: SystemConfig, loss: str) -> str | None:
    """Why the system model of ``config`` cannot train ``loss`` (the unsupervised loss needs the model's
    differentiable path), or ``None``."""
    if loss == "unsupervised" and model_of(config).differentiable is None:
        return (f"the unsupervised loss needs relaxed (differentiable) rates, which model {config.model!r} "
                "does not offer: train with another loss")
    return None


def unsupervised_loss(logits: torch.Tensor, beta: torch.Tensor, config: SystemConfig) -> torch.Tensor:
    """Negative mean relaxed ``config.objective`` of softmax(logits) (docs/model.md eq. (6.7)):
    the relaxed sum rate or (value-exact smooth) minimum rate in Mbit/s, or the relaxed
    sum_k ln(R~_k / 1 Mbit/s) in nats."""
    relaxed = model_of(config).differentiable
    if relaxed is None:
        raise ValueError(model_refusal(config, "unsupervised"))
    q = torch.softmax(logits.to(torch.float64), dim=-1)
    return -config.objective.in_reward_units(relaxed.relaxed_objective(beta, q).mean())


def reinforce_advantage(reward: np.ndarray, baseline: np.ndarray, config: SystemConfig) -> np.ndarray:
    """The advantage of sampled assignments over the greedy-rollout baseline (docs/model.md eq. (6.8)):
    relative, (R - R_g) / R_g, for the rates ("sum", "min", both > 0); for "proportional", whose
    value in nats can be near 0 or negative, the difference per user (R - R_g) / K, which is
    already a mean relative rate change (d ln R = dR / R)."""
    return config.objective.advantage(reward, baseline, config.K)


def _rewards(beta: torch.Tensor, beta_np: np.ndarray, pilots: torch.Tensor, config: SystemConfig,
             repeats: int = 1) -> np.ndarray | torch.Tensor:
    """Exact ``config.objective`` of ``(B * repeats, K)`` assignments of ``(B, M, K)`` snapshots: on a
    CUDA model by the torch rate path on the device (no round trip to the CPU per batch); on the
    CPU by the compiled kernel (numpy)."""
    model = model_of(config)
    if pilots.device.type == "cuda" and model.differentiable is not None:
        return model.differentiable.objective(beta.repeat_interleave(repeats, 0), pilots)
    return model.objective(as_snapshot(np.repeat(beta_np, repeats, axis=0)), pilots.cpu().numpy())


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of per-user pilot logits against canonical labels (docs/model.md eq. (6.6))."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def batch_loss(model: AssignmentModel, loss: str, x: torch.Tensor, beta: torch.Tensor, beta_np: np.ndarray,
               labels: torch.Tensor | None, config: SystemConfig, generator: torch.Generator,
               samples: int = 1, baseline: str = "greedy") -> torch.Tensor:
    """The training loss of one batch, for the model kind and loss name."""
    reason = loss_refusal(type(model).__name__, isinstance(model, PilotModel), loss)
    if reason:
        raise ValueError(reason)
    if isinstance(model, PilotModel):
        if loss == "unsupervised":
            return unsupervised_loss(model(x), beta, config)
        return supervised_loss(model(x), labels)
    if loss == "supervised":
        _, log_prob, _ = model.decode(x, config.tau_p, "teacher", actions=labels, system=config)
        return -log_prob.mean() / config.K
    if baseline == "greedy":
        with torch.no_grad():
            greedy_pilots, _, _ = model.decode(x, config.tau_p, "greedy", system=config)
        greedy = _rewards(beta, beta_np, greedy_pilots, config)
        base = (greedy.repeat_interleave(samples, 0) if isinstance(greedy, torch.Tensor)
                else np.repeat(greedy, samples))
    sampled, log_prob, _ = model.decode(x.repeat_interleave(samples, 0), config.tau_p, "sample",
                                        generator=generator, system=config)
    reward = _rewards(beta, beta_np, sampled, config, samples)
    if baseline == "mean":  # shared baseline: the mean of the snapshot's samples (POMO)
        base = reward.reshape(-1, samples).mean(1)
        base = (base.repeat_interleave(samples, 0) if isinstance(base, torch.Tensor)
                else np.repeat(base, samples))
    advantage = torch.as_tensor(reinforce_advantage(reward, base, config), dtype=log_prob.dtype,
                                device=log_prob.device)
    return -(advantage * log_prob).mean()


