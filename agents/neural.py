"""Learnable agents wrapping the models of :mod:`agents.models` behind the agent interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from agents.base import LearnableAgent, thread_limits
from agents.learning import TrainSettings, beta_db_tensor, load_model, predict, save_model, train
from agents.learning.settings import check_device
from agents.models import MODELS, build_model, check_model_size
from agents.registry import REGISTRY, resolve
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of


class NeuralAgent(LearnableAgent):
    """A neural model that maps fading to pilots (argmax of its per-user logits).

    Args:
        config: the system size the model is (or will be) trained for.
        seed: training seed.
        device: torch device.
        loss: default training loss for :meth:`fit` (``"unsupervised"`` or ``"supervised"``).
        **model: model options (see :func:`agents.models.build_model`).
    """

    resumable = True
    settings_class = TrainSettings
    model_name: ClassVar[str | None] = None
    """the model (and run folder) this agent uses when it is not its own name: a hybrid such as
    ``gnn-polish`` runs the ``gnn`` checkpoint, so it never trains a model of its own"""
    default_budget: ClassVar[dict[str, Any]] = {"train_snapshots": 1024, "val_snapshots": 128, "epochs": 10}
    """training budget of :meth:`fit` when not overridden: what ``evaluate.py`` trains a
    missing agent with (``train.py`` has its own, larger defaults)"""
    budgets: ClassVar[dict[str, dict[str, Any]]] = {}
    """named budgets (``train.py --budget NAME``, :meth:`training_settings`), each overriding fields
    of :attr:`default_budget`; ``model``: options of the model it trains"""

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "unsupervised", **model: Any) -> None:
        super().__init__(config, seed)
        self.device = check_device(device)
        self.loss = loss
        self.model_options = model
        self.model: Any = None
        self.meta: dict[str, Any] = {}

    @classmethod
    def model_key(cls) -> str:
        """The name of the model this agent trains, saves and loads (``model_name`` or ``name``)."""
        return cls.model_name or cls.name

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

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        """Why the model cannot be built at this size (too many parameters), else ``None``."""
        try:
            check_model_size(self.model_key(), config, **self.model_options)
        except ValueError as err:
            return str(err)
        return None

    def initialise(self, config: SystemConfig | None = None) -> "NeuralAgent":
        """Give the agent a freshly initialised (untrained) model, seeded by the agent's seed."""
        cfg = self._resolve_config(config)
        torch.manual_seed(self.seed)
        self.model = build_model(self.model_key(), cfg, **self.model_options).to(self.device)
        self.config = cfg
        return self

    def training_settings(self, config: SystemConfig | None = None, budget: str | None = None,
                          **settings: Any) -> TrainSettings:
        """The :class:`agents.learning.TrainSettings` that :meth:`fit` trains with: the agent's
        :attr:`default_budget`, then the named ``budget``'s fields (:attr:`budgets`; its ``model``
        options over the agent's), overridden by ``settings``; ``ValueError`` naming a bad field."""
        cfg = self._resolve_config(config)
        named = self.named_budget(budget)
        budget = {**self.default_budget, **{k: v for k, v in named.items() if k != "model"}}
        if "epochs" in settings and "imitation_epochs" not in settings and budget.get("imitation_epochs"):
            # other epochs than the budget's: keep its share of imitation epochs
            share = budget["imitation_epochs"] / budget["epochs"]
            budget["imitation_epochs"] = min(settings["epochs"], int(settings["epochs"] * share))
        settings = {**budget, **settings}
        settings.setdefault("loss", self.loss)
        settings.setdefault("seed", self.seed)
        settings.setdefault("device", self.device)
        settings.setdefault("model", {**self.model_options, **named.get("model", {})})
        settings.setdefault("objective", cfg.objective)
        settings.setdefault("system", cfg.system_fields)
        if settings["objective"] != cfg.objective:
            raise ValueError(f"objective {settings['objective']!r} differs from the config's {cfg.objective!r}")
        return TrainSettings(agent=self.model_key(), size=cfg.size, **settings)

    def check_fit(self, config: SystemConfig, **settings: Any) -> None:
        """The training settings and the model they describe (a named budget's too), checked
        without training: ``ValueError`` naming what :meth:`fit` would refuse."""
        checked = self.training_settings(config, **settings)
        build_model(checked.agent, config, **checked.model)

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
        return save_model(Path(directory), self.model, self.model_key(), self.config, self.meta)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", config: SystemConfig | None = None) -> "NeuralAgent":
        """Load a saved model; ``config`` (if given) must match the size it was trained for."""
        model, meta = load_model(Path(directory), device, expected=config)
        if meta["agent"] != cls.model_key() and cls is not NeuralAgent:
            raise ValueError(f"{directory} holds a {meta['agent']!r} model, not {cls.model_key()!r}")
        target = neural_agent_class(meta["agent"]) if cls is NeuralAgent else cls
        agent = target(config=SystemConfig(**meta["system"]), device=device, **meta["model"])
        agent.model, agent.meta = model, meta
        return agent  # type: ignore[return-value]


