"""The score store: one directory holding a source dataset, a target dataset and score runs.

Layout (``format_version`` 1)::

    STORE/
      store.json                  # format_version, xcurate_version, source/target {path, sha256,
                                  # fingerprint, n}, domain
      transitions.parquet         # the SOURCE dataset, one row per transition (see below); a
                                  # directory of hive-partitioned files (key=value/...) when the store
                                  # was created from such a lake (Store.create streams it in)
      target.parquet              # the TARGET dataset, same layout
      runs/<scorer>-<hash12>/manifest.json     # score_run manifest (status running|complete)
      runs/<scorer>-<hash12>/chunks/part-<start>.parquet   # checkpoints while running
      runs/<scorer>-<hash12>/inputs/part-<start>.parquet   # each chunk's source rows while running
      runs/<scorer>-<hash12>/scores.parquet    # final: transition_id + the scorer's columns
      scores.parquet              # cache of the ``scores`` view (rewritten after each run)

``transitions.parquet`` columns: ``transition_id``, ``episode_id``, ``step``, ``reward``,
``terminal``, ``timeout``, ``episode_return``, ``quality`` (per row: ``TransitionDataset.quality_labels()``,
i.e. the parts' labels of a concatenation, else ``metadata["quality"]``, else NULL),
``obs``, ``act``, ``next_obs`` (fixed-size list columns, original dtype), ``qpos``/``qvel``
(fixed-size lists, only when the dataset has them) and one column per ``extras`` entry (same
name; 2-D extras as fixed-size lists; a combined dataset's ``part``), then, for a combined dataset
(:func:`xcurate.datasets.ops.combine`), the text columns ``domain`` and ``policy`` of each row's part.
The ``scores`` view carries ``part``/``domain``/``policy`` too when present. The dataset's metadata and source are kept as JSON in the
Parquet schema metadata, so :meth:`Store.load_source` returns an identical dataset (same
fingerprint).

The run id hashes the scorer's config (without ``device``), its chunk size, the source and
target fingerprints and the domain: the same inputs and settings are a cached no-op; any change
is a new run. Runs are resumable: every chunk is written atomically, and a restarted run fits
again (scorers are seeded, so the fit is identical) and scores only the missing chunks. Scoring
streams the source and may run its chunks on Ray (:mod:`xcurate.scoring.engine`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError, StoreError
from xcurate.scoring.base import ColumnSpec, Scorer, fit_progress, make_scorer
from xcurate.scoring.engine import DEFAULT_FIT_SOURCE_ROWS, check_engine
from xcurate.utils import (
    atomic_path,
    exclusive_lock,
    make_manifest,
    resolve_device,
    sha256_file,
    write_json_atomic,
)

FORMAT_VERSION = 1
#: how source rows are assigned to chunks (part of the run id): sorted by a seeded hash of their content
CHUNK_ORDER = "content-hash"
#: rows per held-out target segment (``split_holdout``); 1 = single rows
HOLDOUT_BLOCK = 1
#: largest target fraction ``holdout`` may keep out of the fit
MAX_HOLDOUT = 0.5
#: columns of transitions.parquet that score columns may not shadow.
BASE_COLUMNS = ("transition_id", "episode_id", "step", "reward", "terminal", "timeout", "episode_return",
                "quality", "obs", "act", "next_obs", "qpos", "qvel")
#: transition columns repeated in the ``scores`` view.
SCORES_BASE = ("transition_id", "episode_id", "step", "reward", "episode_return", "quality")
#: Provenance columns of a combined source (``xcurate datasets combine``), also in ``scores`` when present.
PROVENANCE_COLUMNS = ("part", "domain", "policy", "quality")
_VECTOR_FIELDS = {"obs": "observations", "act": "actions", "next_obs": "next_observations",
                  "qpos": "qpos", "qvel": "qvel"}
_META_KEY = b"xcurate"
_CACHE_KEY = b"xcurate_runs"


# --------------------------------------------------------------------------------------------
# Dataset <-> Arrow
# --------------------------------------------------------------------------------------------


def _vector_column(arr: np.ndarray) -> pa.Array:
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 1:
        return pa.array(arr)
    if arr.ndim != 2:
        raise DataError(f"cannot store a {arr.ndim}-D column in Parquet")
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])


def _column_numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_fixed_size_list(col.type):
        width = col.type.list_size
        return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)
    return col.to_numpy(zero_copy_only=False)


def dataset_to_table(ds: TransitionDataset) -> pa.Table:
    """The store's Arrow layout of a dataset (see the module docstring)."""
    cols: dict[str, pa.Array] = {
        "transition_id": pa.array(ds.transition_ids.astype(np.int64)),
        "episode_id": pa.array(ds.episode_ids.astype(np.int64)),
        "step": pa.array(ds.steps.astype(np.int64)),
        "reward": pa.array(ds.rewards),
        "terminal": pa.array(ds.terminals.astype(bool)),
        "timeout": pa.array(ds.timeouts.astype(bool)),
        "episode_return": pa.array(ds.episode_returns()),
        "quality": pa.array([None if q is None else str(q) for q in ds.quality_labels()], type=pa.string()),
    }
    for col, attr in _VECTOR_FIELDS.items():
        arr = getattr(ds, attr)
        if arr is not None:
            cols[col] = _vector_column(arr)
    for name, arr in ds.extras.items():
        if name in cols:
            raise DataError(f"{ds.source}: extra column {name!r} clashes with a store column")
        cols[name] = _vector_column(arr)
    from xcurate.datasets.ops import provenance_labels

    for name in PROVENANCE_COLUMNS[1:-1]:  # domain, policy of a combined dataset (text, per row)
        labels = provenance_labels(ds, name)
        if labels is not None and name not in cols:
            cols[name] = pa.array([None if v is None else str(v) for v in labels], type=pa.string())
    meta = {"metadata": ds.metadata, "source": ds.source, "extras": list(ds.extras),
            "reward_shape": list(ds.rewards.shape)}
    table = pa.table(cols)
    return table.replace_schema_metadata({_META_KEY: json.dumps(meta, default=str).encode()})


def table_to_dataset(table: pa.Table, source: str | None = None) -> TransitionDataset:
    """Inverse of :func:`dataset_to_table` (lossless: same fingerprint)."""
    meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    names = set(table.column_names)

    def get(col: str) -> np.ndarray | None:
        return _column_numpy(table.column(col)) if col in names else None

    return TransitionDataset(
        observations=get("obs"), actions=get("act"), rewards=get("reward"),
        next_observations=get("next_obs"), terminals=get("terminal").astype(bool),
        timeouts=get("timeout").astype(bool), episode_ids=get("episode_id"), steps=get("step"),
        transition_ids=get("transition_id"), qpos=get("qpos"), qvel=get("qvel"),
        extras={k: get(k) for k in meta.get("extras", [])}, metadata=meta.get("metadata", {}),
        source=source or meta.get("source", "<store>"))


