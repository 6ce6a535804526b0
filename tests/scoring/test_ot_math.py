"""Exact checks of the OT maths in ``xcurate.scoring.ot_math`` against POT called by hand.

Written to kill the mutants mutation testing found alive (benchmarks/RESULTS.md, "Mutation
testing"): every argument the wrappers pass to POT, the solver choice of ``method="auto"``, the
non-finite fallback, dtypes and the read-outs.
"""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from xcurate.scoring import ot_math


def _cost(n: int = 30, m: int = 20, seed: int = 0, dtype=torch.float64, scale: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.rand(n, m, generator=g, dtype=torch.float64) + 0.01).to(dtype)


def _ref_sinkhorn(cost, eps_factor=0.05, n_iter=100, threshold=1e-9, method="sinkhorn"):
    n, m = cost.shape
    scaled = cost / cost.max()
    reg = float(eps_factor * scaled.mean())
    a = torch.full((n,), 1.0 / n, dtype=cost.dtype)
    b = torch.full((m,), 1.0 / m, dtype=cost.dtype)
    return ot.sinkhorn(a, b, scaled, reg, method=method, numItermax=n_iter, stopThr=threshold)


def test_cosine_cost_is_clamped_to_its_range():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 7, generator=g, dtype=torch.float32)
    xn = x / x.norm(dim=1, keepdim=True)
    raw_same, raw_opp = 1.0 - xn @ xn.T, 1.0 + xn @ xn.T
    assert raw_same.min() < 0 and raw_opp.max() > 2  # float rounding leaves [0, 2] without the clamp
    assert ot_math.cosine_cost(x, x).min() == 0.0
    assert ot_math.cosine_cost(x, -x).max() == 2.0


@pytest.mark.parametrize("method", ["sinkhorn", "sinkhorn_log"])
def test_sinkhorn_plan_equals_pot_called_by_hand(method):
    cost = _cost()  # max 0.51 < 1: the max-scaling matters
    got = ot_math.sinkhorn_plan(cost, method=method)
    ref = _ref_sinkhorn(cost, method=method)
    assert got.dtype == torch.float64 and torch.equal(got, ref)
    # non-default settings reach POT
    got = ot_math.sinkhorn_plan(cost, eps_factor=0.2, n_iter=3, threshold=1e-2, method=method)
    ref = _ref_sinkhorn(cost, eps_factor=0.2, n_iter=3, threshold=1e-2, method=method)
    assert torch.equal(got, ref)
    assert not torch.equal(ot_math.sinkhorn_plan(cost, n_iter=3, method=method), _ref_sinkhorn(cost, method=method))
    loose = ot_math.sinkhorn_plan(cost, n_iter=1000, threshold=1e-2, method=method)
    assert torch.equal(loose, _ref_sinkhorn(cost, n_iter=1000, threshold=1e-2, method=method))
    assert not torch.equal(loose, _ref_sinkhorn(cost, n_iter=1000, method=method))
    # uniform marginals: rows exactly 1/n (POT ends on the row update), columns ~1/m
    p = ot_math.sinkhorn_plan(cost, n_iter=2000)
    np.testing.assert_allclose(p.sum(1).numpy(), 1 / 30, rtol=1e-9)
    np.testing.assert_allclose(p.sum(0).numpy(), 1 / 20, rtol=1e-3)


@pytest.mark.parametrize("dtype,inv_reg,expected", [
    (torch.float64, 500.0, "sinkhorn"), (torch.float64, 700.0, "sinkhorn_log"),
    (torch.float32, 50.0, "sinkhorn"), (torch.float32, 200.0, "sinkhorn_log")])
def test_auto_picks_the_solver_by_dtype_and_epsilon(dtype, inv_reg, expected):
    """auto = scaling while exp(-1/reg) is representable (1/reg < 600 in float64, < 80 in float32)."""
    cost = _cost(dtype=dtype)
    scaled_mean = float((cost / cost.max()).mean())
    eps = 1.0 / (inv_reg * scaled_mean)
    got = ot_math.sinkhorn_plan(cost, eps_factor=eps)
    ref = _ref_sinkhorn(cost, eps_factor=eps, method=expected)
    assert torch.isfinite(got).all() and torch.equal(got, ref)
    other = _ref_sinkhorn(cost, eps_factor=eps, method="sinkhorn_log" if expected == "sinkhorn" else "sinkhorn")
    assert not torch.equal(got, other)


@pytest.mark.parametrize("dtype,limit,offset", [(torch.float64, 600.0, 0.0), (torch.float64, 600.0, 0.5),
                                                (torch.float32, 80.0, 0.5)])
def test_auto_threshold_is_strict_and_exact(dtype, limit, offset):
    """1/reg at the limit (exactly, or half a unit above) is past it: the log domain. (In float32
    1/reg cannot equal 80 exactly: reg = 0.0125 is not a float32.)"""
    cost = _cost(dtype=dtype)
    scaled_mean = (cost / cost.max()).mean()
    eps = 1.0 / ((limit + offset) * float(scaled_mean))
    if offset == 0.0:  # nudge eps until 1/reg is exactly the limit in the solver's own arithmetic
        for _ in range(200):
            inv = 1.0 / max(float(eps * scaled_mean), 1e-12)
            if inv == limit:
                break
            eps = float(np.nextafter(eps, np.inf if inv > limit else -np.inf))
        assert 1.0 / float(eps * scaled_mean) == limit
    got = ot_math.sinkhorn_plan(cost, eps_factor=eps)
    assert torch.equal(got, _ref_sinkhorn(cost, eps_factor=eps, method="sinkhorn_log"))
    assert not torch.equal(got, _ref_sinkhorn(cost, eps_factor=eps, method="sinkhorn"))


