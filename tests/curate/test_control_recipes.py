"""Control recipes: ``oracle`` (the ceiling, true target dynamics) and ``random`` (the floor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from xcurate.curate.recipes import curate, oracle_selection, random_selection
from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError, DataError
from xcurate.scoring.base import ColumnSpec, Scorer, make_scorer
from xcurate.scoring.store import Store


@dataclass
class PlantedOracle(Scorer):
    """Writes oracle columns from the planted label: gap 0 on target-dynamics rows, > 0 elsewhere."""

    name: ClassVar[str] = "planted_oracle"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "oracle_dynamics_gap": ColumnSpec("lower", "", "test"), "oracle_bellman_error": ColumnSpec("lower", "", "test")}
    chunk_size: ClassVar[int] = 1000

    def score(self, chunk):
        p = chunk.extras["planted"].astype(float)
        gap = (1 - p) * (0.5 + (chunk.transition_ids % 7) / 7.0)
        return {"oracle_dynamics_gap": gap, "oracle_bellman_error": 2 * gap + 1e-3}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    target, source = planted_shift(n_target=100, n_source=300, obs_dim=5, act_dim=2, seed=4)
    st = Store.create(tmp_path_factory.mktemp("store") / "s", source, target)
    st.run(PlantedOracle(), progress=False)
    return st


def test_oracle_selection_modes_by_hand():
    v = np.array([0.0, 3.0, 1e-9, 2.0, np.nan, 1.0])
    w, k, _ = oracle_selection(v, fraction=0.5, mode="keep")
    assert k.tolist() == [True, False, True, False, False, True]  # ceil(0.5 * 5 finite) = 3 lowest
    assert w[k].tolist() == [1.0, 1.0, 1.0]
    w, k, used = oracle_selection(v, mode="exact", tolerance=1e-6)
    assert k.tolist() == [True, False, True, False, False, False] and used["tolerance"] == 1e-6
    w, k, used = oracle_selection(v, mode="weight", temperature=1.0)
    assert k.tolist() == [True, True, True, True, False, True]
    e = np.exp(-np.array([0.0, 3.0, 1e-9, 2.0, 1.0]))
    np.testing.assert_allclose(w[k], e / e.mean())
    w, k, used = oracle_selection(v, fraction=0.5, mode="both")  # T = mean of the kept (0, 1e-9, 1)
    t = (1 + 1e-9) / 3
    assert used["temperature"] == pytest.approx(t)
    e = np.exp(-np.array([0.0, 1e-9, 1.0]) / t)
    assert k.sum() == 3 and np.allclose(w[[0, 2, 5]], e / e.mean())
    w, k, _ = oracle_selection(np.array([0.0, 1e3]), mode="weight", temperature=1.0)
    assert w[1] == 1e-6  # floored: a kept row keeps a positive weight
    with pytest.raises(DataError, match="raise the tolerance"):
        oracle_selection(np.array([0.5, 1.0]), mode="exact")
    with pytest.raises(ConfigError, match="mode must be one of"):
        oracle_selection(v, mode="best")


def test_random_selection_is_uniform_and_seeded():
    k = random_selection(1000, 0.3, seed=1)
    assert k.sum() == 300
    assert np.array_equal(k, random_selection(1000, 0.3, seed=1))
    assert not np.array_equal(k, random_selection(1000, 0.3, seed=2))
    assert abs(k[:500].sum() - k[500:].sum()) < 60  # no bias to either half
    with pytest.raises(ConfigError, match="fraction"):
        random_selection(10, 0.0)


def test_oracle_and_random_on_a_store(store):
    planted = store.load_source().extras["planted"] == 1
    ex = curate(store, "oracle", mode="exact")
    assert np.array_equal(ex.extras["keep"], planted)  # exactly the target-dynamics rows
    frac = ex.extras["keep"].mean()
    ke = curate(store, "oracle", fraction=0.25)
    assert ke.extras["keep"].sum() == 75 and ke.extras["keep"][~planted].sum() == 0
    be = curate(store, "oracle", column="oracle_bellman_error", mode="weight")
    assert be.extras["keep"].all() and be.extras["weight"][planted].min() > be.extras["weight"][~planted].max()
    assert be.metadata["curation"]["options"]["column"] == "oracle_bellman_error"
    rnd = curate(store, "random", fraction=float(frac), seed=3)
    assert rnd.extras["keep"].sum() == ex.extras["keep"].sum()  # the same kept fraction
    assert (rnd.extras["weight"][rnd.extras["keep"]] == 1).all()
    assert rnd.metadata["curation"]["options"] == {"fraction": float(frac), "seed": 3}
    # the random keep is not the oracle's: it draws from both kinds of rows
    assert 0 < rnd.extras["keep"][planted].sum() < planted.sum()


def test_oracle_without_oracle_columns_names_the_command(tmp_path, run_cli):
    target, source = planted_shift(n_target=50, n_source=80, obs_dim=5, act_dim=2, seed=5)
    bare = Store.create(tmp_path / "bare", source, target, domain="hopper-gravity-0.5")
    bare.run(make_scorer("knn"), progress=False)
    with pytest.raises(ConfigError, match=r"xcurate score --store .*bare --scorers oracle --domain hopper-gravity-0.5"):
        curate(bare, "oracle")
    code, _, err = run_cli(["curate", "--store", bare.dir, "--recipe", "oracle", "--out", tmp_path / "o.parquet"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--scorers oracle" in err
    code, out, err = run_cli(["curate", "--store", bare.dir, "--recipe", "random", "--fraction", "0.5",
                              "--seed", "1", "--out", tmp_path / "r.parquet"])
    assert code == 0, err
    assert "40" in out


def test_oracle_exact_on_real_mixed_dynamics(tmp_path):
    """A source mixing the unshifted robot with a slice of the target's own dynamics: exact keeps the slice."""
    from xcurate.datasets.collect import collect
    from xcurate.datasets.ops import combine

    tgt_dom = "hopper-gravity-2.0"
    src = combine([collect("hopper", "random", 150, seed=0, progress=False),
                   collect(tgt_dom, "random", 100, seed=1, progress=False)])
    target = collect(tgt_dom, "random", 100, seed=2, progress=False)
    st = Store.create(tmp_path / "s", src, target, domain=tgt_dom)
    st.run(make_scorer("oracle"), progress=False)
    ds = curate(st, "oracle", mode="exact", tolerance=1e-6)
    dom = np.array(st.query("SELECT domain FROM scores ORDER BY transition_id").column("domain").to_pylist())
    assert np.array_equal(ds.extras["keep"], dom == tgt_dom)
