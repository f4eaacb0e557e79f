"""The output folder of an evaluation run: claimed by one run at a time, never emptied blindly.

* A lock file (``.cfpilot.lock``: host, pid, start time) keeps a second run off a folder
  while the first holds it; a lock whose process is gone (a crash, ``kill -9``) is taken over.
* A manifest (``.cfpilot-run.json``) records the settings that made the folder's results; a
  run with other settings refuses the folder (one line) unless told to overwrite.
* Output files (``results.csv`` ...) are replaced only where the manifest lists them as the
  harness's: a folder holding a user's own, even through a symlink, is refused, ``--overwrite``
  or not.
* Only files the harness wrote and can recognise are ever deleted: chunk files under
  ``cells/`` (JSON carrying the harness's ``fingerprint`` and ``task`` keys) and its own
  failure markers. Anything else in the folder is left alone.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from agents.storage import atomic_write_text

LOCK = ".cfpilot.lock"
MANIFEST = ".cfpilot-run.json"
CELLS_DIR = "cells"
"""sub-folder holding each finished chunk (partial results, ``--resume``)"""
OUTPUT_FILES = ("results.json", "results.csv", "per_snapshot.csv", "results.md", "results.png", "run.json",
                "snapshots.npz")
"""the files a finished run writes into its folder"""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie nobody has reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): it answered the signal
    return state not in ("Z", "X")


def take_lock(out: Path, tool: str = "evaluate.py") -> Path:
    """Create ``out/LOCK`` exclusively; ``ValueError`` naming ``tool`` if a live run on this host holds
    it (a crashed run's lock is taken over). The lock of ``evaluate.py``'s results folders and
    ``train.py``'s run folders."""
    lock = out / LOCK
    me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text())
            except (OSError, ValueError):
                holder = {}
            other_host = holder.get("host") not in (None, me["host"])
            if other_host or (isinstance(holder.get("pid"), int) and pid_alive(holder["pid"])):
                where = f"pid {holder.get('pid')} on {holder.get('host')}" if other_host else f"pid {holder.get('pid')}"
                raise ValueError(f"{out} is in use by another {tool} run ({where}, since "
                                 f"{holder.get('started', '?')}); wait for it or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        return lock
    raise ValueError(f"could not lock {out}")  # pragma: no cover - a race lost twice


def _is_own_cell(path: Path) -> bool:
    """A chunk file this harness wrote (JSON with its fingerprint and task keys)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(saved, dict) and {"fingerprint", "task", "result"} <= set(saved)


def remove_own_cells(out: Path) -> int:
    """Delete the chunk files and failure markers this harness wrote under ``out/cells``; returns
    how many. Other files (and the folders holding them) stay."""
    cells = out / CELLS_DIR
    removed = 0
    if not cells.is_dir():
        return 0
    for path in sorted(cells.rglob("*"), reverse=True):
        if path.is_file() and ((path.suffix == ".json" and _is_own_cell(path)) or path.parent.name == ".failed-once"):
            path.unlink()
            removed += 1
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    if cells.is_dir() and not any(cells.iterdir()):
        cells.rmdir()
    return removed


def check_writable(out: Path) -> None:
    """``ValueError`` unless ``out`` is (or can be created as) a writable folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: {parent} is not writable")


def _read_manifest(out: Path) -> dict[str, Any] | None:
    """The folder's manifest (``{}`` if unreadable), or ``None`` where there is none."""
    manifest = out / MANIFEST
    if not manifest.exists():
        return None
    try:
        previous = json.loads(manifest.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _normalised(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists, paths as strings): what a manifest compares."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _changed(previous: dict[str, Any], settings: dict[str, Any], keys: dict[str, Any] | None) -> list[str]:
    """The settings that differ from the folder's: the digested ``keys`` where both have them (so a
    flag such as --resume, which changes no number, is never named), else the settings."""
    if keys is not None and isinstance(previous.get("keys"), dict):
        old, new = previous["keys"], _normalised(keys)
    else:
        old, new = previous.get("settings", {}), _normalised(settings)
        if keys is not None:
            new = {k: v for k, v in new.items() if k in keys}
        old = {k: v for k, v in old.items() if k in new} if isinstance(old, dict) else {}
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _check_claim(out: Path, previous: dict[str, Any] | None, settings: dict[str, Any], fingerprint: str,
                 overwrite: bool, keys: dict[str, Any] | None) -> None:
    """``ValueError`` where this run may not write into ``out``: results of other settings without
    ``overwrite``, or output files the harness did not write (never replaced, even with ``overwrite``)."""
    if previous is not None and previous.get("fingerprint") != fingerprint and not overwrite:
        changed = _changed(previous, settings, keys)
        raise ValueError(f"{out} holds results of other settings ({', '.join(changed) or 'the cfpilot version'} "
                         "differ): choose another --out, or pass --overwrite")
    listed = previous.get("files", OUTPUT_FILES) if previous is not None else []  # a manifest before 0.8: all
    ours = set(listed) if isinstance(listed, (list, tuple)) else set()
    foreign = [name for name in OUTPUT_FILES if (out / name).exists() and name not in ours]
    if foreign and previous is None and not overwrite:
        raise ValueError(f"{out} holds results that no cfpilot manifest describes: choose another --out, "
                         "or pass --overwrite")
    if foreign:
        raise ValueError(f"{out} holds {', '.join(foreign)}, which the harness did not write (no cfpilot manifest "
                         "lists it): only files it wrote are replaced, even with --overwrite; move them or choose "
                         "another --out")


def _write_manifest(out: Path, fingerprint: str, settings: dict[str, Any], keys: dict[str, Any] | None,
                    files: list[str]) -> None:
    record = {"tool": "cfpilot evaluate.py", "fingerprint": fingerprint, "settings": settings, "files": files}
    if keys is not None:
        record["keys"] = _normalised(keys)
    atomic_write_text(out / MANIFEST, json.dumps(record, indent=1, default=str))


@contextmanager
def claimed(out: Path, settings: dict[str, Any], fingerprint: str, resume: bool,
            overwrite: bool = False, keys: dict[str, Any] | None = None) -> Iterator[Path]:
    """Hold ``out`` for one run with these ``settings`` (JSON-ready) and their ``fingerprint`` (the
    digest of ``keys``, what the numbers depend on: a refusal names those that changed).

    ``ValueError`` (before any work) if the folder is a file or not writable, another live run
    holds it, it holds results of other settings and ``overwrite`` is false, or it holds output
    files the harness did not write (the manifest lists those it did). Without ``resume`` the
    folder's old chunk files are removed (only those); the lock is released on exit, also on an
    exception or Ctrl-C."""
    out = Path(out)
    check_writable(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = take_lock(out)
    except OSError as err:
        raise ValueError(f"--out {out} cannot be written: {err.strerror or err}") from None
    try:
        previous = _read_manifest(out)
        _check_claim(out, previous, settings, fingerprint, overwrite, keys)
        if not resume or (previous is not None and previous.get("fingerprint") != fingerprint):
            remove_own_cells(out)
        _write_manifest(out, fingerprint, settings, keys, list(OUTPUT_FILES))  # none is the user's (checked)
        yield out
    finally:
        lock.unlink(missing_ok=True)


def point_latest(out: Path) -> Path | None:
    """Make ``out.parent/latest`` a symbolic link to ``out``, replacing only a link the harness made
    (to a sibling ``run-*`` folder), never a real file or folder nor a link of the user's own;
    returns the link, or None where it was left as it is or could not be made."""
    link = Path(out).parent / "latest"
    if link.is_symlink():
        target = os.readlink(link)
        if Path(target).name != target or not target.startswith("run-"):
            return None  # the user's own link
    elif link.exists():
        return None
    try:
        tmp = link.with_name(f".latest.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(out).name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        return None
    return link
