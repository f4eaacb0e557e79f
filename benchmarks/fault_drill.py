"""Fault drill: bad input, crashes, concurrent runs and tampering, end to end through the CLIs.

    python benchmarks/fault_drill.py            # about 3-6 minutes on 2 cores

Every case runs ``evaluate.py`` / ``train.py`` in a subprocess (in a temporary folder) and is
classified by what a careful user would see:

* ``handled``: a one-line error (exit status 2, no traceback) before any work, or the right
  result (a resumed run equal to an uninterrupted one, a tampered chunk recomputed, ...);
* ``traceback``: a Python traceback reached the user;
* ``hang``: the command did not finish within its time limit;
* ``silently wrong``: exit status 0 with results that differ from the reference;
* ``files lost``: a file the tool did not write disappeared;
* ``code executed``: a payload planted in a file the tool loads ran.

The goal is 0 in every column but ``cases`` and ``handled``. Prints the table, writes
``benchmarks/results/fault_drill.json``.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--agents", "random,master-ap,local-search,exhaustive", "--sizes", "6,1,4,2", "10,2,6,3",
        "--snapshots", "12", "--chunk-size", "3", "--no-progress"]
COLUMNS = ("handled", "traceback", "hang", "silently wrong", "files lost", "code executed")


def cli(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int | None, str, str]:
    """Run ``python <script> args`` in ``cwd``; ``(None, ...)`` on a time-out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CFPILOT_CACHE": str(cwd / "cache")}
    try:
        out = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                             env=env)
    except subprocess.TimeoutExpired:
        return None, "", ""
    return out.returncode, out.stdout, out.stderr


def rates(out: Path) -> dict[str, Any]:
    records = json.loads((out / "results.json").read_text())
    return {f"{r['agent']}@{r['M']},{r['K']}": (r["per_snapshot_sum_rate_mbps"], r["per_snapshot_assignments"])
            for r in records}


def one_line_error(code: int | None, stderr: str) -> str:
    if code is None:
        return "hang"
    if "Traceback" in stderr:
        return "traceback"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return "handled" if code == 2 and len(lines) == 1 else "traceback"


# ---------------------------------------------------------------------------------- cases
BAD_EVALUATE = [["--snapshots", "0"], ["--snapshots", "100000000"], ["--sizes", "100000000,1,4,2"],
                ["--sizes", "10,2"], ["--agents", "nope"], ["--agents", ""], ["--seed", "-1"],
                ["--device", "bogus"], ["--max-assignments", "-5"], ["--noise-p", "2"], ["--shots", "-1"],
                ["--mitigation", "x"], ["--grad", "x"], ["--executor", "x"], ["--chunk-size", "0"],
                ["--retries", "-1"], ["--trained-at", "1,2"], ["--loss", "x"], ["--ray-address", "auto"],
                ["--out", "/etc/passwd"], ["--workers", "0"]]
BAD_TRAIN = [["--qubits", "5"], ["--share", "foo"], ["--readout", "foo"], ["--backend", "foo"],
             ["--noise-p", "2"], ["--shots", "-1"], ["--device", "bogus"], ["--seed", "-1"],
             ["--out", "/etc/passwd"], ["--agent", "mlp", "--hidden", "0"],
             ["--agent", "mlp", "--hidden", "2147483648"], ["--agent", "random"], ["--agent", "gnn", "--loss", "x"],
             ["--epochs", "0"], ["--lr", "-1"], ["--agent", "ppo", "--epochs", "3"],
             ["--agent", "ppo", "--total-timesteps", "0"], ["--agent", "ppo", "--resume"],
             ["--imitation-epochs", "99"], ["--sizes", "0,1,2,3"], ["--labels", "oracle"]]
BAD_SWEEPS = {"yaml syntax": "name: [unclosed\n", "empty grid": "agent: mlp\nsearch: {lr: []}\n",
              "sampler args": "agent: mlp\nsearch: {lr: {loguniform: 0.1}}\n",
              "samples as text": "agent: mlp\nnum_samples: '3'\nsearch: {lr: [0.1]}\n",
              "metric not a name": "agent: mlp\nmetric: 5\nsearch: {lr: [0.1]}\n"}


