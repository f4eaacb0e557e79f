"""Training and validation data: seeded snapshots, teacher labels, a cache, the models' input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.base import Agent, canonical_pilots, stream_rng
from agents.heuristics import MasterAPAgent
from agents.search import ExhaustiveAgent, LocalSearchAgent
from agents.storage import atomic_write_bytes
from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import SystemConfig
from cfenv.units import fading_db, size_slug

LABEL_TEACHERS: dict[str, type[Agent]] = {"master-ap": MasterAPAgent, "exhaustive": ExhaustiveAgent,
                                          "local-search": LocalSearchAgent}
"""the agents whose assignments supervised training imitates (``labels``)"""


# ------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class Dataset:
    """Snapshots and (optional) canonical label assignments."""

    snapshots: Snapshot
    labels: np.ndarray | None

    def __len__(self) -> int:
        return self.snapshots.beta.shape[0]


def make_dataset(config: SystemConfig, n: int, seed: int, stream: int, labels: str | None = None,
                 cache_dir: Path | None = None, progress: bool = False) -> Dataset:
    """``n`` snapshots from ``stream_rng(seed, stream, *size)`` and, if asked, canonical labels
    from the agent ``labels``; cached under ``cache_dir`` when given."""
    key = f"{size_slug(config.size)}_stream{stream}_n{n}_seed{seed}_{labels or 'nolabels'}.npz"
    path = Path(cache_dir) / key if cache_dir is not None else None
    if path is not None and path.exists():
        with np.load(path) as data:
            snaps = Snapshot(data["beta"], data["ap_positions"], data["ue_positions"])
            return Dataset(snaps, data["labels"] if "labels" in data else None)
    snaps = draw_snapshots(config, stream_rng(seed, stream, *config.size), (n,))
    label_array = None
    if labels is not None:
        teacher = LABEL_TEACHERS[labels](config=config, seed=seed)
        if labels == "exhaustive" and progress:
            from tqdm.auto import tqdm

            label_array = np.concatenate([teacher.assign(snaps[i:i + 1]) for i in
                                          tqdm(range(n), desc="EPAS labels", leave=False)])
        else:
            label_array = teacher.assign(snaps)
        label_array = canonical_pilots(label_array)
    if path is not None:
        arrays = {"beta": snaps.beta, "ap_positions": snaps.ap_positions, "ue_positions": snaps.ue_positions}
        if label_array is not None:
            arrays["labels"] = label_array
        atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
    return Dataset(snaps, label_array)


def beta_db_tensor(beta: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(..., M, K)`` linear beta -> float32 dB tensor (the models' input)."""
    return torch.as_tensor(fading_db(beta), dtype=torch.float32, device=device)


