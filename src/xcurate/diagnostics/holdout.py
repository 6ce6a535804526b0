"""Validation without a simulator: how well does each score recognise held-out target rows?

``xcurate score --holdout 0.2`` keeps a seeded random 20% of the target out of every fit and
scores those rows like source rows (``runs/<id>/holdout.parquet``). A score that measures
"follows the target's dynamics" should rank those held-out target rows above most source rows.
Per ranked score column (its declared direction decides what "above" means):

* ``holdout_auc``: ROC AUC of held-out target rows (positives) against all scored source rows
  (negatives). 0.5 = the score cannot tell target rows from source rows; 1 = every held-out
  target row scores above every source row.
* ``holdout_median_pct``: the percentile of the held-out rows' median within the source scores
  (100 = above every source row).
* ``source_above_holdout_q10``: the fraction of source rows that score at least as well as the
  held-out rows' 10th percentile: the share of the source that "looks like target data" to this
  score. ``curate --recipe auto`` uses it as its keep fraction.
* ``consensus``: no holdout needed. The column's mean Spearman agreement with the other
  scorers (for each other scorer, its best-agreeing column; oracle columns never vote).
  Scorers that each measure the target's dynamics in their own way agree with each other;
  a column that measures something else, or is inverted, does not.
* ``matched_win``: the holdout comparison with the behaviour taken out. Each held-out row is
  paired with its ``MATCH_K`` nearest source rows in (s, a) (source z-scores, exact L2); the
  statistic is the share of (held-out, matched source) pairs in which the held-out row scores
  higher (ties count half). A column that only tells the target's *states and actions* from the
  source's gets 0.5 here; one that checks s' given (s, a), the dynamics, stays above 0.5.
  ``match_distance`` is the pairs' median distance in source standard deviations: large values
  mean the target visits states the source barely covers, and the matched signal is weak.

This signal needs no labels and no simulator. How well it predicts real quality (planted labels,
oracle Spearman) is measured in ``benchmarks/planted_mujoco.py`` (README, "How good on real data").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from xcurate.datasets.synthetic import auc
from xcurate.errors import StoreError
from xcurate.scoring.store import read_scores
from xcurate.utils import atomic_path, make_manifest, write_json_atomic

HOLDOUT_MARKER = "holdout.json"
#: source rows paired with each held-out row by the matched signal
MATCH_K = 5
#: source rows the matched signal searches at most (a seeded uniform sample beyond that)
MATCH_MAX_SOURCE = 200_000


def oriented(values: np.ndarray, direction: str) -> np.ndarray:
    """Values with "higher = more useful" orientation (``lower`` columns negated)."""
    v = np.asarray(values, np.float64)
    return -v if direction == "lower" else v


def holdout_stats(source_scores: np.ndarray, holdout_scores: np.ndarray) -> dict[str, float]:
    """The three statistics of the module docstring for oriented (higher = better) scores.

    Non-finite values (NULL scores) are dropped on both sides.
    """
    s = source_scores[np.isfinite(source_scores)]
    h = holdout_scores[np.isfinite(holdout_scores)]
    if not len(s) or not len(h):
        return {"holdout_auc": float("nan"), "holdout_median_pct": float("nan"),
                "source_above_holdout_q10": float("nan"), "n_source": len(s), "n_holdout": len(h)}
    labels = np.concatenate([np.zeros(len(s), np.int8), np.ones(len(h), np.int8)])
    a = auc(np.concatenate([s, h]), labels)
    srt = np.sort(s)
    med_pct = 100.0 * np.searchsorted(srt, np.median(h), side="right") / len(s)
    q10 = np.quantile(h, 0.1)
    above = float(np.mean(s >= q10))
    return {"holdout_auc": float(a), "holdout_median_pct": float(med_pct), "source_above_holdout_q10": above,
            "n_source": len(s), "n_holdout": len(h)}


def match_rows(source_x: np.ndarray, held_x: np.ndarray, k: int = MATCH_K) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest source rows of every held-out row (exact L2 on source z-scores, faiss).

    Args:
        source_x: (n_source, d) features of the source rows (here: concatenated s, a).
        held_x: (n_held, d) features of the held-out target rows.
        k: neighbours per held-out row (at most ``n_source``).

    Returns:
        ``(idx, dist)``: (n_held, k) source row indices and distances in source standard deviations.
    """
    import faiss

    src = np.asarray(source_x, np.float64)
    mu, sd = src.mean(0), src.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    zs = np.ascontiguousarray((src - mu) / sd, np.float32)
    zh = np.ascontiguousarray((np.asarray(held_x, np.float64) - mu) / sd, np.float32)
    index = faiss.IndexFlatL2(zs.shape[1])
    index.add(zs)
    d2, idx = index.search(zh, min(k, len(zs)))
    return idx.astype(np.int64), np.sqrt(np.maximum(d2, 0.0)).astype(np.float64)


