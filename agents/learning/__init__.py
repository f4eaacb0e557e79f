"""How neural agents learn: settings, data, losses, checkpoints, the trainer, and the
collapse diagnostics it logs.

* :mod:`agents.learning.settings`: :class:`TrainSettings` (everything a run depends on).
* :mod:`agents.learning.datasets`: seeded snapshots, teacher labels, the dataset cache.
* :mod:`agents.learning.losses`: supervised, unsupervised and REINFORCE losses.
* :mod:`agents.learning.checkpoints`: a trained model as data (``config.json`` + ``weights.pt``).
* :mod:`agents.learning.trainer`: :func:`train` (TensorBoard, atomic checkpoints, resume).
* :mod:`agents.learning.diagnostics`: distinct assignments, best constant assignment, collapse.
"""

import importlib
from typing import Any

_HOMES = {
    **dict.fromkeys(("CHECKPOINT", "CONFIG_JSON", "HISTORY_JSON", "WEIGHTS", "load_model", "save_model"), "checkpoints"),
    **dict.fromkeys(("LABEL_TEACHERS", "Dataset", "beta_db_tensor", "make_dataset"), "datasets"),
    **dict.fromkeys(("batch_loss", "supervised_loss", "unsupervised_loss"), "losses"),
    **dict.fromkeys(("LABEL_SOURCES", "LOSSES", "TrainSettings", "run_dir_for"), "settings"),
    **dict.fromkeys(("predict", "train", "validation_metrics"), "trainer"),
}
"""where each public name lives: the package loads a submodule (and torch) only when a name of it is used,
so ``from agents.learning.settings import TrainSettings`` (the command lines' --help) stays light"""


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = ["CHECKPOINT", "CONFIG_JSON", "HISTORY_JSON", "LABEL_SOURCES", "LABEL_TEACHERS", "LOSSES", "WEIGHTS",
           "Dataset", "TrainSettings", "batch_loss", "beta_db_tensor", "load_model", "make_dataset", "predict",
           "run_dir_for", "save_model", "supervised_loss", "train", "unsupervised_loss", "validation_metrics"]