ORDER_MIXES = (1.0, 0.75, 0.5, 0.25, 0.0, 1.5, 2.0, -0.5)
"""decoding orders of ``decode_orders``: users in descending ``mix * total + (1 - mix) * strongest``
gain (normalised dB); the first is the trained order"""


class GNNAgent(NeuralAgent):
    """The symmetry-aware policy of :mod:`agents.models.gnn`.

    Args:
        decode_samples: at inference, also sample this many assignments per snapshot and
            keep the best of them and the greedy one by the exact objective (``config.objective``;
            0: greedy only).
            Sampling is seeded by the agent's generator.
        polish_per_user: then spend up to this many exact sum-rate evaluations per user
            (``round(polish_per_user * K)`` per snapshot) on single-user moves from the decoded
            assignment (:func:`agents.polish.polish`; 0: none). A polished agent is a hybrid
            (learned start + a small search), reported apart from the pure decode.
        polish_candidates: exact evaluations per visited user, best-estimated move first
            (:func:`agents.polish.polish`'s ``candidates``).
        polish_swaps: once no single move improves, the polish goes on with pair swaps (slower,
            higher: docs/learners.md).
        decode_orders: also decode greedily in this many other user orders (descending mixes of
            total and strongest gain, :data:`ORDER_MIXES`; both symmetries kept) and keep the best
            by exact sum rate: deterministic test-time augmentation (1: the trained order only). The
            mixes only break ties in a confidence order, so there they decode alike (docs/learners.md).
        polish_master_start: polish master-AP's assignment too (a second start, twice the
            evaluations) and keep the better end point.
        decode_temperature: the sampled decodes draw from softmax(logits / temperature); below
            1 they stay close to the greedy decode (0.1: best of 16 gains +0.5 % at (100,4,40,10),
            where samples at 1 are worse than the greedy one).
        decode_order: the user order of the greedy and sampled decodes
            (:data:`agents.models.gnn.DECODE_ORDERS`); ``None``: the order the model was trained
            in (its ``order`` option).
        decode_engine: ``"auto"`` (the compiled decoder where it applies), ``"numba"`` or
            ``"torch"`` (the torch decoder, the reference): see ``engine`` of
            :meth:`agents.models.gnn.GNNPolicy.decode`; the same assignments either way.
    """

    name = "gnn"
    losses = ("reinforce", "supervised")
    size_generalisable = True
    default_budget = {"train_snapshots": 2048, "val_snapshots": 128, "epochs": 20, "imitation_epochs": 20,
                      "labels": "local-search", "samples": 4, "batch_size": 64, "lr": 1e-3}
    """imitation of local-search labels (cheap: teacher forcing, near-optimal labels at ~1 ms
    per snapshot) for all 20 epochs: REINFORCE epochs after it lowered the validation sum rate
    at the small sizes (docs/learners.md, "The decoder"); ``loss="reinforce"`` still names the run and
    trains when ``imitation_epochs`` < ``epochs``"""
    default_model: ClassVar[dict[str, Any]] = {"order": "confidence"}
    """model options of a newly trained model unless given (docs/learners.md, "The decoder"): users decoded in
    confidence order; a loaded checkpoint keeps its own. ``rate_features=True`` (the ``accurate``
    budget) pays with more data and epochs, which would make ``evaluate.py --agents all`` train
    for minutes per size, so it is not a default"""
    budgets = {
        "long": {"train_snapshots": 8192, "epochs": 16, "imitation_epochs": 12},
        "accurate": {"train_snapshots": 8192, "epochs": 40, "imitation_epochs": 40,
                     "model": {**default_model, "rate_features": True}}}
    """``long`` is the large-size model of docs/learners.md (4x the snapshots, 16 epochs of which
    12 imitate; measured with the gain-order model of 0.4, not re-measured with the new defaults);
    ``accurate`` (per-option rate features, 4x the snapshots, 40 imitation epochs) the model whose
    one greedy decode reaches 0.993-0.998 of EPAS at the small sizes and, trained at (40,2,20,10),
    0.996-0.998 of local search at the large ones (docs/learners.md)"""
    default_polish_per_user: ClassVar[float] = 0.0
    default_decode_samples: ClassVar[int] = 0

    def __init__(self, config: SystemConfig | None = None, seed: int = 0, device: str = "cpu",
                 loss: str = "reinforce", decode_samples: int | None = None, polish_per_user: float | None = None,
                 polish_candidates: int = 1, decode_temperature: float = 1.0, polish_master_start: bool = False,
                 decode_orders: int = 1, decode_order: str | None = None, polish_swaps: bool = False,
                 decode_engine: str = "auto", **model: Any) -> None:
        super().__init__(config, seed, device, loss if loss in self.losses else "reinforce",
                         **{**self.default_model, **model})
        decode_samples = self.default_decode_samples if decode_samples is None else decode_samples
        polish_per_user = self.default_polish_per_user if polish_per_user is None else polish_per_user
        if decode_samples < 0:
            raise ValueError(f"decode_samples must be >= 0, got {decode_samples}")
        if not 0 <= polish_per_user <= 1000:
            raise ValueError(f"polish_per_user must be in [0, 1000], got {polish_per_user}")
        if polish_candidates < 0:
            raise ValueError(f"polish_candidates must be >= 0, got {polish_candidates}")
        self.decode_samples = int(decode_samples)
        self.polish_per_user = float(polish_per_user)
        self.polish_candidates = int(polish_candidates)
        if not 0 < decode_temperature <= 100:
            raise ValueError(f"decode_temperature must be in (0, 100], got {decode_temperature}")
        self.decode_temperature = float(decode_temperature)
        self.polish_master_start = bool(polish_master_start)
        self.polish_swaps = bool(polish_swaps)
        if not 1 <= decode_orders <= len(ORDER_MIXES):
            raise ValueError(f"decode_orders must be in [1, {len(ORDER_MIXES)}], got {decode_orders}")
        self.decode_orders = int(decode_orders)
        from agents.models.gnn import DECODE_ORDERS

        if decode_order is not None and decode_order not in DECODE_ORDERS:
            raise ValueError(f"decode_order must be one of {', '.join(DECODE_ORDERS)} or None, got {decode_order!r}")
        self.decode_order = decode_order
        from agents.models.gnn import GNNPolicy

        if decode_engine not in GNNPolicy.ENGINES:
            raise ValueError(f"decode_engine must be one of {', '.join(GNNPolicy.ENGINES)}, got {decode_engine!r}")
        self.decode_engine = decode_engine

    def unsupported_reason(self, config: SystemConfig) -> str | None:
        """The size cap, and a model with per-option rate features on a system model without them."""
        reason = super().unsupported_reason(config)
        if reason is None and self._uses_rate_features():
            from agents.models.rate_features import unsupported_reason

            reason = unsupported_reason(config)
        return reason

    def _uses_rate_features(self) -> bool:
        """Whether the loaded model (else the options a new one gets) decodes with rate features."""
        if self.model is not None:
            return bool(getattr(self.model, "rate_features", False))
        return bool(self.model_options.get("rate_features", False))

    def _assign(self, snapshots: Snapshot, config: SystemConfig, rng: np.random.Generator) -> np.ndarray:
        if self.model is None:
            raise ValueError(f"{self.name} is not trained: call fit() or load() first")
        self.model.eval()
        # the greedy decode, in the model's order unless decode_order says otherwise
        with torch.no_grad(), thread_limits(self._torch_threads()):
            pilots = np.concatenate([
                self.model.decode(beta_db_tensor(snapshots.beta[lo:lo + 1024], self.device), config.tau_p,
                                  "greedy", order=self.decode_order, system=config,
                                  engine=self.decode_engine)[0].cpu().numpy()
                for lo in range(0, len(snapshots.beta), 1024)]).astype(np.int64)
        if self.decode_orders > 1:
            pilots = self._best_of_orders(pilots, snapshots, config)
        if self.decode_samples:
            pilots = self._best_of_samples(pilots, snapshots, config, rng)
        if self.polish_per_user > 0:
            from agents.polish import polish

            budget = max(1, round(self.polish_per_user * config.K))
            starts = pilots[:, None]
            if self.polish_master_start:
                from agents.heuristics import master_ap_pilots

                starts = np.stack([pilots, master_ap_pilots(snapshots.beta, config.tau_p)], axis=1)
            pilots = polish(snapshots, starts, config, candidates=self.polish_candidates, swaps=self.polish_swaps,
                            max_evals=budget)[0]
        return pilots

    def _torch_threads(self) -> int | None:
        """Torch threads of the decode: one on the CPU. Its ops are small (a decision's tensors,
        the encoder's per-snapshot edge network), and with two intra-op threads every op waits for
        both, so a busy core slows the whole decode 3-10x (measured in docs/learners.md); the
        compiled decoder and the polish still use numba's threads across snapshots."""
        return 1 if torch.device(self.device).type == "cpu" else None

    def _best_of_orders(self, greedy: np.ndarray, snapshots: Snapshot, config: SystemConfig) -> np.ndarray:
        x = beta_db_tensor(snapshots.beta, self.device)
        with thread_limits(self._torch_threads()):
            others = self.model.greedy_orders(x, config.tau_p, ORDER_MIXES[1:self.decode_orders],
                                              system=config).cpu().numpy()
        stacked = np.concatenate([greedy[:, None], others.transpose(1, 0, 2)], axis=1)  # (B, orders, K)
        rates = model_of(config).objective(snapshots[:, None], stacked)
        return stacked[np.arange(len(stacked)), rates.argmax(axis=1)]

    def _best_of_samples(self, greedy: np.ndarray, snapshots: Snapshot, config: SystemConfig,
                         rng: np.random.Generator) -> np.ndarray:
        B, S = greedy.shape[0], self.decode_samples
        # a CPU generator: the sampler draws its uniforms on the generator's device and moves
        # them to the model's (agents.models.gnn.sample_categorical), so any device works
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        with thread_limits(self._torch_threads()):
            sampled = self.model.sample(beta_db_tensor(snapshots.beta, self.device), config.tau_p, S, generator,
                                        self.decode_temperature, self.decode_order, config,
                                        self.decode_engine).cpu().numpy()
        candidates = np.concatenate([greedy[:, None], sampled.reshape(B, S, -1)], axis=1)  # (B, 1 + S, K)
        scores = model_of(config).objective(snapshots[:, None], candidates)
        return candidates[np.arange(B), scores.argmax(axis=1)]