def matched_stats(source_scores: np.ndarray, holdout_scores: np.ndarray, idx: np.ndarray,
                  dist: np.ndarray | None = None) -> dict[str, float]:
    """``matched_win`` and ``match_distance`` (module docstring) for oriented scores.

    Args:
        source_scores: oriented (higher = better) scores of every source row the indices refer to.
        holdout_scores: oriented scores of the held-out rows (row i pairs with ``idx[i]``).
        idx: (n_held, k) matched source rows (:func:`match_rows`).
        dist: their distances, for ``match_distance`` (NaN when omitted).

    Pairs with a non-finite score on either side are dropped.
    """
    h = np.asarray(holdout_scores, np.float64)[:, None]
    s = np.asarray(source_scores, np.float64)[idx]
    ok = np.isfinite(h) & np.isfinite(s)
    n = int(ok.sum())
    if not n:
        return {"matched_win": float("nan"), "match_distance": float("nan"), "n_pairs": 0}
    win = (h > s).astype(np.float64) + 0.5 * (h == s)
    med = float(np.median(np.asarray(dist, np.float64)[ok])) if dist is not None else float("nan")
    return {"matched_win": float(win[ok].mean()), "match_distance": med, "n_pairs": n}


def consensus(values: dict[str, np.ndarray], groups: dict[str, str]) -> dict[str, float]:
    """Agreement of each oriented column with the other scorers: a label-free quality signal.

    For column ``c`` of scorer ``groups[c]``: the mean, over every *other* scorer, of the
    highest Spearman correlation between ``c`` and one of that scorer's columns (all oriented,
    higher = more useful; rows where either value is non-finite are dropped). Scorers that
    measure the same thing (the target's dynamics) in different ways agree; a column that
    measures something else, or is inverted, disagrees with them. NaN when no other scorer.

    Args:
        values: column name -> oriented scores, all over the same rows.
        groups: column name -> scorer name (columns of one scorer never vote for each other).
    """
    from scipy.stats import rankdata

    names = list(values)
    ranks = {}
    for c in names:
        v = np.asarray(values[c], np.float64)
        r = np.full(len(v), np.nan)
        ok = np.isfinite(v)
        r[ok] = rankdata(v[ok])
        ranks[c] = r

    cache: dict[frozenset[str], float] = {}

    def rho(a: str, b: str) -> float:  # symmetric: each pair is computed once
        key = frozenset((a, b))
        if key not in cache:
            cache[key] = _rank_corr(ranks[a], ranks[b])
        return cache[key]

    def _rank_corr(x: np.ndarray, y: np.ndarray) -> float:
        ok = np.isfinite(x) & np.isfinite(y)
        n = int(ok.sum())
        if n < 3:
            return float("nan")
        if n < len(x):  # re-rank on the common rows: Spearman = Pearson of the ranks
            x, y = rankdata(x[ok]), rankdata(y[ok])
        x, y = x - (n + 1) / 2, y - (n + 1) / 2
        den = float(np.sqrt((x * x).sum() * (y * y).sum()))
        return float((x * y).sum() / den) if den > 0 else 0.0

    out = {}
    for c in names:
        per = []
        for g in sorted({groups[o] for o in names} - {groups[c]}):
            r = [rho(c, o) for o in names if groups[o] == g]
            r = [x for x in r if np.isfinite(x)]
            if r:
                per.append(max(r))
        out[c] = float(np.mean(per)) if per else float("nan")
    return out


