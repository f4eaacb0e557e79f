"""The batched torch statevector simulator: the plan of the circuit's steps, the circuit with its
hand-written backward pass (:class:`_Circuit`), the embedding, the Pauli-Z readout and shot sampling."""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import torch

from agents.models.quantum.gates import _complex, _swap_pair, conv_matrices, pool_matrices, ry_matrix
from agents.specs.wiring import _Block, _blocks, final_wire, weight_shapes

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
    no copy moves them back. (Faster than ``(N * 2**(n-2), 4) @ (4, 4)`` with the pair last,
    MKL being slow on tall, 4-wide complex matrices, and than ``torch.matmul`` of a 2-D with
    a 3-D tensor, which copies to fold the batch: docs/quantum.md.)
    Consecutive blocks on the same pair of wires are fused into one step. The embedding is
    built directly in the layout the first step needs.

    Matrix-table rows (see :func:`gate_matrices`): conv sets, then pool sets,
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

    Copying a permuted view of many size-2 axes is far slower than copying the same data
    through a few merged axes (docs/quantum.md), so the runs are merged once, when the plan
    is built.
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



def gate_matrices(n_qubits: int, share: str, conv: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """(K, 4, 4) complex: the fused matrix of every step of the torch simulator, in order.

    conv, pool: the layer's weights (:func:`weight_shapes`).
    """
    plan = _torch_plan(n_qubits, share)
    table = torch.cat([conv_matrices(conv), pool_matrices(pool)])
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


def readout_signs(n_qubits: int, share: str, readout: str, device: torch.device) -> torch.Tensor:
    """(2**n, output_width) +-1 on ``device``: the plan's ``z_signs`` of the measured wires."""
    z_signs = _torch_plan(n_qubits, share).z_signs.to(device)
    return z_signs[:, [final_wire(n_qubits)]] if readout == "final" else z_signs


def statevector_expectations(h: torch.Tensor, conv: torch.Tensor, pool: torch.Tensor, n_qubits: int,
                             share: str, readout: str) -> torch.Tensor:
    """The exact circuit: h (B, n) real angles -> (B, output_width) <Z>, h's dtype."""
    plan = _torch_plan(n_qubits, share)
    state = _Circuit.apply(embed_states(h, plan.init_layout), gate_matrices(n_qubits, share, conv, pool),
                           plan.steps)
    return z_expectations(state, readout_signs(n_qubits, share, readout, h.device)).to(h.dtype)


def sample_shots(z: torch.Tensor, shots: int | None, generator: torch.Generator) -> torch.Tensor:
    """Shot estimates of <Z> from exact (or trajectory-averaged) values z: for each wire,
    2 k / shots - 1 with k ~ Binomial(shots, (1 + z) / 2). Unbiased, variance (1 - z^2) / shots.
    Straight-through: the gradient is that of z. ``shots=None``: z itself."""
    if shots is None:
        return z
    prob = ((1 + z.detach()) / 2).clamp(0, 1)
    count = torch.full_like(prob, float(shots))
    estimate = 2 * torch.binomial(count, prob, generator=generator) / shots - 1
    return z + (estimate - z).detach()
