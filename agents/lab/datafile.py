"""Test snapshots of the user's own: a ``.npz`` of large-scale fading (docs/data.md).

``evaluate.py --snapshots-file FILE.npz`` evaluates every agent on the fading in the file
instead of drawing test snapshots from the model. The file is data, never code: it is read
with ``numpy.load(..., allow_pickle=False)`` and everything in it (and in its JSON sidecar)
is checked before any work starts, each problem one ``ValueError`` line.

File: ``beta`` ``(S, M, K)`` float32/float64 linear gains in (0, 1]; optionally both
``ap_positions`` ``(S, M, 2)`` and ``ue_positions`` ``(S, K, 2)`` [m] inside the ``[0, D]``
square; optionally the model's extra arrays (its ``snapshot_extras``: the scalable model's ``R``
``(S, M, K, L, L)`` complex correlation matrices over the noise power; without them they are rebuilt
from the gains and positions). Sidecar (``FILE.json`` beside it, or given): a JSON object of
:class:`cfenv.config.SystemConfig` fields (``model``, ``L``, ``tau_p``, ``bandwidth_hz`` ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from cfenv.channel import Snapshot
from cfenv.config import SystemConfig
from cfenv.models import model_of
from cfenv.rates import validate_beta
from cfenv.units import SIZE_FIELDS, Size, size_label

ARRAYS = ("beta", "ap_positions", "ue_positions")
"""the arrays every snapshots file may hold (``beta`` required; the positions both or neither); the
sidecar's model may add its own (:attr:`cfenv.models.base.SystemModel.snapshot_extras`)"""
MAX_FILE_BYTES = 2 << 30
"""largest snapshots file, and largest total of its arrays once unpacked (checked from the zip
directory before anything is unpacked)"""
MAX_SIDECAR_BYTES = 1 << 20
"""largest JSON sidecar"""
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(SystemConfig))
"""the field names a sidecar may set"""


@dataclass(frozen=True)
class SnapshotsFile:
    """A validated snapshots file.

    Attributes:
        path: the file, resolved.
        sha256: hex SHA-256 digest of the file's bytes.
        beta: ``(S, M, K)`` float64 linear gains in (0, 1].
        ap_positions: ``(S, M, 2)`` float64 [m], or ``None`` when the file has no positions.
        ue_positions: ``(S, K, 2)`` float64 [m], or ``None``.
        fields: the sidecar's :class:`SystemConfig` fields (``{}`` without a sidecar).
        sidecar: the sidecar read, resolved, or ``None``.
        extras: the model's extra arrays the file holds, checked (``{}``: none; the model rebuilds them).
    """

    path: Path
    sha256: str
    beta: np.ndarray
    ap_positions: np.ndarray | None
    ue_positions: np.ndarray | None
    fields: dict[str, Any]
    sidecar: Path | None
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(S, M, K)``."""
        return self.beta.shape  # type: ignore[return-value]

    @property
    def has_positions(self) -> bool:
        return self.ap_positions is not None

    def constants(self) -> dict[str, Any]:
        """The sidecar's fields other than the size (M, L, K, tau_p): radio constants, area, objective."""
        return {k: v for k, v in self.fields.items() if k not in SIZE_FIELDS}

    def sizes(self, sizes: Sequence[Size] = ()) -> list[Size]:
        """The (M, L, K, tau_p) sizes to evaluate the file at.

        M and K are the file's. Without ``sizes`` (no ``--sizes``), L and tau_p come from the
        sidecar (both required). With ``sizes``, each must have the file's M and K, and the
        sidecar's L / tau_p where it sets them; several tau_p (or L) values are allowed, since
        the fading does not depend on them. ``ValueError`` (one line) otherwise.
        """
        _, M, K = self.shape
        if not sizes:
            missing = [name for name in ("L", "tau_p") if name not in self.fields]
            if missing:
                where = f"the sidecar {self.sidecar}" if self.sidecar else f"a sidecar {self.path.with_suffix('.json')}"
                raise ValueError(f"{self.path.name}: {' and '.join(missing)} not given: set them in {where} "
                                 f"or pass --sizes {M},L,{K},tau_p")
            return [(M, int(self.fields["L"]), K, int(self.fields["tau_p"]))]
        for size in sizes:
            if (size[0], size[2]) != (M, K):
                raise ValueError(f"--sizes {size_label(size)} does not match {self.path.name}, whose beta has "
                                 f"(M, K) = ({M}, {K}): give --sizes {M},L,{K},tau_p or leave it out")
            for i, name in ((1, "L"), (3, "tau_p")):
                if name in self.fields and size[i] != self.fields[name]:
                    raise ValueError(f"--sizes {size_label(size)} sets {name}={size[i]}, the sidecar "
                                     f"{self.sidecar} {name}={self.fields[name]}: make them agree or drop one")
        return list(dict.fromkeys(tuple(s) for s in sizes))  # type: ignore[misc]

    def config(self, size: Size) -> SystemConfig:
        """The :class:`SystemConfig` of one evaluated size: the size and the sidecar's constants."""
        return SystemConfig.from_size(tuple(size), **self.constants())  # type: ignore[arg-type]

    def snapshots(self, start: int = 0, stop: int | None = None) -> Snapshot:
        """Snapshots ``start .. stop-1`` as a :class:`Snapshot`; a file without positions gets
        zeros there (never read: agents that need positions are skipped, docs/data.md)."""
        beta = self.beta[start:stop]
        extras = {name: value[start:stop] for name, value in self.extras.items()}
        if self.has_positions:
            return Snapshot(beta, self.ap_positions[start:stop], self.ue_positions[start:stop], extras)
        n, M, K = beta.shape
        return Snapshot(beta, np.zeros((n, M, 2)), np.zeros((n, K, 2)), extras)