class HQCNNARAgent(GNNAgent):
    name = "hqcnn-ar"
    # every decision runs the circuit once per open pilot group: a smaller default budget, and the
    # gain order without rate features (the budget and model measured in docs/learners.md; a
    # confidence order would run the circuit for every undecided user at every step)
    default_budget = {"train_snapshots": 1024, "val_snapshots": 128, "epochs": 8, "imitation_epochs": 6,
                      "labels": "local-search", "samples": 2, "batch_size": 64, "lr": 1e-3}
    default_model: ClassVar[dict[str, Any]] = {}
    budgets = {}  # a long budget was not measured (hours on 2 cores)


POLISH_PER_USER = 5.0
"""the hybrids' default polish budget: exact evaluations per user (docs/learners.md)"""


class GNNPolishAgent(GNNAgent):
    """Hybrid: the ``gnn`` greedy decode, then a small budget of single-user moves
    (:mod:`agents.polish`). Runs the ``gnn`` checkpoint (trains none of its own)."""

    name = "gnn-polish"
    model_name = "gnn"
    default_polish_per_user = POLISH_PER_USER


class HQCNNARPolishAgent(HQCNNARAgent):
    """Hybrid: the ``hqcnn-ar`` greedy decode, then the same polish as ``gnn-polish``."""

    name = "hqcnn-ar-polish"
    model_name = "hqcnn-ar"
    default_polish_per_user = POLISH_PER_USER


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
    """The :class:`NeuralAgent` whose model is ``name`` (what a checkpoint's config names): the
    registry's agent of that name."""
    cls = resolve(name).cls if name in REGISTRY else None
    if cls is None or not issubclass(cls, NeuralAgent) or cls.model_key() != name:
        raise ValueError(f"no neural agent has a model named {name!r}; valid: {', '.join(MODELS)}")
    return cls
