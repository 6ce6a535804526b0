"""Where the chunks of a score run are computed, and how the source is read without loading it.

Two engines score the chunks of a run (:meth:`xcurate.scoring.store.Store.run`):

* ``local`` (default): this process, one chunk after the other.
* ``ray``: Ray tasks on a Ray cluster (a local one, or ``address=``). The scorer is fitted once
  (on the driver, or on one GPU worker when only the workers have GPUs); the fitted scorer goes
  to the workers through Ray's object store (``ray.put``); each task reads its chunk's input file
  from the store, scores it and writes the chunk file atomically, exactly as the local engine
  does. A task whose worker dies is retried by Ray (``max_retries``); a killed driver resumes
  like a local run (finished chunk files are kept). Scores are bitwise equal to the local
  engine's for deterministic scorers (same code, same inputs, same seeds) when the local run uses
  the workers' intra-op thread count (one torch/BLAS thread per task); with more local threads,
  torch reductions (OT) may differ in the last bit (~1e-16).

Streaming (bounded memory, both engines): the source Parquet is read in batches of
:data:`BATCH_ROWS` rows. One pass computes the finite mask and the content hash that assigns rows
to chunks; a second pass writes each missing chunk's rows into its own input file
(``runs/<id>/inputs/part-<start>.parquet``, deleted with the chunks when the run completes), so
that no process ever holds more than one chunk, one batch and the fit sample. The fit sees the
whole target and at most ``fit_source_rows`` source rows: the first rows of the content-hash order
(a seeded, order-independent random sample; all finite rows when there are fewer).
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xcurate.errors import ConfigError, DataError, StoreError, XcurateError
from xcurate.utils import resolve_device

ENGINES = ("local", "ray")
#: rows per Parquet batch read by the streaming passes
BATCH_ROWS = 65_536
#: at most this many chunk input files are written in one pass over the source
MAX_OPEN_WRITERS = 128
#: default bound on the source rows a scorer's fit sees (a seeded content-hash sample beyond it)
DEFAULT_FIT_SOURCE_ROWS = 200_000
#: Ray retries of a chunk whose worker died (``max_retries`` of the task)
RAY_MAX_RETRIES = 3
#: the install hint (no square brackets: the CLI prints errors with Rich markup, which would eat "[ray]")
RAY_INSTALL = "pip install 'ray>=2.40' (xcurate's ray extra)"
_HASH_COLUMNS = ("transition_id", "obs", "act", "reward", "next_obs")


# --------------------------------------------------------------------------------------------
# Streaming reads of a store's Parquet files
# --------------------------------------------------------------------------------------------


def source_files(path: Path) -> list[tuple[Path, dict[str, str]]]:
    """The Parquet files of a source and their hive partition values, in a fixed (sorted) order.

    ``path`` is one Parquet file, or a directory of them partitioned hive-style
    (``domain=hopper/policy=medium/part-0.parquet``): each ``key=value`` folder adds a text
    column ``key`` to the rows below it. Hidden and temporary files are skipped.
    """
    path = Path(path)
    if path.is_file():
        return [(path, {})]
    files = sorted(f for f in path.rglob("*.parquet")
                   if not any(part.startswith((".", "_")) for part in f.relative_to(path).parts))
    if not files:
        raise DataError(f"{path}: no Parquet files in the directory")
    out, keys = [], None
    for f in files:
        parts: dict[str, str] = {}
        for seg in f.relative_to(path).parts[:-1]:
            k, sep, v = seg.partition("=")
            if not sep or not k:
                raise DataError(f"{f}: folder {seg!r} is not a hive partition (expected key=value)")
            parts[k] = unquote(v)
        if keys is None:
            keys = list(parts)
        elif list(parts) != keys:
            raise DataError(f"{f}: partition keys {list(parts)} differ from {keys} of {files[0]}")
        out.append((f, parts))
    return out


def num_rows(path: Path) -> int:
    """Rows of a source (a file or a hive-partitioned directory), from the Parquet footers."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f, _ in source_files(path))


def source_schema(path: Path) -> pa.Schema:
    """The schema of a source's batches: the first file's columns, then the partition keys (text)."""
    files = source_files(path)
    schema = pq.ParquetFile(files[0][0]).schema_arrow
    for k in files[0][1]:
        if k not in schema.names:
            schema = schema.append(pa.field(k, pa.string()))
    return schema


