"""kNN scorer: distances, direction, planted-signal AUC."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_beats_trivial

from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError
from xcurate.scoring import make_scorer


def test_distances_and_direction():
    tg, src = planted_shift(n_target=100, n_source=50, seed=0)
    sc = make_scorer("knn", k=1).fit(tg, src)
    out = sc.score(tg)  # each target row's nearest target row is itself
    np.testing.assert_allclose(out["knn_distance"], 0, atol=1e-3)
    np.testing.assert_array_equal(out["knn_score"], -out["knn_distance"])
    # manual check of the mean k-NN distance in target-z-scored space
    u = np.concatenate([tg.observations, tg.actions, tg.next_observations], 1)
    q = np.concatenate([src.observations, src.actions, src.next_observations], 1)
    mu, sd = u.mean(0), u.std(0)
    d = np.linalg.norm((q[:, None] - mu) / sd - ((u - mu) / sd)[None], axis=2)
    ref = np.sort(d, axis=1)[:, :3].mean(1)
    got = make_scorer("knn", k=3).fit(tg, src).score(src)["knn_distance"]
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    # k larger than the target is capped
    assert make_scorer("knn", k=1000).fit(tg, src).score(src)["knn_distance"].shape == (50,)


@pytest.mark.parametrize("seed", [1, 2])
def test_planted_signal_auc(seed):
    """Confound-free planted shift (2000 source / 1000 target, rotation shift 2.0): measured AUC
    0.855 (seed 1) and 0.772 (seed 2); reward, ||s|| and ||s'|| give 0.5.

    kNN on (s, a, s') measures closeness of the joint distribution, not of the dynamics: at the
    default shift 0.5 it reaches only 0.54-0.61 on seeds 1-3 (0.96 on seed 0), 0.64-0.74 at
    shift 1.0. (On the earlier, confounded generator it scored 0.97-0.98 mostly through ||s||.)
    """
    tg, src = planted_shift(n_target=1000, n_source=2000, seed=seed, shift=2.0)
    s = make_scorer("knn").fit(tg, src).score(src)["knn_score"]
    assert_beats_trivial(s, src, margin=0.2)


def test_errors():
    """(Dims and too few rows: tests/scoring/test_scorer_contracts.py.)"""
    with pytest.raises(ConfigError, match="k must"):
        make_scorer("knn", k=0)
