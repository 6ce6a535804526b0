"""Smoke test of benchmarks/bench_oracle_spearman.py on tiny sizes (fast scorers only)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_oracle_spearman.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_oracle_spearman", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_spearman_sign_convention() -> None:
    bench = _load()
    x = np.arange(20.0)
    assert bench.spearman(x, x ** 3) == pytest.approx(1.0)
    assert bench.spearman(x, -x) == pytest.approx(-1.0)
    assert np.isnan(bench.spearman(np.ones(5), x[:5]))


def test_bench_runs_end_to_end(tmp_path: Path) -> None:
    bench = _load()
    out = tmp_path / "oracle.md"
    code = bench.main(["--robots", "hopper", "--domains", "hopper-gravity-2.0", "--source-size", "300",
                       "--target-size", "100", "--scorers", "knn", "--threads", "1",
                       "--out", str(out), "--workdir", str(tmp_path / "work")])
    assert code == 0
    text = out.read_text()
    assert "POSITIVE = the score agrees with the oracle" in text
    row = next(line for line in text.splitlines() if line.startswith("| hopper-gravity-2.0 |"))
    vals = re.findall(r"[+-]\d\.\d{3}", row)
    assert vals
    res = json.loads(out.with_suffix(".json").read_text())
    r = res["results"][0]
    assert r["n_valid"] == 300 and not r["errors"]
    # knn_score (higher is better) and knn_distance (lower) measure the same thing: after the
    # sign convention both agree exactly.
    knn = r["rho"]["knn"]
    for q in ("oracle_bellman_error", "oracle_dynamics_gap"):
        assert knn["knn_score"][q] == pytest.approx(knn["knn_distance"][q])
    # the reported correlations are the Spearman rho recomputed here from the store itself
    # (knn_score is higher-is-better, the oracle quantities lower-is-better: rho is negated)
    from scipy.stats import spearmanr

    from xcurate.scoring.store import Store

    (store_dir,) = list((tmp_path / "work" / "stores").iterdir())
    t = Store(store_dir).query("SELECT knn_score, oracle_dynamics_gap, oracle_bellman_error FROM scores "
                               "WHERE oracle_valid")
    assert t.num_rows == 300
    for q in ("oracle_bellman_error", "oracle_dynamics_gap"):
        expected = -spearmanr(t.column("knn_score").to_numpy(), t.column(q).to_numpy()).statistic
        assert knn["knn_score"][q] == pytest.approx(expected, abs=1e-12)
        if q == "oracle_bellman_error":  # the table's column
            assert vals == [f"{expected:+.3f}"], (expected, row)
    # merging one run reproduces its table
    merged = tmp_path / "merged.md"
    assert bench.main(["--merge", str(out.with_suffix(".json")), "--out", str(merged)]) == 0
    assert row in merged.read_text()
