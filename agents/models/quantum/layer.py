"""The QCNN as a torch module (:class:`QCNNLayer`), :func:`draw` and :func:`apply_execution`. The
layer holds the weights and the :class:`Execution`; the backend modules do the computing."""

from __future__ import annotations

import math
from typing import Any

import torch

from agents.specs.execution import (
    BACKENDS,
    DEFAULT_BACKEND,
    Execution,
    describe_execution,
    resolve_backend,
)
from agents.models.quantum.pennylane_backend import (
    _import_pennylane,
    make_execution_qnodes,
    make_qnode,
    make_torch_layer,
    pennylane_expectations,
)
from agents.models.quantum.statevector import sample_shots, statevector_expectations
from agents.models.quantum.trajectories import trajectory_expectations, trajectory_samples
from agents.specs.wiring import _check_choice, _check_layer_options, output_width, weight_shapes


class QCNNLayer(torch.nn.Module):
    """The QCNN as a torch module: angles h -> Pauli-Z expectation values.

    Parameters
    ----------
    n_qubits: 4, 8 or 16.
    share: ``"level"`` (default), ``"all"`` or ``"block"``: see :func:`weight_shapes`.
    readout: ``"all"`` (Z on every wire) or ``"final"`` (Z on :func:`final_wire`).
    backend: ``"torch"`` (statevector simulator, default: :data:`DEFAULT_BACKEND`) or
        ``"pennylane"`` (broadcast ``TorchLayer`` over ``device_name``).
    dtype: real dtype of weights, inputs and outputs; float64 (default) or float32.
    device_name, diff_method: PennyLane device and gradient method (``"pennylane"`` backend
        only), e.g. ``"lightning.qubit"`` with ``"adjoint"``, or ``"parameter-shift"``.

    Weights ``conv`` (S_c, 15) and ``pool`` (S_p, 2), uniform on [0, 2 pi) from torch's
    global generator, are the only parameters under both backends, so ``state_dict`` s are
    interchangeable.

    Input: h (B, n) real angles (any real dtype; cast to ``dtype``).
    Output: (B, output_width) real expectation values in [-1, 1], ``dtype``.

    Memory: the ``"pennylane"`` backend keeps every intermediate state for backprop,
    B * 2**n * 16 bytes for each of its gates (~160 at n = 8, ~350 at n = 16: ~100 GB
    at n = 16, B = 256); use it for checks and small batches. The ``"torch"`` backend
    needs a few states (n = 16, B = 256: ~2 GB).

    PennyLane 0.45 quirk: with ``device_name="lightning.qubit", diff_method="adjoint"``
    the expectation values pass through ``torch.as_tensor`` of Python floats, so they
    come back in torch's default dtype -- float32 unless ``torch.set_default_dtype``
    changed it -- and are accurate to ~1e-8 even in a float64 layer.

    execution: an :class:`Execution` (noise, shots, ZNE, gradient method); ``None`` is the
        exact default. Change it later with :meth:`set_execution`; see "Noise" in the package
        docstring for the backends it selects.
    """

    def __init__(
        self,
        n_qubits: int = 8,
        share: str = "level",
        readout: str = "all",
        backend: str = DEFAULT_BACKEND,
        dtype: torch.dtype = torch.float64,
        *,
        device_name: str = "default.qubit",
        diff_method: str = "backprop",
        execution: Execution | None = None,
    ) -> None:
        super().__init__()
        _check_layer_options(n_qubits, share, readout)
        _check_choice("backend", backend, BACKENDS)
        _check_choice("dtype", dtype, (torch.float64, torch.float32))
        self.n_qubits, self.share, self.readout, self.backend = n_qubits, share, readout, backend
        self.device_name, self.diff_method = device_name, diff_method
        shapes = weight_shapes(n_qubits, share)
        self.conv = torch.nn.Parameter(torch.empty(shapes["conv"], dtype=dtype).uniform_(0, 2 * math.pi))
        self.pool = torch.nn.Parameter(torch.empty(shapes["pool"], dtype=dtype).uniform_(0, 2 * math.pi))
        self.qlayer: torch.nn.Module | None = None
        if backend == "pennylane":
            self.qlayer = make_torch_layer(n_qubits, share, readout, {"conv": self.conv, "pool": self.pool},
                                           device_name=device_name, diff_method=diff_method)
        self._execution = Execution()
        self._execution_backend = resolve_backend(n_qubits, self._execution, backend)
        self._qnodes: tuple[Any, Any] | None = None  # (QNode, analytic twin or None) of a PennyLane execution
        self._generator: torch.Generator | None = None
        if execution is not None:
            self.set_execution(execution)

    @property
    def dtype(self) -> torch.dtype:
        """Real dtype of the weights, and so of inputs and outputs (follows ``.to()``/``.float()``)."""
        return self.conv.dtype

    @property
    def out_features(self) -> int:
        return output_width(self.n_qubits, self.readout)

    def extra_repr(self) -> str:
        text = (f"n_qubits={self.n_qubits}, share={self.share!r}, readout={self.readout!r}, "
                f"backend={self.backend!r}, dtype={self.dtype}")
        if not self._execution.exact:
            text += f", execution={self._execution}, execution_backend={self._execution_backend!r}"
        return text

    # ------------------------------------------------------------------ execution

    @property
    def execution(self) -> Execution:
        """The current :class:`Execution` (read-only; change it with :meth:`set_execution`)."""
        return self._execution

    @property
    def execution_backend(self) -> str:
        """What runs the forward pass now: ``"torch"``, ``"default.qubit"``, ``"default.mixed"``
        or ``"trajectories"`` (see :func:`resolve_backend`)."""
        return self._execution_backend

    def set_execution(self, execution: Execution | None = None) -> str:
        """Run this layer under ``execution`` (``None``: the exact default) from now on.

        Validates first (``ValueError`` if the chosen backend cannot hold the circuit, see
        :func:`resolve_backend`), builds the PennyLane QNode where one is needed (importing
        PennyLane only then) and reseeds the noise/shot generator from ``execution.seed``.
        Weights are untouched. Returns :meth:`describe_execution`.
        """
        execution = Execution() if execution is None else execution
        if not isinstance(execution, Execution):
            raise TypeError(f"execution must be an Execution; got {type(execution).__name__}")
        backend = resolve_backend(self.n_qubits, execution, self.backend)
        qnodes = None
        if backend in ("default.qubit", "default.mixed") and not execution.exact:
            qnodes = make_execution_qnodes(self.n_qubits, self.share, self.readout, execution, backend)
        self._execution, self._execution_backend, self._qnodes = execution, backend, qnodes
        self._generator = None
        return self.describe_execution()

    def describe_execution(self) -> str:
        """One line: the backend that runs, the noise, shots, mitigation and gradient method."""
        return describe_execution(self.n_qubits, self._execution, self._execution_backend)

    def _rng(self, device: torch.device) -> torch.Generator:
        """The noise/shot generator, seeded from ``execution.seed`` when the execution was set."""
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device)
            if self._execution.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._execution.seed)
        return self._generator

    def sample_trajectories(self, h: torch.Tensor, scale_factor: int = 1) -> torch.Tensor:
        """<Z> of every Monte-Carlo trajectory of the noisy circuit, folded to ``scale_factor``.

        h: (B, n) angles. Returns (B, T, output_width), ``self.dtype``, with T =
        ``execution.trajectories`` (1 when ``noise_p == 0``: the circuit is then deterministic);
        the mean over T estimates the density-matrix value without bias, and its standard
        error is ``std / sqrt(T)``. Differentiable. Runs whatever the execution backend.
        """
        return trajectory_samples(h, self.conv, self.pool, self.n_qubits, self.share, self.readout,
                                  self._execution, self._rng(self.conv.device), scale_factor)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the execution QNodes (local functions) and generator: rebuilt on use."""
        state = dict(self.__dict__)
        state["_qnodes"] = state["_generator"] = None
        return state

    # ------------------------------------------------------------------ forward

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, n) real angles -> (B, output_width) expectation values, ``self.dtype``."""
        if h.ndim != 2 or h.shape[1] != self.n_qubits:
            raise ValueError(f"h must have shape (B, {self.n_qubits}); got {tuple(h.shape)}")
        h = h.to(self.conv)
        if not self._execution.exact:
            return self._forward_execution(h)
        if self.backend == "pennylane":
            return self.qlayer(h).reshape(h.shape[0], -1)
        return statevector_expectations(h, self.conv, self.pool, self.n_qubits, self.share, self.readout)

    def _forward_execution(self, h: torch.Tensor) -> torch.Tensor:
        backend, ex = self._execution_backend, self._execution
        if backend in ("default.qubit", "default.mixed"):
            if self._qnodes is None:  # unpickled
                self.set_execution(ex)
            return pennylane_expectations(self._qnodes, h, self.conv, self.pool, self.n_qubits, self.readout,
                                          ex, backend)
        if backend == "torch":
            z = statevector_expectations(h, self.conv, self.pool, self.n_qubits, self.share, self.readout)
            return sample_shots(z, ex.shots, self._rng(h.device))
        return trajectory_expectations(h, self.conv, self.pool, self.n_qubits, self.share, self.readout, ex,
                                       self._rng(h.device))


