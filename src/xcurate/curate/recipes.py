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


def _sql(st, src, where: str = "TRUE", weight: str = "1.0", **o):
    _no_opts("sql", o)
    for name, expr in (("--where", where), ("--weight", weight)):
        if ";" in expr:
            raise ConfigError(f"sql recipe: {name} must be one expression (no ';')")
    tab = _open_store(st).query(f"SELECT transition_id, CAST(({weight}) AS DOUBLE) AS w, "
                                f"CAST(({where}) AS BOOLEAN) AS k FROM scores")
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


def _no_opts(recipe: str, o: dict[str, Any]) -> None:
    if o:
        raise ConfigError(f"recipe {recipe!r}: unknown option(s) {sorted(o)}")


RECIPES: dict[str, Callable[..., tuple]] = {
    "none": _none, "otdf": _otdf, "igdf": _igdf, "dvdf": _dvdf, "tabb": _tabb, "droco": _droco,
    "dara": _dara, "sql": _sql,
}

#: Trainer variant that reproduces each recipe's paper (per-batch normalisation).
PAPER_VARIANT = {"none": "iql", "otdf": "otdf", "igdf": "igdf", "dvdf": "dvdf", "tabb": "tabb",
                 "droco": "droco", "dara": "dara", "sql": "iql"}


def curate(store: Any, recipe: str, drop_unkept: bool = False, **options: Any) -> TransitionDataset:
    """Apply a recipe to a score store's source dataset.

    Args:
        store: a :class:`~xcurate.scoring.store.Store` or its directory.
        recipe: one of :data:`RECIPES`.
        drop_unkept: if True, rows with ``keep == False`` are removed (default: kept, flagged).
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
    try:
        w, keep, cols, used = RECIPES[recipe](st, src, **options)
    except TypeError as e:
        raise ConfigError(f"recipe {recipe!r}: bad options ({e})") from None
    w = np.asarray(w, dtype=np.float64)
    keep = np.asarray(keep, bool) & np.isfinite(w) & (w > 0)
    if not keep.any():
        raise DataError(f"recipe {recipe!r} on store {st.dir} keeps no transition (all weights zero)")
    extras = dict(src.extras)
    extras["weight"] = np.where(keep, w, 0.0).astype(np.float32)
    extras["keep"] = keep
    for name, arr in cols.items():
        extras[name] = np.asarray(arr, dtype=np.float32)
    runs = {name: m.get("run_id") for name, m in st.current_runs().items()}
    md = dict(src.metadata)
    md["curation"] = {"recipe": recipe, "options": used, "store": str(st.dir), "store_runs": runs,
                      "kept": int(keep.sum()), "total": len(src), "paper_variant": PAPER_VARIANT[recipe],
                      "seconds": round(time.time() - t0, 3)}
    out = TransitionDataset(
        observations=src.observations, actions=src.actions, rewards=src.rewards,
        next_observations=src.next_observations, terminals=src.terminals, timeouts=src.timeouts,
        episode_ids=src.episode_ids, steps=src.steps, transition_ids=src.transition_ids,
        qpos=src.qpos, qvel=src.qvel, extras=extras, metadata=md, source=f"{st.dir}#{recipe}")
    if drop_unkept:
        out = out.select(keep)
    return out


def curate_to_file(store: Any, recipe: str, out: str | os.PathLike, format: str | None = None,
                   drop_unkept: bool = False, **options: Any) -> tuple[TransitionDataset, Path]:
    """:func:`curate`, then write the result (Parquet/HDF5/Minari) with a manifest."""
    from xcurate.datasets.io import save_dataset

    st = _open_store(store)
    ds = curate(st, recipe, drop_unkept=drop_unkept, **options)
    inputs = {"store": str(st.dir / "store.json")}
    for name, m in st.current_runs().items():
        p = st.dir / "runs" / m["run_id"] / "scores.parquet"
        if p.exists():
            inputs[f"scores:{name}"] = str(p)
    path = save_dataset(ds, out, format=format, inputs=inputs,
                        config={"kind": "curated", **ds.metadata["curation"], "drop_unkept": drop_unkept})
    return ds, path
