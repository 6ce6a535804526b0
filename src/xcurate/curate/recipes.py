"""Curation recipes: turn score columns of a store into a curated source dataset.

``curate(store, recipe, **options)`` returns the store's source dataset with two extra columns
that the trainer (``xcurate train``) understands:

* ``weight`` (float32, >= 0): per-transition weight of the source TD loss;
* ``keep`` (bool): whether the transition is sampled at all;

plus recipe-specific columns (``score``/``advantage_norm`` for per-batch OTDF/IGDF/DVDF
training, ``tbm`` + ``y_hat`` (+ ``y_scorer``) for TABB, ``penalty`` (+ ``v_next_scorer``) for DROCO, ``delta_r`` +
``corrected_reward`` for DARA). Rows whose score is NULL (non-finite source rows that the scorer
skipped) are never kept.

Static vs per-batch normalisation: the papers normalise scores *within each training batch*
(OTDF: min-max inside the batch and keep its top 80%; IGDF/DVDF: keep the top xi of the batch;
TABB: softmax over the batch). The recipes here apply the same formulas *once over the whole
dataset*, which makes the selection inspectable and exportable. The two differ: a per-batch
top-80% keeps 80% of every batch whatever its quality (a poor batch still contributes), whereas
the static filter drops the globally worst 20%; OTDF's per-batch d~ spans [-1, 0] in every batch
while the static d~ uses the dataset's extremes (weights closer to 1 for most rows). TABB's
softmax ratios between two rows are the same in both (exp(-(tbm_i - tbm_j)/T)); only the
normaliser differs (both are scaled to mean 1 here). To reproduce the papers exactly, curate
with the recipe (which also writes the raw columns) and train with the matching ``--variant``
(``otdf``, ``igdf``, ``dvdf``, ``tabb``): the trainer then ignores ``weight``/``keep`` and
normalises per batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError, StoreError

#: Which scorer writes which column (for "run this scorer first" errors).
COLUMN_SCORERS: dict[str, str] = {
    "ot_score": "ot", "knn_score": "knn", "knn_distance": "knn", "contrastive_score": "contrastive",
    "advantage_raw": "advantage", "advantage_norm": "advantage", "tbm": "tbm", "tbm_score": "tbm",
    "tbm_y_hat": "tbm", "ensemble_penalty": "ensemble", "ensemble_disagreement": "ensemble",
    "ensemble_loglik": "ensemble", "dara_delta_r": "dara", "oracle_dynamics_gap": "oracle",
    "oracle_bellman_error": "oracle",
}


def _scorer_of(column: str) -> str:
    try:
        from xcurate.scoring.base import _REGISTRY, available_scorers

        available_scorers()  # loads the built-in scorer modules
        for name, cls in _REGISTRY.items():
            if column in getattr(cls, "columns", {}):
                return name
    except Exception:  # noqa: BLE001 - only used to improve an error message
        pass
    return COLUMN_SCORERS.get(column, "<the scorer that writes it>")


def _open_store(store: Any):
    from xcurate.scoring.store import Store

    return store if isinstance(store, Store) else Store(store)


def score_columns_available(store: Any) -> list[str]:
    """Names of the columns of the store's ``scores`` view."""
    return list(_open_store(store).query("SELECT * FROM scores LIMIT 0").column_names)


