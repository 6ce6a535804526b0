"""Small shared utilities: atomic writes, hashing, manifests, safe unpickling, devices, data root."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xcurate.errors import DataError, StoreError

# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path`` atomically.

    On any exception the temporary file (or directory) is removed and ``path`` is untouched.

    Args:
        path: Final destination (file or directory).
        suffix: Suffix for the temporary name (defaults to the destination's suffix, so that
            libraries that dispatch on extensions keep working).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sfx = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{sfx}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # let the writer create it (file or directory)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if path.is_dir() and tmp_path.is_dir():
            import shutil

            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp_path, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, path)
    except BaseException:
        import shutil

        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the ``with`` block.

    Non-blocking: raises :class:`StoreError` naming ``what`` (and the holder's pid) when another
    process holds the lock. The operating system releases the lock when its holder exits or is
    killed, so an interrupted run never leaves a stale lock behind. Where ``fcntl`` is unavailable
    (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip()
            raise StoreError(f"{what} is being written by another process"
                             f"{f' (pid {holder})' if holder else ''}; wait for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_output(path: str | os.PathLike, *, what: str = "--out", kind: str = "file",
                 exist_ok: bool = False, force: bool = False) -> Path:
    """Check, before any work starts, that an output can be written at ``path``.

    Every command that writes calls this first, so that a bad ``--out`` fails in a second with one
    line instead of after minutes of work (or with a traceback).

    Args:
        path: the output file or directory.
        what: the option or argument named in errors (``--out``, ``--store``, ``DST``).
        kind: ``"file"`` (an existing directory is refused) or ``"dir"`` (an existing file is refused).
        exist_ok: an existing output of the right kind is fine (resumable runs, stores, reports).
        force: an existing output may be replaced (``--force``); otherwise it is refused unless
            ``exist_ok``.

    Returns:
        ``path`` as a :class:`~pathlib.Path` (``~`` expanded).

    Raises:
        ConfigError: the output exists (without ``--force``), has the wrong kind, lies below a
            file, or its folder cannot be written (permissions, a read-only or virtual file
            system such as ``/proc``).
    """
    from xcurate.errors import ConfigError

    p = Path(path).expanduser()
    if p.exists() or p.is_symlink():
        if kind == "file" and p.is_dir():
            raise ConfigError(f"{what} {p}: is a directory; give a file name")
        if kind == "dir" and not p.is_dir():
            raise ConfigError(f"{what} {p}: exists and is not a directory")
        if not (exist_ok or force):
            raise ConfigError(f"{what} {p}: already exists; pass --force to replace it")
    probe_dir = p if (kind == "dir" and p.is_dir()) else p.parent
    anc = probe_dir
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise ConfigError(f"{what} {p}: cannot write there, {anc} is a file, not a directory")
    try:  # the only reliable test (root passes os.access, /proc refuses anyway)
        fd, probe = tempfile.mkstemp(prefix=".xcurate-probe-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot write in {anc} ({e.strerror or e})") from None
    return p


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------
# Hashing and manifests
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file (or of every file below a directory, in sorted order)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode())
        with open(f, "rb") as fh:
            while b := fh.read(chunk):
                h.update(b)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python, xcurate and the main libraries (those importable)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ["xcurate", "torch", "numpy", "pyarrow", "duckdb", "pot", "faiss-cpu", "mujoco",
                 "gymnasium", "h5py", "stable-baselines3", "sb3-contrib", "minari"]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def make_manifest(kind: str, *, inputs: dict[str, str] | None = None, config: dict | None = None,
                  seed: int | None = None, timings: dict[str, float] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """Build the manifest that every xcurate output carries.

    Args:
        kind: What the output is ("dataset", "score_run", "curated", "policy_run", ...).
        inputs: Mapping name -> path of each input; each is hashed (sha256).
        config: The full configuration that produced the output.
        seed: The random seed.
        timings: Wall times in seconds by phase.
        **extra: Anything else worth recording (device, counts, ...).
    """
    hashed = {}
    for name, p in (inputs or {}).items():
        hashed[name] = {"path": str(p), "sha256": sha256_file(p) if Path(p).exists() else None}
    return {
        "kind": kind,
        "xcurate_version": _version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": hashed,
        "config": config or {},
        "seed": seed,
        "versions": library_versions(),
        "timings": timings or {},
        **extra,
    }


def _version() -> str:
    from xcurate import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Safe unpickling
# --------------------------------------------------------------------------------------------

_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("builtins", "complex"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that only reconstructs plain containers and numpy arrays.

    Anything else (classes, functions) raises :class:`DataError`: an untrusted pickle can run
    arbitrary code under plain ``pickle.load``.
    """

    def __init__(self, file: io.IOBase, extra_globals: dict[tuple[str, str], Any] | None = None,
                 source: str = "<pickle>") -> None:
        super().__init__(file)
        self._extra = extra_globals or {}
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        if (module, name) in self._extra:
            return self._extra[(module, name)]
        if (module, name) in _SAFE_GLOBALS:
            import importlib

            if module.startswith("numpy.core"):
                module = module.replace("numpy.core", "numpy._core", 1)
            return getattr(importlib.import_module(module), name)
        raise DataError(f"{self._source}: refusing to unpickle {module}.{name} (only plain data and "
                        "numpy arrays are allowed)")


def safe_load_pickle(path: str | os.PathLike,
                     extra_globals: dict[tuple[str, str], Any] | None = None) -> Any:
    """Load a pickle file with :class:`RestrictedUnpickler`; errors name the file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    try:
        with open(p, "rb") as fh:
            return RestrictedUnpickler(fh, extra_globals, source=str(p)).load()
    except DataError:
        raise
    except Exception as e:  # truncated or corrupt pickle
        raise DataError(f"{p}: cannot read pickle ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------
# Devices and data root
# --------------------------------------------------------------------------------------------


def resolve_device(device: str | None = "auto") -> str:
    """Return ``"cuda"`` when ``device`` is ``"auto"``/None and CUDA is available, else ``"cpu"``."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def data_root() -> Path:
    """The xcurate data root: ``$XCURATE_DATA`` or ``~/.xcurate``."""
    return Path(os.environ.get("XCURATE_DATA", Path.home() / ".xcurate")).expanduser()


def shared_dir() -> Path | None:
    """The ``shared/`` folder beside the repository (real policies and data), if present.

    Looks at ``$XCURATE_SHARED`` first, then ``../shared`` relative to the repository root.
    """
    env = os.environ.get("XCURATE_SHARED")
    if env:
        return Path(env) if Path(env).is_dir() else None
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared"
        if (parent / "pyproject.toml").exists() and cand.is_dir():
            return cand
    return None
