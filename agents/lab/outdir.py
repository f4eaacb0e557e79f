"""The output folder of an evaluation run: claimed by one run at a time, never emptied blindly.

* A lock file (``.cfpilot.lock``: host, pid, start time) keeps a second run off a folder
  while the first holds it; a lock whose process is gone (a crash, ``kill -9``) is taken over.
* A manifest (``.cfpilot-run.json``) records the settings that made the folder's results; a
  run with other settings refuses the folder (one line) unless told to overwrite.
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


def _take_lock(out: Path) -> Path:
    """Create ``out/LOCK`` exclusively; ``ValueError`` if a live run on this host holds it."""
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
                raise ValueError(f"{out} is in use by another evaluate.py run ({where}, since "
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


@contextmanager
def claimed(out: Path, settings: dict[str, Any], fingerprint: str, resume: bool,
            overwrite: bool = False) -> Iterator[Path]:
    """Hold ``out`` for one run with these ``settings`` (JSON-ready) and their ``fingerprint``.

    ``ValueError`` (before any work) if the folder is a file or not writable, another live run
    holds it, or it holds results of other settings and ``overwrite`` is false. Without
    ``resume`` the folder's old chunk files are removed (only those); the lock is released on
    exit, also on an exception or Ctrl-C."""
    out = Path(out)
    check_writable(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = _take_lock(out)
    except OSError as err:
        raise ValueError(f"--out {out} cannot be written: {err.strerror or err}") from None
    try:
        manifest = out / MANIFEST
        previous: dict[str, Any] | None = None
        if manifest.exists():
            try:
                previous = json.loads(manifest.read_text())
            except (OSError, ValueError):
                previous = {}
        if previous is not None and previous.get("fingerprint") != fingerprint and not overwrite:
            old = previous.get("settings", {})
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds results of other settings ({', '.join(changed) or 'unknown'} differ): "
                             "choose another --out, or pass --overwrite")
        if previous is None and not overwrite and any((out / name).exists() for name in OUTPUT_FILES):
            raise ValueError(f"{out} holds results that no cfpilot manifest describes: choose another --out, "
                             "or pass --overwrite")
        if not resume or (previous is not None and previous.get("fingerprint") != fingerprint):
            remove_own_cells(out)
        atomic_write_text(manifest, json.dumps({"tool": "cfpilot evaluate.py", "fingerprint": fingerprint,
                                                "settings": settings}, indent=1, default=str))
        yield out
    finally:
        lock.unlink(missing_ok=True)


def point_latest(out: Path) -> Path | None:
    """Make ``out.parent/latest`` a symbolic link to ``out`` (replacing an older link, never a
    real file or folder); returns the link, or None where it could not be made."""
    link = Path(out).parent / "latest"
    if link.exists() and not link.is_symlink():
        return None
    try:
        tmp = link.with_name(f".latest.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(out).name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        return None
    return link
