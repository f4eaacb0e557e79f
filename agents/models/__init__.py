"""Trainable pilot-assignment models (torch modules only) and the one way to build them.

* :mod:`agents.models.base`: :class:`AssignmentModel`, :class:`PilotModel` (logits per user).
* :mod:`agents.models.classical`: the paper's MLP and light/heavy CNNs.
* :mod:`agents.models.hybrid`: the FC -> QCNN front end and the paper's HQCNN.
* :mod:`agents.models.gnn`: the symmetry-aware autoregressive policy (``gnn``, ``hqcnn-ar``).
* :mod:`agents.models.quantum`: the QCNN circuit, its simulators and noisy execution.
* :mod:`agents.models.sb3`: the HQCNN as a Stable-Baselines3 features extractor.

:data:`MODELS` names every model (:class:`ModelEntry`: its factory and options); :func:`build_model`
turns a model name and its options into a module; :func:`model_options`
is its inverse (what a checkpoint's ``config.json`` stores).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from agents.models.base import AssignmentModel, PilotModel
from agents.specs.options import ModelOptions  # noqa: F401 (defined torch-free, for the command lines)
from agents.models.classical import CNN, HEAVY_CNN_CHANNELS, LIGHT_CNN_CHANNELS, MLP, mlp_width_matching
from agents.models.gnn import GNNPolicy
from agents.models.hybrid import HQCNN, HybridFrontEnd, hqcnn_parameter_count
from agents.models.quantum import SUPPORTED_N_QUBITS
from cfenv.config import SystemConfig



_QUANTUM_OPTIONS = ("n_qubits", "share", "readout", "backend")

MAX_HIDDEN_WIDTH = 4096
"""widest hidden layer of an MLP (``hidden``) or an SB3 policy (``net_arch``)"""
MAX_HIDDEN_LAYERS = 8
"""most hidden layers of an MLP or of each SB3 policy network"""
MAX_CNN_CHANNELS = 512
"""most channels of a CNN convolution (``channels``)"""
MAX_GNN_WIDTH = 1024
"""widest GNN embedding (``width``)"""
MAX_GNN_LAYERS = 8
"""most GNN encoder layers (``layers``)"""
MAX_PARAMETERS = 100_000_000
"""largest model (parameters) built: 400 MB of float32 weights, about 1.6 GB while Adam trains it;
the flattening CNN head grows as M K^2 tau_p (heavy-cnn at (100,4,100,20) would be 1.3 billion)"""


def check_int(option: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; else a one-line ``ValueError`` naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or not low <= value <= high:
        raise ValueError(f"{option} must be an integer in {low}..{high}; got {value!r}")
    return int(value)


def check_widths(option: str, widths: Any, high: int = MAX_HIDDEN_WIDTH,
                 max_layers: int = MAX_HIDDEN_LAYERS) -> tuple[int, ...]:
    """A list of layer widths, each in ``1..high``, at most ``max_layers`` of them."""
    if isinstance(widths, (str, bytes, Mapping)) or not hasattr(widths, "__len__"):
        raise ValueError(f"{option} must be a list of at most {max_layers} widths in 1..{high}; got {widths!r}")
    if len(widths) > max_layers:
        raise ValueError(f"{option} has {len(widths)} layers; at most {max_layers}")
    return tuple(check_int(f"{option} width", w, 1, high) for w in widths)


def check_model_options(name: str, options: Mapping[str, Any]) -> None:
    """Bounds on the options of :func:`build_model` (what a ``config.json`` may ask for),
    checked before anything is allocated: ``hidden`` at most :data:`MAX_HIDDEN_LAYERS` widths
    in ``1..``:data:`MAX_HIDDEN_WIDTH`; ``channels`` two values in ``1..``:data:`MAX_CNN_CHANNELS`;
    ``n_qubits`` one of :data:`agents.models.quantum.SUPPORTED_N_QUBITS`; ``width`` in
    ``1..``:data:`MAX_GNN_WIDTH`, ``layers`` in ``1..``:data:`MAX_GNN_LAYERS`; ``quantum`` a
    mapping of the quantum options. One ``ValueError`` naming the option."""
    if options.get("hidden") is not None:
        check_widths("hidden", options["hidden"])
    if options.get("channels") is not None:
        channels = options["channels"]
        if isinstance(channels, (str, bytes, Mapping)) or not hasattr(channels, "__len__") or len(channels) != 2:
            raise ValueError(f"channels must be two convolution widths in 1..{MAX_CNN_CHANNELS}; got {channels!r}")
        check_widths("channels", channels, MAX_CNN_CHANNELS, 2)
    if options.get("width") is not None:
        check_int("width", options["width"], 1, MAX_GNN_WIDTH)
    if options.get("layers") is not None:
        check_int("layers", options["layers"], 1, MAX_GNN_LAYERS)
    quantum = options.get("quantum")
    if quantum is not None and (not isinstance(quantum, Mapping) or set(quantum) - set(_QUANTUM_OPTIONS)):
        raise ValueError(f"quantum must map {', '.join(_QUANTUM_OPTIONS)} to values; got {quantum!r}")
    for where in (options, quantum or {}):
        if where.get("n_qubits") is not None and where["n_qubits"] not in SUPPORTED_N_QUBITS:
            raise ValueError(f"n_qubits must be one of {', '.join(map(str, SUPPORTED_N_QUBITS))}; "
                             f"got {where['n_qubits']!r}")


def check_model_size(name: str, config: SystemConfig, **options: Any) -> None:
    """``ValueError`` when model ``name`` at ``config`` would exceed :data:`MAX_PARAMETERS`, found
    without allocating a weight (the model is built on torch's ``meta`` device)."""
    if name not in MODELS or not MODELS[name].sized:  # only some models grow with (M, K, tau_p)
        return
    import torch

    with torch.device("meta"):
        count = sum(p.numel() for p in _construct(name, config, **options).parameters())
    check_parameter_count(name, config, count)


def check_parameter_count(name: str, config: SystemConfig, count: int) -> None:
    """``ValueError`` when model ``name`` at ``config`` of ``count`` parameters exceeds :data:`MAX_PARAMETERS`."""
    if count > MAX_PARAMETERS:
        raise ValueError(f"{name} at (M, L, K, tau_p) = {config.size} would have {count:,} parameters, above "
                         f"the cap of {MAX_PARAMETERS:,} (agents.models.MAX_PARAMETERS)")


def mlp_parameter_count(widths: Sequence[int]) -> int:
    """Weights and biases of the fully connected layers ``widths[0] -> widths[1] -> ...``."""
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def build_model(name: str, config: SystemConfig, **options: Any) -> AssignmentModel:
    """The model registered as ``name`` for ``config`` (see :func:`_construct`), refused by
    :func:`check_model_size` before any weight is allocated when it would be too large."""
    check_model_size(name, config, **options)
    return _construct(name, config, **options)


def _construct(name: str, config: SystemConfig, **options: Any) -> AssignmentModel:
    """The model registered as ``name`` in :data:`MODELS` for ``config``; options are its
    :attr:`ModelEntry.options` (``hidden`` for ``mlp``; ``n_qubits``, ``share``, ``readout``,
    ``backend`` for the quantum ones). An option the model does not have, or one outside the
    bounds of :func:`check_model_options` (hidden widths 1..4096, at most 8 layers; CNN channels
    1..512; ``n_qubits`` 4, 8 or 16; GNN width 1..1024, layers 1..8), is a ``ValueError`` raised
    before anything is built."""
    entry = MODELS.get(name)
    given = {k for k, v in options.items() if v is not None and not (isinstance(v, (dict, list, tuple)) and not v)}
    unknown = sorted(given - set(entry.options if entry else ()))
    if unknown and entry is not None:
        raise ValueError(f"{name} has no option {', '.join(unknown)}; valid: {', '.join(entry.options)}")
    check_model_options(name, options)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    model = entry.build(config, **options)
    if entry.options_of is None:  # rebuilt from the options it was built with (model_options)
        model.build_options = dict(options)
    return model


def _mlp(config: SystemConfig, **options: Any) -> MLP:
    """The paper's MLP; without ``hidden``, one layer sized to match ``hqcnn``'s parameter count."""
    if "hidden" not in options:
        options = {**options, "hidden": (mlp_width_matching(config, hqcnn_parameter_count(config)),)}
    return MLP(config, hidden=tuple(options["hidden"]))


def _cnn(channels: tuple[int, int]) -> Callable[..., CNN]:
    """The factory of a CNN with these default channels."""
    return lambda config, **options: CNN(config, tuple(options.get("channels", channels)))


def _hqcnn(hur: bool) -> Callable[..., HQCNN]:
    """The factory of the paper's HQCNN (shared per level) or Hur et al.'s (own parameters per block)."""
    def build(config: SystemConfig, **options: Any) -> HQCNN:
        share = options.get("share", "block" if hur else "level")
        if hur and share != "block":
            raise ValueError("hqcnn-hur has its own parameters per block: share must be 'block'")
        return HQCNN(config, n_qubits=options.get("n_qubits", 8), share=share,
                     readout=options.get("readout", "all"), backend=options.get("backend"))
    return build


def _gnn(quantum_scorer: bool) -> Callable[..., GNNPolicy]:
    """The factory of the gnn policy with an MLP scorer, or the HQCNN circuit's (``hqcnn-ar``)."""
    def build(config: SystemConfig, **options: Any) -> GNNPolicy:
        quantum = {k: options[k] for k in _QUANTUM_OPTIONS if options.get(k) is not None}
        return GNNPolicy(width=options.get("width", 64), layers=options.get("layers", 2),
                         scorer="quantum" if quantum_scorer else "mlp", order=options.get("order", "gain"),
                         rate_features=bool(options.get("rate_features", False)),
                         quantum={**quantum, **options.get("quantum", {})} if quantum_scorer else None)
    return build


def _hqcnn_options(model: HQCNN) -> dict[str, Any]:
    return {"n_qubits": model.n_qubits, "share": model.share, "readout": model.readout, "backend": model.backend}


def _gnn_options(model: GNNPolicy) -> dict[str, Any]:
    options = {"width": model.width, "layers": model.layers}
    if model.order != "gain":  # a model trained before the option existed rebuilds with its default
        options["order"] = model.order
    if model.rate_features:
        options["rate_features"] = True
    return {**options, "quantum": model.quantum_options} if model.quantum_options else options


@dataclass(frozen=True)
class ModelEntry:
    """One trainable model: how to build it and what it accepts. A new model is one entry (here,
    or through an :class:`agents.registry.AgentEntry`'s ``model``)."""

    build: Callable[..., AssignmentModel]
    """``build(config, **options)`` -> the untrained model for ``config``"""
    options: tuple[str, ...] = ()
    """the options ``build`` accepts (anything else is refused by name)"""
    sized: bool = False
    """its parameter count grows with (M, K, tau_p): checked against :data:`MAX_PARAMETERS` first"""
    labels: bool = True
    """emits K x tau_p pilot logits (a :class:`PilotModel`), not an autoregressive policy"""
    options_of: Callable[[Any], dict[str, Any]] | None = None
    """the options that rebuild a built model (what ``config.json`` stores); ``None``: the options
    it was built with"""


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(_mlp, ("hidden",), sized=True, options_of=lambda m: {"hidden": list(m.hidden)}),
    "light-cnn": ModelEntry(_cnn(LIGHT_CNN_CHANNELS), ("channels",), sized=True,
                            options_of=lambda m: {"channels": list(m.channels)}),
    "heavy-cnn": ModelEntry(_cnn(HEAVY_CNN_CHANNELS), ("channels",), sized=True,
                            options_of=lambda m: {"channels": list(m.channels)}),
    "hqcnn": ModelEntry(_hqcnn(False), _QUANTUM_OPTIONS, options_of=_hqcnn_options),
    "hqcnn-hur": ModelEntry(_hqcnn(True), _QUANTUM_OPTIONS, options_of=_hqcnn_options),
    "gnn": ModelEntry(_gnn(False), ("width", "layers", "order", "rate_features"), labels=False,
                      options_of=_gnn_options),
    "hqcnn-ar": ModelEntry(_gnn(True), ("width", "layers", *_QUANTUM_OPTIONS, "quantum", "order", "rate_features"),
                           labels=False, options_of=_gnn_options),
}
"""model name -> :class:`ModelEntry`: the one table :func:`build_model` reads"""
LABEL_MODELS = tuple(name for name, entry in MODELS.items() if entry.labels)
"""models that emit K x tau_p pilot logits"""
MODEL_NAMES = tuple(MODELS)
"""the models of cfpilot (:func:`register_model` adds others to :data:`MODELS`)"""
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {name: entry.options for name, entry in MODELS.items()}
"""the options :func:`build_model` accepts for each of cfpilot's models"""


