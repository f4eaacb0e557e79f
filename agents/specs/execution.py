"""How the QCNN is executed (:class:`Execution`: noise, shots, ZNE, gradient method), the
backend that runs it (:func:`resolve_backend`) and its one-line description."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.specs.wiring import _check_choice, _check_layer_options, gate_counts

BACKENDS = ("torch", "pennylane")
DEFAULT_BACKEND = "torch"
"""the layer's backend unless asked otherwise (the faster one, docs/quantum.md)"""

MITIGATIONS = ("none", "zne")
EXTRAPOLATIONS = ("richardson", "linear")
GRAD_METHODS = ("backprop", "parameter-shift")
NOISE_BACKENDS = ("auto", "default.mixed", "trajectories")
MIXED_MAX_STATE_BYTES = 64 << 20
"""largest density matrix (one sample, complex128: 16 * 4**n bytes) for which ``default.mixed``
is chosen automatically, or accepted when asked for: n <= 11, so n = 4 (4 KiB) and n = 8
(1 MiB) run there, n = 16 (64 GiB) on trajectories"""


@dataclass(frozen=True)
class Execution:
    """How the QCNN is executed: gate noise, shots, error mitigation, gradient method.

    The default is the exact, noiseless circuit, which leaves the layer on its own backend
    (today's behaviour and speed). Set it with :meth:`QCNNLayer.set_execution` or, on every
    QCNN layer of a model, :func:`apply_execution`; the backend that then runs is chosen by
    :func:`resolve_backend` and described by :meth:`QCNNLayer.describe_execution`.

    Command-line flags map one to one: ``--noise-p`` -> ``noise_p``, ``--shots`` -> ``shots``,
    ``--mitigation`` -> ``mitigation``, ``--grad`` -> ``grad``. Bad values raise ``ValueError``
    naming the field.
    """

    noise_p: float = 0.0
    """depolarising probability in [0, 1]: ``qml.DepolarizingChannel(noise_p)`` on each wire of
    every elementary gate, right after it (docs/model.md §7)"""
    shots: int | None = None
    """measurements per circuit evaluation (None: exact expectation values)"""
    mitigation: str = "none"
    """"none" or "zne": zero-noise extrapolation (global unitary folding at noise scale factors 1, 3, 5, then a
    Richardson extrapolation to zero noise; docs/model.md §7)"""
    scale_factors: tuple[int, ...] = (1, 3, 5)
    """ZNE noise scale factors: distinct odd integers >= 1 (U (U^dagger U)^k for s = 2k + 1)"""
    extrapolation: str = "richardson"
    """ZNE extrapolation to zero noise: "richardson" (polynomial through all points) or "linear"
    (least-squares line)"""
    trajectories: int = 64
    """Monte-Carlo trajectories per sample and scale factor (trajectory backend only)"""
    grad: str = "backprop"
    """"backprop" (simulators) or "parameter-shift" (what hardware needs, docs/model.md eq. (7.5); runs on
    PennyLane: default.qubit, or default.mixed when noisy)"""
    noise_backend: str = "auto"
    """"auto" (default.mixed if the density matrix fits :data:`MIXED_MAX_STATE_BYTES`, else
    trajectories), "default.mixed" or "trajectories" (also at p = 0)"""
    seed: int | None = None
    """seed of the noise trajectories and of shot sampling (None: fresh entropy each time the
    execution is set)"""

    def __post_init__(self) -> None:
        p = self.noise_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"noise_p must be a probability in [0, 1]; got {p!r}")
        object.__setattr__(self, "noise_p", float(p))
        if self.shots is not None and (not _is_int(self.shots) or self.shots < 1):
            raise ValueError(f"shots must be None or an integer >= 1; got {self.shots!r}")
        _check_choice("mitigation", self.mitigation, MITIGATIONS)
        _check_choice("extrapolation", self.extrapolation, EXTRAPOLATIONS)
        _check_choice("grad", self.grad, GRAD_METHODS)
        _check_choice("noise_backend", self.noise_backend, NOISE_BACKENDS)
        factors = tuple(self.scale_factors) if isinstance(self.scale_factors, Sequence) else None
        if (not factors or len(factors) < 2 or len(set(factors)) != len(factors)
                or not all(_is_int(f) and f >= 1 and f % 2 for f in factors)):
            raise ValueError("scale_factors must be at least two distinct odd integers >= 1 "
                             f"(global folding); got {self.scale_factors!r}")
        object.__setattr__(self, "scale_factors", factors)
        if not _is_int(self.trajectories) or self.trajectories < 1:
            raise ValueError(f"trajectories must be an integer >= 1; got {self.trajectories!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise ValueError(f"seed must be None or an integer >= 0; got {self.seed!r}")

    @property
    def exact(self) -> bool:
        """True for the noiseless, exact, backprop default: the layer keeps its own fast path."""
        return (self.noise_p == 0 and self.shots is None and self.mitigation == "none"
                and self.grad == "backprop" and self.noise_backend == "auto")

    def replace(self, **changes: Any) -> Execution:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["scale_factors"] = list(self.scale_factors)
        return d


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mixed_state_bytes(n_qubits: int) -> int:
    """Bytes of one n-qubit density matrix in complex128: 16 * 4**n."""
    return 16 * 4**n_qubits


def resolve_backend(n_qubits: int, execution: Execution, layer_backend: str = DEFAULT_BACKEND) -> str:
    """The backend that runs a layer of ``n_qubits`` under ``execution``.

    * exact (:attr:`Execution.exact`): ``"torch"`` or ``"default.qubit"`` (the layer's own
      ``"pennylane"`` backend), unchanged;
    * ``grad="parameter-shift"``: ``"default.qubit"`` for a noiseless circuit without ZNE,
      else ``"default.mixed"``;
    * otherwise noiseless without ZNE (shots only): the layer's own backend; noisy or ZNE:
      ``"default.mixed"`` if one density matrix fits in :data:`MIXED_MAX_STATE_BYTES`, else
      ``"trajectories"``; ``noise_backend`` overrides the automatic choice.

    Raises ``ValueError`` when the choice cannot hold the circuit: ``default.mixed`` past
    :data:`MIXED_MAX_STATE_BYTES`, or parameter-shift on the trajectory backend.
    """
    _check_layer_options(n_qubits)
    _check_choice("backend", layer_backend, BACKENDS)
    own = "torch" if layer_backend == "torch" else "default.qubit"
    if execution.exact:
        return own
    fits = mixed_state_bytes(n_qubits) <= MIXED_MAX_STATE_BYTES
    noisy = execution.noise_p > 0 or execution.mitigation == "zne"
    choice = execution.noise_backend
    if choice == "auto":
        if execution.grad == "parameter-shift":
            choice = "default.mixed" if noisy else "default.qubit"
        elif not noisy:
            return own
        else:
            choice = "default.mixed" if fits else "trajectories"
    if choice == "default.mixed" and not fits:
        hint = ("grad='parameter-shift' needs it for a noisy circuit; use grad='backprop' (trajectories)"
                if execution.grad == "parameter-shift" else "use noise_backend='trajectories'")
        raise ValueError(
            f"noise_backend: default.mixed cannot hold n_qubits={n_qubits} (one density matrix is "
            f"{mixed_state_bytes(n_qubits) / 2**30:.3g} GiB > MIXED_MAX_STATE_BYTES = "
            f"{MIXED_MAX_STATE_BYTES / 2**20:.0f} MiB); {hint}")
    if choice == "trajectories" and execution.grad == "parameter-shift":
        raise ValueError("grad='parameter-shift' runs on PennyLane (default.qubit / default.mixed), not on "
                         f"the trajectory backend; noise_backend={execution.noise_backend!r}, "
                         f"n_qubits={n_qubits}: use grad='backprop' or a qubit count default.mixed holds")
    return choice



def describe_execution(n_qubits: int, execution: Execution, backend: str) -> str:
    """One line: the backend that runs (from :func:`resolve_backend`), the noise, shots, mitigation
    and gradient method (:meth:`QCNNLayer.describe_execution`)."""
    ex, n = execution, n_qubits
    counts = gate_counts(n)
    zne = ex.mitigation == "zne"
    if backend == "torch":
        where = "torch statevector simulator (exact probabilities)"
    elif backend == "default.qubit":
        where = "PennyLane default.qubit statevector"
    elif backend == "default.mixed":
        where = (f"PennyLane default.mixed density matrix "
                 f"({mixed_state_bytes(n) / 2**20:.3g} MiB per sample)")
    else:
        trajectories = ex.trajectories if ex.noise_p > 0 else 1
        where = (f"torch Monte-Carlo trajectories ({trajectories} per sample"
                 f"{' and scale factor' if zne else ''}, statevector)")
    if ex.noise_p > 0:
        noise = (f"DepolarizingChannel(p={ex.noise_p:g}) on each wire after every one of the "
                 f"{counts['gates']} gates ({counts['channels']} channels)")
    else:
        noise = "noiseless"
    pennylane = backend in ("default.qubit", "default.mixed")
    if ex.shots is None:
        shots = "exact expectation values"
    else:
        how = "qml.set_shots" if pennylane else "binomial sampling, seeded"
        shots = f"{ex.shots} shots ({how})"
    if zne:
        how = "qml.noise.mitigate_with_zne + fold_global" if pennylane else "global folding"
        mitigation = (f"ZNE ({how}, scale factors {','.join(map(str, ex.scale_factors))}, "
                      f"{ex.extrapolation} extrapolation)")
    else:
        mitigation = "no mitigation"
    grad = f"grad={ex.grad}"
    if ex.shots is not None and ex.grad == "backprop":
        grad += " (straight-through: gradient of the exact expectation)"
    return f"n={n} qubits: {where}; {noise}; {shots}; {mitigation}; {grad}"
