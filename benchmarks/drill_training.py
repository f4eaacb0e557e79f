"""The fault drill's training-side cases: tampered checkpoints (with live payloads), weights and
configs that make no sense, ``train.py`` beside itself, Ctrl-C mid-training, a full disk, a user's
``--out``. Each body returns an :class:`Outcome` whose control shows the case can fail."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import signal
import time
import zipfile
from pathlib import Path
from typing import Callable

from drill_cases import TINY, Cases
from drill_core import Outcome, Payload, Run, Sandbox, finished, one_line, records, refusal

MLP = ["train.py", "--agent", "mlp", "--sizes", "6,1,4,2", "--epochs", "1", "--train-snapshots", "64",
       "--val-snapshots", "16", "--no-progress"]
LONG = ["train.py", "--agent", "mlp", "--sizes", "6,1,4,2", "--epochs", "12", "--train-snapshots", "16384",
        "--val-snapshots", "16", "--no-progress"]
PPO = ["train.py", "--agent", "ppo", "--sizes", "6,1,4,2", "--total-timesteps", "512", "--no-progress"]
MLP_DIR = Path("mlp", "6-1-4-2", "unsupervised-seed0")
PPO_DIR = Path("ppo", "6-1-4-2", "rl-seed0")


def malicious_model_zip(path: Path, marker: Path) -> None:
    """An SB3 ``model.zip`` whose ``policy_class`` is a cloudpickle SB3's own ``load`` unpickles
    (as tests/test_security.py builds it)."""
    payload = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>", ":serialized:": payload},
            "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": payload}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("_stable_baselines3_version", "2.9.2")


class Training:
    def __init__(self, box: Sandbox) -> None:
        self.box, self._runs = box, {}

    def trained(self, kind: str) -> Path:
        """A finished tiny mlp / ppo run folder (trained once), copied for each case to tamper with."""
        if kind not in self._runs:
            root = self.box.tmp / f"trained-{kind}"
            run = self.box.cli([*(MLP if kind == "mlp" else PPO), "--out", str(root)], 300)
            if run.code != 0:
                raise RuntimeError(f"training the {kind} model failed: {run.message}")
            self._runs[kind] = root
        return self._runs[kind]

    def copy(self, kind: str, name: str) -> tuple[Path, Path]:
        root = self.box.tmp / name
        shutil.copytree(self.trained(kind), root)
        return root, root / (MLP_DIR if kind == "mlp" else PPO_DIR)

    def evaluate(self, agent: str, runs: Path, timeout: float = 180) -> tuple[Run, dict]:
        out = self.box.tmp / f"eval-{runs.name}"
        run = self.box.cli(["evaluate.py", "--agents", agent, *TINY, "--no-train", "--checkpoints", str(runs),
                            "--out", str(out)], timeout)
        return run, records(out).get(f"{agent}@6,4", {})

    # ------------------------------------------------------------------ payloads
    def payload(self, kind: str, file: str, naive: str, cfpilot: Callable[[Path], tuple[Run, dict]]) -> Outcome:
        """``file`` of a trained ``kind`` run holds a payload; the control loads it with ``naive``
        (``{path}`` filled in) and must see the marker; cfpilot's loader must not."""
        runs, folder = self.copy(kind, f"payload-{file.replace('.', '-')}")
        marker = self.box.tmp / f"PWNED-{file}"
        if file == "model.zip":
            for name in ("policy.pt", "config.json"):
                (folder / name).unlink()
            malicious_model_zip(folder / file, marker)
        else:
            import torch

            torch.save({"state_dict": Payload(marker)}, folder / file)
            if file == "checkpoint.pt":  # an interrupted run: only the checkpoint, which --resume reads
                for name in ("weights.pt", "config.json", "history.json"):
                    (folder / name).unlink(missing_ok=True)
        control = self.box.python(naive.format(path=str(folder / file)))
        ok = marker.exists()
        marker.unlink(missing_ok=True)
        run, record = cfpilot(runs)
        if marker.exists():
            verdict = "code executed"
        elif run.code is None:
            verdict = "hang"
        elif run.traceback:
            verdict = "traceback"
        elif record.get("status") == "ok":
            verdict = "silently wrong"
        else:
            said = run.message + str(record.get("reason", ""))
            refused = one_line(run, 2) or record.get("status") in ("failed", "skipped")
            # a refusal must be about the planted file (or, for model.zip, say there is no usable checkpoint)
            verdict = "handled" if refused and (file in said or "no checkpoint" in said) else "traceback"
        return Outcome(verdict, run, ok, f"{naive.split(';')[-1].strip()} ran the payload: {ok}",
                       f"exit {run.code}; {record.get('status', '')}: {record.get('reason', run.message)}"[:300])

    def payload_cases(self) -> Cases:
        torch_naive = "import torch; torch.load({path!r}, weights_only=False)"
        sb3_naive = ("import contextlib; from stable_baselines3 import PPO\n"
                     "with contextlib.suppress(Exception): PPO.load({path!r})")
        resume = lambda runs: (self.box.cli([*MLP, "--resume", "--out", str(runs)], 180), {})  # noqa: E731
        return [
            ("weights.pt a pickle payload", lambda: self.payload("mlp", "weights.pt", torch_naive,
                                                                 lambda r: self.evaluate("mlp", r))),
            ("checkpoint.pt a pickle payload, train.py --resume",
             lambda: self.payload("mlp", "checkpoint.pt", torch_naive, resume)),
            ("SB3 policy.pt a pickle payload", lambda: self.payload("ppo", "policy.pt", torch_naive,
                                                                    lambda r: self.evaluate("ppo", r))),
            ("SB3 legacy model.zip with a cloudpickle payload",
             lambda: self.payload("ppo", "model.zip", sb3_naive, lambda r: self.evaluate("ppo", r))),
        ]

    # ------------------------------------------------------------------ weights and configs that make no sense
    def nan_weights(self) -> Outcome:
        import torch

        runs, folder = self.copy("mlp", "nan-weights")
        state = torch.load(folder / "weights.pt", weights_only=True)
        state = {k: v * float("nan") if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, folder / "weights.pt")
        loaded = torch.load(folder / "weights.pt", weights_only=True)
        ok = all(not torch.isfinite(v).any() for v in loaded.values() if v.is_floating_point())
        run, record = self.evaluate("mlp", runs)
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "silently wrong" if record.get("status") == "ok" or not record
                   else "handled")
        return Outcome(verdict, run, ok, f"torch.load(weights_only=True) accepts the all-NaN state dict: {ok}",
                       f"exit {run.code}; {record.get('status')}: {record.get('reason', run.message)}"[:300])

    def huge_net_arch(self) -> Outcome:
        runs, folder = self.copy("ppo", "huge-net-arch")
        config = json.loads((folder / "config.json").read_text())
        read = config.get("hyperparameters", {}).get("net_arch") is not None  # the key the loader rebuilds from
        for where in (config, config.get("train", {})):
            where.setdefault("hyperparameters", {})["net_arch"] = [4096] * 8
        (folder / "config.json").write_text(json.dumps(config))
        parameters = 2 * (24 * 4096 + 7 * 4096 * 4096) if read else 0  # policy and value networks
        run, record = self.evaluate("ppo", runs, timeout=60)
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "silently wrong" if record.get("status") == "ok"
                   else "handled" if run.seconds < 30 else "hang")
        return Outcome(verdict, run, parameters > 10**8,
                       f"config.json's hyperparameters.net_arch (what the model is rebuilt from) set to [4096]*8: "
                       f"{parameters / 1e6:.0f} M parameters SB3 would build",
                       f"exit {run.code} in {run.seconds:.0f} s; {record.get('status')}: {record.get('reason', '')}"[:300])

    def sb3_over_finished(self) -> Outcome:
        runs, folder = self.copy("ppo", "ppo-over")
        before = (folder / "policy.pt").read_bytes()
        steps = json.loads((folder / "config.json").read_text())["train"]["total_timesteps"]
        args = [a if a != "512" else "256" for a in PPO]
        run = self.box.cli([*args, "--out", str(runs)], 180)
        replaced = (folder / "policy.pt").read_bytes() != before
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "files lost" if replaced else "handled" if one_line(run, 2) else "silently wrong")
        return Outcome(verdict, run, steps == 512 and (folder / "policy.pt").exists(),
                       f"a finished model of other settings is there (total_timesteps {steps} != 256)")

    def unsupervised_gnn(self) -> Outcome:
        base = ["train.py", "--agent", "gnn", "--sizes", "6,1,4,2", "--epochs", "1", "--train-snapshots", "32",
                "--val-snapshots", "8", "--no-progress"]
        ctrl_cache, cache = self.box.tmp / "gnn-cache-control", self.box.tmp / "gnn-cache"
        control = self.box.cli([*base, "--out", str(self.box.tmp / "gnn-control")], 240, cache=ctrl_cache)
        labelled = ctrl_cache.exists() and any(p.is_file() for p in ctrl_cache.rglob("*"))
        out = self.box.tmp / "gnn-unsup"
        run = self.box.cli([*base, "--loss", "unsupervised", "--out", str(out)], 240, cache=cache)
        built = cache.exists() and any(p.is_file() for p in cache.rglob("*"))
        verdict = refusal(run)
        if verdict == "handled" and (built or out.exists()):
            verdict = "silently wrong"
        return Outcome(verdict, run, labelled and control.code == 0,
                       f"the gnn's own loss builds labels first (cache filled: {labelled}, exit {control.code})")

    # ------------------------------------------------------------------ train.py beside itself, Ctrl-C, full disk
    def concurrent(self) -> Outcome:
        out = self.box.tmp / "train-shared"
        args = [*LONG, "--out", str(out)]
        first, started = self.box.popen(args), time.perf_counter()
        deadline = time.time() + 120
        while time.time() < deadline and not list(out.rglob(".cfpilot.lock")) and first.poll() is None:
            time.sleep(0.02)
        second = self.box.cli(args, 240)
        overlap = first.poll() is None
        first_run = finished(first, self.box.shown(args), started, 300)
        again = self.box.cli(args, 240)  # the same command afterwards: nothing to do, accepted
        self.full = out if first_run.code == 0 else None
        if second.code is None or first_run.code is None:
            verdict = "hang"
        elif second.traceback or first_run.traceback:
            verdict = "traceback"
        else:
            verdict = "handled" if one_line(second, 2) and first_run.code == 0 else "silently wrong"
        return Outcome(verdict, second, overlap and again.code == 0,
                       f"second started while the first trained: {overlap}; the same command afterwards: "
                       f"exit {again.code} (so only the lock refuses)")

    def interrupted(self) -> Outcome:
        import torch

        out = self.box.tmp / "ctrlc"
        args = [*LONG, "--out", str(out)]
        proc, started = self.box.popen(args), time.perf_counter()
        deadline = time.time() + 180
        while time.time() < deadline and not list(out.rglob("checkpoint.pt")) and proc.poll() is None:
            time.sleep(0.02)
        mid = proc.poll() is None and not list(out.rglob("weights.pt"))
        proc.send_signal(signal.SIGINT)
        stopped = finished(proc, self.box.shown(args) + "  # SIGINT after the first checkpoint", started)
        mid = mid and stopped.code != 0
        if stopped.traceback:
            return Outcome("traceback", stopped, mid, f"SIGINT arrived mid-training: {mid}")
        resumed = self.box.cli([*args, "--resume"], 240)
        full = getattr(self, "full", None)
        if full is None:
            full = self.box.tmp / "ctrlc-full"
            self.box.cli([*LONG, "--out", str(full)], 240)
        a = torch.load(next(out.rglob("weights.pt")), weights_only=True) if resumed.code == 0 else {}
        b = torch.load(next(full.rglob("weights.pt")), weights_only=True)
        same = bool(a) and all(torch.equal(a[k], b[k]) for k in b)
        verdict = ("hang" if resumed.code is None else "traceback" if resumed.code != 0 or resumed.traceback
                   else "handled" if same and "--resume" in stopped.out + stopped.err else "silently wrong")
        return Outcome(verdict, stopped, mid, f"SIGINT arrived mid-training (running, no weights.pt yet, "
                       f"exit {stopped.code} not 0): {mid}", f"{stopped.message}; --resume: same weights {same}")

    def full_disk(self) -> Outcome:
        out = self.box.tmp / "train-full-disk"
        args = [*MLP, "--hidden", "128", "128", "--out", str(out)]
        run = self.box.cli(args, 180, prefix="ulimit -f 16; ")
        resumed = self.box.cli([*args, "--resume"], 180)
        files = [p for p in out.rglob("*") if p.is_file()]
        largest = max((p.stat().st_size for p in files), default=0)
        verdict = ("hang" if run.code is None else "traceback" if run.traceback
                   else "silently wrong" if run.code == 0 else "files lost" if resumed.code != 0
                   else "handled" if one_line(run, 2) and "--resume" in run.err
                   and not list(out.rglob(".cfpilot.lock")) else "traceback")
        return Outcome(verdict, run, largest > 16 * 1024,
                       f"the run writes a {largest} B file, over the 16 KiB limit; --resume afterwards: "
                       f"exit {resumed.code}")

    def user_out(self) -> Outcome:
        mine = self.box.tmp / "train-user"
        (mine / "notes").mkdir(parents=True)
        (mine / "notes" / "thesis.tex").write_text("chapter 1")
        (mine / "empty-of-mine").mkdir()
        link = self.box.tmp / "train-link"
        link.symlink_to(mine)
        run = self.box.cli([*MLP, "--out", str(link)], 180)
        kept = (mine / "notes" / "thesis.tex").exists() and (mine / "empty-of-mine").is_dir()
        wrote = (mine / MLP_DIR / "weights.pt").exists()
        verdict = ("hang" if run.code is None else "files lost" if not kept else "traceback" if run.traceback
                   else "handled" if run.code == 0 else "traceback")
        return Outcome(verdict, run, wrote, f"train.py wrote its run folder through the link: {wrote}")

    def cases(self) -> Cases:
        return [*self.payload_cases(),
                ("weights.pt all NaN", self.nan_weights),
                ("SB3 config.json net_arch [4096]*8", self.huge_net_arch),
                ("train.py ppo over a finished model of other settings", self.sb3_over_finished),
                ("train.py gnn --loss unsupervised (refused before labels)", self.unsupervised_gnn),
                ("two identical train.py on one --out", self.concurrent),
                ("Ctrl-C mid-training, then --resume", self.interrupted),
                ("full disk (ulimit -f 16) in train.py, then --resume", self.full_disk),
                ("train.py --out a symlink to a user's folder", self.user_out)]
