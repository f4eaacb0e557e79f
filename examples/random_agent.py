"""Run a random pilot assignment on CellFreePilot-v0 and print the sum rates."""

import gymnasium as gym
import numpy as np

import cfenv  # noqa: F401  (registers CellFreePilot-v0)

env = gym.make("CellFreePilot-v0")  # (M, L, K, tau_p) = (10, 2, 6, 3)
env.action_space.seed(0)
rates = []
for seed in range(10):
    obs, info = env.reset(seed=seed)
    _, reward, terminated, truncated, info = env.step(env.action_space.sample())
    rates.append(reward)
    print(f"snapshot {seed}: pilots {info['pilots'].tolist()}  sum rate {reward:7.2f} Mbit/s")
print(f"mean sum rate of random assignment: {np.mean(rates):.2f} Mbit/s")
