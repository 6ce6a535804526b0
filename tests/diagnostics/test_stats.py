"""Interval estimates (rliable) on synthetic score arrays with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rliable", reason="the statistics need rliable (pip install 'xcurate[stats]')")

from xcurate.diagnostics.stats import (  # noqa: E402
    claim_check,
    interval_estimates,
    iqm,
    plot_intervals,
    probability_of_improvement,
    regret,
)
from xcurate.errors import DataError  # noqa: E402


def test_iqm_by_hand():
    # 8 runs x 1 task: drop the 2 lowest and 2 highest, mean of 3, 4, 5, 6
    assert iqm(np.arange(1, 9, dtype=float)[:, None]) == pytest.approx(4.5)
    # 4 runs x 2 tasks pooled: sorted 0 1 2 3 10 20 30 100 -> mean(2, 3, 10, 20) = 8.75
    s = np.array([[0, 10], [1, 20], [2, 30], [3, 100]], float)
    assert iqm(s) == pytest.approx(8.75)
    assert iqm(s) != pytest.approx(s.mean())  # not the mean (41 / 2): robust to the outlier


def test_interval_estimates_cover_and_shrink():
    rng = np.random.default_rng(0)
    small = {"a": rng.normal(50, 10, size=(5, 3))}
    big = {"a": rng.normal(50, 10, size=(80, 3))}
    e5 = interval_estimates(small, reps=500, seed=1)["a"]
    e80 = interval_estimates(big, reps=500, seed=1)["a"]
    assert e5.low <= e5.point <= e5.high and e80.low <= e80.point <= e80.high
    assert e5.point == pytest.approx(iqm(small["a"]))
    assert (e80.high - e80.low) < (e5.high - e5.low) / 2  # more runs -> tighter CI
    assert e80.low < 50 < e80.high
    again = interval_estimates(small, reps=500, seed=1)["a"]
    assert (again.low, again.high) == (e5.low, e5.high)  # seeded
    with pytest.raises(DataError, match="different numbers of tasks"):
        interval_estimates({"a": np.zeros((5, 2)), "b": np.zeros((5, 3))})


def test_probability_of_improvement_by_hand():
    x = np.array([[3.0], [4.0]])
    y = np.array([[1.0], [3.5]])
    # pairs (3>1, 3<3.5, 4>1, 4>3.5): 3 of 4
    p = probability_of_improvement(x, y, reps=300)
    assert p.point == pytest.approx(0.75)
    assert 0 <= p.low <= p.point <= p.high <= 1
    far = probability_of_improvement(np.full((5, 2), 10.0) + np.arange(5)[:, None], np.zeros((5, 2)), reps=300)
    assert far.point == 1.0 and far.low == 1.0


def test_regret_endpoints_and_ci():
    rng = np.random.default_rng(3)
    none = rng.normal(20, 1, size=(6, 2))
    oracle = rng.normal(60, 1, size=(6, 2))
    # IQM is shift-equivariant: none + 40 has an IQM exactly 40 above none's
    shifted = none + 40
    assert regret(none + 20, none, shifted, reps=50).point == pytest.approx(0.5)
    assert regret(none - 20, none, shifted, reps=50).point == pytest.approx(-0.5)
    assert regret(none, none, oracle, reps=300).point == pytest.approx(0.0)
    assert regret(oracle, none, oracle, reps=300).point == pytest.approx(1.0)
    half = rng.normal(40, 1, size=(6, 2))
    r = regret(half, none, oracle, reps=500)
    assert r.point == pytest.approx(0.5, abs=0.05)
    assert r.low < r.point < r.high and r.high - r.low < 0.2
    flat = regret(none, none, none, reps=50)  # oracle == unfiltered: undefined
    assert np.isnan(flat.point)


def test_claim_check_and_plot(tmp_path):
    rng = np.random.default_rng(5)
    d = {"oracle": rng.normal(80, 2, size=(5, 3)), "target-only": rng.normal(40, 2, size=(5, 3)),
         "none": rng.normal(60, 2, size=(5, 3)), "random": rng.normal(59, 2, size=(5, 3))}
    c = claim_check(d, "oracle", reps=300)
    assert c.beats_all and c.beats_all_beyond_ci and c.improvement["none"].point == 1.0
    r = claim_check(d, "random", reps=300)
    assert not r.beats_all_beyond_ci
    c3 = claim_check({k: v[:3] for k, v in d.items()}, "oracle", reps=100)
    assert any("fewer than 5 runs" in n for n in c3.notes)
    png = plot_intervals(interval_estimates(d, reps=200), tmp_path / "ci.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_experiment_statistics_table(tmp_path):
    """benchmarks/run_experiment.py: IQM table, claim check, regret and CI plot from results rows."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "run_experiment.py"
    spec = importlib.util.spec_from_file_location("run_experiment", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    means = {"target-only": 30, "none": 50, "oracle": 80, "random": 49, "otdf": 65}
    results = [{"task": t, "arm": a, "variant": "iql", "seeds": list(range(5)),
                "last_per_seed": (m + rng.normal(0, 1, 5)).tolist(), "last_mean": m, "last_std": 1.0}
               for t in ("t1", "t2") for a, m in means.items()]
    tasks, arrays = mod.score_arrays(results)
    assert tasks == ["t1", "t2"] and arrays["oracle"].shape == (5, 2)
    lines = mod.stats_lines(results, tmp_path, reps=200)
    table = {ln.split("|")[1].strip(): ln for ln in lines if ln.startswith("| ") and "IQM" not in ln}
    assert "**yes**" in table["oracle"] and "**yes**" in table["otdf"] and "| no |" in table["random"]
    # otdf's regret ~ (65 - 50) / (80 - 50) = 0.5
    reg = float(table["otdf"].split("|")[-2].split("[")[0])
    assert reg == pytest.approx(0.5, abs=0.05)
    assert (tmp_path / "ci.png").exists()


def test_bootstrap_is_stratified_by_task():
    """Runs are resampled within each task: two constant tasks give a zero-width IQM interval.

    A bootstrap that pooled the runs of both tasks would draw unequal numbers from each and give a
    wide interval (the IQM of 0s and 100s moves with the mix).
    """
    s = np.column_stack([np.zeros(6), np.full(6, 100.0)])
    e = interval_estimates({"a": s}, reps=300, seed=0)["a"]
    assert e.point == pytest.approx(50.0) and e.low == pytest.approx(50.0) and e.high == pytest.approx(50.0)
    # within a task the resampling does vary
    v = np.column_stack([np.arange(6.0), np.full(6, 100.0)])
    ev = interval_estimates({"a": v}, reps=300, seed=0)["a"]
    assert ev.high > ev.low
