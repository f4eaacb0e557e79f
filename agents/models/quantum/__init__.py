"""Quantum convolutional neural network (QCNN) layer of Hur et al. (2022), as used by the HQCNN.

The only module of cfpilot that imports PennyLane, and it does so lazily (inside the
functions that build a QNode), so ``import agents.models.quantum`` and the ``"torch"`` backend
work without loading it.

The circuit on ``n`` qubits (``n`` in {4, 8, 16}; wire 0 is the most significant bit,
as in PennyLane):

1. **Angle embedding.** Qubit ``i`` is prepared in ``cos(h_i)|0> + sin(h_i)|1>`` (SPEC §4).
   PennyLane's ``RY(theta)|0> = cos(theta/2)|0> + sin(theta/2)|1>``, so the gate applied
   is ``RY(2 h_i)``; a single embedded qubit has ``<Z> = cos(2 h_i)``.
2. **log2(n) levels of convolution + pooling** (:func:`qcnn_wiring`). With ``active``
   the sorted active wires of a level (all ``n`` at level 1):

   * ``len(active) > 2``: convolve the wrap-around pair ``(active[0], active[-1])``,
     then the even pairs ``(active[0], active[1]), (active[2], active[3]), ...``, then
     the odd pairs ``(active[1], active[2]), (active[3], active[4]), ...``; pool
     ``active[2i+1] -> active[2i]`` (control -> target); the targets stay active.
   * ``len(active) == 2``: convolve ``(active[0], active[1])`` once and pool
     ``active[0] -> active[1]``; ``active[1]`` is the final survivor.

   For n = 8 this is Hur et al.'s wiring: level 1 convolves (0,7), (0,1), (2,3), (4,5),
   (6,7), (1,2), (3,4), (5,6) and pools 1->0, 3->2, 5->4, 7->6; level 2 convolves
   (0,6), (0,2), (4,6), (2,4) and pools 2->0, 6->4; level 3 convolves (0,4) and pools
   0->4; the survivor is wire 4.

   * Convolution block on wires ``(a, b)``, 15 parameters (Hur et al.'s ``U_SU4``):
     U3(p0,p1,p2) on a; U3(p3,p4,p5) on b; CNOT(a,b); RY(p6) on a; RZ(p7) on b;
     CNOT(b,a); RY(p8) on a; CNOT(a,b); U3(p9,p10,p11) on a; U3(p12,p13,p14) on b.
   * Pooling block ``control -> target``, 2 parameters: CRZ(q0); PauliX on control;
     CRX(q1). The control wire is not measured or reset, it simply leaves the active set.

3. **Readout**: Pauli-Z expectation values, on all ``n`` wires (``readout="all"``) or on
   the final survivor only (``readout="final"``).

Parameter sharing (``share``): ``"level"`` (SPEC default: one conv set and one pool set
per level), ``"all"`` (one of each for the whole circuit, as in the paper's abstract and
Table I) or ``"block"`` (every block its own parameters: the paper's ref. [11],
"hqcnn-hur"). See :func:`weight_shapes` and :func:`count_quantum_parameters`.

Two backends compute the same function, and hold the same two parameters ``conv`` and
``pool``, so a ``state_dict`` moves freely between them:

* ``"pennylane"``: a ``default.qubit`` QNode, ``diff_method="backprop"``, torch
  interface, wrapped as ``qml.qnn.TorchLayer``; a ``(B, n)`` batch is one broadcast call.
* ``"torch"``: a batched statevector simulator in plain torch (complex128 for float64).
  Every block is one 4x4 matrix, built differentiably from the weights, applied to the
  ``(B, 2**n)`` state with one batched matmul (see :func:`_torch_plan`); the backward
  pass is written by hand: it reuses the gate inputs saved by the forward pass or, when
  those would be large (n = 16 with batch 256), un-computes them from the final state --
  the circuit is unitary -- so memory stays at a few statevectors.

Example::

    >>> import torch
    >>> from agents.models.quantum import QCNNLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = QCNNLayer(n_qubits=8, share="level", readout="all")
    >>> layer(torch.zeros(5, 8)).shape
    torch.Size([5, 8])

Noise, shots, ZNE and parameter shift (:class:`Execution`)
----------------------------------------------------------

``layer.set_execution(Execution(...))`` -- or :func:`apply_execution` on a whole model --
runs the same weights noisily, with shots, mitigated, or with parameter-shift gradients; the
default ``Execution()`` is the exact circuit on the layer's own backend, untouched.

* **A gate** is one elementary operation of the circuit as PennyLane queues it: each
  embedding ``RY(2 h_i)``, and each operation of :data:`CONV_GATES` (U3, U3, CNOT, RY, RZ,
  CNOT, RY, CNOT, U3, U3) and :data:`POOL_GATES` (CRZ, PauliX, CRX) -- also when its angle
  happens to be 0, and also the adjoint gates a folded circuit adds. :func:`gate_counts`:
  63, 159, 351 gates at n = 4, 8, 16.
* **Noise**: after every gate, ``qml.DepolarizingChannel(p)`` on each wire it acts on --
  Kraus operators sqrt(1-p) I, sqrt(p/3) X, sqrt(p/3) Y, sqrt(p/3) Z, so a lone ``<Z>``
  shrinks by 1 - 4p/3. A two-qubit gate gets two independent single-qubit channels:
  PennyLane has no two-qubit depolarising channel, and this keeps one channel type and one
  ``p`` throughout (a two-qubit depolarising channel with 15 Paulis would be another model).
  84, 212, 468 channels at n = 4, 8, 16.
* **Backends** (:func:`resolve_backend`, stated by :meth:`QCNNLayer.describe_execution`):
  ``default.mixed`` (PennyLane density matrix; the channels inserted by ``qml.noise.add_noise``
  with a ``NoiseModel``) when one density matrix, 16 * 4**n bytes, fits in
  :data:`MIXED_MAX_STATE_BYTES` (n = 4, 8); beyond (n = 16: 64 GiB) ``"trajectories"``: an
  unbiased Monte-Carlo simulation of the same channels on the batched torch statevector
  simulator -- one Pauli per gate wire drawn with the channel's probabilities, averaged over
  ``Execution.trajectories`` runs per sample (:class:`_Trajectories`). Its cost is that of
  ``trajectories`` noiseless evaluations: each step's gates and errors are multiplied into one
  4x4 matrix per row first.
* **Shots**: ``qml.set_shots`` on the PennyLane backends (devices seeded with
  ``Execution.seed``); on the torch backends, each wire's estimate is 2 k / shots - 1 with
  k ~ Binomial(shots, (1 + <Z>) / 2) from the exact (or trajectory-averaged) probabilities
  (marginals are exact; correlations between wires are not sampled, which no output needs).
  With ``grad="backprop"`` the gradient of a shot estimate is that of the exact expectation
  (straight-through); ``grad="parameter-shift"`` differentiates the shot estimates themselves.
* **ZNE**: global folding U (U^dagger U)^k at scale factor s = 2k + 1 (1, 3, 5 by default:
  3x and 5x the noisy gates), then Richardson (or least-squares linear) extrapolation to
  s = 0. On ``default.mixed`` through PennyLane's own ``qml.noise.mitigate_with_zne`` with
  ``qml.noise.fold_global`` and ``qml.noise.richardson_extrapolate`` / ``poly_extrapolate``;
  on trajectories the same folding of the gate list and the same extrapolation weights
  (:func:`zne_weights`), every folded gate followed by its own noise.
* **Parameter shift** (SPEC eq. 9-11): ``grad="parameter-shift"`` runs on ``default.qubit``
  (noiseless) or ``default.mixed`` (noisy), ``diff_method="parameter-shift"``. Equal to
  backprop to ~1e-15 on the noiseless circuit, and 1e4-1e5 times slower than the torch
  backprop (every angle occurrence is shifted separately: ~180 circuits per sample at n = 4,
  each a PennyLane tape; benchmarks/bench_noise.py).

PennyLane 0.45 findings behind these choices:

* ``qml.noise.fold_global`` raises on tapes that already hold channels, so noise must be
  added after folding (``add_noise`` placed after ``mitigate_with_zne`` in the transform
  program); ``add_noise`` at its default level decomposes ``Adjoint(U3)`` etc. into single
  gates first, so folded tapes keep one channel set per gate.
* ``param_shift`` cannot differentiate a tape broadcast in a trainable parameter (the
  TorchLayer inputs): NotImplementedError, PennyLane #4462. ``qml.transforms.broadcast_expand``
  splits the batch into one tape per sample; the shifted tapes are then broadcast
  (``gradient_kwargs={"broadcast": True}``).
* ``mitigate_with_zne`` with a single observable (readout "final") unstacks its (B,) result
  along the *batch*, returning B scalars; ``TorchLayer`` stacks a tuple along dim 0, so the
  noisy backends call their QNode directly and combine outputs themselves.
* ``qml.RZ(x).eigvals()`` is complex64 for a float64 torch ``x``, and ``default.mixed`` applies
  diagonal gates (RZ, CRZ) through eigvals: with the torch interface its values and backprop
  gradients are good to ~1e-8 only (numpy inputs, default.qubit and parameter shift are exact).
* Shots on the device (``qml.device(..., shots=N)``) are deprecated; ``qml.set_shots``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

if TYPE_CHECKING:  # pragma: no cover
    import pennylane

CONV_PARAMS = 15
"""parameters of one convolution block (Hur et al.'s SU(4)-style ``U_SU4``; SPEC's T)"""
POOL_PARAMS = 2
"""parameters of one pooling block (CRZ angle, CRX angle)"""

SUPPORTED_N_QUBITS = (4, 8, 16)
SHARE_MODES = ("level", "all", "block")
READOUTS = ("all", "final")
BACKENDS = ("torch", "pennylane")

# Training samples/s measured with benchmarks/bench_qml.py (2-core AMD EPYC VM, 1 torch
# thread, float64, forward + backward of the summed outputs, share="level", readout="all"):
#   n = 8,  batch 256: torch 10,900; PennyLane broadcast TorchLayer 1,420; per-sample QNode 15
#   n = 16:            torch 12.3 (batch 256); PennyLane broadcast 2.7 (batch 4); per-sample 2.0
# (with 2 threads on a quieter machine: n = 8 torch 16,200, PennyLane broadcast 1,530),
# so the pure-torch simulator, 7-11x faster at n = 8 and ~5x at n = 16, is the default.
DEFAULT_BACKEND = "torch"

MITIGATIONS = ("none", "zne")
EXTRAPOLATIONS = ("richardson", "linear")
GRAD_METHODS = ("backprop", "parameter-shift")
NOISE_BACKENDS = ("auto", "default.mixed", "trajectories")
MIXED_MAX_STATE_BYTES = 64 << 20
"""largest density matrix (one sample, complex128: 16 * 4**n bytes) for which ``default.mixed``
is chosen automatically, or accepted when asked for: n <= 11, so n = 4 (4 KiB) and n = 8
(1 MiB) run there, n = 16 (64 GiB) on trajectories"""
PENNYLANE_CHUNK_BYTES = 1 << 30
"""a PennyLane execution backend evaluates its (broadcast) batch in chunks of about this many
bytes of states (with backprop: one state per operation per sample is kept)"""


def _check_choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def _check_power_of_two(n_qubits: int) -> None:
    if not isinstance(n_qubits, int) or n_qubits < 2 or n_qubits & (n_qubits - 1):
        raise ValueError(f"n_qubits must be a power of two >= 2; got {n_qubits!r}")


# --------------------------------------------------------------------------- execution settings


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
    every elementary gate, right after it (see the module docstring, "Noise")"""
    shots: int | None = None
    """measurements per circuit evaluation (None: exact expectation values)"""
    mitigation: str = "none"
    """"none" or "zne" (global unitary folding at ``scale_factors``, then ``extrapolation``)"""
    scale_factors: tuple[int, ...] = (1, 3, 5)
    """ZNE noise scale factors: distinct odd integers >= 1 (U (U^dagger U)^k for s = 2k + 1)"""
    extrapolation: str = "richardson"
    """ZNE extrapolation to zero noise: "richardson" (polynomial through all points) or "linear"
    (least-squares line)"""
    trajectories: int = 64
    """Monte-Carlo trajectories per sample and scale factor (trajectory backend only)"""
    grad: str = "backprop"
    """"backprop" (simulators) or "parameter-shift" (what hardware needs, SPEC eq. 9-11; runs on
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


# --------------------------------------------------------------------------- wiring


class Level(NamedTuple):
    """One convolution + pooling level of the QCNN."""

    conv: list[tuple[int, int]]
    """wire pairs ``(a, b)`` of the convolution blocks, in circuit order"""
    pool: list[tuple[int, int]]
    """``(control, target)`` pairs of the pooling blocks, in circuit order; targets survive"""


@cache
def _wiring(n_qubits: int) -> tuple[Level, ...]:
    levels = []
    active = list(range(n_qubits))
    while len(active) > 1:
        if len(active) == 2:
            conv = [(active[0], active[1])]
            pool = [(active[0], active[1])]
            survivors = [active[1]]
        else:
            conv = [(active[0], active[-1])]
            conv += [(active[i], active[i + 1]) for i in range(0, len(active), 2)]
            conv += [(active[i], active[i + 1]) for i in range(1, len(active) - 1, 2)]
            pool = [(active[i + 1], active[i]) for i in range(0, len(active), 2)]
            survivors = active[0::2]
        levels.append(Level(conv, pool))
        active = survivors
    return tuple(levels)


def qcnn_wiring(n_qubits: int) -> list[Level]:
    """The QCNN's blocks, level by level (see the module docstring for the rule).

    ``n_qubits`` may be any power of two >= 2 (the layer itself supports 4, 8 and 16).
    Returns ``log2(n_qubits)`` :class:`Level` s; level ``l`` has ``n / 2**(l-1)`` conv
    blocks (one at the last level) and ``n / 2**l`` pool blocks.
    """
    _check_power_of_two(n_qubits)
    return [Level(list(lv.conv), list(lv.pool)) for lv in _wiring(n_qubits)]


def final_wire(n_qubits: int) -> int:
    """The wire left active after the last pooling (4 for n = 8), read by ``readout="final"``."""
    return _wiring_checked(n_qubits)[-1].pool[-1][1]


def _wiring_checked(n_qubits: int) -> tuple[Level, ...]:
    _check_power_of_two(n_qubits)
    return _wiring(n_qubits)


class _Block(NamedTuple):
    kind: str  # "conv" or "pool"
    wires: tuple[int, int]  # (a, b) for conv, (control, target) for pool
    index: int  # row of the ``conv`` / ``pool`` weight that this block uses


@cache
def _blocks(n_qubits: int, share: str) -> tuple[_Block, ...]:
    """Every block in circuit order, with the parameter row it reads under ``share``."""
    blocks = []
    n_conv = n_pool = 0
    for level_index, level in enumerate(_wiring(n_qubits)):
        for kind, pairs in (("conv", level.conv), ("pool", level.pool)):
            for pair in pairs:
                if share == "all":
                    index = 0
                elif share == "level":
                    index = level_index
                elif kind == "conv":
                    index, n_conv = n_conv, n_conv + 1
                else:
                    index, n_pool = n_pool, n_pool + 1
                blocks.append(_Block(kind, pair, index))
    return tuple(blocks)


# --------------------------------------------------------------------------- elementary gates


class GateSpec(NamedTuple):
    """One elementary gate of a block: the unit after which gate noise acts (see "Noise")."""

    name: str
    """PennyLane operation name"""
    positions: tuple[int, ...]
    """block wires it acts on: 0 = first wire of the block (``a`` / control), 1 = second"""
    params: tuple[int, ...]
    """columns of the block's parameter row that it takes, in order"""


