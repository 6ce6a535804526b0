"""Scorer diagnostics against a reference quantity (TABB's percentile-group diagnostic and more).

For every score column of a store, source transitions are ranked "most useful first" (respecting
the column's declared direction), split into equal-size percentile groups with DuckDB's
``ntile``, and the reference quantity (by default the oracle Bellman error) is summarised per
group: mean, std, quartiles. A good scorer gives a monotone curve: the most useful group has the
smallest oracle error and the error grows group after group (TABB, fig. 3). The report adds the
Spearman correlation of each score with the reference (computed in SQL with average ranks), score
histograms split by source quality, and the Spearman correlation matrix between scorers.

Everything is computed through ``store.query(sql)`` (DuckDB over the store's Parquet files), so
the diagnostics work on a 1M-row store without loading it into memory; only the histograms and
the scorer correlation matrix use a (seeded) sample of at most ``sample_rows`` rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xcurate.errors import ConfigError, StoreError

#: Reference quantities ``diagnose`` can rank against: (direction, unit, description).
REFERENCES: dict[str, tuple[str, str, str]] = {
    "oracle_bellman_error": ("lower", "return units",
                             "oracle Bellman error |r + gamma V(s') - (r_tar + gamma V(s'_tar))|"),
    "oracle_dynamics_gap": ("lower", "L2 distance in observation space",
                            "oracle dynamics gap ||s' - s'_tar||"),
    "episode_return": ("higher", "return of the source episode (sum of rewards)",
                       "return of the episode the transition belongs to"),
    "quality": ("higher", "quality level (0 = lowest mean episode return)",
                "source quality label, coded by the rank of its mean episode return"),
}

#: Name of the marker file that identifies a directory as a diagnostics report.
REPORT_MARKER = "report.json"

#: Files ``diagnose`` writes at the top level of the output directory (used to recognise reports).
REPORT_FILES = ("report.md", REPORT_MARKER)


@dataclass
class Report:
    """The result of :func:`diagnose`.

    Attributes:
        out: the report directory.
        against: the reference quantity.
        scores: the score columns that were diagnosed (most useful first ranking per column).
        bins: one row per (score, bin): n, mean, std, q25, median, q75 of the reference, score range.
        summary: one row per score: direction, Spearman (raw and aligned), bin trend, verdict.
        correlation: Spearman correlation matrix between the scores (long format: a, b, rho).
        figures: figure name -> PNG path.
        tables: table name -> {"csv": path, "parquet": path}.
        n_rows: number of source rows with the reference available.
        skipped: score columns left out of the default set and why (e.g. exact mirror of another).
        timings: wall seconds per phase.
    """

    out: Path
    against: str
    scores: list[str]
    bins: pa.Table
    summary: pa.Table
    correlation: pa.Table
    figures: dict[str, Path] = field(default_factory=dict)
    tables: dict[str, dict[str, Path]] = field(default_factory=dict)
    n_rows: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def markdown(self) -> Path:
        """Path of ``report.md``."""
        return self.out / "report.md"

    def spearman(self) -> dict[str, float]:
        """Aligned Spearman per score (+1 = ranks exactly like the reference says it should)."""
        d = self.summary.to_pydict()
        return dict(zip(d["score"], d["spearman_aligned"], strict=True))

    def bin_means(self, score: str) -> list[float]:
        """Mean reference per bin for ``score`` (bin 1 = most useful group first)."""
        d = self.bins.to_pydict()
        return [m for s, m in zip(d["score"], d["mean"], strict=True) if s == score]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


class _Conn:
    """Runs many queries on one DuckDB connection from ``store.connect()`` (else ``store.query``).

    ``Store.query`` opens a fresh connection (and re-reads every run manifest) per call; the
    diagnostics issue a dozen queries, so they share one connection instead.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.dir = _store_dir(store)
        # (the store's connection is locked; it already runs small stores on one DuckDB thread)
        self._con = store.connect() if callable(getattr(store, "connect", None)) else None

    def query(self, sql: str) -> pa.Table:
        if self._con is None:
            return self.store.query(sql)
        import duckdb

        try:
            return self._con.sql(sql).to_arrow_table()
        except duckdb.Error as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreError(f"{self.dir}: query failed: {msg}") from None

    def score_columns(self) -> dict[str, Any]:
        return dict(self.store.score_columns())

    def close(self) -> None:
        if self._con is not None:
            self._con.close()


