"""Streaming curation writes the same file as the in-memory export, without loading the source."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from xcurate.curate.recipes import curate_to_file
from xcurate.curate.stream import SourceIndex, curate_stream
from xcurate.datasets.collect import collect
from xcurate.datasets.io import load_dataset, manifest_path
from xcurate.errors import ConfigError
from xcurate.scoring.base import make_scorer
from xcurate.scoring.store import Store, dataset_to_table


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    source = collect("hopper", "random", 700, seed=3, progress=False, quality="random")
    target = collect("hopper-gravity-0.5", "random", 300, seed=4, progress=False, quality="random")
    st = Store.create(tmp_path_factory.mktemp("store") / "s", source, target)
    st.run(make_scorer("knn"), progress=False)
    return st


def _no_load(monkeypatch):
    def refuse(self):
        raise AssertionError("streaming curation must not load the whole source")

    monkeypatch.setattr(Store, "load_source", refuse)


def _same_file(a, b):
    """Two curated Parquet files hold the same dataset: every column bitwise, same metadata."""
    da, db = load_dataset(a), load_dataset(b)
    ca, cb = da.columns(), db.columns()
    assert list(ca) == list(cb)  # same columns in the same order
    for k in ca:
        assert ca[k].dtype == cb[k].dtype and np.array_equal(ca[k], cb[k]), k
    ma, mb = dict(da.metadata), dict(db.metadata)
    ma["curation"], mb["curation"] = dict(ma["curation"]), dict(mb["curation"])
    assert ma["curation"].pop("seconds") >= 0 and mb["curation"].pop("seconds") >= 0
    assert ma == mb
    return da, db


@pytest.mark.parametrize("recipe, options, drop", [
    ("none", {}, False),
    ("otdf", {"proportion": 0.4, "column": "knn_score"}, True),
    ("sql", {"where": "knn_score > (SELECT median(knn_score) FROM scores)", "weight": "exp(knn_score)"}, True),
    ("random", {"fraction": 0.3, "seed": 5}, False),
])
def test_stream_equals_in_memory_export(store, tmp_path, monkeypatch, recipe, options, drop):
    ref = curate_to_file(store, recipe, tmp_path / "ref.parquet", drop_unkept=drop, **options)[1]
    _no_load(monkeypatch)
    info, path = curate_stream(store, recipe, tmp_path / "s.parquet", drop_unkept=drop, batch_rows=97, **options)
    da, _ = _same_file(path, ref)
    assert info["rows"] == len(da) and len(info["keep"]) == 700
    assert info["rows"] == (int(info["keep"].sum()) if drop else 700)
    assert pq.ParquetFile(path).metadata.num_row_groups > 1  # written batch by batch
    man, ref_man = json.loads(manifest_path(path).read_text()), json.loads(manifest_path(ref).read_text())
    assert man["fingerprint"] == da.fingerprint() == ref_man["fingerprint"]
    assert man["episodes"] == ref_man["episodes"] and man["columns"] == ref_man["columns"]
    assert man["config"]["streamed"] is True and man["config"]["recipe"] == recipe


def test_cuts_across_batch_boundaries(store, tmp_path):
    """Every batch size gives the same cuts as mark_cuts() on the whole kept set (a cut needs the next kept row)."""
    opts = {"where": "transition_id % 3 <> 1"}  # keeps 2 of every 3 rows: many cuts, at every batch edge
    ref = load_dataset(curate_to_file(store, "sql", tmp_path / "ref.parquet", drop_unkept=True, **opts)[1])
    assert ref.metadata["xcurate_cuts"] > 100
    for b in (1, 2, 7, 700, 5000):
        got = load_dataset(curate_stream(store, "sql", tmp_path / f"b{b}.parquet", drop_unkept=True,
                                         batch_rows=b, **opts)[1])
        assert np.array_equal(got.extras["cut"], ref.extras["cut"]) and np.array_equal(got.timeouts, ref.timeouts)
        assert got.metadata["xcurate_cuts"] == ref.metadata["xcurate_cuts"]


def test_hive_partitioned_source(tmp_path):
    source = collect("hopper", "random", 400, seed=6, progress=False, quality="random")
    target = collect("hopper-gravity-0.5", "random", 200, seed=7, progress=False, quality="random")
    table = dataset_to_table(source)
    lake = tmp_path / "lake"
    for policy, idx in {"a": np.arange(0, 250), "b": np.arange(250, 400)}.items():
        (lake / f"policy={policy}").mkdir(parents=True)
        pq.write_table(table.take(idx), lake / f"policy={policy}" / "part-0.parquet")
    st = Store.create(tmp_path / "s", lake, target)
    st.run(make_scorer("knn"), progress=False)
    assert (st.dir / "transitions.parquet").is_dir()
    ref = curate_to_file(st, "otdf", tmp_path / "ref.parquet", column="knn_score", drop_unkept=True)[1]
    path = curate_stream(st, "otdf", tmp_path / "s.parquet", column="knn_score", drop_unkept=True, batch_rows=64)[1]
    _same_file(path, ref)


def test_source_index_reads_two_columns(store):
    idx = SourceIndex.of_store(store.dir / "transitions.parquet", batch_rows=50)
    src = store.load_source()
    assert len(idx) == len(src) and np.array_equal(idx.transition_ids, src.transition_ids)
    assert np.array_equal(idx.rewards, src.rewards)


def test_stream_refuses_other_formats_and_bad_batches(store, tmp_path):
    with pytest.raises(ConfigError, match="writes Parquet only"):
        curate_stream(store, "none", tmp_path / "x.hdf5")
    with pytest.raises(ConfigError, match="batch_rows must be >= 1"):
        curate_stream(store, "none", tmp_path / "x.parquet", batch_rows=0)
    with pytest.raises(ConfigError, match="unknown recipe"):
        curate_stream(store, "nope", tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_cli_streams_parquet_and_loads_hdf5(store, tmp_path, run_cli, monkeypatch):
    code, out, err = run_cli(["curate", "--store", store.dir, "--recipe", "random", "--fraction", "0.25",
                              "--drop-unkept", "--out", tmp_path / "c.parquet"])
    assert code == 0, err
    man = json.loads(manifest_path(tmp_path / "c.parquet").read_text())
    assert man["config"]["streamed"] is True and man["transitions"] == 175  # ceil(0.25 * 700)
    assert "700" in out and "175" in out and "25.0" in out  # rows = source rows, kept, kept %
    code, out2, err = run_cli(["curate", "--store", store.dir, "--recipe", "random", "--fraction", "0.25",
                               "--drop-unkept", "--out", tmp_path / "c.hdf5"])
    assert code == 0, err
    assert "streamed" not in json.loads(manifest_path(tmp_path / "c.hdf5").read_text())["config"]
    assert "700" in out2 and "175" in out2 and "25.0" in out2  # the same table either way
    h, p = load_dataset(tmp_path / "c.hdf5"), load_dataset(tmp_path / "c.parquet")
    assert np.array_equal(h.transition_ids, p.transition_ids) and np.array_equal(h.timeouts, p.timeouts)