CONV_GATES: tuple[GateSpec, ...] = (
    GateSpec("U3", (0,), (0, 1, 2)), GateSpec("U3", (1,), (3, 4, 5)), GateSpec("CNOT", (0, 1), ()),
    GateSpec("RY", (0,), (6,)), GateSpec("RZ", (1,), (7,)), GateSpec("CNOT", (1, 0), ()),
    GateSpec("RY", (0,), (8,)), GateSpec("CNOT", (0, 1), ()),
    GateSpec("U3", (0,), (9, 10, 11)), GateSpec("U3", (1,), (12, 13, 14)),
)
"""the convolution block (Hur et al.'s U_SU4), in circuit order: 7 one-qubit and 3 two-qubit gates"""
POOL_GATES: tuple[GateSpec, ...] = (
    GateSpec("CRZ", (0, 1), (0,)), GateSpec("PauliX", (0,), ()), GateSpec("CRX", (0, 1), (1,)),
)
"""the pooling block control -> target, in circuit order: 1 one-qubit and 2 two-qubit gates"""


def gate_counts(n_qubits: int) -> dict[str, int]:
    """Elementary gates of the circuit (any ``share``) and the depolarising channels after them.

    ``gates`` = n embedding RYs + 10 per conv block + 3 per pool block (63, 159, 351 at
    n = 4, 8, 16); ``channels`` counts one single-qubit channel per wire of every gate
    (n + 13 per conv + 5 per pool: 84, 212, 468).
    """
    _check_layer_options(n_qubits)
    n_conv = sum(len(level.conv) for level in _wiring(n_qubits))
    n_pool = sum(len(level.pool) for level in _wiring(n_qubits))
    gates = n_qubits + n_conv * len(CONV_GATES) + n_pool * len(POOL_GATES)
    channels = (n_qubits + n_conv * sum(len(g.positions) for g in CONV_GATES)
                + n_pool * sum(len(g.positions) for g in POOL_GATES))
    two = (n_conv * sum(len(g.positions) == 2 for g in CONV_GATES)
           + n_pool * sum(len(g.positions) == 2 for g in POOL_GATES))
    return {"gates": gates, "one_qubit": gates - two, "two_qubit": two, "channels": channels}


