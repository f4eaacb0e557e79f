"""Shared fixtures and tolerances."""

from __future__ import annotations

import numpy as np
import pytest

from cfenv.config import SystemConfig

RTOL_FLOAT64 = 1e-12
"""relative agreement between float64 implementations of the same formula"""
RTOL_FLOAT32 = 1e-4
"""relative agreement of a float32 evaluation with the float64 reference"""

SMALL_SIZES = [(2, 1, 3, 2), (10, 2, 6, 3), (4, 2, 5, 5), (6, 1, 7, 2)]


def single_moves(pilots: np.ndarray, tau_p: int) -> np.ndarray:
    """``(K * tau_p, K)``: assignment ``pilots`` (K,) with user k on pilot t in row k * tau_p + t
    (a user's own pilot included), the brute-force move neighbourhood of the search tests."""
    K = len(pilots)
    moved = np.repeat(np.asarray(pilots)[None], K * tau_p, 0).reshape(K, tau_p, K)
    moved[np.arange(K), :, np.arange(K)] = np.arange(tau_p)
    return moved.reshape(K * tau_p, K)


def pair_swaps(pilots: np.ndarray) -> np.ndarray:
    """``(K (K - 1) / 2, K)``: ``pilots`` with users k < j exchanging pilots, one row per pair."""
    k, j = np.triu_indices(len(pilots), 1)
    swapped = np.repeat(np.asarray(pilots)[None], len(k), 0)
    rows = np.arange(len(k))
    swapped[rows, k], swapped[rows, j] = pilots[j], pilots[k]
    return swapped


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(params=SMALL_SIZES, ids=lambda s: "x".join(map(str, s)))
def small_config(request: pytest.FixtureRequest) -> SystemConfig:
    return SystemConfig.from_size(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.cuda`` tests where torch sees no CUDA device (CI has none)."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
