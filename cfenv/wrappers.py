"""Views of :class:`cfenv.env.CellFreePilotEnv` for libraries that want flat vectors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cfenv.env import OBS_DB_HIGH, OBS_DB_LOW
from cfenv.units import normalise_db


class FlattenFadingObservation(gym.ObservationWrapper):
    """Flatten the ``(M, K)`` dB observation to ``(M * K,)`` and bring it near unit scale:
    (:func:`cfenv.units.normalise_db`, float32), for MLP policies
    such as Stable-Baselines3's ``MlpPolicy``."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        assert shape is not None
        size = int(np.prod(shape))
        low, high = normalise_db(OBS_DB_LOW), normalise_db(OBS_DB_HIGH)
        self.observation_space = spaces.Box(low, high, (size,), np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return normalise_db(observation.reshape(-1)).astype(np.float32)
