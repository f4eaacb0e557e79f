"""A trained model as data: ``config.json`` (what to build) + ``weights.pt`` (a ``state_dict``
loaded with ``weights_only=True``); never a pickled object."""

from __future__ import annotations

import dataclasses
import json
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
    state = torch.load(directory / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(check_device(device) if isinstance(device, str) else device), meta