def fetch_scores(store: Any, source: TransitionDataset, columns: list[str], recipe: str) -> dict[str, np.ndarray]:
    """Score columns aligned to ``source.transition_ids`` (NULL -> NaN); missing column -> error."""
    st = _open_store(store)
    have = set(score_columns_available(st))
    for c in columns:
        if c not in have:
            raise ConfigError(f"recipe {recipe!r} needs score column {c!r}, which store {st.dir} lacks; run "
                              f"`xcurate score --store {st.dir} --scorers {_scorer_of(c)} ...` first")
    sel = ", ".join(f'"{c}"' for c in columns)
    tab = st.query(f"SELECT transition_id, {sel} FROM scores")
    ids = np.asarray(tab.column("transition_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], source.transition_ids)
    pos = np.clip(pos, 0, len(ids) - 1)
    if len(ids) == 0 or not (ids[order][pos] == source.transition_ids).all():
        raise StoreError(f"{st.dir}: scores do not cover every source transition_id")
    out = {}
    for c in columns:
        col = tab.column(c)
        vals = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)
        out[c] = vals[order][pos]
    return out


def _top_fraction(score: np.ndarray, frac: float) -> np.ndarray:
    """Bool mask of the top ``frac`` (ceil) of the finite entries of ``score``."""
    if not 0 < frac <= 1:
        raise ConfigError(f"fraction must be in (0, 1], got {frac}")
    fin = np.isfinite(score)
    n = int(np.ceil(frac * fin.sum()))
    keep = np.zeros(len(score), bool)
    if n:
        idx = np.flatnonzero(fin)
        top = idx[np.argsort(-score[idx], kind="stable")[:n]]
        keep[top] = True
    return keep


# ------------------------------------------------------------------------------------ recipes
# Each recipe maps (store, source, options) -> (weight, keep, extra columns, used options).


def _none(st, src, **o) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    _no_opts("none", o)
    n = len(src)
    return np.ones(n), np.ones(n, bool), {}, {}


def _otdf(st, src, proportion: float = 0.8, column: str = "ot_score", **o):
    _no_opts("otdf", o)
    d = fetch_scores(st, src, [column], "otdf")[column]
    fin = np.isfinite(d)
    dmax, dmin = np.nanmax(d[fin]), np.nanmin(d[fin])
    dn = (d - dmax) / max(dmax - dmin, 1e-12)
    keep = _top_fraction(d, proportion)
    w = np.where(keep, np.exp(np.nan_to_num(dn, nan=-np.inf)), 0.0)
    return w, keep, {"score": d}, {"proportion": proportion, "column": column}


def _igdf(st, src, xi: float = 0.75, alpha: float = 1.0, column: str = "contrastive_score", **o):
    _no_opts("igdf", o)
    s = fetch_scores(st, src, [column], "igdf")[column]
    keep = _top_fraction(s, xi)
    w = np.where(keep, np.exp(alpha * np.nan_to_num(s)), 0.0)
    return w, keep, {"score": s}, {"xi": xi, "alpha": alpha, "column": column}


def _dvdf(st, src, lam: float = 0.7, xi: float = 0.5, h_column: str = "contrastive_score", **o):
    _no_opts("dvdf", o)
    cols = fetch_scores(st, src, [h_column, "advantage_norm"], "dvdf")
    h, a = cols[h_column], cols["advantage_norm"]
    g = lam * h + (1 - lam) * a
    keep = _top_fraction(g, xi)
    w = np.where(keep, np.exp(np.nan_to_num(h)), 0.0)
    return w, keep, {"score": h, "advantage_norm": a}, {"lam": lam, "xi": xi, "h_column": h_column}


def _tabb(st, src, temperature: float = 1.0, **o):
    _no_opts("tabb", o)
    if temperature <= 0:
        raise ConfigError(f"tabb: temperature must be > 0, got {temperature}")
    extra = ["tbm_y"] if "tbm_y" in score_columns_available(st) else []  # stores scored before tbm v2 lack it
    cols = fetch_scores(st, src, ["tbm", "tbm_y_hat", *extra], "tabb")
    tbm, y_hat = cols["tbm"], cols["tbm_y_hat"]
    keep = np.isfinite(tbm) & np.isfinite(y_hat)
    out = {"tbm": tbm, "y_hat": y_hat}
    if extra:  # the scorer's realised target: the trainer rescales y_hat - y_scorer to its own V
        keep &= np.isfinite(cols["tbm_y"])
        out["y_scorer"] = cols["tbm_y"]
    z = np.where(keep, -tbm / temperature, -np.inf)
    z = z - z[keep].max()
    e = np.where(keep, np.exp(z), 0.0)
    w = e / e.sum() * keep.sum()  # softmax over the dataset, scaled to mean 1 over kept rows
    return w, keep, out, {"temperature": temperature}


def _droco(st, src, **o):
    _no_opts("droco", o)
    extra = ["ensemble_v_next"] if "ensemble_v_next" in score_columns_available(st) else []  # ensemble v2
    cols = fetch_scores(st, src, ["ensemble_penalty", *extra], "droco")
    u = cols["ensemble_penalty"]
    keep = np.isfinite(u)
    out = {"penalty": u}
    if extra:  # the scorer's V(s'): the trainer rescales u to its own V
        keep &= np.isfinite(cols["ensemble_v_next"])
        out["v_next_scorer"] = cols["ensemble_v_next"]
    return keep.astype(float), keep, out, {}


def _dara(st, src, eta: float = 0.1, **o):
    _no_opts("dara", o)
    dr = fetch_scores(st, src, ["dara_delta_r"], "dara")["dara_delta_r"]
    keep = np.isfinite(dr)
    dr = np.clip(dr, -10.0, 10.0)
    return keep.astype(float), keep, {"delta_r": dr, "corrected_reward": src.rewards + eta * dr}, {"eta": eta}


def _one_expression(name: str, expr: str) -> str:
    """``expr`` if DuckDB's parser reads it as exactly one SQL expression, else :class:`ConfigError`.

    A ``;`` inside a string literal is fine (``x = 'a;b'``); text that would close the
    surrounding parenthesis and add clauses (``true) OR (1=1``), a second statement or an
    unterminated comment is refused. The expression is later placed on lines of its own, so a
    trailing ``-- comment`` cannot hide the rest of the query.
    """
    import duckdb

    if not str(expr).strip():
        raise ConfigError(f"sql recipe: {name} is empty")
    try:
        duckdb.SQLExpression(expr)
    except duckdb.Error as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"sql recipe: {name} {expr!r} is not one SQL expression ({msg[:200]})") from None
    return expr


