"""Hyperparameter and seed sweeps of the learning agents on Ray Tune (``train.py --sweep``).

A sweep is a small YAML/JSON file (or a dict)::

    agent: hqcnn
    sizes: [10,2,6,3]            # one sweep (and one exported best model) per size
    loss: unsupervised
    fixed: {train_snapshots: 512, val_snapshots: 128, epochs: 6}
    search:                      # a list: grid search; {loguniform|uniform: [lo, hi]}, {choice: [...]}: sampled
      lr: {loguniform: [0.001, 0.03]}
      batch_size: [64, 128]
      share: [level, block]
      seed: [0, 1]
    num_samples: 1               # repetitions of the grid (more for sampled keys)
    metric: val/sum_rate_mbps    # any val/ metric the trainer logs
    mode: max
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}   # or {type: fifo}

Keys of ``fixed``/``search`` are :class:`agents.learning.trainer.TrainSettings` fields (lr,
batch_size, seed, data_seed, epochs, train_snapshots, val_snapshots, samples, labels) or model options
(n_qubits or qubits, share, readout, backend, hidden, channels ...). Every trial is an ordinary
:func:`agents.learning.trainer.train` run: its TensorBoard events, history and atomic checkpoints
live under ``<runs>/sweeps/<name>/trials/<trial>/`` (the same TensorBoard tree as
``train.py``), and it reports each epoch's validation metrics to Tune, whose ASHA
scheduler stops poor trials early. All trials train and validate on the snapshots of one
``data_seed`` (0 unless fixed or searched), so they are ranked on the same validation set
and a searched ``seed`` varies only the initialisation and the shuffling. The best trial
that completed is exported as a checkpoint tree, ``<runs>/sweeps/<name>/best/<agent>/<M-L-K-tau_p>/<loss>-seed<export_seed>``,
which ``evaluate.py --checkpoints <runs>/sweeps/<name>/best`` uses.

Ray is imported only when a sweep runs (``pip install 'cfpilot[distributed]'``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.lab.executors import RAY_MISSING, ray_available, ray_session
from agents.learning import LOSSES, TrainSettings, train
from agents.learning.trainer import EPOCH_METRICS
from agents.models import MODELS, build_model
from agents.registry import resolve
from agents.runs import RunKey
from cfenv.config import SystemConfig
from cfenv.units import Size, parse_size, size_slug

TRAIN_KEYS = ("lr", "batch_size", "seed", "data_seed", "epochs", "imitation_epochs", "train_snapshots",
              "val_snapshots", "samples", "labels")
"""sweepable :class:`TrainSettings` fields; every other key is a model option"""
MODEL_ALIASES = {"qubits": "n_qubits"}
"""``train.py`` flag names accepted for model options"""
SAMPLERS = ("loguniform", "uniform", "choice", "randint")
SPEC_KEYS = ("agent", "sizes", "size", "loss", "name", "fixed", "search", "num_samples", "metric", "mode",
             "scheduler", "export_seed", "max_concurrent", "cpus_per_trial", "search_seed")
SCHEDULER_OPTIONS = {"asha": ("grace_period", "reduction_factor", "brackets", "stop_last_trials"), "fifo": ()}
"""options of each scheduler beyond ``type`` (ASHA's time attribute and ``max_t`` are the trainer's epochs)"""
INT_TRAIN_KEYS = ("batch_size", "seed", "data_seed", "epochs", "imitation_epochs", "train_snapshots",
                  "val_snapshots", "samples")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_train_value(where: str, key: str, value: Any) -> None:
    """A ``TrainSettings`` value of the right type (YAML reads ``1e-3`` as a string: say so)."""
    if key == "lr":
        ok, kind = _is_number(value), "a number"
    elif key == "labels":
        ok, kind = isinstance(value, str), "a string"
    elif key == "data_seed":
        ok, kind = value is None or _is_int(value), "an integer (or null)"
    elif key in INT_TRAIN_KEYS:
        ok, kind = _is_int(value), "an integer"
    else:
        return
    if not ok:
        hint = ""
        if isinstance(value, str):
            try:
                float(value)
                hint = " (a quoted number? YAML reads 1e-3 without a dot as a string: write 1.0e-3)"
            except ValueError:
                pass
        raise ValueError(f"{where} must be {kind}, got {value!r}{hint}")


def _check_sampler(key: str, kind: str, arg: Any) -> list[Any]:
    """The values a sampled search key can take at its ends (or all of a choice); ``ValueError``
    naming the key for arguments Tune would reject."""
    where = f"search.{key}"
    if kind == "choice":
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"{where}: choice takes a non-empty list of values, got {arg!r}")
        return list(arg)
    if not (isinstance(arg, list) and len(arg) == 2):
        raise ValueError(f"{where}: {kind} takes a list [lo, hi], got {arg!r}")
    lo, hi = arg
    if kind == "randint":
        if not (_is_int(lo) and _is_int(hi) and lo < hi):
            raise ValueError(f"{where}: randint takes integers [lo, hi] with lo < hi (hi excluded), got {arg!r}")
        return [lo, hi - 1]
    if not (_is_number(lo) and _is_number(hi) and lo < hi):
        raise ValueError(f"{where}: {kind} takes numbers [lo, hi] with lo < hi, got {arg!r}")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}: loguniform takes positive bounds [lo, hi], got {arg!r}")
    return [lo, hi]


def _search_values(key: str, value: Any) -> list[Any]:
    """Every value a grid key takes, or a sampled key's ends (choice: all of them)."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"search.{key}: an empty list (grid search over nothing); give at least one value")
        return list(value)
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS:
        kind, arg = next(iter(value.items()))
        return _check_sampler(key, kind, arg)
    raise ValueError(f"search.{key}: a list (grid) or one of {{{', '.join(SAMPLERS)}: ...}}, got {value!r}"
                     + (" (a single value belongs in fixed)" if not isinstance(value, dict) else ""))


