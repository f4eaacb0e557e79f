"""The fault drill's evaluate-side cases: bad input, plug-in agents, files, concurrency, kills,
tampered chunks and malformed archives. Each ``*_cases`` function returns ``[(name, body)]``; a
body returns an :class:`Outcome` whose control shows the case can fail."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import signal
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from drill_core import ROOT, Outcome, Payload, Sandbox, finished, one_line, records, refusal

TINY = ["--sizes", "6,1,4,2", "--snapshots", "6", "--chunk-size", "3", "--no-progress"]
GRID = ["--agents", "random,master-ap,local-search,exhaustive", "--sizes", "6,1,4,2", "--snapshots", "24",
        "--chunk-size", "3", "--no-progress"]
TASKS = 4 * 8  # GRID's chunk tasks
Cases = list[tuple[str, Callable[[], Outcome]]]

BAD_EVALUATE = [["--snapshots", "0"], ["--snapshots", "100000000"], ["--sizes", "100000000,1,4,2"],
                ["--sizes", "10,2"], ["--agents", "nope"], ["--agents", ""], ["--seed", "-1"],
                ["--device", "bogus"], ["--max-assignments", "-5"], ["--noise-p", "2"], ["--shots", "-1"],
                ["--mitigation", "x"], ["--grad", "x"], ["--executor", "x"], ["--chunk-size", "0"],
                ["--retries", "-1"], ["--trained-at", "1,2"], ["--loss", "x"], ["--ray-address", "auto"],
                ["--out", "/etc/passwd"], ["--workers", "0"], ["--task-timeout", "0"]]
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


# ---------------------------------------------------------------------------------- bad input
def bad_input_cases(box: Sandbox) -> Cases:
    """Bad command lines and sweep files: one line, exit 2, nothing written. Their control is the
    group's (the classifier sees a planted traceback and a planted exit 0 as failures)."""
    def evaluate_case(a: list[str]) -> Callable[[], Outcome]:
        def body() -> Outcome:
            args = ["evaluate.py", *a] if "--agents" in a else ["evaluate.py", "--agents", "random", *a]
            out = box.tmp / "bad"
            run = box.cli(args + ["--out", str(out), "--no-progress"] if "--out" not in a else args, 120)
            verdict = refusal(run)
            if verdict == "handled" and out.exists():
                verdict, run = "silently wrong", run  # refused, yet wrote an output folder
            shutil.rmtree(out, ignore_errors=True)
            return Outcome(verdict, run, None, "group control")
        return body

    def train_case(a: list[str]) -> Callable[[], Outcome]:
        def body() -> Outcome:
            args = ["train.py", *a] if "--agent" in a else ["train.py", "--agent", "hqcnn", *a]
            run = box.cli(args + ["--no-progress"] + ([] if "--out" in a else ["--out", str(box.tmp / "badruns")]),
                          120)
            return Outcome(refusal(run), run, None, "group control")
        return body

    def sweep_case(name: str, text: str) -> Callable[[], Outcome]:
        def body() -> Outcome:
            path = box.tmp / f"{name.replace(' ', '_')}.yaml"
            path.write_text(text)
            run = box.cli(["train.py", "--sweep", str(path), "--out", str(box.tmp / "sweeps")], 120)
            return Outcome(refusal(run), run, None, "group control")
        return body

    return ([(f"evaluate.py {' '.join(a)}", evaluate_case(a)) for a in BAD_EVALUATE]
            + [(f"train.py {' '.join(a)}", train_case(a)) for a in BAD_TRAIN]
            + [(f"sweep file: {n}", sweep_case(n, t)) for n, t in BAD_SWEEPS.items()])


def classifier_control(box: Sandbox) -> tuple[bool, str]:
    """The bad-input group's control: a planted traceback and a planted exit 0 are not ``handled``."""
    planted = box.python("import sys; print('error: x', file=sys.stderr); raise ValueError('planted')")
    accepted = box.python("pass")
    ok = refusal(planted) == "traceback" and refusal(accepted) == "silently wrong"
    return ok, f"planted traceback -> {refusal(planted)}, planted exit 0 -> {refusal(accepted)}"