def _sql(st, src, where: str = "TRUE", weight: str = "1.0", **o):
    _no_opts("sql", o)
    where, weight = _one_expression("--where", where), _one_expression("--weight", weight)
    tab = _open_store(st).query(f"SELECT transition_id, CAST((\n{weight}\n) AS DOUBLE) AS w, "
                                f"CAST((\n{where}\n) AS BOOLEAN) AS k FROM scores")
    ids = np.asarray(tab.column("transition_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    w = np.asarray(tab.column("w").to_numpy(zero_copy_only=False), dtype=np.float64)
    k = tab.column("k").to_pylist()
    k = np.array([bool(x) if x is not None else False for x in k])
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], src.transition_ids)
    w, k = w[order][pos], k[order][pos]
    bad = k & ~np.isfinite(w)
    if bad.any():
        raise DataError(f"sql recipe: --weight {weight!r} is NULL/NaN for {int(bad.sum())} kept row(s)")
    if (w[k] < 0).any():
        raise DataError(f"sql recipe: --weight {weight!r} is negative for {int((w[k] < 0).sum())} kept row(s)")
    return np.where(k, w, 0.0), k, {}, {"where": where, "weight": weight}


#: label-free signals ``auto`` can rank columns by (:mod:`xcurate.diagnostics.holdout`)
AUTO_SIGNALS = ("consensus", "holdout_auc", "matched_win")


