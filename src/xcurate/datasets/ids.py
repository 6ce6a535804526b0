"""Minari-style dataset ids under the xcurate data root.

An id ``<namespace>/<kind>/<name>-v<k>`` such as ``hopper/source/medium-v0`` or
``hopper-morph-torso-medium/target/expert-v0`` lives in
``$XCURATE_DATA/datasets/<namespace>/<kind>/<name>-v<k>/data.hdf5`` (D4RL layout) beside a
``manifest.json``. :func:`resolve` turns either an existing path or an id into a path.
"""

from __future__ import annotations

import re
from pathlib import Path

from xcurate.errors import ConfigError, DataError
from xcurate.utils import data_root

ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*(/[a-z0-9][a-z0-9_.\-]*)*-v\d+$")


def datasets_root() -> Path:
    """``$XCURATE_DATA/datasets``."""
    return data_root() / "datasets"


def dataset_dir(dataset_id: str) -> Path:
    """The folder of a dataset id (not necessarily existing)."""
    if not ID_RE.match(dataset_id):
        raise ConfigError(f"invalid dataset id {dataset_id!r} (expected e.g. 'hopper/source/medium-v0')")
    return datasets_root() / dataset_id


def dataset_path(dataset_id: str) -> Path:
    """The data file of a dataset id: ``<dataset_dir>/data.hdf5``."""
    return dataset_dir(dataset_id) / "data.hdf5"


def list_ids() -> list[str]:
    """All dataset ids present under the data root."""
    root = datasets_root()
    if not root.exists():
        return []
    return sorted(str(p.parent.relative_to(root)) for p in root.rglob("data.hdf5"))


def resolve(spec: str | Path) -> Path:
    """Resolve a path or a dataset id to an existing file or folder.

    Raises:
        DataError: if it is neither an existing path nor a known id.
    """
    p = Path(spec).expanduser()
    if p.exists():
        return p
    s = str(spec)
    if ID_RE.match(s) and dataset_path(s).exists():
        return dataset_path(s)
    raise DataError(f"{spec}: no such file, and no dataset with that id under {datasets_root()}")
