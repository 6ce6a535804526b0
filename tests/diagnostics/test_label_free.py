"""Label-free quality signals: block holdout, the behaviour-matched win, the scorers' consensus."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.datasets.synthetic import planted_shift
from xcurate.diagnostics.holdout import consensus, match_rows, matched_stats
from xcurate.errors import DataError
from xcurate.scoring.store import split_holdout


def test_block_holdout_keeps_whole_segments_of_each_episode():
    target, _ = planted_shift(n_target=400, n_source=10, seed=2)
    fit, held = split_holdout(target, 0.2, seed=5, min_target=2, block=25)
    assert 80 <= len(held) < 80 + 25 and len(fit) + len(held) == len(target)
    assert not set(fit.transition_ids) & set(held.transition_ids)
    # every held-out row sits in a run of consecutive rows of one episode cut at multiples of 25 steps
    pos = np.flatnonzero(np.isin(target.transition_ids, held.transition_ids))
    ep = target.episode_ids
    start = {e: np.flatnonzero(ep == e)[0] for e in np.unique(ep)}
    seg = {(int(ep[p]), int((p - start[ep[p]]) // 25)) for p in pos}
    whole = [np.flatnonzero((ep == e) & ((np.arange(len(ep)) - start[e]) // 25 == k)) for e, k in seg]
    assert sorted(np.concatenate(whole)) == sorted(pos)
    # seeded, and block=1 is the row-wise split
    _, again = split_holdout(target, 0.2, seed=5, min_target=2, block=25)
    assert np.array_equal(again.transition_ids, held.transition_ids)
    _, rows = split_holdout(target, 0.2, seed=5, min_target=2, block=1)
    perm = np.random.default_rng(5).permutation(len(target))
    assert np.array_equal(rows.transition_ids, target.transition_ids[np.sort(perm[:80])])


def test_block_holdout_refuses_to_leave_too_few_fit_rows():
    target, _ = planted_shift(n_target=100, n_source=10, seed=2)
    with pytest.raises(DataError, match="whole blocks of 60"):
        split_holdout(target, 0.3, seed=0, min_target=60, block=60)


def test_match_rows_finds_the_nearest_source_rows_in_source_sds():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(500, 3)) * np.array([1.0, 10.0, 100.0])
    held = src[[7, 42]] + np.array([0.01, 0.1, 1.0])  # 0.01 SD off in every column
    idx, dist = match_rows(src, held, k=3)
    assert idx.shape == (2, 3) and idx[0, 0] == 7 and idx[1, 0] == 42
    sd = src.std(0)
    assert dist[0, 0] == pytest.approx(np.linalg.norm(np.array([0.01, 0.1, 1.0]) / sd), rel=1e-4)
    assert (np.diff(dist, axis=1) >= 0).all()


def test_matched_win_counts_pairs_and_ties_and_drops_nan():
    src = np.array([0.0, 1.0, 2.0, np.nan])
    hold = np.array([1.0, 5.0])
    idx = np.array([[0, 1], [2, 3]])
    s = matched_stats(src, hold, idx, np.array([[1.0, 2.0], [3.0, 4.0]]))
    # pairs: (1 vs 0) win, (1 vs 1) tie, (5 vs 2) win, (5 vs nan) dropped
    assert s["matched_win"] == pytest.approx(2.5 / 3) and s["n_pairs"] == 3
    assert s["match_distance"] == pytest.approx(2.0)


def test_consensus_rewards_agreement_with_other_scorers_and_ignores_own_columns():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=2000)
    vals = {"a/good": truth + 0.3 * rng.normal(size=2000), "b/good": truth + 0.3 * rng.normal(size=2000),
            "c/good": truth + 0.3 * rng.normal(size=2000), "c/inverted": -truth, "d/noise": rng.normal(size=2000),
            "d/noise_copy": None}
    vals["d/noise_copy"] = vals["d/noise"].copy()
    groups = {k: k.split("/")[0] for k in vals}
    c = consensus(vals, groups)
    # a good column agrees with the two other good scorers (~0.9) and not with the noise scorer (~0)
    assert 0.55 < c["a/good"] < 0.7 and 0.55 < c["c/good"] < 0.7
    assert c["a/good"] > c["d/noise"] + 0.5
    # the inverted column disagrees with the good ones (its own scorer's good column does not count)
    assert c["c/inverted"] < 0
    # a noise column's exact copy in its own scorer does not lift it
    assert abs(c["d/noise"]) < 0.1
    with_nan = dict(vals, **{"b/good": np.where(np.arange(2000) < 100, np.nan, vals["b/good"])})
    assert consensus(with_nan, groups)["b/good"] == pytest.approx(c["b/good"], abs=0.02)
    assert np.isnan(consensus({"x": truth}, {"x": "x"})["x"])


def test_store_block_holdout_is_its_own_run_and_recorded(tmp_path, run_cli):
    import json

    import pyarrow.parquet as pq

    from xcurate.datasets.io import save_dataset
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.store import Store

    target, source = planted_shift(n_target=300, n_source=400, seed=3)
    st = Store.create(tmp_path / "st", source, target)
    r1 = st.run(make_scorer("knn"), progress=False, holdout=0.2)
    r25 = st.run(make_scorer("knn"), progress=False, holdout=0.2, holdout_block=25)
    assert r1 != r25
    m = json.loads((st.dir / "runs" / r25 / "manifest.json").read_text())
    assert m["holdout"]["block"] == 25
    held = pq.read_table(st.dir / "runs" / r25 / "holdout.parquet").column("transition_id").to_numpy()
    _, expect = split_holdout(target, 0.2, seed=make_scorer("knn").seed, min_target=1, block=25)
    assert np.array_equal(np.sort(held), np.sort(expect.transition_ids))
    sp, tp = save_dataset(source, tmp_path / "s.hdf5"), save_dataset(target, tmp_path / "t.hdf5")
    code, _, err = run_cli(["score", "--source", sp, "--target", tp, "--scorers", "knn", "--store", tmp_path / "s2",
                            "--holdout", "0.2", "--holdout-block", "0", "--no-progress"])
    assert code == 1 and err.count("error:") == 1 and "--holdout-block" in err and "Traceback" not in err