def _auto(st, src, min_auc: float = 0.55, min_keep: float = 0.05, max_keep: float = 1.0,
          signal: str = "consensus", **o):
    """Choose the column and the keep fraction from label-free signals (``score --holdout``).

    Candidates are the non-oracle columns scored with a holdout whose held-out AUC (held-out
    target rows vs source rows, in the column's declared direction) is at least ``min_auc``.
    Among them the column with the highest ``signal`` is used: ``consensus`` (the default:
    agreement with the other scorers, which predicted the planted AUC best on the MuJoCo planted
    benchmark), ``holdout_auc`` or ``matched_win``. The keep fraction is the share of source rows
    that score at least as well as the held-out rows' 10th percentile, clipped to [``min_keep``,
    ``max_keep``]. The choice and every candidate's evidence are recorded in the options (and so
    in the manifest). With a single scorer, consensus is undefined and the held-out AUC decides.
    """
    _no_opts("auto", o)
    from xcurate.diagnostics.holdout import holdout_signal, oriented

    if not (0.0 < min_keep <= max_keep <= 1.0):
        raise ConfigError(f"recipe 'auto': need 0 < min_keep <= max_keep <= 1, got {min_keep}, {max_keep}")
    if signal not in AUTO_SIGNALS:
        raise ConfigError(f"recipe 'auto': signal {signal!r} is not one of {', '.join(AUTO_SIGNALS)}")
    try:
        sig = [r for r in holdout_signal(st).to_pylist() if not r["column"].startswith("oracle_")]
    except StoreError as e:
        raise ConfigError(f"recipe 'auto' needs held-out target scores: {e}") from None
    usable = [r for r in sig if np.isfinite(r["holdout_auc"]) and r["holdout_auc"] >= min_auc]
    if not usable:
        best = max((r["holdout_auc"] for r in sig if np.isfinite(r["holdout_auc"])), default=float("nan"))
        raise ConfigError(f"recipe 'auto': no usable column in store {st.dir}: no score ranks held-out target "
                          f"rows above source rows with AUC >= {min_auc} (best {best:.3f}); score with more "
                          "scorers or larger budgets, or pick a recipe by hand")
    used = signal if any(np.isfinite(r[signal]) for r in usable) else "holdout_auc"

    def rank(r: dict[str, Any]) -> tuple[float, float, str]:  # best first; ties: higher AUC, then the name
        v = r[used]
        return (-v if np.isfinite(v) else np.inf, -r["holdout_auc"], r["column"])

    best = min(usable, key=rank)
    col, direction = best["column"], best["direction"]
    frac = float(np.clip(best["source_above_holdout_q10"], min_keep, max_keep))
    score = oriented(fetch_scores(st, src, [col], "auto")[col], direction)
    keep = _top_fraction(score, frac)
    evidence = [{k: r[k] for k in ("column", "holdout_auc", "matched_win", "match_distance", "consensus",
                                   "source_above_holdout_q10", "n_holdout")} for r in sig]
    return np.where(keep, 1.0, 0.0), keep, {"score": score}, {
        "min_auc": min_auc, "min_keep": min_keep, "max_keep": max_keep, "signal": signal, "signal_used": used,
        "chosen_column": col, "direction": direction, "holdout_auc": best["holdout_auc"],
        "consensus": best["consensus"], "matched_win": best["matched_win"], "keep_fraction": frac,
        "evidence": evidence}


#: Modes of the ``oracle`` control recipe.
ORACLE_MODES = ("keep", "weight", "both", "exact")
#: Score columns the ``oracle`` recipe can rank by (lower = closer to the target's dynamics).
ORACLE_COLUMNS = ("oracle_dynamics_gap", "oracle_bellman_error")
#: Smallest weight of a row the ``oracle`` recipe keeps (modes weight/both).
MIN_ORACLE_WEIGHT = 1e-6