def _read_parquet(path: Path, what: str = "store file") -> pa.Table:
    """``pq.read_table`` whose errors name the damaged file (one line)."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{path}: damaged {what}, cannot read it as Parquet ({_duck_error(e)}); "
                         "re-create the store or re-run the scorer") from None


def _check_parquet(path: Path, what: str = "store file") -> int:
    """Read the footer of a Parquet file and return its row count; a truncated or corrupt file
    raises :class:`StoreError` naming it."""
    try:
        if path.is_dir():  # a hive-partitioned table: every part file
            return sum(pq.read_metadata(f).num_rows for f in sorted(path.rglob("*.parquet")))
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException) as e:
        raise StoreError(f"{path}: damaged {what}, cannot read it as Parquet ({_duck_error(e)}); "
                         "re-create the store or re-run the scorer") from None


def check_read_only_sql(sql: str, what: str = "query") -> None:
    """Refuse anything but exactly one read-only ``SELECT`` (or ``WITH ... SELECT``) statement.

    DuckDB's own parser splits and classifies the text (a ``;`` inside a string literal is not a
    separator), so ``COPY ... TO``, ``ATTACH``, ``INSTALL``, ``SET``, ``PRAGMA``, ``CREATE``,
    ``INSERT``/``UPDATE``/``DELETE`` and several statements are refused before anything runs.

    Raises:
        StoreError: one line saying why the SQL is refused.
    """
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise StoreError(f"{what} refused: cannot parse the SQL ({_duck_error(e)})") from None
    if len(statements) != 1:
        raise StoreError(f"{what} refused: exactly one SQL statement is allowed, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise StoreError(f"{what} refused: only read-only SELECT/WITH queries over the store's views are "
                         f"allowed ({kind.name} statement given)")


#: Rows per Parquet row group of the store's files: streaming readers (scoring, curation) decode one
#: row group at a time (the peak RSS barely moved with it, RESULTS "Streaming curation"); DuckDB scans row groups in parallel.
ROW_GROUP_ROWS = 65_536


def _write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)


#: ``score_files`` layouts of a run's ``scores.parquet``: one file, or a directory of part files of
#: SCORE_PART_ROWS consecutive source rows each (``auto``: parts above SCORE_PART_ROWS source rows)
SCORE_FILES = ("auto", "one", "parts")
#: source rows per part file of a partitioned score file (``runs/<id>/scores.parquet/part-<k>.parquet``)
SCORE_PART_ROWS = 1 << 22


def check_score_files(value: str) -> str:
    """Validate a ``score_files`` layout (``--score-files``)."""
    if value not in SCORE_FILES:
        raise ConfigError(f"--score-files must be one of {', '.join(SCORE_FILES)}, got {value!r}")
    return value


def score_parts(path: Path) -> list[Path]:
    """The part files of a score file: itself, or a partitioned one's parts in source-row order."""
    return sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]


def read_scores(path: Path, columns: list[str] | None = None, what: str = "score file") -> pa.Table:
    """A run's score table in source row order, from one file or a partitioned score file.

    Raises:
        StoreError: the file or a part is damaged, or a partitioned file has no parts (named).
    """
    tables = []
    for p in score_parts(path):
        try:
            tables.append(pq.read_table(p, columns=columns))
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{p}: damaged {what}, cannot read it as Parquet ({_duck_error(e)}); "
                             "re-create the store or re-run the scorer") from None
    if not path.is_dir():
        return tables[0]
    if not tables:
        raise StoreError(f"{path}: partitioned {what} without part files; re-run the scorer")
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables])


def _load_dataset(spec: TransitionDataset | str | Path, what: str) -> tuple[TransitionDataset, str | None]:
    """A dataset and its file path (None for in-memory datasets)."""
    if isinstance(spec, TransitionDataset):
        return spec, None
    try:
        from xcurate.datasets.io import load_dataset
    except ImportError:  # pragma: no cover - the io module is written by another area
        raise ConfigError(f"{what} {spec}: loading datasets from paths needs xcurate.datasets.io") from None
    ds = load_dataset(str(spec), on_nonfinite="drop")  # NaN/Inf rows: dropped, counted in metadata
    dropped = int(ds.metadata.get("xcurate_dropped_nonfinite", 0) or 0)
    if dropped:
        _warn(f"{what} {spec}: {dropped} row(s) with NaN/Inf were dropped on loading (not scored)")
    p = Path(str(spec))
    return ds, str(p) if p.exists() else str(spec)


#: columns a Parquet source must have to be streamed into a store as it is (the store's own layout)
STREAM_COLUMNS = ("transition_id", "episode_id", "step", "reward", "terminal", "timeout", "episode_return",
                  "quality", "obs", "act", "next_obs")


def _store_layout_source(spec: Any) -> Path | None:
    """``spec`` as a path when it is Parquet in the store's transitions layout (file or hive directory)."""
    if isinstance(spec, TransitionDataset):
        return None
    p = Path(str(spec))
    if not p.exists() or not (p.is_dir() or p.suffix in (".parquet", ".pq")):
        return None
    from xcurate.scoring.engine import source_schema

    try:
        names = set(source_schema(p).names)
    except Exception:  # noqa: BLE001 - not readable as a store layout: the dataset loaders report it
        return None
    return p if set(STREAM_COLUMNS) <= names else None


def _check_stream_source(path: Path) -> dict[str, int]:
    """Validate a store-layout source batch by batch; return its ``n``, ``obs_dim``, ``act_dim``."""
    from xcurate.scoring.engine import iter_batches

    ids, dims = [], None
    for _, t in iter_batches(path):
        ds = table_to_dataset(t, source=str(path))
        ds.validate(require_finite=False)
        if dims is None:
            dims = (ds.obs_dim, ds.act_dim)
        elif (ds.obs_dim, ds.act_dim) != dims:
            raise DataError(f"{path}: (obs, act) dims change from {dims} to ({ds.obs_dim}, {ds.act_dim})")
        ids.append(ds.transition_ids)
    if dims is None:
        raise DataError(f"{path}: dataset is empty (0 transitions)")
    all_ids = np.concatenate(ids)
    if len(np.unique(all_ids)) != len(all_ids):
        raise DataError(f"{path}: transition_ids are not unique across the files")
    return {"n": len(all_ids), "obs_dim": dims[0], "act_dim": dims[1]}


def _parquet_sql(path: Path) -> str:
    """DuckDB table function reading a Parquet file or a hive-partitioned directory as one table."""
    if path.is_dir():
        return f"read_parquet({_lit(path / '**' / '*.parquet')}, hive_partitioning = true, hive_types_autocast = false)"
    return f"read_parquet({_lit(path)})"


def _score_sql(path: Path) -> str:
    """DuckDB table function reading a run's score file, one file or its part files as one table."""
    if path.is_dir():
        return f"read_parquet({_lit(path / 'part-*.parquet')})"
    return f"read_parquet({_lit(path)})"


def _warn(msg: str) -> None:
    from xcurate.console import esc, make_console

    make_console(stderr=True).print(f"[yellow]warning:[/] {esc(msg)}", highlight=False, soft_wrap=True, markup=True)


def _duck_error(e: Exception) -> str:
    msg = " ".join(str(e).split())
    return msg if len(msg) < 400 else msg[:397] + "..."


