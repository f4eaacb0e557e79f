"""Noisy execution on the torch simulator: unbiased Monte-Carlo trajectories of the depolarising
channels, optionally folded for ZNE, and the zero-noise extrapolation weights."""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import torch

from agents.specs.execution import EXTRAPOLATIONS, Execution
from agents.models.quantum.gates import _complex, _pauli_tables, _swap_pair, elementary_matrices, ry_matrix
from agents.models.quantum.statevector import (
    _Circuit,
    _plan_groups,
    _Step,
    _torch_plan,
    readout_signs,
    sample_shots,
    z_expectations,
)
from agents.specs.wiring import CONV_GATES, POOL_GATES, _check_choice, weight_shapes

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


def trajectory_samples(h: torch.Tensor, conv: torch.Tensor, pool: torch.Tensor, n_qubits: int, share: str,
                       readout: str, execution: Execution, generator: torch.Generator,
                       scale_factor: int = 1) -> torch.Tensor:
    """<Z> of every Monte-Carlo trajectory of the noisy circuit, folded to ``scale_factor``
    (:meth:`QCNNLayer.sample_trajectories`): (B, T, output_width), conv's dtype."""
    if not (isinstance(scale_factor, int) and scale_factor >= 1 and scale_factor % 2):
        raise ValueError(f"scale_factor must be an odd integer >= 1; got {scale_factor!r}")
    h = h.to(conv)
    ex = execution
    T = ex.trajectories if ex.noise_p > 0 else 1
    B = h.shape[0]
    rows = h.repeat_interleave(T, 0)
    sim = _Trajectories(n_qubits, share, conv, pool)
    per_row = (3 * 2**n_qubits * 16
               + 4 * scale_factor * len(sim.plan.forward) * 16 * _complex(conv.dtype).itemsize)
    chunk = max(1, _TRAJECTORY_CHUNK_BYTES // per_row)
    z_signs = readout_signs(n_qubits, share, readout, h.device)
    out = [sim.run(rows[lo:lo + chunk], ex.noise_p, scale_factor, generator, z_signs)
           for lo in range(0, rows.shape[0], chunk)]
    return torch.cat(out).to(conv.dtype).view(B, T, -1)


def trajectory_expectations(h: torch.Tensor, conv: torch.Tensor, pool: torch.Tensor, n_qubits: int,
                            share: str, readout: str, execution: Execution,
                            generator: torch.Generator) -> torch.Tensor:
    """The trajectory backend's forward pass: the mean over trajectories at each scale factor, with
    shots sampled from it, extrapolated to zero noise under ZNE: (B, output_width)."""
    ex = execution
    factors = ex.scale_factors if ex.mitigation == "zne" else (1,)
    values = [sample_shots(trajectory_samples(h, conv, pool, n_qubits, share, readout, ex, generator,
                                              s).mean(1), ex.shots, generator) for s in factors]
    if len(values) == 1:
        return values[0]
    return sum(w * v for w, v in zip(zne_weights(factors, ex.extrapolation), values))