# --------------------------------------------------------------------------- shapes


def _check_layer_options(n_qubits: int, share: str | None = None, readout: str | None = None) -> None:
    _check_choice("n_qubits", n_qubits, SUPPORTED_N_QUBITS)
    if share is not None:
        _check_choice("share", share, SHARE_MODES)
    if readout is not None:
        _check_choice("readout", readout, READOUTS)


def weight_shapes(n_qubits: int, share: str = "level") -> dict[str, tuple[int, int]]:
    """Trainable weights in ``TorchLayer`` style: ``{"conv": (S_c, 15), "pool": (S_p, 2)}``.

    ``S_c = S_p = log2(n)`` for ``share="level"``, ``1`` for ``"all"``; for ``"block"``
    ``S_c = 2n - 3`` conv blocks and ``S_p = n - 1`` pool blocks.
    """
    _check_layer_options(n_qubits, share)
    blocks = _blocks(n_qubits, share)
    n_conv = 1 + max(b.index for b in blocks if b.kind == "conv")
    n_pool = 1 + max(b.index for b in blocks if b.kind == "pool")
    return {"conv": (n_conv, CONV_PARAMS), "pool": (n_pool, POOL_PARAMS)}


def count_quantum_parameters(n_qubits: int, share: str = "level") -> int:
    """Number of trainable parameters of the quantum circuit.

    * ``"all"``: 15 + 2 = 17.
    * ``"level"``: 17 log2(n) (SPEC: T log2 n plus the pooling parameters).
    * ``"block"``: 15 (2n - 3) + 2 (n - 1) (209 at n = 8).

    SPEC and the paper write T * sum_{i=1..log2 n} 2^i for the per-block variant, i.e.
    14 conv blocks at n = 8. The wiring built here (Hur et al.'s) has 2n - 3 conv blocks,
    13 at n = 8, because the last, two-wire level convolves its pair once, not twice;
    the count returned is the one of the circuit actually built.
    """
    return sum(math.prod(shape) for shape in weight_shapes(n_qubits, share).values())


def output_width(n_qubits: int, readout: str = "all") -> int:
    """Width of the layer's output: ``n_qubits`` for ``readout="all"``, 1 for ``"final"``."""
    _check_layer_options(n_qubits, readout=readout)
    return n_qubits if readout == "all" else 1


# --------------------------------------------------------------------------- gate matrices (torch)