# ---------------------------------------------------------------------------------- plug-in agents
PLUGIN_CONTROLS = {  # what the naive harness (drill_agents.naive) must see for the misbehaviour to be real
    "Mutator": lambda s: s.get("mutated") is True,
    "ForcedMutator": lambda s: s.get("mutated") is True,
    "Fractional": lambda s: s.get("accepted_after_cast") is True,
    "Bools": lambda s: s.get("accepted_after_cast") is True,
    "Strings": lambda s: s.get("accepted_after_cast") is True,
    "Exits": lambda s: s.get("escaped") == "SystemExit",
    "Interrupts": lambda s: s.get("escaped") == "KeyboardInterrupt",
    "Sleeps": lambda s: s.get("escaped") == "TimeoutError",
    "UnpicklableResult": lambda s: s.get("escaped") == "PicklingError",
    "UnpicklableError": lambda s: "unpickling it" in str(s.get("escaped")),
    "Huge": lambda s: s.get("escaped") == "MemoryError",
}
FAILING = {  # agent -> (extra evaluate flags, a word its cell's reason must hold)
    "Fractional": ([], "integer"), "Bools": ([], "integer"), "Strings": ([], "integer"),
    "Exits": ([], "SystemExit"), "Sleeps": (["--task-timeout", "2"], "task-timeout"),
    "Sleeps/processes": (["--task-timeout", "2", "--executor", "processes", "--workers", "1"], "task-timeout"),
    "UnpicklableResult/processes": (["--executor", "processes", "--workers", "1"], ""),
    "UnpicklableError/processes": (["--executor", "processes", "--workers", "1"], ""),
    "Huge": ([], "MemoryError"),
}


class Plugins:
    """The plug-in agent cases; the naive harness runs once for all their controls."""

    def __init__(self, box: Sandbox, reference: Callable[[], dict]) -> None:
        self.box, self.reference, self._seen = box, reference, None

    def seen(self, name: str) -> dict:
        if self._seen is None:
            run = self.box.cli([str(ROOT / "benchmarks" / "drill_agents.py"), *PLUGIN_CONTROLS], 120)
            self._seen = {d["agent"]: d for d in map(json.loads, run.out.splitlines()) if d}
        return self._seen.get(name, {})

    def control(self, name: str) -> tuple[bool, str]:
        seen = self.seen(name)
        return PLUGIN_CONTROLS[name](seen), f"naive harness (call _assign, astype(int), pickle): {seen}"

    def failing(self, key: str) -> Outcome:
        name = key.split("/")[0]
        extra, word = FAILING[key]
        out = self.box.tmp / f"plugin-{key.replace('/', '-')}"
        run = self.box.cli(["evaluate.py", "--agents", f"drill_agents:{name},master-ap", *TINY, "--out", str(out),
                            *extra], 120)
        found = records(out)
        mine = found.get(f"drill_agents:{name}@6,4", {})
        other = found.get("master-ap@6,4", {})
        ref = self.reference().get("master-ap@6,4", {})
        same = other.get("per_snapshot_sum_rate_mbps") == ref.get("per_snapshot_sum_rate_mbps", [None])[:6]
        reason = str(mine.get("reason", ""))
        if run.code is None:
            verdict = "hang"
        elif run.traceback:
            verdict = "traceback"
        elif name == "UnpicklableResult" and mine.get("status") == "ok" and run.code == 0 and same:
            pilots = np.asarray(mine.get("per_snapshot_assignments"))
            verdict = "handled" if pilots.size and not pilots.any() else "silently wrong"  # scored as it returned
        elif mine.get("status") == "ok" or not found:
            verdict = "silently wrong"
        elif run.code == 1 and mine.get("status") == "failed" and word in reason and "\n" not in reason and same:
            verdict = "handled"
        else:
            verdict = "silently wrong" if not same else "traceback"
        ok, control = self.control(name)
        return Outcome(verdict, run, ok, control, f"exit {run.code}; cell: {mine.get('status')}: {reason}"[:300])

    def interrupts(self) -> Outcome:
        out = self.box.tmp / "plugin-interrupts"
        run = self.box.cli(["evaluate.py", "--agents", "master-ap,drill_agents:Interrupts", *TINY, "--out", str(out)],
                           120)
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "handled" if run.code == 130 and len((run.out + run.err).strip().splitlines()) == 1
                   and "--resume" in run.out + run.err
                   and not (out / ".cfpilot.lock").exists() else "silently wrong")
        ok, control = self.control("Interrupts")
        return Outcome(verdict, run, ok, control)

    def mutator(self, name: str) -> Outcome:
        data = self.box.tmp / "own.npz"
        if not data.exists():
            np.savez(data, beta=np.random.default_rng(5).uniform(1e-9, 1e-5, (6, 6, 4)))
            data.with_suffix(".json").write_text(json.dumps({"L": 1, "tau_p": 2}))
        grid = ["--snapshots-file", str(data), "--no-progress", "--chunk-size", "3"]
        alone, after = self.box.tmp / f"{name}-alone", self.box.tmp / f"{name}-after"
        self.box.cli(["evaluate.py", "--agents", "drill_agents:Zeros,master-ap,greedy", *grid, "--out", str(alone)])
        run = self.box.cli(["evaluate.py", "--agents", f"drill_agents:{name},master-ap,greedy", *grid,
                            "--out", str(after)])
        before, now = records(alone), records(after)
        others = all(now.get(k, {}).get("per_snapshot_sum_rate_mbps") == before[k]["per_snapshot_sum_rate_mbps"]
                     for k in before if not k.startswith("drill_agents"))
        key = next((k for k in now if k.startswith("drill_agents")), "")
        mine, zeros = now.get(key, {}), next((r for k, r in before.items() if k.startswith("drill_agents")), {})
        own = (mine.get("per_snapshot_sum_rate_mbps") == zeros.get("per_snapshot_sum_rate_mbps")
               if mine.get("status") == "ok" else "read-only" in str(mine.get("reason")))
        published = np.load(after / "snapshots.npz") if (after / "snapshots.npz").exists() else {}
        kept = any(np.array_equal(published[k], np.load(data)["beta"]) for k in getattr(published, "files", []))
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "handled" if others and own and kept else "silently wrong")
        ok, control = self.control(name)
        return Outcome(verdict, run, ok, control,
                       f"others unchanged: {others}; own score right: {own}; published file kept: {kept}")

    def cases(self) -> Cases:
        return ([(f"agent {n} (in _assign / in assign)", lambda n=n: self.mutator(n))
                 for n in ("Mutator", "ForcedMutator")]
                + [(f"agent {k}", lambda k=k: self.failing(k)) for k in FAILING]
                + [("agent Interrupts (KeyboardInterrupt)", self.interrupts)])


