"""Quantum convolutional neural network (QCNN) layer of Hur et al. (2022), as used by the HQCNN.

Only :mod:`.pennylane_backend` imports PennyLane in cfpilot, and it does so lazily (inside the
functions that build a QNode), so ``import agents.models.quantum`` and the ``"torch"`` backend
work without loading it.

The circuit on ``n`` qubits (``n`` in {4, 8, 16}; wire 0 is the most significant bit,
as in PennyLane):

1. **Angle embedding.** Qubit ``i`` is prepared in ``cos(h_i)|0> + sin(h_i)|1>`` (docs/model.md eq. (6.2)).
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

Parameter sharing (``share``): ``"level"`` (docs/model.md §6.2 default: one conv set and one pool set
per level), ``"all"`` (one of each for the whole circuit, as in the paper's abstract and
Table I) or ``"block"`` (every block its own parameters: the paper's ref. [11],
"hqcnn-hur"). See :func:`weight_shapes` and :func:`count_quantum_parameters`.

Two backends compute the same function, and hold the same two parameters ``conv`` and
``pool``, so a ``state_dict`` moves freely between them:

* ``"pennylane"``: a ``default.qubit`` QNode, ``diff_method="backprop"``, torch
  interface, wrapped as ``qml.qnn.TorchLayer``; a ``(B, n)`` batch is one broadcast call.
* ``"torch"``: a batched statevector simulator in plain torch (complex128 for float64).
  Every block is one 4x4 matrix, built differentiably from the weights, applied to the
  ``(B, 2**n)`` state with one batched matmul (see :func:`.statevector._torch_plan`); the backward
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
  ``Execution.trajectories`` runs per sample (:class:`.trajectories._Trajectories`). Its cost is that of
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
* **Parameter shift** (docs/model.md eq. (7.5)): ``grad="parameter-shift"`` runs on ``default.qubit``
  (noiseless) or ``default.mixed`` (noisy), ``diff_method="parameter-shift"``. Equal to
  backprop to ~1e-15 on the noiseless circuit, and far slower than the torch backprop: every
  angle occurrence is shifted separately (~180 circuits per sample at n = 4, each a PennyLane
  tape).

Measured timings and the PennyLane 0.45 findings behind these choices: ``docs/quantum.md``.

Package layout (imports point one way, each module only to those above it):

* :mod:`.wiring`: layer options, the blocks and their wiring, elementary gates, weight shapes;
* :mod:`.execution`: :class:`Execution` and :func:`resolve_backend`;
* :mod:`.gates`: gate matrices in torch;
* :mod:`.statevector`: the batched torch statevector simulator (the ``"torch"`` backend);
* :mod:`.trajectories`: noisy Monte-Carlo trajectories on it, and :func:`zne_weights`;
* :mod:`.pennylane_backend`: the QNodes (the ``"pennylane"``, ``default.qubit`` and
  ``default.mixed`` backends);
* :mod:`.layer`: :class:`QCNNLayer`, :func:`draw`, :func:`apply_execution`.
"""

from agents.specs.execution import (
    BACKENDS,
    DEFAULT_BACKEND,
    EXTRAPOLATIONS,
    GRAD_METHODS,
    MITIGATIONS,
    MIXED_MAX_STATE_BYTES,
    NOISE_BACKENDS,
    Execution,
    mixed_state_bytes,
    resolve_backend,
)
from agents.models.quantum.gates import conv_matrices, elementary_matrices, pool_matrices, ry_matrix
from agents.models.quantum.layer import QCNNLayer, apply_execution, draw
from agents.models.quantum.pennylane_backend import PENNYLANE_CHUNK_BYTES, make_execution_qnode, make_qnode
from agents.models.quantum.statevector import embed_states, z_expectations
from agents.models.quantum.trajectories import zne_weights
from agents.specs.wiring import (
    CONV_GATES,
    CONV_PARAMS,
    POOL_GATES,
    POOL_PARAMS,
    READOUTS,
    SHARE_MODES,
    SUPPORTED_N_QUBITS,
    GateSpec,
    Level,
    count_quantum_parameters,
    final_wire,
    gate_counts,
    output_width,
    qcnn_wiring,
    weight_shapes,
)

__all__ = [
    "BACKENDS",
    "CONV_GATES",
    "CONV_PARAMS",
    "DEFAULT_BACKEND",
    "EXTRAPOLATIONS",
    "GRAD_METHODS",
    "MITIGATIONS",
    "MIXED_MAX_STATE_BYTES",
    "NOISE_BACKENDS",
    "PENNYLANE_CHUNK_BYTES",
    "POOL_GATES",
    "POOL_PARAMS",
    "READOUTS",
    "SHARE_MODES",
    "SUPPORTED_N_QUBITS",
    "Execution",
    "GateSpec",
    "Level",
    "QCNNLayer",
    "apply_execution",
    "conv_matrices",
    "count_quantum_parameters",
    "draw",
    "elementary_matrices",
    "embed_states",
    "final_wire",
    "gate_counts",
    "make_execution_qnode",
    "make_qnode",
    "mixed_state_bytes",
    "output_width",
    "pool_matrices",
    "qcnn_wiring",
    "resolve_backend",
    "ry_matrix",
    "weight_shapes",
    "z_expectations",
    "zne_weights",
]