def _store_matches(store: Any, held_ids: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source rows, idx into them, dist) of the matched signal for the held-out target rows ``held_ids``."""
    def sa(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            t = pq.read_table(path, columns=["transition_id", "obs", "act"])
        except (OSError, pa.ArrowException, KeyError) as e:
            raise StoreError(f"{path}: cannot read the {what}'s transition_id/obs/act ({e})") from None
        from xcurate.scoring.store import _column_numpy

        x = np.concatenate([_column_numpy(t.column("obs")).reshape(len(t), -1),
                            _column_numpy(t.column("act")).reshape(len(t), -1)], axis=1)
        return t.column("transition_id").to_numpy(), x

    _, src_x = sa(store.dir / "transitions.parquet", "source")
    tid, tgt_x = sa(store.dir / "target.parquet", "target")
    pos = {int(t): i for i, t in enumerate(tid)}
    missing = [int(t) for t in held_ids if int(t) not in pos]
    if missing:
        raise StoreError(f"{store.dir / 'target.parquet'}: held-out transition ids {missing[:3]} are not in the "
                         "store's target; re-score with --holdout")
    rows = _source_sample(len(src_x), seed)
    idx, dist = match_rows(src_x[rows], tgt_x[[pos[int(t)] for t in held_ids]])
    return rows, idx, dist


def _source_sample(n: int, seed: int) -> np.ndarray:
    """The source rows the label-free signals use: all, or ``MATCH_MAX_SOURCE`` seeded ones (sorted)."""
    if n <= MATCH_MAX_SOURCE:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, MATCH_MAX_SOURCE, replace=False))


def _consensus_inputs(store: Any, runs: dict[str, dict[str, Any]], seed: int = 0,
                      ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Oriented non-oracle columns of every current run on a seeded sample of source rows."""
    votes: dict[str, np.ndarray] = {}
    groups: dict[str, str] = {}
    sample = None
    for scorer, m in sorted(runs.items()):
        cols = [c for c, spec in m.get("columns", {}).items()
                if spec["direction"] in ("higher", "lower") and not c.startswith("oracle_")]
        if not cols:
            continue
        path = store.dir / "runs" / m["run_id"] / "scores.parquet"
        try:
            t = read_scores(path, columns=cols)
        except (pa.ArrowException, KeyError) as e:
            raise StoreError(f"{path}: cannot read the scores ({e})") from None
        if sample is None:
            sample = _source_sample(t.num_rows, seed)
        for c in cols:
            v = t.column(c).to_numpy(zero_copy_only=False).astype(np.float64)[sample]
            votes[c] = oriented(v, m["columns"][c]["direction"])
            groups[c] = scorer
    return votes, groups