def bad_inputs(tmp: Path) -> list[tuple[str, str]]:
    cases: list[tuple[str, str]] = []
    for a in BAD_EVALUATE:
        args = ["evaluate.py", *a] if "--agents" in a else ["evaluate.py", "--agents", "random", *a]
        code, _, err = cli(args + ["--out", str(tmp / "bad")] if "--out" not in a else args, tmp, 120)
        cases.append((f"evaluate.py {' '.join(a)}", one_line_error(code, err)))
    for a in BAD_TRAIN:
        args = ["train.py", *a] if "--agent" in a else ["train.py", "--agent", "hqcnn", *a]
        code, _, err = cli(args + ["--no-progress"], tmp, 120)
        cases.append((f"train.py {' '.join(a)}", one_line_error(code, err)))
    for name, text in BAD_SWEEPS.items():
        path = tmp / f"{name.replace(' ', '_')}.yaml"
        path.write_text(text)
        code, _, err = cli(["train.py", "--sweep", str(path), "--out", str(tmp / "sweeps")], tmp, 120)
        cases.append((f"sweep file: {name}", one_line_error(code, err)))
    return cases


def kill_and_resume(tmp: Path, reference: dict, executor: str) -> tuple[str, str]:
    out = tmp / f"killed-{executor}"
    args = [sys.executable, "evaluate.py", *GRID, "--out", str(out), "--executor", executor, "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CFPILOT_CACHE": str(tmp / "cache")}
    proc = subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").rglob("*.json"))) < 4:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)
    orphans = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    for pid in orphans:
        os.kill(int(pid), signal.SIGKILL)
    code, _, err = cli(["evaluate.py", *GRID, "--out", str(out), "--resume"], tmp)
    if code is None:
        return f"kill -9 ({executor}) then --resume", "hang"
    if orphans:
        return f"kill -9 ({executor}) then --resume", "hang"  # workers outlived their parent
    if code != 0 or "Traceback" in err:
        return f"kill -9 ({executor}) then --resume", "traceback"
    return f"kill -9 ({executor}) then --resume", "handled" if rates(out) == reference else "silently wrong"


def concurrent_out(tmp: Path, reference: dict) -> tuple[str, str]:
    out = tmp / "shared"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CFPILOT_CACHE": str(tmp / "cache")}
    first = subprocess.Popen([sys.executable, "evaluate.py", *GRID, "--out", str(out)], cwd=tmp, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".cfpilot.lock").exists():
        time.sleep(0.1)
    code, _, err = cli(["evaluate.py", *GRID, "--seed", "5", "--out", str(out)], tmp)
    first_err = first.communicate(timeout=300)[1]
    verdict = one_line_error(code, err)
    if first.returncode != 0 or "Traceback" in first_err:
        verdict = "traceback"
    elif rates(out) != reference:
        verdict = "silently wrong"
    return "two runs on one --out", verdict


def tampering(tmp: Path, reference: dict) -> list[tuple[str, str]]:
    out = tmp / "tampered"
    cli(["evaluate.py", *GRID, "--out", str(out)], tmp)
    cell = out / "cells" / "10-2-6-3" / "local-search" / "0-3.json"
    donor = json.loads((out / "cells" / "10-2-6-3" / "random" / "0-3.json").read_text())
    pristine = cell.read_text()

    def set_rates(c: dict) -> None:
        c["result"]["rates"] = [10 * r for r in c["result"]["rates"]]

    edits: dict[str, Callable[[dict], None]] = {
        "rates x10": set_rates,
        "NaN rate": lambda c: c["result"]["rates"].__setitem__(0, float("nan")),
        "short rate list": lambda c: c["result"].update(rates=c["result"]["rates"][:1]),
        "pilot 99": lambda c: c["result"]["pilots"][0].__setitem__(0, 99),
        "pilots not matching rates": lambda c: c["result"].update(pilots=donor["result"]["pilots"]),
        "chunk of another agent": lambda c: c.update(donor),
        "fake skipped status": lambda c: c["result"].update(status="skipped", reason="x"),
        "negative elapsed": lambda c: c["result"].update(elapsed_s=-1),
    }
    cases = []
    for name, edit in edits.items():
        data = json.loads(pristine)
        edit(data)
        cell.write_text(json.dumps(data))
        code, _, err = cli(["evaluate.py", *GRID, "--out", str(out), "--resume"], tmp)
        verdict = ("hang" if code is None else "traceback" if code != 0 or "Traceback" in err
                   else "handled" if rates(out) == reference else "silently wrong")
        cases.append((f"tampered chunk: {name}", verdict))
    cell.write_text(pristine)
    return cases


def user_files(tmp: Path) -> tuple[str, str]:
    out = tmp / "mine"
    cli(["evaluate.py", *GRID, "--out", str(out)], tmp)
    thesis = out / "cells" / "thesis" / "chapter1.tex"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("chapter 1")
    cli(["evaluate.py", *GRID, "--out", str(out)], tmp)
    return "a user's file inside --out/cells, rerun", "handled" if thesis.exists() else "files lost"