def ry_matrix(theta: torch.Tensor) -> torch.Tensor:
    """RY(theta) = [[cos(theta/2), -sin(theta/2)], [sin(theta/2), cos(theta/2)]].

    theta: (...) real; returns (..., 2, 2) of the same (real) dtype.
    """
    c, s = torch.cos(theta / 2), torch.sin(theta / 2)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def _u3(theta: torch.Tensor, phi: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """PennyLane's U3: [[c, -e^{i delta} s], [e^{i phi} s, e^{i (phi + delta)} c]]; (S,) -> (S, 2, 2)."""
    c = torch.cos(theta / 2).to(_complex(theta.dtype))
    s = torch.sin(theta / 2).to(_complex(theta.dtype))
    ep, ed = torch.polar(torch.ones_like(phi), phi), torch.polar(torch.ones_like(delta), delta)
    return torch.stack([torch.stack([c, -ed * s], -1), torch.stack([ep * s, ep * ed * c], -1)], -2)


def _rz(theta: torch.Tensor) -> torch.Tensor:
    """RZ(theta) = diag(e^{-i theta/2}, e^{i theta/2}); (S,) -> (S, 2, 2)."""
    one = torch.ones_like(theta)
    zero = torch.zeros_like(theta).to(_complex(theta.dtype))
    e = torch.polar(one, theta / 2)
    return torch.stack([torch.stack([e.conj(), zero], -1), torch.stack([zero, e], -1)], -2)


def _rx(theta: torch.Tensor) -> torch.Tensor:
    """RX(theta) = [[c, -i s], [-i s, c]]; (S,) -> (S, 2, 2)."""
    c = torch.cos(theta / 2).to(_complex(theta.dtype))
    s = torch.sin(theta / 2).to(_complex(theta.dtype))
    return torch.stack([torch.stack([c, -1j * s], -1), torch.stack([-1j * s, c], -1)], -2)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _kron(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(S, 2, 2) x (S, 2, 2) -> (S, 4, 4), first factor on the more significant wire."""
    return torch.einsum("sij,skl->sikjl", a, b).reshape(a.shape[0], 4, 4)


_CNOT_AB = ((1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0))
_CNOT_BA = ((1, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 1, 0, 0))
_X_ON_A = ((0, 0, 1, 0), (0, 0, 0, 1), (1, 0, 0, 0), (0, 1, 0, 0))


def conv_matrices(conv: torch.Tensor) -> torch.Tensor:
    """Unitaries of the convolution block on wires (a, b), basis index ``2 bit_a + bit_b``.

    conv: (S, 15) real angles; returns (S, 4, 4) complex.
    """
    p = conv.unbind(-1)
    cdt = _complex(conv.dtype)
    cnot_ab = torch.tensor(_CNOT_AB, dtype=cdt, device=conv.device)
    cnot_ba = torch.tensor(_CNOT_BA, dtype=cdt, device=conv.device)
    eye = torch.eye(2, dtype=cdt, device=conv.device).expand(conv.shape[0], 2, 2)
    m = _kron(_u3(p[0], p[1], p[2]), _u3(p[3], p[4], p[5]))
    m = cnot_ab @ m
    m = _kron(ry_matrix(p[6]).to(cdt), _rz(p[7])) @ m
    m = cnot_ba @ m
    m = _kron(ry_matrix(p[8]).to(cdt), eye) @ m
    m = cnot_ab @ m
    return _kron(_u3(p[9], p[10], p[11]), _u3(p[12], p[13], p[14])) @ m


def pool_matrices(pool: torch.Tensor) -> torch.Tensor:
    """Unitaries of the pooling block control -> target, basis index ``2 bit_control + bit_target``.

    pool: (S, 2) real angles; returns (S, 4, 4) complex: CRX(q1) (X on control) CRZ(q0).
    """
    q0, q1 = pool.unbind(-1)
    cdt = _complex(pool.dtype)
    S = pool.shape[0]
    eye = torch.eye(2, dtype=cdt, device=pool.device).expand(S, 2, 2)
    zero = torch.zeros(S, 2, 2, dtype=cdt, device=pool.device)

    def controlled(u: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.cat([eye, zero], -1), torch.cat([zero, u], -1)], -2)

    x_on_control = torch.tensor(_X_ON_A, dtype=cdt, device=pool.device)
    return controlled(_rx(q1)) @ x_on_control @ controlled(_rz(q0))


def _swap_pair(m: torch.Tensor) -> torch.Tensor:
    """The same two-qubit gate with its wires listed in the other order: SWAP m SWAP."""
    return m.reshape(-1, 2, 2, 2, 2).permute(0, 2, 1, 4, 3).reshape(-1, 4, 4)


def _controlled(u: torch.Tensor) -> torch.Tensor:
    """|0><0| x I + |1><1| x u, control on the more significant wire; (S, 2, 2) -> (S, 4, 4)."""
    eye = torch.eye(2, dtype=u.dtype, device=u.device).expand_as(u)
    zero = torch.zeros_like(u)
    return torch.cat([torch.cat([eye, zero], -1), torch.cat([zero, u], -1)], -2)


def elementary_matrices(kind: str, weights: torch.Tensor) -> torch.Tensor:
    """The elementary gates of a block, each as a 4x4 matrix on the block's wire pair.

    kind: ``"conv"`` (weights (S, 15), :data:`CONV_GATES`, G = 10) or ``"pool"`` (weights
    (S, 2), :data:`POOL_GATES`, G = 3). Returns (S, G, 4, 4) complex in circuit order, basis
    index ``2 bit_first + bit_second``; their product (last gate leftmost) is
    :func:`conv_matrices` / :func:`pool_matrices`.
    """
    _check_choice("kind", kind, ("conv", "pool"))
    gates = CONV_GATES if kind == "conv" else POOL_GATES
    cdt = _complex(weights.dtype)
    S = weights.shape[0]
    cols = weights.unbind(-1)
    eye = torch.eye(2, dtype=cdt, device=weights.device).expand(S, 2, 2)
    fixed = {("CNOT", (0, 1)): _CNOT_AB, ("CNOT", (1, 0)): _CNOT_BA, ("PauliX", (0,)): _X_ON_A}
    one_qubit = {"U3": _u3, "RY": lambda t: ry_matrix(t).to(cdt), "RZ": _rz, "RX": _rx}
    mats = []
    for gate in gates:
        args = [cols[i] for i in gate.params]
        if (gate.name, gate.positions) in fixed:
            m = torch.tensor(fixed[gate.name, gate.positions], dtype=cdt, device=weights.device)
            m = m.expand(S, 4, 4)
        elif gate.name in ("CRZ", "CRX"):
            m = _controlled((_rz if gate.name == "CRZ" else _rx)(*args))
        else:
            u = one_qubit[gate.name](*args)
            m = _kron(u, eye) if gate.positions == (0,) else _kron(eye, u)
        mats.append(m)
    return torch.stack(mats, 1)


def _pauli_tables(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(4, 2, 2) I, X, Y, Z and (16, 4, 4) their two-qubit products, index 4 i + j = P_i x P_j."""
    one = torch.tensor([[[1, 0], [0, 1]], [[0, 1], [1, 0]], [[0, -1j], [1j, 0]], [[1, 0], [0, -1]]],
                       dtype=dtype, device=device)
    two = torch.einsum("aij,bkl->abikjl", one, one).reshape(16, 4, 4)
    return one, two


# --------------------------------------------------------------------------- torch statevector

_STORE_LIMIT_BYTES = 1 << 30
"""below this many bytes of saved intermediate states the torch backend keeps them for the
backward pass; above it (n = 16 with a large batch) it un-computes them (adjoint method)"""


class _Permutation(NamedTuple):
    """A permutation of the n qubit axes with runs of axes that stay adjacent merged:
    view the state as ``(N, *sizes)``, then permute its axes to ``(0, *(1 + order))``."""

    sizes: tuple[int, ...]
    order: tuple[int, ...]


class _Step(NamedTuple):
    perm: _Permutation | None  # moves the gate's wires to the first two axes (None: there already)
    unperm: _Permutation | None  # its inverse, for the backward pass
    rows: tuple[int, ...]  # matrix-table rows of the fused blocks, in circuit order


class _Plan(NamedTuple):
    init_layout: tuple[int, ...]  # wire held by each state axis (axis 0 most significant) after embedding
    steps: tuple[_Step, ...]
    z_signs: torch.Tensor  # (2**n, n) float64: column w is +1 / -1 for wire w = 0 / 1 in the final layout


@cache
def _torch_plan(n_qubits: int, share: str) -> _Plan:
    """How the torch simulator applies the circuit: one fused 4x4 matrix per step.

    The state is kept as ``(N, 2, ..., 2)`` with a *layout* (which wire sits on which
    axis) that changes as the circuit runs: before each step the two wires of its gate are
    moved to the first two axes (one copy, through a view whose runs of still-adjacent axes
    are merged, see :func:`_merged`; skipped when they are there already), so the gate
    is one ``bmm`` of the (expanded) 4x4 matrix with the ``(N, 4, 2**(n-2))`` state, and
    no copy moves them back. (At n = 8 this measured 3-4x faster than ``(N * 2**(n-2), 4)
    @ (4, 4)`` with the pair last, MKL being slow on tall, 4-wide complex matrices, and
    than ``torch.matmul`` of a 2-D with a 3-D tensor, which copies to fold the batch.)
    Consecutive blocks on the same pair of wires are fused into one step. The embedding is
    built directly in the layout the first step needs.

    Matrix-table rows (see :meth:`QCNNLayer._gate_matrices`): conv sets, then pool sets,
    then both again with their two wires swapped (for a block whose wires sit on the first
    two axes in the opposite order).
    """
    n_conv, n_pool = (s[0] for s in weight_shapes(n_qubits, share).values())
    offset = {"conv": 0, "pool": n_conv}
    n_table = n_conv + n_pool
    groups, layouts, moves = _plan_groups(n_qubits, share)
    steps = []
    for group, layout, (perm, unperm) in zip(groups, layouts, moves):
        rows = tuple(offset[blk.kind] + blk.index + (0 if layout[:2] == blk.wires else n_table)
                     for blk in group)
        steps.append(_Step(perm, unperm, rows))
    layout = layouts[-1]
    bits = (torch.arange(2**n_qubits)[:, None] >> torch.arange(n_qubits - 1, -1, -1)) & 1  # by axis
    signs = (1 - 2 * bits).to(torch.float64)
    return _Plan(layouts[0], tuple(steps), signs[:, [layout.index(w) for w in range(n_qubits)]])


@cache
def _plan_groups(n_qubits: int, share: str) -> tuple[
    tuple[tuple[_Block, ...], ...], tuple[tuple[int, ...], ...],
    tuple[tuple[_Permutation | None, _Permutation | None], ...],
]:
    """The steps of :func:`_torch_plan`: consecutive blocks on one wire pair grouped, the
    layout during each step (its pair on the first two axes) and the (perm, unperm) into it."""
    groups: list[list[_Block]] = []
    for block in _blocks(n_qubits, share):
        if groups and set(groups[-1][0].wires) == set(block.wires):
            groups[-1].append(block)
        else:
            groups.append([block])
    first = groups[0][0].wires
    layout = list(first) + [w for w in range(n_qubits) if w not in first]
    layouts, moves = [], []
    for group in groups:
        a, b = group[0].wires
        perm = unperm = None
        if set(layout[:2]) != {a, b}:
            new = [a, b] + [w for w in layout if w not in (a, b)]
            perm, unperm = _merged([layout.index(w) for w in new]), _merged([new.index(w) for w in layout])
            layout = new
        layouts.append(tuple(layout))
        moves.append((perm, unperm))
    return tuple(tuple(g) for g in groups), tuple(layouts), tuple(moves)


def _merged(perm: list[int]) -> _Permutation:
    """``perm`` (new axis i = old axis perm[i], all axes of size 2) with adjacent runs merged.

    Copying a 17-axis permuted view of size-2 axes measured ~100x slower than copying
    the same data as a 5-axis view, so the runs are merged once, when the plan is built.
    """
    runs: list[list[int]] = []
    for p in perm:
        if runs and p == runs[-1][-1] + 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    by_start = sorted(range(len(runs)), key=lambda r: runs[r][0])
    sizes = tuple(2 ** len(runs[r]) for r in by_start)
    return _Permutation(sizes, tuple(by_start.index(r) for r in range(len(runs))))


def _permute(state: torch.Tensor, perm: _Permutation, out: torch.Tensor) -> torch.Tensor:
    """Copy (N, 2**n) ``state`` into ``out`` with its qubit axes permuted; returns ``out``."""
    src = state.view(state.shape[0], *perm.sizes).permute(0, *[1 + o for o in perm.order])
    out.view(src.shape).copy_(src)
    return out


class _PingPong:
    """Two preallocated statevector buffers used in turn (``None`` buffers: allocate each time).

    At n = 16 with batch 256 a state is 268 MB; allocations that large go back to the OS
    when freed, and faulting the pages in again cost about as much as the gate itself.
    """

    def __init__(self, like: torch.Tensor, reuse: bool, first: torch.Tensor | None = None) -> None:
        self.like = like
        if reuse:
            self.buffers = [torch.empty_like(like) if first is None else first, torch.empty_like(like)]
        else:
            self.buffers = None

    def other(self, current: torch.Tensor) -> torch.Tensor:
        """A buffer that does not hold ``current``."""
        if self.buffers is None:
            return torch.empty_like(self.like)
        first = self.buffers[0]
        return self.buffers[1] if current.data_ptr() == first.data_ptr() else first


def _gate_grad(g: torch.Tensor, v: torch.Tensor, scratch: torch.Tensor,
               per_row: bool = False) -> torch.Tensor:
    """d loss / d G for ``out = G v``: sum over the batch of g_n v_n^H; g, v (N, 4, R) -> (4, 4)
    (``per_row``: one gate per row, no sum: (N, 4, 4)).

    ``conj(v)`` goes through ``scratch`` (N, 4, R): a conjugated operand would make ``bmm``
    allocate a copy; a transposed one it reads as is.
    """
    torch.conj_physical(v, out=scratch)
    grad = torch.bmm(g, scratch.transpose(1, 2))
    return grad if per_row else grad.sum(0)


class _Circuit(torch.autograd.Function):
    """``state -> (steps of 4x4 gates on the first two axes) -> state``, with its own backward.

    state: (N, 2**n) complex in the plan's initial layout; gates: (K, 4, 4) complex, one per
    step, or (K, N, 4, 4), one per step and row (noisy trajectories, :class:`_Trajectories`).
    Out: (N, 2**n) complex in the final layout. The backward pass either reuses the
    gate inputs saved by the forward pass or, when they would exceed
    :data:`_STORE_LIMIT_BYTES`, un-computes them from the final state (the circuit is
    unitary: ``v = G^H out``), keeping memory at a few statevectors.
    """

    @staticmethod
    def forward(ctx: Any, state: torch.Tensor, gates: torch.Tensor, steps: tuple[_Step, ...]) -> torch.Tensor:
        N = state.shape[0]
        store = state.numel() * state.element_size() * len(steps) <= _STORE_LIMIT_BYTES
        store = store and any(ctx.needs_input_grad[:2])
        buffers = _PingPong(state, reuse=not store)
        inputs = []
        for step, gate in zip(steps, gates):
            if step.perm is not None:
                state = _permute(state, step.perm, out=buffers.other(state))
            v = state.view(N, 4, -1)
            if store:
                inputs.append(v)
            state = buffers.other(state)
            torch.bmm(gate.expand(N, 4, 4), v, out=state.view(N, 4, -1))
        ctx.steps, ctx.inputs = steps, inputs
        ctx.save_for_backward(gates, None if store else state)
        return state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_state: torch.Tensor) -> tuple:
        gates, final = ctx.saved_tensors
        grad_gates = torch.empty_like(gates)
        per_row = gates.ndim == 4
        if final is None:  # the forward pass saved every gate input v: out = G v
            N = grad_state.shape[0]
            g = grad_state.contiguous()
            buffers = _PingPong(g, reuse=True)
            scratch = torch.empty(N, 4, g.shape[1] // 4, dtype=g.dtype, device=g.device)
            for k in range(len(ctx.steps) - 1, -1, -1):
                gk = g.view(N, 4, -1)
                grad_gates[k] = _gate_grad(gk, ctx.inputs[k], scratch, per_row)
                g = buffers.other(g)
                torch.bmm(gates[k].mH.expand(N, 4, 4), gk, out=g.view(N, 4, -1))
                if ctx.steps[k].unperm is not None:
                    g = _permute(g, ctx.steps[k].unperm, out=buffers.other(g))
            return g, grad_gates, None
        N = final.shape[0]
        both = torch.cat([final, grad_state])  # (2N, 2**n): state and d loss / d state
        buffers = _PingPong(both, reuse=True, first=both)
        scratch = torch.empty(N, 4, both.shape[1] // 4, dtype=both.dtype, device=both.device)
        for k in range(len(ctx.steps) - 1, -1, -1):
            w = both.view(2 * N, 4, -1)
            # one bmm un-computes the state and back-propagates the gradient
            both = buffers.other(both)
            previous = both.view(2 * N, 4, -1)
            adjoint = gates[k].mH.repeat(2, 1, 1) if per_row else gates[k].mH.expand(2 * N, 4, 4)
            torch.bmm(adjoint, w, out=previous)
            grad_gates[k] = _gate_grad(w[N:], previous[:N], scratch, per_row)
            if ctx.steps[k].unperm is not None:
                both = _permute(both, ctx.steps[k].unperm, out=buffers.other(both))
        return both[N:], grad_gates, None


def embed_states(h: torch.Tensor, layout: tuple[int, ...] | None = None) -> torch.Tensor:
    """Angle-embedded product states: qubit i in RY(2 h_i)|0> = cos(h_i)|0> + sin(h_i)|1>.

    h: (B, n) real; layout: the wire on each state axis, most significant first (default
    0, 1, ..., n-1, PennyLane's order). Returns (B, 2**n) complex (complex128 for float64).
    """
    order = range(h.shape[1]) if layout is None else layout
    single = ry_matrix(2 * h)[..., 0]  # RY(2h) applied to |0>: its first column, (B, n, 2)
    state = None
    for w in order:
        state = single[:, w] if state is None else (state[:, :, None] * single[:, w, None, :]).flatten(1)
    return state.to(_complex(h.dtype))


def z_expectations(state: torch.Tensor, z_signs: torch.Tensor) -> torch.Tensor:
    """<Z> from a state: state (B, 2**n) complex, z_signs (2**n, m) real +-1 -> (B, m) real."""
    probs = state.real.square() + state.imag.square()
    return probs @ z_signs.to(probs.dtype)


# --------------------------------------------------------------------------- noisy trajectories (torch)

_TRAJECTORY_CHUNK_BYTES = 256 << 20
"""rows (sample x trajectory) of the trajectory simulator run in chunks of about this many
bytes of statevectors and per-row gate matrices"""


class _TrajectoryPlan(NamedTuple):
    """The torch plan's steps with their elementary gates, for noisy trajectories.

    Steps are those of :func:`_torch_plan` (blocks on one pair fused); here each step keeps
    its elementary gates as slots so that a Pauli error can follow every one of them.
    """

    forward: tuple[_Step, ...]  # the steps of U (as in _torch_plan)
    reverse: tuple[_Step, ...]  # the steps of U^dagger: step K-1-j of U undone, perm/unperm swapped
    slots: torch.Tensor  # (S, G) int64: row of the elementary-gate table per slot (last row: identity)
    acts: torch.Tensor  # (S, G, 2) bool: the slot's gate acts on the first / second axis of the step
    embed: torch.Tensor  # (S, 2) int64: wire whose embedding is absorbed on axis 0 / 1 of step s (n: none)
    n_rows: int  # rows of the unswapped elementary-gate table


@cache
def _trajectory_plan(n_qubits: int, share: str) -> _TrajectoryPlan:
    n_conv, _ = weight_shapes(n_qubits, share)["conv"]
    n_pool, _ = weight_shapes(n_qubits, share)["pool"]
    n_rows = n_conv * len(CONV_GATES) + n_pool * len(POOL_GATES)
    groups, layouts, _ = _plan_groups(n_qubits, share)
    forward = _torch_plan(n_qubits, share).steps
    slots, acts = [], []
    for group, layout in zip(groups, layouts):
        step_slots, step_acts = [], []
        for blk in group:
            swapped = layout[:2] != blk.wires
            if blk.kind == "conv":
                gates, first = CONV_GATES, blk.index * len(CONV_GATES)
            else:
                gates, first = POOL_GATES, n_conv * len(CONV_GATES) + blk.index * len(POOL_GATES)
            for j, gate in enumerate(gates):
                step_slots.append(first + j + (n_rows if swapped else 0))
                axes = {1 - pos if swapped else pos for pos in gate.positions}
                step_acts.append((0 in axes, 1 in axes))
        slots.append(step_slots)
        acts.append(step_acts)
    width = max(map(len, slots))
    identity = 2 * n_rows
    slots_t = torch.tensor([row + [identity] * (width - len(row)) for row in slots], dtype=torch.int64)
    acts_t = torch.tensor([row + [(False, False)] * (width - len(row)) for row in acts], dtype=torch.bool)
    embed = torch.full((len(groups), 2), n_qubits, dtype=torch.int64)
    seen: set[int] = set()
    for s, layout in enumerate(layouts):
        for axis, wire in enumerate(layout[:2]):
            if wire not in seen:
                embed[s, axis] = wire
                seen.add(wire)
    assert seen == set(range(n_qubits))
    K = len(forward)
    reverse = tuple(_Step(forward[k + 1].unperm if k + 1 < K else None,
                          forward[k + 1].perm if k + 1 < K else None, ())
                    for k in range(K - 1, -1, -1))
    return _TrajectoryPlan(forward, reverse, slots_t, acts_t, embed, n_rows)


def _sample_paulis(shape: tuple[int, ...], p: float, generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Pauli indices (0 = I, 1 = X, 2 = Y, 3 = Z) drawn from ``DepolarizingChannel(p)``'s Kraus
    weights: I with probability 1 - p, each of X, Y, Z with p / 3. Returns int64 of ``shape``."""
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
    return torch.where(u < p, 1 + torch.floor(u * (3.0 / p)).clamp(max=2), torch.zeros_like(u)).long()


def _apply_errors(m: torch.Tensor, index: torch.Tensor, paulis: torch.Tensor) -> torch.Tensor:
    """``paulis[index] @ m`` on the rows whose Pauli ``index`` is not the identity (0); others copied.

    m: (..., d, d); index: (...) int64; paulis: (P, d, d).
    """
    flat, idx = m.reshape(-1, *m.shape[-2:]), index.reshape(-1)
    rows = idx.nonzero().squeeze(1)
    if rows.numel() == 0:
        return m
    return flat.index_copy(0, rows, paulis[idx[rows]] @ flat[rows]).view(m.shape)


class _Trajectories:
    """One unbiased Monte-Carlo trajectory per row of the noisy (optionally folded) circuit.

    Each row runs the circuit of elementary gates with, after every gate and on each wire it
    acts on, a Pauli drawn with ``DepolarizingChannel(p)``'s Kraus probabilities (I: 1 - p;
    X, Y, Z: p/3 each). The average over rows of ``<Z>`` is an unbiased estimate of the
    density-matrix value (``default.mixed`` with the same channels).

    All of a step's gates and errors are multiplied into one 4x4 matrix *per row* first
    ((S, N, 4, 4), cheap), so the statevector work is that of the noiseless simulator: one
    batched matmul per step (:class:`_Circuit`, with per-row gates). The embedding RY(2h) on
    wire w (and its noise) is absorbed into the first step touching w, applied to |0...0>.

    Global folding at scale factor ``s = 2k + 1`` runs U (U^dagger U)^k, with U^dagger made
    of the adjoint elementary gates in reverse order, each followed by its own independent
    error: as ``qml.noise.fold_global`` folds the tape and the noise model then follows
    every gate. Between a U^dagger and the next U, each wire gets RY(-2h), error, RY(2h),
    error (fused per row into one 2x2 matrix, absorbed like the embedding).
    """

    def __init__(self, n_qubits: int, share: str, conv: torch.Tensor, pool: torch.Tensor) -> None:
        self.n = n_qubits
        self.plan = _trajectory_plan(n_qubits, share)
        base = torch.cat([elementary_matrices("conv", conv).flatten(0, 1),
                          elementary_matrices("pool", pool).flatten(0, 1)])
        eye = torch.eye(4, dtype=base.dtype, device=base.device)[None]
        self.table = torch.cat([base, _swap_pair(base), eye])  # (2 R + 1, 4, 4)
        self.pauli1, self.pauli2 = _pauli_tables(base.dtype, base.device)

    def _segment(self, n_rows: int, p: float, generator: torch.Generator, adjoint: bool) -> torch.Tensor:
        """Per-row step matrices of U (or U^dagger, steps in U^dagger order): (S, N, 4, 4)."""
        slots, acts = self.plan.slots.to(self.table.device), self.plan.acts.to(self.table.device)
        gates = self.table[slots]  # (S, G, 4, 4)
        if adjoint:
            gates, acts = gates.mH.flip(0, 1), acts.flip(0, 1)
        S, G = slots.shape
        m = None
        for g in range(G):
            m = gates[:, 0, None].expand(S, n_rows, 4, 4).contiguous() if m is None else gates[:, g, None] @ m
            if p > 0:
                e = _sample_paulis((S, n_rows, 2), p, generator, m.device) * acts[:, g, None, :]
                m = _apply_errors(m, 4 * e[..., 0] + e[..., 1], self.pauli2)
        return m

    def _absorb(self, m: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Right-multiply the forward step matrices m (S, N, 4, 4) by the per-row one-qubit
        matrices r (N, n, 2, 2) of the wires absorbed into them (kron on the step's two axes)."""
        N = r.shape[0]
        eye = torch.eye(2, dtype=r.dtype, device=r.device).expand(N, 1, 2, 2)
        r = torch.cat([r, eye], 1)
        embed = self.plan.embed.to(r.device)
        steps = (embed < self.n).any(1).nonzero().squeeze(1)
        a, b = r[:, embed[steps, 0]], r[:, embed[steps, 1]]  # (N, s, 2, 2)
        k = torch.einsum("nsij,nskl->snikjl", a, b).reshape(len(steps), N, 4, 4)
        return m.index_copy(0, steps, m[steps] @ k)

    def run(self, h: torch.Tensor, p: float, scale_factor: int, generator: torch.Generator,
            z_signs: torch.Tensor) -> torch.Tensor:
        """h: (N, n) angles, one row per trajectory; returns (N, m) <Z> of each trajectory."""
        N, n = h.shape
        cdt = self.table.dtype
        ry = ry_matrix(2 * h).to(cdt)  # (N, n, 2, 2)

        def noisy(u: torch.Tensor) -> torch.Tensor:  # a one-qubit gate per row and wire, then its error
            if p == 0:
                return u
            return _apply_errors(u, _sample_paulis((N, n), p, generator, u.device), self.pauli1)

        r = noisy(ry)
        gates = [self._absorb(self._segment(N, p, generator, adjoint=False), r)]
        steps = list(self.plan.forward)
        for _ in range((scale_factor - 1) // 2):
            gates.append(self._segment(N, p, generator, adjoint=True))
            r = noisy(ry @ noisy(ry.mH))
            gates.append(self._absorb(self._segment(N, p, generator, adjoint=False), r))
            steps += list(self.plan.reverse) + list(self.plan.forward)
        state = torch.zeros(N, 2**n, dtype=cdt, device=h.device)
        state[:, 0] = 1
        state = _Circuit.apply(state, torch.cat(gates), tuple(steps))
        return z_expectations(state, z_signs)


def zne_weights(scale_factors: tuple[int, ...], extrapolation: str = "richardson") -> tuple[float, ...]:
    """Weights w with ``E(0) = sum_i w_i E(s_i)``: the extrapolation to zero noise is linear in
    the values at the scale factors.

    ``"richardson"``: the polynomial of degree len(s) - 1 through the points (Lagrange;
    (1, 3, 5) -> (15/8, -10/8, 3/8)), as ``qml.noise.richardson_extrapolate``.
    ``"linear"``: intercept of the least-squares line, as ``qml.noise.poly_extrapolate(order=1)``.
    """
    s = [float(v) for v in scale_factors]
    if extrapolation == "richardson":
        return tuple(math.prod(sj / (sj - si) for j, sj in enumerate(s) if j != i) for i, si in enumerate(s))
    _check_choice("extrapolation", extrapolation, EXTRAPOLATIONS)
    k, s1, s2 = len(s), sum(s), sum(v * v for v in s)
    return tuple((s2 - si * s1) / (k * s2 - s1 * s1) for si in s)


# --------------------------------------------------------------------------- PennyLane


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
    else:  # sampled expectation values are not differentiated (straight-through, see QCNNLayer)
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


# --------------------------------------------------------------------------- the layer


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
        exact default. Change it later with :meth:`set_execution`; see "Noise" in the module
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
            self.qlayer = self._make_torch_layer()
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

    def _make_torch_layer(self) -> torch.nn.Module:
        """A ``TorchLayer`` over :func:`make_qnode` that reads this module's own parameters.

        TorchLayer registers fresh parameters; they are replaced by ``self.conv`` and
        ``self.pool`` (same objects) and unregistered, so the state_dict keys stay
        ``conv`` / ``pool`` and the optimiser sees each weight once.
        """
        qml = _import_pennylane()
        qnode = make_qnode(self.n_qubits, self.share, self.readout,
                           device_name=self.device_name, diff_method=self.diff_method)
        shapes = weight_shapes(self.n_qubits, self.share)
        # tensors as init: no draw from the global generator, unlike TorchLayer's default init
        init = {name: torch.empty(shape, dtype=getattr(self, name).dtype) for name, shape in shapes.items()}
        layer = qml.qnn.TorchLayer(qnode, weight_shapes=shapes, init_method=init)
        for name in shapes:
            del layer._parameters[name]
            layer.qnode_weights[name] = getattr(self, name)
        return layer

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
            def make(sampled: bool) -> Any:
                return make_execution_qnode(self.n_qubits, self.share, self.readout, execution, backend,
                                            sampled=sampled)

            twin = make(False) if execution.shots is not None and execution.grad == "backprop" else None
            qnodes = (make(True), twin)
        self._execution, self._execution_backend, self._qnodes = execution, backend, qnodes
        self._generator = None
        return self.describe_execution()

    def describe_execution(self) -> str:
        """One line: the backend that runs, the noise, shots, mitigation and gradient method."""
        ex, backend, n = self._execution, self._execution_backend, self.n_qubits
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

    def _rng(self, device: torch.device) -> torch.Generator:
        """The noise/shot generator, seeded from ``execution.seed`` when the execution was set."""
        if self._generator is None or self._generator.device != torch.device(device):
            self._generator = torch.Generator(device=device)
            if self._execution.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._execution.seed)
        return self._generator

    def _z_signs(self, device: torch.device) -> torch.Tensor:
        z_signs = _torch_plan(self.n_qubits, self.share).z_signs.to(device)
        return z_signs[:, [final_wire(self.n_qubits)]] if self.readout == "final" else z_signs

    def sample_trajectories(self, h: torch.Tensor, scale_factor: int = 1) -> torch.Tensor:
        """<Z> of every Monte-Carlo trajectory of the noisy circuit, folded to ``scale_factor``.

        h: (B, n) angles. Returns (B, T, output_width), ``self.dtype``, with T =
        ``execution.trajectories`` (1 when ``noise_p == 0``: the circuit is then deterministic);
        the mean over T estimates the density-matrix value without bias, and its standard
        error is ``std / sqrt(T)``. Differentiable. Runs whatever the execution backend.
        """
        if not (isinstance(scale_factor, int) and scale_factor >= 1 and scale_factor % 2):
            raise ValueError(f"scale_factor must be an odd integer >= 1; got {scale_factor!r}")
        h = h.to(self.conv)
        ex = self._execution
        T = ex.trajectories if ex.noise_p > 0 else 1
        B = h.shape[0]
        rows = h.repeat_interleave(T, 0)
        sim = _Trajectories(self.n_qubits, self.share, self.conv, self.pool)
        per_row = (3 * 2**self.n_qubits * 16
                   + 4 * scale_factor * len(sim.plan.forward) * 16 * _complex(self.dtype).itemsize)
        chunk = max(1, _TRAJECTORY_CHUNK_BYTES // per_row)
        z_signs, generator = self._z_signs(h.device), self._rng(h.device)
        out = [sim.run(rows[lo:lo + chunk], ex.noise_p, scale_factor, generator, z_signs)
               for lo in range(0, rows.shape[0], chunk)]
        return torch.cat(out).to(self.dtype).view(B, T, -1)

    def _sample_shots(self, z: torch.Tensor) -> torch.Tensor:
        """Shot estimates of <Z> from exact (or trajectory-averaged) values z: for each wire,
        2 k / shots - 1 with k ~ Binomial(shots, (1 + z) / 2). Unbiased, variance (1 - z^2) / shots.
        Straight-through: the gradient is that of z."""
        shots = self._execution.shots
        if shots is None:
            return z
        prob = ((1 + z.detach()) / 2).clamp(0, 1)
        count = torch.full_like(prob, float(shots))
        estimate = 2 * torch.binomial(count, prob, generator=self._rng(z.device)) / shots - 1
        return z + (estimate - z).detach()

    def _forward_execution(self, h: torch.Tensor) -> torch.Tensor:
        backend, ex = self._execution_backend, self._execution
        if backend in ("default.qubit", "default.mixed"):
            return self._forward_pennylane_execution(h)
        if backend == "torch":
            return self._sample_shots(self._forward_torch(h))
        factors = ex.scale_factors if ex.mitigation == "zne" else (1,)
        values = [self._sample_shots(self.sample_trajectories(h, s).mean(1)) for s in factors]
        if len(values) == 1:
            return values[0]
        return sum(w * v for w, v in zip(zne_weights(factors, ex.extrapolation), values))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the execution QNodes (local functions) and generator: rebuilt on use."""
        state = dict(self.__dict__)
        state["_qnodes"] = state["_generator"] = None
        return state

    def _forward_pennylane_execution(self, h: torch.Tensor) -> torch.Tensor:
        if self._qnodes is None:  # unpickled
            self.set_execution(self._execution)
        qnode, twin = self._qnodes
        ex, B, width = self._execution, h.shape[0], self.out_features
        need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (h, self.conv, self.pool))
        sampled_only = ex.shots is not None and ex.grad == "backprop"  # qnode not differentiable
        counts = gate_counts(self.n_qubits)
        ops = (counts["gates"] + (counts["channels"] if ex.noise_p > 0 else 0)) * (
            sum(ex.scale_factors) if ex.mitigation == "zne" else 1)
        mixed = self._execution_backend == "default.mixed"
        state = mixed_state_bytes(self.n_qubits) if mixed else 16 * 2**self.n_qubits
        kept = ops if need_grad and ex.grad == "backprop" else 4
        chunk = max(1, PENNYLANE_CHUNK_BYTES // (state * kept))
        outs = []
        for lo in range(0, B, chunk):
            x = h[lo:lo + chunk]
            if sampled_only:
                with torch.no_grad():
                    y = _stack_outputs(qnode(x, self.conv, self.pool), x.shape[0], width).to(self.dtype)
                if need_grad:
                    exact = _stack_outputs(twin(x, self.conv, self.pool), x.shape[0], width).to(self.dtype)
                    y = exact + (y - exact).detach()
            else:
                y = _stack_outputs(qnode(x, self.conv, self.pool), x.shape[0], width).to(self.dtype)
            outs.append(y)
        return torch.cat(outs)

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
        return self._forward_torch(h)

    def _gate_matrices(self) -> torch.Tensor:
        """(K, 4, 4) complex: the fused matrix of every step of the torch simulator, in order."""
        plan = _torch_plan(self.n_qubits, self.share)
        table = torch.cat([conv_matrices(self.conv), pool_matrices(self.pool)])
        table = torch.cat([table, _swap_pair(table)])
        first = table[[step.rows[0] for step in plan.steps]]
        if all(len(step.rows) == 1 for step in plan.steps):
            return first
        fused = []
        for k, step in enumerate(plan.steps):
            m = first[k]
            for row in step.rows[1:]:
                m = table[row] @ m
            fused.append(m)
        return torch.stack(fused)

    def _forward_torch(self, h: torch.Tensor) -> torch.Tensor:
        plan = _torch_plan(self.n_qubits, self.share)
        state = _Circuit.apply(embed_states(h, plan.init_layout), self._gate_matrices(), plan.steps)
        z_signs = plan.z_signs.to(h.device)
        if self.readout == "final":
            z_signs = z_signs[:, [final_wire(self.n_qubits)]]
        return z_expectations(state, z_signs).to(h.dtype)


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
