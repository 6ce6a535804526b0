"""Partitioned score files (``score_files="parts"``): the same scores as one file, read as one table."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from xcurate.curate.recipes import curate
from xcurate.datasets.synthetic import planted_shift
from xcurate.diagnostics.holdout import holdout_signal
from xcurate.errors import ConfigError
from xcurate.scoring import store as store_mod
from xcurate.scoring.base import make_scorer
from xcurate.scoring.store import Store, read_scores

torch.set_num_threads(1)
PART = 300  # source rows per part file in these tests (SCORE_PART_ROWS is 4M)


@pytest.fixture()
def data():
    target, src = planted_shift(n_target=200, n_source=1000, seed=3)
    src.observations = src.observations.copy()
    src.observations[[5, 610, 611]] = np.nan  # unscored rows: NULL in their part, wherever they fall
    return target, src


def _knn():
    sc = make_scorer("knn")
    sc.chunk_size = 128  # 8 chunks of the 997 finite rows (the instance value shadows the class one)
    return sc


def _run(tmp, name, data, layout, holdout=0.0):
    st = Store.create(tmp / name, data[1], data[0])
    rid = st.run(_knn(), progress=False, score_files=layout, holdout=holdout)
    return st, rid


def test_parts_equal_one_file(tmp_path, data, monkeypatch):
    monkeypatch.setattr(store_mod, "SCORE_PART_ROWS", PART)
    one, rid1 = _run(tmp_path, "one", data, "one")
    parts, rid2 = _run(tmp_path, "parts", data, "parts")
    assert rid1 == rid2  # the layout is not part of the run's identity
    path = parts.dir / "runs" / rid2 / "scores.parquet"
    assert path.is_dir() and (one.dir / "runs" / rid1 / "scores.parquet").is_file()
    files = sorted(path.iterdir())
    assert [f.name for f in files] == [f"part-{k:06d}.parquet" for k in range(4)]  # ceil(1000 / 300)
    ids = data[1].transition_ids
    for k, f in enumerate(files):  # consecutive source rows, in source order
        assert np.array_equal(pq.read_table(f).column("transition_id").to_numpy(), ids[k * PART:(k + 1) * PART])
    assert not (parts.dir / "runs" / rid2 / "assembly").exists()
    a, b = one.scores("knn"), parts.scores("knn")
    assert a.equals(b)
    assert b.column("knn_score").null_count == 3
    m = {x["run_id"]: x for x in parts.manifests()}[rid2]
    assert m["score_files"] == {"layout": "parts", "part_rows": PART, "parts": 4}
    assert m["n_null"] == {x["run_id"]: x for x in one.manifests()}[rid1]["n_null"]
    sql = "SELECT count(*), count(knn_score), sum(knn_score), min(transition_id) FROM {}"
    for view in ("scores", "knn"):
        assert parts.query(sql.format(view)).equals(one.query(sql.format(view)))
    got = parts.connect(use_cache=False).execute(
        "SELECT count(*) FROM scores WHERE knn_score IS NULL").fetchone()
    assert got == (3,)  # the join view reads the parts as one table
    ca, cb = curate(one, "otdf", column="knn_score"), curate(parts, "otdf", column="knn_score")
    assert np.array_equal(ca.extras["weight"], cb.extras["weight"])


def test_auto_layout_and_bad_setting(tmp_path, data, monkeypatch):
    monkeypatch.setattr(store_mod, "SCORE_PART_ROWS", PART)
    st, rid = _run(tmp_path, "a", data, "auto")
    assert (st.dir / "runs" / rid / "scores.parquet").is_dir()  # 1000 rows > PART
    monkeypatch.setattr(store_mod, "SCORE_PART_ROWS", 5000)
    st, rid = _run(tmp_path, "b", data, "auto")
    assert (st.dir / "runs" / rid / "scores.parquet").is_file()
    with pytest.raises(ConfigError, match="--score-files must be one of auto, one, parts, got 'many'"):
        st.run(_knn(), progress=False, score_files="many")


def test_interrupted_assembly_leaves_no_score_file_and_resumes(tmp_path, data, monkeypatch):
    monkeypatch.setattr(store_mod, "SCORE_PART_ROWS", PART)
    ref, rid = _run(tmp_path, "ref", data, "one")
    st = Store.create(tmp_path / "st", data[1], data[0])
    real, calls = pq.write_table, []

    def failing(table, where, **kw):  # the second part file of the assembly fails
        if ".scores.parquet." in str(where):
            calls.append(where)
        if len(calls) == 2:
            raise OSError("disk full (injected)")
        return real(table, where, **kw)

    monkeypatch.setattr(store_mod.pq, "write_table", failing)
    with pytest.raises(OSError, match="injected"):
        st.run(_knn(), progress=False, score_files="parts")
    rdir = st.dir / "runs" / rid
    assert not (rdir / "scores.parquet").exists()  # no partial score file
    assert not [p for p in rdir.iterdir() if p.name.startswith(".scores.parquet")]  # its temp dir removed
    assert len(list((rdir / "chunks").glob("part-*.parquet"))) == 8  # every scored chunk kept
    monkeypatch.setattr(store_mod.pq, "write_table", real)
    assert st.run(_knn(), progress=False, score_files="parts") == rid
    assert st.scores("knn").equals(ref.scores("knn"))
    assert {x["run_id"]: x for x in st.manifests()}[rid]["reused_chunks"] == 8


def test_holdout_signal_and_read_scores_on_parts(tmp_path, data, monkeypatch):
    monkeypatch.setattr(store_mod, "SCORE_PART_ROWS", PART)
    one, rid = _run(tmp_path, "one", data, "one", holdout=0.2)
    parts, _ = _run(tmp_path, "parts", data, "parts", holdout=0.2)
    a, b = holdout_signal(parts), holdout_signal(one)
    assert a.column_names == b.column_names
    for c in a.column_names:  # assert_equal: NaN (consensus with one scorer) equals NaN
        np.testing.assert_equal(a.column(c).to_pylist(), b.column(c).to_pylist())
    path = parts.dir / "runs" / rid / "scores.parquet"
    assert read_scores(path, columns=["knn_score"]).column_names == ["knn_score"]
    (path / "part-000002.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="part-000002.parquet: damaged score file"):
        read_scores(path)


def test_cli_score_files(tmp_path, run_cli):
    from xcurate.datasets.io import save_dataset

    target, src = planted_shift(n_target=200, n_source=1000, seed=3)
    save_dataset(target, tmp_path / "t.hdf5")
    save_dataset(src, tmp_path / "s.hdf5")
    args = ["score", "--source", str(tmp_path / "s.hdf5"), "--target", str(tmp_path / "t.hdf5"),
            "--scorers", "knn", "--store", str(tmp_path / "st"), "--no-progress"]
    code, out, err = run_cli([*args, "--score-files", "many"])
    assert code == 1
    assert err.strip() == "error: --score-files must be one of auto, one, parts, got 'many'"
    assert not (tmp_path / "st").exists()  # refused before anything is written
    code, out, err = run_cli([*args, "--score-files", "parts"])
    assert code == 0, err
    runs = list((tmp_path / "st" / "runs").glob("knn-*/scores.parquet"))
    assert len(runs) == 1 and runs[0].is_dir() and len(list(runs[0].iterdir())) == 1  # 1000 rows, one part
