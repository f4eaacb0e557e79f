"""The paper's classical baselines: an MLP and the light/heavy CNNs (docs/model.md §6.1)."""

from __future__ import annotations

import torch
from torch import nn

from agents.models.base import PilotModel
from cfenv.config import SystemConfig

LIGHT_CNN_CHANNELS = (8, 16)
HEAVY_CNN_CHANNELS = (32, 64)
CNN_KERNEL = 3


class MLP(PilotModel):
    """Fully connected: M K -> hidden widths (ReLU) -> K tau_p."""

    def __init__(self, config: SystemConfig, hidden: tuple[int, ...] = (16,)) -> None:
        super().__init__(config)
        widths = [config.M * config.K, *hidden, config.K * config.tau_p]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.hidden = tuple(hidden)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def mlp_width_matching(config: SystemConfig, target_parameters: int) -> int:
    """Width of a one-hidden-layer MLP whose parameter count is closest to the target."""
    n_in, n_out = config.M * config.K, config.K * config.tau_p
    return max(1, round((target_parameters - n_out) / (n_in + 1 + n_out)))


class CNN(PilotModel):
    """Two 3x3 convolutions (ReLU, same padding) on beta as a 1-channel M x K image, then FC."""

    def __init__(self, config: SystemConfig, channels: tuple[int, int] = LIGHT_CNN_CHANNELS) -> None:
        super().__init__(config)
        c1, c2 = channels
        pad = CNN_KERNEL // 2
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, CNN_KERNEL, padding=pad), nn.ReLU(),
            nn.Conv2d(c1, c2, CNN_KERNEL, padding=pad), nn.ReLU(),
        )
        self.head = nn.Linear(c2 * config.M * config.K, config.K * config.tau_p)
        self.channels = tuple(channels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.unsqueeze(1)).flatten(1))
