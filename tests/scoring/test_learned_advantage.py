"""Tests of the ``advantage`` (DVDF value alignment) scorer.

The advantage is a *value* score, not a dynamics score: its planted-signal test uses data in
which half the transitions come from a good behaviour (action close to the reward-maximising one)
and half from a uniform-random behaviour; the good ones must get higher advantage.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcurate.datasets.synthetic import auc, planted_shift
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring import make_scorer
from xcurate.scoring.scorer_advantage import expectile_loss, minmax_normalise, sql_value_loss, td_target

TINY = dict(steps=300, hidden=(64, 64), gamma=0.9, batch_size=128, device="cpu", seed=0)


def quality_data(n: int = 1000, seed: int = 0) -> TransitionDataset:
    """Half good-behaviour rows (extras['good'] = 1), half random; r = -|a - a*(s)|^2."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 4))
    best = np.tanh(s @ (0.5 * rng.normal(size=(4, 2))))
    good = np.arange(n) % 2 == 0
    a = np.where(good[:, None], np.clip(best + 0.1 * rng.normal(size=best.shape), -1, 1),
                 rng.uniform(-1, 1, size=best.shape))
    r = -((a - best) ** 2).sum(1)
    s2 = 0.9 * s + 0.3 * np.tanh(a @ rng.normal(size=(2, 4))) + 0.1 * rng.normal(size=s.shape)
    return TransitionDataset.from_arrays(s, a, r, s2, timeouts=np.arange(n) % 50 == 49,
                                         extras={"good": good.astype(np.int8)})


@pytest.fixture(scope="module")
def data():
    return quality_data()


@pytest.fixture(scope="module")
def fitted(data):
    sc = make_scorer("advantage", **TINY).fit(data.select(slice(0, 50)), data)
    return sc, sc.score(data)


def test_sql_and_iql_losses():
    adv = torch.tensor([0.1, -0.5, 1.0])
    v = torch.tensor([1.0, 2.0, 3.0])
    alpha = 0.1
    x = 1 + adv / (2 * alpha)  # [1.5, -1.5, 6.0]
    expected = ((x.clamp_min(0) ** 2) + v / alpha).mean()
    assert torch.allclose(sql_value_loss(adv, v, alpha), expected)
    d = torch.tensor([2.0, -1.0])
    assert torch.allclose(expectile_loss(d, 0.7), torch.tensor((0.7 * 4 + 0.3 * 1) / 2))
    assert torch.allclose(td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([2.0, 2.0]),
                                    0.5), torch.tensor([2.0, 1.0]))
    assert torch.allclose(minmax_normalise(torch.tensor([0.0, 5.0, 20.0]), 0.0, 10.0), torch.tensor([0.0, 0.5, 1.0]))
    assert torch.all(minmax_normalise(torch.tensor([1.0, 2.0]), 3.0, 3.0) == 0.5)


def test_good_behaviour_gets_higher_advantage(data, fitted):
    """Good-behaviour rows outrank random ones: AUC 0.99 with SQL, 300 steps."""
    _, out = fitted
    assert set(out) == {"advantage_raw", "advantage_norm"}
    assert auc(out["advantage_raw"], data.extras["good"]) >= 0.8
    np.testing.assert_array_equal(np.argsort(out["advantage_raw"], kind="stable"),
                                  np.argsort(out["advantage_norm"], kind="stable"))


def test_iql_variant_also_ranks(data):
    out = make_scorer("advantage", **{**TINY, "variant": "iql"}).fit(data, data).score(data)
    assert auc(out["advantage_raw"], data.extras["good"]) >= 0.8


def test_normalisation_is_global_not_per_chunk(data, fitted):
    sc, out = fitted
    n = out["advantage_norm"]
    assert n.min() == pytest.approx(0.0, abs=1e-6) and n.max() == pytest.approx(1.0, abs=1e-6)
    chunk = sc.score(data.select(slice(0, 100)))["advantage_norm"]
    np.testing.assert_allclose(chunk, n[:100], rtol=1e-5, atol=1e-6)
    assert chunk.min() > 1e-3 or chunk.max() < 1 - 1e-3  # a per-chunk min-max would hit both 0 and 1


def test_bad_inputs(data):
    """(Determinism and the shared bad inputs: tests/scoring/test_scorer_contracts.py.)"""
    target, source = planted_shift(n_target=50, n_source=50, obs_dim=4, act_dim=2)
    with pytest.raises(ConfigError, match="variant"):
        make_scorer("advantage", **{**TINY, "variant": "cql"}).fit(target, source)
