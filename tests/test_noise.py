"""Noisy QCNN execution: depolarising gate noise, shots, ZNE, parameter shift, backends, Fig. 3c study."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from agents.models.quantum import (
    CONV_GATES,
    POOL_GATES,
    Execution,
    QCNNLayer,
    apply_execution,
    conv_matrices,
    elementary_matrices,
    gate_counts,
    make_qnode,
    pool_matrices,
    qcnn_wiring,
    resolve_backend,
    statevector,
    trajectories,
    zne_weights,
)
from agents.models.quantum.trajectories import _sample_paulis

ATOL_FLOAT64 = 1e-12
"""float64 agreement of two exact computations of the same circuit"""
ATOL_MIXED = 1e-7
"""default.mixed with the torch interface: RZ/CRZ eigvals come back complex64 in PennyLane 0.45,
so its values are good to ~1e-8 only"""
Z_MAX = 5.0
"""statistical checks pass within this many standard errors (fixed seeds: deterministic)"""


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def seeded_layer(n: int, readout: str = "all", share: str = "level", seed: int = 7) -> QCNNLayer:
    torch.manual_seed(seed)
    return QCNNLayer(n, share, readout)


def angles(batch: int, n: int, seed: int = 3) -> torch.Tensor:
    return torch.rand(batch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * math.pi


def run(layer: QCNNLayer, h: torch.Tensor, execution: Execution | None) -> torch.Tensor:
    layer.set_execution(execution)
    with torch.no_grad():
        return layer(h)


# --------------------------------------------------------------------------- settings and backends


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"noise_p": -0.1}, "noise_p"), ({"noise_p": 1.5}, "noise_p"), ({"noise_p": float("nan")}, "noise_p"),
        ({"shots": 0}, "shots"), ({"shots": 10.5}, "shots"),
        ({"mitigation": "pec"}, "mitigation"),
        ({"scale_factors": (1, 2, 3)}, "scale_factors"), ({"scale_factors": (1,)}, "scale_factors"),
        ({"scale_factors": (3, 3)}, "scale_factors"), ({"scale_factors": (0, 1)}, "scale_factors"),
        ({"extrapolation": "cubic"}, "extrapolation"), ({"trajectories": 0}, "trajectories"),
        ({"grad": "adjoint"}, "grad"), ({"noise_backend": "qiskit"}, "noise_backend"), ({"seed": -1}, "seed"),
    ],
)
def test_invalid_execution_settings_raise_value_error_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Execution(**kwargs)


def test_backend_is_chosen_by_qubit_count_and_stated() -> None:
    noisy = Execution(noise_p=0.01)
    assert [resolve_backend(n, noisy) for n in (4, 8, 16)] == ["default.mixed"] * 2 + ["trajectories"]
    assert resolve_backend(16, Execution(mitigation="zne")) == "trajectories"
    assert resolve_backend(8, Execution()) == "torch"
    assert resolve_backend(8, Execution(), "pennylane") == "default.qubit"
    assert resolve_backend(8, Execution(shots=100)) == "torch"
    assert resolve_backend(4, Execution(grad="parameter-shift")) == "default.qubit"
    assert resolve_backend(4, Execution(grad="parameter-shift", noise_p=0.1)) == "default.mixed"
    assert "default.mixed density matrix" in QCNNLayer(8).set_execution(noisy)
    text = QCNNLayer(16).set_execution(noisy.replace(trajectories=32))
    assert "trajectories (32 per sample" in text and "DepolarizingChannel(p=0.01)" in text


@pytest.mark.parametrize(
    "execution",
    [Execution(noise_p=0.1, noise_backend="default.mixed"), Execution(noise_p=0.1, grad="parameter-shift"),
     Execution(noise_backend="trajectories", grad="parameter-shift")],
)
def test_a_backend_that_cannot_hold_the_circuit_fails_before_any_work(execution: Execution) -> None:
    layer = QCNNLayer(16)
    with pytest.raises(ValueError, match="noise_backend|parameter-shift"):
        layer.set_execution(execution)
    assert layer.execution == Execution() and layer.execution_backend == "torch"


def test_apply_execution_sets_every_qcnn_layer_and_says_which_backend_runs() -> None:
    model = torch.nn.ModuleDict({"small": QCNNLayer(4), "big": QCNNLayer(16), "fc": torch.nn.Linear(2, 2)})
    lines = apply_execution(model, Execution(noise_p=0.01, trajectories=8))
    assert len(lines) == 2
    assert lines[0].startswith("small: n=4 qubits: PennyLane default.mixed")
    assert lines[1].startswith("big: n=16 qubits: torch Monte-Carlo trajectories (8 per sample")
    with pytest.raises(ValueError, match="cannot hold n_qubits=16"):  # checked before any change
        apply_execution(model, Execution(noise_p=0.02, noise_backend="default.mixed"))
    assert model["small"].execution.noise_p == 0.01 and model["big"].execution_backend == "trajectories"
    assert apply_execution(torch.nn.Linear(2, 2), Execution(noise_p=0.1)) == []
    apply_execution(model, None)
    assert all(layer.execution.exact for layer in (model["small"], model["big"]))


def test_hqcnn_model_runs_noisy_through_apply_execution() -> None:
    from agents.models import build_model
    from cfenv.config import SystemConfig

    torch.manual_seed(0)
    model = build_model("hqcnn", SystemConfig.from_size((10, 2, 6, 3)), n_qubits=4)
    x = torch.randn(3, 10, 6)
    clean = model(x).detach()
    (line,) = apply_execution(model, Execution(noise_p=0.05, seed=0))
    assert line.startswith("front.quantum: n=4 qubits: PennyLane default.mixed")
    noisy = model(x)
    noisy.sum().backward()
    assert noisy.shape == clean.shape and not torch.allclose(noisy, clean)
    assert model.front.quantum.conv.grad is not None and model.front.pre.weight.grad is not None


# --------------------------------------------------------------------------- the noiseless limit


def test_default_execution_keeps_the_exact_layer_bit_for_bit() -> None:
    layer = seeded_layer(8)
    h = angles(4, 8)
    before = layer(h)
    assert layer.execution.exact and layer.execution_backend == "torch"
    assert layer.set_execution(Execution(noise_p=0.0, shots=None)).startswith("n=8 qubits: torch statevector")
    assert torch.equal(layer(h), before)


@pytest.mark.parametrize("scale_factor", [1, 3, 5])
@pytest.mark.parametrize(("n", "share", "readout"),
                         [(4, "block", "all"), (8, "level", "final"), (16, "level", "all")])
def test_trajectories_at_p_zero_equal_the_noiseless_circuit_even_when_folded(
    n: int, share: str, readout: str, scale_factor: int
) -> None:
    layer = seeded_layer(n, readout, share)
    h = angles(2, n)
    exact = layer(h).detach()
    layer.set_execution(Execution(noise_backend="trajectories", trajectories=16))
    with torch.no_grad():
        z = layer.sample_trajectories(h, scale_factor)
    assert z.shape == (2, 1, exact.shape[1])  # p = 0 is deterministic: one trajectory
    assert torch.allclose(z[:, 0], exact, rtol=0, atol=ATOL_FLOAT64)


def test_elementary_gates_multiply_to_the_fused_block_matrices() -> None:
    weights = torch.rand(3, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    for kind, w, fused in (("conv", weights[:, :15], conv_matrices),
                           ("pool", weights[:, 15:], pool_matrices)):
        gates = elementary_matrices(kind, w)
        product = gates[:, 0]
        for g in range(1, gates.shape[1]):
            product = gates[:, g] @ product
        assert torch.allclose(product, fused(w), atol=ATOL_FLOAT64)


@pytest.mark.parametrize("n", [4, 8, 16])
def test_gate_count_is_the_number_of_operations_in_the_pennylane_circuit(n: int) -> None:
    import pennylane as qml

    layer = seeded_layer(n, share="block")
    tape = qml.workflow.construct_tape(make_qnode(n, "block"))(angles(1, n)[0], layer.conv, layer.pool)
    counts = gate_counts(n)
    assert len(tape.operations) == counts["gates"]
    assert sum(len(op.wires) for op in tape.operations) == counts["channels"]


# --------------------------------------------------------------------------- depolarising noise


def pauli_heisenberg_zero_weights(n: int, h: torch.Tensor, p: float, scale_factor: int = 1) -> torch.Tensor:
    """<Z_w> of the zero-weight circuit with DepolarizingChannel(p) after every gate, worked out by hand.

    With zero weights every gate is the identity, a CNOT or an X, so Z_w evolves backwards
    (Heisenberg picture) into a signed Z-string: CNOT(c, t) maps Z_t to Z_c Z_t, X on c flips
    the sign of a string holding Z_c. A depolarising channel on a wire the string holds
    multiplies the expectation by 1 - 4p/3 (X and Y anticommute with Z, each with weight p/3);
    one on another wire does nothing. Finally <prod Z_v> = prod cos(2 h_v) on the embedded
    product state. Folded (U (U^dagger U)^k, every gate of it followed by its channels) only
    at h = 0, where the embedding RYs are identities too. h: (B, n) -> (B, n).
    """
    assert scale_factor == 1 or not h.any()
    ops: list[tuple[str, tuple[int, ...]]] = [("RY", (w,)) for w in range(n)]
    for level in qcnn_wiring(n):
        for gates, pairs in ((CONV_GATES, level.conv), (POOL_GATES, level.pool)):
            for pair in pairs:
                ops += [(g.name, tuple(pair[i] for i in g.positions)) for g in gates]
    ops += (ops[::-1] + ops) * ((scale_factor - 1) // 2)  # every gate here is its own adjoint
    shrink = 1 - 4 * p / 3
    out = []
    for w in range(n):
        string, sign, factor = {w}, 1.0, 1.0
        for name, wires in reversed(ops):
            factor *= shrink ** len(string.intersection(wires))  # the channels after this gate
            if name == "CNOT" and wires[1] in string:
                string ^= {wires[0]}
            elif name == "PauliX" and wires[0] in string:
                sign = -sign
        out.append(sign * factor * torch.cos(2 * h[:, sorted(string)]).prod(-1))
    return torch.stack(out, -1)


def zero_weight_layer(n: int) -> QCNNLayer:
    layer = QCNNLayer(n, "block", "all")
    with torch.no_grad():
        layer.conv.zero_()
        layer.pool.zero_()
    return layer


def test_one_qubit_one_gate_z_shrinks_by_one_minus_four_thirds_p() -> None:
    # the building block: RY(2h)|0> then DepolarizingChannel(p): <Z> = (1 - 4p/3) cos(2h)
    # (a trajectory draws I with 1 - p, X, Y, Z with p/3 each; a default.mixed check follows)
    p, T = 0.3, 200_000
    paulis = _sample_paulis((T,), p, torch.Generator().manual_seed(0), torch.device("cpu"))
    counts = torch.bincount(paulis, minlength=4).double() / T
    assert torch.allclose(counts, torch.tensor([1 - p, p / 3, p / 3, p / 3], dtype=torch.float64), atol=5e-3)
    flips = (paulis == 1) | (paulis == 2)  # X and Y flip Z; I and Z keep it
    assert abs((1 - 2 * flips.double().mean()) - (1 - 4 * p / 3)) < Z_MAX / math.sqrt(T)


@pytest.mark.parametrize("p", [0.01, 0.2])
def test_zero_weight_circuit_shrinks_z_as_the_depolarising_model_predicts(p: float) -> None:
    n = 4
    layer = zero_weight_layer(n)
    h = angles(3, n)
    expected = pauli_heisenberg_zero_weights(n, h, p)
    assert torch.allclose(pauli_heisenberg_zero_weights(n, h, 0.0), run(layer, h, None), atol=ATOL_FLOAT64)
    assert torch.allclose(run(layer, h, Execution(noise_p=p)), expected, rtol=0, atol=ATOL_MIXED)
    T = 4000
    layer.set_execution(Execution(noise_p=p, noise_backend="trajectories", trajectories=T, seed=1))
    with torch.no_grad():
        z = layer.sample_trajectories(h)
    error = z.std(1) / math.sqrt(T) + 1e-12
    assert ((z.mean(1) - expected).abs() / error).max() < Z_MAX


@pytest.mark.parametrize(("n", "batch", "T"), [(4, 2, 3000), (8, 1, 1500)])
def test_trajectories_agree_with_default_mixed_within_their_statistical_error(
    n: int, batch: int, T: int
) -> None:
    layer = seeded_layer(n)
    h = angles(batch, n)
    execution = Execution(noise_p=0.03, trajectories=T, seed=2)
    exact = run(layer, h, execution)
    assert layer.execution_backend == "default.mixed"
    layer.set_execution(execution.replace(noise_backend="trajectories"))
    with torch.no_grad():
        z = layer.sample_trajectories(h)
        forward = layer(h)
    assert z.shape == (batch, T, n)
    error = z.std(1) / math.sqrt(T)
    assert ((z.mean(1) - exact).abs() / error).max() < Z_MAX
    assert ((forward - exact).abs() / error).max() < Z_MAX  # the forward pass is the same estimator
    assert (exact - seeded_layer(n)(h).detach()).abs().max() > 10 * error.max()  # noise is visible


@pytest.mark.parametrize("scale_factor", [1, 3, 5])
def test_trajectory_errors_sit_where_pennylanes_noise_model_puts_its_channels(
    scale_factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every sampled error forced to Y: one trajectory is then a fixed unitary circuit, the one
    # PennyLane builds with fold_global and a NoiseModel inserting PauliY on each wire after
    # every gate (adjoints included); compared exactly, on random weights and angles
    import pennylane as qml

    n = 4
    layer = seeded_layer(n, share="block")
    h = angles(2, n)
    monkeypatch.setattr(trajectories, "_sample_paulis",
                        lambda shape, p, generator, device: torch.full(shape, 2, dtype=torch.int64,
                                                                       device=device))
    layer.set_execution(Execution(noise_p=0.5, noise_backend="trajectories", trajectories=1))
    with torch.no_grad():
        ours = layer.sample_trajectories(h, scale_factor)[:, 0]

    def pauli_y(op: object, **_: object) -> None:
        for wire in op.wires:
            qml.PauliY(wires=wire)

    qnode = qml.noise.fold_global(make_qnode(n, "block"), scale_factor)
    qnode = qml.noise.add_noise(qnode, qml.NoiseModel({qml.BooleanFn(lambda op: True): pauli_y}))
    with torch.no_grad():
        theirs = torch.stack(list(qnode(h, layer.conv, layer.pool)), -1)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-10)
    assert not torch.allclose(ours, seeded_layer(n, share="block")(h).detach(), atol=1e-3)


class _Folded(torch.nn.Module):
    """``sample_trajectories`` at scale factor 3 as a module, for ``functional_call``."""

    def __init__(self, layer: QCNNLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layer.sample_trajectories(h, 3)


def test_trajectory_gradients_match_finite_differences_for_fixed_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # with the seed reset before each call (set_execution), the estimate is a smooth function of
    # inputs and weights: checks the per-row-gate backward, from saved states and un-computing
    layer = seeded_layer(4, "final", "block")
    execution = Execution(noise_p=0.2, noise_backend="trajectories", trajectories=3, seed=5)
    h = angles(2, 4).requires_grad_(True)
    conv = layer.conv.detach().clone().requires_grad_(True)
    pool = layer.pool.detach().clone().requires_grad_(True)

    def estimate(x: torch.Tensor, c: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        layer.set_execution(execution)
        return torch.func.functional_call(layer, {"conv": c, "pool": q}, (x,))

    def folded(x: torch.Tensor, c: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        layer.set_execution(execution)
        return torch.func.functional_call(_Folded(layer), {"layer.conv": c, "layer.pool": q}, (x,))

    assert torch.autograd.gradcheck(estimate, (h, conv, pool))
    assert torch.autograd.gradcheck(folded, (h, conv, pool))
    monkeypatch.setattr(statevector, "_STORE_LIMIT_BYTES", 0)
    assert torch.autograd.gradcheck(folded, (h, conv, pool))


# --------------------------------------------------------------------------- zero-noise extrapolation


def test_zne_weights_are_those_of_pennylanes_extrapolators() -> None:
    import pennylane as qml

    x = torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    y = torch.tensor([0.61, 0.38, 0.24], dtype=torch.float64)
    assert zne_weights((1, 3, 5)) == pytest.approx((15 / 8, -10 / 8, 3 / 8))
    for method, theirs in (("richardson", qml.noise.richardson_extrapolate(x, y)),
                           ("linear", qml.noise.poly_extrapolate(x, y, 1))):
        ours = sum(w * v for w, v in zip(zne_weights((1, 3, 5), method), y))
        assert float(ours) == pytest.approx(float(theirs), abs=1e-12)


@pytest.mark.parametrize("p", [0.01, 0.05])
def test_zne_of_a_circuit_with_known_noise_matches_the_worked_count(p: float) -> None:
    # zero weights and h = 0: the folded circuits are Clifford, so every scale factor's noisy
    # value is known exactly (pauli_heisenberg_zero_weights); the noiseless value is +-1
    n, T = 4, 3000
    layer = zero_weight_layer(n)
    h = torch.zeros(1, n, dtype=torch.float64)
    factors = (1, 3, 5)
    worked = [pauli_heisenberg_zero_weights(n, h, p, s) for s in factors]
    clean = pauli_heisenberg_zero_weights(n, h, 0.0)
    execution = Execution(noise_p=p, mitigation="zne", trajectories=T, seed=6)
    zne = sum(w * e for w, e in zip(zne_weights(factors), worked))
    assert torch.allclose(run(layer, h, execution), zne, rtol=0, atol=ATOL_MIXED)  # PennyLane's ZNE
    if p <= 0.01:  # small p: extrapolation beats no mitigation on every output
        assert ((zne - clean).abs() < 0.5 * (worked[0] - clean).abs()).all()
    layer.set_execution(execution.replace(noise_backend="trajectories"))
    with torch.no_grad():
        for s, expected in zip(factors, worked):
            z = layer.sample_trajectories(h, s)
            assert ((z.mean(1) - expected).abs() / (z.std(1) / math.sqrt(T) + 1e-12)).max() < Z_MAX


def test_zne_on_trajectories_agrees_with_pennylane_zne_on_default_mixed() -> None:
    n, T = 4, 4000
    layer = seeded_layer(n)
    h = angles(1, n)
    execution = Execution(noise_p=0.03, mitigation="zne", trajectories=T, seed=4)
    pennylane_zne = run(layer, h, execution)
    assert "mitigate_with_zne" in layer.describe_execution()
    layer.set_execution(execution.replace(noise_backend="trajectories"))
    weights = zne_weights(execution.scale_factors)
    with torch.no_grad():
        runs = [layer.sample_trajectories(h, s) for s in execution.scale_factors]
    estimate = sum(w * z.mean(1) for w, z in zip(weights, runs))
    error = sum(w**2 * z.var(1) / T for w, z in zip(weights, runs)).sqrt()
    assert ((estimate - pennylane_zne).abs() / error).max() < Z_MAX
    noisy = run(layer, h, execution.replace(mitigation="none", noise_backend="default.mixed"))
    assert ((pennylane_zne - noisy).abs() / error).max() > Z_MAX  # it can tell ZNE from no ZNE


def test_zne_brings_the_noisy_outputs_closer_to_the_noiseless_ones_for_small_p() -> None:
    n = 4
    layer = seeded_layer(n)
    h = angles(4, n)
    clean = run(layer, h, None)
    noisy = run(layer, h, Execution(noise_p=0.01))
    mitigated = run(layer, h, Execution(noise_p=0.01, mitigation="zne"))
    error_noisy, error_zne = (noisy - clean).abs().mean(), (mitigated - clean).abs().mean()
    assert error_zne < 0.5 * error_noisy
    linear = run(layer, h, Execution(noise_p=0.01, mitigation="zne", extrapolation="linear"))
    assert (linear - clean).abs().mean() < error_noisy


# --------------------------------------------------------------------------- shots


@pytest.mark.parametrize("shots", [100, 400])
def test_torch_shot_estimates_are_unbiased_with_variance_one_minus_z_squared_over_shots(shots: int) -> None:
    n, repeats = 4, 5000
    layer = seeded_layer(n)
    h = angles(1, n)
    exact = layer(h).detach()[0]
    y = run(layer, h.expand(repeats, n), Execution(shots=shots, seed=0))
    assert layer.execution_backend == "torch"
    variance = (1 - exact**2) / shots
    assert ((y.mean(0) - exact).abs() / (variance / repeats).sqrt()).max() < Z_MAX
    # sample variance of a variance estimate has relative standard error sqrt(2 / repeats) = 2 %
    assert torch.allclose(y.var(0), variance, rtol=0.1)
    again = run(layer, h.expand(repeats, n), Execution(shots=shots, seed=0))
    assert torch.equal(y, again)  # seeded


def test_pennylane_shots_on_default_mixed_are_unbiased_and_seeded() -> None:
    n, shots, repeats = 4, 200, 100
    layer = seeded_layer(n, "final")
    h = angles(1, n)
    exact = run(layer, h, Execution(noise_p=0.02))[0]
    y = run(layer, h.expand(repeats, n), Execution(noise_p=0.02, shots=shots, seed=3))
    assert "200 shots (qml.set_shots)" in layer.describe_execution()
    standard_error = ((1 - exact**2) / shots / repeats).sqrt()
    assert ((y.mean(0) - exact).abs() / standard_error).max() < Z_MAX
    counts = (1 + y) * shots / 2  # estimates lie on the grid 2 k / shots - 1
    assert y.unique().numel() > 3 and torch.allclose(counts, counts.round(), rtol=0, atol=1e-9)
    assert torch.equal(run(layer, h.expand(repeats, n), Execution(noise_p=0.02, shots=shots, seed=3)), y)


def test_shot_noise_passes_the_exact_gradient_straight_through() -> None:
    layer = seeded_layer(4)
    h = angles(3, 4)
    grads = []
    for execution in (None, Execution(shots=50, seed=1)):
        layer.set_execution(execution)
        layer.zero_grad()
        layer(h).sum().backward()
        grads.append(layer.conv.grad.clone())
    assert torch.equal(grads[0], grads[1])


# --------------------------------------------------------------------------- parameter shift


@pytest.mark.parametrize("readout", ["all", "final"])
def test_parameter_shift_gradients_equal_backprop_on_the_noiseless_circuit(readout: str) -> None:
    layer = seeded_layer(4, readout)
    h = angles(2, 4)
    weights = torch.randn(2, layer.out_features, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(1))
    results = []
    for execution in (None, Execution(grad="parameter-shift")):
        layer.set_execution(execution)
        x = h.clone().requires_grad_(True)
        y = layer(x)
        results.append((y.detach(), *torch.autograd.grad((y * weights).sum(), [x, layer.conv, layer.pool])))
    assert layer.execution_backend == "default.qubit" and "grad=parameter-shift" in layer.describe_execution()
    for backprop, shift in zip(*results):
        assert shift.dtype == torch.float64
        assert torch.allclose(shift, backprop, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- the Fig. 3c study


def test_noise_study_cli_writes_json_csv_and_figure(tmp_path: Path) -> None:
    from agents.lab import noise_study
    from agents.learning import TrainSettings, train

    size = (10, 2, 6, 3)
    settings = TrainSettings(agent="hqcnn", size=size, model={"n_qubits": 4}, epochs=1, train_snapshots=32,
                             val_snapshots=16, runs_dir=tmp_path / "runs", cache_dir=tmp_path / "cache",
                             progress=False)
    train(settings)
    out = tmp_path / "noise"
    code = noise_study.main(["--checkpoint-dirs", str(settings.run_dir), "--size", "10,2,6,3",
                             "--qubits", "4", "--p", "0", "0.05", "--snapshots", "3", "--out", str(out),
                             "--no-progress"])
    assert code == 0
    data = json.loads((out / "noise_study.json").read_text())
    cells = [(r["p"], r["mitigation"], r["backend"]) for r in data["records"]]
    assert cells == [(0.0, "none", "torch"), (0.05, "none", "default.mixed"), (0.05, "zne", "default.mixed")]
    for record in data["records"]:
        assert len(record["per_snapshot_sum_rate_mbps"]) == 3 and record["s_per_snapshot"] > 0
        assert record["mean_sum_rate_mbps"] > 0
    assert "DepolarizingChannel(p=0.05)" in data["records"][1]["description"]
    assert (out / "noise_study.csv").read_text().count("\n") == 4
    assert (out / "fig3c.png").stat().st_size > 1000
    assert noise_study.main(["--replot", str(out / "noise_study.json")]) == 0
    assert noise_study.main(["--checkpoint-dirs", str(settings.run_dir), "--p", "2", "--no-progress"]) == 2


def test_noise_study_runs_the_quantum_scorer_of_the_decoder(tmp_path: Path) -> None:
    """--agent hqcnn-ar: trains the circuit-scored decoder with its own recipe under the
    train root and runs its circuit noisily; records name the agent, count distinct
    assignments and carry the master-AP reference."""
    from agents.lab import noise_study

    out = tmp_path / "noise"
    code = noise_study.main(["--train-root", str(tmp_path / "runs"), "--agent", "hqcnn-ar", "--qubits", "4",
                             "--size", "6,1,4,2", "--p", "0", "0.05", "--mitigation", "none", "--snapshots", "3",
                             "--epochs", "2", "--train-snapshots", "16", "--val-snapshots", "8",
                             "--noise-backend", "trajectories", "--trajectories", "4", "--cache-dir",
                             str(tmp_path / "cache"), "--out", str(out), "--no-progress"])
    assert code == 0
    run = tmp_path / "runs" / "q4" / "hqcnn-ar" / "6-1-4-2" / "reinforce-seed0"
    history = json.loads((run / "history.json").read_text())
    assert [h["train/imitation"] for h in history] == [1.0, 0.0]
    records = json.loads((out / "noise_study.json").read_text())["records"]
    assert [(r["agent"], r["p"], r["backend"]) for r in records] == [("hqcnn-ar", 0.0, "trajectories"),
                                                                      ("hqcnn-ar", 0.05, "trajectories")]
    assert all(1 <= r["distinct_assignments"] <= 3 and r["master_ap_mbps"] > 0 for r in records)
    assert (out / "fig3c.png").stat().st_size > 1000
    assert noise_study.main(["--train-root", str(tmp_path), "--agent", "mlp", "--no-progress"]) == 2


def test_cli_noise_flags_reach_the_circuit(tmp_path):
    """train.py --grad parameter-shift and evaluate.py --noise-p/--mitigation run end to end."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import evaluate

    root = Path(__file__).resolve().parents[1]
    runs = tmp_path / "runs"
    out = subprocess.run([sys.executable, "train.py", "--agent", "hqcnn", "--qubits", "4", "--sizes", "4,1,3,2",
                          "--epochs", "1", "--train-snapshots", "8", "--val-snapshots", "4", "--batch-size", "8",
                          "--grad", "parameter-shift", "--out", str(runs), "--no-progress"],
                         cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "parameter-shift" in out.stdout
    assert evaluate.main(["--agents", "hqcnn", "--sizes", "4,1,3,2", "--snapshots", "2", "--checkpoints",
                          str(runs), "--no-train", "--noise-p", "0.01", "--mitigation", "zne",
                          "--out", str(tmp_path / "res"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "res" / "results.json").read_text())[0]
    assert record["status"] == "ok" and "Depolarizing" in " ".join(record["execution"])
    with pytest.raises(SystemExit):
        evaluate.main(["--agents", "hqcnn", "--noise-p", "2"])
