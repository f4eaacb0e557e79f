"""SB3 callbacks of the RL agents: a progress bar, validation on fixed snapshots, thread limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import TensorBoardOutputFormat

from agents.base import (
    canonical_pilots,
)
from agents.rl.envs import master_ap_sum_rate_mbps
from cfenv.channel import Snapshot
from cfenv.models import model_of
from cfenv.units import MBPS


class _Progress(BaseCallback):
    """A tqdm bar over environment steps (SB3's own bar needs ``rich``)."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.total, self.desc = total, desc
        self.bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step")

    def _on_step(self) -> bool:
        self.bar.update(min(self.num_timesteps, self.total) - self.bar.n)  # SB3 rounds up to N steps
        return True

    def _on_training_end(self) -> None:
        self._on_step()
        self.bar.close()


class _Validation(BaseCallback):
    """Deterministic validation sum rate on fixed snapshots: at the start, every ``every``
    steps and at the end; recorded as ``val/*`` in SB3's logger (TensorBoard) and kept in
    :attr:`history`. Also writes the training settings as a text table at the start.
    ``on_evaluate(timesteps)`` runs after every validation (the agent's checkpoint)."""

    def __init__(self, agent: Any, snapshots: Snapshot, every: int, settings: dict[str, Any],
                 progress: _Progress | None = None, on_evaluate: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self.agent, self.snapshots, self.every, self.settings = agent, snapshots, max(int(every), 1), settings
        self.progress = progress
        self.on_evaluate = on_evaluate
        self.master = float(master_ap_sum_rate_mbps(snapshots, agent._trained_config()).mean())
        self.history: list[dict[str, float]] = []
        self._next = self.every

    def evaluate(self) -> dict[str, float]:
        cfg = self.agent._trained_config()
        pilots = self.agent._predict(self.snapshots.beta, cfg)
        rate = float((model_of(cfg).sum_rate(self.snapshots, pilots) / MBPS).mean())
        metrics = {"val/sum_rate_mbps": rate, "val/ratio_to_master_ap": rate / self.master,
                   "val/distinct_assignments": float(len({tuple(p) for p in canonical_pilots(pilots)}))}
        for key, value in metrics.items():
            self.logger.record(key, value)
        self.history.append({"timesteps": int(self.num_timesteps), **metrics})
        if self.progress is not None and self.progress.bar is not None:
            self.progress.bar.set_postfix(val=f"{rate:.2f}")
        if self.on_evaluate is not None:
            self.on_evaluate(int(self.num_timesteps))
        return metrics

    def _on_training_start(self) -> None:
        for fmt in self.logger.output_formats:
            if isinstance(fmt, TensorBoardOutputFormat):
                table = "\n".join(f"|{k}|{v}|" for k, v in self.settings.items())
                fmt.writer.add_text("hyperparameters", "|parameter|value|\n|-|-|\n" + table)
        self.evaluate()
        self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        # a validation at the last step ran before the last update: replace it
        if len(self.history) > 1 and self.history[-1]["timesteps"] == self.num_timesteps:
            self.history.pop()
        self.evaluate()
        self.logger.dump(self.num_timesteps)


