"""The command lines are generated from the settings dataclasses: one declaration per setting."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

import evaluate
import train
from agents.lab import noise_study
from agents.lab.cli import add_fields, field_docs, given
from agents.lab.evaluation import EvaluationSettings
from agents.learning import TrainSettings
from agents.neural import GNNAgent, HQCNNAgent
from cfenv.config import SystemConfig


@dataclasses.dataclass
class Demo:
    count: int = 3
    """how many"""
    rate: float | None = None
    """how fast"""
    names: tuple[str, ...] = ("a", "b")
    """which"""
    folder: Path = Path("x")
    """where"""
    quiet: bool = False
    """say less"""
    progress: bool = True
    """show bars"""


def test_flags_take_type_default_and_help_from_the_field():
    parser = argparse.ArgumentParser()
    add_fields(parser, Demo, tuple(f.name for f in dataclasses.fields(Demo)))
    args = parser.parse_args([])
    assert (args.count, args.rate, args.names, args.folder, args.quiet, args.progress) == (
        3, None, ["a", "b"], Path("x"), False, True)
    args = parser.parse_args(["--count", "5", "--rate", "0.5", "--names", "c", "--folder", "y", "--quiet",
                              "--no-progress"])
    assert given(args, ("count", "rate", "names", "folder", "quiet", "progress")) == {
        "count": 5, "rate": 0.5, "names": ("c",), "folder": Path("y"), "quiet": True, "progress": False}
    text = parser.format_help()
    assert "how many (default: 3)" in text and "--no-progress" in text and "say less" in text


def test_unset_flags_stay_none_so_another_source_fills_them():
    parser = argparse.ArgumentParser()
    add_fields(parser, Demo, ("count", "quiet"), unset=True, unset_help="the budget")
    args = parser.parse_args([])
    assert given(args, ("count", "quiet")) == {}
    assert "(default: the budget)" in parser.format_help()


def test_every_settings_field_a_flag_sets_has_a_docstring():
    for cls, names in ((TrainSettings, train.BUDGET_FLAGS + train.RUN_FLAGS + ("runs_dir", "progress")),
                       (EvaluationSettings, evaluate.RUN_FLAGS + evaluate.SCALE_FLAGS + ("progress",)),
                       (noise_study.NoiseStudySettings, noise_study.STUDY_FLAGS)):
        docs = field_docs(cls)
        assert not [n for n in names if not docs.get(n)], cls.__name__


@pytest.mark.parametrize("parser", [train.build_parser, evaluate.build_parser, noise_study.build_parser])
def test_every_flag_has_help(parser):
    actions = [a for a in parser()._actions if a.option_strings and a.help != argparse.SUPPRESS]
    assert actions and not [a.option_strings for a in actions if not a.help]


@pytest.mark.parametrize("parser", [train.build_parser, evaluate.build_parser, noise_study.build_parser])
def test_help_is_plain_text_and_a_no_flag_says_what_it_does(parser):
    """No reStructuredText markup, no internal references, and ``--no-x`` describes the off state."""
    text = parser().format_help()
    for markup in ("``", ":mod:", ":class:", ":func:", ":attr:", "turn off:", "package docstring", "scale_factors"):
        assert markup not in text, markup
    no_flags = {a.option_strings[0]: a.help for a in parser()._actions if a.option_strings
                and a.option_strings[0].startswith("--no-")}
    assert no_flags and all(not h.startswith(("turn off", "do not show")) for h in no_flags.values())
    if "--no-train" in no_flags:
        assert no_flags["--no-train"].startswith("skip a learning agent without a checkpoint")


def test_a_switch_without_an_off_text_reads_do_not():
    parser = argparse.ArgumentParser()
    add_fields(parser, Demo, ("progress",))
    assert "do not show bars" in parser.format_help()


def test_train_uses_the_agents_own_budget_and_default_loss():
    args = train.build_parser().parse_args(["--agent", "gnn", "--sizes", "6,2,4,2"])
    config = SystemConfig.from_size((6, 2, 4, 2))
    agent = GNNAgent(config=config)
    settings = agent.training_settings(config, **train.fit_arguments(args, agent))
    assert settings.loss == "reinforce"
    assert settings.epochs == GNNAgent.default_budget["epochs"]
    assert settings.train_snapshots == GNNAgent.default_budget["train_snapshots"]


def test_train_flags_override_single_budget_fields():
    args = train.build_parser().parse_args(["--agent", "hqcnn", "--epochs", "3", "--lr", "0.01", "--qubits", "4"])
    config = SystemConfig.from_size((6, 2, 4, 2))
    agent = HQCNNAgent(config=config, n_qubits=4)
    settings = agent.training_settings(config, **train.fit_arguments(args, agent))
    assert (settings.epochs, settings.lr) == (3, 0.01)
    assert settings.train_snapshots == HQCNNAgent.default_budget["train_snapshots"]
    assert settings.model == {"n_qubits": 4}


@pytest.mark.parametrize("argv, message", [
    (["--agent", "gnn", "--total-timesteps", "5"], "gnn does not take --total-timesteps"),
    (["--agent", "ppo", "--epochs", "3"], "ppo does not take --epochs"),
    (["--agent", "random"], "random does not learn"),
    (["--agent", "mlp", "--epochs", "0"], "epochs must be >= 1"),
    (["--agent", "ppo", "--resume"], "--resume is not supported"),
])
def test_train_rejects_bad_combinations_in_one_line(argv, message, capsys):
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_importing_sets_nothing_and_the_clis_set_the_thread_policy_before_torch_loads():
    """No module sets ``OMP_WAIT_POLICY`` on import; ``evaluate.py`` and ``train.py`` load neither
    torch nor numba on import, and set it first thing in ``main`` (an OpenMP runtime reads it when
    it loads), keeping a value the user chose."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import os, sys; import evaluate, train; assert not {'torch', 'numba'} & set(sys.modules), "
            "sorted({'torch', 'numba'} & set(sys.modules)); import cfenv, agents, agents.lab.evaluation, agents.neural; "
            "assert 'OMP_WAIT_POLICY' not in os.environ")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OMP_WAIT_POLICY", raising=False)
        assert evaluate.main(["--list-agents"]) == 0 and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        patch.setenv("OMP_WAIT_POLICY", "ACTIVE")
        assert train.main(["--agent", "random"]) == 2 and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_train_offers_each_agent_the_flags_of_its_settings_class():
    from agents.rl import PPOAgent

    args = train.build_parser().parse_args(["--agent", "ppo", "--total-timesteps", "64"])
    ppo = PPOAgent(config=SystemConfig.from_size((6, 2, 4, 2)))
    assert train.fit_arguments(args, ppo) == {"runs_dir": args.runs_dir, "progress": True, "total_timesteps": 64}
    args = train.build_parser().parse_args(["--agent", "gnn", "--epochs", "2", "--noise-p", "0.01"])
    fit = train.fit_arguments(args, GNNAgent(config=SystemConfig.from_size((6, 2, 4, 2))))
    assert fit == {"runs_dir": args.runs_dir, "progress": True, "epochs": 2, "cache_dir": args.cache_dir,
                   "resume": False, "execution": {"noise_p": 0.01}}
