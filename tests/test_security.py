"""Checkpoints are data: a config.json never asks for absurd allocations."""

import json

import pytest

from agents.learning.checkpoints import load_model
from agents.models import (
    MAX_CNN_CHANNELS,
    MAX_GNN_LAYERS,
    MAX_GNN_WIDTH,
    MAX_HIDDEN_LAYERS,
    MAX_HIDDEN_WIDTH,
    build_model,
)
from cfenv import SystemConfig

SIZE = (6, 2, 4, 2)
CFG = SystemConfig.from_size(SIZE)


# ------------------------------------------------------------------ bounds
@pytest.mark.parametrize("name, options, option", [
    ("mlp", {"hidden": [2147483648]}, "hidden"),
    ("mlp", {"hidden": [0]}, "hidden"),
    ("mlp", {"hidden": [16] * (MAX_HIDDEN_LAYERS + 1)}, "hidden"),
    ("mlp", {"hidden": [True]}, "hidden"),
    ("mlp", {"hidden": "16"}, "hidden"),
    ("light-cnn", {"channels": [MAX_CNN_CHANNELS + 1, 8]}, "channels"),
    ("heavy-cnn", {"channels": [32]}, "channels"),
    ("hqcnn", {"n_qubits": 32}, "n_qubits"),
    ("gnn", {"width": MAX_GNN_WIDTH + 1}, "width"),
    ("gnn", {"layers": MAX_GNN_LAYERS + 1}, "layers"),
    ("gnn", {"layers": 0}, "layers"),
    ("hqcnn-ar", {"quantum": {"n_qubits": 1 << 20}}, "n_qubits"),
    ("hqcnn-ar", {"quantum": {"wires": 3}}, "quantum"),
], ids=str)
def test_build_model_refuses_absurd_options(name, options, option):
    with pytest.raises(ValueError, match=option) as err:
        build_model(name, CFG, **options)
    assert "\n" not in str(err.value)


def test_build_model_accepts_the_bounds():
    assert build_model("mlp", CFG, hidden=[MAX_HIDDEN_WIDTH, 1]).hidden == (MAX_HIDDEN_WIDTH, 1)
    assert build_model("gnn", CFG, width=4, layers=MAX_GNN_LAYERS).layers == MAX_GNN_LAYERS


def test_neural_config_json_asking_for_20_gb_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"agent": "mlp", "system": {"M": 6, "L": 2, "K": 4, "tau_p": 2},
                                                      "model": {"hidden": [2147483648]}}))
    with pytest.raises(ValueError, match="hidden"):
        load_model(tmp_path)