def register_model(name: str, entry: ModelEntry) -> None:
    """Make ``name`` buildable by :func:`build_model` (and so trainable, saved and loaded);
    ``ValueError`` if another model already has the name."""
    if MODELS.get(name, entry) is not entry:
        raise ValueError(f"a model named {name!r} is registered already")
    MODELS[name] = entry


def model_options(model: AssignmentModel) -> dict[str, Any]:
    """Constructor options that rebuild ``model`` with :func:`build_model` (JSON-serialisable)."""
    recorded = getattr(model, "build_options", None)
    if recorded is not None:
        return dict(recorded)
    kinds = {MLP: "mlp", CNN: "light-cnn", HQCNN: "hqcnn", GNNPolicy: "gnn"}
    name = next((name for kind, name in kinds.items() if isinstance(model, kind)), None)
    if name is None:
        raise TypeError(f"unknown model type {type(model).__name__}")
    return MODELS[name].options_of(model)  # type: ignore[misc]


__all__ = ["CNN", "HQCNN", "MAX_CNN_CHANNELS", "MAX_GNN_LAYERS", "MAX_GNN_WIDTH", "MAX_HIDDEN_LAYERS",
           "MAX_HIDDEN_WIDTH", "MAX_PARAMETERS", "MLP", "MODELS", "MODEL_NAMES", "AssignmentModel", "GNNPolicy",
           "HybridFrontEnd", "ModelEntry", "PilotModel", "build_model", "check_int", "check_model_size",
           "check_model_options", "check_parameter_count", "check_widths", "mlp_parameter_count", "model_options",
           "register_model"]
