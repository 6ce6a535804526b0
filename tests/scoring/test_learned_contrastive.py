"""Tests of the ``contrastive`` (IGDF) scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_beats_trivial

from xcurate.datasets.synthetic import auc, planted_shift
from xcurate.scoring import make_scorer
from xcurate.scoring.scorer_contrastive import contrastive_bce_loss, contrastive_logits, cosine_score

TINY = dict(steps=500, hidden=(64, 64), embed_dim=32, device="cpu", seed=0)


@pytest.fixture(scope="module")
def data():
    return planted_shift(n_target=500, n_source=1000, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    target, source = data
    sc = make_scorer("contrastive", **TINY).fit(target, source)
    return sc, sc.score(source)


def test_logits_and_loss_maths():
    phi = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pos = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    lg = contrastive_logits(phi, pos, neg)
    assert lg.shape == (2, 4)
    assert torch.allclose(lg, torch.tensor([[3.0, 1.0, -1.0, 0.0], [2.0, 2.0, 0.0, 0.0]]))
    # BCE: -log sigmoid(pos) averaged + -log sigmoid(-neg) averaged
    expected = (-torch.nn.functional.logsigmoid(lg[:, 0])).mean() + (-torch.nn.functional.logsigmoid(-lg[:, 1:])).mean()
    assert torch.allclose(contrastive_bce_loss(lg), expected)
    assert torch.allclose(cosine_score(phi, pos), torch.tensor([1.0, 1.0]))
    assert torch.allclose(cosine_score(phi, -pos), torch.tensor([-1.0, -1.0]))


def test_planted_signal(data, fitted):
    """Target-dynamics source rows score higher: AUC 0.897 reached with 500 steps on the
    confound-free planted data (reward, ||s||, ||s'||: 0.5; random: 0.5 +- 0.02)."""
    _, source = data
    _, out = fitted
    assert set(out) == {"contrastive_score", "contrastive_logit"}
    s = out["contrastive_score"]
    assert s.shape == (len(source),) and np.all(np.abs(s) <= 1 + 1e-6)
    assert_beats_trivial(s, source, margin=0.25)


def test_trained_encoder_beats_untrained(data, fitted):
    """ODRL's IGDF filters with an untrained encoder; training must matter (untrained AUC ~0.49)."""
    target, source = data
    untrained = make_scorer("contrastive", **{**TINY, "train": False}).fit(target, source).score(source)
    lab = source.extras["planted"]
    a_trained = auc(fitted[1]["contrastive_score"], lab)
    a_untrained = auc(untrained["contrastive_score"], lab)
    assert a_trained > a_untrained + 0.2
    assert abs(a_untrained - 0.5) < 0.15


def test_chunk_independent(data, fitted):
    """(Determinism and bad inputs: tests/scoring/test_scorer_contracts.py.)"""
    target, source = data
    parts = np.concatenate([fitted[0].score(source.select(slice(i, i + 300)))["contrastive_score"]
                            for i in range(0, len(source), 300)])
    np.testing.assert_allclose(parts, fitted[1]["contrastive_score"], rtol=1e-5, atol=1e-6)


def test_nan_rows_excluded_in_fit_and_nan_in_score(data):
    target, source = data
    src = source.select(slice(0, 200))
    src.next_observations = src.next_observations.copy()
    src.next_observations[7] = np.inf
    sc = make_scorer("contrastive", **{**TINY, "steps": 5}).fit(target, src)
    out = sc.score(src)["contrastive_score"]
    assert np.isnan(out[7]) and np.isfinite(np.delete(out, 7)).all()
