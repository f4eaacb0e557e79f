"""The fault drill's machinery: running a command line, reading what a user would see, and the
classification of one case (``benchmarks/fault_drill.py`` holds the cases).

A case is one command (or a short sequence) run in a subprocess; its **control** shows that the case
can fail -- the planted payload really runs under a naive loader, the lock is the only thing that
could refuse, the signal really arrived mid-run. A case whose control does not show the failure is
``inconclusive``, whatever the command did.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("handled", "traceback", "hang", "silently wrong", "files lost", "code executed", "inconclusive")
PY = "python"  # how commands are shown (the drill runs sys.executable)


@dataclass
class Run:
    """One finished (or timed-out: ``code is None``) command."""

    code: int | None
    out: str
    err: str
    command: str
    seconds: float

    @property
    def message(self) -> str:
        """The one line a user would read: a traceback's last line, else stderr's first, else stdout's last."""
        if self.code is None:
            return f"no exit within {self.seconds:.0f} s"
        err = [ln.strip() for ln in self.err.splitlines() if ln.strip()]
        if "Traceback" in self.err and err:
            return f"Traceback ... {err[-1]}"[:300]
        out = [ln.strip() for ln in self.out.splitlines() if ln.strip()]
        return (err[0] if err else out[-1] if out else f"(no output, exit {self.code})")[:300]

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err + self.out


@dataclass
class Outcome:
    """What one case saw: its class before the control is read, and the control."""

    verdict: str
    run: Run | None
    control_ok: bool | None  # None: the group's control (see Drill.group_control)
    control: str
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def classify(outcome: Outcome, group_control_ok: bool = True) -> str:
    """The case's class: its verdict, or ``inconclusive`` where the control did not show the failure."""
    control_ok = group_control_ok if outcome.control_ok is None else outcome.control_ok
    if outcome.verdict not in CLASSES:
        raise ValueError(f"unknown verdict {outcome.verdict!r}")
    return outcome.verdict if control_ok else "inconclusive"


class Sandbox:
    """A temporary folder the commands run in (``evaluate.py`` and ``train.py`` linked into it)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        for script in ("evaluate.py", "train.py"):
            link = tmp / script
            if not link.exists():
                link.symlink_to(ROOT / script)

    def env(self, cache: Path | None = None) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), str(self.tmp)]),
                "CFPILOT_CACHE": str(cache or self.tmp / "cache"), "PYTHONWARNINGS": "ignore"}

    def shown(self, args: list[str], prefix: str = "") -> str:
        text = shlex.join([PY, *args]).replace(str(self.tmp), "$TMP")
        return f"{prefix}{text}"

    def cli(self, args: list[str], timeout: float = 180, prefix: str = "", cwd: Path | None = None,
            cache: Path | None = None) -> Run:
        """Run ``python args`` (through ``bash -c 'PREFIX python ...'`` when ``prefix`` is given)."""
        cmd: list[str] = [sys.executable, *args]
        if prefix:
            cmd = ["bash", "-c", prefix + shlex.join(cmd)]
        start = time.perf_counter()
        try:
            done = subprocess.run(cmd, cwd=cwd or self.tmp, capture_output=True, text=True, timeout=timeout,
                                  env=self.env(cache))
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = None, _text(exc.stdout), _text(exc.stderr)
        return Run(code, out, err, self.shown(args, prefix), time.perf_counter() - start)

    def popen(self, args: list[str], cache: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, *args], cwd=self.tmp, env=self.env(cache), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def python(self, code: str, timeout: float = 60) -> Run:
        """``python -c CODE``: the naive loaders of the controls."""
        return self.cli(["-c", code], timeout=timeout)


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def finished(proc: subprocess.Popen, command: str, started: float, timeout: float = 180) -> Run:
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        code = None
    return Run(code, out, err, command, time.perf_counter() - started)


def refusal(run: Run) -> str:
    """A bad input's class: one line and exit status 2 is ``handled``; exit 0 accepted it."""
    if run.code is None:
        return "hang"
    if run.traceback:
        return "traceback"
    lines = [ln for ln in run.err.strip().splitlines() if ln.strip()]
    if run.code == 2 and len(lines) == 1:
        return "handled"
    return "silently wrong" if run.code == 0 else "traceback"


def one_line(run: Run, code: int) -> bool:
    """Exit status ``code``, no traceback, and one line on stderr."""
    lines = [ln for ln in run.err.strip().splitlines() if ln.strip()]
    return run.code == code and not run.traceback and len(lines) == 1


def records(out: Path) -> dict[str, dict]:
    """``agent@M,K`` -> its record of ``out/results.json`` (empty when there is none)."""
    try:
        data = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return {f"{r.get('agent_target', r['agent'])}@{r['M']},{r['K']}": r for r in data}


def rates(out: Path) -> dict[str, Any]:
    return {key: (r.get("per_snapshot_sum_rate_mbps"), r.get("per_snapshot_assignments"), r.get("status"))
            for key, r in records(out).items()}


class Payload:
    """Unpickling this creates ``marker`` (a stand-in for ``os.system``): only ``builtins.exec`` is needed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def run_case(group: str, name: str, body: Callable[[], Outcome], group_control_ok: bool = True) -> dict[str, Any]:
    """Run one case; a drill error is reported as ``inconclusive`` with its message."""
    start = time.perf_counter()
    try:
        outcome = body()
    except Exception as exc:  # the drill's own failure: never counted as handled
        outcome = Outcome("inconclusive", None, False, f"drill error: {type(exc).__name__}: {exc}"[:300])
    klass = classify(outcome, group_control_ok)
    message = outcome.message or (outcome.run.message if outcome.run else "")
    return {"group": group, "case": name, "class": klass, "verdict": outcome.verdict,
            "command": outcome.run.command if outcome.run else "", "message": message,
            "control": outcome.control,
            "control_shows_failure": group_control_ok if outcome.control_ok is None else outcome.control_ok,
            "seconds": round(time.perf_counter() - start, 1), **outcome.extra}
