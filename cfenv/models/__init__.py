"""System models: the physics behind every snapshot, rate and objective (docs/model.md §0).

A system model says what a snapshot holds, how snapshots are drawn and the exact per-user rates
of any batch of assignments; it may also offer fast paths (a compiled incremental evaluator for
the searches and the polish, rate features for the learners). Everything in cfpilot that needs
the physics -- the environments, the harness, every agent -- asks :func:`model_of` for the
model of its :class:`cfenv.config.SystemConfig` (its ``model`` field names it).

The models themselves (numpy, numba) load on first use.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

from cfenv.models.registry import _ON_CHANGE, DEFAULT_MODEL, MODELS, model_names, register_model

if TYPE_CHECKING:  # pragma: no cover
    from cfenv.config import SystemConfig
    from cfenv.models.base import SystemModel


@lru_cache(maxsize=None)
def _model_class(name: str) -> type["SystemModel"]:
    module, _, attr = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


@lru_cache(maxsize=256)
def _model_for(config: "SystemConfig") -> "SystemModel":
    return _model_class(config.model)(config)


def _clear() -> None:
    _model_class.cache_clear()
    _model_for.cache_clear()


_ON_CHANGE.append(_clear)


def model_of(config: "SystemConfig") -> "SystemModel":
    """The :class:`~cfenv.models.base.SystemModel` of ``config`` (one instance per config, cached)."""
    return _model_for(config)


__all__ = ["DEFAULT_MODEL", "MODELS", "model_names", "model_of", "register_model"]