# ---------------------------------------------------------------------------------- archives
def npz_with_member(path: Path, member: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("beta.npy", member)


def huge_header() -> bytes:
    """An .npy header declaring 1e6 x 1e6 x 4 float64 in front of 128 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                               "shape": (1_000_000, 1_000_000, 4)})
    return buf.getvalue() + bytes(128)


def archive_cases(box: Sandbox, loader: Callable[[Path], list[str]] | None = None) -> Cases:
    """Malformed snapshots files; ``loader(path)`` is the command line under test (default:
    ``evaluate.py --snapshots-file path``; the test plants a naive one)."""
    def command(path: Path, out: str) -> list[str]:
        return loader(path) if loader else ["evaluate.py", "--agents", "greedy", "--snapshots-file", str(path),
                                            "--no-progress", "--out", str(box.tmp / out)]

    def payload_member(kind: str) -> Outcome:
        path, marker = box.tmp / f"{kind}-beta.npz", box.tmp / f"PWNED-{kind}"
        if kind == "raw-pickle":  # the case: numpy refuses it, a pickle.load of the member runs it
            npz_with_member(path, pickle.dumps(Payload(marker)))
            naive = f"import pickle, zipfile; pickle.loads(zipfile.ZipFile({str(path)!r}).read('beta.npy'))"
        else:  # a valid .npy of dtype object: numpy.load(allow_pickle=True) runs it
            buf = io.BytesIO()
            np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
            npz_with_member(path, buf.getvalue())
            naive = f"import numpy; numpy.load({str(path)!r}, allow_pickle=True)['beta']"
        box.python(naive)
        ok = marker.exists()
        marker.unlink(missing_ok=True)
        run = box.cli(command(path, f"npz-{kind}"), 120)
        verdict = "code executed" if marker.exists() else refusal(run)
        return Outcome(verdict, run, ok, f"{naive.split(';')[-1].strip()} ran the payload: {ok}")

    def huge() -> Outcome:
        path = box.tmp / "huge-header.npz"
        npz_with_member(path, huge_header())
        control = box.python(f"import numpy; numpy.load({str(path)!r})['beta']")
        ok = control.traceback and "MemoryError" in control.err
        run = box.cli(command(path, "npz-huge"), 120)
        return Outcome(refusal(run), run, ok, f"numpy.load(f)['beta']: {control.message}")

    return [("snapshots file: beta.npy a raw pickle (payload)", lambda: payload_member("raw-pickle")),
            ("snapshots file: beta.npy an object array (payload)", lambda: payload_member("object-npy")),
            ("snapshots file: .npy header declaring 1e6 x 1e6 x 4", huge)]


# ---------------------------------------------------------------------------------- runs and files
def kill_and_resume(box: Sandbox, reference: Callable[[], dict], executor: str) -> Outcome:
    out = box.tmp / f"killed-{executor}"
    args = ["evaluate.py", *GRID, "--out", str(out), "--executor", executor, "--workers", "2"]
    proc, started = box.popen(args), time.perf_counter()
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").rglob("*.json"))) < 4 and proc.poll() is None:
        time.sleep(0.05)
    alive, saved = proc.poll() is None, len(list((out / "cells").rglob("*.json")))
    os.killpg(proc.pid, signal.SIGKILL) if alive else None
    proc.wait()
    run = box.cli([*args, "--resume"])
    verdict = ("hang" if run.code is None else "traceback" if run.code != 0 or run.traceback
               else "handled" if _rates(out) == _rates_of(reference()) else "silently wrong")
    ok = alive and saved < TASKS
    return Outcome(verdict, run, ok, f"kill -9 arrived mid-run: running={alive}, {saved} of {TASKS} chunks saved")


def _rates(out: Path) -> dict:
    return _rates_of(records(out))


def _rates_of(found: dict) -> dict:
    return {k: (r.get("per_snapshot_sum_rate_mbps"), r.get("per_snapshot_assignments")) for k, r in found.items()}


def concurrent_evaluate(box: Sandbox, reference: Callable[[], dict]) -> Outcome:
    """Two identical runs on one --out: the lock is the only thing that can refuse the second."""
    out = box.tmp / "shared"
    args = ["evaluate.py", *GRID, "--out", str(out)]
    first, started = box.popen(args), time.perf_counter()
    deadline = time.time() + 60
    while time.time() < deadline and not (out / ".cfpilot.lock").exists() and first.poll() is None:
        time.sleep(0.02)
    second = box.cli(args)
    overlap = first.poll() is None
    first_run = finished(first, box.shown(args), started)
    again = box.cli(args)  # control: the same command once the first is done is accepted
    ok = overlap and again.code == 0
    if second.code is None or first_run.code is None:
        verdict = "hang"
    elif second.traceback or first_run.traceback:
        verdict = "traceback"
    elif one_line(second, 2) and "in use" in second.err and first_run.code == 0:
        verdict = "handled" if _rates(out) == _rates_of(reference()) else "silently wrong"
    else:
        verdict = "silently wrong"
    return Outcome(verdict, second, ok, f"second started while the first ran: {overlap}; the same command "
                   f"afterwards: exit {again.code} (so only the lock refuses)")


def user_file_in_cells(box: Sandbox) -> Outcome:
    out = box.tmp / "mine"
    box.cli(["evaluate.py", *GRID, "--out", str(out)])
    stale = sorted((out / "cells").rglob("*.json"))
    thesis = out / "cells" / "thesis" / "chapter1.tex"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("chapter 1")
    smaller = [a if a != "24" else "12" for a in GRID]  # chunks 12-24 of the first run are stale
    run = box.cli(["evaluate.py", *smaller, "--overwrite", "--out", str(out)])
    gone = [p for p in stale if not p.exists()]
    verdict = ("hang" if run.code is None else "traceback" if run.traceback
               else "files lost" if not thesis.exists() else "handled")
    return Outcome(verdict, run, bool(gone),
                   f"--overwrite removed {len(gone)} of the harness's {len(stale)} old chunks beside it")


def tampered_chunk_cases(box: Sandbox, reference: Callable[[], dict]) -> Cases:
    out = box.tmp / "tampered"
    state: dict = {}

    def setup() -> tuple[Path, str, dict]:
        if not state:
            box.cli(["evaluate.py", *GRID, "--out", str(out)])
            cell = out / "cells" / "6-1-4-2" / "local-search" / "0-3.json"
            state.update(cell=cell, pristine=cell.read_text(),
                         donor=json.loads((out / "cells" / "6-1-4-2" / "random" / "0-3.json").read_text()))
        return state["cell"], state["pristine"], state["donor"]

    def set_rates(c: dict) -> None:
        c["result"]["rates"] = [10 * r for r in c["result"]["rates"]]

    edits: dict[str, Callable[[dict, dict], None]] = {
        "rates x10": lambda c, d: set_rates(c),
        "NaN rate": lambda c, d: c["result"]["rates"].__setitem__(0, float("nan")),
        "short rate list": lambda c, d: c["result"].update(rates=c["result"]["rates"][:1]),
        "pilot 99": lambda c, d: c["result"]["pilots"][0].__setitem__(0, 99),
        "pilots not matching rates": lambda c, d: c["result"].update(pilots=d["result"]["pilots"]),
        "chunk of another agent": lambda c, d: c.update(d),
        "fake skipped status": lambda c, d: c["result"].update(status="skipped", reason="x"),
        "negative elapsed": lambda c, d: c["result"].update(elapsed_s=-1),
    }

    def case(edit: Callable[[dict, dict], None]) -> Callable[[], Outcome]:
        def body() -> Outcome:
            cell, pristine, donor = setup()
            data = json.loads(pristine)
            edit(data, donor)
            ok = data != json.loads(pristine)  # control: the chunk a naive --resume would publish differs
            cell.write_text(json.dumps(data))
            run = box.cli(["evaluate.py", *GRID, "--out", str(out), "--resume"])
            verdict = ("hang" if run.code is None else "traceback" if run.code != 0 or run.traceback
                       else "handled" if _rates(out) == _rates_of(reference()) else "silently wrong")
            cell.write_text(pristine)
            return Outcome(verdict, run, ok, "the edited chunk differs from the saved one in a published field")
        return body

    return [(f"tampered chunk: {name}", case(edit)) for name, edit in edits.items()]


def user_out_cases(box: Sandbox, reference_out: Path) -> Cases:
    def user_folder(link: bool) -> Outcome:
        mine = box.tmp / ("user-linked" if link else "user-own")
        mine.mkdir(exist_ok=True)
        (mine / "results.csv").write_text("my own numbers\n")
        target = mine
        if link:
            target = box.tmp / "link"
            target.symlink_to(mine)
        run = box.cli(["evaluate.py", "--agents", "greedy", *TINY, "--out", str(target), "--overwrite"], 120)
        kept = (mine / "results.csv").read_text() == "my own numbers\n"
        verdict = ("hang" if run.code is None else "files lost" if not kept else "traceback" if run.traceback
                   else "handled" if run.code == 2 and one_line(run, 2) else "silently wrong")
        ok = (reference_out / "results.csv").exists()
        return Outcome(verdict, run, ok, "the harness writes results.csv in a fresh folder (a naive run overwrites it)")

    def latest() -> Outcome:
        fresh, cwd = box.tmp / "cwd-fresh", box.tmp / "cwd-user"
        for folder in (fresh, cwd):
            folder.mkdir(exist_ok=True)
            (folder / "evaluate.py").symlink_to(ROOT / "evaluate.py")
        control = box.cli(["evaluate.py", "--agents", "greedy", *TINY], 120, cwd=fresh)
        (cwd / "results").mkdir()
        (cwd / "mywork").mkdir()
        (cwd / "results" / "latest").symlink_to(cwd / "mywork")
        run = box.cli(["evaluate.py", "--agents", "greedy", *TINY], 120, cwd=cwd)
        kept = os.readlink(cwd / "results" / "latest") == str(cwd / "mywork")
        verdict = ("hang" if run.code is None else "traceback" if run.traceback else "files lost" if not kept
                   else "handled" if run.code == 0 and "latest" in run.out + run.err else "silently wrong")
        ok = (fresh / "results" / "latest").is_symlink()
        return Outcome(verdict, run, ok, f"a run in a fresh folder makes results/latest: {ok}",
                       f"exit {run.code}; results/latest still the user's: {kept}")

    return [("a user's results.csv in --out, --overwrite", lambda: user_folder(False)),
            ("a symlinked --out to a user's results.csv, --overwrite", lambda: user_folder(True)),
            ("a user's own results/latest link", latest)]


def full_disk_evaluate(box: Sandbox, reference: Callable[[], dict], reference_out: Path) -> Outcome:
    out = box.tmp / "full-disk"
    args = ["evaluate.py", *GRID, "--out", str(out)]
    run = box.cli(args, prefix="ulimit -f 16; ")
    resumed = box.cli([*args, "--resume"])
    largest = max(p.stat().st_size for p in reference_out.rglob("*") if p.is_file())
    verdict = ("hang" if run.code is None else "traceback" if run.traceback
               else "silently wrong" if run.code == 0 else "files lost" if resumed.code != 0
               else "handled" if one_line(run, 2) and "--resume" in run.err and not (out / ".cfpilot.lock").exists()
               and _rates(out) == _rates_of(reference()) else "traceback")
    return Outcome(verdict, run, largest > 16 * 1024,
                   f"the run writes a {largest} B file, over the 16 KiB limit; --resume afterwards: exit {resumed.code}")

