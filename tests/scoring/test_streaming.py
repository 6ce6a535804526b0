"""Streaming scoring: the source is read in batches, chunks come from per-chunk input files, the fit sees a
bounded seeded sample, and nothing materialises the whole source."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from xcurate.datasets.synthetic import planted_shift
from xcurate.datasets.transitions import TransitionDataset
from xcurate.scoring import engine as eng
from xcurate.scoring.base import ColumnSpec, Scorer, make_scorer
from xcurate.scoring.store import Store, row_hash, table_to_dataset

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data() -> tuple[TransitionDataset, TransitionDataset]:
    target, source = planted_shift(n_target=150, n_source=700, seed=4)
    source.rewards[[3, 400]] = np.nan
    return target, source


@dataclass
class FitRecorder(Scorer):
    """Records the source transition ids its fit saw; scores = first observation feature."""

    name: ClassVar[str] = "fitrec"
    columns: ClassVar[dict[str, ColumnSpec]] = {"fitrec_x": ColumnSpec("higher", "(-inf, inf)", "obs[0]")}
    primary: ClassVar[str] = "fitrec_x"
    chunk_size: ClassVar[int] = 128
    seen: ClassVar[list] = []

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> FitRecorder:
        self.check_inputs(target, source)
        FitRecorder.seen.append(np.sort(source.transition_ids))
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        return {"fitrec_x": chunk.observations[:, 0].astype(np.float64)}


def test_source_pass_equals_the_materialised_mask_and_hash(tmp_path, data):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    ids, finite, h = eng.source_pass(st.dir / "transitions.parquet", seed=3, batch_rows=37)  # many batches
    assert np.array_equal(ids, source.transition_ids)
    assert np.array_equal(finite, source.finite_mask()) and finite.sum() == len(source) - 2
    assert np.array_equal(h, row_hash(source, np.arange(len(source)), seed=3))


def test_chunk_inputs_hold_exactly_their_rows_in_file_order(tmp_path, data, monkeypatch):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    monkeypatch.setattr(eng, "MAX_OPEN_WRITERS", 2)  # several passes over the file
    rng = np.random.default_rng(0)
    assign = rng.integers(-1, 5, size=len(source)).astype(np.int32)
    outs = {k: tmp_path / f"in-{k}.parquet" for k in (0, 2, 3, 4)}  # chunk 1 is not wanted
    eng.write_chunk_inputs(st.dir / "transitions.parquet", assign, outs, batch_rows=50)
    assert not (tmp_path / "in-1.parquet").exists() and not list(tmp_path.glob(".*tmp*"))
    for k, p in outs.items():
        got = table_to_dataset(pq.read_table(p))
        want = source.select(np.flatnonzero(assign == k))
        assert got.fingerprint() == want.fingerprint()


def test_scoring_never_materialises_the_source(tmp_path, data, monkeypatch):
    target, source = data
    ref = Store.create(tmp_path / "ref", source, target)
    ref_rid = ref.run(make_scorer("knn"), progress=False, holdout=0.2)
    st = Store.create(tmp_path / "s", source, target)

    def boom(self):
        raise AssertionError("the whole source was loaded")

    monkeypatch.setattr(Store, "load_source", boom)
    rid = Store(st.dir).run(make_scorer("knn"), progress=False, holdout=0.2)
    assert rid == ref_rid
    for f in ("scores.parquet", "holdout.parquet"):
        assert pq.read_table(st.dir / "runs" / rid / f).equals(pq.read_table(ref.dir / "runs" / rid / f))


def test_fit_sees_a_bounded_seeded_content_sample(tmp_path, data):
    target, source = data
    finite = np.flatnonzero(source.finite_mask())
    FitRecorder.seen = []
    st = Store.create(tmp_path / "s", source, target)
    rid_all = st.run(FitRecorder(seed=5), progress=False)
    rid = st.run(FitRecorder(seed=5), progress=False, fit_source_rows=100)
    assert rid != rid_all  # the sample size is part of the run id once it is smaller than the source
    assert st.run_id(FitRecorder(seed=5), fit_source_rows=10_000) == rid_all
    all_ids, sample = FitRecorder.seen
    assert np.array_equal(all_ids, np.sort(source.transition_ids[finite]))
    h = row_hash(source, finite, seed=5)
    assert np.array_equal(sample, np.sort(source.transition_ids[finite[np.argsort(h, kind="stable")[:100]]]))
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["fit_source"] == {"rows": 100, "of": len(finite), "max": 100,
                               "sample": "first rows of the content-hash order"}
    # the sample depends on the rows' content, not on the file order
    perm = np.random.default_rng(1).permutation(len(source))
    st2 = Store.create(tmp_path / "p", source.select(perm), target)
    st2.run(FitRecorder(seed=5), progress=False, fit_source_rows=100)
    assert np.array_equal(FitRecorder.seen[-1], sample)
    with pytest.raises(Exception, match="--fit-source-rows must be >= 1"):
        st.run(FitRecorder(seed=5), progress=False, fit_source_rows=0)


def _hive_source(tmp_path, source: TransitionDataset):
    """The source as a hive-partitioned directory policy=a|b/part-0.parquet in the store layout (a rows first)."""
    from xcurate.scoring.store import dataset_to_table

    table = dataset_to_table(source)
    lake = tmp_path / "lake"
    rows = {"a": np.flatnonzero(source.extras["planted"] == 0), "b": np.flatnonzero(source.extras["planted"] == 1)}
    for policy, idx in rows.items():
        (lake / f"policy={policy}").mkdir(parents=True)
        pq.write_table(table.take(idx), lake / f"policy={policy}" / "part-0.parquet")
    return lake, source.select(np.concatenate([rows["a"], rows["b"]])), {k: len(v) for k, v in rows.items()}


def test_hive_partitioned_source_is_streamed_and_read_as_one_table(tmp_path, data, monkeypatch):
    target, source = data
    lake, concat, counts = _hive_source(tmp_path, source)
    from xcurate.scoring import store as store_mod

    real_load = store_mod._load_dataset

    def load(spec, what):
        assert what == "target", "the partitioned source must not go through the in-memory loaders"
        return real_load(spec, what)

    monkeypatch.setattr(store_mod, "_load_dataset", load)
    st = Store.create(tmp_path / "s", lake, target)
    assert st.info["source"]["fingerprint"] == concat.fingerprint()  # streamed fingerprint == in-memory one
    assert st.info["source"]["n"] == len(source) and st.info["source"]["partitions"] == ["policy"]
    assert Store.create(tmp_path / "s", lake, target).dir == st.dir  # same data: reopened
    got = st.query("SELECT policy, count(*) AS n FROM transitions GROUP BY 1 ORDER BY 1").to_pylist()
    assert got == [{"policy": "a", "n": counts["a"]}, {"policy": "b", "n": counts["b"]}]
    rid = st.run(make_scorer("knn"), progress=False)
    monkeypatch.setattr(store_mod, "_load_dataset", real_load)
    ref = Store.create(tmp_path / "ref", concat, target)
    assert ref.run(make_scorer("knn"), progress=False) == rid  # same fingerprint, same run
    assert pq.read_table(st.dir / "runs" / rid / "scores.parquet").equals(
        pq.read_table(ref.dir / "runs" / rid / "scores.parquet"))
    scored = st.query("SELECT policy, count(knn_score) AS n FROM scores GROUP BY 1 ORDER BY 1").to_pylist()
    assert [r["policy"] for r in scored] == ["a", "b"] and sum(r["n"] for r in scored) == len(source) - 2
    assert st.load_source().fingerprint() == concat.fingerprint()


def test_a_store_layout_file_is_streamed_with_the_same_fingerprint(tmp_path, data):
    target, source = data
    first = Store.create(tmp_path / "a", source, target)
    again = Store.create(tmp_path / "b", first.dir / "transitions.parquet", target)
    assert again.info["source"]["fingerprint"] == source.fingerprint()
    assert eng.stream_fingerprint(first.dir / "transitions.parquet", batch_rows=33) == source.fingerprint()
