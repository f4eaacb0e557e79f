"""The registry of system-model names (standard library only, so that ``SystemConfig`` can check a
name without loading numpy or numba): name -> ``module:Class``, imported on first use."""

from __future__ import annotations

MODELS: dict[str, str] = {
    "paper": "cfenv.models.paper:PaperModel",
    "paper-reference": "cfenv.models.paper:PaperReferenceModel",
}
"""model name -> ``module:Class`` of its :class:`cfenv.models.base.SystemModel` subclass"""

DEFAULT_MODEL = "paper"
"""the seed paper's model (docs/model.md §1-2): every AP serves every user, downlink conjugate beamforming"""


_ON_CHANGE: list = []
"""callbacks run when the registry changes (the model cache of :mod:`cfenv.models`)"""


def model_names() -> tuple[str, ...]:
    """The registered model names, in registration order."""
    return tuple(MODELS)


def register_model(name: str, target: str) -> None:
    """Register a model class (``"module:Class"``) under ``name``; ``ValueError`` if the name is taken
    by another target. A registered name is accepted by ``SystemConfig(model=name)``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model name must be a non-empty string, got {name!r}")
    if ":" not in target:
        raise ValueError(f"a model target must be 'module:Class', got {target!r}")
    if MODELS.get(name, target) != target:
        raise ValueError(f"model name {name!r} is already registered for {MODELS[name]}")
    MODELS[name] = target
    for listener in _ON_CHANGE:
        listener()
