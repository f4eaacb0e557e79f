"""Learnable agents wrapping the models of :mod:`agents.models` behind the agent interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from agents.base import LearnableAgent
from agents.learning import TrainSettings, beta_db_tensor, load_model, predict, save_model, train
from agents.learning.settings import check_device
from agents.models import build_model
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.rates import objective_value


class NeuralAgent(LearnableAgent):
    """A neural model that maps fading to pilots (argmax of its per-user logits).

    Args:
        config: the system size the model is (or will be) trained for.
        seed: training seed.
        device: torch device.
        loss: default training loss for :meth:`fit` (``"unsupervised"`` or ``"supervised"``).
        **model: model options (see :func:`agents.models.build_model`).
    """

    size_generalisable: ClassVar[bool] = False
    """one trained model runs at any (M, K, tau_p) (the harness's ``--trained-at``)"""
    default_budget: ClassVar[dict[str, Any]] = {"train_snapshots": 1024, "val_snapshots": 128, "epochs": 10}
    """training budget of :meth:`fit` when not overridden: what ``evaluate.py`` trains a
    missing agent with (``train.py`` has its own, larger defaults)"""

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "unsupervised", **model: Any) -> None:
        super().__init__(config, seed)
        self.device = check_device(device)
        self.loss = loss
        self.model_options = model
        self.model: Any = None
        self.meta: dict[str, Any] = {}

    @property
    def trained(self) -> bool:
        return self.model is not None

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        if self.model is None:
            raise ValueError(f"{self.name} is not trained: call fit() or load() first")
        if not self.model.size_generalisable:
            trained_for = (self.model.M, self.model.K, self.model.tau_p)
            if trained_for != (config.M, config.K, config.tau_p):
                raise ValueError(f"{self.name} was trained for (M, K, tau_p) = {trained_for}, "
                                 f"not {(config.M, config.K, config.tau_p)}")
        return predict(self.model, snapshots.beta, config.tau_p, self.device)[0]

    def initialise(self, config: SystemConfig | None = None) -> "NeuralAgent":
        """Give the agent a freshly initialised (untrained) model, seeded by the agent's seed."""
        cfg = self._resolve_config(config)
        torch.manual_seed(self.seed)
        self.model = build_model(self.name, cfg, **self.model_options).to(self.device)
        self.config = cfg
        return self

    def training_settings(self, config: SystemConfig | None = None, **settings: Any) -> TrainSettings:
        """The :class:`agents.learning.TrainSettings` that :meth:`fit` trains with: the agent's
        :attr:`default_budget`, overridden by ``settings``; ``ValueError`` naming a bad field."""
        cfg = self._resolve_config(config)
        budget = dict(self.default_budget)
        if "epochs" in settings and "imitation_epochs" not in settings and budget.get("imitation_epochs"):
            # other epochs than the budget's: keep its share of imitation epochs
            share = budget["imitation_epochs"] / budget["epochs"]
            budget["imitation_epochs"] = min(settings["epochs"], int(settings["epochs"] * share))
        settings = {**budget, **settings}
        settings.setdefault("loss", self.loss)
        settings.setdefault("seed", self.seed)
        settings.setdefault("device", self.device)
        settings.setdefault("model", dict(self.model_options))
        settings.setdefault("objective", cfg.objective)
        if settings["objective"] != cfg.objective:
            raise ValueError(f"objective {settings['objective']!r} differs from the config's {cfg.objective!r}")
        return TrainSettings(agent=self.name, size=cfg.size, **settings)

    def fit(self, config: SystemConfig | None = None, **settings: Any) -> dict[str, Any]:
        """Train with :func:`agents.learning.train`; keyword arguments override
        :class:`agents.learning.TrainSettings` fields (see :meth:`training_settings`)."""
        cfg = self._resolve_config(config)
        summary = train(self.training_settings(cfg, **settings))
        self.model = summary.pop("model")
        self.config = cfg
        self.meta = {"train_time_s": summary["train_time_s"], "final_metrics": summary["final"]}
        return summary

    def parameter_count(self) -> int:
        if self.model is None:
            raise ValueError(f"{self.name} has no model yet")
        return int(self.model.parameter_counts()["total"])

    def save(self, directory: str | Path) -> Path:
        if self.model is None or self.config is None:
            raise ValueError(f"{self.name} has no trained model to save")
        return save_model(Path(directory), self.model, self.name, self.config, self.meta)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", config: SystemConfig | None = None) -> "NeuralAgent":
        """Load a saved model; ``config`` (if given) must match the size it was trained for."""
        model, meta = load_model(Path(directory), device, expected=config)
        if meta["agent"] != cls.name and cls is not NeuralAgent:
            raise ValueError(f"{directory} holds a {meta['agent']!r} model, not {cls.name!r}")
        agent = neural_agent_class(meta["agent"])(config=SystemConfig(**meta["system"]), device=device, **meta["model"])
        agent.model, agent.meta = model, meta
        return agent  # type: ignore[return-value]


