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
from xcurate.utils import atomic_path, make_manifest, write_json_atomic

HOLDOUT_MARKER = "holdout.json"


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


def holdout_signal(store: Any) -> pa.Table:
    """Per ranked column of every current run scored with a holdout: the holdout statistics.

    Args:
        store: a :class:`~xcurate.scoring.store.Store`.

    Returns:
        A table with columns ``column, scorer, run_id, direction, holdout_auc, holdout_median_pct,
        source_above_holdout_q10, n_source, n_holdout``, best ``holdout_auc`` first.

    Raises:
        StoreError: no current run of the store was scored with ``--holdout``.
    """
    rows: list[dict[str, Any]] = []
    for scorer, m in sorted(store.current_runs().items()):
        if not m.get("holdout"):
            continue
        rdir = store.dir / "runs" / m["run_id"]
        hpath = rdir / m["holdout"].get("file", "holdout.parquet")
        try:
            held = pq.read_table(hpath)
            scored = pq.read_table(rdir / "scores.parquet")
        except (OSError, pa.ArrowInvalid) as e:
            raise StoreError(f"{hpath}: cannot read the held-out scores ({e})") from None
        for col, spec in m.get("columns", {}).items():
            if spec["direction"] not in ("higher", "lower") or col not in held.column_names:
                continue
            src = oriented(scored.column(col).to_numpy(zero_copy_only=False).astype(np.float64), spec["direction"])
            hol = oriented(held.column(col).to_numpy(zero_copy_only=False).astype(np.float64), spec["direction"])
            rows.append({"column": col, "scorer": scorer, "run_id": m["run_id"], "direction": spec["direction"],
                         **holdout_stats(src, hol)})
    if not rows:
        raise StoreError(f"{store.dir}: no current score run has a held-out target part; score with "
                         f"`xcurate score ... --holdout 0.2 --store {store.dir}` first")
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
                 "| column | direction | holdout AUC | held-out median percentile | source share above held-out q10 "
                 "| held-out rows |", "|---|---|---|---|---|---|"]
        for r in table.to_pylist():
            lines.append(f"| `{r['column']}` | {r['direction']} | {r['holdout_auc']:.3f} | "
                         f"{r['holdout_median_pct']:.1f} | {r['source_above_holdout_q10']:.3f} | {r['n_holdout']} |")
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
        manifest = make_manifest("holdout_report", inputs={"store": str(store.dir / "store.json")},
                                 config={"store": str(store.dir), "against": "holdout"}, seed=None,
                                 timings={"total": time.perf_counter() - t0},
                                 runs=sorted({r["run_id"] for r in table.to_pylist()}),
                                 files=["holdout.csv", "holdout.parquet", "report.md", HOLDOUT_MARKER])
        write_json_atomic(tmp / HOLDOUT_MARKER, manifest)
    return table
