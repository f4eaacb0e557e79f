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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(params=SMALL_SIZES, ids=lambda s: "x".join(map(str, s)))
def small_config(request: pytest.FixtureRequest) -> SystemConfig:
    return SystemConfig.from_size(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)
