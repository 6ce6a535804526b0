"""Streaming curation: apply a recipe and write the curated Parquet file in bounded memory.

:func:`xcurate.curate.recipes.curate` loads the whole source to return a dataset. A data lake of
millions of rows does not need that: a recipe decides from score columns (a few floats per row),
so :func:`curate_stream` reads only ``transition_id`` and ``reward`` of the source to run the
recipe, then streams the store's ``transitions.parquet`` (a file or a hive-partitioned folder) in
batches, attaches each batch's ``weight``/``keep``/recipe columns and appends it to the output
with a :class:`pyarrow.parquet.ParquetWriter`. Memory holds one batch plus a few per-row
scalars (about 30 bytes per source row), whatever the width of a row.

The output is the same file as ``curate_to_file(..., format="parquet")`` writes: the same rows,
columns, dtypes, schema metadata and manifest (its ``fingerprint`` equals the loaded dataset's,
computed by re-reading the written file one column at a time). With ``drop_unkept`` the cuts
(:meth:`~xcurate.datasets.transitions.TransitionDataset.mark_cuts`) are found in a first
streaming pass, because a cut depends on the next *kept* row, which may lie in the next batch,
and the schema metadata (written first) records their count.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError, StoreError

#: Source rows per streamed batch.
BATCH_ROWS = 65_536


class SourceIndex:
    """The per-row source fields a recipe reads (``transition_ids``, ``rewards``), without the rest.

    Recipes only use ``len(src)``, ``src.transition_ids`` and (DARA) ``src.rewards``, so this
    stands in for the source dataset in :data:`~xcurate.curate.recipes.RECIPES`.
    """

    def __init__(self, transition_ids: np.ndarray, rewards: np.ndarray) -> None:
        self.transition_ids = transition_ids
        self.rewards = rewards

    def __len__(self) -> int:
        return len(self.transition_ids)

    @classmethod
    def of_store(cls, path: Path, batch_rows: int = BATCH_ROWS) -> SourceIndex:
        """Read ``transition_id`` and ``reward`` of a store's ``transitions.parquet`` (file or folder)."""
        from xcurate.scoring.engine import iter_batches

        ids, rew = [], []
        for _, t in iter_batches(path, columns=["transition_id", "reward"], batch_rows=batch_rows):
            ids.append(np.asarray(t.column("transition_id").to_numpy(), np.int64))
            rew.append(t.column("reward").to_numpy(zero_copy_only=False))
        if not ids:
            raise DataError(f"{path}: the store's source table has no rows")
        return cls(np.concatenate(ids), np.concatenate(rew))


def _batches(path: Path, batch_rows: int):
    """``(offset, TransitionDataset)`` for consecutive batches of a store's source."""
    from xcurate.scoring.engine import iter_batches
    from xcurate.scoring.store import table_to_dataset

    for off, t in iter_batches(path, batch_rows=batch_rows):
        yield off, table_to_dataset(t)


def _attach(ds: TransitionDataset, lo: int, arrays: dict[str, np.ndarray]) -> TransitionDataset:
    """``ds`` (rows ``lo:lo+len(ds)`` of the source) with the curation columns' slices as extras."""
    hi = lo + len(ds)
    extras = dict(ds.extras)
    for name, arr in arrays.items():
        extras[name] = arr[lo:hi]
    return TransitionDataset(
        observations=ds.observations, actions=ds.actions, rewards=ds.rewards,
        next_observations=ds.next_observations, terminals=ds.terminals, timeouts=ds.timeouts,
        episode_ids=ds.episode_ids, steps=ds.steps, transition_ids=ds.transition_ids, qpos=ds.qpos,
        qvel=ds.qvel, extras=extras, metadata=ds.metadata, source=ds.source)


def _kept_cuts(path: Path, keep: np.ndarray, batch_rows: int) -> np.ndarray:
    """``cut_mask()`` of the kept rows (in order), found batch by batch with a one-row carry."""
    out: list[np.ndarray] = []
    carry: TransitionDataset | None = None
    for off, ds in _batches(path, batch_rows):
        part = ds.select(keep[off:off + len(ds)])
        if carry is not None:
            part = TransitionDataset.concat([carry, part], renumber=False)
        if len(part) == 0:
            continue
        cut = part.cut_mask()
        out.append(cut[:-1])  # the last row's cut depends on the next kept row: decided later
        carry = part.select(slice(len(part) - 1, len(part)))
    if carry is not None:
        out.append(carry.cut_mask())
    return np.concatenate(out) if out else np.zeros(0, bool)