def _read_bytes(path: Path, cap: int, what: str) -> bytes:
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist or is not a file")
    size = path.stat().st_size
    if size > cap:
        raise ValueError(f"{what} {path} has {size:,} bytes, above the cap of {cap:,}")
    return path.read_bytes()


def read_sidecar(path: Path) -> dict[str, Any]:
    """A JSON object of :class:`SystemConfig` fields; one-line ``ValueError`` for anything else
    (not JSON, not an object, unknown fields, NaN/Infinity)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    text = _read_bytes(path, MAX_SIDECAR_BYTES, "snapshots config")
    try:
        fields = json.loads(text.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"snapshots config {path} is not valid JSON: {str(err).splitlines()[0]}") from None
    if not isinstance(fields, dict):
        raise ValueError(  # noqa: TRY004 -- bad input at the boundary is one ValueError
            f"snapshots config {path} must be a JSON object of SystemConfig fields, got {type(fields).__name__}")
    unknown = [k for k in fields if k not in CONFIG_FIELDS]
    if unknown:
        raise ValueError(f"snapshots config {path}: unknown SystemConfig field {unknown[0]!r} "
                         f"(valid: {', '.join(CONFIG_FIELDS)})")
    return fields


def load_snapshots_file(path: str | Path, config_path: str | Path | None = None,
                        system: dict[str, Any] | None = None) -> SnapshotsFile:
    """Read and validate a snapshots file and its sidecar (``config_path``, else ``FILE.json``
    beside the file if it exists); ``system`` (the command line's model fields, ``--model`` ...)
    overrides the sidecar's for the checks. Every problem is one ``ValueError`` line naming the file."""
    path = Path(path).expanduser().resolve()
    if path.suffix != ".npz":
        raise ValueError(f"snapshots file {path} must be a .npz (numpy.savez) archive")
    data = _read_bytes(path, MAX_FILE_BYTES, "snapshots file")
    sha256 = hashlib.sha256(data).hexdigest()
    name = path.name
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        raise ValueError(f"{name} is not a .npz archive (numpy.savez / savez_compressed)") from None
    if unpacked > MAX_FILE_BYTES:
        raise ValueError(f"{name} unpacks to {unpacked:,} bytes, above the cap of {MAX_FILE_BYTES:,}")
    check_members(data, name)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            keys = list(npz.files)
            stray = [k for k in keys if k not in ARRAYS and k not in _any_model_extras()]
            if stray:
                raise ValueError(f"{name}: unknown array {stray[0]!r} (a snapshots file holds {', '.join(ARRAYS)}, "
                                 "and a model's extra arrays: docs/data.md)")
            if "beta" not in keys:
                raise ValueError(f"{name} has no array 'beta' (S, M, K)")
            arrays = {k: npz[k] for k in keys}
    except ValueError as err:
        if str(err).startswith(name):
            raise
        raise ValueError(f"{name}: cannot be read as plain arrays: {str(err).splitlines()[0]}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{name}: cannot be read: {str(err).splitlines()[0]}") from None
    beta = arrays["beta"]
    if beta.ndim != 3:
        raise ValueError(f"{name}: beta must be 3-D (S, M, K), got shape {beta.shape}")
    S, M, K = beta.shape
    if S == 0 or M == 0 or K == 0:
        raise ValueError(f"{name}: beta has shape {beta.shape}: needs at least one snapshot, AP and user")
    has_ap, has_ue = "ap_positions" in arrays, "ue_positions" in arrays
    if has_ap != has_ue:
        raise ValueError(f"{name}: has {'ap' if has_ap else 'ue'}_positions but not "
                         f"{'ue' if has_ap else 'ap'}_positions (give both or neither)")
    sidecar = Path(config_path).expanduser().resolve() if config_path is not None else path.with_suffix(".json")
    if config_path is None and not sidecar.is_file():
        sidecar = None
    fields = read_sidecar(sidecar) if sidecar is not None else {}
    for field_name, value in (("M", M), ("K", K)):
        if field_name in fields and fields[field_name] != value:
            raise ValueError(f"the sidecar {sidecar} sets {field_name}={fields[field_name]!r}, "
                             f"but {name}'s beta has {field_name}={value}")
    size = {"M": M, "K": K, "L": fields.get("L", 1), "tau_p": fields.get("tau_p", 1)}
    try:  # the sidecar's values, checked by SystemConfig (L and tau_p may come from --sizes later)
        config = SystemConfig(**{**fields, **(system or {}), **size})
    except (TypeError, ValueError) as err:
        where = f"the sidecar {sidecar}" if sidecar else name
        raise ValueError(f"{where}: {err}") from None
    model = model_of(config)
    unknown = [k for k in arrays if k not in ARRAYS and k not in model.snapshot_extras]
    if unknown:
        extra = f" and the {config.model} model's {', '.join(model.snapshot_extras)}" if model.snapshot_extras else ""
        raise ValueError(f"{name}: unknown array {unknown[0]!r} (a snapshots file holds {', '.join(ARRAYS)}{extra}; "
                         "the sidecar's model field names the model)")
    given = [k for k in model.snapshot_extras if k in arrays]
    if given and "L" not in fields:
        raise ValueError(f"{name} holds {', '.join(given)}: set L (antennas per AP) in the sidecar "
                         f"{sidecar or path.with_suffix('.json')}")
    validate_beta(beta, config, name=f"{name}: beta")
    ap = ue = None
    extras: dict[str, np.ndarray] = {}
    if has_ap or given:
        positions = ({k: arrays[k] for k in ("ap_positions", "ue_positions")} if has_ap else
                     {"ap_positions": np.zeros((S, M, 2)), "ue_positions": np.zeros((S, K, 2))})
        snap = model.validate({"beta": beta, **positions, **{k: arrays[k] for k in given}}, batch_shape=(S,),
                              where=name)
        if has_ap:
            ap, ue = read_only(snap.ap_positions), read_only(snap.ue_positions)
        extras = {k: read_only(snap.extras[k]) for k in given}
    return SnapshotsFile(path, sha256, read_only(beta), ap, ue, fields, sidecar, extras)


def _any_model_extras() -> set[str]:
    """The extra array names of every registered model (the file's own model is checked once the sidecar is read)."""
    from cfenv.models import _model_class, model_names

    return {name for model in model_names() for name in _model_class(model).snapshot_extras}


def read_only(array: np.ndarray) -> np.ndarray:
    """A float64 (complex128 if complex) copy of ``array`` that cannot be written: the file's data, shared
    by every task of a process (agents get copies of their own, :func:`agents.lab.tasks.read_only_copy`)."""
    copy = np.array(array, dtype=np.complex128 if np.iscomplexobj(array) else np.float64, copy=True)
    copy.flags.writeable = False
    return copy


def check_members(data: bytes, name: str) -> None:
    """``ValueError`` unless every ``.npy`` member of the archive ``data`` is a plain array whose header
    declares no more bytes than the member holds: a raw pickle, an object array or a header claiming
    terabytes is refused from its header, before anything is unpacked."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            member = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                    header = f.tell()
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
                raise ValueError(f"{name}: {member!r} is not a .npy array ({str(err).splitlines()[0]})") from None
            if dtype.hasobject:
                raise ValueError(f"{name}: cannot be read as plain arrays: {member!r} holds Python objects ({dtype})")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if declared > info.file_size - header:
                raise ValueError(f"{name}: {member!r} declares shape {tuple(shape)} ({declared:,} bytes) but holds "
                                 f"{info.file_size - header:,} bytes: the archive is damaged")


@lru_cache(maxsize=4)
def _cached(path: str, config_path: str | None, sha256: str, system: str) -> SnapshotsFile:
    loaded = load_snapshots_file(path, config_path, json.loads(system))
    if loaded.sha256 != sha256:
        raise ValueError(f"snapshots file {path} changed since the run started (SHA-256 {loaded.sha256[:16]}... "
                         f"instead of {sha256[:16]}...): start the run again")
    return loaded


def snapshots_file(path: str | Path, config_path: str | Path | None, sha256: str,
                   system: dict[str, Any] | None = None) -> SnapshotsFile:
    """The file a run validated at its start, read again (once per process) and checked to be
    the same bytes (``sha256``): what a task running in a worker process or on a node uses."""
    return _cached(str(path), None if config_path is None else str(config_path), sha256,
                   json.dumps(system or {}, sort_keys=True))
