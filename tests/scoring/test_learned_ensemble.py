"""Tests of the ``ensemble`` (DROCO) scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_beats_trivial

from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError
from xcurate.scoring import make_scorer
from xcurate.scoring.scorer_ensemble import max_disagreement, mixture_loglik, soft_clamp_logvar, value_penalty

TINY = dict(steps=300, value_steps=300, hidden=(64, 64, 64, 64), value_hidden=(64, 64), n_models=3,
            batch_size=128, device="cpu", seed=0)


@pytest.fixture(scope="module")
def data():
    return planted_shift(n_target=500, n_source=1000, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    target, source = data
    sc = make_scorer("ensemble", **TINY).fit(target, source)
    return sc, sc.score(source)


def test_penalty_shapes_and_values():
    v_next = torch.tensor([5.0, 1.0])
    v_members = torch.tensor([[4.0, 3.0], [2.0, 2.0], [6.0, 0.5]])  # (N=3, B=2)
    u = value_penalty(v_next, v_members, beta=0.5)
    assert u.shape == (2,)
    assert torch.allclose(u, torch.tensor([0.5 * (5 - 2), 0.5 * (1 - 0.5)]))
    assert value_penalty(torch.tensor([0.0]), torch.tensor([[1.0]]), 1.0).item() == 0.0
    with pytest.raises(AssertionError):  # the official 2B-vs-B shape bug cannot happen silently
        value_penalty(torch.zeros(2), torch.zeros(3, 4), 1.0)


def test_mixture_loglik_and_disagreement():
    mu = torch.tensor([[[0.0]], [[2.0]]])  # N=2, B=1, D=1
    lv = torch.zeros_like(mu)
    y = torch.tensor([[0.0]])
    expected = math.log(0.5 * (math.exp(-0.5 * 0) + math.exp(-0.5 * 4))) - 0.5 * math.log(2 * math.pi)
    assert mixture_loglik(mu, lv, y).item() == pytest.approx(expected, rel=1e-5)
    assert max_disagreement(mu).item() == pytest.approx(1.0)
    lv = soft_clamp_logvar(torch.tensor([-100.0, 0.0, 100.0]), torch.tensor(-10.0), torch.tensor(0.5))
    assert lv[0] >= -10 - 1e-3 and lv[2] <= 0.5 + 1e-3 and -10 < lv[1] < 0.5  # soft bounds


def test_planted_signal(data, fitted):
    """Target-dynamics rows rank better. Reached on the confound-free planted data (reward, ||s||,
    ||s'||: 0.5): ensemble_loglik/ensemble_score AUC 0.982, ensemble_penalty 0.647,
    ensemble_disagreement ~0.5 (it measures uncertainty about (s, a), which
    the planted data does not vary; random: 0.5 +- 0.02). The loglik is therefore ensemble_score."""
    _, source = data
    _, out = fitted
    lab = source.extras["planted"]
    assert set(out) == {"ensemble_penalty", "ensemble_disagreement", "ensemble_loglik", "ensemble_score",
                        "ensemble_v_next"}
    scorer = fitted[0]
    s2 = torch.as_tensor(source.next_observations[:50], dtype=torch.float32)
    with torch.no_grad():  # V(s') of the scorer's own value function, the scale the penalty is on
        v_ref = scorer._value.value(scorer._s_norm(s2.to(scorer._device))).cpu().numpy()
    np.testing.assert_allclose(out["ensemble_v_next"][:50], v_ref, rtol=1e-5, atol=1e-5)
    for c in out:
        assert out[c].shape == (len(source),) and np.isfinite(out[c]).all()
    assert np.all(out["ensemble_penalty"] >= 0) and np.all(out["ensemble_disagreement"] >= 0)
    np.testing.assert_array_equal(out["ensemble_score"], out["ensemble_loglik"])
    assert_beats_trivial(out["ensemble_score"], source, margin=0.4, labels=lab)
    assert_beats_trivial(-out["ensemble_penalty"], source, margin=0.08, labels=lab)


def test_chunk_independent(data, fitted):
    """(Determinism and bad inputs: tests/scoring/test_scorer_contracts.py.)"""
    target, source = data
    sc = fitted[0]
    part = sc.score(source.select(slice(0, 77)))
    np.testing.assert_allclose(part["ensemble_penalty"], fitted[1]["ensemble_penalty"][:77], rtol=1e-5, atol=1e-5)


def test_bad_inputs(data):
    target, source = data
    small = dict(TINY, steps=1, value_steps=1)
    with pytest.raises(ConfigError, match="n_models"):
        make_scorer("ensemble", **{**small, "n_models": 1}).fit(target, source)