def draw(layer: QCNNLayer, inputs: torch.Tensor | None = None, decimals: int | None = 2) -> str:
    """``qml.draw`` of the layer's circuit with its current weights, for one input.

    inputs: (n,) angles h (zeros if omitted). The drawing shows RY(2h) for the embedding.
    """
    qml = _import_pennylane()
    qnode = make_qnode(layer.n_qubits, layer.share, layer.readout)
    if inputs is None:
        inputs = torch.zeros(layer.n_qubits, dtype=layer.dtype)
    with torch.no_grad():
        return qml.draw(qnode, decimals=decimals)(inputs, layer.conv.detach(), layer.pool.detach())


def apply_execution(module: torch.nn.Module, execution: Execution | None = None) -> list[str]:
    """Set ``execution`` on every :class:`QCNNLayer` inside ``module`` (the module itself included).

    Every layer is validated before any is changed, so a ``ValueError`` (e.g. default.mixed
    asked for at 16 qubits) leaves the module as it was. Returns one line per layer,
    ``"<module path>: <describe_execution()>"``, saying which backend runs; an empty list when
    the module has no QCNN layer (a classical model).

    Example (how ``train.py`` / ``evaluate.py`` flags reach a model)::

        from agents.models.quantum import Execution, apply_execution
        for line in apply_execution(model, Execution(noise_p=args.noise_p, shots=args.shots,
                                                     mitigation=args.mitigation, grad=args.grad)):
            print(line)
    """
    execution = Execution() if execution is None else execution
    layers = [(name, m) for name, m in module.named_modules() if isinstance(m, QCNNLayer)]
    for _, layer in layers:
        resolve_backend(layer.n_qubits, execution, layer.backend)
    return [f"{name or type(module).__name__}: {layer.set_execution(execution)}" for name, layer in layers]
