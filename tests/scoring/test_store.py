"""Score store: creation, caching, resumable runs, NaN handling, SQL views, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow.parquet as pq
import pytest

from xcurate.datasets.io import save_dataset
from xcurate.datasets.synthetic import planted_shift
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, StoreError
from xcurate.scoring.base import ColumnSpec, Scorer, make_scorer
from xcurate.scoring.scorer_knn import KNNScorer
from xcurate.scoring.store import Store, parse_settings, score_datasets


@pytest.fixture(scope="module")
def data() -> tuple[TransitionDataset, TransitionDataset]:
    target, source = planted_shift(n_target=200, n_source=500, seed=1)
    source.metadata["quality"] = "medium"
    return target, source


@dataclass
class ProjScorer(Scorer):
    """A seeded, stochastic test scorer: random projection fitted from the seed (tests re-fit on resume)."""

    name: ClassVar[str] = "proj"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "proj_score": ColumnSpec("higher", "(-inf, inf)", "random projection"),
        "proj_flag": ColumnSpec("none", "{0, 1}", "sign flag"),
    }
    primary: ClassVar[str] = "proj_score"
    chunk_size: ClassVar[int] = 64
    fail_after: ClassVar[int | None] = None  # class-level so it does not enter the config/run id

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> ProjScorer:
        self.check_inputs(target, source)
        rng = np.random.default_rng(self.seed)
        self._w = rng.normal(size=target.obs_dim)
        self._calls = 0
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        if self.fail_after is not None and self._calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self._calls += 1
        s = chunk.next_observations @ self._w
        return {"proj_score": s, "proj_flag": s > 0}


@dataclass
class FailingProj(ProjScorer):
    fail_after: ClassVar[int | None] = 3


@dataclass
class FailingKNN(KNNScorer):
    chunk_size: ClassVar[int] = 100
    calls: ClassVar[int] = 0

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        if FailingKNN.calls >= 2:
            raise RuntimeError("simulated crash")
        FailingKNN.calls += 1
        return super().score(chunk)


def test_create_and_reopen_lossless(tmp_path, data):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    info = json.loads((tmp_path / "s" / "store.json").read_text())
    assert info["format_version"] == 1 and info["source"]["n"] == len(source)
    again = Store(tmp_path / "s")
    assert again.load_source().fingerprint() == source.fingerprint()
    assert again.load_target().fingerprint() == target.fingerprint()
    assert again.load_source().metadata["quality"] == "medium"
    cols = pq.read_schema(tmp_path / "s" / "transitions.parquet").names
    for c in ("transition_id", "episode_id", "step", "reward", "terminal", "timeout", "episode_return",
              "quality", "obs", "act", "next_obs", "planted"):
        assert c in cols
    # create on the same data reopens; on other data refuses
    assert Store.create(tmp_path / "s", source, target).info == st.info
    with pytest.raises(StoreError, match="another source"):
        Store.create(tmp_path / "s", target, target)


def test_open_errors(tmp_path, data):
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="not an xcurate score store"):
        Store(tmp_path / "empty")
    target, source = data
    Store.create(tmp_path / "s", source, target)
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "s" / "store.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="format_version 99"):
        Store(tmp_path / "s")
    (tmp_path / "s" / "store.json").unlink()
    with pytest.raises(StoreError, match="half-written"):
        Store(tmp_path / "s")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        Store.create(tmp_path / "other", source, target)


def test_run_cached_and_new_config(tmp_path, data):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    rid = st.run(make_scorer("knn", k=3), progress=False)
    m1 = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m1["status"] == "complete" and m1["n_rows"] == len(source) and m1["kind"] == "score_run"
    assert m1["columns"]["knn_distance"]["direction"] == "lower"
    assert set(m1["inputs"]) == {"source", "target"} and m1["inputs"]["source"]["sha256"]
    assert not (st.dir / "runs" / rid / "chunks").exists()
    # same config + seed + inputs: cached no-op (manifest untouched)
    assert st.run(make_scorer("knn", k=3), progress=False) == rid
    assert json.loads((st.dir / "runs" / rid / "manifest.json").read_text()) == m1
    # device does not change the run; a changed setting does
    assert st.run(make_scorer("knn", k=3, device="cpu"), progress=False) == rid
    rid2 = st.run(make_scorer("knn", k=1), progress=False)
    assert rid2 != rid and rid2.startswith("knn-")
    # the knn view and scores view use the latest complete run
    runs = st.query("SELECT run_id, current FROM runs ORDER BY run_id").to_pylist()
    assert {r["run_id"]: r["current"] for r in runs} == {rid: False, rid2: True}
    k1 = st.query("SELECT knn_distance FROM knn ORDER BY transition_id").column(0).to_numpy()
    fresh = make_scorer("knn", k=1).fit(target, source).score(source)["knn_distance"]
    np.testing.assert_allclose(k1, fresh)


@dataclass
class _KNN100(KNNScorer):
    chunk_size: ClassVar[int] = 100


def test_scorer_code_version_is_part_of_the_cache_key(tmp_path, data, monkeypatch):
    """Same settings but changed maths (version bump) must not reuse the stale run."""
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    rid = st.run_id(make_scorer("knn", k=3))
    monkeypatch.setattr(KNNScorer, "version", KNNScorer.version + 1)
    assert st.run_id(make_scorer("knn", k=3)) != rid


@pytest.mark.parametrize("kind", ["proj", "knn"])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, data, kind):
    """Kill a run after k chunks, resume it with the real scorer: identical to an uninterrupted run."""
    target, source = data

    def real() -> Scorer:
        return ProjScorer(seed=7) if kind == "proj" else _KNN100()

    full = Store.create(tmp_path / "full", source, target)
    ref_id = full.run(real(), progress=False)
    ref = full.query(f"SELECT * FROM {kind} ORDER BY transition_id")

    st = Store.create(tmp_path / "s", source, target)
    FailingKNN.calls = 0
    failing = FailingProj(seed=7) if kind == "proj" else FailingKNN()
    with pytest.raises((KeyboardInterrupt, RuntimeError)):
        st.run(failing, progress=False)
    rid = st.run_id(failing)
    assert rid == ref_id  # same name, config, seed, chunking and data
    chunks = sorted((st.dir / "runs" / rid / "chunks").glob("part-*.parquet"))
    assert len(chunks) == (3 if kind == "proj" else 2)
    assert json.loads((st.dir / "runs" / rid / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(StoreError):  # no complete run yet: no view
        st.query(f"SELECT * FROM {kind}")
    # resume: re-fit (seeded), only the missing chunks are scored
    assert st.run(real(), progress=False) == rid
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["status"] == "complete" and m["reused_chunks"] == len(chunks) and m["sessions"] == 2
    got = st.query(f"SELECT * FROM {kind} ORDER BY transition_id")
    ids = got.column("transition_id").to_numpy()
    assert len(ids) == len(source) and len(np.unique(ids)) == len(source)  # every row exactly once
    assert got.equals(ref)


def test_nonfinite_rows_are_null_and_reported(tmp_path, data, capsys):
    target, source = data
    src = source.select(np.arange(len(source)))
    src.observations = src.observations.copy()
    src.observations[[3, 10], 0] = np.nan
    src.rewards = src.rewards.copy()
    src.rewards[20] = np.inf
    st = Store.create(tmp_path / "s", src, target)
    rid = st.run(make_scorer("knn"), progress=False)
    err = capsys.readouterr().err
    assert "3 source row(s) contain NaN/Inf" in err
    m = json.loads((st.dir / "runs" / rid / "manifest.json").read_text())
    assert m["n_nonfinite"] == 3 and m["n_scored"] == len(src) - 3 and m["n_null"]["knn_score"] == 3
    nulls = st.query("SELECT transition_id FROM scores WHERE knn_score IS NULL ORDER BY 1").column(0).to_pylist()
    assert nulls == [3, 10, 20]
    assert st.query("SELECT count(*) FROM scores").column(0)[0].as_py() == len(src)


def test_query_views_and_errors(tmp_path, data):
    target, source = data
    st = score_datasets(source, target, ["knn", ProjScorer(seed=1)], tmp_path / "s", settings={"knn": {"k": 2}})
    cols = st.query("SELECT * FROM scores LIMIT 1").column_names
    assert cols[:6] == ["transition_id", "episode_id", "step", "reward", "episode_return", "quality"]
    assert {"knn_distance", "knn_score", "proj_score", "proj_flag"} <= set(cols)
    dec = st.query("SELECT ntile(10) OVER (ORDER BY knn_score) AS d, planted FROM scores "
                   "JOIN transitions USING (transition_id)")
    assert dec.num_rows == len(source)
    runs = st.query("SELECT scorer, status, n_rows, config FROM runs ORDER BY scorer").to_pylist()
    assert [r["scorer"] for r in runs] == ["knn", "proj"] and json.loads(runs[0]["config"])["k"] == 2
    assert st.query("SELECT count(*) FROM target").column(0)[0].as_py() == len(target)
    spec = st.score_columns()
    assert spec["knn_distance"].direction == "lower" and spec["proj_flag"].direction == "none"
    for bad, needle in [("SELECT nope FROM scores", "nope"), ("SELECT * FROM nope", "nope"),
                        ("SELEC 1", "syntax")]:
        with pytest.raises(StoreError, match=needle) as e:
            st.query(bad)
        assert "\n" not in str(e.value)


def test_bad_scorer_output_and_settings(tmp_path, data):
    target, source = data

    @dataclass
    class Bad(Scorer):
        name: ClassVar[str] = "bad"
        columns: ClassVar[dict[str, ColumnSpec]] = {"bad_x": ColumnSpec("higher", "", "")}

        def score(self, chunk):
            return {"bad_x": np.zeros(len(chunk) + 1)}

    st = Store.create(tmp_path / "s", source, target)
    with pytest.raises(StoreError, match="shape"):
        st.run(Bad(), progress=False)
    with pytest.raises(ConfigError, match="SCORER.SETTING"):
        parse_settings(["oops"])
    assert parse_settings(["ot.eps=0.1", "ot.solver=emd", "ot.official=true"]) == {
        "ot": {"eps": 0.1, "solver": "emd", "official": True}}
    with pytest.raises(ConfigError, match="needs a target domain"):
        @dataclass
        class NeedsDomain(ProjScorer):
            name: ClassVar[str] = "nd"
            needs_domain: ClassVar[bool] = True
        st.run(NeedsDomain(), progress=False)


def test_store_runs_every_registered_scorer(tmp_path, data):
    """The store is generic: every registered scorer (tiny training budgets) runs and joins into `scores`."""
    import dataclasses

    from xcurate.scoring.base import available_scorers, get_scorer_class

    target, source = data
    st = Store.create(tmp_path / "s", source.select(np.arange(200)), target)
    expected = set()
    for name in available_scorers():
        cls = get_scorer_class(name)
        if cls.needs_domain:
            continue  # the oracle needs a simulator: tested in test_oracle_scorer.py
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: 5 for k in ("steps", "encoder_steps", "finetune_steps", "value_steps") if k in fields}
        kw.update({k: 32 for k in ("batch_size",) if k in fields})
        st.run(make_scorer(name, **kw), progress=False)
        expected |= set(cls.columns)
    tab = st.query("SELECT * FROM scores")
    assert tab.num_rows == 200 and expected <= set(tab.column_names)
    assert {r["status"] for r in st.query("SELECT status FROM runs").to_pylist()} == {"complete"}


def test_scores_cache_matches_join_and_goes_stale(tmp_path, data):
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    st.run(make_scorer("knn", k=2), progress=False)
    assert (st.dir / "scores.parquet").exists()
    q = "SELECT * FROM scores ORDER BY transition_id"
    con = st.connect(use_cache=False)
    joined = con.sql(q).to_arrow_table()
    con.close()
    assert st.query(q).equals(joined)
    # a new run made elsewhere (cache not yet rewritten) -> the join is used, never stale data
    (st.dir / "scores.parquet").rename(st.dir / "old.parquet")
    st.run(ProjScorer(seed=2), progress=False)
    (st.dir / "old.parquet").replace(st.dir / "scores.parquet")
    assert not st._cache_valid(st.current_runs())
    assert "proj_score" in st.query("SELECT * FROM scores LIMIT 1").column_names


def test_a_run_held_by_another_process_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path, data):
    """Two writers of one score run would race on its chunks: the second is refused with the holder's pid."""
    target, source = data
    st = Store.create(tmp_path / "s", source, target)
    rid = st.run_id(make_scorer("knn", k=3))
    lock = st.dir / "runs" / rid / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from xcurate.utils import exclusive_lock\n"
         f"with exclusive_lock({str(lock)!r}, 'x'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=rf"score run {rid} .*another process \(pid {holder.pid}\)"):
            st.run(make_scorer("knn", k=3), progress=False)
        assert not (st.dir / "runs" / rid / "manifest.json").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    assert st.run(make_scorer("knn", k=3), progress=False) == rid  # the OS dropped the dead holder's lock
    assert json.loads((st.dir / "runs" / rid / "manifest.json").read_text())["status"] == "complete"


def test_quality_column_is_per_row_for_a_concatenated_source(tmp_path, data):
    """A random + medium source keeps both labels in the store (and through the saved source file)."""
    target, source = data
    rand, med = source.select(slice(0, 200)), source.select(slice(200, None))
    rand.metadata, med.metadata = {"quality": "random"}, {"quality": "medium"}
    mixed = TransitionDataset.concat([rand, med], metadata={"quality": "random+medium"})
    path = tmp_path / "mixed.hdf5"
    save_dataset(mixed, path)
    st = Store.create(tmp_path / "s", path, target)
    got = st.query("SELECT quality, count(*) AS n, min(transition_id) AS lo FROM transitions "
                   "GROUP BY quality ORDER BY lo").to_pylist()
    assert got == [{"quality": "random", "n": 200, "lo": 0}, {"quality": "medium", "n": 300, "lo": 200}]
