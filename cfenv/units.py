"""The small vocabulary every layer of cfpilot shares: units, fading in dB and its
normalisation, and the two spellings of a system size.

A size is the tuple ``(M, L, K, tau_p)`` (:data:`Size`). People read and type it as
``"M,L,K,tau_p"`` (:func:`size_label`, :func:`parse_size`: command lines, tables, task
names); folders and file names use ``"M-L-K-tau_p"`` (:func:`size_slug`).
"""

from __future__ import annotations

import numpy as np

from cfenv.objectives import MBPS  # noqa: F401 -- defined beside the objectives (standard library only)

NORMALISED_DB_CENTER = -120.0
"""dB value mapped to 0 by :func:`normalise_db` (typical fading lies in -160..-80 dB)"""
NORMALISED_DB_SCALE = 20.0
"""dB per unit after :func:`normalise_db`"""

Size = tuple[int, int, int, int]
"""a system size ``(M, L, K, tau_p)``"""

SIZE_FIELDS = ("M", "L", "K", "tau_p")


def fading_db(beta: np.ndarray) -> np.ndarray:
    """Linear large-scale fading ``(..., M, K)`` -> dB (float64), ``10 log10(beta)``."""
    return 10.0 * np.log10(beta)


def normalise_db(db: np.ndarray) -> np.ndarray:
    """Fading in dB -> values near unit scale, ``(db - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE``."""
    return (db - NORMALISED_DB_CENTER) / NORMALISED_DB_SCALE


def parse_size(text: str) -> Size:
    """Parse ``"M,L,K,tau_p"`` (e.g. ``"10,2,6,3"``) into a tuple; ``ValueError`` if malformed."""
    parts = text.replace(" ", "").split(",")
    if len(parts) != 4:
        raise ValueError(f"a size is four integers M,L,K,tau_p such as 10,2,6,3; got {text!r}")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"a size is four integers M,L,K,tau_p such as 10,2,6,3; got {text!r}") from None
    for name, v in zip(SIZE_FIELDS, values):
        if v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v} in size {text!r}")
    return values  # type: ignore[return-value]


def size_label(size: Size) -> str:
    """``(10, 2, 6, 3)`` -> ``"10,2,6,3"``: how people type and read a size."""
    return ",".join(str(int(v)) for v in size)


def size_slug(size: Size) -> str:
    """``(10, 2, 6, 3)`` -> ``"10-2-6-3"``: a size in folder and file names."""
    return "-".join(str(int(v)) for v in size)
