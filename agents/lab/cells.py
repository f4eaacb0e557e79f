"""The resume cache: every finished chunk is saved under ``<out>/cells/`` as it completes, and a
resumed run reuses only the saved chunks it can trust."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from agents.lab.outdir import CELLS_DIR
from agents.lab.planning import Task, checkpoint
from agents.lab.settings import EvaluationSettings
from agents.lab.tasks import model_digest, model_files_of
from agents.registry import resolve
from agents.storage import atomic_write_bytes
from cfenv.channel import Snapshot
from cfenv.models import model_of
from cfenv.units import MBPS, Size, size_slug


def reuse_saved(settings: EvaluationSettings, chunks: list[Task], used: dict[Size, Snapshot],
                fingerprint: str) -> dict[Task, dict[str, Any]]:
    """The chunks of ``chunks`` saved by an earlier run of the same settings that can be trusted
    (:func:`load_cell`); says which saved chunk is recomputed and why."""
    results: dict[Task, dict[str, Any]] = {}
    digests: dict[Path, str | None] = {}
    for task in chunks:
        spec = resolve(task.agent)
        digest = None
        if spec.learnable:
            _, run_dir = checkpoint(spec, task.size, settings)
            if run_dir not in digests:
                digests[run_dir] = model_digest(model_files_of(run_dir)) if spec.has_checkpoint(run_dir) else "none"
            digest = digests[run_dir]
        saved, why = load_cell(settings, task, fingerprint, used[task.size][task.start:task.stop], digest)
        if saved is not None:
            results[task] = saved
        elif why is not None:
            print(f"resume: recomputing {task.key}: its saved chunk is not trusted ({why})")
    return results


def cell_path(settings: EvaluationSettings, task: Task) -> Path:
    """Where a finished chunk is saved: ``<out>/cells/<M-L-K-tau_p>/<agent>/<start>-<stop>.json``."""
    return (Path(settings.out) / CELLS_DIR / size_slug(task.size) / re.sub(r"[^\w.-]", "_", task.agent)
            / f"{task.start}-{task.stop}.json")


def save_cell(settings: EvaluationSettings, task: Task, result: dict[str, Any], fingerprint: str) -> None:
    """Save a finished chunk's result as it completes, with the settings' fingerprint and its task."""
    text = json.dumps({"fingerprint": fingerprint, "task": task.key, "result": result})
    atomic_write_bytes(cell_path(settings, task), lambda f: f.write(text.encode()))


def load_cell(settings: EvaluationSettings, task: Task, fingerprint: str, snaps: Snapshot,
              digest: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """A saved chunk that can be trusted, or ``(None, why not)``.

    Trusted means: written under the same settings (fingerprint) for this very task, by the
    same model (``digest`` of a learning agent's files), a finished ``ok`` result whose fields
    have the right types, lengths and ranges, and whose sum rates equal those recomputed from
    its assignments on the test snapshots ``snaps`` of the chunk (one batched rate call)."""
    path = cell_path(settings, task)
    if not path.exists():
        return None, None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None, "unreadable"
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        return None, None  # another run's settings: silently recomputed, as documented
    result = saved.get("result")
    if saved.get("task") != task.key:
        return None, f"it belongs to task {saved.get('task')!r}"
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None, "not a finished result"
    if digest is not None and result.get("model_digest") != digest:
        return None, "it was computed with another model"
    n, config = task.stop - task.start, settings.system_config(task.size)
    rates, pilots, elapsed = result.get("rates"), result.get("pilots"), result.get("elapsed_s")
    try:
        rates = np.asarray(rates, dtype=np.float64)
        pilots = np.asarray(pilots)
    except (TypeError, ValueError):
        return None, "malformed rates or assignments"
    if rates.shape != (n,) or not np.all(np.isfinite(rates)):
        return None, f"it holds {rates.size} rates for {n} snapshots, or non-finite ones"
    if (pilots.shape != (n, config.K) or pilots.dtype.kind not in "iu"
            or pilots.size and (pilots.min() < 0 or pilots.max() >= config.tau_p)):
        return None, "its assignments have the wrong shape or pilots out of range"
    if not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        return None, "its elapsed time is not a non-negative number"
    recomputed = model_of(config).sum_rate(snaps, pilots.astype(np.int64)) / MBPS
    if not np.array_equal(recomputed, rates):
        return None, "its sum rates do not match its assignments"
    return result, None
