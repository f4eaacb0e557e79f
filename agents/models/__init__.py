"""Neural pilot-assignment models: MLP, light/heavy CNN and the hybrid quantum CNN.

Every model maps a batch of fading matrices to pilot logits:
``beta_db (B, M, K) float -> logits (B, K, tau_p)``; softmax per user gives
pilot probabilities, argmax per user the assignment. The input is beta in dB,
standardised with a mean and a standard deviation computed on the training set
(scalars: APs and users are exchangeable, so one statistic fits every entry),
kept as buffers so that they travel in the ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from cfenv.config import SystemConfig

LABEL_MODELS = ("mlp", "light-cnn", "heavy-cnn", "hqcnn", "hqcnn-hur")
"""models that emit K x tau_p pilot logits"""
MODEL_NAMES = (*LABEL_MODELS, "gnn", "hqcnn-ar")
LIGHT_CNN_CHANNELS = (8, 16)
HEAVY_CNN_CHANNELS = (32, 64)
CNN_KERNEL = 3


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


class MLP(PilotModel):
    """Fully connected: M K -> hidden widths (ReLU) -> K tau_p."""

    def __init__(self, config: SystemConfig, hidden: tuple[int, ...] = (16,)) -> None:
        super().__init__(config)
        widths = [config.M * config.K, *hidden, config.K * config.tau_p]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.hidden = tuple(hidden)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def mlp_width_matching(config: SystemConfig, target_parameters: int) -> int:
    """Width of a one-hidden-layer MLP whose parameter count is closest to the target."""
    n_in, n_out = config.M * config.K, config.K * config.tau_p
    return max(1, round((target_parameters - n_out) / (n_in + 1 + n_out)))


class CNN(PilotModel):
    """Two 3x3 convolutions (ReLU, same padding) on beta as a 1-channel M x K image, then FC."""

    def __init__(self, config: SystemConfig, channels: tuple[int, int] = LIGHT_CNN_CHANNELS) -> None:
        super().__init__(config)
        c1, c2 = channels
        pad = CNN_KERNEL // 2
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, CNN_KERNEL, padding=pad), nn.ReLU(),
            nn.Conv2d(c1, c2, CNN_KERNEL, padding=pad), nn.ReLU(),
        )
        self.head = nn.Linear(c2 * config.M * config.K, config.K * config.tau_p)
        self.channels = tuple(channels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))


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
        from agents.models import quantum

        kwargs: dict[str, Any] = {"n_qubits": n_qubits, "share": share, "readout": readout}
        if backend is not None:
            kwargs["backend"] = backend
        self.pre = nn.Linear(config.M * config.K, n_qubits)
        self.quantum = quantum.QCNNLayer(**kwargs)
        self.post = nn.Linear(quantum.output_width(n_qubits, readout), config.K * config.tau_p)
        self.n_qubits, self.share, self.readout = n_qubits, share, readout
        self.backend = self.quantum.backend

    def body(self, x: torch.Tensor) -> torch.Tensor:
        angles = self.pre(x.flatten(1))
        z = self.quantum(angles.to(torch.float64)).to(angles.dtype)
        return self.post(z)


def hqcnn_parameter_count(config: SystemConfig, n_qubits: int = 8, share: str = "level",
                          readout: str = "all") -> int:
    """Trainable parameters of :class:`HQCNN` (Table I): FC in, quantum, FC out."""
    from agents.models import quantum

    width = quantum.output_width(n_qubits, readout)
    n_in, n_out = config.M * config.K, config.K * config.tau_p
    return (n_in + 1) * n_qubits + quantum.count_quantum_parameters(n_qubits, share) + (width + 1) * n_out


_QUANTUM_OPTIONS = ("n_qubits", "share", "readout", "backend")
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "mlp": ("hidden",), "light-cnn": ("channels",), "heavy-cnn": ("channels",),
    "hqcnn": _QUANTUM_OPTIONS, "hqcnn-hur": _QUANTUM_OPTIONS,
    "gnn": ("width", "layers"), "hqcnn-ar": ("width", "layers", *_QUANTUM_OPTIONS, "quantum"),
}
"""the options :func:`build_model` accepts for each model"""


def build_model(name: str, config: SystemConfig, **options: Any) -> AssignmentModel:
    """The model registered as ``name`` for ``config``; options are the model's constructor
    arguments (``hidden`` for ``mlp``; ``n_qubits``, ``share``, ``readout``, ``backend`` for
    the quantum ones; see :data:`MODEL_OPTIONS`). ``mlp`` without ``hidden`` is sized to match
    ``hqcnn``'s parameter count. An option the model does not have is a ``ValueError``."""
    given = {k for k, v in options.items() if v is not None and not (isinstance(v, (dict, list, tuple)) and not v)}
    unknown = sorted(given - set(MODEL_OPTIONS.get(name, ())))
    if unknown and name in MODEL_OPTIONS:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; valid: {', '.join(MODEL_OPTIONS[name])}")
    if name == "mlp":
        if "hidden" not in options:
            options = {**options, "hidden": (mlp_width_matching(config, hqcnn_parameter_count(config)),)}
        return MLP(config, hidden=tuple(options["hidden"]))
    if name == "light-cnn":
        return CNN(config, tuple(options.get("channels", LIGHT_CNN_CHANNELS)))
    if name == "heavy-cnn":
        return CNN(config, tuple(options.get("channels", HEAVY_CNN_CHANNELS)))
    if name in ("hqcnn", "hqcnn-hur"):
        share = options.get("share", "level" if name == "hqcnn" else "block")
        if name == "hqcnn-hur" and share != "block":
            raise ValueError("hqcnn-hur has its own parameters per block: share must be 'block'")
        return HQCNN(config, n_qubits=options.get("n_qubits", 8), share=share,
                     readout=options.get("readout", "all"), backend=options.get("backend"))
    if name in ("gnn", "hqcnn-ar"):
        from agents.models.gnn import GNNPolicy

        quantum = {k: options[k] for k in ("n_qubits", "share", "readout", "backend") if options.get(k) is not None}
        return GNNPolicy(width=options.get("width", 64), layers=options.get("layers", 2),
                         scorer="quantum" if name == "hqcnn-ar" else "mlp",
                         quantum={**quantum, **options.get("quantum", {})} if name == "hqcnn-ar" else None)
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}")


def model_options(model: AssignmentModel) -> dict[str, Any]:
    """Constructor options that rebuild ``model`` with :func:`build_model` (JSON-serialisable)."""
    if isinstance(model, MLP):
        return {"hidden": list(model.hidden)}
    if isinstance(model, CNN):
        return {"channels": list(model.channels)}
    if isinstance(model, HQCNN):
        return {"n_qubits": model.n_qubits, "share": model.share, "readout": model.readout,
                "backend": model.backend}
    from agents.models.gnn import GNNPolicy

    if isinstance(model, GNNPolicy):
        options = {"width": model.width, "layers": model.layers}
        return {**options, "quantum": model.quantum_options} if model.quantum_options else options
    raise TypeError(f"unknown model type {type(model).__name__}")
