"""Agent names -> classes, imported lazily so heavy stacks load only when used."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agents.base import Agent, LearnableAgent
from agents.runs import RunKey
from cfenv.config import SystemConfig
from cfenv.units import Size


@dataclass(frozen=True)
class AgentEntry:
    """Everything the harness, ``train.py`` and :func:`make` need to know about one agent name.

    A neural agent of a new model is one entry: ``AgentEntry("agents.neural:NeuralAgent",
    "one line", learnable=True, model="package.module:MODEL")``, where ``MODEL`` is an
    :class:`agents.models.ModelEntry` (its factory and options); resolving the name registers the
    model under it and gives a :class:`agents.neural.NeuralAgent` of that name, which trains,
    saves, loads and is evaluated like every other."""

    target: str
    """``module:Class``"""
    description: str
    """one line for ``evaluate.py --list-agents``"""
    learnable: bool = False
    """needs training (``fit``/``save``/``load``) before it can assign"""
    model: str | None = None
    """``module:NAME`` of the :class:`agents.models.ModelEntry` of a neural agent whose model is not
    one of :data:`agents.models.MODELS` (registered there under the agent's name when resolved)"""
    run_options: tuple[str, ...] = ()
    """the harness settings its constructor takes: ``progress`` (a progress bar of its own) and
    ``max_assignments`` (``--max-assignments``, the EPAS cap)"""
    not_in_all: str | None = None
    """why ``--agents all`` leaves it out (``None``: it is in), shown by ``--list-agents``"""


REGISTRY: dict[str, AgentEntry] = {
    "random": AgentEntry("agents.heuristics:RandomAgent", "RPA: a uniformly random pilot per user"),
    "greedy": AgentEntry("agents.heuristics:GreedyAgent",
                         "GPA (Ngo et al. 2017): repeatedly re-pilot the weakest user to its least-contaminated pilot"),
    "master-ap": AgentEntry("agents.heuristics:MasterAPAgent",
                            "MPA (Zaher et al. 2022): least summed interference at each user's master AP"),
    "location": AgentEntry("agents.heuristics:LocationAgent",
                           "LPA (Nguyen et al. 2023): grid regions, distinct pilots within a region"),
    "local-search": AgentEntry("agents.search:LocalSearchAgent",
                               "screened moves and swaps from master-AP, random starts and kicks while the objective rises"),
    "exhaustive": AgentEntry("agents.search:ExhaustiveAgent",
                             "EPAS: the exact optimum of the objective over all assignments up to pilot relabelling",
                             run_options=("progress", "max_assignments")),
    "tabu": AgentEntry("agents.literature:TabuAgent",
                       "tabu search (Liu et al. 2020): best non-tabu single-user move from master-AP, 20 iterations, screened"),
    "graph-colouring": AgentEntry("agents.literature:GraphColouringAgent",
                                  "graph colouring (Liu et al. 2020): users with overlapping serving APs get different pilots"),
    "tabu-liu2020": AgentEntry("agents.faithful:TabuLiu2020Agent",
                               "tabu search as the authors' code runs it: random start, each user to the least-used "
                               "pilot, whole assignments tabu, 19 iterations"),
    "graph-colouring-liu2020": AgentEntry("agents.faithful:GraphColouringLiu2020Agent",
                                          "graph colouring as the authors' code runs it: threshold bisected from 0.94 "
                                          "until exactly tau_p colours, at most round(K/tau_p)+1 users per colour"),
    "structured-chen2021": AgentEntry("agents.faithful:StructuredChen2021Agent",
                                      "structured access (Chen et al., JSAC 2021) as the authors' code runs it: capped "
                                      "AP selection, then users grouped by non-overlapping strongest links"),
    "matching-gao2024": AgentEntry("agents.faithful:MatchingGao2024Agent",
                                   "many-to-many matching (Gao et al., TVT 2024) as a third-party port runs it: "
                                   "each AP's tau_p strongest users get distinct random pilots, groups by score"),
    "beam-mussbah2024": AgentEntry("agents.faithful:BeamMussbah2024Agent",
                                   "beam-domain DSATUR (Mussbah et al., CL 2024) as a third-party port runs it: "
                                   "users sharing strong DFT beams get different pilots, colours folded into tau_p"),
    "master-ap-tau": AgentEntry("agents.pilot_length:MasterAPLengthChoice",
                                "master-AP at every pilot count up to tau_p, the best net objective per network",
                                not_in_all="needs pilot_overhead='used' (scalable model)"),
    "tabu-tau": AgentEntry("agents.pilot_length:TabuLengthChoice",
                           "tabu search at every pilot count up to tau_p, the best net objective per network",
                           not_in_all="needs pilot_overhead='used' (scalable model)"),
    "local-search-tau": AgentEntry("agents.pilot_length:LocalSearchLengthChoice",
                                   "local search at every pilot count up to tau_p, the best net objective per "
                                   "network", not_in_all="needs pilot_overhead='used'; tau_p local searches"),
    "wgf": AgentEntry("agents.literature:WGFAgent",
                      "WGF (Zeng et al. 2021): heaviest users first take the pilot of least contamination weight"),
    "hungarian": AgentEntry("agents.literature:HungarianAgent",
                            "Hungarian (Buzzi et al. 2021): groups of tau_p users matched to pilots, refined by sum rate"),
    "kmeans": AgentEntry("agents.literature:KMeansAgent",
                         "k-means user groups: distinct pilots within a group, co-pilot users far apart"),
    "max-k-cut": AgentEntry("agents.sdp:MaxKCutAgent",
                            "max-k-cut (Guedes et al. 2023): Frieze-Jerrum SDP on the contamination graph, "
                            "randomised rounding (needs the sdp extra)"),
    "mlp": AgentEntry("agents.neural:MLPAgent", "MLP (hidden width matched to hqcnn's parameter count)", True),
    "light-cnn": AgentEntry("agents.neural:LightCNNAgent",
                            "light CNN: two 3x3 conv layers (8, 16 channels) on beta as an M x K image", True),
    "heavy-cnn": AgentEntry("agents.neural:HeavyCNNAgent", "heavy CNN: two 3x3 conv layers (32, 64 channels)", True),
    "hqcnn": AgentEntry("agents.neural:HQCNNAgent",
                        "the paper's hybrid quantum CNN: FC -> 8-qubit QCNN (shared per level) -> FC", True),
    "gnn": AgentEntry("agents.neural:GNNAgent",
                      "symmetry-aware graph policy over users, autoregressive pilot groups, REINFORCE", True),
    "hqcnn-ar": AgentEntry("agents.neural:HQCNNARAgent",
                           "the gnn decoder with the HQCNN circuit as its per-decision scorer", True),
    "gnn-polish": AgentEntry("agents.neural:GNNPolishAgent",
                             "hybrid: the gnn greedy decode, then screened single-user moves, each scored exactly", True),
    "hqcnn-ar-polish": AgentEntry("agents.neural:HQCNNARPolishAgent",
                                  "hybrid: the hqcnn-ar greedy decode, then the gnn-polish moves", True),
    "hqcnn-hur": AgentEntry("agents.neural:HQCNNHurAgent",
                            "HQCNN with its own parameters in every block (Hur et al., the paper's ref. [11])", True),
    "ppo": AgentEntry("agents.rl:PPOAgent", "SB3 PPO on CellFreePilot-v0: one MultiDiscrete action per snapshot", True),
    "a2c": AgentEntry("agents.rl:A2CAgent", "SB3 A2C on CellFreePilot-v0: one MultiDiscrete action per snapshot", True),
    "dqn": AgentEntry("agents.rl:DQNAgent",
                      "SB3 DQN on CellFreePilotSequential-v0: one user's pilot per step", True),
    "ppo-hqcnn": AgentEntry("agents.rl:PPOHQCNNAgent",
                            "SB3 PPO whose features extractor is the HQCNN circuit: FC -> 8-qubit QCNN", True),
}


@dataclass(frozen=True)
class AgentSpec:
    """An agent name resolved once into what the harness needs to plan and run it."""

    name: str
    cls: type[Agent]
    description: str
    learnable: bool
    run_options: tuple[str, ...] = ()
    """see :attr:`AgentEntry.run_options`"""

    @property
    def size_generalisable(self) -> bool:
        """One trained model runs at any (M, K, tau_p) (``--trained-at``)."""
        return self.learnable and self._learner.size_generalisable

    @property
    def resumable(self) -> bool:
        """Its ``fit(resume=True)`` continues a cut run from the run folder's checkpoint."""
        return self.learnable and self._learner.resumable

    @property
    def _learner(self) -> type[LearnableAgent]:
        assert issubclass(self.cls, LearnableAgent), f"{self.name} is not a learning agent"
        return self.cls

    def checkpoint_loss(self, requested: str) -> str:
        """The loss of the checkpoint to use: ``requested`` if the agent trains with it, else its default."""
        losses = self._learner.losses
        return requested if requested in losses else losses[0]

    def train_size(self, size: Size, trained_at: Size | None) -> Size:
        """The size whose model serves ``size``: ``trained_at`` for size-generalisable agents."""
        return tuple(trained_at) if trained_at and self.size_generalisable else tuple(size)  # type: ignore[return-value]

    def run_key(self, size: Size, seed: int, loss: str, objective: str = "sum",
                system: dict[str, Any] | None = None) -> RunKey:
        """The :class:`agents.runs.RunKey` of this agent's model for a size (the one it was trained
        at), seed, requested loss (:meth:`checkpoint_loss`), objective and system (``SystemConfig``
        fields, :attr:`cfenv.config.SystemConfig.system_fields`)."""
        config = SystemConfig.from_size(size, objective=objective, **(system or {}))
        return self._learner.run_key(config, seed, self.checkpoint_loss(loss))

    def run_dir(self, runs_dir: str | Path, size: Size, seed: int, loss: str, objective: str = "sum") -> Path:
        """The run folder of :meth:`run_key` under ``runs_dir``."""
        return self.run_key(size, seed, loss, objective).folder(runs_dir)

    def has_checkpoint(self, run_dir: str | Path) -> bool:
        """Whether ``run_dir`` holds this agent's finished model."""
        return self.learnable and self._learner.has_checkpoint(run_dir)


ENTRY_POINT_GROUP = "cfpilot.agents"
"""installed packages register their agents here: ``[project.entry-points."cfpilot.agents"]``,
``name = "package.module:Class"``"""


def plugin_agents() -> dict[str, str]:
    """Agents installed packages register (entry points of :data:`ENTRY_POINT_GROUP`): name -> target."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in REGISTRY}


def load_agent_class(target: str) -> type[Agent]:
    """The :class:`agents.base.Agent` subclass named by ``"package.module:Class"``; one-line
    ``ValueError`` if it cannot be imported or is not an agent. (Importing runs that module:
    name only code you trust, as with any import.)"""
    module, _, attr = target.partition(":")
    if not module or not attr or ":" in attr:
        raise ValueError(f"an agent of your own is given as package.module:Class, got {target!r}")
    try:
        loaded = _import_from_working_directory(module)
    except ImportError as err:
        raise ValueError(f"cannot import {module!r} for agent {target!r}: {err}") from None
    cls = getattr(loaded, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ValueError(f"{target} is not an agents.base.Agent subclass")
    return cls


def _import_from_working_directory(module: str) -> Any:
    """``importlib.import_module``, with the working directory searched too: ``python path/to/evaluate.py``
    puts the script's folder first on ``sys.path``, not the folder the user runs it from."""
    import os
    import sys

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        here = os.getcwd()
        if err.name != module.split(".")[0] or here in sys.path or "" in sys.path:
            raise
        sys.path.append(here)  # after the installed packages: never shadows them
        return importlib.import_module(module)


@cache
def resolve(name: str) -> AgentSpec:
    """The :class:`AgentSpec` of a registered name, an installed plugin's name, or a
    ``package.module:Class`` of the user's own (imported once); ``ValueError`` otherwise."""
    if name in REGISTRY:
        entry = REGISTRY[name]
        cls = load_agent_class(entry.target)
        if entry.model is not None:
            cls = _model_agent(name, cls, entry.model)
        return AgentSpec(name, cls, entry.description, entry.learnable, entry.run_options)
    target = plugin_agents().get(name) or (name if ":" in name else None)
    if target is None:
        raise ValueError(f"unknown agent {name!r}; valid: {', '.join(available())}, or package.module:Class "
                         "for an agent of your own")
    cls = load_agent_class(target)
    description = (cls.__doc__ or target).strip().splitlines()[0]
    return AgentSpec(name, cls, description, issubclass(cls, LearnableAgent))


def display_names(names: list[str]) -> dict[str, str]:
    """The name each agent's column and records carry: the ``name`` a ``package.module:Class`` sets in its
    own body (not one it inherits; unless another agent of the run or the registry has it), else the name
    it was given."""
    wanted = {}
    for name in names:
        own = resolve(name).cls.__dict__.get("name")
        wanted[name] = own if ":" in name and isinstance(own, str) and own not in REGISTRY else name
    taken = list(wanted.values())
    return {name: label if taken.count(label) == 1 else name for name, label in wanted.items()}


def _model_agent(name: str, cls: type[Agent], model: str) -> type[Agent]:
    """The agent class of a registry entry with a model of its own: the model (``module:NAME`` of an
    :class:`agents.models.ModelEntry`) registered under ``name``, and ``cls`` itself if it is
    already called ``name``, else a subclass of it that is."""
    from agents.models import ModelEntry, register_model

    module, _, attr = model.partition(":")
    try:
        entry = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load the model {model!r} of agent {name!r}: {err}") from None
    if not isinstance(entry, ModelEntry):
        raise ValueError(f"{model} is not an agents.models.ModelEntry")
    register_model(name, entry)
    if cls.name == name:
        return cls
    title = "".join(part.capitalize() for part in name.replace("_", "-").split("-"))
    return type(f"{title}Agent", (cls,), {"name": name, "__module__": cls.__module__,
                                          "__doc__": f"The {name} model as a learning agent."})


def is_learnable(name: str) -> bool:
    """Whether the agent ``name`` must be trained before it can assign."""
    return resolve(name).learnable


def available() -> dict[str, str]:
    """Registered agent names (the zoo's, then installed plugins') and their one-line descriptions."""
    return {**{name: entry.description + (f" [not in 'all': {entry.not_in_all}]" if entry.not_in_all else "")
               for name, entry in REGISTRY.items()},
            **{name: f"plugin {target}" for name, target in plugin_agents().items()}}


def in_all() -> list[str]:
    """The names ``--agents all`` runs: every available one but those an entry leaves out (``not_in_all``)."""
    return [name for name in available() if name not in REGISTRY or REGISTRY[name].not_in_all is None]


def agent_class(name: str) -> type[Agent]:
    """The class registered under ``name``; ``ValueError`` listing the valid names otherwise."""
    return resolve(name).cls


def make(name: str, **kwargs: Any) -> Agent:
    """Build the agent registered under ``name`` with constructor keyword arguments."""
    return agent_class(name)(**kwargs)
