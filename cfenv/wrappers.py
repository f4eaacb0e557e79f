"""Views of :class:`cfenv.env.CellFreePilotEnv` for libraries that want flat vectors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cfenv.env import OBS_DB_HIGH, OBS_DB_LOW

NORMALISED_DB_CENTER = -120.0
"""dB value mapped to 0 by :class:`FlattenFadingObservation` (typical fading lies in -160..-80 dB)"""
NORMALISED_DB_SCALE = 20.0
"""dB per unit after normalisation"""


class FlattenFadingObservation(gym.ObservationWrapper):
    """Flatten the ``(M, K)`` dB observation to ``(M * K,)`` and bring it near unit scale:
    ``(beta_db - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE`` (float32), for MLP policies
    such as Stable-Baselines3's ``MlpPolicy``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        assert shape is not None
        size = int(np.prod(shape))
        low = (OBS_DB_LOW - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE
        high = (OBS_DB_HIGH - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE
        self.observation_space = spaces.Box(low, high, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        flat = (observation.reshape(-1) - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE
        return flat.astype(np.float32)