def _fingerprint(path: Path, names: list[str], n: int, batch_rows: int) -> str:
    """:meth:`TransitionDataset.fingerprint` of a written Parquet dataset, one column at a time."""
    import pyarrow.parquet as pq

    from xcurate.datasets.io import _column, _from_arrow

    pf = pq.ParquetFile(path)
    h = hashlib.sha256()
    for name in sorted(names):
        first = True
        for b in pf.iter_batches(batch_size=batch_rows, columns=[name]):
            a = _from_arrow(b.column(0), name, b.num_rows, path)
            if name in ("rewards", "terminals", "timeouts"):
                a = _column(a, name, b.num_rows, path)
                a = a.astype(bool) if name != "rewards" else a
            if first:  # name, dtype and shape come first, as in fingerprint()
                h.update(name.encode())
                h.update(str(a.dtype).encode())
                h.update(str((n, *a.shape[1:])).encode())
                first = False
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def curate_stream(store: Any, recipe: str, out: str | os.PathLike, drop_unkept: bool = False,
                  batch_rows: int = BATCH_ROWS, **options: Any) -> tuple[dict[str, Any], Path]:
    """Curate a store's source with a recipe and write Parquet, streaming the source.

    Args:
        store: a :class:`~xcurate.scoring.store.Store` or its directory.
        recipe: one of :data:`~xcurate.curate.recipes.RECIPES`.
        out: the output ``.parquet`` file (written atomically; its manifest beside it).
        drop_unkept: write only kept rows, marking the cuts (as :func:`~xcurate.curate.recipes.curate`).
        batch_rows: source rows per batch (memory is one batch plus ~30 bytes per source row).
        **options: recipe options.

    Returns:
        ``(info, path)``: ``info`` holds ``weight`` and ``keep`` (per source row), ``extras`` (the
        output's extra column names), ``rows`` (rows written) and ``metadata`` (as the file's).

    Raises:
        ConfigError: unknown recipe or option, a missing score column, a non-Parquet ``out``.
        DataError: the recipe keeps no row or gives invalid weights.
    """
    import pyarrow as pa

    from xcurate.curate.recipes import RECIPES, _open_store
    from xcurate.datasets.io import dataset_destination

    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be >= 1, got {batch_rows}")
    dest, fmt = dataset_destination(out)
    if fmt != "parquet":
        raise ConfigError(f"{dest}: streaming curation writes Parquet only (got {fmt}); use curate_to_file")
    t0 = time.time()
    st = _open_store(store)
    spath = st.dir / "transitions.parquet"
    try:
        return _curate_stream(st, spath, recipe, dest, drop_unkept, batch_rows, t0, options)
    except pa.ArrowInvalid as e:  # a truncated or corrupt Parquet file
        msg = " ".join(str(e).split())[:200] or type(e).__name__
        raise StoreError(f"{spath}: damaged source table, cannot read it as Parquet ({msg}); re-create the "
                         "store") from None


def _curate_stream(st: Any, spath: Path, recipe: str, dest: Path, drop_unkept: bool, batch_rows: int, t0: float,
                   options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The body of :func:`curate_stream` (its Parquet read errors become one :class:`StoreError`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xcurate.curate.recipes import apply_recipe, curation_inputs
    from xcurate.datasets.io import FORMAT_TAG, _jsonable, _to_arrow, manifest_path
    from xcurate.utils import atomic_path, make_manifest, write_json_atomic

    src = SourceIndex.of_store(spath, batch_rows)
    arrays, curation = apply_recipe(st, src, recipe, options, t0)
    keep = arrays["keep"]
    first = next(_batches(spath, 1))[1]  # the source's metadata and extras (one row)
    md = dict(first.metadata)
    md["curation"] = curation
    extras = [*first.extras, *(a for a in arrays if a not in first.extras)]
    cuts = None
    if drop_unkept:
        cuts = _kept_cuts(spath, keep, batch_rows)
        prior = np.zeros(len(cuts), bool)
        if "cut" in first.extras:  # cuts already marked in the source stay marked
            from xcurate.scoring.engine import iter_batches

            prior = np.concatenate([np.asarray(t.column("cut").to_numpy(zero_copy_only=False), bool)
                                    for _, t in iter_batches(spath, columns=["cut"], batch_rows=batch_rows)])[keep]
        md["xcurate_cuts"] = int((cuts | prior).sum())
        if "cut" not in extras:
            extras.append("cut")
    t_write = time.perf_counter()
    info = {"format": FORMAT_TAG, "metadata": _jsonable(md), "extras": extras}
    rows, names, episodes = 0, None, set()
    obs_dim = act_dim = 0
    with atomic_path(dest) as tmp:
        writer = None
        try:
            for off, ds in _batches(spath, batch_rows):
                part = _attach(ds, off, arrays)
                if drop_unkept:
                    part = part.select(keep[off:off + len(ds)])
                    if len(part) == 0:
                        continue
                    c = cuts[rows:rows + len(part)]
                    had = np.asarray(part.extras["cut"], bool) if "cut" in part.extras else np.zeros(len(part), bool)
                    part.extras["cut"] = c | had
                    part.timeouts = part.timeouts.astype(bool) | c
                part.metadata = md
                part.validate()
                columns = part.columns()
                table = pa.Table.from_arrays([_to_arrow(a, k, dest) for k, a in columns.items()], names=list(columns))
                if writer is None:
                    names = list(columns)
                    schema = table.schema.with_metadata({"xcurate": json.dumps(info)})
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(table.replace_schema_metadata(schema.metadata))
                rows += len(part)
                episodes.update(np.unique(part.episode_ids).tolist())
                obs_dim, act_dim = part.obs_dim, part.act_dim
        finally:
            if writer is not None:
                writer.close()
        fingerprint = _fingerprint(tmp, names, rows, batch_rows)
    config = {"kind": "curated", **md["curation"], "drop_unkept": drop_unkept, "streamed": True}
    man = make_manifest("dataset", inputs=curation_inputs(st), config={"format": "parquet", **config},
                        seed=md.get("seed") if isinstance(md.get("seed"), int) else None,
                        transitions=rows, episodes=len(episodes), obs_dim=obs_dim, act_dim=act_dim,
                        columns=sorted(names), fingerprint=fingerprint, metadata=_jsonable(md))
    man["timings"] = {"write_s": round(time.perf_counter() - t_write, 4)}
    write_json_atomic(manifest_path(dest), man)
    return {"weight": arrays["weight"], "keep": keep, "extras": extras, "rows": rows, "metadata": md}, dest
