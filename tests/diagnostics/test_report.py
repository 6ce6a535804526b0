"""Diagnostics report on real (small) score stores: bins, Spearman, files, bad input, CLI."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from xcurate.diagnostics.report import diagnose, spearman_sql
from xcurate.errors import ConfigError, StoreError


def _needs_oracle():
    from xcurate.scoring.base import available_scorers

    if "oracle" not in available_scorers():
        pytest.skip("the oracle scorer is not available")


def _fetch(store, cols):
    t = store.query(f"SELECT transition_id, {', '.join(cols)} FROM scores WHERE oracle_valid")
    return {c: t.column(c).to_numpy(zero_copy_only=False).astype(float) for c in ["transition_id", *cols]}


def test_oracle_against_itself_is_monotone(hopper_store, tmp_path):
    """Ranking by the oracle quantity itself must give a strictly monotone curve and Spearman 1."""
    _needs_oracle()
    for col in ("oracle_dynamics_gap", "oracle_bellman_error"):
        rep = diagnose(hopper_store, scores=[col], against=col, bins=10, out=tmp_path / col, figures=False)
        means = rep.bin_means(col)
        assert len(means) == 10
        assert all(b > a for a, b in zip(means, means[1:], strict=False)), means  # lower = better -> increasing
        assert rep.spearman()[col] == pytest.approx(1.0)
        assert rep.summary.to_pylist()[0]["verdict"] == "good"


def test_bins_match_numpy(hopper_store, tmp_path):
    """SQL ntile bins equal a numpy split of the rows sorted most useful first; Spearman equals scipy's."""
    _needs_oracle()
    from scipy.stats import spearmanr

    rep = diagnose(hopper_store, scores=["knn_distance", "knn_score"], against="oracle_dynamics_gap", bins=7,
                   out=tmp_path / "r", figures=False)
    d = _fetch(hopper_store, ["knn_distance", "oracle_dynamics_gap"])
    order = np.lexsort((d["transition_id"], d["knn_distance"]))  # lower distance = more useful first
    groups = np.array_split(d["oracle_dynamics_gap"][order], 7)
    np.testing.assert_allclose(rep.bin_means("knn_distance"), [g.mean() for g in groups], rtol=1e-9)
    sizes = [r["n"] for r in rep.bins.to_pylist() if r["score"] == "knn_distance"]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == rep.n_rows == len(order)
    rho, n = spearman_sql(hopper_store, "knn_distance", "oracle_dynamics_gap", has_valid=True)
    assert rho == pytest.approx(spearmanr(d["knn_distance"], d["oracle_dynamics_gap"]).statistic, abs=1e-9)
    # knn_score = -knn_distance with direction "higher": same ranking, same bins, same aligned Spearman
    np.testing.assert_allclose(rep.bin_means("knn_score"), rep.bin_means("knn_distance"), rtol=1e-9)
    assert rep.spearman()["knn_score"] == pytest.approx(rep.spearman()["knn_distance"])


def test_report_files(hopper_store, tmp_path):
    """report.md embeds every PNG; CSV and Parquet tables hold the in-memory tables; manifest written."""
    _needs_oracle()
    out = tmp_path / "rep"
    rep = diagnose(hopper_store, against="oracle_bellman_error", bins=5, out=out)
    md = (out / "report.md").read_text()
    for name, path in rep.figures.items():
        assert path.exists() and path.stat().st_size > 5_000, name
        assert f"]({path.name})" in md
    assert "monotone" in md and "lower is better" in md
    for name in ("bins", "summary", "correlation"):
        assert pq.read_table(out / f"{name}.parquet").equals(getattr(rep, name))
        assert (out / f"{name}.csv").read_text().count("\n") == getattr(rep, name).num_rows + 1
    assert (out / "report.json").exists()
    # the default score set skips exact mirrors (knn_score is -knn_distance)
    assert ("knn_score" in rep.skipped) != ("knn_distance" in rep.skipped)


def test_refuses_existing_report_unless_force(planted_store, tmp_path):
    out = tmp_path / "rep"
    diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=4, out=out, figures=False)
    with pytest.raises(ConfigError, match="already holds a diagnostics report"):
        diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=4, out=out, figures=False)
    rep = diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=3, out=out, force=True, figures=False)
    assert len(rep.bin_means("knn_score")) == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files"):
        diagnose(planted_store, scores=["knn_score"], against="episode_return", out=other, force=True)
    assert (other / "notes.txt").read_text() == "mine"


def test_bad_input(planted_store, tmp_path):
    with pytest.raises(StoreError, match="--scorers oracle --domain"):
        diagnose(planted_store, out=tmp_path / "a")  # default: oracle_bellman_error, absent here
    with pytest.raises(ConfigError, match="run scorer 'contrastive'"):
        diagnose(planted_store, scores=["contrastive_score"], against="episode_return", out=tmp_path / "b")
    with pytest.raises(ConfigError, match="larger than the 600"):
        diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=601, out=tmp_path / "c")
    with pytest.raises(ConfigError, match="--bins must be at least 2"):
        diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=1, out=tmp_path / "d")
    with pytest.raises(ConfigError, match="not a reference"):
        diagnose(planted_store, against="reward", out=tmp_path / "e")
    with pytest.raises(StoreError, match="quality"):
        diagnose(planted_store, against="quality", out=tmp_path / "f")
    assert not any((tmp_path / x).exists() for x in "abcdef")


def test_cli(planted_store, run_cli, tmp_path):
    out = tmp_path / "cli"
    code, stdout, _ = run_cli(["diagnose", "--store", planted_store.dir, "--against", "episode_return",
                               "--bins", "4", "--out", out])
    assert code == 0, stdout
    assert "knn" in stdout and (out / "report.md").exists()
    code, _, err = run_cli(["diagnose", "--store", planted_store.dir, "--out", tmp_path / "x"])
    assert code == 1 and "error:" in err and "oracle" in err
    code, _, err = run_cli(["diagnose", "--store", planted_store.dir, "--against", "episode_return",
                            "--scores", "tbm", "--out", tmp_path / "y"])
    assert code == 1 and "tbm" in err


def test_verdict_and_trend():
    from xcurate.diagnostics.report import _trend, verdict

    assert _trend([1, 2, 3, 4], "lower") == pytest.approx(1.0)  # increasing error = good for lower-better
    assert _trend([4, 3, 2, 1], "higher") == pytest.approx(1.0)  # decreasing return = good for higher-better
    assert _trend([1, 1, 1], "lower") != _trend([1, 1, 1], "lower")  # flat: NaN
    assert verdict(0.3, 0.9) == "good"
    assert verdict(0.12, 0.2) == "weak"
    assert verdict(-0.2, -0.9) == "inverted"
    assert verdict(0.01, 0.1) == "uninformative"
    assert verdict(float("nan"), 1.0) == "undefined"


def test_accepts_store_directory(planted_store, tmp_path):
    rep = diagnose(planted_store.dir, scores=["knn_distance"], against="episode_return", bins=3,
                   out=tmp_path / "r", figures=False)
    assert rep.summary.num_rows == 1 and rep.n_rows == 600
