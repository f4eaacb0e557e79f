"""A trained model as data: ``config.json`` (what to build) + ``weights.pt`` (a ``state_dict``
loaded with ``weights_only=True``); never a pickled object."""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from agents.learning.settings import check_device
from agents.models import AssignmentModel, PilotModel, build_model, model_options
from agents.storage import atomic_write_bytes
from cfenv import __version__
from cfenv.config import SystemConfig

CHECKPOINT = "checkpoint.pt"
"""training state after every epoch (weights, optimiser, epoch, history): what ``resume`` reads"""
WEIGHTS = "weights.pt"
CONFIG_JSON = "config.json"
HISTORY_JSON = "history.json"


def read_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """What ``torch.save`` wrote into ``path`` (a dict), loaded with ``weights_only=True``: one-line
    ``ValueError`` naming the file for anything else (a pickled object, a truncated or corrupt file);
    a missing file stays ``FileNotFoundError``."""
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} is not a plain state dict (refused, nothing was unpickled: "
                         f"{str(err).splitlines()[0][:120]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError) as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {' '.join(str(err).split())[:120]}): "
                         "it is truncated or corrupt") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def check_finite(state: Mapping[str, Any], path: Path) -> None:
    """``ValueError`` naming ``path`` and the first tensor of ``state`` holding a NaN or an infinity."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()) \
                and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{path} holds non-finite weights (NaN or infinity in {key!r}): refused, retrain "
                             "the model")


def save_model(directory: Path, model: AssignmentModel, agent: str, config: SystemConfig,
               extra: dict[str, Any] | None = None) -> Path:
    """``config.json`` (agent, system, model options, normalisation) + ``weights.pt`` (state_dict)."""
    directory = Path(directory)
    normalisation = ({"mean": float(model.input_mean), "std": float(model.input_std)}
                     if isinstance(model, PilotModel) else None)
    meta = {"agent": agent, "system": dataclasses.asdict(config), "model": model_options(model),
            "normalisation": normalisation,
            "parameters": model.parameter_counts(), "cfpilot_version": __version__, **(extra or {})}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, lambda f: torch.save(state, f))
    atomic_write_bytes(directory / CONFIG_JSON, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return directory


def checkpoint_objective(meta: dict[str, Any]) -> str:
    """The objective a saved model was trained for: its ``config.json``'s ``system.objective``
    (``"sum"`` for checkpoints written before objectives existed)."""
    return str(meta.get("system", {}).get("objective", "sum"))


def load_model(directory: Path, device: str | torch.device = "cpu",
               expected: SystemConfig | None = None) -> tuple[AssignmentModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`; ``ValueError`` if it was trained for another size
    or, when ``expected`` is given, for another objective than ``expected.objective``."""
    directory = Path(directory)
    if not (directory / CONFIG_JSON).exists():
        raise FileNotFoundError(f"no {CONFIG_JSON} in {directory}")
    meta = json.loads((directory / CONFIG_JSON).read_text())
    config = SystemConfig(**meta["system"])
    if expected is not None and checkpoint_objective(meta) != expected.objective:
        raise ValueError(f"checkpoint {directory} was trained for the {checkpoint_objective(meta)!r} objective, "
                         f"not {expected.objective!r}")
    model = build_model(meta["agent"], config, **meta["model"])
    if expected is not None and expected.size != config.size and not model.size_generalisable:
        raise ValueError(f"checkpoint {directory} was trained for (M, L, K, tau_p) = {config.size}, "
                         f"not {expected.size}")
    state = read_state(directory / WEIGHTS)
    check_finite(state, directory / WEIGHTS)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise ValueError(f"{directory / WEIGHTS} does not fit the model of {directory / CONFIG_JSON}: "
                         f"{' '.join(str(err).split())[:300]}") from None
    return model.to(check_device(device) if isinstance(device, str) else device), meta