def test_non_finite_scaling_result_falls_back_to_the_log_domain(monkeypatch):
    """POT's scaling solver returns its last finite iterate on underflow, so a non-finite plan
    needs another cause (inf/NaN from a backend): injected here by wrapping ``ot.sinkhorn``."""
    real, calls = ot.sinkhorn, []

    def sinkhorn(*args, **kw):
        calls.append(kw.get("method"))
        plan = real(*args, **kw)
        return plan * float("nan") if kw.get("method") == "sinkhorn" else plan

    monkeypatch.setattr(ot, "sinkhorn", sinkhorn)
    cost = _cost(dtype=torch.float32)
    for kw in ({}, {"eps_factor": 0.2, "n_iter": 4, "threshold": 1e-1}, {"n_iter": 2}):
        calls.clear()
        got = ot_math.sinkhorn_plan(cost, method="sinkhorn", **kw)
        assert calls == ["sinkhorn", "sinkhorn_log"] and torch.isfinite(got).all()
        monkeypatch.setattr(ot, "sinkhorn", real)
        assert torch.equal(got, _ref_sinkhorn(cost, method="sinkhorn_log", **kw))
        monkeypatch.setattr(ot, "sinkhorn", sinkhorn)
    calls.clear()
    ot_math.sinkhorn_plan(cost, method="sinkhorn_log")  # already the log domain: no second solve
    assert calls == ["sinkhorn_log"]


def test_emd_plan_is_pots_exact_plan_and_passes_the_iteration_cap():
    cost = _cost(40, 30).numpy()
    got = ot_math.emd_plan(cost)
    ref = ot.emd(np.full(40, 1 / 40), np.full(30, 1 / 30), cost, numItermax=100_000_000)
    np.testing.assert_array_equal(got, ref)
    capped = ot_math.emd_plan(cost, num_iter_max=5)  # stops early: not the optimal plan
    assert not np.array_equal(capped, got)


def _ref_unbalanced(cost, reg=0.01, lam=(0.05, 0.5), n_iter=1000):
    n, m = cost.shape
    scaled = (cost / cost.max()).to(torch.float64)
    a = torch.full((n,), 1.0 / n, dtype=torch.float64)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64)
    return ot.unbalanced.sinkhorn_unbalanced(a, b, scaled, reg, lam, method="sinkhorn_stabilized", numItermax=n_iter)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unbalanced_plan_equals_pot_called_by_hand(dtype):
    cost = _cost(dtype=dtype)
    got = ot_math.unbalanced_plan(cost)  # the documented defaults
    assert got.dtype == torch.float64 and torch.equal(got, _ref_unbalanced(cost))
    got = ot_math.unbalanced_plan(cost, reg=0.05, lambda_src=0.2, lambda_tar=1.0, n_iter=7)
    assert torch.equal(got, _ref_unbalanced(cost, 0.05, (0.2, 1.0), 7))
    assert not torch.equal(got, _ref_unbalanced(cost, 0.05, (0.2, 1.0), 1000))
    n, m = cost.shape
    scaled = (cost / cost.max()).to(torch.float64)
    plain = ot.unbalanced.sinkhorn_unbalanced(torch.full((n,), 1 / n, dtype=torch.float64),
                                              torch.full((m,), 1 / m, dtype=torch.float64), scaled, 0.01,
                                              (0.05, 0.5), numItermax=1000)  # POT's default method
    assert not torch.equal(ot_math.unbalanced_plan(cost), plain)


def test_coupling_scores_and_row_mass_read_outs():
    plan = np.array([[0.1, 0.2, 0.0], [0.05, 0.05, 0.1]], dtype=np.float32)  # rows 0.3, 0.2: n = 2
    cost = np.array([[1.0, 2.0, 3.0], [0.0, 4.0, 1.0]], dtype=np.float64)
    raw = -np.array([0.1 + 0.4, 0.2 + 0.1])
    out = ot_math.coupling_scores(plan, cost)  # default: normalised rows (x n)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 2 * raw, rtol=1e-6)
    np.testing.assert_allclose(ot_math.coupling_scores(plan, cost, normalise_rows=False), raw, rtol=1e-6)
    t = ot_math.coupling_scores(torch.as_tensor(plan), torch.as_tensor(cost))
    assert t.dtype == np.float64
    np.testing.assert_allclose(t, 2 * raw, rtol=1e-6)
    # the cost is read in the plan's precision (float32 plan: float32 products), exactly
    odd = cost + 0.1  # not representable in float32
    exact = (-(plan * odd.astype(np.float32)).sum(axis=1) * 2).astype(np.float64)
    np.testing.assert_array_equal(ot_math.coupling_scores(plan, odd), exact)
    np.testing.assert_array_equal(ot_math.coupling_scores(torch.as_tensor(plan), torch.as_tensor(odd)),
                                  (-(torch.as_tensor(plan) * torch.as_tensor(odd).float()).sum(1)).double().numpy() * 2)
    np.testing.assert_allclose(ot_math.row_mass_ratio(torch.as_tensor(plan)), [0.6, 0.4], rtol=1e-6)


def test_zscore_stats_are_per_column_with_the_default_floor():
    x = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0]])
    mean, std = ot_math.zscore_stats(x)
    np.testing.assert_array_equal(mean, [2.0, 20.0, 5.0])
    np.testing.assert_array_equal(std, [1.0, 10.0, 1e-6])
    assert ot_math.zscore_stats(x, min_std=0.5)[1][2] == 0.5