def iter_batches(path: Path, columns: Sequence[str] | None = None,
                 batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pa.Table]]:
    """``(offset, table)`` for consecutive batches of a source (file or hive directory).

    The schema metadata of the first file is kept on every batch; partition values are added as
    text columns.
    """
    files = source_files(path)
    meta = pq.ParquetFile(files[0][0]).schema_arrow.metadata
    off = 0
    for f, parts in files:
        pf = pq.ParquetFile(f)
        cols = None if columns is None else [c for c in columns if c not in parts]
        for b in pf.iter_batches(batch_size=batch_rows, columns=cols):
            t = pa.Table.from_batches([b])
            for k, v in parts.items():
                if (columns is None or k in columns) and k not in t.column_names:
                    t = t.append_column(k, pa.repeat(pa.scalar(v, pa.string()), t.num_rows))
            yield off, t.replace_schema_metadata(meta)
            off += t.num_rows


def read_all(path: Path) -> pa.Table:
    """A whole source as one table (in :func:`iter_batches` order; only for data that fits in memory)."""
    parts = [t for _, t in iter_batches(path)]
    return pa.concat_tables(parts) if parts else source_schema(path).empty_table()


#: dataset field -> store column, for the streaming fingerprint
_FIELD_COLUMNS = {"observations": "obs", "actions": "act", "rewards": "reward", "next_observations": "next_obs",
                  "terminals": "terminal", "timeouts": "timeout", "episode_ids": "episode_id", "steps": "step",
                  "transition_ids": "transition_id", "qpos": "qpos", "qvel": "qvel"}


def stream_fingerprint(path: Path, batch_rows: int = BATCH_ROWS) -> str:
    """``TransitionDataset.fingerprint()`` of a store-layout source, one column at a time.

    Equal to ``table_to_dataset(read_all(path)).fingerprint()`` without materialising the source:
    each column is hashed in a pass that reads only that column.
    """
    import hashlib

    from xcurate.scoring.store import table_to_dataset

    n = num_rows(path)
    first = next(iter_batches(path, None, 1))[1]
    probe = table_to_dataset(first)
    h = hashlib.sha256()
    for name, arr in sorted(probe.columns().items()):
        col = _FIELD_COLUMNS.get(name, name)
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str((n, *arr.shape[1:])).encode())
        for _, t in iter_batches(path, [col], batch_rows):
            v = _column_raw(t, col)
            if name in ("terminals", "timeouts"):
                v = v.astype(bool)
            h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _column_raw(t: pa.Table, name: str) -> np.ndarray:
    from xcurate.scoring.store import _column_numpy

    return _column_numpy(t.column(name))


def _vectors(t: pa.Table, name: str) -> np.ndarray:
    from xcurate.scoring.store import _column_numpy

    v = _column_numpy(t.column(name))
    return v[:, None] if v.ndim == 1 else v


