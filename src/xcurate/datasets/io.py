"""Read and write transition datasets: D4RL/OTDF HDF5, Parquet, Minari and CS285 pickles.

Entry points:

- :func:`load_dataset` ``(path_or_id, format=None) -> TransitionDataset``
- :func:`save_dataset` ``(ds, path, format=None) -> Path`` (atomic, writes a manifest)
- :func:`detect_format`, :func:`resolve_spec`, :func:`manifest_path`, :func:`minari_root`

Formats (``format=`` or the file extension):

``hdf5`` (``.hdf5``/``.h5``)
    D4RL keys ``observations, actions, rewards, next_observations, terminals, timeouts,
    infos/qpos, infos/qvel, infos/action_log_probs, metadata/*``; xcurate adds
    ``xcurate/{episode_ids,steps,transition_ids}`` and ``xcurate/extras/<name>`` so that the
    round trip is lossless. The OTDF/ODRL target layout (rewards and terminals ``(N, 1)``, no
    timeouts) is detected and read as well.
``parquet`` (``.parquet``/``.pq``)
    One row per transition; vector fields are fixed-size list columns; the metadata dict and the
    list of extra columns live in the schema metadata under the key ``xcurate``.
``minari`` (a directory ``<dir>/data/{main_data.hdf5,metadata.json}``, or ``minari:<id>``)
    Written directly with h5py (the ``minari`` package is optional); xcurate columns go to
    ``infos/xcurate/*`` so that ``minari.load_dataset`` reads the result and we read it back exactly.
``cs285`` (``.pkl``/``.pickle``)
    CS285 expert rollouts: a list of path dicts (observation, action, reward, next_observation,
    terminal), read with the restricted unpickler only.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.datasets import ids
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import DataError
from xcurate.utils import atomic_path, make_manifest, safe_load_pickle, write_json_atomic

#: Formats :func:`save_dataset` can write.
WRITE_FORMATS = ("hdf5", "parquet", "minari")
#: Formats :func:`load_dataset` can read.
READ_FORMATS = ("hdf5", "parquet", "minari", "cs285")

_ALIASES = {"hdf5": "hdf5", "h5": "hdf5", "d4rl": "hdf5", "otdf": "hdf5", "parquet": "parquet",
            "pq": "parquet", "minari": "minari", "cs285": "cs285", "pkl": "cs285", "pickle": "cs285"}
_SUFFIXES = {".hdf5": "hdf5", ".h5": "hdf5", ".parquet": "parquet", ".pq": "parquet",
             ".pkl": "cs285", ".pickle": "cs285"}
#: Version tag written into every file (HDF5 root attribute / Parquet schema metadata).
FORMAT_TAG = "xcurate-transitions/1"
_XC = "xcurate"
_REQUIRED_HDF5 = ("observations", "actions", "rewards", "terminals")
_CORE_COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                 "episode_ids", "steps", "transition_ids", "qpos", "qvel")
#: Metadata arrays read from foreign HDF5 files (e.g. D4RL policy weights) larger than this are
#: summarised as a string instead of being copied into the metadata dict.
MAX_METADATA_ARRAY = 64
_MINARI_VERSION_FALLBACK = "0.5.4"
_MINARI_ID_RE = re.compile(r"^[-_\w][-_\w/]*-v\d+$")


# =============================================================================================
# Spec resolution and format detection
# =============================================================================================


def minari_root() -> Path:
    """Minari's dataset root: ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    import os

    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env).expanduser() if env else Path.home() / ".minari" / "datasets"


def minari_path(spec: str) -> Path:
    """The folder of ``minari:<id>`` under :func:`minari_root`; an id that leaves the root is refused.

    Raises:
        DataError: the id is empty, absolute or climbs out of the root (``minari:../evil``).
    """
    rel = spec[len("minari:"):] if spec.startswith("minari:") else spec
    root = minari_root()
    p = root / rel
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise DataError(f"minari:{rel}: a Minari id must be a relative name under {root} (no '..', not absolute)")
    try:
        p.resolve().relative_to(root.resolve())
    except ValueError:
        raise DataError(f"minari:{rel}: resolves outside the Minari root {root}") from None
    return p


def _normalise_format(format: str | None, where: str | Path) -> str | None:
    if format is None:
        return None
    f = _ALIASES.get(str(format).lower().lstrip("."))
    if f is None:
        raise DataError(f"{where}: unknown dataset format {format!r} (known: {', '.join(READ_FORMATS)})")
    return f


def resolve_spec(spec: str | Path) -> Path:
    """Turn a path, a dataset id (``hopper/source/medium-v0``) or ``minari:<id>`` into an existing path.

    Raises:
        DataError: if nothing exists there.
    """
    s = str(spec)
    if s.startswith("minari:"):
        p = minari_path(s)
        if not p.exists():
            raise DataError(f"{s}: no Minari dataset at {p} (set MINARI_DATASETS_PATH to change the root)")
        return p
    return ids.resolve(spec)