def _q(name: str) -> str:
    """Quote a SQL identifier (names are validated against the store's columns first)."""
    return '"' + name.replace('"', '""') + '"'


def _store_dir(store: Any) -> Path | None:
    for attr in ("dir", "path", "root", "directory"):
        v = getattr(store, attr, None)
        if v is not None and not callable(v):
            return Path(v)
    return None


def scorer_for_column(column: str) -> str:
    """The registered scorer that produces ``column`` (falls back to the prefix before ``_``)."""
    try:
        from xcurate.scoring.base import available_scorers, get_scorer_class

        for name in available_scorers():
            if column in get_scorer_class(name).columns:
                return name
    except Exception:  # a broken scorer module must not hide the useful message
        pass
    return column.split("_", 1)[0]


def _view_columns(store: Any) -> list[str]:
    try:
        return list(store.query("SELECT * FROM scores LIMIT 0").schema.names)
    except StoreError:
        raise
    except Exception as e:  # noqa: BLE001 - turn anything else into one line
        raise StoreError(f"{_store_dir(store)}: cannot read the scores view ({type(e).__name__}: {e})") from None


def _direction_sign(direction: str) -> int:
    return 1 if direction == "higher" else -1


def _scalar(table: pa.Table, col: str) -> Any:
    return table.column(col)[0].as_py() if table.num_rows else None


def _ref_expr(against: str) -> tuple[str, str]:
    """(CTE prefix, expression) giving the numeric reference per row of ``scores``."""
    if against == "quality":
        cte = ("qorder AS (SELECT quality AS q_label, dense_rank() OVER (ORDER BY avg(episode_return)) - 1 "
               "AS q_code FROM scores WHERE quality IS NOT NULL GROUP BY quality), ")
        return cte, "CAST(q_code AS DOUBLE)"
    return "", f"CAST({_q(against)} AS DOUBLE)"


def _base_sql(score: str, against: str, has_valid: bool, extra_cols: str = "") -> str:
    cte, ref = _ref_expr(against)
    join = " LEFT JOIN qorder ON scores.quality = qorder.q_label" if against == "quality" else ""
    valid = " AND COALESCE(CAST(oracle_valid AS BOOLEAN), FALSE)" if has_valid and against.startswith("oracle_") else ""
    s = f"CAST({_q(score)} AS DOUBLE)"
    return (f"WITH {cte}base AS (SELECT transition_id, {s} AS s, {ref} AS r{extra_cols} FROM scores{join} "
            f"WHERE {s} IS NOT NULL AND isfinite({s}) AND {ref} IS NOT NULL AND isfinite({ref}){valid})")


