import numpy as np
import pytest
import torch

from agents.learning import beta_db_tensor, supervised_loss, unsupervised_loss
from agents.models import LABEL_MODELS as MODEL_NAMES
from agents.models import build_model, hqcnn_parameter_count
from cfenv import SystemConfig, draw_snapshots

CFG = SystemConfig(M=10, K=6, tau_p=3)


def batch(cfg=CFG, n=16, seed=0):
    snaps = draw_snapshots(cfg, np.random.default_rng(seed), (n,))
    return beta_db_tensor(snaps.beta), torch.tensor(snaps.beta)


def model(name, cfg=CFG, **options):
    torch.manual_seed(0)
    m = build_model(name, cfg, **options)
    m.set_normalisation(-120.0, 15.0)
    return m


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", [(10, 2, 6, 3), (10, 2, 15, 3)], ids=str)
def test_models_output_pilot_logits(name, size):
    cfg = SystemConfig.from_size(size)
    x, _ = batch(cfg, n=5)
    out = model(name, cfg)(x)
    assert out.shape == (5, cfg.K, cfg.tau_p) and torch.isfinite(out).all()


def test_model_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match="input must be"):
        model("mlp")(torch.zeros(2, 9, 6))


def test_cnn_parameter_counts_match_table_formula():
    M, K, tau = CFG.M, CFG.K, CFG.tau_p
    for name, (c1, c2) in (("light-cnn", (8, 16)), ("heavy-cnn", (32, 64))):
        want = (9 + 1) * c1 + (9 * c1 + 1) * c2 + (c2 * M * K + 1) * K * tau
        assert model(name).parameter_counts() == {"classical": want, "quantum": 0, "total": want}


def test_mlp_parameter_count_formula_and_matching_hqcnn():
    m = model("mlp", hidden=(7, 5))
    n_in, n_out = CFG.M * CFG.K, CFG.K * CFG.tau_p
    assert m.parameter_counts()["total"] == (n_in + 1) * 7 + (7 + 1) * 5 + (5 + 1) * n_out
    default = model("mlp").parameter_counts()["total"]
    assert abs(default - hqcnn_parameter_count(CFG)) <= 0.1 * hqcnn_parameter_count(CFG)


@pytest.mark.parametrize("name,share", [("hqcnn", "level"), ("hqcnn-hur", "block")])
def test_hqcnn_parameter_counts(name, share):
    from agents.models.quantum import count_quantum_parameters

    counts = model(name).parameter_counts()
    assert counts["quantum"] == count_quantum_parameters(8, share)
    assert counts["total"] == hqcnn_parameter_count(CFG, share=share)


def test_hur_has_more_quantum_parameters():
    assert model("hqcnn-hur").parameter_counts()["quantum"] > model("hqcnn").parameter_counts()["quantum"]


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("loss", ["supervised", "unsupervised"])
def test_gradient_reaches_every_parameter(name, loss):
    x, beta = batch()
    m = model(name)
    logits = m(x)
    if loss == "unsupervised":
        value = unsupervised_loss(logits, beta, CFG)
    else:
        value = supervised_loss(logits, torch.randint(0, CFG.tau_p, (16, CFG.K)))
    value.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("loss", ["supervised", "unsupervised"])
def test_few_steps_reduce_loss_on_fixed_batch(name, loss):
    x, beta = batch(n=32)
    labels = torch.randint(0, CFG.tau_p, (32, CFG.K), generator=torch.Generator().manual_seed(1))
    m = model(name)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)

    def loss_value():
        logits = m(x)
        return unsupervised_loss(logits, beta, CFG) if loss == "unsupervised" else supervised_loss(logits, labels)

    first = loss_value().item()
    for _ in range(15):
        opt.zero_grad()
        value = loss_value()
        value.backward()
        opt.step()
    assert loss_value().item() < first


def test_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", CFG)
    with pytest.raises(ValueError, match="block"):
        build_model("hqcnn-hur", CFG, share="level")