def source_pass(path: Path, seed: int, batch_rows: int = BATCH_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One streaming pass: ``(transition_ids, finite mask, content hash)`` of every row.

    The mask and hash equal ``TransitionDataset.finite_mask()`` and
    :func:`xcurate.scoring.store.row_hash` of the materialised dataset.
    """
    from xcurate.scoring.store import row_hash_arrays

    n = num_rows(path)
    ids = np.empty(n, np.int64)
    finite = np.empty(n, bool)
    hashes = np.empty(n, np.uint64)
    for off, t in iter_batches(path, _HASH_COLUMNS, batch_rows):
        sl = slice(off, off + t.num_rows)
        obs, act, nxt = _vectors(t, "obs"), _vectors(t, "act"), _vectors(t, "next_obs")
        rew = t.column("reward").to_numpy(zero_copy_only=False)
        ids[sl] = t.column("transition_id").to_numpy()
        m = np.isfinite(rew)
        for a in (obs, act, nxt):
            m &= np.isfinite(a).all(axis=1)
        finite[sl] = m
        hashes[sl] = row_hash_arrays(obs, act, rew, nxt, seed)
    return ids, finite, hashes


def take_rows(path: Path, rows: np.ndarray, batch_rows: int = BATCH_ROWS) -> pa.Table:
    """The rows ``rows`` (sorted positions) of a Parquet file, read batch by batch."""
    rows = np.asarray(rows, np.int64)
    parts = []
    for off, t in iter_batches(path, None, batch_rows):
        lo, hi = np.searchsorted(rows, [off, off + t.num_rows])
        if hi > lo:
            parts.append(t.take(pa.array(rows[lo:hi] - off)))
    if not parts:
        return source_schema(path).empty_table()
    return pa.concat_tables(parts)


def write_chunk_inputs(path: Path, assign: np.ndarray, outputs: dict[int, Path],
                       batch_rows: int = BATCH_ROWS) -> None:
    """Write each chunk's rows (in file order) into its own Parquet file, streaming the source.

    Args:
        path: the source Parquet file.
        assign: (n,) chunk number of each row, -1 for rows in no chunk (non-finite).
        outputs: chunk number -> input file to write (atomically: a temporary name, then renamed).
        batch_rows: rows per read batch.
    """
    from xcurate.utils import atomic_path

    wanted = sorted(outputs)
    schema = source_schema(path)
    for g in range(0, len(wanted), MAX_OPEN_WRITERS):  # bounded number of open files per pass
        group = wanted[g:g + MAX_OPEN_WRITERS]
        lo, hi = group[0], group[-1]
        with ExitStack() as stack:  # on any error every temporary file is removed, none renamed
            tmps = {k: stack.enter_context(atomic_path(outputs[k])) for k in group}
            writers = {k: pq.ParquetWriter(tmps[k], schema, compression="lz4") for k in group}
            try:
                for off, t in iter_batches(path, None, batch_rows):
                    a = assign[off:off + t.num_rows]
                    sel = np.flatnonzero((a >= lo) & (a <= hi))
                    if not len(sel):
                        continue
                    sel = sel[np.argsort(a[sel], kind="stable")]  # grouped by chunk, file order kept
                    ks, first = np.unique(a[sel], return_index=True)
                    for k, b, e in zip(ks, first, [*first[1:], len(sel)], strict=True):
                        if int(k) in writers:
                            writers[int(k)].write_table(t.take(pa.array(sel[b:e])))
            finally:
                for w in writers.values():
                    w.close()


def score_chunk(scorer: Any, inp: Path, out: Path) -> tuple[int, float]:
    """Score one chunk input file into its chunk file (atomic); return ``(rows, seconds)``."""
    from xcurate.scoring.store import Store, _write_parquet, table_to_dataset

    t0 = time.perf_counter()
    ds = table_to_dataset(pq.read_table(inp))
    res = scorer.score(ds)
    table = Store._chunk_table(scorer, ds.transition_ids, res, len(ds))
    elapsed = time.perf_counter() - t0
    _write_parquet(table.replace_schema_metadata({b"elapsed_s": str(elapsed).encode()}), out)
    return len(ds), elapsed


# --------------------------------------------------------------------------------------------
# Ray
# --------------------------------------------------------------------------------------------


def check_engine(engine: str, workers: int | None) -> None:
    """Validate ``engine``/``workers`` (and that Ray is importable for ``ray``), one line each."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and int(workers) < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if engine == "ray":
        require_ray()


def require_ray():
    """The ``ray`` module, or :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    a = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = a.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--address {address}: expected HOST:PORT, ray://HOST:PORT or auto")
    return host.strip("[]"), int(port)


def connect(address: str | None, workers: int | None) -> Any:
    """Connect to (or start) a Ray cluster; return the ``ray`` module.

    An already initialised Ray (e.g. ``ray.init(num_cpus=2)`` in a test) is reused. Without
    ``address`` a local cluster is started with ``workers`` CPUs (default: all).

    Raises:
        ConfigError: Ray missing, ``workers`` < 1, or ``address`` unreachable (named).
    """
    check_engine("ray", workers)
    ray = require_ray()
    if address and address not in ("auto", "local"):
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as e:
            raise ConfigError(f"--address {address}: no Ray cluster reachable there "
                              f"({e.strerror or type(e).__name__})") from None
    if ray.is_initialized():
        return ray
    try:
        # Ray's C++ client logs every failed retry to fd 2: keep them out of the one-line error
        with _quiet_fd2(enabled=bool(address)) as log:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        msg = " ".join(str(e).split())[:300]
        raise ConfigError(f"--address {address or '(local)'}: cannot connect to a Ray cluster ({msg})") from None
    if log:  # connected: pass on what Ray said
        sys.stderr.write(log.decode(errors="replace"))
    return ray


class _quiet_fd2:
    """Redirect file descriptor 2 into a buffer while Ray connects (the bytes are ``self.text``)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.text = b""

    def __enter__(self) -> _quiet_fd2:
        if self.enabled:
            import tempfile

            sys.stderr.flush()
            self._saved = os.dup(2)
            self._file = tempfile.TemporaryFile()
            os.dup2(self._file.fileno(), 2)
        return self

    def __bool__(self) -> bool:
        return bool(self.text)

    def decode(self, errors: str = "strict") -> str:
        return self.text.decode(errors=errors)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._file.seek(0)
            self.text = self._file.read()
            self._file.close()


def _worker_path(path: Path) -> str:
    """The path the workers are told to use (the driver's absolute path: a shared file system)."""
    return str(path.resolve())


def _probe(path: str, token: str) -> tuple[str, bool]:
    try:
        ok = Path(path).read_text() == token
    except OSError:
        ok = False
    return socket.gethostname(), ok


def check_visible(ray: Any, directory: Path) -> None:
    """Every alive Ray node must see ``directory`` (the store) at the same path, before scoring.

    The driver writes a random token into the directory; one tiny task pinned to each node reads
    it back. A node that cannot read it (another machine's local disk) is a :class:`ConfigError`.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    tpath = directory / f".xcurate-visible-{token[:8]}"
    try:
        tpath.write_text(token)
    except OSError as e:
        raise StoreError(f"--store {directory}: cannot write to the store ({e.strerror or e})") from None
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(_worker_path(tpath), token) for n in nodes]
        try:
            results = ray.get(refs, timeout=120)
        except Exception as e:  # noqa: BLE001 - GetTimeoutError, a node lost meanwhile...
            raise ConfigError(f"--store {directory}: the Ray nodes did not answer the store check "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    finally:
        tpath.unlink(missing_ok=True)
    for node, (host, ok) in zip(nodes, results, strict=True):
        if not ok:
            raise ConfigError(f"--store {directory}: not visible from Ray node {host} "
                              f"({node.get('NodeManagerAddress')}); put the store on a file system that "
                              "every node mounts at the same path")


def _uses_torch(scorer: Any) -> bool:
    import torch

    def torchy(v: Any) -> bool:
        if isinstance(v, (torch.Tensor, torch.nn.Module)):
            return True
        if isinstance(v, dict):
            return any(torchy(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return any(torchy(x) for x in v)
        return hasattr(v, "__dict__") and not isinstance(v, type) and any(
            isinstance(x, (torch.Tensor, torch.nn.Module)) for x in vars(v).values())

    return any(torchy(v) for v in vars(scorer).values())


def _warm_remote(scorer_module: str) -> str:
    """Import what a chunk task needs, so the first chunks do not pay for cold workers."""
    import importlib

    import xcurate.scoring.store  # noqa: F401 - the imports are the point

    importlib.import_module(scorer_module)
    return socket.gethostname()


def _fit_remote(scorer: Any, target: Any, source: Any) -> Any:
    return scorer.fit(target, source)


def _score_remote(scorer: Any, inp: str, out: str) -> tuple[int, float]:
    return score_chunk(scorer, Path(inp), Path(out))


def _holdout_remote(scorer: Any, held: Any) -> dict[str, np.ndarray]:
    out = scorer.score(held)
    return {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in out.items()}


def _cause(e: Exception) -> Exception:
    cause = getattr(e, "cause", None)
    return cause if isinstance(cause, XcurateError) else e


class RayRun:
    """The Ray side of one score run: fit, holdout and chunk tasks with bounded concurrency.

    Args:
        ray: the connected ``ray`` module (:func:`connect`).
        scorer: the (unfitted) scorer.
        workers: chunk tasks in flight at once (default: the cluster's CPUs, or GPUs for torch
            scorers on a GPU cluster).
    """

    def __init__(self, ray: Any, scorer: Any, workers: int | None) -> None:
        self.ray = ray
        res = ray.cluster_resources()
        self.n_gpus = int(res.get("GPU", 0))
        self.workers = self.user_workers = int(workers) if workers else None
        self.scorer = scorer
        self.ref = None
        self.gpu = False
        self.fit_where = "driver"

    def _slots(self) -> int:
        if self.workers is None:
            res = self.ray.cluster_resources()
            self.workers = max(1, int(res.get("GPU", 0) if self.gpu else res.get("CPU", 1)))
        return self.workers

    def warm(self) -> None:
        """Start one warm-up task per worker slot (imports), overlapping the fit on the driver."""
        task = self.ray.remote(num_cpus=1, max_retries=0)(_warm_remote)
        self._warm = [task.remote(type(self.scorer).__module__) for _ in range(self._slots())]

    def _opts(self) -> dict[str, Any]:
        return {"num_gpus": 1, "num_cpus": 1} if self.gpu else {"num_cpus": 1}

    def fit(self, target: Any, source: Any) -> None:
        """Fit once; the fitted scorer is put in the object store (``self.ref``)."""
        import torch

        ray = self.ray
        dev = getattr(self.scorer, "device", "auto")
        if self.n_gpus == 0 and dev == "cuda":
            raise ConfigError("--device cuda: the Ray cluster has no GPUs (use --device cpu or auto)")
        if self.n_gpus == 0 and dev == "auto" and hasattr(self.scorer, "device"):
            self.scorer.device = "cpu"  # CPU workers must be able to load the fitted scorer (not in the run id)
        wants_gpu = self.n_gpus > 0 and dev in ("auto", "cuda")
        self.device = "cpu"
        if wants_gpu and not torch.cuda.is_available():
            # only the workers have GPUs: fit on one of them, the fitted (CUDA) scorer stays in Ray
            self.gpu, self.fit_where, self.device = True, "ray-gpu-worker", "cuda"
            task = ray.remote(max_retries=RAY_MAX_RETRIES)(_fit_remote).options(**self._opts())
            # a failed fit surfaces (as its cause) in the first task that uses the scorer
            self.ref = task.remote(self.scorer, ray.put(target), ray.put(source))
            return
        self.scorer.fit(target, source)
        self.gpu = wants_gpu and _uses_torch(self.scorer)
        self.device = resolve_device(getattr(self.scorer, "device", "cpu"))
        self.ref = ray.put(self.scorer)

    def holdout(self, held: Any) -> dict[str, np.ndarray]:
        """Score the held-out target rows (one task, like a chunk)."""
        task = self.ray.remote(max_retries=RAY_MAX_RETRIES)(_holdout_remote).options(**self._opts())
        try:
            return self.ray.get(task.remote(self.ref, held))
        except Exception as e:
            raise _cause(e) from None

    def score(self, jobs: list[tuple[int, Path, Path]], on_done) -> None:
        """Run ``(start, input, output)`` chunk jobs; ``on_done(start, rows)`` as each finishes."""
        ray = self.ray
        if self.gpu and self.user_workers is None:
            self.workers = None  # GPU slots, not CPUs, bound the concurrency
        slots = self._slots()
        task = ray.remote(max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_score_remote).options(
            **self._opts())
        queue = list(jobs)
        pending: dict[Any, int] = {}
        try:
            while queue or pending:
                while queue and len(pending) < slots:
                    start, inp, out = queue.pop(0)
                    pending[task.remote(self.ref, _worker_path(inp), _worker_path(out))] = start
                done, _ = ray.wait(list(pending), num_returns=1)
                for r in done:
                    start = pending.pop(r)
                    try:
                        n, _elapsed = ray.get(r)
                    except Exception as e:
                        cause = _cause(e)
                        if cause is not e:
                            raise cause from None
                        raise StoreError(f"chunk part-{start:012d} failed on Ray (after up to {RAY_MAX_RETRIES} "
                                         f"retries): {' '.join(str(e).split())[:300]}") from None
                    on_done(start, n)
        finally:
            for r in pending:
                ray.cancel(r, force=True)

    def describe(self) -> dict[str, Any]:
        """The engine's entry in the run manifest."""
        return {"kind": "ray", "workers": self.workers, "gpu": self.gpu, "fit": self.fit_where,
                "max_retries": RAY_MAX_RETRIES, "nodes": len([n for n in self.ray.nodes() if n.get("Alive")])}


__all__ = ["DEFAULT_FIT_SOURCE_ROWS", "ENGINES", "RayRun", "check_engine", "check_visible", "connect",
           "iter_batches", "score_chunk", "source_pass", "take_rows", "write_chunk_inputs"]
