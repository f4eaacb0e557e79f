"""QCNN layer: wiring, parameter counts, embedding convention, backend agreement, gradients."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import agents.models.quantum as quantum
from agents.models.quantum import (
    QCNNLayer,
    count_quantum_parameters,
    embed_states,
    final_wire,
    output_width,
    qcnn_wiring,
    statevector,
    weight_shapes,
)

ATOL_BACKENDS = 1e-10
"""float64 agreement of the two backends (outputs and gradients); observed ~1e-14"""
ATOL_FLOAT64 = 1e-12
"""float64 agreement with closed forms"""

SHARES = ("level", "all", "block")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """These tiny batches gain nothing from intra-op threads, and on a 2-core machine shared
    with another busy process two threads stall each other: one test measured 41 s instead
    of 1 s. So this file runs single-threaded and restores the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded_layer(n: int, share: str, readout: str, backend: str, seed: int = 7) -> QCNNLayer:
    torch.manual_seed(seed)
    return QCNNLayer(n, share, readout, backend=backend)


def random_angles(batch: int, n: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * math.pi


def outputs_and_grads(layer: QCNNLayer, h: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Outputs, and gradients of a random linear functional of them w.r.t. h, conv, pool."""
    h = h.detach().clone().requires_grad_(True)
    y = layer(h)
    weights = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(11))
    grads = torch.autograd.grad((y * weights).sum(), [h, layer.conv, layer.pool])
    return (y.detach(), *grads)


# --------------------------------------------------------------------------- wiring


def test_wiring_for_8_qubits_is_hur_et_al_from_spec() -> None:
    levels = qcnn_wiring(8)
    assert [lv.conv for lv in levels] == [
        [(0, 7), (0, 1), (2, 3), (4, 5), (6, 7), (1, 2), (3, 4), (5, 6)],
        [(0, 6), (0, 2), (4, 6), (2, 4)],
        [(0, 4)],
    ]
    assert [lv.pool for lv in levels] == [[(1, 0), (3, 2), (5, 4), (7, 6)], [(2, 0), (6, 4)], [(0, 4)]]
    assert final_wire(8) == 4


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_every_level_halves_the_active_wires_down_to_one_survivor(n: int) -> None:
    active = set(range(n))
    levels = qcnn_wiring(n)
    assert len(levels) == int(math.log2(n))
    for level in levels:
        assert all(set(pair) <= active and pair[0] != pair[1] for pair in level.conv + level.pool)
        controls = [c for c, _ in level.pool]
        targets = [t for _, t in level.pool]
        assert len(set(controls)) == len(controls) == len(active) // 2
        assert set(controls) | set(targets) == active and not set(controls) & set(targets)
        active = set(targets)
    assert active == {final_wire(n)}


@pytest.mark.parametrize("n", [0, 1, 3, 6, 12])
def test_wiring_of_a_non_power_of_two_raises_value_error(n: int) -> None:
    with pytest.raises(ValueError, match="n_qubits"):
        qcnn_wiring(n)


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("n", [4, 8, 16])
def test_parameter_counts_match_closed_formulas(n: int) -> None:
    levels = int(math.log2(n))
    assert weight_shapes(n, "level") == {"conv": (levels, 15), "pool": (levels, 2)}
    assert weight_shapes(n, "all") == {"conv": (1, 15), "pool": (1, 2)}
    assert weight_shapes(n, "block") == {"conv": (2 * n - 3, 15), "pool": (n - 1, 2)}
    assert count_quantum_parameters(n, "level") == 17 * levels
    assert count_quantum_parameters(n, "all") == 17
    assert count_quantum_parameters(n, "block") == 15 * (2 * n - 3) + 2 * (n - 1)
    counts = {share: count_quantum_parameters(n, share) for share in SHARES}
    assert counts["block"] > counts["level"] > counts["all"]
    for share in SHARES:
        layer = QCNNLayer(n, share)
        assert sum(p.numel() for p in layer.parameters()) == count_quantum_parameters(n, share)


def test_block_sharing_at_8_qubits_has_13_conv_and_7_pool_blocks() -> None:
    # the paper's T * sum_i 2^i (docs/model.md eq. (6.5)) counts 14 conv blocks; the built wiring has 13 (see count_quantum_parameters).
    assert sum(len(lv.conv) for lv in qcnn_wiring(8)) == 13
    assert count_quantum_parameters(8, "block") == 13 * 15 + 7 * 2 == 209


@pytest.mark.parametrize("n", [4, 8, 16])
def test_output_width_is_n_for_all_and_one_for_final(n: int) -> None:
    assert output_width(n, "all") == n and output_width(n, "final") == 1
    h = random_angles(3, n)
    assert QCNNLayer(n, readout="all")(h).shape == (3, n)
    assert QCNNLayer(n, readout="final")(h).shape == (3, 1)


# --------------------------------------------------------------------------- embedding convention


def test_embedding_is_ry_of_twice_the_angle_so_one_qubit_has_z_equal_cos_2h() -> None:
    # docs/model.md eq. (6.2): qubit in cos(h)|0> + sin(h)|1>, i.e. RY(2h)|0> in PennyLane's convention.
    h = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    state = embed_states(h)
    assert torch.allclose(state, torch.stack([torch.cos(h[:, 0]), torch.sin(h[:, 0])], -1).to(state.dtype))
    z = state.abs()[:, 0] ** 2 - state.abs()[:, 1] ** 2
    assert torch.allclose(z, torch.cos(2 * h[:, 0]), atol=ATOL_FLOAT64)


def zero_weight_readout(n: int) -> list[tuple[int, int]]:
    """With zero weights a conv block is CNOT CNOT CNOT = SWAP and a pool block is X on the
    control; so wire w ends up holding input qubit src[w], with sign -1 per X: (src, sign)."""
    content = {w: (w, 1) for w in range(n)}
    for level in qcnn_wiring(n):
        for a, b in level.conv:
            content[a], content[b] = content[b], content[a]
        for control, _ in level.pool:
            src, sign = content[control]
            content[control] = (src, -sign)
    return [content[w] for w in range(n)]


@pytest.mark.parametrize("backend", ["torch", "pennylane"])
@pytest.mark.parametrize("n", [4, 8])
def test_zero_weights_give_signed_cos_2h_of_the_swapped_inputs(backend: str, n: int) -> None:
    layer = QCNNLayer(n, "block", "all", backend=backend)
    with torch.no_grad():
        layer.conv.zero_()
        layer.pool.zero_()
    h = random_angles(4, n)
    expected = torch.stack([sign * torch.cos(2 * h[:, src]) for src, sign in zero_weight_readout(n)], -1)
    assert torch.allclose(layer(h), expected, atol=ATOL_FLOAT64)


# --------------------------------------------------------------------------- backends agree


@pytest.mark.parametrize("readout", ["all", "final"])
@pytest.mark.parametrize("share", SHARES)
@pytest.mark.parametrize("n", [4, 8])
def test_backends_agree_on_outputs_and_gradients(n: int, share: str, readout: str) -> None:
    layer_torch = seeded_layer(n, share, readout, "torch")
    layer_pl = seeded_layer(n, share, readout, "pennylane")
    h = random_angles(5, n)
    for a, b in zip(outputs_and_grads(layer_torch, h), outputs_and_grads(layer_pl, h)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=0, atol=ATOL_BACKENDS)


def test_backends_agree_at_16_qubits() -> None:
    layer_torch = seeded_layer(16, "block", "final", "torch")
    layer_pl = seeded_layer(16, "block", "final", "pennylane")
    h = random_angles(2, 16)
    for a, b in zip(outputs_and_grads(layer_torch, h), outputs_and_grads(layer_pl, h)):
        assert torch.allclose(a, b, rtol=0, atol=ATOL_BACKENDS)


@pytest.mark.parametrize("n", [8, 16])
def test_torch_backward_by_uncomputing_matches_backward_from_saved_states(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = seeded_layer(n, "block", "all", "torch")
    h = random_angles(3, n)
    saved = outputs_and_grads(layer, h)
    monkeypatch.setattr(statevector, "_STORE_LIMIT_BYTES", 0)
    for a, b in zip(saved, outputs_and_grads(layer, h)):
        assert torch.allclose(a, b, rtol=0, atol=ATOL_BACKENDS)


def test_torch_gradients_match_finite_differences() -> None:
    layer = seeded_layer(4, "block", "final", "torch")
    h = random_angles(2, 4).requires_grad_(True)
    conv = layer.conv.detach().clone().requires_grad_(True)
    pool = layer.pool.detach().clone().requires_grad_(True)

    def run(x: torch.Tensor, c: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(layer, {"conv": c, "pool": p}, (x,))

    assert torch.autograd.gradcheck(run, (h, conv, pool))


@pytest.mark.parametrize("readout", ["all", "final"])
@pytest.mark.parametrize("share", SHARES)
def test_gradient_reaches_every_weight(share: str, readout: str) -> None:
    layer = seeded_layer(8, share, readout, "torch")
    layer(random_angles(16, 8)).sum().backward()
    for grad in (layer.conv.grad, layer.pool.grad):
        assert (grad.abs().amax(dim=1) > 1e-8).all()


# --------------------------------------------------------------------------- weights and state_dict


@pytest.mark.parametrize("share", SHARES)
def test_state_dict_from_torch_backend_loads_into_pennylane_backend(share: str) -> None:
    layer_torch = seeded_layer(8, share, "all", "torch", seed=1)
    layer_pl = seeded_layer(8, share, "all", "pennylane", seed=2)
    state = layer_torch.state_dict()
    assert set(state) == {"conv", "pool"}
    layer_pl.load_state_dict(state)
    h = random_angles(4, 8)
    assert torch.allclose(layer_torch(h), layer_pl(h), rtol=0, atol=ATOL_BACKENDS)
    assert set(layer_pl.state_dict()) == {"conv", "pool"}
    assert [name for name, _ in layer_pl.named_parameters()] == ["conv", "pool"]


def test_weights_are_uniform_in_0_2pi_from_the_global_seed_whatever_the_backend() -> None:
    a = seeded_layer(8, "block", "all", "torch")
    b = seeded_layer(8, "block", "all", "pennylane")
    assert torch.equal(a.conv, b.conv) and torch.equal(a.pool, b.pool)
    for w in (a.conv, a.pool):
        assert w.dtype == torch.float64 and w.min() >= 0 and w.max() < 2 * math.pi
    assert not torch.equal(seeded_layer(8, "block", "all", "torch", seed=8).conv, a.conv)


@pytest.mark.parametrize("backend", ["torch", "pennylane"])
def test_float32_layer_returns_float32_close_to_float64(backend: str) -> None:
    layer64 = seeded_layer(4, "level", "all", backend)
    torch.manual_seed(7)
    layer32 = QCNNLayer(4, backend=backend, dtype=torch.float32)
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    h = random_angles(3, 4)
    y32 = layer32(h.float())
    assert y32.dtype == torch.float32
    assert torch.allclose(y32.double(), layer64(h), atol=1e-5)


def test_pennylane_backend_gradient_flows_to_the_module_parameters() -> None:
    layer = seeded_layer(4, "level", "all", "pennylane")
    layer(random_angles(3, 4)).sum().backward()
    assert layer.conv.grad is not None and layer.pool.grad is not None


# --------------------------------------------------------------------------- options and imports


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_qubits": 6}, "n_qubits"),
        ({"n_qubits": 32}, "n_qubits"),
        ({"share": "layer"}, "share"),
        ({"readout": "last"}, "readout"),
        ({"backend": "qiskit"}, "backend"),
        ({"dtype": torch.int64}, "dtype"),
    ],
)
def test_bad_layer_options_raise_value_error_naming_the_option(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        QCNNLayer(**kwargs)


def test_bad_helper_arguments_raise_value_error() -> None:
    with pytest.raises(ValueError, match="n_qubits"):
        weight_shapes(6)
    with pytest.raises(ValueError, match="share"):
        count_quantum_parameters(8, "blocks")
    with pytest.raises(ValueError, match="readout"):
        output_width(8, "none")
    with pytest.raises(ValueError, match="shape"):
        QCNNLayer(8)(torch.zeros(3, 4))


def test_import_and_torch_backend_do_not_load_pennylane() -> None:
    code = ("import sys, torch; from agents.models.quantum import QCNNLayer; "
            "QCNNLayer(8)(torch.zeros(2, 8)).sum().backward(); "
            "assert 'pennylane' not in sys.modules, 'pennylane was imported'")
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


def test_draw_shows_the_embedding_and_the_blocks() -> None:
    text = quantum.draw(seeded_layer(4, "level", "final", "torch"))
    assert "RY" in text and "U3" in text and "RZ" in text and "RX" in text and "<Z>" in text
