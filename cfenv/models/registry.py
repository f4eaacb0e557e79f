"""The registry of system-model names (standard library only, so that ``SystemConfig`` can check a
name without loading numpy or numba): name -> ``module:Class``, imported on first use."""

from __future__ import annotations

MODELS: dict[str, str] = {
    "paper": "cfenv.models.paper:PaperModel",
    "paper-reference": "cfenv.models.paper:PaperReferenceModel",
    "scalable": "cfenv.models.scalable:ScalableModel",
}
"""model name -> ``module:Class`` of its :class:`cfenv.models.base.SystemModel` subclass"""

PAPER_DEFAULTS: dict[str, object] = {
    "noise_figure_db": 9.0, "shadowing_std_db": 8.0, "ap_height_m": 15.0, "cluster": "all",
}
"""the seed paper's values of the fields whose default depends on the model (docs/model.md §1)"""

MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "paper": PAPER_DEFAULTS,
    "paper-reference": PAPER_DEFAULTS,
    # the book's Section 5.3 set-up (generateSetup.m): NF 7 dB, 4 dB shadowing, APs 10 m above the users
    "scalable": {"noise_figure_db": 7.0, "shadowing_std_db": 4.0, "ap_height_m": 11.65, "cluster": "dcc"},
}
"""model name -> the defaults of ``SystemConfig``'s model-dependent fields (those left ``None``); a model
registered without its own takes the paper's"""

DEFAULT_MODEL = "paper"
"""the seed paper's model (docs/model.md §1-2): every AP serves every user, downlink conjugate beamforming"""


_ON_CHANGE: list = []
"""callbacks run when the registry changes (the model cache of :mod:`cfenv.models`)"""


def model_names() -> tuple[str, ...]:
    """The registered model names, in registration order."""
    return tuple(MODELS)


PAPER_OPTIONS: dict[str, tuple[object, ...]] = {"link": ("downlink",), "cluster": ("all",), "lsfd": (False,),
                                                "pilot_overhead": ("budget",)}
"""the values the paper's model accepts for the option fields of ``SystemConfig``"""

MODEL_OPTIONS: dict[str, dict[str, tuple[object, ...]]] = {
    "paper": PAPER_OPTIONS,
    "paper-reference": PAPER_OPTIONS,
    "scalable": {"link": ("uplink", "downlink"), "cluster": ("dcc", "all"), "lsfd": (False, True),
                 "pilot_overhead": ("budget", "used")},
}
"""model name -> option field -> the values it accepts (``SystemConfig`` refuses others, naming them)"""

PRE_LOG_MODELS: set[str] = {"scalable"}
"""models whose rates carry the pre-log factor (tau_c - tau_p) / tau_c (so tau_p < tau_c is required)"""


def model_options(name: str) -> dict[str, tuple[object, ...]]:
    """The accepted values of the option fields (``link``, ``cluster``, ``lsfd``, ``pilot_overhead``) under model
    ``name``."""
    return MODEL_OPTIONS.get(name, PAPER_OPTIONS)


def model_defaults(name: str) -> dict[str, object]:
    """The defaults of the model-dependent ``SystemConfig`` fields under model ``name``."""
    return MODEL_DEFAULTS.get(name, PAPER_DEFAULTS)


def register_model(name: str, target: str, defaults: dict[str, object] | None = None) -> None:
    """Register a model class (``"module:Class"``) under ``name``; ``ValueError`` if the name is taken
    by another target. A registered name is accepted by ``SystemConfig(model=name)``; ``defaults``
    (field -> value) overrides the paper's defaults of the model-dependent fields (:data:`MODEL_DEFAULTS`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if ":" not in target:
        raise ValueError(f"a model target must be 'module:Class', got {target!r}")
    if MODELS.get(name, target) != target:
        raise ValueError(f"model name {name!r} is already registered for {MODELS[name]}")
    MODELS[name] = target
    if defaults is not None:
        unknown = set(defaults) - set(PAPER_DEFAULTS)
        if unknown:
            raise ValueError(f"model defaults may set only {', '.join(PAPER_DEFAULTS)}, got {sorted(unknown)}")
        MODEL_DEFAULTS[name] = {**PAPER_DEFAULTS, **defaults}
    for listener in _ON_CHANGE:
        listener()