def _q(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(path: str | Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class Store:
    """A score store directory (see the module docstring for the layout).

    Args:
        directory: an existing store (created with :meth:`Store.create`).

    Raises:
        StoreError: not a store, an incompatible ``format_version`` or a half-written store.
    """

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        meta_path = self.dir / "store.json"
        if not self.dir.is_dir():
            raise StoreError(f"{self.dir}: no such store directory")
        if not meta_path.exists():
            if (self.dir / "transitions.parquet").exists() or any(self.dir.glob(".*.tmp*")):
                raise StoreError(f"{self.dir}: half-written store (store.json missing); re-create it")
            raise StoreError(f"{self.dir}: not an xcurate score store (no store.json)")
        try:
            self.info: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StoreError(f"{meta_path}: unreadable store.json ({e})") from None
        version = self.info.get("format_version")
        if version != FORMAT_VERSION:
            raise StoreError(f"{meta_path}: store format_version {version!r} is not supported "
                             f"(this xcurate reads version {FORMAT_VERSION})")
        for f in ("transitions.parquet", "target.parquet"):
            if not (self.dir / f).exists():
                raise StoreError(f"{self.dir}: half-written store ({f} missing); re-create it")
        self._source: TransitionDataset | None = None
        self._target: TransitionDataset | None = None
        self._con = None
        self._con_key: tuple = ()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, directory: str | Path, source: TransitionDataset | str | Path,
               target: TransitionDataset | str | Path, domain: str | None = None) -> Store:
        """Create a store from a source and a target dataset (objects, paths or dataset ids).

        If ``directory`` already is a store built from the same data, it is opened instead
        (so ``score`` can be re-run against it); different data raise :class:`StoreError`.
        """
        d = Path(directory)
        from xcurate.scoring import engine as eng

        lake = _store_layout_source(source)  # Parquet already in the store's layout: streamed, never loaded
        if lake is not None:
            src, src_path, src_fp = None, str(lake), eng.stream_fingerprint(lake)
        else:
            src, src_path = _load_dataset(source, "source")
            src_fp = src.fingerprint()
        tgt, tgt_path = _load_dataset(target, "target")
        tgt_fp = tgt.fingerprint()
        src_name = src.source if src is not None else str(lake)
        if (d / "store.json").exists():
            store = cls(d)
            for what, fp, name in (("source", src_fp, src_name), ("target", tgt_fp, tgt.source)):
                if store.info[what]["fingerprint"] != fp:
                    raise StoreError(f"{d}: store was built from another {what} "
                                     f"({store.info[what]['path']}), not {name}; use a new --store")
            if domain and store.domain and domain != store.domain:
                raise StoreError(f"{d}: store domain is {store.domain!r}, not {domain!r}")
            if domain and not store.domain:
                store.info["domain"] = domain
                write_json_atomic(d / "store.json", store.info)
            store._source, store._target = src, tgt
            return store
        if d.exists() and d.is_dir():
            ours = {"transitions.parquet", "target.parquet"}
            foreign = [p.name for p in d.iterdir() if p.name not in ours and ".tmp" not in p.name]
            if foreign:
                raise StoreError(f"{d}: directory is not empty and not a score store ({foreign[0]} ...)")
        elif d.exists():
            raise StoreError(f"{d}: exists and is not a directory")
        if lake is not None:
            src_desc = _check_stream_source(lake)
        else:
            src_desc = {"n": len(src), "obs_dim": src.obs_dim, "act_dim": src.act_dim}
        if tgt.obs_dim != src_desc["obs_dim"] or tgt.act_dim != src_desc["act_dim"]:
            raise DataError(f"source {src_name} has (obs, act) dims ({src_desc['obs_dim']}, {src_desc['act_dim']}) "
                            f"but target {tgt.source} has ({tgt.obs_dim}, {tgt.act_dim})")
        for ds in (src, tgt):
            if ds is not None:
                ds.validate(require_finite=False)
        d.mkdir(parents=True, exist_ok=True)
        if lake is not None:  # a byte copy (file or hive-partitioned directory): streams
            with atomic_path(d / "transitions.parquet") as tmp:
                if lake.is_dir():
                    shutil.copytree(lake, tmp, ignore=shutil.ignore_patterns(".*", "_*"))
                else:
                    shutil.copyfile(lake, tmp)
        else:
            _write_parquet(dataset_to_table(src), d / "transitions.parquet")
        _write_parquet(dataset_to_table(tgt), d / "target.parquet")
        from xcurate import __version__

        def desc(path: str | None, fp: str, name: str, dims: dict[str, int], dropped: int) -> dict[str, Any]:
            sha = sha256_file(path) if path and Path(path).exists() else None
            return {"path": path or name, "sha256": sha, "fingerprint": fp, **dims, "dropped_nonfinite": dropped}

        src_dropped = 0 if src is None else int(src.metadata.get("xcurate_dropped_nonfinite", 0) or 0)
        tgt_dims = {"n": len(tgt), "obs_dim": tgt.obs_dim, "act_dim": tgt.act_dim}
        info = {"format_version": FORMAT_VERSION, "xcurate_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "source": desc(src_path, src_fp, src_name, src_desc, src_dropped),
                "target": desc(tgt_path, tgt_fp, tgt.source, tgt_dims,
                               int(tgt.metadata.get("xcurate_dropped_nonfinite", 0) or 0)),
                "domain": domain}
        if lake is not None and lake.is_dir():
            info["source"]["partitions"] = list(eng.source_files(lake)[0][1])
        write_json_atomic(d / "store.json", info)  # written last: marks the store complete
        store = cls(d)
        store._source, store._target = src, tgt
        return store

    # ------------------------------------------------------------------ data
    @property
    def domain(self) -> str | None:
        """The store's default target domain (for scorers that need a simulator)."""
        return self.info.get("domain")

    def load_source(self) -> TransitionDataset:
        """The source dataset (cached after the first call)."""
        if self._source is None:
            from xcurate.scoring.engine import read_all

            try:
                self._source = table_to_dataset(read_all(self.dir / "transitions.parquet"))
            except (OSError, pa.ArrowException) as e:
                raise StoreError(f"{self.dir / 'transitions.parquet'}: damaged source table, cannot read it as "
                                 f"Parquet ({_duck_error(e)}); re-create the store") from None
        return self._source

    def load_target(self) -> TransitionDataset:
        """The target dataset (cached after the first call)."""
        if self._target is None:
            self._target = table_to_dataset(_read_parquet(self.dir / "target.parquet", "target table"))
        return self._target

    # ------------------------------------------------------------------ runs
    def run_id(self, scorer: Scorer, domain: str | None = None, holdout: float = 0.0,
               fit_source_rows: int = DEFAULT_FIT_SOURCE_ROWS, holdout_block: int | None = None) -> str:
        """The id ``<scorer>-<hash12>`` of a run of ``scorer`` on this store's data.

        ``fit_source_rows`` is part of the id only when the source is larger (the fit then sees a
        sample), so the run ids of smaller stores do not depend on it. The engine is not part of it.
        """
        cfg = {k: v for k, v in scorer.config().items() if k != "device"}
        from xcurate import __version__

        code = f"{__version__}/{scorer.version}"  # a code change must not reuse stale scores
        key = {"format": FORMAT_VERSION, "code": code, "config": cfg, "chunk_size": int(scorer.chunk_size),
               "source": self.info["source"]["fingerprint"], "target": self.info["target"]["fingerprint"],
               "domain": domain if scorer.needs_domain else None, "chunk_order": CHUNK_ORDER}
        if holdout:
            key["holdout"] = {"fraction": float(holdout), "seed": int(scorer.seed)}
            block = check_holdout_block(holdout_block)
            if block != 1:  # row-wise holdouts keep the run ids they had before blocks existed
                key["holdout"]["block"] = block
        if int(self.info["source"]["n"]) > int(fit_source_rows):
            key["fit_source_rows"] = int(fit_source_rows)
        h = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{scorer.name}-{h}"

    def manifests(self) -> list[dict[str, Any]]:
        """The manifest of every run (complete or not), oldest first."""
        out = []
        for p in sorted((self.dir / "runs").glob("*/manifest.json")):
            try:
                m = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            m.setdefault("run_id", p.parent.name)
            out.append(m)
        return sorted(out, key=lambda m: (m.get("finished_ts") or m.get("started_ts") or 0, m["run_id"]))

    def current_runs(self) -> dict[str, dict[str, Any]]:
        """Scorer name -> manifest of its latest complete run."""
        cur: dict[str, dict[str, Any]] = {}
        for m in self.manifests():
            if m.get("status") == "complete" and (self.dir / "runs" / m["run_id"] / "scores.parquet").exists():
                cur[m["scorer"]] = m  # manifests() is sorted by finish time
        return cur

    def score_columns(self) -> dict[str, ColumnSpec]:
        """Every current score column -> its :class:`ColumnSpec` (direction, range, description)."""
        out: dict[str, ColumnSpec] = {}
        for m in self.current_runs().values():
            for col, spec in m.get("columns", {}).items():
                out.setdefault(col, ColumnSpec(spec["direction"], spec["range"], spec.get("description", "")))
        return out

    def scores(self, scorer: str) -> pa.Table:
        """The score table (transition_id + columns) of the latest complete run of ``scorer``."""
        cur = self.current_runs()
        if scorer not in cur:
            raise StoreError(f"{self.dir}: no complete run of scorer {scorer!r} (run `xcurate score "
                             f"--scorers {scorer} --store {self.dir}`)")
        return read_scores(self.dir / "runs" / cur[scorer]["run_id"] / "scores.parquet")

    def run(self, scorer: Scorer, source: TransitionDataset | None = None,
            target: TransitionDataset | None = None, progress: bool = True,
            domain: str | None = None, holdout: float = 0.0, engine: str = "local",
            address: str | None = None, workers: int | None = None,
            fit_source_rows: int = DEFAULT_FIT_SOURCE_ROWS, holdout_block: int | None = None,
            score_files: str = "auto") -> str:
        """Fit ``scorer`` and score every source row chunk by chunk; return the run id.

        Resumable (existing chunks are kept), cached (a complete run with the same id is a
        no-op). Non-finite source rows are excluded, counted and get NULL scores. Source rows are
        assigned to chunks in a seeded random order (``scorer.seed``), so scores that depend on the
        chunk's composition (OT) do not depend on the order of the file. The source is streamed
        from ``transitions.parquet`` (see :mod:`xcurate.scoring.engine`): memory holds one
        chunk, one read batch and the fit sample, never the whole source.

        Args:
            scorer: any registered scorer instance.
            source: the store's source dataset if already in memory (checked by fingerprint; the
                rows are still streamed from the store).
            target: the store's target dataset if already in memory (checked by fingerprint).
            progress: show a Rich progress bar on stderr.
            domain: target domain for scorers with ``needs_domain`` (defaults to the store's).
            holdout: fraction in (0, 0.5] of the target kept out of the fit (seeded by
                ``scorer.seed``) and scored like source rows into ``runs/<id>/holdout.parquet``;
                0 = off. See :func:`xcurate.diagnostics.holdout.holdout_signal`.
            holdout_block: the holdout keeps out whole segments of this many consecutive rows of
                an episode (:func:`split_holdout`); default ``HOLDOUT_BLOCK``.
            engine: ``local`` (this process) or ``ray`` (Ray tasks; same scores).
            address: Ray cluster address (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); default:
                an already initialised Ray, else a new local one.
            workers: chunk tasks in flight at once with ``ray`` (default: the cluster's CPUs).
            fit_source_rows: the fit sees at most this many source rows, a seeded sample (the
                first rows of the content-hash chunk order); the whole target is always used.
            score_files: the layout of ``runs/<id>/scores.parquet`` (:data:`SCORE_FILES`): ``one``
                file, or ``parts`` (a directory of part files of ``SCORE_PART_ROWS`` source rows,
                assembled in bounded memory); ``auto`` = parts above ``SCORE_PART_ROWS`` rows. The
                layout does not change the scores or the run id; every reader takes either.
        """
        t_start = time.perf_counter()
        check_score_files(score_files)
        holdout = check_holdout(holdout)
        check_engine(engine, workers)
        if int(fit_source_rows) < 1:
            raise ConfigError(f"--fit-source-rows must be >= 1, got {fit_source_rows}")
        domain = domain or self.domain
        if scorer.needs_domain:
            if not domain and not getattr(scorer, "domain", None):
                raise ConfigError(f"scorer {scorer.name!r} needs a target domain (pass --domain)")
            if hasattr(scorer, "domain"):
                if not getattr(scorer, "domain", None):
                    scorer.domain = domain  # type: ignore[attr-defined]
                domain = scorer.domain  # type: ignore[attr-defined]
        holdout_block = check_holdout_block(holdout_block)
        rid = self.run_id(scorer, domain, holdout, fit_source_rows, holdout_block)
        rdir = self.dir / "runs" / rid
        if self._complete(rdir):
            return rid
        ray = None
        if engine == "ray":  # connect and check the workers see the store before anything is scored
            from xcurate.scoring.engine import check_visible, connect

            ray = connect(address, workers)
            check_visible(ray, self.dir)
        # one writer per run: a second process scoring the same run at once would race on its chunks
        with exclusive_lock(rdir / ".lock", f"score run {rid} of store {self.dir}"):
            if self._complete(rdir):  # finished by the process that held the lock
                return rid
            return self._score(scorer, rid, rdir, domain, source, target, progress, t_start, holdout,
                               ray=ray, workers=workers, fit_source_rows=int(fit_source_rows),
                               holdout_block=holdout_block, score_files=score_files)

    @staticmethod
    def _complete(rdir: Path) -> bool:
        mpath = rdir / "manifest.json"
        return ((rdir / "scores.parquet").exists() and mpath.exists()
                and json.loads(mpath.read_text()).get("status") == "complete")

    def _score(self, scorer: Scorer, rid: str, rdir: Path, domain: str | None, source: TransitionDataset | None,
               target: TransitionDataset | None, progress: bool, t_start: float, holdout: float = 0.0,
               ray: Any = None, workers: int | None = None,
               fit_source_rows: int = DEFAULT_FIT_SOURCE_ROWS, holdout_block: int = 1,
               score_files: str = "auto") -> str:
        """The body of :meth:`run` for a run that is not complete (called with the run's lock held)."""
        from xcurate.scoring import engine as eng

        mpath = rdir / "manifest.json"
        spath = self.dir / "transitions.parquet"
        if source is not None:
            self._checked(source, "source")
        tgt = self._checked(target, "target") if target is not None else self.load_target()
        clash = set(scorer.columns) & set(BASE_COLUMNS)
        if clash:
            raise ConfigError(f"scorer {scorer.name!r} declares reserved column(s) {sorted(clash)}")

        # one streaming pass: ids, finite mask and the content hash of every source row
        ids, finite, hashes = eng.source_pass(spath, scorer.seed)
        n_src = len(ids)
        rows = np.flatnonzero(finite)
        n_bad = int(n_src - len(rows))
        if n_bad:
            _warn(f"{n_bad} source row(s) contain NaN/Inf and are not scored (NULL scores), e.g. "
                  f"transition_id {int(ids[~finite][0])}")
        if not len(rows):
            raise DataError(f"{self.info['source']['path']}: every source row contains NaN/Inf; nothing to score")
        tfin = tgt.finite_mask()
        n_tbad = int((~tfin).sum())
        if n_tbad:
            _warn(f"{n_tbad} target row(s) contain NaN/Inf and are ignored by the scorer")
            tgt = tgt.select(tfin)
        fit_tgt, held = split_holdout(tgt, holdout, scorer.seed, scorer.min_target, block=holdout_block)

        chunk = max(1, int(scorer.chunk_size))
        starts = list(range(0, len(rows), chunk))
        # chunk membership: rows sorted by a seeded hash of their content (scores stored in source order),
        # so chunks are random samples whatever the order (or ids) of the file
        order = rows[np.argsort(hashes[rows], kind="stable")]
        del hashes
        cdir = rdir / "chunks"
        cdir.mkdir(parents=True, exist_ok=True)
        state = json.loads(mpath.read_text()) if mpath.exists() else {}
        sessions = int(state.get("sessions", 0)) + 1
        fit_s_prev = float(state.get("timings", {}).get("fit_s", 0.0))
        device = resolve_device(getattr(scorer, "device", "auto"))
        running = {"kind": "score_run", "run_id": rid, "scorer": scorer.name, "status": "running",
                   "config": scorer.config(), "seed": scorer.seed, "device": device, "domain": domain,
                   "n_rows": n_src, "chunk_size": chunk, "n_chunks": len(starts), "sessions": sessions,
                   "started_ts": state.get("started_ts", time.time()),
                   "timings": {"fit_s": fit_s_prev}}
        write_json_atomic(mpath, running)

        def part(start: int) -> Path:
            return cdir / f"part-{start:012d}.parquet"

        idir = rdir / "inputs"

        def inp(start: int) -> Path:
            return idir / f"part-{start:012d}.parquet"

        todo = [s for s in starts if not part(s).exists()]
        reused = len(starts) - len(todo)
        hpath = rdir / "holdout.parquet"
        need_holdout = held is not None and not hpath.exists()
        fit_s = shuffle_s = 0.0
        # the fit sees a bounded, seeded sample of the source: the first rows of the chunk order
        fit_rows = rows if len(rows) <= fit_source_rows else np.sort(order[:fit_source_rows])
        runner = eng.RayRun(ray, scorer, workers) if ray is not None else None
        if runner is not None and todo:
            runner.warm()
        bar = _Progress(progress, f"{scorer.name}", len(rows), done=sum(
            min(chunk, len(rows) - s) for s in starts if s not in set(todo)))
        with bar:
            if todo or need_holdout:
                t0 = time.perf_counter()
                fit_src = table_to_dataset(eng.take_rows(spath, fit_rows), source=self.info["source"]["path"])
                with fit_progress(bar.fit_update if progress else None):
                    if runner is None:
                        scorer.fit(fit_tgt, fit_src)
                    else:
                        runner.fit(fit_tgt, fit_src)
                        device = runner.device
                del fit_src
                fit_s = time.perf_counter() - t0
                running["timings"] = {"fit_s": fit_s_prev + fit_s}
                write_json_atomic(mpath, running)
            if todo:  # each missing chunk's rows into its own input file (one streaming pass)
                t0 = time.perf_counter()
                missing = {i: inp(s) for i, s in enumerate(starts) if s in set(todo) and not inp(s).exists()}
                if missing:
                    assign = np.full(n_src, -1, np.int32)
                    for i, s in enumerate(starts):
                        assign[order[s:s + chunk]] = i
                    eng.write_chunk_inputs(spath, assign, missing)
                    del assign
                shuffle_s = time.perf_counter() - t0
            t_chunks = time.perf_counter()
            if runner is None:
                for start in todo:
                    n_done, _ = eng.score_chunk(scorer, inp(start), part(start))
                    bar.advance(n_done)
            elif todo:
                runner.score([(s, inp(s), part(s)) for s in todo], lambda _s, n_done: bar.advance(n_done))
            chunks_wall_s = time.perf_counter() - t_chunks
            if need_holdout:
                hout = scorer.score(held) if runner is None else runner.holdout(held)
                _write_parquet(self._chunk_table(scorer, held.transition_ids, hout, len(held)), hpath)

        # assemble
        t0 = time.perf_counter()
        layout = score_files if score_files != "auto" else ("parts" if n_src > SCORE_PART_ROWS else "one")
        if layout == "parts":
            score_s, n_null = self._assemble_parts(scorer, [part(s) for s in starts], order, chunk, ids, rdir)
        else:
            parts = [pq.read_table(part(s)) for s in starts]
            score_s = sum(float((p.schema.metadata or {}).get(b"elapsed_s", b"0")) for p in parts)
            scored = pa.concat_tables([p.replace_schema_metadata(None) for p in parts])
            del parts
            inv = np.argsort(np.concatenate([np.sort(order[s:s + chunk]) for s in starts]), kind="stable")
            scored = scored.take(pa.array(inv))
            if not np.array_equal(scored.column("transition_id").to_numpy(), ids[rows]):
                raise StoreError(f"{rdir}: checkpoint chunks do not match the source rows (delete the run "
                                 "directory and run again)")
            final = self._full_table(scored, ids, rows)
            _write_parquet(final, rdir / "scores.parquet")
            n_null = {c: int(final.column(c).null_count) for c in scorer.columns}
            del final, scored
        assemble_s = time.perf_counter() - t0
        columns = {c: {"direction": s.direction, "range": s.range, "description": s.description}
                   for c, s in scorer.columns.items()}
        timings = {"fit_s": fit_s_prev + fit_s, "score_s": score_s, "assemble_s": assemble_s,
                   "shuffle_s": shuffle_s, "chunks_wall_s": chunks_wall_s, "session_wall_s": time.perf_counter() - t_start}
        timings["wall_s"] = timings["fit_s"] + score_s + assemble_s
        manifest = make_manifest(
            "score_run", inputs={"source": self.dir / "transitions.parquet", "target": self.dir / "target.parquet"},
            config=scorer.config(), seed=scorer.seed, timings=timings, run_id=rid, scorer=scorer.name,
            status="complete", device=device, domain=domain, columns=columns, primary=scorer.primary,
            n_rows=n_src, n_scored=len(rows), n_nonfinite=n_bad, n_target_nonfinite=n_tbad,
            n_dropped_on_load=int(self.info['source'].get('dropped_nonfinite', 0) or 0),
            n_null=n_null, chunk_size=chunk, n_chunks=len(starts), reused_chunks=reused,
            sessions=sessions, started_ts=running["started_ts"], finished_ts=time.time(),
            chunk_order={"kind": CHUNK_ORDER, "seed": int(scorer.seed)},
            score_files={"layout": layout, "part_rows": SCORE_PART_ROWS if layout == "parts" else None,
                         "parts": len(score_parts(rdir / "scores.parquet"))},
            fit_source={"rows": len(fit_rows), "of": len(rows), "max": int(fit_source_rows),
                        "sample": "first rows of the content-hash order" if len(fit_rows) < len(rows) else "all"},
            engine=runner.describe() if runner is not None else {"kind": "local"},
            holdout=(None if held is None else {"fraction": holdout, "seed": int(scorer.seed), "n": len(held),
                                                "n_fit": len(fit_tgt), "file": "holdout.parquet",
                                                "block": int(holdout_block)}),
            source_fingerprint=self.info["source"]["fingerprint"],
            target_fingerprint=self.info["target"]["fingerprint"])
        write_json_atomic(mpath, manifest)
        shutil.rmtree(cdir, ignore_errors=True)
        shutil.rmtree(idir, ignore_errors=True)
        self._write_scores_cache()
        return rid

    def _write_scores_cache(self) -> None:
        """Materialise the ``scores`` view (the join) as STORE/scores.parquet, tagged with the run ids.

        Queries over ``scores`` then read one Parquet file instead of joining every run with the
        transitions (about 2x faster on 1M rows). Stale or missing caches fall back to the join.
        """
        import duckdb

        try:
            key = json.dumps(sorted(m["run_id"] for m in self.current_runs().values()))
            con = self.connect(use_cache=False)
            try:  # DuckDB writes the file itself (streaming: the join is never held as one Arrow table)
                with atomic_path(self.dir / "scores.parquet") as tmp:
                    kv = "{" + _CACHE_KEY.decode() + ": " + "'" + key.replace("'", "''") + "'}"
                    con.execute(f"COPY (SELECT * FROM scores ORDER BY transition_id) TO {_lit(tmp)} "
                                f"(FORMAT parquet, COMPRESSION zstd, KV_METADATA {kv})")
            finally:
                con.close()
        except (OSError, duckdb.Error):  # pragma: no cover - read-only store: the join view still works
            pass

    def _cache_valid(self, cur: dict[str, dict[str, Any]]) -> bool:
        path = self.dir / "scores.parquet"
        if not path.exists():
            return False
        try:
            meta = pq.read_schema(path).metadata or {}
        except Exception:  # noqa: BLE001 - a damaged cache is just ignored
            return False
        return meta.get(_CACHE_KEY) == json.dumps(sorted(m["run_id"] for m in cur.values())).encode()

    def _checked(self, ds: TransitionDataset, what: str) -> TransitionDataset:
        if ds.fingerprint() != self.info[what]["fingerprint"]:
            raise StoreError(f"{self.dir}: the {what} dataset passed ({ds.source}) is not the store's {what}")
        return ds

    @staticmethod
    def _chunk_table(scorer: Scorer, ids: np.ndarray, out: dict[str, np.ndarray], n: int) -> pa.Table:
        missing = set(scorer.columns) - set(out)
        extra = set(out) - set(scorer.columns)
        if missing or extra:
            raise StoreError(f"scorer {scorer.name!r} returned columns {sorted(out)} but declares "
                             f"{sorted(scorer.columns)}")
        cols: dict[str, pa.Array] = {"transition_id": pa.array(ids.astype(np.int64))}
        for c in scorer.columns:
            v = np.asarray(out[c])
            if hasattr(v, "detach"):  # pragma: no cover - torch tensor slipped through
                v = v.detach().cpu().numpy()
            if v.shape != (n,):
                raise StoreError(f"scorer {scorer.name!r} column {c!r} has shape {v.shape}, expected ({n},)")
            if v.dtype.kind == "f":
                v = v.astype(np.float32 if v.dtype == np.float16 else v.dtype)
                cols[c] = pa.array(v, mask=~np.isfinite(v))  # non-finite scores are stored as NULL
            else:
                cols[c] = pa.array(v)
        return pa.table(cols)

    @staticmethod
    def _assemble_parts(scorer: Scorer, chunk_files: list[Path], order: np.ndarray, chunk: int,
                        ids: np.ndarray, rdir: Path) -> tuple[float, dict[str, int]]:
        """Write ``rdir/scores.parquet`` as part files of ``SCORE_PART_ROWS`` consecutive source rows.

        Two streaming passes, so memory holds one chunk, then one part, never the whole run: each
        chunk file (rows ``sort(order[i*chunk:(i+1)*chunk])``, in source order) is split by part
        into staging files; then each part's rows are put in source order, unscored rows get NULL
        scores, and the part is written. The directory appears atomically. Returns the summed
        chunk compute seconds and the NULL count per column.
        """
        n, rows_per = len(ids), SCORE_PART_ROWS
        n_parts = max(1, -(-n // rows_per))
        stage = rdir / "assembly"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        writers: dict[int, Any] = {}
        score_s, schema = 0.0, None
        try:
            for i, f in enumerate(chunk_files):
                t = pq.read_table(f)
                score_s += float((t.schema.metadata or {}).get(b"elapsed_s", b"0"))
                pos = np.sort(order[i * chunk:(i + 1) * chunk])
                if not np.array_equal(t.column("transition_id").to_numpy(), ids[pos]):
                    raise StoreError(f"{rdir}: checkpoint chunks do not match the source rows (delete the run "
                                     "directory and run again)")
                t = t.replace_schema_metadata(None).append_column("_pos", pa.array(pos.astype(np.int64)))
                schema = t.schema
                bounds = np.searchsorted(pos, np.arange(n_parts + 1) * rows_per)
                for k in np.flatnonzero(np.diff(bounds)):
                    if k not in writers:
                        writers[k] = pq.ParquetWriter(stage / f"stage-{k:06d}.parquet", schema)
                    writers[k].write_table(t.slice(int(bounds[k]), int(bounds[k + 1] - bounds[k])))
                del t
        finally:
            for w in writers.values():
                w.close()
        n_null = dict.fromkeys(scorer.columns, 0)
        with atomic_path(rdir / "scores.parquet", suffix="") as tmp:
            tmp.mkdir()
            for k in range(n_parts):
                a, b = k * rows_per, min(n, (k + 1) * rows_per)
                sp = stage / f"stage-{k:06d}.parquet"
                t = pq.read_table(sp) if sp.exists() else schema.empty_table()
                t = t.take(pa.array(np.argsort(t.column("_pos").to_numpy(), kind="stable")))
                local = t.column("_pos").to_numpy() - a
                full = Store._full_table(t.drop_columns(["_pos"]), ids[a:b], local)
                for c in n_null:
                    n_null[c] += int(full.column(c).null_count)
                pq.write_table(full, tmp / f"part-{k:06d}.parquet", compression="zstd",
                               row_group_size=ROW_GROUP_ROWS)
                del t, full
        shutil.rmtree(stage, ignore_errors=True)
        return score_s, n_null

    @staticmethod
    def _full_table(scored: pa.Table, ids: np.ndarray, rows: np.ndarray) -> pa.Table:
        """Scores in source row order (``ids``: every source transition id), NULL for excluded rows."""
        if len(rows) == len(ids):
            return scored
        pos = np.full(len(ids), -1, np.int64)
        pos[rows] = np.arange(len(rows))
        take = pa.array(pos, mask=pos < 0)
        cols = {"transition_id": pa.array(ids.astype(np.int64))}
        for c in scored.column_names[1:]:
            cols[c] = scored.column(c).take(take)
        return pa.table(cols)

    # ------------------------------------------------------------------ SQL
    def connect(self, use_cache: bool = True):
        """A read-only DuckDB connection with the views ``transitions``, ``target``, one per scorer,
        ``scores`` and ``runs``.

        Once the views exist the connection may read only files inside the store directory
        (``allowed_directories``: its tables and every run, older ones included), every other file
        system access is off (``enable_external_access = false``: no ``read_csv('/etc/passwd')``,
        ``ATTACH``, ``COPY ... TO`` elsewhere, extension installs) and the configuration is locked
        (``lock_configuration``), so no query can turn it back on. :meth:`query` additionally
        accepts only one SELECT/WITH statement (so no ``COPY`` over the store's own files either).
        Stores under 200k rows run on one DuckDB thread.

        Args:
            use_cache: read ``scores`` from the materialised STORE/scores.parquet when it is up to
                date (else, and when False, ``scores`` is a join of the runs with ``transitions``).

        Raises:
            StoreError: a store file is truncated or corrupt (the message names it).
        """
        import duckdb

        root = self.dir.resolve()
        files = [root / "transitions.parquet", root / "target.parquet"]
        n_rows = _check_parquet(files[0], "source table")
        _check_parquet(files[1], "target table")
        con = duckdb.connect()
        try:
            self._build_views(con, root, files, use_cache)
            if n_rows < 200_000:  # small stores: one DuckDB thread beats several fighting over a busy CPU
                con.execute("SET threads TO 1")
            con.execute(f"SET allowed_directories = [{_lit(str(root) + '/')}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{self.dir}: cannot open the store's tables ({_duck_error(e)})") from None
        return con

    def _build_views(self, con: Any, root: Path, files: list[Path], use_cache: bool) -> None:
        """Create the views of :meth:`connect` on ``con``; append every file they read to ``files``."""
        con.execute(f"CREATE VIEW transitions AS SELECT * FROM {_parquet_sql(files[0])}")
        con.execute(f"CREATE VIEW target AS SELECT * FROM read_parquet({_lit(files[1])})")
        cur = self.current_runs()
        have = {d[0] for d in con.execute("SELECT * FROM transitions LIMIT 0").description}
        base = [*SCORES_BASE, *(c for c in PROVENANCE_COLUMNS if c in have and c not in SCORES_BASE)]
        select = [f"t.{_q(c)}" for c in base]
        joins, seen = [], set(base)
        for i, (name, m) in enumerate(sorted(cur.items())):
            path = root / "runs" / m["run_id"] / "scores.parquet"
            _check_parquet(path, f"score file of run {m['run_id']}")
            files.append(path)
            con.execute(f"CREATE VIEW {_q(name)} AS SELECT * FROM {_score_sql(path)}")
            alias = f"r{i}"
            joins.append(f"LEFT JOIN {_q(name)} AS {alias} ON {alias}.transition_id = t.transition_id")
            for c in m.get("columns", {}):
                if c not in seen:
                    seen.add(c)
                    select.append(f"{alias}.{_q(c)}")
        if use_cache and self._cache_valid(cur):
            files.append(root / "scores.parquet")
            con.execute(f"CREATE VIEW scores AS SELECT * FROM read_parquet({_lit(files[-1])})")
        else:
            con.execute(f"CREATE VIEW scores AS SELECT {', '.join(select)} FROM transitions AS t {' '.join(joins)}")
        con.register("runs", self._runs_table())

    def _runs_table(self) -> pa.Table:
        rows = []
        current = {m["run_id"] for m in self.current_runs().values()}
        for m in self.manifests():
            t = m.get("timings", {})
            rows.append({"run_id": m["run_id"], "scorer": m.get("scorer"), "status": m.get("status"),
                         "current": m["run_id"] in current, "n_rows": m.get("n_rows"),
                         "n_nonfinite": m.get("n_nonfinite"), "wall_s": t.get("wall_s"),
                         "fit_s": t.get("fit_s"), "score_s": t.get("score_s"), "device": m.get("device"),
                         "seed": m.get("seed"), "created": m.get("created"),
                         "columns": ",".join(m.get("columns", {})),
                         "config": json.dumps(m.get("config", {}), sort_keys=True)})
        schema = pa.schema([("run_id", pa.string()), ("scorer", pa.string()), ("status", pa.string()),
                            ("current", pa.bool_()), ("n_rows", pa.int64()), ("n_nonfinite", pa.int64()),
                            ("wall_s", pa.float64()), ("fit_s", pa.float64()), ("score_s", pa.float64()),
                            ("device", pa.string()), ("seed", pa.int64()), ("created", pa.string()),
                            ("columns", pa.string()), ("config", pa.string())])
        return pa.Table.from_pylist(rows, schema=schema)

    def _views_key(self) -> tuple:
        """Changes whenever a run manifest is written (the views must then be rebuilt)."""
        runs = self.dir / "runs"
        if not runs.is_dir():
            return ()
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in runs.glob("*/manifest.json")))

    def _connection(self):
        """The cached DuckDB connection, rebuilt when the runs changed."""
        key = self._views_key()
        if getattr(self, "_con", None) is None or self._con_key != key:
            self.close()
            self._con = self.connect()
            self._con_key = key
        return self._con

    def close(self) -> None:
        """Close the cached DuckDB connection (reopened on the next query)."""
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()
        self._con = None

    def query(self, sql: str) -> pa.Table:
        """Run SQL over the store's views and return the result as a pyarrow Table.

        Views: ``transitions`` (source rows), ``target``, one per scorer (its latest complete run),
        ``scores`` (transition_id, episode_id, step, reward, episode_return, quality + every current
        score column) and ``runs`` (one row per run manifest).

        Only one read-only SELECT/WITH statement is accepted (:func:`check_read_only_sql`), and the
        connection can read nothing but the store's own files (see :meth:`connect`).

        Raises:
            StoreError: one line with DuckDB's message for unknown views/columns or bad SQL, or
                saying why the SQL is refused.
        """
        import duckdb

        check_read_only_sql(sql)
        con = self._connection()
        try:
            rel = con.sql(sql)
            return rel.to_arrow_table() if rel is not None else pa.table({})
        except duckdb.Error as e:
            self.close()  # a failed statement may leave the connection in an aborted state
            raise StoreError(f"query failed: {_duck_error(e)}") from None


class _Progress:
    """A Rich progress bar on stderr, or nothing."""

    def __init__(self, enabled: bool, label: str, total: int, done: int = 0) -> None:
        self.enabled = enabled
        self.label, self.total, self.done = label, total, done
        self._p = None
        self._fit_tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from xcurate.console import make_console

            self._p = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TimeRemainingColumn(), console=make_console(stderr=True),
                               transient=False)
            self._p.__enter__()
            self._task = self._p.add_task(self.label, total=self.total, completed=self.done)
        return self

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def fit_update(self, what: str, step: int, steps: int, loss: float) -> None:
        """Show a scorer's training (``fit <what>``: step of steps and the current loss)."""
        if self._p is None:
            return
        desc = f"  fit {what} (loss {loss:.4g})"
        task = self._fit_tasks.get(what)
        if task is None:
            self._fit_tasks[what] = self._p.add_task(desc, total=steps, completed=step)
        else:
            self._p.update(task, description=desc, completed=step)

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)