class GNNAgent(NeuralAgent):
    """The symmetry-aware policy of :mod:`agents.models.gnn`.

    Args:
        decode_samples: at inference, also sample this many assignments per snapshot and
            keep the best of them and the greedy one by the exact objective (``config.objective``;
            0: greedy only).
            Sampling is seeded by the agent's generator.
    """

    name = "gnn"
    losses = ("reinforce", "supervised")
    size_generalisable = True
    default_budget = {"train_snapshots": 2048, "val_snapshots": 128, "epochs": 8, "imitation_epochs": 6,
                      "labels": "local-search", "samples": 4, "batch_size": 64, "lr": 1e-3}
    """imitation of local-search labels (cheap: teacher forcing, near-optimal labels at ~1 ms
    per snapshot), then REINFORCE on the exact sum rate"""

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "reinforce", decode_samples: int = 0, **model: Any) -> None:
        super().__init__(config, seed, device, loss if loss in self.losses else "reinforce", **model)
        if decode_samples < 0:
            raise ValueError(f"decode_samples must be >= 0, got {decode_samples}")
        self.decode_samples = int(decode_samples)

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        greedy = super()._assign(snapshots, config, rng)
        if self.decode_samples == 0:
            return greedy
        B, S = greedy.shape[0], self.decode_samples
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        x = beta_db_tensor(snapshots.beta, self.device).repeat_interleave(S, 0)
        with torch.no_grad():
            sampled = self.model.decode(x, config.tau_p, "sample", generator=generator)[0].cpu().numpy()
        candidates = np.concatenate([greedy[:, None], sampled.reshape(B, S, -1)], axis=1)  # (B, 1 + S, K)
        scores = objective_value(snapshots.beta[:, None], candidates, config)
        return candidates[np.arange(B), scores.argmax(axis=1)]


class HQCNNARAgent(GNNAgent):
    name = "hqcnn-ar"
    # every decision runs the circuit once per open pilot group: a smaller default budget
    default_budget = {**GNNAgent.default_budget, "train_snapshots": 1024, "samples": 2}


class MLPAgent(NeuralAgent):
    name = "mlp"


class LightCNNAgent(NeuralAgent):
    name = "light-cnn"


class HeavyCNNAgent(NeuralAgent):
    name = "heavy-cnn"


class HQCNNAgent(NeuralAgent):
    name = "hqcnn"


class HQCNNHurAgent(NeuralAgent):
    name = "hqcnn-hur"


def neural_agent_class(name: str) -> type[NeuralAgent]:
    """The :class:`NeuralAgent` subclass whose model is ``name`` (what a checkpoint's config names)."""
    classes = {cls.name: cls for cls in (MLPAgent, LightCNNAgent, HeavyCNNAgent, HQCNNAgent, HQCNNHurAgent,
                                         GNNAgent, HQCNNARAgent)}
    if name not in classes:
        raise ValueError(f"no neural agent has a model named {name!r}; valid: {', '.join(classes)}")
    return classes[name]
