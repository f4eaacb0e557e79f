"""Training and validation data: seeded snapshots, teacher labels, a cache, the models' input."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.base import Agent, canonical_pilots, stream_rng
from agents.heuristics import MasterAPAgent
from agents.search import ExhaustiveAgent, LocalSearchAgent
from agents.storage import atomic_write_bytes
from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
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


LABEL_CHUNK_S = 30.0
"""labelling expected to take longer than this is announced with an estimate"""


def make_dataset(config: SystemConfig, n: int, seed: int, stream: int, labels: str | None = None,
                 cache_dir: Path | None = None, progress: bool = False) -> Dataset:
    """``n`` snapshots from ``stream_rng(seed, stream, *size)`` and, if asked, canonical labels
    from the agent ``labels``; cached under ``cache_dir`` when given.

    The snapshots are always drawn (cheap) and a cached file is used only if its snapshots
    are exactly those and its labels have the right shape and range; otherwise it is rebuilt.
    Exhaustive labels (about a second per snapshot at K = 15) are computed one snapshot at a
    time, announced with an estimate, and saved as they come (``<key>.partial.npz``), so an
    interrupted labelling job continues where it stopped."""
    objective = config.objective.tag if labels else ""  # teachers optimise it
    system = f"_{config.system_tag}" if config.system_tag else ""  # another model or link: other snapshots, labels
    key = f"{size_slug(config.size)}{system}_stream{stream}_n{n}_seed{seed}_{labels or 'nolabels'}{objective}.npz"
    path = Path(cache_dir) / key if cache_dir is not None else None
    snaps = model_of(config).draw(stream_rng(seed, stream, *config.size), (n,))
    if path is not None and path.exists():
        cached = _read_cache(path, snaps, config, labels is not None)
        if cached is not None:
            return cached
        print(f"dataset cache {path} does not match its snapshots or labels: rebuilt")
    label_array = None
    if labels is not None:
        teacher = LABEL_TEACHERS[labels](config=config, seed=seed)
        if labels == "exhaustive":
            label_array = _labels_one_by_one(teacher, snaps, config, path, progress)
        else:
            label_array = teacher.assign(snaps)
        label_array = canonical_pilots(label_array)
    if path is not None:
        arrays = {"beta": snaps.beta, "ap_positions": snaps.ap_positions, "ue_positions": snaps.ue_positions}
        if label_array is not None:
            arrays["labels"] = label_array
        atomic_write_bytes(path, lambda f: np.savez(f, **arrays))
        _partial(path).unlink(missing_ok=True)
    return Dataset(snaps, label_array)


def _partial(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".npz") + ".partial.npz")


UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
"""what reading a truncated or corrupt cache file raises (it is then rebuilt)"""


def _read_cache(path: Path, snaps: Snapshot, config: SystemConfig, with_labels: bool) -> Dataset | None:
    """The cached dataset if it holds exactly ``snaps`` (and valid labels when wanted), else None."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not np.array_equal(data["beta"], snaps.beta):
                return None
            found = data["labels"] if "labels" in data else None
    except UNREADABLE:
        return None
    if with_labels and not _valid_labels(found, len(snaps.beta), config):
        return None
    return Dataset(snaps, found if with_labels else None)


def _valid_labels(labels: np.ndarray | None, n: int, config: SystemConfig) -> bool:
    return (labels is not None and labels.shape == (n, config.K) and labels.dtype.kind in "iu"
            and (labels.size == 0 or (labels.min() >= 0 and labels.max() < config.tau_p)))


def _labels_one_by_one(teacher: Agent, snaps: Snapshot, config: SystemConfig, path: Path | None,
                       progress: bool) -> np.ndarray:
    """Label snapshot by snapshot, resuming from and saving to the partial cache file."""
    n = len(snaps.beta)
    done = np.zeros((0, config.K), dtype=np.int64)
    if path is not None and _partial(path).exists():
        try:
            with np.load(_partial(path), allow_pickle=False) as data:
                if np.array_equal(data["beta"], snaps.beta[:len(data["labels"])]) and \
                        _valid_labels(data["labels"], len(data["labels"]), config):
                    done = data["labels"]
        except UNREADABLE:
            pass
    from tqdm.auto import tqdm

    rows = list(done)
    started = time.perf_counter()
    bar = tqdm(range(len(done), n), desc=f"{teacher.name} labels", leave=False, disable=not progress,
               initial=len(done), total=n)
    try:
        for i in bar:
            rows.append(_label_one(teacher, snaps, i, rows, done, n, started, path))
    except KeyboardInterrupt:
        bar.close()
        if path is not None and rows:
            labels = np.asarray(rows, dtype=np.int64)
            atomic_write_bytes(_partial(path), lambda f: np.savez(f, beta=snaps.beta[:len(labels)], labels=labels))
        print(f"\ninterrupted: {len(rows)} of {n} labels are saved"
              f"{f' in {_partial(path)}' if path else ''}; run the same command again to continue")
        raise
    return np.asarray(rows, dtype=np.int64).reshape(n, config.K)


def _label_one(teacher: Agent, snaps: Snapshot, i: int, rows: list, done: np.ndarray, n: int, started: float,
               path: Path | None) -> np.ndarray:
    """Label snapshot ``i``; after the first, announce a long job; every 16th, save progress."""
    row = teacher.assign(snaps[i:i + 1])[0]
    if i == len(done):
        estimate = (time.perf_counter() - started) * (n - len(done))
        if estimate > LABEL_CHUNK_S:
            print(f"labelling {n - len(done)} snapshots with {teacher.name}: about {estimate / 60:.0f} min "
                  f"(saved as they come in {_partial(path) if path else 'memory only'}; Ctrl-C and run again "
                  "to continue)")
    if path is not None and (i % 16 == 15 or i == n - 1):
        labels = np.asarray([*rows, row], dtype=np.int64)
        atomic_write_bytes(_partial(path), lambda f: np.savez(f, beta=snaps.beta[:len(labels)], labels=labels))
    return row


def beta_db_tensor(beta: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """``(..., M, K)`` linear beta -> float32 dB tensor (the models' input)."""
    return torch.as_tensor(fading_db(beta), dtype=torch.float32, device=device)


