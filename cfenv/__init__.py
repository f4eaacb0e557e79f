"""cfenv: the cell-free massive MIMO pilot-assignment environment and its physics.

``import cfenv`` registers ``CellFreePilot-v0`` and ``CellFreePilotSequential-v0``
(one user per step) with Gymnasium; it loads numpy and gymnasium only (no torch,
PennyLane or Stable-Baselines3).
"""

from gymnasium.envs.registration import register, registry

from cfenv.channel import Snapshot, draw_snapshots
from cfenv.config import PRESETS, TABLE2_SIZES, SystemConfig
from cfenv.env import CellFreePilotEnv, CellFreePilotVectorEnv
from cfenv.rates import relaxed_sum_rate, relaxed_user_rates, sum_rate, user_rates
from cfenv.sequential import CellFreePilotSequentialEnv
from cfenv.units import MBPS, Size, parse_size, size_label, size_slug
from cfenv.wrappers import FlattenFadingObservation

__version__ = "0.8.0"

ENV_ID = "CellFreePilot-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="cfenv.env:CellFreePilotEnv",
        vector_entry_point="cfenv.env:CellFreePilotVectorEnv",
    )

SEQUENTIAL_ENV_ID = "CellFreePilotSequential-v0"

if SEQUENTIAL_ENV_ID not in registry:
    register(id=SEQUENTIAL_ENV_ID, entry_point="cfenv.sequential:CellFreePilotSequentialEnv")

__all__ = [
    "ENV_ID",
    "MBPS",
    "PRESETS",
    "SEQUENTIAL_ENV_ID",
    "Size",
    "TABLE2_SIZES",
    "CellFreePilotEnv",
    "CellFreePilotSequentialEnv",
    "CellFreePilotVectorEnv",
    "FlattenFadingObservation",
    "Snapshot",
    "SystemConfig",
    "draw_snapshots",
    "parse_size",
    "relaxed_sum_rate",
    "relaxed_user_rates",
    "size_label",
    "size_slug",
    "sum_rate",
    "user_rates",
]