def oracle_selection(value: np.ndarray, fraction: float = 0.5, mode: str = "keep", tolerance: float = 1e-6,
                     temperature: float | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The oracle control's (weight, keep) from a per-row oracle value (lower is better).

    Args:
        value: (N,) ``oracle_dynamics_gap`` or ``oracle_bellman_error``; NaN rows are never kept.
        fraction: ``keep``/``both``: the kept fraction of the finite rows (the lowest values).
        mode: ``keep`` (the lowest ``fraction``, weight 1), ``weight`` (every finite row, weight
            ``exp(-value / T)``), ``both`` (the lowest ``fraction``, weighted) or ``exact`` (the rows
            whose value is ``<= tolerance``, weight 1: the source rows that follow the target's
            dynamics).
        tolerance: ``exact``: the largest value counted as "about 0" (>= 0).
        temperature: ``weight``/``both``: T of the weights (default: the mean of the kept values,
            so that the weights do not depend on the units); weights are scaled to mean 1 over kept
            rows and floored at :data:`MIN_ORACLE_WEIGHT` (a kept row keeps a weight > 0).

    Returns:
        (weight, keep, used options).
    """
    if mode not in ORACLE_MODES:
        raise ConfigError(f"recipe 'oracle': mode must be one of {', '.join(ORACLE_MODES)}, got {mode!r}")
    v = np.asarray(value, np.float64)
    fin = np.isfinite(v)
    used: dict[str, Any] = {"mode": mode}
    if mode == "exact":
        if not tolerance >= 0:
            raise ConfigError(f"recipe 'oracle': tolerance must be >= 0, got {tolerance}")
        keep = fin & (np.where(fin, v, np.inf) <= tolerance)
        if not keep.any():
            raise DataError(f"recipe 'oracle' (exact): no row has a value <= tolerance {tolerance:g} "
                            f"(smallest {np.nanmin(v) if fin.any() else float('nan'):.3g}); raise the tolerance "
                            "or use mode keep with a fraction")
        return keep.astype(float), keep, {**used, "tolerance": tolerance}
    if mode == "weight":
        keep = fin.copy()
    else:
        keep = _top_fraction(-v, fraction)
        used["fraction"] = fraction
    if mode == "keep":
        return keep.astype(float), keep, used
    if temperature is None:
        temperature = float(np.mean(v[keep])) if keep.any() else 1.0
        temperature = temperature if temperature > 0 else 1.0
    elif not temperature > 0:
        raise ConfigError(f"recipe 'oracle': temperature must be > 0, got {temperature}")
    z = np.where(keep, -np.nan_to_num(v, nan=0.0) / temperature, -np.inf)
    e = np.exp(z - z[keep].max()) if keep.any() else np.zeros(len(v))
    w = np.where(keep, e / max(e[keep].mean(), 1e-300), 0.0) if keep.any() else e
    w = np.where(keep, np.maximum(w, MIN_ORACLE_WEIGHT), 0.0)  # a kept row never underflows to weight 0
    return w, keep, {**used, "temperature": temperature}


def _oracle(st, src, column: str = "oracle_dynamics_gap", fraction: float = 0.5, mode: str = "keep",
            tolerance: float = 1e-6, temperature: float | None = None, **o):
    """Control recipe (the ceiling): curate with the true target dynamics (the ``oracle`` scorer)."""
    _no_opts("oracle", o)
    if column not in ORACLE_COLUMNS:
        raise ConfigError(f"recipe 'oracle': column must be one of {', '.join(ORACLE_COLUMNS)}, got {column!r}")
    if column not in set(score_columns_available(st)):
        dom = st.domain or "<target domain>"
        raise ConfigError(f"recipe 'oracle' needs the oracle score columns, which store {st.dir} lacks; run "
                          f"`xcurate score --store {st.dir} --scorers oracle --domain {dom}` first")
    v = fetch_scores(st, src, [column], "oracle")[column]
    w, keep, used = oracle_selection(v, fraction=fraction, mode=mode, tolerance=tolerance, temperature=temperature)
    return w, keep, {"score": -v}, {"column": column, **used}


def random_selection(n: int, fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """(n,) bool: a uniform seeded choice of ``ceil(fraction * n)`` rows (without replacement)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"recipe 'random': fraction must be in (0, 1], got {fraction}")
    k = int(np.ceil(fraction * n))
    keep = np.zeros(n, bool)
    keep[np.random.default_rng(seed).choice(n, size=k, replace=False)] = True
    return keep


def _random(st, src, fraction: float = 0.5, seed: int = 0, **o):
    """Control recipe (the floor): keep a uniform random ``fraction`` of the source, weight 1."""
    _no_opts("random", o)
    keep = random_selection(len(src), fraction, seed)
    return keep.astype(float), keep, {}, {"fraction": fraction, "seed": seed}


def _no_opts(recipe: str, o: dict[str, Any]) -> None:
    if o:
        raise ConfigError(f"recipe {recipe!r}: unknown option(s) {sorted(o)}")


RECIPES: dict[str, Callable[..., tuple]] = {
    "none": _none, "otdf": _otdf, "igdf": _igdf, "dvdf": _dvdf, "tabb": _tabb, "droco": _droco,
    "dara": _dara, "sql": _sql, "oracle": _oracle, "random": _random, "auto": _auto,
}

#: Trainer variant that reproduces each recipe's paper (per-batch normalisation).
#: Recipes without a paper train ``iql-actor``: the curated source reaches Q, V and the actor (with
#: ``iql`` the actor sees the target rows only, and curation barely moves the policy: RESULTS.md,
#: "Planted lakes").
PAPER_VARIANT = {"none": "iql-actor", "otdf": "otdf", "igdf": "igdf", "dvdf": "dvdf", "tabb": "tabb",
                 "droco": "droco", "dara": "dara", "sql": "iql-actor", "oracle": "iql-actor",
                 "random": "iql-actor", "auto": "iql-actor"}


