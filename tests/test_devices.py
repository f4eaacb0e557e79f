"""Torch devices: ``auto`` resolution, checkpoints that move between devices, CUDA paths.

The CUDA tests are marked ``@pytest.mark.cuda`` and skipped where no GPU is visible (CI);
the same suite runs them on a GPU machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.learning.settings import check_device
from agents.registry import resolve
from cfenv import SystemConfig, draw_snapshots

CUDA = torch.cuda.is_available()


def test_auto_resolves_to_what_is_available() -> None:
    assert check_device("auto") == ("cuda" if CUDA else "cpu")
    assert check_device("cpu") == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "gpu", "", "cuda:x", "mps"])
def test_bad_device_is_one_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="device"):
        check_device(bad)


@pytest.mark.skipif(CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        check_device("cuda")


def test_neural_agents_resolve_auto() -> None:
    agent = resolve("mlp").cls(device="auto")
    assert agent.device == ("cuda" if CUDA else "cpu")


def test_rl_mlp_policies_stay_on_the_cpu_under_auto() -> None:
    assert resolve("ppo").cls(device="auto").device == "cpu"
    assert resolve("ppo-hqcnn").cls(device="auto").device == ("cuda" if CUDA else "cpu")


def _tiny_fit(name: str, device: str, tmp_path) -> tuple[object, str]:
    """A one-epoch model and its run folder."""
    cfg = SystemConfig(M=4, L=1, K=3, tau_p=2)
    agent = resolve(name).cls(config=cfg, seed=0, device=device)
    summary = agent.fit(cfg, train_snapshots=16, val_snapshots=8, epochs=1, batch_size=8, runs_dir=tmp_path,
                        progress=False)
    return agent, summary["run_dir"]


@pytest.mark.parametrize("name", ["mlp", "gnn"])
def test_checkpoint_trained_on_cpu_loads_with_auto(name: str, tmp_path) -> None:
    agent, run_dir = _tiny_fit(name, "cpu", tmp_path)
    loaded = type(agent).load(run_dir, device="auto")
    snaps = draw_snapshots(agent.config, np.random.default_rng(0), (4,))
    assert np.array_equal(agent.assign(snaps), loaded.assign(snaps))


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["mlp", "gnn", "hqcnn-ar"])
def test_training_on_cuda_and_loading_on_the_cpu(name: str, tmp_path) -> None:
    agent, run_dir = _tiny_fit(name, "cuda", tmp_path)
    snaps = draw_snapshots(agent.config, np.random.default_rng(0), (4,))
    on_gpu = agent.assign(snaps)
    loaded = type(agent).load(run_dir, device="cpu")
    same = (on_gpu == loaded.assign(snaps)).all(axis=1)
    assert same.mean() >= 0.75  # float32 kernels differ between devices; near-ties may flip


@pytest.mark.parametrize("objective", ["sum", "min", "proportional"])
def test_reinforce_rewards_on_the_torch_path_equal_the_kernel(objective: str) -> None:
    """The torch rate path REINFORCE scores with on a CUDA model gives the kernel's rewards (checked
    here on CPU tensors; the dispatch on the device is covered by the cuda-marked training test)."""
    from cfenv.rates import objective_value

    cfg = SystemConfig(M=6, L=2, K=5, tau_p=3, objective=objective)
    rng = np.random.default_rng(3)
    beta = draw_snapshots(cfg, rng, (4,)).beta
    pilots = rng.integers(0, 3, (8, 5))
    beta_rep = np.repeat(beta, 2, axis=0)
    on_kernel = objective_value(beta_rep, pilots, cfg)
    on_torch = objective_value(torch.as_tensor(beta).repeat_interleave(2, 0), torch.as_tensor(pilots), cfg)
    np.testing.assert_allclose(on_torch.numpy(), on_kernel, rtol=1e-10)
