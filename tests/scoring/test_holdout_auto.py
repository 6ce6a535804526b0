"""Held-out target validation (score --holdout), diagnose --against holdout and curate --recipe auto."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from xcurate.curate.recipes import curate
from xcurate.datasets.io import save_dataset
from xcurate.datasets.synthetic import auc, planted_shift
from xcurate.diagnostics.holdout import holdout_signal, holdout_stats
from xcurate.errors import ConfigError, DataError, StoreError
from xcurate.scoring.base import make_scorer
from xcurate.scoring.store import Store, split_holdout

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    # a source from another linear system: held-out target rows are recognisably target-like
    target, _ = planted_shift(n_target=300, n_source=10, seed=1)
    _, source = planted_shift(n_target=10, n_source=600, seed=7)
    return target, source


def test_split_holdout_is_seeded_disjoint_and_complete(data):
    target, _ = data
    fit, held = split_holdout(target, 0.2, seed=3, min_target=2)
    assert len(held) == 60 and len(fit) == 240
    ids = np.concatenate([fit.transition_ids, held.transition_ids])
    assert sorted(ids) == sorted(target.transition_ids)
    assert not set(fit.transition_ids) & set(held.transition_ids)
    _, again = split_holdout(target, 0.2, seed=3, min_target=2)
    assert np.array_equal(held.transition_ids, again.transition_ids)
    _, other = split_holdout(target, 0.2, seed=4, min_target=2)
    assert not np.array_equal(held.transition_ids, other.transition_ids)


def test_held_out_rows_are_kept_out_of_the_fit(data, tmp_path):
    # with k=1 a target row inside the kNN index is at distance 0; held-out rows must not be
    target, source = data
    st = Store.create(tmp_path / "st", source, target)
    rid = st.run(make_scorer("knn", k=1), progress=False, holdout=0.2)
    held = pq.read_table(st.dir / "runs" / rid / "holdout.parquet")
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["holdout"]["n"] == held.num_rows == 60 and m["holdout"]["n_fit"] == 240
    d = held.column("knn_distance").to_numpy()
    assert (d > 1e-9).all()
    # the same scorer without holdout is another run (the held-out part is in the run id)
    rid0 = st.run(make_scorer("knn", k=1), progress=False)
    assert rid0 != rid and not (st.dir / "runs" / rid0 / "holdout.parquet").exists()


def test_holdout_signal_and_stats(data, tmp_path):
    target, source = data
    st = Store.create(tmp_path / "st", source, target)
    st.run(make_scorer("knn"), progress=False, holdout=0.25)
    tab = holdout_signal(st).to_pylist()
    assert {r["column"] for r in tab} == {"knn_distance", "knn_score"}
    r = tab[0]
    held = pq.read_table(next((st.dir / "runs").glob("knn-*/holdout.parquet"))).column("knn_score").to_numpy()
    src = st.scores("knn").column("knn_score").to_numpy()
    labels = np.r_[np.zeros(len(src)), np.ones(len(held))]
    assert r["holdout_auc"] == pytest.approx(auc(np.r_[src, held], labels))
    assert r["holdout_auc"] > 0.6  # held-out target rows look like target data to kNN
    # the statistics on hand-made numbers
    s = holdout_stats(np.arange(10.0), np.array([8.5, 9.5, np.nan]))
    assert s["holdout_auc"] == pytest.approx(19 / 20)  # 8.5 beats 9 of 10 source rows, 9.5 all 10
    assert s["n_holdout"] == 2 and s["holdout_median_pct"] == pytest.approx(100.0)  # median 9.0 >= all
    assert s["source_above_holdout_q10"] == pytest.approx(0.1)  # q10 of [8.5, 9.5] = 8.6: only 9 is above


def test_auto_picks_the_best_holdout_column_and_records_it(data, tmp_path):
    target, source = data
    st = Store.create(tmp_path / "st", source, target)
    st.run(make_scorer("knn"), progress=False, holdout=0.2)
    st.run(make_scorer("ot", chunk=600), progress=False, holdout=0.2)
    sig = [r for r in holdout_signal(st).to_pylist()]
    # default: the usable column that agrees most with the other scorer
    ds_c = curate(st, "auto")
    oc = ds_c.metadata["curation"]["options"]
    usable = [r for r in sig if r["holdout_auc"] >= 0.55]
    top = min(usable, key=lambda r: (-r["consensus"], -r["holdout_auc"], r["column"]))
    assert oc["signal_used"] == "consensus" and oc["chosen_column"] == top["column"]
    assert oc["consensus"] == pytest.approx(top["consensus"]) and np.isfinite(top["consensus"])
    ds = curate(st, "auto", signal="holdout_auc")
    o = ds.metadata["curation"]["options"]
    assert o["chosen_column"] == sig[0]["column"] and o["signal_used"] == "holdout_auc"
    assert o["holdout_auc"] == pytest.approx(sig[0]["holdout_auc"])
    assert {e["column"] for e in o["evidence"]} == {r["column"] for r in sig}
    keep = ds.extras["keep"]
    assert keep.mean() == pytest.approx(max(0.05, sig[0]["source_above_holdout_q10"]), abs=2 / len(keep))
    # the kept rows are the top of the chosen column in its declared direction
    col = st.scores(o["chosen_column"].split("_")[0]).column(o["chosen_column"]).to_numpy()
    v = -col if o["direction"] == "lower" else col
    assert v[keep].min() >= v[~keep].max()


def test_holdout_bad_input(data, tmp_path):
    target, source = data
    st = Store.create(tmp_path / "st", source, target)
    for bad in (0.6, -0.1, 1.0):
        with pytest.raises(ConfigError, match="holdout"):
            st.run(make_scorer("knn"), progress=False, holdout=bad)
    small = target.select(np.arange(20))
    st2 = Store.create(tmp_path / "st2", source, small)
    with pytest.raises(DataError, match="lower --holdout"):
        st2.run(make_scorer("contrastive", steps=1), progress=False, holdout=0.5)  # needs 16, 10 left
    st.run(make_scorer("knn"), progress=False)
    with pytest.raises(StoreError, match="--holdout"):
        holdout_signal(st)
    with pytest.raises(ConfigError, match="held-out"):
        curate(st, "auto")
    st.run(make_scorer("knn"), progress=False, holdout=0.2)
    with pytest.raises(ConfigError, match="no usable column"):
        curate(st, "auto", min_auc=0.999)
    with pytest.raises(ConfigError, match="signal 'best'"):
        curate(st, "auto", signal="best")
    # one scorer: consensus is undefined and the held-out AUC decides
    o = curate(st, "auto").metadata["curation"]["options"]
    assert o["signal"] == "consensus" and o["signal_used"] == "holdout_auc"


def test_cli_holdout_diagnose_and_auto(data, tmp_path, run_cli):
    target, source = data
    sp, tp = save_dataset(source, tmp_path / "s.hdf5"), save_dataset(target, tmp_path / "t.hdf5")
    store = tmp_path / "store"
    code, _, err = run_cli(["score", "--source", sp, "--target", tp, "--scorers", "knn", "--store", store,
                            "--holdout", "0.7", "--no-progress"])
    assert code == 1 and err.count("error:") == 1 and "holdout" in err and "Traceback" not in err
    code, _, err = run_cli(["score", "--source", sp, "--target", tp, "--scorers", "knn", "--store", store,
                            "--no-progress"])
    assert code == 0, err
    code, _, err = run_cli(["diagnose", "--store", store, "--against", "holdout", "--out", tmp_path / "rep"])
    assert code == 1 and err.count("error:") == 1 and "--holdout" in err
    code, _, err = run_cli(["score", "--source", sp, "--target", tp, "--scorers", "knn", "--store", store,
                            "--holdout", "0.2", "--no-progress"])
    assert code == 0, err
    code, out, err = run_cli(["diagnose", "--store", store, "--against", "holdout", "--out", tmp_path / "rep"])
    assert code == 0, err
    assert (tmp_path / "rep" / "holdout.csv").exists() and "knn_score" in out
    code, out, err = run_cli(["curate", "--store", store, "--recipe", "auto", "--out", tmp_path / "c.parquet"])
    assert code == 0, err
    assert "auto chose knn_" in out
    man = json.loads((tmp_path / "c.parquet.manifest.json").read_text())
    assert man["config"]["options"]["chosen_column"].startswith("knn_")
    # a second scorer: consensus is defined, the report shows it, --signal picks another signal
    code, _, err = run_cli(["score", "--source", sp, "--target", tp, "--scorers", "ot", "--store", store,
                            "--holdout", "0.2", "--no-progress"])
    assert code == 0, err
    code, _, err = run_cli(["diagnose", "--store", store, "--against", "holdout", "--out", tmp_path / "rep2"])
    assert code == 0, err
    assert "consensus" in (tmp_path / "rep2" / "report.md").read_text()
    code, out, err = run_cli(["curate", "--store", store, "--recipe", "auto", "--signal", "matched_win",
                              "--out", tmp_path / "m.parquet"])
    assert code == 0, err
    assert "by matched_win" in out
    code, _, err = run_cli(["curate", "--store", store, "--recipe", "auto", "--signal", "vibes",
                            "--out", tmp_path / "v.parquet"])
    assert code == 1 and err.count("error:") == 1 and "signal 'vibes'" in err and "Traceback" not in err