# --------------------------------------------------------------------------------------------
# Convenience
# --------------------------------------------------------------------------------------------

_SETTING = re.compile(r"^([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)=(.*)$")


_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (a bijective, well-mixing hash)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def row_hash(ds: TransitionDataset, rows: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's (s, a, r, s') bytes (float64), for ``rows`` of ``ds``.

    Depends only on the row's content and the seed, never on its position or transition id, so
    sorting by it gives a chunk assignment that is the same for any permutation of the file.
    """
    return row_hash_arrays(ds.observations[rows], ds.actions[rows], ds.rewards[rows],
                           ds.next_observations[rows], seed)


def row_hash_arrays(obs: np.ndarray, act: np.ndarray, rew: np.ndarray, next_obs: np.ndarray,
                    seed: int) -> np.ndarray:
    """:func:`row_hash` of rows given as arrays ((n, d) obs/act/next_obs, (n,) rewards).

    A pure function of each row, so it can be computed batch by batch while streaming a file.
    """
    with np.errstate(over="ignore"):
        h = np.full(len(rew), _mix64(np.array([seed], np.uint64) + _GOLD)[0], np.uint64)
        for arr in (obs, act, np.asarray(rew).reshape(len(rew), -1), next_obs):
            bits = np.ascontiguousarray(np.asarray(arr, np.float64) + 0.0).view(np.uint64)  # -0.0 -> 0.0
            for j in range(bits.shape[1]):
                h = _mix64(h ^ (bits[:, j] + _GOLD + (h << np.uint64(6)) + (h >> np.uint64(2))))
    return h


def check_holdout(fraction: float) -> float:
    """A holdout fraction: 0 (off) or a number in (0, 0.5]; :class:`ConfigError` otherwise."""
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        raise ConfigError(f"--holdout {fraction!r}: expected a number in (0, {MAX_HOLDOUT}]") from None
    if f == 0.0:
        return 0.0
    if not (0.0 < f <= MAX_HOLDOUT):
        raise ConfigError(f"--holdout {fraction}: the held-out target fraction must be in (0, {MAX_HOLDOUT}]")
    return f


def check_holdout_block(block: int | None) -> int:
    """Rows per held-out segment: ``None`` -> ``HOLDOUT_BLOCK``; an integer >= 1, else :class:`ConfigError`."""
    if block is None:
        return int(HOLDOUT_BLOCK)
    try:
        b = int(block)
    except (TypeError, ValueError):
        raise ConfigError(f"--holdout-block {block!r}: expected a whole number of rows >= 1") from None
    if b < 1 or b != block:
        raise ConfigError(f"--holdout-block {block!r}: expected a whole number of rows >= 1")
    return b


def split_holdout(target: TransitionDataset, fraction: float, seed: int, min_target: int,
                  block: int | None = None) -> tuple[TransitionDataset, TransitionDataset | None]:
    """Split the target into (fit part, held-out part) by a seeded random choice of row blocks.

    The target is cut into segments of ``block`` consecutive rows within each episode (the last
    segment of an episode may be shorter), and a seeded random permutation of the segments is
    held out until at least ``fraction`` of the rows are. ``block=1`` holds out single rows. With
    single rows, a held-out row's neighbours in time (nearly the same s, a and s') stay in the
    fit, and memorising scorers (kNN, OT) recognise held-out rows by that leak alone.

    Returns ``(target, None)`` when ``fraction`` is 0. At least one row is held out; the fit part
    must keep ``min_target`` rows (the scorer's minimum), else :class:`DataError`.
    """
    if not fraction:
        return target, None
    block = HOLDOUT_BLOCK if block is None else int(block)
    n = len(target)
    n_hold = max(1, int(round(fraction * n)))
    if n - n_hold < max(min_target, 1):
        raise DataError(f"{target.source}: target has {n} rows; holding out {n_hold} ({fraction:g}) leaves "
                        f"{n - n_hold}, fewer than the {max(min_target, 1)} the scorer needs (lower --holdout)")
    rng = np.random.default_rng(seed)
    if block <= 1:
        perm = rng.permutation(n)
        hold = perm[:n_hold]
    else:
        ep = np.asarray(target.episode_ids)
        new_ep = np.r_[True, ep[1:] != ep[:-1]]
        ep_start = np.maximum.accumulate(np.where(new_ep, np.arange(n), 0))
        seg = np.cumsum(new_ep | ((np.arange(n) - ep_start) % block == 0)) - 1
        order = rng.permutation(int(seg[-1]) + 1)
        sizes = np.bincount(seg)[order]
        chosen = order[:int(np.searchsorted(np.cumsum(sizes), n_hold)) + 1]
        hold = np.flatnonzero(np.isin(seg, chosen))
        if n - len(hold) < max(min_target, 1):
            raise DataError(f"{target.source}: holding out whole blocks of {block} rows leaves {n - len(hold)} "
                            f"target rows, fewer than the {max(min_target, 1)} the scorer needs (lower --holdout)")
    mask = np.zeros(n, bool)
    mask[hold] = True
    return target.select(np.flatnonzero(~mask)), target.select(np.flatnonzero(mask))


def parse_settings(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse ``["ot.eps=0.05", "contrastive.steps=500"]`` into ``{"ot": {"eps": 0.05}, ...}``.

    Values are read as JSON (numbers, true/false, null, quoted strings) and otherwise kept as
    plain strings.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        m = _SETTING.match(item.strip())
        if not m:
            raise ConfigError(f"--set {item!r}: expected SCORER.SETTING=VALUE, e.g. ot.eps=0.05")
        scorer, key, raw = m.groups()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(scorer, {})[key] = value
    return out


def score_datasets(source: TransitionDataset | str | Path, target: TransitionDataset | str | Path,
                   scorers: Sequence[str] | Sequence[Scorer], store_dir: str | Path, domain: str | None = None,
                   settings: dict[str, dict[str, Any]] | None = None, progress: bool = False,
                   holdout: float = 0.0, engine: str = "local", address: str | None = None,
                   workers: int | None = None, fit_source_rows: int = DEFAULT_FIT_SOURCE_ROWS,
                   holdout_block: int | None = None) -> Store:
    """Create (or reopen) a store and run each scorer on it.

    Args:
        source: source dataset, path or dataset id.
        target: target dataset, path or dataset id.
        scorers: scorer names (instantiated with ``settings[name]``) or scorer instances.
        store_dir: the store directory.
        domain: target domain for scorers that need a simulator (``oracle``).
        settings: per-scorer settings, e.g. ``{"ot": {"eps": 0.05}}``.
        progress: show progress bars.
        holdout: target fraction kept out of every fit and scored like source rows (0 = off).
        engine, address, workers, fit_source_rows: as in :meth:`Store.run`.

    Returns:
        The :class:`Store`.
    """
    holdout = check_holdout(holdout)
    settings = settings or {}
    insts: list[Scorer] = []
    for s in scorers:
        if isinstance(s, Scorer):
            insts.append(s)
        else:
            insts.append(make_scorer(s, **settings.get(s, {})))
    unknown = set(settings) - {s.name for s in insts}
    if unknown:
        raise ConfigError(f"settings given for scorer(s) {sorted(unknown)} that are not being run")
    store = Store.create(store_dir, source, target, domain=domain)
    for s in insts:
        store.run(s, progress=progress, domain=domain, holdout=holdout, engine=engine, address=address,
                  workers=workers, fit_source_rows=fit_source_rows, holdout_block=holdout_block)
    return store