def apply_recipe(st: Any, src: Any, recipe: str, options: dict[str, Any],
                 t0: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Run a recipe on a store; return its output columns and the ``metadata["curation"]`` record.

    ``src`` is the source dataset or anything with its ``transition_ids``, ``rewards`` and length
    (:class:`xcurate.curate.stream.SourceIndex`). The columns are ``weight`` (float32, 0 where not
    kept), ``keep`` (rows with a finite weight > 0) and the recipe's own columns (float32).
    """
    try:
        w, keep, cols, used = RECIPES[recipe](st, src, **options)
    except TypeError as e:
        raise ConfigError(f"recipe {recipe!r}: bad options ({e})") from None
    w = np.asarray(w, dtype=np.float64)
    keep = np.asarray(keep, bool) & np.isfinite(w) & (w > 0)
    if not keep.any():
        raise DataError(f"recipe {recipe!r} on store {st.dir} keeps no transition (all weights zero)")
    columns = {"weight": np.where(keep, w, 0.0).astype(np.float32), "keep": keep}
    columns.update({name: np.asarray(a, dtype=np.float32) for name, a in cols.items()})
    runs = {name: m.get("run_id") for name, m in st.current_runs().items()}
    curation = {"recipe": recipe, "options": used, "store": str(st.dir), "store_runs": runs,
                "kept": int(keep.sum()), "total": len(src), "paper_variant": PAPER_VARIANT[recipe],
                "seconds": round(time.time() - t0, 3)}
    return columns, curation


def curation_inputs(st: Any) -> dict[str, str]:
    """The manifest inputs of a curated file: the store's ``store.json`` and the score files used."""
    inputs = {"store": str(st.dir / "store.json")}
    for name, m in st.current_runs().items():
        p = st.dir / "runs" / m["run_id"] / "scores.parquet"
        if p.exists():
            inputs[f"scores:{name}"] = str(p)
    return inputs


def curate(store: Any, recipe: str, drop_unkept: bool = False, **options: Any) -> TransitionDataset:
    """Apply a recipe to a score store's source dataset.

    Args:
        store: a :class:`~xcurate.scoring.store.Store` or its directory.
        recipe: one of :data:`RECIPES`.
        drop_unkept: if True, rows with ``keep == False`` are removed (default: kept, flagged), and
            the last row of every contiguous run that is left is marked as a timeout (a cut, never
            a termination; ``extras["cut"]``, :meth:`TransitionDataset.mark_cuts`), so that readers
            which take next observations from the next row never cross a gap.
        **options: recipe options (e.g. ``proportion=0.8``, ``xi=0.5``, ``where="knn_score > -1"``).

    Returns:
        The source dataset with ``weight`` (float32), ``keep`` (bool) and recipe columns in
        ``extras``; ``metadata["curation"]`` records recipe, options and the store runs used.

    Raises:
        ConfigError: unknown recipe/option, or a missing score column (naming the scorer to run).
        DataError: the recipe keeps no row or gives invalid weights.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    t0 = time.time()
    st = _open_store(store)
    src = st.load_source()
    columns, curation = apply_recipe(st, src, recipe, options, t0)
    extras = dict(src.extras)
    extras.update(columns)
    md = dict(src.metadata)
    md["curation"] = curation
    keep = columns["keep"]
    out = TransitionDataset(
        observations=src.observations, actions=src.actions, rewards=src.rewards,
        next_observations=src.next_observations, terminals=src.terminals, timeouts=src.timeouts,
        episode_ids=src.episode_ids, steps=src.steps, transition_ids=src.transition_ids,
        qpos=src.qpos, qvel=src.qvel, extras=extras, metadata=md, source=f"{st.dir}#{recipe}")
    if drop_unkept:  # the gaps left by dropped rows are marked as timeouts (cuts) for foreign readers
        out = out.select(keep).mark_cuts()
    return out


def curate_to_file(store: Any, recipe: str, out: str | os.PathLike, format: str | None = None,
                   drop_unkept: bool = False, **options: Any) -> tuple[TransitionDataset, Path]:
    """:func:`curate`, then write the result (Parquet/HDF5/Minari) with a manifest."""
    from xcurate.datasets.io import save_dataset

    st = _open_store(store)
    ds = curate(st, recipe, drop_unkept=drop_unkept, **options)
    path = save_dataset(ds, out, format=format, inputs=curation_inputs(st),
                        config={"kind": "curated", **ds.metadata["curation"], "drop_unkept": drop_unkept})
    return ds, path
