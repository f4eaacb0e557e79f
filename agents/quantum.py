"""Quantum convolutional neural network (QCNN) layer of Hur et al. (2022), as used by the HQCNN.

The only module of cfpilot that imports PennyLane, and it does so lazily (inside the
functions that build a QNode), so ``import agents.quantum`` and the ``"torch"`` backend
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
    >>> from agents.quantum import QCNNLayer
    >>> _ = torch.manual_seed(0)
    >>> layer = QCNNLayer(n_qubits=8, share="level", readout="all")
    >>> layer(torch.zeros(5, 8)).shape
    torch.Size([5, 8])
"""

from __future__ import annotations

import math
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


def _check_choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {value!r}")


def _check_power_of_two(n_qubits: int) -> None:
    if not isinstance(n_qubits, int) or n_qubits < 2 or n_qubits & (n_qubits - 1):
        raise ValueError(f"n_qubits must be a power of two >= 2; got {n_qubits!r}")


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
    groups: list[list[_Block]] = []
    for block in _blocks(n_qubits, share):
        if groups and set(groups[-1][0].wires) == set(block.wires):
            groups[-1].append(block)
        else:
            groups.append([block])
    first = groups[0][0].wires
    layout = list(first) + [w for w in range(n_qubits) if w not in first]
    init_layout = tuple(layout)
    steps = []
    for group in groups:
        a, b = group[0].wires
        perm = unperm = None
        if set(layout[:2]) != {a, b}:
            new = [a, b] + [w for w in layout if w not in (a, b)]
            perm, unperm = _merged([layout.index(w) for w in new]), _merged([new.index(w) for w in layout])
            layout = new
        rows = tuple(offset[blk.kind] + blk.index + (0 if tuple(layout[:2]) == blk.wires else n_table)
                     for blk in group)
        steps.append(_Step(perm, unperm, rows))
    bits = (torch.arange(2**n_qubits)[:, None] >> torch.arange(n_qubits - 1, -1, -1)) & 1  # by axis
    signs = (1 - 2 * bits).to(torch.float64)
    return _Plan(init_layout, tuple(steps), signs[:, [layout.index(w) for w in range(n_qubits)]])


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


def _gate_grad(g: torch.Tensor, v: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """d loss / d G for ``out = G v``: sum over the batch of g_n v_n^H; g, v (N, 4, R) -> (4, 4).

    ``conj(v)`` goes through ``scratch`` (N, 4, R): a conjugated operand would make ``bmm``
    allocate a copy; a transposed one it reads as is.
    """
    torch.conj_physical(v, out=scratch)
    return torch.bmm(g, scratch.transpose(1, 2)).sum(0)


class _Circuit(torch.autograd.Function):
    """``state -> (steps of 4x4 gates on the first two axes) -> state``, with its own backward.

    state: (N, 2**n) complex in the plan's initial layout; gates: (K, 4, 4) complex, one per
    step. Out: (N, 2**n) complex in the final layout. The backward pass either reuses the
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
        if final is None:  # the forward pass saved every gate input v: out = G v
            N = grad_state.shape[0]
            g = grad_state.contiguous()
            buffers = _PingPong(g, reuse=True)
            scratch = torch.empty(N, 4, g.shape[1] // 4, dtype=g.dtype, device=g.device)
            for k in range(len(ctx.steps) - 1, -1, -1):
                gk = g.view(N, 4, -1)
                grad_gates[k] = _gate_grad(gk, ctx.inputs[k], scratch)
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
            torch.bmm(gates[k].mH.expand(2 * N, 4, 4), w, out=previous)
            grad_gates[k] = _gate_grad(w[N:], previous[:N], scratch)
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


# --------------------------------------------------------------------------- PennyLane


def _import_pennylane() -> Any:
    try:
        import pennylane
    except ImportError as err:  # pragma: no cover
        raise ImportError("the 'pennylane' backend needs PennyLane: pip install 'pennylane>=0.40'") from err
    return pennylane


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

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
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


def _conv_block(qml: Any, p: torch.Tensor, a: int, b: int) -> None:
    """Hur et al.'s U_SU4 on wires (a, b); p: (15,)."""
    qml.U3(p[0], p[1], p[2], wires=a)
    qml.U3(p[3], p[4], p[5], wires=b)
    qml.CNOT(wires=[a, b])
    qml.RY(p[6], wires=a)
    qml.RZ(p[7], wires=b)
    qml.CNOT(wires=[b, a])
    qml.RY(p[8], wires=a)
    qml.CNOT(wires=[a, b])
    qml.U3(p[9], p[10], p[11], wires=a)
    qml.U3(p[12], p[13], p[14], wires=b)


def _pool_block(qml: Any, q: torch.Tensor, control: int, target: int) -> None:
    """Pooling control -> target; q: (2,)."""
    qml.CRZ(q[0], wires=[control, target])
    qml.PauliX(wires=control)
    qml.CRX(q[1], wires=[control, target])


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
        return (f"n_qubits={self.n_qubits}, share={self.share!r}, readout={self.readout!r}, "
                f"backend={self.backend!r}, dtype={self.dtype}")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, n) real angles -> (B, output_width) expectation values, ``self.dtype``."""
        if h.ndim != 2 or h.shape[1] != self.n_qubits:
            raise ValueError(f"h must have shape (B, {self.n_qubits}); got {tuple(h.shape)}")
        h = h.to(self.conv)
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