def detect_format(path: str | Path) -> str:
    """The format of an existing path: ``hdf5``, ``parquet``, ``minari`` or ``cs285``.

    Raises:
        DataError: if the path is a folder that holds no dataset, or has an unknown extension.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "data" / "metadata.json").exists() or (p / "metadata.json").exists():
            return "minari"
        for name, fmt in (("data.hdf5", "hdf5"), ("data.parquet", "parquet")):
            if (p / name).exists():
                return fmt
        raise DataError(f"{p}: folder holds no dataset (expected data/metadata.json for Minari, "
                        "data.hdf5 or data.parquet)")
    if p.name == "main_data.hdf5" and (p.parent / "metadata.json").exists():
        return "minari"
    fmt = _SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise DataError(f"{p}: unknown dataset format {p.suffix or '(no extension)'!r} (known extensions: "
                        f"{', '.join(sorted(_SUFFIXES))}, or a Minari dataset folder)")
    return fmt


def manifest_path(path: str | Path) -> Path:
    """Where the manifest of a written dataset lives.

    A dataset folder (Minari) holds ``manifest.json``; a file named ``data.<ext>`` (the layout of
    dataset ids) has ``manifest.json`` beside it; any other file ``x.ext`` has ``x.ext.manifest.json``.
    """
    p = Path(path)
    if p.is_dir() or p.suffix == "":
        return p / "manifest.json"
    if p.stem == "data":
        return p.parent / "manifest.json"
    return p.with_name(p.name + ".manifest.json")


def _dataset_root_of(p: Path) -> Path:
    """The folder/file that a loaded path stands for (Minari: the dataset folder)."""
    if p.is_dir():
        if (p / "data.hdf5").exists():
            return p / "data.hdf5"
        if (p / "data.parquet").exists():
            return p / "data.parquet"
        if p.name == "data" and (p / "metadata.json").exists():
            return p.parent
        return p
    if p.name == "main_data.hdf5":
        return p.parent.parent if p.parent.name == "data" else p.parent
    return p


# =============================================================================================
# Public API
# =============================================================================================


def load_dataset(path_or_id: str | Path, format: str | None = None, *, on_nonfinite: str = "error",
                 max_episode_steps: int = 1000, keep_contact_dims: bool = False) -> TransitionDataset:
    """Load a dataset from a file, a folder, a dataset id or ``minari:<id>``.

    Args:
        path_or_id: a path (``.hdf5``/``.h5``, ``.parquet``, ``.pkl``, a Minari dataset folder), an
            xcurate dataset id (``hopper/source/medium-v0``) or ``minari:<namespace>/<name>-v<k>``.
        format: force a format (``hdf5``, ``parquet``, ``minari``, ``cs285``; aliases ``d4rl``,
            ``otdf``, ``h5``, ``pkl``); default: from the extension / folder layout.
        on_nonfinite: ``"error"`` (default) raises on NaN/Inf rows; ``"drop"`` removes them and
            records the count in ``metadata["xcurate_dropped_nonfinite"]``.
        max_episode_steps: CS285 pickles only: a ``terminal`` flag on the last step of a path
            this long is a time-limit cut (stored as a timeout), not a real termination.
        keep_contact_dims: keep 111-dim Ant observations (gym v2/v3: Gymnasium v5's 27 dims then
            84 contact-force dims) as they are. By default they are reduced to the 27-dim v5
            layout when the 84 dims are exactly zero (mujoco-py 2.x data; recorded in
            ``metadata["xcurate_obs_layout"]``, one ``warning:`` line) and refused otherwise.

    Returns:
        A validated :class:`TransitionDataset` whose ``source`` is the resolved path.

    Raises:
        DataError: one line naming the file and the problem (missing keys, truncated file,
            NaN/Inf, empty, mismatched lengths or dims, unknown format).
    """
    if on_nonfinite not in ("error", "drop"):
        raise DataError(f"{path_or_id}: on_nonfinite must be 'error' or 'drop', got {on_nonfinite!r}")
    p = resolve_spec(path_or_id)
    fmt = _normalise_format(format, p) or detect_format(p)
    reader = {"hdf5": _read_hdf5, "parquet": _read_parquet, "minari": _read_minari,
              "cs285": _read_cs285}[fmt]
    if fmt == "hdf5" and p.is_dir():
        p = _dataset_root_of(p)
    if fmt == "parquet" and p.is_dir():
        p = _dataset_root_of(p)
    try:
        ds = reader(p, max_episode_steps) if fmt == "cs285" else reader(p)
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        msg = str(e).splitlines()[0] if str(e) else ""
        raise DataError(f"{p}: cannot read {fmt} dataset ({type(e).__name__}: {msg})") from None
    ds = foreign_obs_layout(ds, keep_contact_dims=keep_contact_dims, where=p)
    if on_nonfinite == "drop":
        ds.validate(require_finite=False)
        mask = ds.finite_mask()
        if not mask.all():
            md = dict(ds.metadata)
            ds = ds.select(mask)
            md["xcurate_dropped_nonfinite"] = int((~mask).sum())
            ds.metadata = md
    ds.validate()
    return ds


#: gym v2/v3 Ant observations: Gymnasium v5's 27 dims followed by 84 contact-force dims (cfrc_ext).
ANT_CONTACT_LAYOUT = {"obs_dim": 111, "act_dim": 8, "keep": 27}
_KEPT_LAYOUT = "ant-111 (contact dims kept)"


def foreign_obs_layout(ds: TransitionDataset, keep_contact_dims: bool = False,
                       where: str | Path | None = None) -> TransitionDataset:
    """Bring a known foreign observation layout to Gymnasium v5's (called by :func:`load_dataset`).

    111-dim Ant data (ODRL, OTDF, D4RL: gym v2/v3 envs) hold the 27 v5 dims followed by 84
    contact-force dims, which mujoco-py 2.x leaves at exactly zero. Where every one of them is
    zero (in ``observations`` and ``next_observations``) they are dropped: the result has the
    27-dim v5 layout, ``metadata["xcurate_obs_layout"]`` records the change, and one
    ``warning:`` line says so. Non-zero contact dims raise :class:`DataError` naming
    ``keep_contact_dims``, which keeps all 111 dims (recorded in the metadata, so that a file
    written from such a dataset loads again without the option).
    """
    lay = ANT_CONTACT_LAYOUT
    if (ds.obs_dim, ds.act_dim) != (lay["obs_dim"], lay["act_dim"]):
        return ds
    if ds.metadata.get("xcurate_obs_layout") == _KEPT_LAYOUT:
        return ds
    src = where or ds.source
    if keep_contact_dims:
        ds.metadata = {**ds.metadata, "xcurate_obs_layout": _KEPT_LAYOUT}
        return ds
    k = lay["keep"]
    tail = np.concatenate([ds.observations[:, k:], ds.next_observations[:, k:]])
    nonzero = tail != 0
    if nonzero.any():
        rows = int(nonzero.reshape(2, len(ds), -1).any(axis=(0, 2)).sum())
        biggest = float(np.nanmax(np.abs(np.where(np.isfinite(tail), tail, 0.0))))
        raise DataError(f"{src}: 111-dim Ant observations with non-zero contact forces in dims {k}-110 "
                        f"({rows} of {len(ds)} rows, max |x| {biggest:.3g}) cannot become Gymnasium v5's "
                        f"{k}-dim layout; pass keep_contact_dims=True to load_dataset (CLI: xcurate datasets "
                        "convert --keep-contact-dims) to keep all 111 dims")
    md = dict(ds.metadata)
    md["xcurate_obs_layout"] = (f"ant-111 -> gymnasium-v5 {k} dims: dropped dims {k}-110 "
                                "(84 contact-force dims, all exactly zero)")
    out = TransitionDataset(
        observations=np.ascontiguousarray(ds.observations[:, :k]), actions=ds.actions, rewards=ds.rewards,
        next_observations=np.ascontiguousarray(ds.next_observations[:, :k]), terminals=ds.terminals,
        timeouts=ds.timeouts, episode_ids=ds.episode_ids, steps=ds.steps, transition_ids=ds.transition_ids,
        qpos=ds.qpos, qvel=ds.qvel, extras=ds.extras, metadata=md, source=ds.source)
    from xcurate.console import esc, make_console

    make_console(stderr=True).print(
        f"[yellow]warning:[/] {esc(str(src))}: 111-dim Ant observations (gym v2/v3 layout) with all-zero contact-force dims "
        f"{k}-110 were reduced to Gymnasium v5's {k} dims (metadata xcurate_obs_layout)",
        highlight=False, soft_wrap=True, markup=True)
    return out


def save_dataset(ds: TransitionDataset, path: str | Path, format: str | None = None, *,
                 manifest: bool = True, inputs: dict[str, str] | None = None,
                 config: dict[str, Any] | None = None, seed: int | None = None,
                 timings: dict[str, float] | None = None, dataset_id: str | None = None) -> Path:
    """Write a dataset atomically and (by default) its manifest.

    Args:
        ds: the dataset (validated before anything is written).
        path: a file (``.hdf5``/``.h5``/``.parquet``), a folder (Minari), ``minari:<id>`` (a folder
            under :func:`minari_root`) or an xcurate dataset id (written as
            ``$XCURATE_DATA/datasets/<id>/data.hdf5``).
        format: ``hdf5``, ``parquet`` or ``minari``; default: from the extension.
        manifest: write the manifest (see :func:`manifest_path`).
        inputs: input files of the manifest (name -> path, hashed), e.g. the converted file.
        config: extra configuration recorded in the manifest.
        seed: the seed recorded in the manifest (default: ``metadata["seed"]`` when it is an int).
        timings: wall times (s) of earlier phases (e.g. collection) recorded beside ``write_s``.
        dataset_id: Minari only: the ``dataset_id`` written into ``metadata.json`` (default: from the
            path, ``<namespace>/<name>-v<k>`` under the Minari root, else the folder name).

    Returns:
        The path written (the file, or the Minari dataset folder).

    Raises:
        DataError: invalid dataset, unknown format, or unwritable values. Nothing is left behind.
    """
    out, fmt = dataset_destination(path, format)
    if str(path).startswith("minari:"):
        dataset_id = dataset_id or str(path)[len("minari:"):]
    if fmt not in WRITE_FORMATS:
        raise DataError(f"{out}: format {fmt!r} can be read but not written (writable: "
                        f"{', '.join(WRITE_FORMATS)})")
    if len(ds) == 0:
        raise DataError(f"{out}: refusing to write an empty dataset (0 transitions)")
    ds.validate()
    _check_column_names(ds, out)
    t0 = time.perf_counter()
    man = None
    if manifest:
        man = make_manifest("dataset", inputs=inputs, config={"format": fmt, **(config or {})},
                            seed=seed if seed is not None else (
                                ds.metadata.get("seed") if isinstance(ds.metadata.get("seed"), int) else None),
                            transitions=len(ds), episodes=ds.n_episodes, obs_dim=ds.obs_dim,
                            act_dim=ds.act_dim, columns=sorted(ds.columns()), fingerprint=ds.fingerprint(),
                            metadata=_jsonable(ds.metadata))
    if fmt == "minari":
        did = dataset_id or _minari_id_for(out)
        with atomic_path(out, suffix="") as tmp:
            _write_minari(ds, tmp, did)
            if man is not None:
                man["timings"] = {**(timings or {}), "write_s": round(time.perf_counter() - t0, 4)}
                write_json_atomic(tmp / "manifest.json", man)
        return out
    writer = _write_hdf5 if fmt == "hdf5" else _write_parquet
    with atomic_path(out) as tmp:
        writer(ds, tmp)
    if man is not None:
        man["timings"] = {**(timings or {}), "write_s": round(time.perf_counter() - t0, 4)}
        write_json_atomic(manifest_path(out), man)
    return out


def dataset_destination(path: str | Path, format: str | None = None,
                        format_hint: str = "format='minari'") -> tuple[Path, str]:
    """Where :func:`save_dataset` would write ``path`` and in which format (nothing is written).

    Args:
        path: a file, a folder, ``minari:<id>`` or a dataset id (see :func:`save_dataset`).
        format: ``hdf5``, ``parquet`` or ``minari``; default: from the extension.
        format_hint: how the error for a path without extension names the format option
            (CLI commands pass their own flag, e.g. ``--format minari``).

    Raises:
        DataError: unknown format, a path without extension and no format, or a Minari id outside
            the Minari root.
    """
    s = str(path)
    fmt = _normalise_format(format, path)
    if s.startswith("minari:"):
        out = minari_path(s)
        if fmt not in (None, "minari"):
            raise DataError(f"{s}: a minari: destination cannot be written as {fmt}")
        return out, "minari"
    out = Path(path).expanduser()
    if (fmt in (None, "hdf5") and ids.ID_RE.match(s) and out.suffix.lower() not in _SUFFIXES
            and not out.exists()):
        return ids.dataset_path(s), "hdf5"
    if fmt is None:
        if out.suffix == "" or out.is_dir():
            raise DataError(f"{out}: cannot tell the format of a path without extension; pass "
                            f"{format_hint} (a folder) or use .hdf5/.parquet")
        fmt = _SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise DataError(f"{out}: unknown dataset format {out.suffix!r} for writing (known: "
                            f".hdf5, .h5, .parquet, or {format_hint} for a folder)")
    return out, fmt


def check_dataset_output(path: str | Path, format: str | None = None, *, force: bool = False,
                         what: str = "--out", format_hint: str = "--format minari") -> Path:
    """Check before any work that a dataset can be written at ``path`` (see :func:`xcurate.utils.check_output`).

    An existing dataset is refused unless ``force``; the output's folder must be writable.

    Returns:
        The destination path (the file, or the Minari dataset folder).
    """
    from xcurate.utils import check_output

    out, fmt = dataset_destination(path, format, format_hint=format_hint)
    return check_output(out, what=what, kind="dir" if fmt == "minari" else "file", force=force)


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a dataset path (or None when it has none)."""
    p = _dataset_root_of(Path(path))
    m = manifest_path(p)
    if not m.exists():
        return None
    try:
        return json.loads(m.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{m}: unreadable manifest ({e})") from None


# =============================================================================================
# Helpers
# =============================================================================================


def _check_column_names(ds: TransitionDataset, out: Path) -> None:
    for name, arr in ds.extras.items():
        if name in _CORE_COLUMNS or not name or name.startswith("/") or name.endswith("/"):
            raise DataError(f"{out}: extra column name {name!r} is reserved or invalid")
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise DataError(f"{out}: extra column {name!r} has dtype {arr.dtype}; only numeric/bool "
                            "columns can be stored")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def _finish(source: Path, *, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
            next_observations: np.ndarray, terminals: np.ndarray | None, timeouts: np.ndarray | None,
            episode_ids: np.ndarray | None = None, steps: np.ndarray | None = None,
            transition_ids: np.ndarray | None = None, qpos: np.ndarray | None = None,
            qvel: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
            metadata: dict[str, Any] | None = None) -> TransitionDataset:
    """Shape checks common to all readers, then :meth:`TransitionDataset.from_arrays` (no validation)."""
    n = len(observations)
    if n == 0:
        raise DataError(f"{source}: dataset is empty (0 transitions)")
    if observations.ndim != 2:
        raise DataError(f"{source}: observations must be 2-D (N, obs_dim), got shape {observations.shape}")
    if actions.ndim == 1:
        actions = actions.reshape(-1, 1)
    rewards = _column(rewards, "rewards", n, source)
    if terminals is not None:
        terminals = _column(terminals, "terminals", n, source).astype(bool)
    if timeouts is not None:
        timeouts = _column(timeouts, "timeouts", n, source).astype(bool)
    for name, arr in (("actions", actions), ("next_observations", next_observations)):
        if len(arr) != n:
            raise DataError(f"{source}: {name} has {len(arr)} rows but observations has {n}")
    if next_observations.shape != observations.shape:
        raise DataError(f"{source}: next_observations shape {next_observations.shape} does not match "
                        f"observations shape {observations.shape}")
    for name, arr in (("episode_ids", episode_ids), ("steps", steps), ("transition_ids", transition_ids),
                      ("qpos", qpos), ("qvel", qvel), *(extras or {}).items()):
        if arr is not None and len(arr) != n:
            raise DataError(f"{source}: {name} has {len(arr)} rows but observations has {n}")
    return TransitionDataset.from_arrays(
        observations, actions, rewards, next_observations, terminals=terminals, timeouts=timeouts,
        episode_ids=episode_ids, steps=steps, transition_ids=transition_ids, qpos=qpos, qvel=qvel,
        extras=extras, metadata=metadata, source=str(source), validate=False)


def _column(arr: np.ndarray, name: str, n: int, source: Path) -> np.ndarray:
    """A per-transition scalar column: accept (N,) or (N, 1), refuse anything else."""
    a = np.asarray(arr)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(f"{source}: {name} must have shape (N,) or (N, 1), got {a.shape}")
    if len(a) != n:
        raise DataError(f"{source}: {name} has {len(a)} rows but observations has {n}")
    return a


def build_next_observations(observations: np.ndarray, episode_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Next observations from row i+1 within an episode only.

    Args:
        observations: (N, obs_dim) states in file order.
        episode_ids: (N,) episode of each row (contiguous runs).

    Returns:
        ``(next_observations, keep)``: ``keep[i]`` is False for the last row of every episode (its
        next state is not in the file); ``next_observations[i]`` is ``observations[i+1]`` where
        ``keep[i]`` and a copy of ``observations[i]`` (to be dropped) elsewhere.
    """
    n = len(observations)
    keep = np.zeros(n, bool)
    if n > 1:
        keep[:-1] = episode_ids[1:] == episode_ids[:-1]
    nxt = observations.copy()
    idx = np.flatnonzero(keep)
    nxt[idx] = observations[idx + 1]
    return nxt, keep


# =============================================================================================
# HDF5 (D4RL / OTDF / xcurate)
# =============================================================================================


def _h5_open(path: Path, mode: str = "r") -> Any:
    import h5py

    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        return h5py.File(path, mode)
    except OSError as e:
        raise DataError(f"{path}: cannot open HDF5 file (truncated or corrupt: {str(e).splitlines()[0]})") from None


def _read_group_values(group: Any, prefix: str = "") -> dict[str, Any]:
    """All datasets below an HDF5 group by relative path ('a/b')."""
    import h5py

    out: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            out[prefix + name] = obj

    group.visititems(visit)
    return out


def _decode_meta_value(obj: Any) -> Any:
    """A metadata value from an HDF5 dataset or attribute (JSON-tagged strings are decoded)."""
    import h5py

    is_json = bool(isinstance(obj, h5py.Dataset) and obj.attrs.get("json", False))
    v = obj[()] if isinstance(obj, h5py.Dataset) else obj
    if isinstance(v, bytes):
        v = v.decode("utf-8", errors="replace")
    if isinstance(v, str):
        return json.loads(v) if is_json else v
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "SO":
            v = np.array([x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.ravel()],
                         dtype=object).reshape(v.shape)
        if v.size > MAX_METADATA_ARRAY:
            return f"<array shape={list(v.shape)} dtype={v.dtype}>"
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _read_hdf5(path: Path) -> TransitionDataset:
    with _h5_open(path) as f:
        keys = set(_read_group_values(f))
        if any(k.startswith("episode_") for k in f.keys()) and "observations" not in f:
            raise DataError(f"{path}: this is a Minari main_data.hdf5 (episode_* groups); load its dataset "
                            "folder or pass format='minari'")
        missing = [k for k in _REQUIRED_HDF5 if k not in keys]
        if missing:
            raise DataError(f"{path}: missing HDF5 key(s) {', '.join(missing)} (present: "
                            f"{', '.join(sorted(keys)[:12]) or 'none'})")
        obs = f["observations"][()]
        n = len(obs)
        if n == 0:
            raise DataError(f"{path}: dataset is empty (0 transitions)")
        actions = f["actions"][()]
        rewards = f["rewards"][()]
        terminals = f["terminals"][()]
        timeouts = f["timeouts"][()] if "timeouts" in keys else None
        nxt = f["next_observations"][()] if "next_observations" in keys else None
        xc = f[_XC] if _XC in f else None
        episode_ids = xc["episode_ids"][()] if xc is not None and "episode_ids" in xc else None
        steps = xc["steps"][()] if xc is not None and "steps" in xc else None
        tids = xc["transition_ids"][()] if xc is not None and "transition_ids" in xc else None
        qpos = f["infos/qpos"][()] if "infos/qpos" in keys else None
        qvel = f["infos/qvel"][()] if "infos/qvel" in keys else None
        extras: dict[str, np.ndarray] = {}
        if "infos/action_log_probs" in keys:
            extras["action_log_probs"] = f["infos/action_log_probs"][()]
        if xc is not None and "extras" in xc:
            for name, d in _read_group_values(xc["extras"]).items():
                extras[name] = d[()]
        metadata: dict[str, Any] = {}
        if "metadata" in f:
            mg = f["metadata"]
            for k, v in mg.attrs.items():
                metadata[k] = _decode_meta_value(v)
            for k, d in _read_group_values(mg).items():
                metadata[k] = _decode_meta_value(d)
    if nxt is None:
        if episode_ids is None and timeouts is None:
            raise DataError(f"{path}: has neither next_observations nor timeouts, so episode ends (and "
                            "next states) cannot be told apart safely")
        term = _column(terminals, "terminals", n, path).astype(bool)
        tout = np.zeros(n, bool) if timeouts is None else _column(timeouts, "timeouts", n, path).astype(bool)
        if episode_ids is None:
            ends = term | tout
            episode_ids = np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64)
        episode_ids = _column(episode_ids, "episode_ids", n, path)
        if obs.ndim != 2:
            raise DataError(f"{path}: observations must be 2-D (N, obs_dim), got shape {obs.shape}")
        nxt, keep = build_next_observations(obs, episode_ids)
        if not keep.any():
            raise DataError(f"{path}: no next_observations and no episode longer than one step: "
                            "no transition can be built")
        dropped = int((~keep).sum())
        metadata = {**metadata, "xcurate_next_obs_from_rows": {"dropped_rows": dropped,
                                                                 "dropped_terminals": int(term[~keep].sum())}}
        sel = np.flatnonzero(keep)
        ds = _finish(path, observations=obs, actions=actions, rewards=rewards, next_observations=nxt,
                     terminals=term, timeouts=tout, episode_ids=episode_ids, steps=steps,
                     transition_ids=tids, qpos=qpos, qvel=qvel, extras=extras, metadata=metadata)
        # the last row of each episode has no next state in the file: drop it (never pair it with
        # the first state of the following episode)
        return ds.select(sel)
    ds = _finish(path, observations=obs, actions=actions, rewards=rewards, next_observations=nxt,
                 terminals=terminals, timeouts=timeouts, episode_ids=episode_ids, steps=steps,
                 transition_ids=tids, qpos=qpos, qvel=qvel, extras=extras, metadata=metadata)
    return ds


def hdf5_layout(path: str | Path) -> str:
    """``"xcurate"``, ``"d4rl"`` or ``"otdf"``: which HDF5 layout a file uses (for ``datasets info``)."""
    p = Path(path)
    with _h5_open(p) as f:
        if f.attrs.get("xcurate_format") is not None or _XC in f:
            return "xcurate"
        r = f["rewards"] if "rewards" in f else None
        if "timeouts" not in f and r is not None and r.ndim == 2:
            return "otdf"
        return "d4rl"


def _write_meta_value(group: Any, key: str, value: Any) -> None:
    import h5py

    if isinstance(value, bool | np.bool_):
        group.create_dataset(key, data=np.bool_(value))
    elif isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        group.create_dataset(key, data=value)
    elif isinstance(value, str):
        group.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
    else:
        d = group.create_dataset(key, data=json.dumps(value, default=_json_default),
                                 dtype=h5py.string_dtype("utf-8"))
        d.attrs["json"] = True


def _write_hdf5(ds: TransitionDataset, tmp: Path) -> None:
    import h5py

    with h5py.File(tmp, "w") as f:
        f.attrs["xcurate_format"] = FORMAT_TAG
        f.create_dataset("observations", data=ds.observations)
        f.create_dataset("actions", data=ds.actions)
        f.create_dataset("rewards", data=ds.rewards)
        f.create_dataset("next_observations", data=ds.next_observations)
        f.create_dataset("terminals", data=ds.terminals.astype(bool))
        f.create_dataset("timeouts", data=ds.timeouts.astype(bool))
        if ds.qpos is not None:
            f.create_dataset("infos/qpos", data=ds.qpos)
        if ds.qvel is not None:
            f.create_dataset("infos/qvel", data=ds.qvel)
        mg = f.create_group("metadata")
        for k, v in ds.metadata.items():
            if "/" in k or k in mg:
                raise DataError(f"{tmp}: metadata key {k!r} contains '/' or is duplicated")
            _write_meta_value(mg, k, v)
        xc = f.create_group(_XC)
        xc.create_dataset("episode_ids", data=ds.episode_ids)
        xc.create_dataset("steps", data=ds.steps)
        xc.create_dataset("transition_ids", data=ds.transition_ids)
        eg = xc.create_group("extras")
        for name, arr in ds.extras.items():
            if name == "action_log_probs":
                f.create_dataset("infos/action_log_probs", data=arr)
            else:
                eg.create_dataset(name, data=arr)


# =============================================================================================
# Parquet
# =============================================================================================


def _to_arrow(arr: np.ndarray, name: str, out: Path) -> Any:
    import pyarrow as pa

    a = np.ascontiguousarray(arr)
    if a.ndim == 1:
        return pa.array(a)
    if a.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
    raise DataError(f"{out}: column {name!r} has {a.ndim} dims; Parquet columns must be 1-D or 2-D")


def _from_arrow(col: Any, name: str, n: int, source: Path) -> np.ndarray:
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        raise DataError(f"{source}: column {name!r} has {arr.null_count} null value(s)")
    t = arr.type
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = arr.flatten()
        if flat.null_count:
            raise DataError(f"{source}: column {name!r} has null entries inside its vectors")
        values = flat.to_numpy(zero_copy_only=False)
        if pa.types.is_fixed_size_list(t):
            k = t.list_size
        else:
            lengths = np.diff(arr.offsets.to_numpy())
            if n and not (lengths == lengths[0]).all():
                raise DataError(f"{source}: column {name!r} holds vectors of different lengths")
            k = int(lengths[0]) if n else 0
        return values.reshape(n, k)
    return arr.to_numpy(zero_copy_only=False)


def _read_parquet(path: Path) -> TransitionDataset:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read Parquet file (truncated or corrupt: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    info: dict[str, Any] = {}
    raw = (table.schema.metadata or {}).get(b"xcurate")
    if raw:
        try:
            info = json.loads(raw)
        except ValueError:
            raise DataError(f"{path}: corrupt xcurate schema metadata") from None
    cols = set(table.column_names)
    missing = [c for c in ("observations", "actions", "rewards", "next_observations") if c not in cols]
    if missing:
        raise DataError(f"{path}: missing Parquet column(s) {', '.join(missing)}")
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: dataset is empty (0 transitions)")
    get = {c: _from_arrow(table.column(c), c, n, path) for c in table.column_names}
    extras_names = info.get("extras", [c for c in table.column_names if c not in _CORE_COLUMNS])
    return _finish(path, observations=get["observations"], actions=get["actions"], rewards=get["rewards"],
                   next_observations=get["next_observations"], terminals=get.get("terminals"),
                   timeouts=get.get("timeouts"), episode_ids=get.get("episode_ids"), steps=get.get("steps"),
                   transition_ids=get.get("transition_ids"), qpos=get.get("qpos"), qvel=get.get("qvel"),
                   extras={k: get[k] for k in extras_names}, metadata=info.get("metadata", {}))


def _write_parquet(ds: TransitionDataset, tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names, arrays = [], []
    for name, arr in ds.columns().items():
        names.append(name)
        arrays.append(_to_arrow(arr, name, tmp))
    info = {"format": FORMAT_TAG, "metadata": _jsonable(ds.metadata), "extras": list(ds.extras)}
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({"xcurate": json.dumps(info)})
    pq.write_table(table, tmp, compression="zstd")


# =============================================================================================
# Minari
# =============================================================================================


def _minari_id_for(out: Path) -> str:
    try:
        rel = out.resolve().relative_to(minari_root().resolve())
        if _MINARI_ID_RE.match(str(rel)):
            return str(rel)
    except ValueError:
        pass
    return out.name if re.search(r"-v\d+$", out.name) else f"{out.name}-v0"


def _minari_version() -> str:
    try:
        import minari

        return str(minari.__version__)
    except Exception:  # minari is optional
        return _MINARI_VERSION_FALLBACK


def _box_json(arr: np.ndarray) -> str:
    k = arr.shape[1]
    return json.dumps({"type": "Box", "dtype": str(arr.dtype), "shape": [k],
                       "low": [-np.inf] * k, "high": [np.inf] * k})


def _segments(ds: TransitionDataset) -> list[tuple[int, int]]:
    """Contiguous runs of rows that form one Minari episode (same id, continuous states)."""
    n = len(ds)
    starts = np.zeros(n, bool)
    starts[0] = True
    if n > 1:
        starts[1:] = (ds.episode_ids[1:] != ds.episode_ids[:-1]) | ds.terminals[:-1] | ds.timeouts[:-1]
        starts[1:] |= ~np.all(ds.next_observations[:-1] == ds.observations[1:], axis=1)
    b = np.flatnonzero(starts).tolist() + [n]
    return list(zip(b[:-1], b[1:], strict=True))


def _pad_last(a: np.ndarray) -> np.ndarray:
    """Append one row: NaN for floats (state s_T unknown), a copy of the last row otherwise."""
    last = np.full_like(a[-1:], np.nan) if a.dtype.kind == "f" else a[-1:]
    return np.concatenate([a, last])


def _write_minari(ds: TransitionDataset, folder: Path, dataset_id: str) -> None:
    import h5py

    data = folder / "data"
    data.mkdir(parents=True)
    segs = _segments(ds)
    with h5py.File(data / "main_data.hdf5", "w", track_order=True) as f:
        for i, (s, e) in enumerate(segs):
            g = f.create_group(f"episode_{i}")
            g.attrs["id"] = i
            g.attrs["total_steps"] = e - s
            g.create_dataset("observations", data=np.concatenate([ds.observations[s:e], ds.next_observations[e - 1:e]]))
            g.create_dataset("actions", data=ds.actions[s:e])
            g.create_dataset("rewards", data=ds.rewards[s:e])
            g.create_dataset("terminations", data=ds.terminals[s:e].astype(bool))
            g.create_dataset("truncations", data=ds.timeouts[s:e].astype(bool))
            infos = g.create_group("infos")
            if ds.qpos is not None:
                infos.create_dataset("qpos", data=_pad_last(ds.qpos[s:e]))
            if ds.qvel is not None:
                infos.create_dataset("qvel", data=_pad_last(ds.qvel[s:e]))
            xc = infos.create_group(_XC)
            for name in ("episode_ids", "steps", "transition_ids"):
                xc.create_dataset(name, data=_pad_last(getattr(ds, name)[s:e]))
            if ds.extras:
                eg = xc.create_group("extras")
                for name, arr in ds.extras.items():
                    eg.create_dataset(name, data=_pad_last(arr[s:e]))
    size_mb = round(sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) / 1e6, 1)
    meta = {
        "dataset_id": dataset_id, "minari_version": _minari_version(), "data_format": "hdf5",
        "jpeg_encoding": False, "total_episodes": len(segs), "total_steps": len(ds),
        "observation_space": _box_json(ds.observations), "action_space": _box_json(ds.actions),
        "dataset_size": size_mb, "algorithm_name": str(ds.metadata.get("policy", "xcurate")),
        "author": ["xcurate"], "xcurate_format": FORMAT_TAG, "xcurate_metadata": _jsonable(ds.metadata),
    }
    (data / "metadata.json").write_text(json.dumps(meta, default=_json_default))


def _minari_data_dir(path: Path) -> Path:
    if path.is_file():
        return path.parent
    if (path / "data" / "metadata.json").exists():
        return path / "data"
    return path


def _read_minari(path: Path) -> TransitionDataset:
    data = _minari_data_dir(path)
    mpath = data / "metadata.json"
    if not mpath.exists():
        raise DataError(f"{path}: not a Minari dataset (no data/metadata.json)")
    try:
        meta = json.loads(mpath.read_text())
    except ValueError as e:
        raise DataError(f"{mpath}: corrupt metadata.json ({e})") from None
    fmt = meta.get("data_format", "hdf5")
    if fmt == "hdf5":
        main = data / "main_data.hdf5"
        with _h5_open(main) as f:
            names = sorted((k for k in f.keys() if re.fullmatch(r"episode_\d+", k)), key=lambda k: int(k[8:]))
            if not names:
                raise DataError(f"{main}: dataset is empty (no episode_* groups)")
            episodes = [_h5_episode(f[k], main, k) for k in names]
    else:
        episodes = list(_minari_pkg_episodes(data, fmt))
    md = meta.get("xcurate_metadata")
    if md is None:
        md = {k: v for k, v in meta.items() if k not in ("observation_space", "action_space")}
    return _episodes_to_dataset(episodes, path, md)


def _h5_episode(g: Any, main: Path, name: str) -> dict[str, Any]:
    import h5py

    need = [k for k in ("observations", "actions", "rewards", "terminations", "truncations") if k not in g]
    if need:
        raise DataError(f"{main}: {name} lacks key(s) {', '.join(need)}")
    if not isinstance(g["observations"], h5py.Dataset) or not isinstance(g["actions"], h5py.Dataset):
        raise DataError(f"{main}: {name}: only Box observation/action spaces are supported (found a group)")
    ep = {k: g[k][()] for k in ("observations", "actions", "rewards", "terminations", "truncations")}
    ep["infos"] = {k: d[()] for k, d in _read_group_values(g["infos"]).items()} if "infos" in g else {}
    ep["name"] = name
    return ep


def _minari_pkg_episodes(data: Path, fmt: str) -> Iterator[dict[str, Any]]:
    try:
        import minari
    except ImportError:
        raise DataError(f"{data}: Minari data_format {fmt!r} needs the optional 'minari' package "
                        "(pip install 'xcurate[minari]')") from None
    try:
        mds = minari.MinariDataset(data)
        for ep in mds.iterate_episodes():
            infos: dict[str, Any] = {}

            def flat(d: dict, prefix: str = "", out: dict = infos) -> None:
                for k, v in d.items():
                    if isinstance(v, dict):
                        flat(v, f"{prefix}{k}/", out)
                    else:
                        out[f"{prefix}{k}"] = np.asarray(v)

            flat(ep.infos or {})
            yield {"observations": np.asarray(ep.observations), "actions": np.asarray(ep.actions),
                   "rewards": ep.rewards, "terminations": ep.terminations, "truncations": ep.truncations,
                   "infos": infos, "name": f"episode_{ep.id}"}
    except DataError:
        raise
    except Exception as e:  # minari raises many types
        raise DataError(f"{data}: minari could not read the dataset ({type(e).__name__}: {e})") from None


def _episodes_to_dataset(episodes: Iterable[dict[str, Any]], source: Path,
                         metadata: dict[str, Any]) -> TransitionDataset:
    cols: dict[str, list[np.ndarray]] = {}
    has_xc: bool | None = None
    for i, ep in enumerate(episodes):
        o = np.asarray(ep["observations"])
        t = len(ep["rewards"])
        if o.ndim != 2 or len(o) != t + 1:
            raise DataError(f"{source}: {ep['name']}: observations shape {o.shape} does not match "
                            f"{t} steps (expected ({t + 1}, obs_dim))")
        for k in ("actions", "terminations", "truncations"):
            if len(ep[k]) != t:
                raise DataError(f"{source}: {ep['name']}: {k} has {len(ep[k])} rows, rewards has {t}")
        infos = ep["infos"]
        xc = {k[len(_XC) + 1:]: v for k, v in infos.items() if k.startswith(_XC + "/")}
        if has_xc is None:
            has_xc = bool(xc)
        elif has_xc != bool(xc):
            raise DataError(f"{source}: {ep['name']}: some episodes carry xcurate columns and some do not")

        def add(name: str, arr: np.ndarray) -> None:
            cols.setdefault(name, []).append(arr)

        add("observations", o[:-1])
        add("next_observations", o[1:])
        add("actions", np.asarray(ep["actions"]).reshape(t, -1))
        add("rewards", np.asarray(ep["rewards"]).reshape(t))
        add("terminals", np.asarray(ep["terminations"]).reshape(t).astype(bool))
        add("timeouts", np.asarray(ep["truncations"]).reshape(t).astype(bool))
        for k in ("qpos", "qvel", "action_log_probs"):
            if k in infos:
                v = np.asarray(infos[k])
                if len(v) not in (t, t + 1):
                    raise DataError(f"{source}: {ep['name']}: infos/{k} has {len(v)} rows for {t} steps")
                add(k, v[:t])
        if xc:
            for k, v in xc.items():
                add(k, np.asarray(v)[:t])
        else:
            add("episode_ids", np.full(t, i, np.int64))
    if not cols:
        raise DataError(f"{source}: dataset is empty (no episodes)")
    n_eps = len(cols["rewards"])
    for k, v in cols.items():
        if len(v) != n_eps:
            raise DataError(f"{source}: column {k!r} is present in only {len(v)} of {n_eps} episodes")
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    extras = {k[len("extras/"):]: v for k, v in arr.items() if k.startswith("extras/")}
    if "action_log_probs" in arr:
        extras["action_log_probs"] = arr["action_log_probs"]
    return _finish(source, observations=arr["observations"], actions=arr["actions"], rewards=arr["rewards"],
                   next_observations=arr["next_observations"], terminals=arr["terminals"],
                   timeouts=arr["timeouts"], episode_ids=arr.get("episode_ids"), steps=arr.get("steps"),
                   transition_ids=arr.get("transition_ids"), qpos=arr.get("qpos"), qvel=arr.get("qvel"),
                   extras=extras, metadata=metadata)


# =============================================================================================
# CS285 expert rollouts (pickles; restricted unpickler only)
# =============================================================================================

_CS285_KEYS = ("observation", "action", "reward", "next_observation", "terminal")


def _read_cs285(path: Path, max_episode_steps: int = 1000) -> TransitionDataset:
    paths = safe_load_pickle(path)
    if isinstance(paths, dict):
        paths = [paths]
    if not isinstance(paths, list | tuple) or not all(isinstance(p, dict) for p in paths):
        raise DataError(f"{path}: expected a list of path dicts ({', '.join(_CS285_KEYS)}), "
                        f"got {type(paths).__name__}")
    if not paths:
        raise DataError(f"{path}: dataset is empty (no paths)")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (*_CS285_KEYS, "episode", "timeout")}
    for i, p in enumerate(paths):
        missing = [k for k in _CS285_KEYS if k not in p]
        if missing:
            raise DataError(f"{path}: path {i} lacks key(s) {', '.join(missing)}")
        t = len(np.asarray(p["reward"]).reshape(-1))
        term = np.asarray(p["terminal"]).reshape(-1).astype(bool)
        if len(term) != t:
            raise DataError(f"{path}: path {i}: terminal has {len(term)} rows, reward has {t}")
        timeout = np.zeros(t, bool)
        if t >= max_episode_steps and t and term[-1]:
            # CS285 marks the end of every rollout as terminal, time-limit cuts included
            term = term.copy()
            term[-1] = False
            timeout[-1] = True
        for k in _CS285_KEYS:
            cols[k].append(np.asarray(p[k]) if k != "terminal" else term)
        cols["episode"].append(np.full(t, i, np.int64))
        cols["timeout"].append(timeout)
    try:
        a = {k: np.concatenate([np.asarray(x) if np.ndim(x) else np.asarray(x).reshape(-1) for x in v])
             for k, v in cols.items()}
    except ValueError as e:
        raise DataError(f"{path}: paths have mismatched dims ({e})") from None
    m = re.match(r"expert_data_(.+-v\d+)\.pkl$", path.name)
    metadata: dict[str, Any] = {"source_format": "cs285", "n_paths": len(paths)}
    if m:
        metadata["env_id"] = m.group(1)
    return _finish(path, observations=a["observation"], actions=a["action"], rewards=a["reward"],
                   next_observations=a["next_observation"], terminals=a["terminal"], timeouts=a["timeout"],
                   episode_ids=a["episode"], metadata=metadata)