def _check_out(out: Path, force: bool, marker: str = REPORT_MARKER) -> None:
    """Refuse an ``--out`` that holds anything but an earlier report (replaced only with ``force``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return
    if (out / marker).exists() or (out / REPORT_MARKER).exists():
        if not force:
            raise ConfigError(f"{out}: already holds a diagnostics report; pass --force to replace it "
                              "or choose another --out")
        return
    raise ConfigError(f"{out}: exists and holds other files (not a diagnostics report); choose an empty "
                      "or new --out directory")


# ------------------------------------------------------------------------------------------------
# the computations (SQL)
# ------------------------------------------------------------------------------------------------


def bin_table(store: Any, score: str, against: str, bins: int, direction: str,
              has_valid: bool = False) -> pa.Table:
    """Percentile groups of ``score`` (most useful first) with the reference summarised per group.

    Rows are ordered by usefulness (``score`` descending if its direction is "higher", ascending
    if "lower"; ties broken by transition_id so the split is deterministic), cut into ``bins``
    equal-size groups with ``ntile``; bin 1 is the most useful group.
    """
    order = "DESC" if direction == "higher" else "ASC"
    sql = (_base_sql(score, against, has_valid)
           + f", ranked AS (SELECT s, r, ntile({int(bins)}) OVER (ORDER BY s {order}, transition_id) AS bin "
           "FROM base) "
           "SELECT bin, count(*) AS n, avg(r) AS mean, stddev_samp(r) AS std, quantile_cont(r, 0.25) AS q25, "
           "quantile_cont(r, 0.5) AS median, quantile_cont(r, 0.75) AS q75, min(s) AS score_min, "
           "max(s) AS score_max FROM ranked GROUP BY bin ORDER BY bin")
    return store.query(sql)


def spearman_sql(store: Any, score: str, against: str, has_valid: bool = False) -> tuple[float, int]:
    """Spearman correlation between ``score`` and the reference, in SQL (average ranks for ties)."""
    sql = (_base_sql(score, against, has_valid)
           + ", rk AS (SELECT rank() OVER (ORDER BY s) + (count(*) OVER (PARTITION BY s) - 1) / 2.0 AS rs, "
           "rank() OVER (ORDER BY r) + (count(*) OVER (PARTITION BY r) - 1) / 2.0 AS rr FROM base) "
           "SELECT corr(rs, rr) AS rho, count(*) AS n FROM rk")
    t = store.query(sql)
    rho = _scalar(t, "rho")
    return (float("nan") if rho is None else float(rho)), int(_scalar(t, "n") or 0)


def _sample(store: Any, cols: list[str], sample_rows: int, seed: int) -> dict[str, np.ndarray]:
    sel = ", ".join(f"CAST({_q(c)} AS DOUBLE) AS {_q(c)}" for c in cols)
    n = int(_scalar(store.query("SELECT count(*) AS n FROM scores"), "n") or 0)
    samp = f" USING SAMPLE reservoir({int(sample_rows)} ROWS) REPEATABLE ({int(seed)})" if n > sample_rows else ""
    t = store.query(f"SELECT {sel}, CAST(quality AS VARCHAR) AS quality, CAST(episode_return AS DOUBLE) AS ret "
                    f"FROM scores{samp}")
    out: dict[str, np.ndarray] = {}
    for c in cols:
        out[c] = t.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
    q = t.column("quality").to_pylist()
    labels = np.array(["(none)" if v is None else str(v) for v in q], dtype=object)
    if len(set(labels.tolist())) < 2:
        # one label for the whole source (e.g. a mixed dataset): group by episode-return terciles
        ret = t.column("ret").to_numpy(zero_copy_only=False).astype(np.float64)
        if len(ret) >= 3 and np.isfinite(ret).any() and np.nanmax(ret) > np.nanmin(ret):
            lo, hi = np.nanpercentile(ret, [100 / 3, 200 / 3])
            labels = np.where(ret <= lo, f"1: episode return <= {lo:.0f}",
                              np.where(ret <= hi, f"2: {lo:.0f} < return <= {hi:.0f}", f"3: return > {hi:.0f}"))
            labels = labels.astype(object)
            out["quality_kind"] = np.array(["episode-return terciles"], dtype=object)
    out["quality"] = labels
    return out


def spearman_matrix(data: dict[str, np.ndarray], cols: list[str]) -> tuple[np.ndarray, int]:
    """Spearman correlation matrix over the rows where every column is finite (and that count)."""
    from scipy.stats import rankdata

    if not cols:
        return np.zeros((0, 0)), 0
    mask = np.ones(len(data[cols[0]]), bool)
    for c in cols:
        mask &= np.isfinite(data[c])
    n = int(mask.sum())
    k = len(cols)
    if n < 3:
        return np.full((k, k), np.nan), n
    ranks = np.stack([rankdata(data[c][mask]) for c in cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.corrcoef(ranks) if k > 1 else np.ones((1, 1))
    return np.atleast_2d(m), n


def _trend(means: list[float], ref_direction: str) -> float:
    """Aligned Spearman of bin means against bin index: +1 = best group first, monotone worsening."""
    from scipy.stats import spearmanr

    m = np.asarray(means, dtype=float)
    if len(m) < 2 or not np.isfinite(m).all() or np.ptp(m) == 0:
        return float("nan")
    rho = float(spearmanr(np.arange(len(m)), m).statistic)
    return rho if ref_direction == "lower" else -rho


def verdict(aligned: float, trend: float) -> str:
    """A one-word verdict from the aligned Spearman and the bin trend."""
    if not math.isfinite(aligned):
        return "undefined"
    if aligned >= 0.1 and trend >= 0.8:
        return "good"
    if (aligned >= 0.05 and trend >= 0.5) or (aligned >= 0.1 and trend >= 0):
        return "weak"
    if aligned <= -0.05 and trend <= -0.5:
        return "inverted"
    return "uninformative"


# ------------------------------------------------------------------------------------------------
# diagnose
# ------------------------------------------------------------------------------------------------


def _resolve_scores(store: Any, scores: list[str] | None, against: str,
                    specs: dict[str, Any], view_cols: list[str]) -> list[str]:
    store_dir = _store_dir(store) or "STORE"
    if scores:
        out = []
        for s in scores:
            s = s.strip()
            if not s:
                continue
            if s not in view_cols or s not in specs:
                scorer = scorer_for_column(s)
                raise ConfigError(f"{store_dir}: store has no score column {s!r}; run scorer {scorer!r} first "
                                  f"(xcurate score --scorers {scorer} --store {store_dir} ...)")
            if specs[s].direction not in ("higher", "lower"):
                raise ConfigError(f"score column {s!r} has direction {specs[s].direction!r}: it is auxiliary "
                                  "and cannot be ranked (pick a column with direction higher/lower)")
            out.append(s)
        if not out:
            raise ConfigError("--scores is empty")
        return out
    out = [c for c, spec in specs.items() if c in view_cols and spec.direction in ("higher", "lower")
           and not c.startswith("oracle_") and c != against]
    if not out:
        raise ConfigError(f"{store_dir}: store has no score columns to diagnose; run some scorers first "
                          f"(xcurate score --scorers ot,knn,... --store {store_dir} ...)")
    return out


def diagnose(store: Any, scores: list[str] | None = None, against: str = "oracle_bellman_error",
             bins: int = 10, out: str | Path = "report", force: bool = False, sample_rows: int = 200_000,
             seed: int = 0, progress: bool = False, figures: bool = True) -> Report:
    """Rank source transitions by each score and compare with a reference quantity.

    Args:
        store: an open :class:`xcurate.scoring.store.Store` (anything with ``query(sql) ->
            pyarrow.Table`` over a ``scores`` view and ``score_columns()``), or a store directory.
        scores: score columns to diagnose; default: every ranked (higher/lower) non-oracle column,
            leaving out exact mirrors (e.g. ``tbm_score`` = -``tbm``).
        against: the reference: ``oracle_bellman_error`` (default), ``oracle_dynamics_gap``,
            ``episode_return`` or ``quality``.
        bins: number of equal-size percentile groups (TABB uses 10).
        out: report directory (``report.md``, PNG figures, CSV + Parquet tables, ``report.json``).
        force: replace an existing report in ``out``.
        sample_rows: maximum rows sampled for histograms and the scorer correlation matrix.
        seed: seed of that sample.
        progress: print one line per phase.
        figures: draw the PNG figures (False: tables and report.md only; faster).

    Returns:
        The :class:`Report` (tables in memory, paths of every file written).

    Raises:
        ConfigError: unknown reference, missing score column (names the scorer to run), bins out of
            range, ``out`` holding another report (without ``force``) or other files.
        StoreError: the store has no oracle columns when an oracle reference is asked for.
    """
    t_start = time.perf_counter()
    if isinstance(store, (str, Path)):
        from xcurate.scoring.store import Store

        store = Store(store)
    out = Path(out)
    store_dir = _store_dir(store)
    conn = _Conn(store)
    try:
        return _diagnose(conn, store_dir, scores, against, bins, out, force, sample_rows, seed, progress,
                         figures, t_start)
    finally:
        conn.close()


def _diagnose(store: _Conn, store_dir: Path | None, scores: list[str] | None, against: str, bins: int,
              out: Path, force: bool, sample_rows: int, seed: int, progress: bool, figures: bool,
              t_start: float) -> Report:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from xcurate.diagnostics import plots
    from xcurate.utils import atomic_path, make_manifest, write_json_atomic

    timings: dict[str, float] = {}
    if against not in REFERENCES:
        raise ConfigError(f"--against {against!r} is not a reference quantity (choose from "
                          f"{', '.join(REFERENCES)})")
    if int(bins) < 2:
        raise ConfigError(f"--bins must be at least 2 (got {bins})")
    bins = int(bins)
    _check_out(out, force)

    view_cols = _view_columns(store)
    specs = dict(store.score_columns())
    if against.startswith("oracle_") and against not in view_cols:
        raise StoreError(f"{store_dir or 'store'}: store has no oracle columns ({against}); run the oracle "
                         f"scorer first: xcurate score --scorers oracle --domain TARGET_DOMAIN --store "
                         f"{store_dir or 'STORE'} ...")
    if against == "quality":
        nq = _scalar(store.query("SELECT count(DISTINCT quality) AS n FROM scores WHERE quality IS NOT NULL"), "n")
        if not nq or int(nq) < 2:
            raise StoreError(f"{store_dir or 'store'}: source has {int(nq or 0)} quality label(s); --against "
                             "quality needs at least 2 (use --against episode_return or an oracle column)")
    has_valid = "oracle_valid" in view_cols
    requested = scores
    cols = _resolve_scores(store, scores, against, specs, view_cols)

    # rows available for the reference
    base_n = store.query(_base_sql(cols[0], against, has_valid) + " SELECT count(*) AS n FROM base")
    n_rows = int(_scalar(base_n, "n") or 0)

    # Spearman per score (SQL); in the default set, columns with too few rows are skipped
    t0 = time.perf_counter()
    skipped: dict[str, str] = {}
    rhos: dict[str, tuple[float, int]] = {}
    for c in cols:
        rho, n = spearman_sql(store, c, against, has_valid)
        if n < bins:
            if requested or len(cols) == 1:
                raise ConfigError(f"--bins {bins} is larger than the {n} source rows that have both {c} and "
                                  f"{against}; use --bins {max(2, n)} or fewer")
            skipped[c] = f"only {n} rows with {against} (fewer than --bins {bins})"
            continue
        rhos[c] = (rho, n)
    cols = [c for c in cols if c in rhos]
    if not cols:
        raise ConfigError(f"--bins {bins} is larger than the rows available for every score; use fewer bins")
    timings["spearman_sql"] = time.perf_counter() - t0

    # sample for histograms + correlation matrix; de-duplicate exact mirrors in the default set
    t0 = time.perf_counter()
    sample = _sample(store, cols, sample_rows, seed)
    aligned_sample = {c: sample[c] * _direction_sign(specs[c].direction) for c in cols}
    corr, n_corr = spearman_matrix(aligned_sample, cols)
    if not requested and len(cols) > 1:
        keep: list[int] = []
        for i, c in enumerate(cols):
            twin = next((cols[j] for j in keep if np.isfinite(corr[i, j]) and abs(corr[i, j]) >= 0.9999), None)
            if twin is not None:
                skipped[c] = f"ranks exactly like {twin} (|Spearman| = 1)"
            else:
                keep.append(i)
        cols = [cols[i] for i in keep]
        corr = corr[np.ix_(keep, keep)]
    timings["sample_and_correlation"] = time.perf_counter() - t0

    # per-score bins and Spearman (SQL)
    t0 = time.perf_counter()
    ref_dir = REFERENCES[against][0]
    bin_rows: dict[str, list] = {k: [] for k in ("score", "direction", "bin", "pct_from", "pct_to", "n", "mean",
                                                  "std", "q25", "median", "q75", "score_min", "score_max")}
    sum_rows: dict[str, list] = {k: [] for k in ("score", "scorer", "direction", "n", "spearman",
                                                  "spearman_aligned", "bin_trend", "top_mean", "bottom_mean",
                                                  "overall_mean", "verdict")}
    for c in cols:
        d = specs[c].direction
        rho, n = rhos[c]
        bt = bin_table(store, c, against, bins, d, has_valid).to_pydict()
        for i, b in enumerate(bt["bin"]):
            bin_rows["score"].append(c)
            bin_rows["direction"].append(d)
            bin_rows["bin"].append(int(b))
            bin_rows["pct_from"].append(100.0 * (b - 1) / bins)
            bin_rows["pct_to"].append(100.0 * b / bins)
            for k in ("n", "mean", "std", "q25", "median", "q75", "score_min", "score_max"):
                v = bt[k][i]
                bin_rows[k].append(int(v) if k == "n" else (float("nan") if v is None else float(v)))
        means = bt["mean"]
        aligned = rho * _direction_sign(d) * _direction_sign(ref_dir) if math.isfinite(rho) else float("nan")
        trend = _trend(means, ref_dir)
        ns = np.asarray(bt["n"], float)
        overall = float(np.dot(ns, np.asarray(means, float)) / ns.sum())
        sum_rows["score"].append(c)
        sum_rows["scorer"].append(scorer_for_column(c))
        sum_rows["direction"].append(d)
        sum_rows["n"].append(n)
        sum_rows["spearman"].append(rho)
        sum_rows["spearman_aligned"].append(aligned)
        sum_rows["bin_trend"].append(trend)
        sum_rows["top_mean"].append(float(means[0]))
        sum_rows["bottom_mean"].append(float(means[-1]))
        sum_rows["overall_mean"].append(overall)
        sum_rows["verdict"].append(verdict(aligned, trend))
    bins_t = pa.table(bin_rows)
    summary_t = pa.table(sum_rows)
    corr_rows: dict[str, list] = {"a": [], "b": [], "spearman": [], "n": []}
    for i, a in enumerate(cols):
        for j, b in enumerate(cols):
            corr_rows["a"].append(a)
            corr_rows["b"].append(b)
            corr_rows["spearman"].append(float(corr[i, j]))
            corr_rows["n"].append(n_corr)
    corr_t = pa.table(corr_rows)
    timings["bins_sql"] = time.perf_counter() - t0
    if progress:
        print(f"diagnose: {len(cols)} scores x {bins} bins over {n_rows} rows against {against}")

    # write everything into a temporary directory, then swap it in atomically
    report = Report(out=out, against=against, scores=cols, bins=bins_t, summary=summary_t,
                    correlation=corr_t, n_rows=n_rows, skipped=skipped, timings=timings)
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir(parents=True)
        t0 = time.perf_counter()
        tables = {"bins": bins_t, "summary": summary_t, "correlation": corr_t}
        for name, tab in tables.items():
            pacsv.write_csv(tab, tmp / f"{name}.csv")
            pq.write_table(tab, tmp / f"{name}.parquet")
            report.tables[name] = {"csv": out / f"{name}.csv", "parquet": out / f"{name}.parquet"}
        figs = plots.make_figures(tmp, report, sample, corr, n_corr) if figures else {}
        report.figures = {k: out / Path(v).name for k, v in figs.items()}
        timings["figures"] = time.perf_counter() - t0
        (tmp / "report.md").write_text(render_markdown(report, store_dir, n_corr))
        timings["total"] = time.perf_counter() - t_start
        inputs = {}
        if store_dir is not None and (store_dir / "store.json").exists():
            inputs["store"] = str(store_dir / "store.json")
        manifest = make_manifest("diagnostics_report", inputs=inputs,
                                 config={"store": str(store_dir) if store_dir else None, "scores": cols,
                                         "requested_scores": requested, "against": against, "bins": bins,
                                         "sample_rows": sample_rows},
                                 seed=seed, timings=timings, n_rows=n_rows, skipped=skipped,
                                 files=sorted(p.name for p in tmp.iterdir()) + [REPORT_MARKER])
        write_json_atomic(tmp / REPORT_MARKER, manifest)
    return report


# ------------------------------------------------------------------------------------------------
# markdown
# ------------------------------------------------------------------------------------------------


def _fmt(x: float, nd: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    ax = abs(x)
    if ax != 0 and (ax >= 1e4 or ax < 1e-3):
        return f"{x:.{nd}g}"
    return f"{x:.{nd}f}"


def _interpret(row: dict[str, Any], against: str, bins: int) -> str:
    ref_dir, unit, _ = REFERENCES[against]
    better = "lower" if ref_dir == "lower" else "higher"
    tm, bm, om = row["top_mean"], row["bottom_mean"], row["overall_mean"]
    base = (f"The most useful {100 // bins}% by `{row['score']}` has mean {against} {_fmt(tm)} versus "
            f"{_fmt(bm)} for the least useful {100 // bins}% (all rows: {_fmt(om)}).")
    v = row["verdict"]
    if v == "good":
        return (base + f" The curve is (close to) monotone in the right direction (bin trend "
                f"{_fmt(row['bin_trend'], 2)}): `{row['score']}` is a good scorer for this target.")
    if v == "weak":
        return base + (f" The trend is in the right direction but noisy (bin trend {_fmt(row['bin_trend'], 2)}, "
                       f"Spearman {_fmt(row['spearman_aligned'], 2)}): a weak scorer here.")
    if v == "inverted":
        return base + (f" The curve goes the WRONG way ({better} {against} is concentrated in the groups the "
                       "scorer ranks as least useful): the scorer prefers transitions that are worse for the target.")
    return base + (" The curve is flat or non-monotone: the score carries little information about "
                   f"{against} on this data.")


def render_markdown(report: Report, store_dir: Path | None, n_corr: int) -> str:
    """The Markdown text of ``report.md`` (figures embedded by relative path)."""

    def img(name: str, alt: str) -> str:
        if name in report.figures:
            return f"![{alt}]({name}.png)"
        return f"*(figure {name}.png not drawn: figures=False)*"

    against = report.against
    ref_dir, unit, ref_desc = REFERENCES[against]
    nb = int(report.bins.column("bin").to_numpy().max()) if report.bins.num_rows else 0
    summ = report.summary.to_pylist()
    lines = [
        "# xcurate diagnostics report",
        "",
        f"- store: `{store_dir}`" if store_dir else "- store: (in memory)",
        f"- reference: **{against}** = {ref_desc}; unit: {unit}; **{ref_dir} is better** for the target.",
        f"- rows: {report.n_rows} source transitions with the reference available"
        + (" (rows the oracle could not replay are excluded)" if against.startswith("oracle_") else ""),
        f"- groups: {nb} equal-size percentile groups per score, **most useful first** (each score's "
        "declared direction decides what 'useful' means).",
        f"- created: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        "",
        "## Summary",
        "",
        "Spearman is between the raw score and the reference; *aligned* flips its sign so that "
        "+1 always means \"ranks transitions exactly as the reference says they should be ranked\". "
        f"*Bin trend* is the Spearman of the {nb} group means against the group index, aligned the same way "
        "(+1 = perfectly monotone in the right direction).",
        "",
        "| score | direction | n | Spearman | aligned | bin trend | top group mean | bottom group mean | verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in summ:
        lines.append(f"| `{r['score']}` | {r['direction']} is better | {r['n']} | {_fmt(r['spearman'])} | "
                     f"{_fmt(r['spearman_aligned'])} | {_fmt(r['bin_trend'], 2)} | {_fmt(r['top_mean'])} | "
                     f"{_fmt(r['bottom_mean'])} | **{r['verdict']}** |")
    if report.skipped:
        lines += ["", "Left out of the default set: " + "; ".join(f"`{k}` {v}" for k, v in report.skipped.items())
                  + "."]
    good_word = "increasing" if ref_dir == "lower" else "decreasing"
    lines += [
        "",
        f"## {against} by percentile group (TABB, fig. 3)",
        "",
        img("bins_overlay", "percentile groups, all scores"),
        "",
        f"*x*: percentile group of the source ranked by each score, most useful first (group 1 = the top "
        f"{100 // max(nb, 1)}%); *y*: mean {against} ({unit}) in that group. The dashed line is the mean over "
        f"all rows, which is what a random scorer gets in every group. **A monotone {good_word} curve = a good "
        "scorer**: the transitions it ranks as most useful really are the ones closest to the target's "
        "Bellman backup, and usefulness degrades group by group.",
        "",
        img("bins_grid", "percentile groups per score"),
        "",
        "One panel per score: the solid line is the group mean, the dotted line the median and the shaded "
        "band the inter-quartile range (25th-75th percentile); the dashed line is the mean over all rows. "
        "Colours: green = good, light green = weak, grey = uninformative, red = inverted. The standard "
        "deviation per group is in `bins.csv`.",
        "",
    ]
    for r in summ:
        lines.append(f"- `{r['score']}`: {_interpret(r, against, nb)}")
    lines += [
        "",
        "## Spearman correlation with the reference",
        "",
        img("spearman", "spearman"),
        "",
        "Bars show the aligned Spearman correlation over every row (positive = the score orders "
        "transitions the way the reference does). Values near 0 mean the scorer is uninformative "
        f"about {against}; negative values mean it is inverted.",
        "",
        "## Score distributions by source quality",
        "",
        img("histograms", "histograms"),
        "",
        "Histograms of each score split by the quality label of the source data (when the store has a single "
        "label, by terciles of the episode return instead; density, x range clipped to "
        "the 0.5-99.5 percentiles and to 4 inter-quartile ranges beyond the quartiles; values outside are "
        "piled into the edge bins). An arrow in each title shows which side is better. A dynamics scorer "
        "should NOT simply separate quality levels (that is the advantage scorer's job); when all "
        "qualities overlap, the score measures something other than behaviour quality.",
        "",
        "## Correlation between scorers",
        "",
        img("correlation", "correlation"),
        "",
        f"Spearman correlation between the usefulness rankings of the scores on {n_corr} sampled rows where all "
        "are defined (columns where lower is better are negated first, so +1 always means \"agree on which "
        "transitions are most useful\"). Scores with rho near 1 rank the source the same way (one of them is "
        "enough); rho near 0 means they measure different things; negative rho means they disagree.",
        "",
        "## Files",
        "",
        "- `bins.csv` / `bins.parquet`: one row per (score, percentile group).",
        "- `summary.csv` / `summary.parquet`: one row per score.",
        "- `correlation.csv` / `correlation.parquet`: scorer-by-scorer Spearman matrix (long format).",
        "- `report.json`: manifest (config, inputs, versions, timings).",
        "",
    ]
    return "\n".join(lines)


def load_report(out: str | Path) -> dict[str, Any]:
    """Read the manifest of an existing report directory."""
    p = Path(out) / REPORT_MARKER
    if not p.exists():
        raise ConfigError(f"{out}: not a diagnostics report ({REPORT_MARKER} missing)")
    return json.loads(p.read_text())