@dataclass
class SweepSpec:
    """One sweep: an agent, its sizes, fixed settings, the search space and the scheduler."""

    agent: str
    sizes: list[Size]
    loss: str = "unsupervised"
    name: str | None = None
    """experiment name (default ``<agent>-<loss>``); the sweep folder is ``<runs>/sweeps/<name>[-<size>]``"""
    fixed: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    metric: str = "val/sum_rate_mbps"
    mode: str = "max"
    scheduler: dict[str, Any] = field(default_factory=lambda: {"type": "asha"})
    export_seed: int = 0
    """seed folder the best model is exported under (``evaluate.py --seed``)"""
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    search_seed: int = 0
    """seed of the sampled search keys (loguniform, choice ...): a sweep file names one set of trials"""

    def __post_init__(self) -> None:
        """Every check a sweep file can fail, each a one-line ``ValueError`` naming the key, before
        Ray starts (and without importing it)."""
        if not isinstance(self.agent, str) or self.agent not in MODELS:
            raise ValueError(f"sweep agent must be one of {', '.join(MODELS)}, got {self.agent!r}")
        if not isinstance(self.loss, str) or self.loss not in LOSSES:
            raise ValueError(f"sweep loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not self.sizes:
            raise ValueError("sweep needs at least one size")
        self.sizes = [SystemConfig.from_size(tuple(s)).size for s in self.sizes]
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()
                                      or any(c in self.name for c in "/\\") or self.name in (".", "..")):
            raise ValueError(f"sweep name must be a folder name (no / or \\), got {self.name!r}")
        for key in ("fixed", "search", "scheduler"):
            value = getattr(self, key)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(f"sweep {key} must be a mapping of names to values, got {value!r}")
        if not _is_int(self.num_samples) or self.num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {self.num_samples!r}")
        if not isinstance(self.metric, str) or self.metric not in EPOCH_METRICS:
            raise ValueError(f"sweep metric must be a val/ or train/ metric of the trainer ({', '.join(EPOCH_METRICS)}), "
                             f"got {self.metric!r}")
        if not isinstance(self.mode, str) or self.mode not in ("max", "min"):
            raise ValueError(f"sweep mode must be 'max' or 'min', got {self.mode!r}")
        for key in ("export_seed", "search_seed"):
            if not _is_int(getattr(self, key)) or getattr(self, key) < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {getattr(self, key)!r}")
        if self.max_concurrent is not None and (not _is_int(self.max_concurrent) or self.max_concurrent < 1):
            raise ValueError(f"max_concurrent must be an integer >= 1 (or absent), got {self.max_concurrent!r}")
        if not _is_number(self.cpus_per_trial) or self.cpus_per_trial <= 0:
            raise ValueError(f"cpus_per_trial must be a number > 0, got {self.cpus_per_trial!r}")
        self._check_scheduler()
        candidates = {key: _search_values(key, value) for key, value in self.search.items()}
        overlap = set(self.fixed) & set(self.search)
        if overlap:
            raise ValueError(f"{sorted(overlap)} are both fixed and searched")
        for key, value in self.fixed.items():
            _check_train_value(f"fixed.{key}", MODEL_ALIASES.get(key, key), value)
        for key, values in candidates.items():
            for value in values:
                _check_train_value(f"search.{key}", MODEL_ALIASES.get(key, key), value)
        # fail before Ray starts: build the settings and model of the first trial, then of every
        # searched value (grid values, choices, ends of ranges) with the other keys at their first
        first = {key: values[0] for key, values in candidates.items()}
        for size in self.sizes:
            self.trial_settings(size, first, Path("runs"), Path(".cache"))
            for key, values in candidates.items():
                for value in values[1:]:
                    try:
                        self.trial_settings(size, {**first, key: value}, Path("runs"), Path(".cache"))
                    except ValueError as err:
                        raise ValueError(f"search.{key} = {value!r}: {err}") from None

    def _check_scheduler(self) -> None:
        kind = self.scheduler.get("type", "asha")
        if not isinstance(kind, str) or kind not in SCHEDULER_OPTIONS:
            raise ValueError(f"scheduler type must be 'asha' or 'fifo', got {kind!r}")
        options = {k: v for k, v in self.scheduler.items() if k != "type"}
        unknown = sorted(set(options) - set(SCHEDULER_OPTIONS[kind]))
        if unknown:
            valid = ", ".join(SCHEDULER_OPTIONS[kind]) or "none"
            raise ValueError(f"scheduler option(s) {unknown} unknown to {kind}; valid: {valid}")
        for key in ("grace_period", "brackets"):
            if key in options and (not _is_int(options[key]) or options[key] < 1):
                raise ValueError(f"scheduler {key} must be an integer >= 1, got {options[key]!r}")
        if "reduction_factor" in options and (not _is_number(options["reduction_factor"])
                                              or options["reduction_factor"] <= 1):
            raise ValueError(f"scheduler reduction_factor must be a number > 1, got {options['reduction_factor']!r}")
        if "stop_last_trials" in options and not isinstance(options["stop_last_trials"], bool):
            raise ValueError(f"scheduler stop_last_trials must be true or false, got {options['stop_last_trials']!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        if not isinstance(d, dict):
            raise ValueError(f"a sweep is a mapping of keys ({', '.join(SPEC_KEYS)}), got {type(d).__name__}")
        unknown = sorted(str(k) for k in set(d) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"unknown sweep key(s) {unknown}; valid: {', '.join(SPEC_KEYS)}")
        d = dict(d)
        sizes = d.pop("sizes", None) or ([d.pop("size")] if "size" in d else None)
        d.pop("size", None)
        if sizes is None or "agent" not in d:
            raise ValueError("a sweep needs 'agent' and 'sizes' (or 'size')")
        return cls(sizes=_parse_sizes(sizes), **d)

    def experiment(self, size: Size) -> str:
        base = self.name or f"{self.agent}-{self.loss}"
        return base if len(self.sizes) == 1 else f"{base}-{size_slug(size)}"

    def trial_settings(self, size: Size, values: dict[str, Any], runs_dir: Path, cache_dir: Path) -> TrainSettings:
        """The :class:`TrainSettings` of one trial (fixed settings, then the trial's values)."""

        # one data seed for every trial unless searched: trials are ranked on the same validation
        # snapshots, and a searched ``seed`` varies only initialisation and shuffling
        merged = {"data_seed": 0, **{MODEL_ALIASES.get(k, k): v for k, v in {**self.fixed, **values}.items()}}
        train_kwargs = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
        model = {k: v for k, v in merged.items() if k not in TRAIN_KEYS}
        try:
            settings = TrainSettings(agent=self.agent, size=size, loss=self.loss, model=model, runs_dir=runs_dir,
                                     cache_dir=cache_dir, resume=True, progress=False, **train_kwargs)
        except TypeError as err:  # a value of the wrong type that the checks above let through
            raise ValueError(f"sweep settings {train_kwargs}: {err}") from None
        try:
            build_model(self.agent, settings.config, **model)
        except (ValueError, TypeError) as err:
            raise ValueError(f"sweep key not a TrainSettings field ({', '.join(TRAIN_KEYS)}) nor an option of "
                             f"{self.agent}: {err}") from None
        return settings


def _parse_sizes(sizes: Any) -> list[Size]:
    """``"10,2,6,3"``, ``[10, 2, 6, 3]`` or a list of either; ``ValueError`` naming ``sizes`` otherwise."""
    if isinstance(sizes, str) or (isinstance(sizes, list) and sizes and all(_is_int(v) for v in sizes)):
        sizes = [sizes]
    if not isinstance(sizes, list):
        raise ValueError(f"sweep sizes must be a list of sizes such as [\"10,2,6,3\"], got {sizes!r}")
    parsed = []
    for s in sizes:
        if isinstance(s, str):
            parsed.append(parse_size(s))
        elif isinstance(s, (list, tuple)) and len(s) == 4 and all(_is_int(v) for v in s):
            parsed.append(tuple(s))
        else:
            raise ValueError(f"sweep sizes: a size is \"M,L,K,tau_p\" or [M, L, K, tau_p] (integers), got {s!r}")
    return parsed


class SweepIncomplete(RuntimeError):
    """No trial of a sweep ran to its last epoch (the sweep was interrupted or every trial failed)."""


def _max_epochs(spec: SweepSpec) -> int:
    """The longest trial's epochs (ASHA's ``max_t``)."""
    value = spec.search.get("epochs", spec.fixed.get("epochs", TrainSettings.epochs))
    if isinstance(value, list):
        return max(value)
    if isinstance(value, dict):
        kind, arg = next(iter(value.items()))
        return int(max(arg))
    return int(value)


def load_sweep(source: str | Path | dict[str, Any]) -> SweepSpec:
    """A sweep from a dict, a YAML/JSON file, or an inline JSON object (``--sweep '{...}'``).

    Anything malformed (unreadable or non-UTF-8 file, YAML/JSON syntax, unknown keys, values of the
    wrong kind) is one ``ValueError`` line naming the file or key, raised before any work. YAML is
    read with ``yaml.safe_load`` only: a sweep file never constructs Python objects."""
    if isinstance(source, dict):
        return SweepSpec.from_dict(source)
    text = str(source)
    if text.lstrip().startswith("{"):
        try:
            return SweepSpec.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"inline sweep is not valid JSON: {err}") from None
    path = Path(text)
    if not path.exists():
        raise ValueError(f"sweep file {path} does not exist")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"sweep file {path} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise ValueError(f"cannot read sweep file {path}: {err.strerror or err}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"reading {path} needs pyyaml: pip install 'cfpilot[distributed]'") from None
        try:
            data = yaml.safe_load(content)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or (str(err).strip().splitlines() or ["?"])[0]
            raise ValueError(f"sweep file {path} is not valid YAML{where}: {problem}") from None
    else:
        try:
            data = json.loads(content)
        except json.JSONDecodeError as err:
            raise ValueError(f"sweep file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"sweep file {path} must hold a mapping, got {type(data).__name__}")
    return SweepSpec.from_dict(data)


def _param_space(search: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    space = {}
    for key, value in search.items():
        if isinstance(value, list):
            space[key] = tune.grid_search(value)
        else:
            kind, arg = next(iter(value.items()))
            space[key] = getattr(tune, kind)(arg) if kind == "choice" else getattr(tune, kind)(*arg)
    return space


def tune_key(metric: str) -> str:
    """Trainer metric name -> the flat key reported to Tune (``val/sum_rate_mbps`` -> ``val_sum_rate_mbps``)."""
    return metric.replace("/", "_")


def _trial(config: dict[str, Any], spec: dict[str, Any], size: list[int], trials_dir: str, cache_dir: str) -> None:
    """One Tune trial: an ordinary training run that reports every epoch."""
    from ray import tune

    sweep = SweepSpec(**spec)
    root = Path(trials_dir) / tune.get_context().get_trial_name()
    settings = sweep.trial_settings(tuple(size), config, root, Path(cache_dir))

    def report(epoch: int, metrics: dict[str, float]) -> None:
        tune.report({**{tune_key(k): v for k, v in metrics.items()}, "epoch": epoch,
                     "run_dir": str(settings.run_dir)})

    # the last epoch is reported only after train() has saved the final model: Tune ends a
    # trial as soon as it reports its last iteration
    summary = train(settings, on_epoch=lambda epoch, m: report(epoch, m) if epoch < settings.epochs else None)
    report(settings.epochs, summary["final"])


def run_sweep(spec: SweepSpec, runs_dir: Path = Path("runs"), cache_dir: Path = Path(".cache/datasets"),
              ray_address: str | None = None, workers: int | None = None, verbose: int = 1,
              resume: bool = False) -> list[dict[str, Any]]:
    """Run the sweep on Ray Tune (a running cluster at ``ray_address``, else a local instance with
    ``workers`` CPUs; an already initialised Ray is used as it is) and export each size's best
    completed trial. Returns one summary per size (best trial, its metrics, the export folder).

    A sweep folder that already exists is an error unless ``resume``: then Tune restores the
    experiment, finished trials are kept and unfinished or errored ones continue from their
    trainer checkpoints."""
    if not ray_available():
        raise ValueError(RAY_MISSING)
    for size in spec.sizes:
        sweep_dir = Path(runs_dir) / "sweeps" / spec.experiment(size)
        if sweep_dir.exists() and not resume:
            raise ValueError(f"sweep folder {sweep_dir} exists: continue it with --resume, or give the sweep "
                             "another name (or remove the folder)")
    runs_dir, cache_dir = Path(runs_dir).resolve(), Path(cache_dir).resolve()  # trials run in other folders
    with ray_session(ray_address, workers):
        return [_sweep_one_size(spec, size, runs_dir, cache_dir, verbose, resume) for size in spec.sizes]


def _sweep_one_size(spec: SweepSpec, size: Size, runs_dir: Path, cache_dir: Path, verbose: int,
                    resume: bool = False) -> dict[str, Any]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    name = spec.experiment(size)
    sweep_dir = runs_dir / "sweeps" / name
    epochs = _max_epochs(spec)
    options = {k: v for k, v in spec.scheduler.items() if k != "type"}
    if spec.scheduler.get("type", "asha") == "asha":
        # time in epochs as the trainer counts them (a resumed trial restarts Tune's iteration count)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=options.pop("grace_period", 1),
                                  reduction_factor=options.pop("reduction_factor", 2), **options)
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(
        tune.with_parameters(_trial, spec=dataclasses.asdict(spec), size=list(size),
                             trials_dir=str(sweep_dir / "trials"), cache_dir=str(cache_dir)),
        {"cpu": spec.cpus_per_trial})
    experiment = sweep_dir / "tune"
    if resume and tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
        return _collect(spec, size, sweep_dir, tuner.fit())
    tuner = tune.Tuner(
        trainable, param_space=_param_space(spec.search),
        tune_config=tune.TuneConfig(metric=tune_key(spec.metric), mode=spec.mode, scheduler=scheduler,
                                    search_alg=BasicVariantGenerator(random_state=spec.search_seed),
                                    num_samples=spec.num_samples, max_concurrent_trials=spec.max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=verbose,
                                  failure_config=tune.FailureConfig(max_failures=1)))
    return _collect(spec, size, sweep_dir, tuner.fit())


def _collect(spec: SweepSpec, size: Size, sweep_dir: Path, grid: Any) -> dict[str, Any]:
    """Every trial's configuration, epochs run and final metric; then the export."""
    trials = []
    for result in grid:
        metrics = result.metrics or {}
        trials.append({"config": result.config, "epochs_run": metrics.get("epoch"),
                       "run_dir": metrics.get("run_dir"), "metric": metrics.get(tune_key(spec.metric)),
                       "error": None if result.error is None else str(result.error).splitlines()[0]})
    return _export_best(spec, size, sweep_dir, trials)


def _export_best(spec: SweepSpec, size: Size, sweep_dir: Path, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Copy the best completed trial's run folder to the checkpoint tree ``sweep_dir/best``."""
    agent = resolve(spec.agent)
    completed = [t for t in trials if t["run_dir"] and t["metric"] is not None and agent.has_checkpoint(t["run_dir"])]
    summary: dict[str, Any] = {"agent": spec.agent, "size": list(size), "loss": spec.loss, "metric": spec.metric,
                               "mode": spec.mode, "trials": trials, "sweep_dir": str(sweep_dir)}
    if not completed:
        summary.update(best=None, export=None)
        (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=1, default=str))
        raise SweepIncomplete(f"no trial of sweep {sweep_dir} completed (interrupted?): continue it with "
                              f"--resume; trials in {sweep_dir / 'sweep.json'}")
    pick = max if spec.mode == "max" else min
    best = pick(completed, key=lambda t: t["metric"])
    export = RunKey(spec.agent, size, spec.loss, seed=spec.export_seed).folder(sweep_dir / "best")
    if export.exists():
        shutil.rmtree(export)
    shutil.copytree(best["run_dir"], export)
    summary.update(best=best, export=str(export), checkpoints=str(sweep_dir / "best"))
    (sweep_dir / "sweep.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary
