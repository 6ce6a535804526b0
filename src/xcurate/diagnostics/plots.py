"""Matplotlib figures of the diagnostics report (Agg backend, PNG files).

Figures: ``bins_overlay.png`` (every score's group means on one axis, TABB fig. 3),
``bins_grid.png`` (one panel per score with IQR band and std error bars), ``spearman.png``
(aligned Spearman per score), ``histograms.png`` (score distributions split by source quality)
and ``correlation.png`` (Spearman matrix between scorers).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from xcurate.diagnostics.report import Report

_VERDICT_COLORS = {"good": "#2a9d46", "weak": "#8fbf4a", "uninformative": "#9a9a9a", "inverted": "#c0392b",
                   "undefined": "#cccccc"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "font.size": 9, "axes.titlesize": 10,
                         "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _arrow(direction: str) -> str:
    return "higher = better" if direction == "higher" else "lower = better"


def _per_score(report: Report) -> dict[str, dict[str, np.ndarray]]:
    d = report.bins.to_pydict()
    out: dict[str, dict[str, list]] = {}
    for i, s in enumerate(d["score"]):
        e = out.setdefault(s, {k: [] for k in ("bin", "mean", "std", "q25", "q75", "median", "pct_to")})
        for k in e:
            e[k].append(d[k][i])
    return {s: {k: np.asarray(v, float) for k, v in e.items()} for s, e in out.items()}


def _group_ticks(ax, nb: int) -> None:
    step = max(1, nb // 10)
    ticks = list(range(1, nb + 1, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t}" for t in ticks])
    ax.set_xlim(0.5, nb + 0.5)


def _use_log(values: np.ndarray) -> bool:
    v = values[np.isfinite(values) & (values > 0)]
    return len(v) > 1 and v.max() / max(v.min(), 1e-12) > 50


def make_figures(out: Path, report: Report, sample: dict[str, np.ndarray], corr: np.ndarray,
                 n_corr: int) -> dict[str, Path]:
    """Write every figure into ``out``; return name -> path."""
    from xcurate.diagnostics.report import REFERENCES

    plt = _plt()
    per = _per_score(report)
    summ = {r["score"]: r for r in report.summary.to_pylist()}
    against = report.against
    ref_dir, unit, _ = REFERENCES[against]
    scores = report.scores
    nb = int(max(len(v["bin"]) for v in per.values())) if per else 0
    figs: dict[str, Path] = {}
    good_word = "increasing" if ref_dir == "lower" else "decreasing"

    # 1. overlay (TABB fig. 3): the best and the worst score (by aligned Spearman) stand out, the
    # others are thin and faded so that ten lines stay readable (each has its own panel in the grid)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    cmap = plt.get_cmap("tab20" if len(scores) > 10 else "tab10")
    overall = None
    rho = {s: summ[s]["spearman_aligned"] for s in scores}
    ranked = [s for s in scores if math.isfinite(rho[s])]
    best = max(ranked, key=lambda s: rho[s]) if len(ranked) > 2 else None
    worst = min(ranked, key=lambda s: rho[s]) if len(ranked) > 2 else None
    for i, s in enumerate(scores):
        e = per[s]
        label = f"{s} (rho={rho[s]:+.2f})"
        if s in (best, worst):
            ax.plot(e["bin"], e["mean"], marker="o", ms=5, lw=2.8, zorder=3,
                    color=_VERDICT_COLORS["good"] if s == best else _VERDICT_COLORS["inverted"],
                    label=f"{'best' if s == best else 'worst'}: {label}")
        else:
            faded = best is not None
            ax.plot(e["bin"], e["mean"], marker="o", ms=2.5 if faded else 3.5, lw=1.0 if faded else 1.6,
                    alpha=0.45 if faded else 1.0, color=cmap(i % cmap.N), label=label)
        overall = summ[s]["overall_mean"]
    if overall is not None:
        ax.axhline(overall, ls="--", color="k", lw=1, label="all rows (random scorer)")
    if _use_log(np.concatenate([per[s]["mean"] for s in scores])):
        ax.set_yscale("log")
    _group_ticks(ax, nb)
    ax.set_xlabel(f"percentile group by score, most useful first (1 = top {100 // max(nb, 1)}%)")
    ax.set_ylabel(f"mean {against}\n[{unit}]")
    ax.set_title(f"Mean {against} per percentile group\n({ref_dir} is better: a good scorer gives a "
                 f"monotone {good_word} curve)", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    figs["bins_overlay"] = out / "bins_overlay.png"
    fig.savefig(figs["bins_overlay"])
    plt.close(fig)

    # 2. grid of panels
    k = len(scores)
    ncols = min(4, k)
    nrows = math.ceil(k / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.7 * nrows + 0.6), squeeze=False)
    for i, s in enumerate(scores):
        ax = axes[i // ncols][i % ncols]
        e = per[s]
        col = _VERDICT_COLORS.get(summ[s]["verdict"], "C0")
        ax.fill_between(e["bin"], e["q25"], e["q75"], color=col, alpha=0.2, lw=0, label="IQR (25-75%)")
        ax.plot(e["bin"], e["median"], color=col, ls=":", lw=1.2, label="median")
        ax.plot(e["bin"], e["mean"], color=col, marker="o", ms=3.5, lw=1.8, label="mean")
        ax.axhline(summ[s]["overall_mean"], ls="--", color="k", lw=0.8)
        _group_ticks(ax, nb)
        ax.set_title(f"{s} ({_arrow(summ[s]['direction'])})\nrho={summ[s]['spearman_aligned']:+.2f}, "
                     f"{summ[s]['verdict']}", fontsize=8.5)
        if i % ncols == 0:
            ax.set_ylabel(f"{against}")
        if i // ncols == nrows - 1:
            ax.set_xlabel("group (1 = most useful)")
    for j in range(k, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{against} [{unit}] per percentile group; good scorer = {good_word} curve", fontsize=10)
    fig.tight_layout()
    figs["bins_grid"] = out / "bins_grid.png"
    fig.savefig(figs["bins_grid"])
    plt.close(fig)

    # 3. Spearman bars
    fig, ax = plt.subplots(figsize=(7, 0.38 * k + 1.4))
    vals = [summ[s]["spearman_aligned"] for s in scores]
    colors = [_VERDICT_COLORS.get(summ[s]["verdict"], "C0") for s in scores]
    y = np.arange(k)[::-1]
    ax.barh(y, [v if math.isfinite(v) else 0 for v in vals], color=colors)
    for yi, v in zip(y, vals, strict=True):
        ax.text(v if math.isfinite(v) else 0, yi, f" {v:+.2f} " if math.isfinite(v) else " n/a",
                va="center", ha="left" if (not math.isfinite(v) or v >= 0) else "right", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(scores)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(-1.1, 1.1)
    ax.set_xlabel(f"aligned Spearman with {against}\n(+1 = perfect ranking, 0 = random, < 0 = inverted)")
    ax.set_title(f"How well each score ranks source transitions by {against}")
    fig.tight_layout()
    figs["spearman"] = out / "spearman.png"
    fig.savefig(figs["spearman"])
    plt.close(fig)

    # 4. histograms by quality
    quals = sorted(set(sample["quality"].tolist()))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.5 * nrows + 0.6), squeeze=False)
    qcolors = plt.get_cmap("tab10")
    for i, s in enumerate(scores):
        ax = axes[i // ncols][i % ncols]
        v = sample[s]
        fin = np.isfinite(v)
        if fin.sum() == 0:
            ax.set_title(f"{s}: no finite values", fontsize=8.5)
            continue
        lo, hi = np.percentile(v[fin], [0.5, 99.5])
        q1, q3 = np.percentile(v[fin], [25, 75])
        if q3 > q1:  # heavy tails (e.g. log-likelihoods): keep the bulk readable
            lo, hi = max(lo, q1 - 4 * (q3 - q1)), min(hi, q3 + 4 * (q3 - q1))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 41)
        for qi, q in enumerate(quals):
            m = fin & (sample["quality"] == q)
            if m.sum() == 0:
                continue
            ax.hist(np.clip(v[m], lo, hi), bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                    color=qcolors(qi % 10), label=f"{q} (n={int(m.sum())})")
        arrow = "->" if summ[s]["direction"] == "higher" else "<-"
        ax.set_title(f"{s}  ({_arrow(summ[s]['direction'])} {arrow})", fontsize=8.5)
        ax.set_xlabel(s, fontsize=8)
        if i % ncols == 0:
            ax.set_ylabel("density")
        ax.legend(fontsize=6.5, loc="best")
    for j in range(k, nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    kind = sample.get("quality_kind")
    fig.suptitle("Score distributions by source quality" + (f" ({kind[0]}: the store has one quality label)"
                                                           if kind is not None else ""), fontsize=10)
    fig.tight_layout()
    figs["histograms"] = out / "histograms.png"
    fig.savefig(figs["histograms"])
    plt.close(fig)

    # 5. correlation matrix
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.6, 0.5 * k + 1.8))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(k))
    ax.set_xticklabels(scores, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k))
    ax.set_yticklabels(scores, fontsize=8)
    ax.grid(False)
    if k <= 16:
        for a in range(k):
            for b in range(k):
                if np.isfinite(corr[a, b]):
                    ax.text(b, a, f"{corr[a, b]:.2f}", ha="center", va="center", fontsize=6.5,
                            color="white" if abs(corr[a, b]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, label="Spearman rho", shrink=0.8)
    ax.set_title(f"Agreement between scores: Spearman of usefulness rankings\n(lower-is-better columns "
                 f"negated; n={n_corr})", fontsize=9)
    fig.tight_layout()
    figs["correlation"] = out / "correlation.png"
    fig.savefig(figs["correlation"])
    plt.close(fig)
    return figs
