"""Tests of the ``dara`` (domain-classifier reward correction) scorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_beats_trivial

from xcurate.datasets.synthetic import planted_shift
from xcurate.scoring import make_scorer
from xcurate.scoring.scorer_dara import balanced_bce, dara_delta_r

TINY = dict(steps=500, hidden=(64, 64), device="cpu", seed=0)


@pytest.fixture(scope="module")
def data():
    return planted_shift(n_target=500, n_source=1000, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    target, source = data
    sc = make_scorer("dara", **TINY).fit(target, source)
    return sc, sc.score(source)


def test_delta_r_equals_analytic_log_odds():
    """delta_r = log p(tar|sas') - log p(src|sas') - log p(tar|sa) + log p(src|sa) with ONE softmax."""
    g = torch.Generator().manual_seed(0)
    l_sas, l_sa = 4 * torch.randn(1000, generator=g), 4 * torch.randn(1000, generator=g)
    # analytic, via probabilities of a two-class softmax over logits [0, l] (class 1 = target)
    p_sas = torch.softmax(torch.stack([torch.zeros_like(l_sas), l_sas], 1).double(), 1)
    p_sa = torch.softmax(torch.stack([torch.zeros_like(l_sa), l_sa], 1).double(), 1)
    analytic = (p_sas[:, 1].log() - p_sas[:, 0].log() - p_sa[:, 1].log() + p_sa[:, 0].log()).clamp(-10, 10)
    got = dara_delta_r(l_sas, l_sa)
    torch.testing.assert_close(got.double(), analytic, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got, (l_sas - l_sa).clamp(-10, 10), rtol=1e-5, atol=1e-5)
    # double softmax (ODRL's bug) gives something else
    double = torch.softmax(p_sas.float(), 1)
    assert not torch.allclose((double[:, 1].log() - double[:, 0].log()), l_sas, atol=0.1)
    assert dara_delta_r(torch.tensor([50.0]), torch.tensor([-50.0])).item() == 10.0


def test_balanced_bce():
    lt, ls = torch.tensor([2.0]), torch.tensor([-1.0, 0.5])
    exp = (-F.logsigmoid(lt).mean() - F.logsigmoid(-ls).mean()) / 2
    assert torch.allclose(balanced_bce(lt, ls), exp)


def test_planted_signal(data, fitted):
    """Target-dynamics source rows get higher delta_r: AUC 0.907 with 500 steps on the
    confound-free planted data (reward, ||s||, ||s'||: 0.5; random 0.5 +- 0.02)."""
    _, source = data
    _, out = fitted
    assert set(out) == {"dara_delta_r", "dara_reward"}
    d = out["dara_delta_r"]
    assert np.all(np.abs(d) <= 10)
    np.testing.assert_allclose(out["dara_reward"], source.rewards + 0.1 * d, rtol=1e-6, atol=1e-6)
    assert_beats_trivial(d, source, margin=0.25)


# determinism and bad inputs: tests/scoring/test_scorer_contracts.py (parametrised over the scorers)
