"""How neural agents learn: settings, data, losses, checkpoints, the trainer, and the
collapse diagnostics it logs.

* :mod:`agents.learning.settings`: :class:`TrainSettings` (everything a run depends on).
* :mod:`agents.learning.datasets`: seeded snapshots, teacher labels, the dataset cache.
* :mod:`agents.learning.losses`: supervised, unsupervised and REINFORCE losses.
* :mod:`agents.learning.checkpoints`: a trained model as data (``config.json`` + ``weights.pt``).
* :mod:`agents.learning.trainer`: :func:`train` (TensorBoard, atomic checkpoints, resume).
* :mod:`agents.learning.diagnostics`: distinct assignments, best constant assignment, collapse.
"""

from agents.learning.checkpoints import CHECKPOINT, CONFIG_JSON, HISTORY_JSON, WEIGHTS, load_model, save_model
from agents.learning.datasets import LABEL_TEACHERS, Dataset, beta_db_tensor, make_dataset
from agents.learning.losses import batch_loss, supervised_loss, unsupervised_loss
from agents.learning.settings import LABEL_SOURCES, LOSSES, TrainSettings, run_dir_for
from agents.learning.trainer import predict, train, validation_metrics

__all__ = ["CHECKPOINT", "CONFIG_JSON", "HISTORY_JSON", "LABEL_SOURCES", "LABEL_TEACHERS", "LOSSES", "WEIGHTS",
           "Dataset", "TrainSettings", "batch_loss", "beta_db_tensor", "load_model", "make_dataset", "predict",
           "run_dir_for", "save_model", "supervised_loss", "train", "unsupervised_loss", "validation_metrics"]
