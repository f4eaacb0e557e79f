"""The PennyLane backend: QNodes of the QCNN (exact, or noisy, mitigated, sampled, parameter-shift),
the ``TorchLayer`` over them and the batched evaluation of an execution's QNodes. PennyLane is
imported lazily, inside the functions that need it: nothing else in cfpilot imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from agents.specs.execution import Execution, mixed_state_bytes
from agents.specs.wiring import (
    CONV_GATES,
    POOL_GATES,
    GateSpec,
    _blocks,
    _check_choice,
    _check_layer_options,
    final_wire,
    gate_counts,
    output_width,
    weight_shapes,
)

if TYPE_CHECKING:  # pragma: no cover
    import pennylane

PENNYLANE_CHUNK_BYTES = 1 << 30
"""a PennyLane execution backend evaluates its (broadcast) batch in chunks of about this many
bytes of states (with backprop: one state per operation per sample is kept)"""


def _import_pennylane() -> Any:
    try:
        import pennylane
    except ImportError as err:  # pragma: no cover
        raise ImportError("the 'pennylane' backend needs PennyLane: pip install 'pennylane>=0.40'") from err
    return pennylane


def _circuit_function(qml: Any, n_qubits: int, blocks: Any, measured: Any) -> Any:
    """The QCNN circuit, written once: ``circuit(inputs, conv, pool)`` (the TorchLayer contract)."""

    def circuit(inputs: torch.Tensor, conv: torch.Tensor, pool: torch.Tensor) -> list:
        for i in range(n_qubits):
            qml.RY(2 * inputs[..., i], wires=i)  # cos(h)|0> + sin(h)|1>
        for block in blocks:
            if block.kind == "conv":
                _conv_block(qml, conv[block.index], *block.wires)
            else:
                _pool_block(qml, pool[block.index], *block.wires)
        return [qml.expval(qml.PauliZ(i)) for i in measured]

    return circuit


def make_qnode(
    n_qubits: int,
    share: str = "level",
    readout: str = "all",
    *,
    device_name: str = "default.qubit",
    diff_method: str = "backprop",
) -> pennylane.QNode:
    """The QCNN as a PennyLane QNode ``circuit(inputs, conv, pool)`` (TorchLayer contract).

    inputs: (n,) or (B, n) real angles h (broadcast over B); conv, pool: shapes from
    :func:`weight_shapes`. Returns a list of ``output_width`` expectation values
    (each scalar or (B,)).
    """
    _check_layer_options(n_qubits, share, readout)
    qml = _import_pennylane()
    blocks = _blocks(n_qubits, share)
    measured = range(n_qubits) if readout == "all" else [final_wire(n_qubits)]
    dev = qml.device(device_name, wires=n_qubits)

    return qml.qnode(dev, interface="torch", diff_method=diff_method)(
        _circuit_function(qml, n_qubits, blocks, measured))


def make_execution_qnode(
    n_qubits: int,
    share: str,
    readout: str,
    execution: Execution,
    device_name: str,
    *,
    sampled: bool = True,
) -> pennylane.QNode:
    """The QCNN QNode ``circuit(inputs, conv, pool)`` for a PennyLane execution backend.

    device_name: ``"default.qubit"`` or ``"default.mixed"``. Transforms, in the order they
    act on the tape:

    1. ``qml.noise.mitigate_with_zne(scale_factors, folding=qml.noise.fold_global,
       extrapolate=qml.noise.richardson_extrapolate)`` (or ``poly_extrapolate`` with
       ``order=1`` for ``"linear"``) when ``mitigation="zne"``. ``fold_global`` refuses tapes
       that already hold channels, so the noise comes after the folding:
    2. ``qml.noise.add_noise`` with a ``NoiseModel`` that follows *every* operation (gates and,
       in folded tapes, their adjoints) with ``qml.DepolarizingChannel(noise_p)`` on each of
       its wires, when ``noise_p > 0``;
    3. ``qml.transforms.broadcast_expand`` for ``grad="parameter-shift"``: PennyLane's
       parameter-shift cannot differentiate a tape broadcast in a trainable parameter (the
       inputs; NotImplementedError, PennyLane #4462), so the batch is split into one tape per
       sample, and the shifts of each are broadcast instead (``gradient_kwargs={"broadcast":
       True}``);
    4. ``qml.set_shots(shots)`` when ``shots`` is set and ``sampled`` (``sampled=False`` gives
       the analytic twin used for straight-through gradients).

    The device gets ``seed=execution.seed`` when one is set.
    """
    _check_layer_options(n_qubits, share, readout)
    _check_choice("device_name", device_name, ("default.qubit", "default.mixed"))
    qml = _import_pennylane()
    blocks = _blocks(n_qubits, share)
    measured = range(n_qubits) if readout == "all" else [final_wire(n_qubits)]
    kwargs: dict[str, Any] = {"wires": n_qubits}
    if execution.seed is not None:
        kwargs["seed"] = execution.seed
    dev = qml.device(device_name, **kwargs)
    shots = execution.shots if sampled else None
    if execution.grad == "parameter-shift":
        diff = {"diff_method": "parameter-shift", "gradient_kwargs": {"broadcast": True}}
    else:  # sampled expectation values are not differentiated (straight-through, see pennylane_expectations)
        diff = {"diff_method": "backprop" if shots is None else None}

    circuit = _circuit_function(qml, n_qubits, blocks, measured)
    qnode = qml.QNode(circuit, dev, interface="torch", **diff)
    if execution.mitigation == "zne":
        if execution.extrapolation == "richardson":
            extrapolate, extrapolate_kwargs = qml.noise.richardson_extrapolate, {}
        else:
            extrapolate, extrapolate_kwargs = qml.noise.poly_extrapolate, {"order": 1}
        qnode = qml.noise.mitigate_with_zne(qnode, list(execution.scale_factors), qml.noise.fold_global,
                                            extrapolate, extrapolate_kwargs=extrapolate_kwargs)
    if execution.noise_p > 0:
        p = execution.noise_p

        def depolarise(op: Any, **_: Any) -> None:
            for wire in op.wires:
                qml.DepolarizingChannel(p, wires=wire)

        every_gate = qml.BooleanFn(lambda op: True, name="every_gate")
        qnode = qml.noise.add_noise(qnode, qml.NoiseModel({every_gate: depolarise}))
    if execution.grad == "parameter-shift":
        qnode = qml.transforms.broadcast_expand(qnode)
    if shots is not None:
        qnode = qml.set_shots(qnode, shots=shots)
    return qnode


def _stack_outputs(result: Any, batch: int, width: int) -> torch.Tensor:
    """A QNode result -> (batch, width) tensor.

    The result is a list of ``width`` tensors of shape (batch,) -- except that
    ``mitigate_with_zne`` with a single observable (readout "final") unstacks its extrapolated
    (batch,) result along the *batch* axis, giving a tuple of ``batch`` scalars (PennyLane 0.45);
    ``TorchLayer`` would stack either along dim 0, so the layer combines them itself.
    """
    if isinstance(result, torch.Tensor):
        parts = [result]
    else:
        parts = [torch.as_tensor(r) for r in result]
    if width == 1:
        return torch.cat([r.reshape(-1) for r in parts]).reshape(batch, 1)
    return torch.stack([r.reshape(batch) for r in parts], -1)


def _apply_block(qml: Any, gates: tuple[GateSpec, ...], p: torch.Tensor, wires: tuple[int, int]) -> None:
    """Queue the elementary gates of one block (:data:`CONV_GATES` / :data:`POOL_GATES`)."""
    for gate in gates:
        getattr(qml, gate.name)(*(p[i] for i in gate.params), wires=[wires[i] for i in gate.positions])


def _conv_block(qml: Any, p: torch.Tensor, a: int, b: int) -> None:
    """Hur et al.'s U_SU4 on wires (a, b); p: (15,). Gates: :data:`CONV_GATES`."""
    _apply_block(qml, CONV_GATES, p, (a, b))


def _pool_block(qml: Any, q: torch.Tensor, control: int, target: int) -> None:
    """Pooling control -> target; q: (2,). Gates: :data:`POOL_GATES`."""
    _apply_block(qml, POOL_GATES, q, (control, target))



def make_torch_layer(n_qubits: int, share: str, readout: str, weights: dict[str, torch.nn.Parameter], *,
                     device_name: str = "default.qubit", diff_method: str = "backprop") -> torch.nn.Module:
    """A ``TorchLayer`` over :func:`make_qnode` that reads the given ``conv`` / ``pool`` weights.

    TorchLayer registers fresh parameters; they are replaced by ``weights`` (the same objects,
    the :class:`QCNNLayer`'s own) and unregistered, so the state_dict keys stay ``conv`` / ``pool``
    and the optimiser sees each weight once.
    """
    qml = _import_pennylane()
    qnode = make_qnode(n_qubits, share, readout, device_name=device_name, diff_method=diff_method)
    shapes = weight_shapes(n_qubits, share)
    # tensors as init: no draw from the global generator, unlike TorchLayer's default init
    init = {name: torch.empty(shape, dtype=weights[name].dtype) for name, shape in shapes.items()}
    layer = qml.qnn.TorchLayer(qnode, weight_shapes=shapes, init_method=init)
    for name in shapes:
        del layer._parameters[name]
        layer.qnode_weights[name] = weights[name]
    return layer


def make_execution_qnodes(n_qubits: int, share: str, readout: str, execution: Execution,
                          device_name: str) -> tuple[pennylane.QNode, pennylane.QNode | None]:
    """The QNode of an execution (:func:`make_execution_qnode`) and, for shots with backprop, its
    analytic twin (``sampled=False``) that gives the straight-through gradient; else None."""

    def make(sampled: bool) -> Any:
        return make_execution_qnode(n_qubits, share, readout, execution, device_name, sampled=sampled)

    twin = make(False) if execution.shots is not None and execution.grad == "backprop" else None
    return make(True), twin


def pennylane_expectations(qnodes: tuple[Any, Any], h: torch.Tensor, conv: torch.Tensor,
                           pool: torch.Tensor, n_qubits: int, readout: str, execution: Execution,
                           device_name: str) -> torch.Tensor:
    """An execution's forward pass on PennyLane: h (B, n) -> (B, output_width), conv's dtype.

    qnodes: from :func:`make_execution_qnodes` on ``device_name``. The batch is evaluated in
    chunks of about :data:`PENNYLANE_CHUNK_BYTES`; with shots and backprop, the sampled values
    carry the gradient of the analytic twin (straight-through).
    """
    qnode, twin = qnodes
    ex, B, width = execution, h.shape[0], output_width(n_qubits, readout)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (h, conv, pool))
    sampled_only = ex.shots is not None and ex.grad == "backprop"  # qnode not differentiable
    counts = gate_counts(n_qubits)
    ops = (counts["gates"] + (counts["channels"] if ex.noise_p > 0 else 0)) * (
        sum(ex.scale_factors) if ex.mitigation == "zne" else 1)
    mixed = device_name == "default.mixed"
    state = mixed_state_bytes(n_qubits) if mixed else 16 * 2**n_qubits
    kept = ops if need_grad and ex.grad == "backprop" else 4
    chunk = max(1, PENNYLANE_CHUNK_BYTES // (state * kept))
    outs = []
    for lo in range(0, B, chunk):
        x = h[lo:lo + chunk]
        if sampled_only:
            with torch.no_grad():
                y = _stack_outputs(qnode(x, conv, pool), x.shape[0], width).to(conv.dtype)
            if need_grad:
                exact = _stack_outputs(twin(x, conv, pool), x.shape[0], width).to(conv.dtype)
                y = exact + (y - exact).detach()
        else:
            y = _stack_outputs(qnode(x, conv, pool), x.shape[0], width).to(conv.dtype)
        outs.append(y)
    return torch.cat(outs)