def holdout_signal(store: Any, matched: bool = True) -> pa.Table:
    """Per ranked column of every current run scored with a holdout: the label-free statistics.

    Args:
        store: a :class:`~xcurate.scoring.store.Store`.
        matched: also compute ``matched_win`` and ``match_distance`` (NaN when False).

    Returns:
        A table with columns ``column, scorer, run_id, direction, holdout_auc, holdout_median_pct,
        source_above_holdout_q10, n_source, n_holdout, matched_win, match_distance, consensus``,
        best ``holdout_auc`` first. ``consensus`` (:func:`consensus`) uses every current non-oracle
        run's columns, on at most ``MATCH_MAX_SOURCE`` seeded source rows; NaN with one scorer.

    Raises:
        StoreError: no current run of the store was scored with ``--holdout``.
    """
    rows: list[dict[str, Any]] = []
    matches: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    runs = store.current_runs()
    votes, groups = _consensus_inputs(store, runs)
    for scorer, m in sorted(runs.items()):
        if not m.get("holdout"):
            continue
        rdir = store.dir / "runs" / m["run_id"]
        hpath = rdir / m["holdout"].get("file", "holdout.parquet")
        try:
            held = pq.read_table(hpath)
            scored = read_scores(rdir / "scores.parquet")
        except (OSError, pa.ArrowInvalid) as e:
            raise StoreError(f"{hpath}: cannot read the held-out scores ({e})") from None
        match = None
        if matched:
            hid = held.column("transition_id").to_numpy()
            key = hid.tobytes()
            if key not in matches:
                matches[key] = _store_matches(store, hid)
            match = matches[key]
        for col, spec in m.get("columns", {}).items():
            if spec["direction"] not in ("higher", "lower") or col not in held.column_names:
                continue
            src = oriented(scored.column(col).to_numpy(zero_copy_only=False).astype(np.float64), spec["direction"])
            hol = oriented(held.column(col).to_numpy(zero_copy_only=False).astype(np.float64), spec["direction"])
            ms = ({"matched_win": float("nan"), "match_distance": float("nan")} if match is None else
                  {k: v for k, v in matched_stats(src[match[0]], hol, match[1], match[2]).items() if k != "n_pairs"})
            rows.append({"column": col, "scorer": scorer, "run_id": m["run_id"], "direction": spec["direction"],
                         **holdout_stats(src, hol), **ms})
    if not rows:
        raise StoreError(f"{store.dir}: no current score run has a held-out target part; score with "
                         f"`xcurate score ... --holdout 0.2 --store {store.dir}` first")
    agree = consensus(votes, groups) if votes else {}
    for r in rows:
        r["consensus"] = agree.get(r["column"], float("nan"))
    rows.sort(key=lambda r: (-(r["holdout_auc"] if np.isfinite(r["holdout_auc"]) else -1), r["column"]))
    return pa.Table.from_pylist(rows)


def holdout_report(store: Any, out: str | Path, force: bool = False) -> pa.Table:
    """Write ``holdout.csv``/``.parquet``, ``report.md`` and a manifest to ``out``; return the table."""
    from xcurate.diagnostics.report import _check_out

    t0 = time.perf_counter()
    out = Path(out)
    _check_out(out, force, marker=HOLDOUT_MARKER)
    table = holdout_signal(store)
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir(parents=True)
        pacsv.write_csv(table, tmp / "holdout.csv")
        pq.write_table(table, tmp / "holdout.parquet")
        lines = ["# Held-out target rows against the source (label-free validation)", "",
                 f"Store: `{store.dir}`. A score that measures target-likeness ranks held-out target rows "
                 "above most source rows (AUC 1); 0.5 = it cannot tell them apart.", "",
                 f"Matched win: the same against each held-out row's {MATCH_K} nearest source rows in (s, a), so the "
                 "behaviour is taken out (0.5 = the score sees no dynamics difference). Consensus: the column's "
                 "mean Spearman agreement with the other scorers (needs no holdout).", "",
                 "| column | direction | holdout AUC | matched win | match distance (source SDs) | consensus | "
                 "held-out median percentile | source share above held-out q10 | held-out rows |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in table.to_pylist():
            lines.append(f"| `{r['column']}` | {r['direction']} | {r['holdout_auc']:.3f} | {r['matched_win']:.3f} | "
                         f"{r['match_distance']:.2f} | {r['consensus']:+.3f} | {r['holdout_median_pct']:.1f} | "
                         f"{r['source_above_holdout_q10']:.3f} | {r['n_holdout']} |")
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
        manifest = make_manifest("holdout_report", inputs={"store": str(store.dir / "store.json")},
                                 config={"store": str(store.dir), "against": "holdout"}, seed=None,
                                 timings={"total": time.perf_counter() - t0},
                                 runs=sorted({r["run_id"] for r in table.to_pylist()}),
                                 files=["holdout.csv", "holdout.parquet", "report.md", HOLDOUT_MARKER])
        write_json_atomic(tmp / HOLDOUT_MARKER, manifest)
    return table
