"""Interval estimates for "does curation pay?": IQM, stratified-bootstrap CIs, probability of improvement, regret.

INTERFACE:

    iqm(scores) -> float                                   # 25% trimmed mean over runs x tasks
    interval_estimates(score_dict, reps, seed) -> {arm: Estimate}           # IQM with 95% CI
    probability_of_improvement(x, y, reps, seed) -> Estimate                # P(X > Y), with CI
    regret(recipe, unfiltered, oracle, reps, seed) -> Estimate              # (R - U) / (O - U) of the IQMs
    claim_check(score_dict, arm, baselines, reps, seed) -> Claim            # beats every baseline beyond the CIs?
    plot_intervals(estimates, path, title) -> Path                          # horizontal CI plot (PNG)

Every score array is ``(num_runs, num_tasks)``: one row per seed, one column per task, as in
rliable (Agarwal et al., NeurIPS'21). The aggregates are rliable's own
(``rliable.metrics.aggregate_iqm`` and ``rliable.metrics.probability_of_improvement``). The
intervals are rliable's stratified bootstrap (runs resampled with replacement within each task,
independently per arm; percentile CIs), run with the library rliable builds it on, arch:
``arch.bootstrap.IndependentSamplesBootstrap`` over the task columns of every arm, which resamples
each column on its own, i.e. exactly rliable's ``StratifiedIndependentBootstrap``. rliable's
``library`` module itself is not called because rliable 1.2 passes arch the ``random_state``
argument that arch 8 removed, and arch 7 does not import under pandas 3: no released pair of the
two runs with a current pandas. Nothing is re-implemented except the regret ratio, a plain
function of three IQMs. rliable and arch are optional (``pip install 'xcurate[stats]'``); without
them these functions raise a one-line :class:`~xcurate.errors.ConfigError` saying how to install.

Regret, (recipe - unfiltered) / (oracle - unfiltered): 1 means the recipe is as good as curating
with the true target dynamics, 0 as good as not curating, < 0 worse than not curating. It is only
meaningful where the oracle beats the unfiltered arm; when the denominator's IQM difference is
within ``min_gap`` of 0 the point estimate is NaN (and so are the bootstrap draws where it is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.errors import ConfigError, DataError

#: Default number of bootstrap replications (rliable's default is 50,000; 2,000 keeps a table of
#: tens of arms under a minute on one CPU core, and moves 95% CI bounds by well under 1% of their width).
DEFAULT_REPS = 2000


@dataclass
class Estimate:
    """A point estimate with its confidence interval."""

    point: float
    low: float
    high: float
    size: float = 0.95  # coverage of the interval

    def overlaps(self, other: Estimate) -> bool:
        """True when the two intervals share a point."""
        return not (self.low > other.high or other.low > self.high)

    def as_dict(self) -> dict[str, float]:
        """``{"point", "low", "high", "size"}``."""
        return {"point": self.point, "low": self.low, "high": self.high, "size": self.size}

    def __str__(self) -> str:
        return f"{self.point:.3g} [{self.low:.3g}, {self.high:.3g}]"


@dataclass
class Claim:
    """Does ``arm`` beat every baseline? IQMs with CIs and probabilities of improvement."""

    arm: str
    iqm: Estimate
    baselines: dict[str, Estimate]  # baseline -> its IQM
    improvement: dict[str, Estimate]  # baseline -> P(arm > baseline)
    beats_all: bool  # the arm's IQM is above every baseline's
    beats_all_beyond_ci: bool  # ... and its CI lies above every baseline's CI
    notes: list[str] = field(default_factory=list)


def _rliable() -> tuple[Any, Any]:
    """``(rliable.metrics, arch.bootstrap)`` or a one-line ConfigError saying how to install them."""
    try:
        from rliable import metrics
    except ImportError:
        raise ConfigError("the statistics need rliable: pip install 'xcurate[stats]'") from None
    try:
        import arch.bootstrap as bootstrap
    except ImportError:
        raise ConfigError("the statistics need arch (rliable's bootstrap library): "
                          "pip install 'xcurate[stats]'") from None
    except TypeError as e:  # arch 7.x fails to import under pandas >= 3 (deprecate_kwarg signature)
        raise ConfigError(f"arch could not be imported ({e}); with pandas >= 3 install arch >= 8: "
                          "pip install -U 'arch>=8'") from None
    return metrics, bootstrap


def _stratified(arrays: list[np.ndarray], func: Any, reps: int, seed: int, size: float) -> tuple[float, float]:
    """Percentile CI of ``func(*arrays)`` under a stratified independent bootstrap (NaN draws ignored).

    Each task column of each array is one sample of arch's ``IndependentSamplesBootstrap``, so the
    runs are resampled within each task and each arm on its own (rliable's stratification).
    """
    _, bootstrap = _rliable()
    cols = [a[:, j] for a in arrays for j in range(a.shape[1])]
    widths = [a.shape[1] for a in arrays]

    def rebuilt(*c: np.ndarray) -> np.ndarray:
        out, i = [], 0
        for w in widths:
            out.append(np.column_stack(c[i:i + w]))
            i += w
        return np.array([func(*out)], dtype=np.float64)

    bs = bootstrap.IndependentSamplesBootstrap(*cols, seed=int(seed))
    draws = np.asarray(bs.apply(rebuilt, int(reps)), np.float64).reshape(-1)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    lo, hi = np.percentile(draws, [50 * (1 - size), 100 - 50 * (1 - size)])
    return float(lo), float(hi)


def _scores(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise DataError(f"{name}: scores must be a (num_runs, num_tasks) array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name}: scores contain NaN/Inf")
    return a


def iqm(scores: Any) -> float:
    """The interquartile mean (25% trimmed mean) of all runs x tasks (rliable's ``aggregate_iqm``)."""
    metrics, _ = _rliable()
    return float(metrics.aggregate_iqm(_scores(scores, "iqm")))


def interval_estimates(score_dict: dict[str, Any], reps: int = DEFAULT_REPS, seed: int = 0,
                       size: float = 0.95) -> dict[str, Estimate]:
    """IQM of each arm with a stratified-bootstrap percentile CI (runs resampled within each task).

    Args:
        score_dict: arm -> (num_runs, num_tasks) scores (the same tasks, in the same column order).
        reps: bootstrap replications.
        seed: seed of the bootstrap (each arm uses it).
        size: coverage of the intervals.
    """
    metrics, _ = _rliable()
    arrays = {k: _scores(v, k) for k, v in score_dict.items()}
    _same_tasks(arrays)
    out = {}
    for k, a in arrays.items():
        lo, hi = _stratified([a], metrics.aggregate_iqm, reps, seed, size)
        out[k] = Estimate(float(metrics.aggregate_iqm(a)), lo, hi, size)
    return out


def _same_tasks(arrays: dict[str, np.ndarray]) -> None:
    widths = {k: a.shape[1] for k, a in arrays.items()}
    if len(set(widths.values())) > 1:
        raise DataError(f"score arrays have different numbers of tasks: {widths}")


def probability_of_improvement(x: Any, y: Any, reps: int = DEFAULT_REPS, seed: int = 0,
                               size: float = 0.95) -> Estimate:
    """P(X > Y): the Mann-Whitney probability that a run of X beats a run of Y, averaged over tasks.

    The CI comes from the stratified independent bootstrap (runs of X and of Y resampled
    separately within each task), as in rliable.
    """
    metrics, _ = _rliable()
    a, b = _scores(x, "x"), _scores(y, "y")
    _same_tasks({"x": a, "y": b})
    lo, hi = _stratified([a, b], metrics.probability_of_improvement, reps, seed, size)
    return Estimate(float(metrics.probability_of_improvement(a, b)), lo, hi, size)


def regret_ratio(recipe: np.ndarray, unfiltered: np.ndarray, oracle: np.ndarray, min_gap: float = 1e-9) -> float:
    """``(IQM(recipe) - IQM(unfiltered)) / (IQM(oracle) - IQM(unfiltered))``; NaN when the denominator ~ 0."""
    metrics, _ = _rliable()
    u = metrics.aggregate_iqm(unfiltered)
    den = metrics.aggregate_iqm(oracle) - u
    if not abs(den) > min_gap:
        return float("nan")
    return float((metrics.aggregate_iqm(recipe) - u) / den)


def regret(recipe: Any, unfiltered: Any, oracle: Any, reps: int = DEFAULT_REPS, seed: int = 0,
           size: float = 0.95, min_gap: float = 1e-9) -> Estimate:
    """A recipe's regret with a stratified independent bootstrap CI (draws with a ~0 denominator ignored).

    Args:
        recipe: (num_runs, num_tasks) scores of the recipe's arm.
        unfiltered: the same for the unfiltered arm (all source rows, weight 1).
        oracle: the same for the oracle arm.
        reps: bootstrap replications.
        seed: bootstrap seed.
        size: coverage of the interval.
        min_gap: a denominator (oracle - unfiltered IQM) within this of 0 gives NaN.
    """
    arr = [_scores(recipe, "recipe"), _scores(unfiltered, "unfiltered"), _scores(oracle, "oracle")]
    _same_tasks(dict(zip(("recipe", "unfiltered", "oracle"), arr, strict=True)))
    point = regret_ratio(*arr, min_gap=min_gap)
    lo, hi = _stratified(arr, lambda r, u, o: regret_ratio(r, u, o, min_gap), reps, seed, size)
    return Estimate(point, lo, hi, size)


def claim_check(score_dict: dict[str, Any], arm: str, baselines: tuple[str, ...] = ("target-only", "none"),
                reps: int = DEFAULT_REPS, seed: int = 0, size: float = 0.95) -> Claim:
    """Does ``arm`` beat every baseline in IQM, and beyond the CIs (non-overlapping intervals)?"""
    missing = [k for k in (arm, *baselines) if k not in score_dict]
    if missing:
        raise DataError(f"claim check: no scores for arm(s) {', '.join(missing)}")
    est = interval_estimates({k: score_dict[k] for k in (arm, *baselines)}, reps=reps, seed=seed, size=size)
    poi = {b: probability_of_improvement(score_dict[arm], score_dict[b], reps=reps, seed=seed, size=size)
           for b in baselines}
    a = est[arm]
    notes = []
    n_runs = {k: np.asarray(score_dict[k]).shape[0] for k in (arm, *baselines)}
    if min(n_runs.values()) < 5:
        notes.append(f"fewer than 5 runs per task ({n_runs}): the intervals are wide")
    return Claim(arm, a, {b: est[b] for b in baselines}, poi,
                 beats_all=all(a.point > est[b].point for b in baselines),
                 beats_all_beyond_ci=all(a.low > est[b].high for b in baselines), notes=notes)


def plot_intervals(estimates: dict[str, Estimate], path: str | Path, title: str = "IQM (95% CI)",
                   xlabel: str = "normalised score") -> Path:
    """A horizontal interval plot (one row per arm: point and CI bar), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from xcurate.utils import atomic_path

    names = list(estimates)
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.2))
    for i, k in enumerate(names):
        e = estimates[k]
        ax.plot([e.low, e.high], [i, i], lw=6, alpha=0.45, solid_capstyle="butt", color=f"C{i % 10}")
        ax.plot([e.point], [i], "|", ms=14, mew=2, color="k")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, loc="left", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out