class _Payload:
    """Unpickling this creates a marker file (what an attacker's payload would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def tampered_checkpoints(tmp: Path) -> list[tuple[str, str]]:
    runs, marker = tmp / "runs", tmp / "PWNED"
    cases = []
    ppo = runs / "ppo" / "6-1-4-2" / "rl-seed0"
    ppo.mkdir(parents=True)
    with zipfile.ZipFile(ppo / "model.zip", "w") as z:
        z.writestr("data", pickle.dumps(_Payload(str(marker))))
    (ppo / "config.json").write_text(json.dumps({"agent": "ppo"}))
    code, _, err = cli(["evaluate.py", "--agents", "ppo", "--sizes", "6,1,4,2", "--snapshots", "2", "--no-train",
                        "--checkpoints", str(runs), "--out", str(tmp / "ppo-out"), "--no-progress"], tmp)
    cases.append(("tampered SB3 model.zip", "code executed" if marker.exists() else
                  "hang" if code is None else "traceback" if "Traceback" in err else "handled"))
    mlp = runs / "mlp" / "6-1-4-2" / "unsupervised-seed0"
    cli(["train.py", "--agent", "mlp", "--sizes", "6,1,4,2", "--epochs", "1", "--train-snapshots", "16",
         "--val-snapshots", "8", "--out", str(runs), "--no-progress"], tmp)
    (mlp / "weights.pt").write_bytes(pickle.dumps(_Payload(str(marker))))
    code, _, err = cli(["evaluate.py", "--agents", "mlp", "--sizes", "6,1,4,2", "--snapshots", "2", "--no-train",
                        "--checkpoints", str(runs), "--out", str(tmp / "mlp-out"), "--no-progress"], tmp)
    cases.append(("tampered weights.pt (pickle payload)", "code executed" if marker.exists() else
                  "hang" if code is None else "traceback" if "Traceback" in err else "handled"))
    return cases


def interrupted_training(tmp: Path) -> tuple[str, str]:
    runs = tmp / "ctrlc"
    args = [sys.executable, "train.py", "--agent", "gnn", "--sizes", "10,2,6,3", "--train-snapshots", "512",
            "--epochs", "6", "--out", str(runs), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CFPILOT_CACHE": str(tmp / "cache")}
    proc = subprocess.Popen(args, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(runs.rglob("checkpoint.pt")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if "Traceback" in err:
        return "Ctrl-C in train.py, then --resume", "traceback"
    code, _, err = cli([*args[1:], "--resume"], tmp)
    full_runs = tmp / "ctrlc-full"
    cli([*[a if a != str(runs) else str(full_runs) for a in args[1:]]], tmp)
    import torch

    a = torch.load(next(runs.rglob("weights.pt")), weights_only=True)
    b = torch.load(next(full_runs.rglob("weights.pt")), weights_only=True)
    same = all(torch.equal(a[k], b[k]) for k in a)
    return "Ctrl-C in train.py, then --resume", ("traceback" if code != 0 else "handled" if same else "silently wrong")


def main() -> int:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cfpilot-drill-") as name:
        tmp = Path(name)
        (tmp / "evaluate.py").symlink_to(ROOT / "evaluate.py")
        (tmp / "train.py").symlink_to(ROOT / "train.py")
        code, _, err = cli(["evaluate.py", *GRID, "--out", str(tmp / "reference")], tmp)
        assert code == 0, err
        reference = rates(tmp / "reference")
        cases = bad_inputs(tmp)
        cases += [kill_and_resume(tmp, reference, "local"), kill_and_resume(tmp, reference, "processes"),
                  concurrent_out(tmp, reference), user_files(tmp)]
        cases += tampering(tmp, reference)
        cases += tampered_checkpoints(tmp)
        cases.append(interrupted_training(tmp))
    counts = {c: sum(v == c for _, v in cases) for c in COLUMNS}
    print("| " + " | ".join(("cases",) + COLUMNS) + " |")
    print("|" + "---|" * (len(COLUMNS) + 1))
    print("| " + " | ".join(str(v) for v in (len(cases), *counts.values())) + " |")
    for name, verdict in cases:
        if verdict != "handled":
            print(f"  {verdict}: {name}")
    out = ROOT / "benchmarks" / "results" / "fault_drill.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"counts": {"cases": len(cases), **counts}, "cases": dict(cases),
                               "wall_time_s": time.perf_counter() - started}, indent=1))
    print(f"wrote {out} ({time.perf_counter() - started:.0f} s)")
    return 0 if counts["handled"] == len(cases) else 1


if __name__ == "__main__":
    raise SystemExit(main())
