"""The planted-shift generator: confound-free by construction, and the planted signal is real."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import trivial_columns

from xcurate.datasets.synthetic import auc, planted_shift


@pytest.mark.parametrize("kw", [dict(), dict(frac_target_dyn=0.3), dict(frac_target_dyn=0.7, obs_dim=11, act_dim=3),
                                dict(shift=2.0, n_source=600, n_target=300)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_trivial_columns_do_not_separate_planted_rows(kw, seed):
    """Reward, ||s|| and ||s'|| give AUC 0.5 +- 0.06 (measured: exactly 0.5 at frac 0.5, where
    every other-dynamics row has a twin with the same values; within 0.046 at frac 0.3/0.7)."""
    _, src = planted_shift(seed=seed, **kw)
    lab = src.extras["planted"]
    assert 0 < lab.mean() < 1
    cols = dict(trivial_columns(src), **{"|a|": np.linalg.norm(src.actions, axis=1)})
    for name, col in cols.items():
        assert abs(auc(col, lab) - 0.5) <= 0.06, (name, auc(col, lab))


@pytest.mark.parametrize("seed", [0, 3])
def test_planted_rows_follow_the_target_dynamics(seed):
    """A linear model fitted on the target set predicts the planted rows' s' (noise 0.01) and
    misses the others' by orders of magnitude: the dynamics, and only they, carry the signal."""
    tg, src = planted_shift(n_target=300, n_source=400, seed=seed)
    x = np.concatenate([tg.observations, tg.actions], 1)
    coef, *_ = np.linalg.lstsq(x, tg.next_observations, rcond=None)
    err = np.linalg.norm(np.concatenate([src.observations, src.actions], 1) @ coef - src.next_observations, axis=1)
    lab = src.extras["planted"].astype(bool)
    assert np.median(err[lab]) < 0.05 < 0.1 < np.median(err[~lab])
    assert auc(-err, lab) > 0.95
    # shift 0 gives identical dynamics: the label carries no information
    tg0, src0 = planted_shift(n_target=300, n_source=400, seed=seed, shift=0.0)
    np.testing.assert_allclose(tg0.observations, tg.observations)
    e0 = np.linalg.norm(np.concatenate([src0.observations, src0.actions], 1) @ coef - src0.next_observations, axis=1)
    assert e0.max() < 0.1


def test_signature_and_bookkeeping():
    tg, src = planted_shift(n_target=120, n_source=90, frac_target_dyn=0.4, obs_dim=5, act_dim=3, seed=4)
    assert (len(tg), len(src), tg.obs_dim, tg.act_dim) == (120, 90, 5, 3)
    assert int(src.extras["planted"].sum()) == 36
    np.testing.assert_array_equal(src.transition_ids, np.arange(90))
    r = -(src.observations ** 2).mean(1) - 0.1 * (src.actions ** 2).mean(1)
    np.testing.assert_allclose(src.rewards, r, rtol=1e-12)  # one reward function for every row
    a, b = planted_shift(n_target=50, n_source=40, seed=9)
    c, d = planted_shift(n_target=50, n_source=40, seed=9)
    np.testing.assert_array_equal(b.next_observations, d.next_observations)
