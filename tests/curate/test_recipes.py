"""Curation recipes on a small real store (knn scorer + a column-writing test scorer)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from xcurate.curate.recipes import RECIPES, curate, curate_to_file, fetch_scores
from xcurate.datasets.io import load_dataset, read_manifest
from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError, DataError, StoreError
from xcurate.scoring.base import ColumnSpec, Scorer, make_scorer
from xcurate.scoring.store import Store

torch.set_num_threads(1)
COLS = ["ot_score", "contrastive_score", "advantage_norm", "tbm", "tbm_y_hat", "ensemble_penalty", "dara_delta_r"]


@dataclass
class PlantedColumns(Scorer):
    """Writes the score columns the recipes read, computed from the planted label and reward.

    Rows generated under the target dynamics (planted == 1) get better scores, so every recipe
    should favour them. Not registered: only this test uses it.
    """

    name: ClassVar[str] = "planted_columns"
    columns: ClassVar[dict[str, ColumnSpec]] = {c: ColumnSpec("none", "", "test column") for c in COLS}
    chunk_size: ClassVar[int] = 1000

    def score(self, chunk):
        p = chunk.extras["planted"].astype(float)
        r = chunk.rewards
        rn = (r - r.min()) / (np.ptp(r) + 1e-9)
        return {"ot_score": p - 1 - 0.1 * rn, "contrastive_score": 0.9 * (2 * p - 1) + 0.05 * rn,
                "advantage_norm": rn, "tbm": 1 - p + 0.1 * rn, "tbm_y_hat": 10 * r,
                "ensemble_penalty": 2 * (1 - p), "dara_delta_r": 30 * (p - 0.5)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    target, source = planted_shift(n_target=150, n_source=300, obs_dim=11, act_dim=3, seed=4)
    st = Store.create(tmp_path_factory.mktemp("store") / "s", source, target)
    st.run(make_scorer("knn"), progress=False)
    st.run(PlantedColumns(), progress=False)
    return st


@pytest.mark.parametrize("recipe", sorted(set(RECIPES) - {"sql", "oracle", "random", "auto"}))  # controls: test_control_recipes.py; auto: tests/scoring/test_holdout_auto.py
def test_each_recipe(store, recipe):
    ds = curate(store, recipe)
    w, keep, planted = ds.extras["weight"], ds.extras["keep"], ds.extras["planted"] == 1
    assert w.dtype == np.float32 and keep.dtype == bool and len(ds) == 300
    assert (w[~keep] == 0).all() and (w[keep] > 0).all()
    assert ds.metadata["curation"]["recipe"] == recipe
    assert set(ds.metadata["curation"]["store_runs"]) == {"knn", "planted_columns"}
    if recipe in ("otdf", "igdf", "dvdf", "tabb"):
        assert w[planted].mean() > w[~planted].mean()  # target-dynamics rows are favoured
    expected_kept = {"none": 300, "otdf": 240, "igdf": 225, "dvdf": 150, "tabb": 300, "droco": 300, "dara": 300}
    assert keep.sum() == expected_kept[recipe]
    if recipe == "otdf":
        kept = w[keep]
        assert kept.max() == pytest.approx(1.0) and kept.min() >= np.exp(-1) - 1e-6
        ot = fetch_scores(store, ds, ["ot_score"], "otdf")["ot_score"].astype(np.float32)
        assert np.array_equal(ds.extras["score"], ot)  # the raw ot_score column, kept for per-batch use
    if recipe == "tabb":
        assert w.mean() == pytest.approx(1.0, rel=1e-5)
        assert np.allclose(ds.extras["y_hat"], 10 * ds.rewards, atol=1e-4)
    if recipe == "droco":
        assert np.allclose(ds.extras["penalty"], 2 * (~planted))
    if recipe == "dara":
        assert np.abs(ds.extras["delta_r"]).max() <= 10  # clipped to [-10, 10]
        assert np.allclose(ds.extras["corrected_reward"], ds.rewards + 0.1 * ds.extras["delta_r"], atol=1e-5)


def test_sql_recipe(store):
    knn = store.query("SELECT transition_id, knn_score FROM scores ORDER BY transition_id").column("knn_score")
    knn = np.asarray(knn.to_numpy())
    thr = float(np.median(knn))
    ds = curate(store, "sql", where=f"knn_score > {thr} AND ot_score > -0.5", weight="exp(knn_score)")
    keep = ds.extras["keep"]
    assert 0 < keep.sum() < 150
    assert np.array_equal(keep, (knn > thr) & (ds.extras["planted"] == 1))
    assert np.allclose(ds.extras["weight"][keep], np.exp(knn[keep]), rtol=1e-5)
    with pytest.raises(StoreError, match="query failed"):
        curate(store, "sql", where="no_such_column > 0")
    with pytest.raises(DataError, match="keeps no transition"):
        curate(store, "sql", where="FALSE")
    with pytest.raises(DataError, match="negative"):
        curate(store, "sql", weight="knn_score - 100")


def test_errors(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown recipe"):
        curate(store, "magic")
    with pytest.raises(ConfigError, match="unknown option"):
        curate(store, "otdf", xi=0.3)
    target, source = planted_shift(n_target=50, n_source=80, obs_dim=11, act_dim=3, seed=5)
    bare = Store.create(tmp_path / "bare", source, target)
    bare.run(make_scorer("knn"), progress=False)
    with pytest.raises(ConfigError, match="--scorers ot"):
        curate(bare, "otdf")
    with pytest.raises(ConfigError, match="--scorers tbm"):
        curate(bare, "tabb")


def test_export_formats_and_manifest(store, tmp_path):
    for out, fmt in ((tmp_path / "c.parquet", None), (tmp_path / "c.hdf5", None), (tmp_path / "mini", "minari")):
        ds, path = curate_to_file(store, "igdf", out, format=fmt)
        back = load_dataset(path)
        assert np.array_equal(back.extras["keep"].astype(bool), ds.extras["keep"])
        assert np.allclose(back.extras["weight"], ds.extras["weight"])
        man = read_manifest(path)
        assert man["config"]["recipe"] == "igdf" and man["config"]["options"]["xi"] == 0.75
        assert "scores:knn" in man["inputs"]
    ds, path = curate_to_file(store, "dvdf", tmp_path / "d.parquet", drop_unkept=True)
    assert len(load_dataset(path)) == 150


def test_cli_curate_then_train(store, tmp_path, run_cli):
    out = tmp_path / "cur.parquet"
    code, stdout, err = run_cli(["curate", "--store", store.dir, "--recipe", "otdf", "--proportion", "0.5",
                                 "--out", out])
    assert code == 0, err
    assert "150" in stdout
    man = read_manifest(out)
    assert man["config"]["options"]["proportion"] == 0.5
    code, _, err = run_cli(["curate", "--store", store.dir, "--recipe", "otdf", "--where", "x", "--out", out])
    assert code == 1 and "--recipe sql" in err
    code, _, err = run_cli(["curate", "--store", tmp_path / "nostore", "--recipe", "none", "--out", out])
    assert code == 1 and "store" in err
    # the curated file trains (per-batch OTDF variant reads its raw score column)
    tgt = tmp_path / "target.parquet"
    from xcurate.datasets.io import save_dataset

    save_dataset(store.load_target(), tgt)
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--target", tgt, "--source", out, "--domain", "hopper", "--steps", "10",
                            "--variant", "otdf", "--set", "hidden_dim=16", "--set", "cvae_steps=5",
                            "--set", "cvae_hidden=16", "--eval-episodes", "0", "--no-progress", "--out", run])
    assert code == 0, err
    conf = json.loads((run / "config.json").read_text())
    assert conf["iql"]["batch_norm"] == "otdf" and conf["iql"]["bc_weight"] == 0.5
