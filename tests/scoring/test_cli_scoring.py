"""CLI: xcurate score / query / store show."""

from __future__ import annotations

import csv
import io
import json

import pyarrow.parquet as pq
import pytest
from conftest import assert_one_error_line

from xcurate.datasets.synthetic import planted_shift


@pytest.fixture()
def files(tmp_path):
    from xcurate.datasets.io import save_dataset

    tg, src = planted_shift(n_target=150, n_source=300, seed=1)
    save_dataset(src, tmp_path / "src.parquet")
    save_dataset(tg, tmp_path / "tgt.hdf5")
    return tmp_path / "src.parquet", tmp_path / "tgt.hdf5"


def test_score_query_show(tmp_path, files, run_cli):
    src, tgt = files
    store = tmp_path / "store"
    code, out, err = run_cli(["score", "--source", src, "--target", tgt, "--scorers", "ot,knn",
                              "--set", "ot.chunk=100", "--set", "knn.k=2", "--seed", "3", "--device", "cpu",
                              "--store", store, "--no-progress"])
    assert code == 0, err
    assert "ot_score (higher)" in out and "knn_distance (lower)" in out
    runs = json.loads((store / "store.json").read_text())
    assert runs["source"]["sha256"] and runs["source"]["n"] == 300
    # second call: cached
    code, out, err = run_cli(["score", "--source", src, "--target", tgt, "--scorers", "ot,knn", "--set",
                              "ot.chunk=100", "--set", "knn.k=2", "--seed", "3", "--store", store, "--no-progress"])
    assert code == 0 and err.count("cached run") == 2
    code, out, err = run_cli(["query", "SELECT count(*) AS n, count(ot_score) AS m FROM scores", "--store", store,
                              "--format", "json"])
    assert code == 0 and json.loads(out) == [{"n": 300, "m": 300}]
    code, out, _ = run_cli(["query", "SELECT scorer, config FROM runs ORDER BY scorer", "--store", store,
                            "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [r["scorer"] for r in rows] == ["knn", "ot"]
    assert json.loads(rows[0]["config"])["k"] == 2 and json.loads(rows[1]["config"])["seed"] == 3
    code, out, _ = run_cli(["query", "SELECT ntile(10) OVER (ORDER BY ot_score) AS decile, * FROM scores",
                            "--store", store, "--format", "parquet", "--out", tmp_path / "q.parquet"])
    assert code == 0 and pq.read_table(tmp_path / "q.parquet").num_rows == 300
    code, out, _ = run_cli(["query", "SELECT transition_id, knn_score FROM scores", "--store", store,
                            "--max-rows", "5"])
    assert code == 0 and "300 rows, 5 shown" in out
    code, out, _ = run_cli(["store", "show", store])
    assert code == 0 and "ot_score" in out and "higher" in out and "complete" in out


def test_cli_errors(tmp_path, files, run_cli):
    src, tgt = files
    store = tmp_path / "store"
    base = ["score", "--source", src, "--target", tgt, "--store", store, "--no-progress"]
    for extra, needle in [(["--scorers", "nope"], "unknown scorer"),
                          (["--scorers", "ot", "--set", "ot.nope=1"], "no setting"),
                          (["--scorers", "ot", "--set", "knn.k=1"], "not in --scorers"),
                          (["--scorers", "ot", "--set", "bad"], "SCORER.SETTING=VALUE"),
                          (["--scorers", "ot", "--device", "tpu"], "--device")]:
        code, _, err = run_cli(base + extra)
        assert_one_error_line(code, err, needle)
    code, _, err = run_cli(["score", "--source", tmp_path / "missing.parquet", "--target", tgt,
                            "--scorers", "knn", "--store", store])
    assert_one_error_line(code, err, "missing.parquet")
    code, _, err = run_cli(["query", "SELECT 1", "--store", tmp_path / "nostore"])
    assert_one_error_line(code, err, "no such store")
    run_cli(base + ["--scorers", "knn"])
    code, _, err = run_cli(["query", "SELECT bogus FROM scores", "--store", store])
    assert_one_error_line(code, err, "bogus")
    code, _, err = run_cli(["query", "SELECT 1", "--store", store, "--format", "parquet"])
    assert_one_error_line(code, err, "--out")
