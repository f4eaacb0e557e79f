"""Pins on what the harness publishes: the snapshots every score is computed on.

Training and validation snapshots come from ``agents.learning.datasets.make_dataset`` and
test snapshots from ``agents.lab.evaluation.draw_test_snapshots``, each on its own stream of
``agents.base.stream_rng`` (docs/model.md §3). No snapshot may appear twice: not within a set,
not across the three sets, not across seeds or sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.base import TEST_STREAM, TRAIN_STREAM, VALIDATION_STREAM, stream_rng
from agents.lab.evaluation import draw_test_snapshots
from agents.learning.datasets import make_dataset
from cfenv.channel import draw_snapshots
from cfenv.config import SystemConfig

SEEDS = [0, 1, 2, 12345]
SIZES = [(10, 2, 6, 3), (30, 2, 20, 10), (4, 1, 2, 5)]
N_TRAIN, N_VALIDATION, N_TEST = 16, 8, 8


def published(config: SystemConfig, seed: int) -> dict[str, np.ndarray]:
    """Fading of the training, validation and test snapshots of one (size, seed), ``(n, M, K)``."""
    return {
        "train": make_dataset(config, N_TRAIN, seed, TRAIN_STREAM).snapshots.beta,
        "validation": make_dataset(config, N_VALIDATION, seed, VALIDATION_STREAM).snapshots.beta,
        "test": draw_test_snapshots(config, N_TEST, seed).beta,
    }


def test_train_validation_and_test_snapshots_are_pairwise_distinct():
    seen: dict[bytes, str] = {}
    for size in SIZES:
        config = SystemConfig.from_size(size)
        for seed in SEEDS:
            for kind, beta in published(config, seed).items():
                assert beta.shape[1:] == (config.M, config.K)
                for i, one in enumerate(beta):
                    key = one.tobytes()
                    where = f"{kind} snapshot {i} of seed {seed} at {size}"
                    assert key not in seen, f"{where} repeats {seen[key]}"
                    seen[key] = where
    assert len(seen) == len(SIZES) * len(SEEDS) * (N_TRAIN + N_VALIDATION + N_TEST)


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_published_snapshots_come_from_their_documented_streams(size):
    config = SystemConfig.from_size(size)
    seed = 7
    train = make_dataset(config, N_TRAIN, seed, TRAIN_STREAM).snapshots
    np.testing.assert_array_equal(
        train.beta, draw_snapshots(config, stream_rng(seed, TRAIN_STREAM, *size), (N_TRAIN,)).beta)
    validation = make_dataset(config, N_VALIDATION, seed, VALIDATION_STREAM).snapshots
    np.testing.assert_array_equal(
        validation.ue_positions,
        draw_snapshots(config, stream_rng(seed, VALIDATION_STREAM, *size), (N_VALIDATION,)).ue_positions)
    test = draw_test_snapshots(config, N_TEST, seed)
    for i in (0, N_TEST - 1):
        alone = draw_snapshots(config, stream_rng(seed, TEST_STREAM, *size, i))
        np.testing.assert_array_equal(test.beta[i], alone.beta)
    # any chunk of the test snapshots is the same snapshots (remote tasks draw their own chunk)
    np.testing.assert_array_equal(draw_test_snapshots(config, N_TEST, seed, start=3).beta, test.beta[3:])
