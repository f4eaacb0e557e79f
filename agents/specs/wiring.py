"""The QCNN's structure: layer options and their checks, the wiring of convolution and pooling
blocks, the elementary gates of a block, and the shapes of the weights."""

from __future__ import annotations

import math
from functools import cache
from typing import Any, NamedTuple

CONV_PARAMS = 15
"""parameters of one convolution block (Hur et al.'s SU(4)-style ``U_SU4``; T of docs/model.md §6.2)"""
POOL_PARAMS = 2
"""parameters of one pooling block (CRZ angle, CRX angle)"""

SUPPORTED_N_QUBITS = (4, 8, 16)
SHARE_MODES = ("level", "all", "block")
READOUTS = ("all", "final")


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
    """The QCNN's blocks, level by level (see the package docstring for the rule).

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
    * ``"level"``: 17 log2(n) (docs/model.md eq. (6.5): T log2 n plus the pooling parameters).
    * ``"block"``: 15 (2n - 3) + 2 (n - 1) (209 at n = 8).

    The paper (see docs/model.md eq. (6.5)) writes T * sum_{i=1..log2 n} 2^i for the per-block variant, i.e.
    14 conv blocks at n = 8. The wiring built here (Hur et al.'s) has 2n - 3 conv blocks,
    13 at n = 8, because the last, two-wire level convolves its pair once, not twice;
    the count returned is the one of the circuit actually built.
    """
    return sum(math.prod(shape) for shape in weight_shapes(n_qubits, share).values())


def output_width(n_qubits: int, readout: str = "all") -> int:
    """Width of the layer's output: ``n_qubits`` for ``readout="all"``, 1 for ``"final"``."""
    _check_layer_options(n_qubits, readout=readout)
    return n_qubits if readout == "all" else 1

