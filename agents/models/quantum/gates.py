"""Gate matrices in torch, differentiable in the weights: the one-qubit rotations, the fused
4x4 unitaries of the convolution and pooling blocks, their elementary gates and the Pauli tables."""

from __future__ import annotations

import torch

from agents.specs.wiring import CONV_GATES, POOL_GATES, _check_choice


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

