"""Scorer interface and registry.

A scorer is a small dataclass whose fields are its settings (constructor arguments, typed and
JSON-serialisable). ``fit(target, source)`` learns whatever it needs; ``score(chunk)`` returns
one numpy array per declared column for a chunk of source transitions. The maths lives in pure
array functions beside each scorer so that it can be tested on its own.

Columns are prefixed with the scorer name (``ot_score``, ``tbm``, ``tbm_y_hat``...), so that the
``scores`` view of the store can join them without collisions. Each column declares its
direction (``higher`` = more useful for the target, ``lower`` = less useful) and range.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError


@dataclass(frozen=True)
class ColumnSpec:
    """Documentation of one score column.

    Attributes:
        direction: "higher" if larger values mean more useful for the target, "lower" if smaller
            values do, "none" for auxiliary columns (e.g. a Bellman target, a validity flag).
        range: human-readable range, e.g. "[-1, 1]", "(-inf, 0]", "[0, inf)".
        description: one sentence.
    """

    direction: str
    range: str
    description: str


@dataclass
class Scorer:
    """Base class of all scorers. Subclasses are dataclasses and set the class variables.

    Attributes:
        seed: random seed for everything stochastic in fit/score.
        device: "auto" (CUDA when present, else CPU), "cpu" or "cuda".
    """

    name: ClassVar[str] = ""
    columns: ClassVar[dict[str, ColumnSpec]] = {}
    #: the column used when a single "score" is needed (direction "higher" or "lower").
    primary: ClassVar[str] = ""
    #: minimum number of target transitions that fit() needs.
    min_target: ClassVar[int] = 2
    #: rows per chunk the store should hand to score() by default.
    chunk_size: ClassVar[int] = 10_000
    #: True if the scorer needs the target simulator (a domain); the store passes ``domain``.
    needs_domain: ClassVar[bool] = False
    #: version of the scorer's maths; bump it when a change alters scores for the same settings.
    #: It is part of the store's cache key (with the xcurate version), so stale runs are not reused.
    version: ClassVar[int] = 1

    seed: int = 0
    device: str = "auto"

    def config(self) -> dict[str, Any]:
        """Settings as a JSON-serialisable dict (name included), used for caching and manifests."""
        return {"scorer": self.name, **dataclasses.asdict(self)}

    def check_inputs(self, target: TransitionDataset, source: TransitionDataset) -> None:
        """Common checks: matching dims, enough target rows. Raise clear errors."""
        if len(target) < self.min_target:
            raise DataError(f"{target.source}: target has {len(target)} transitions; scorer "
                            f"{self.name!r} needs at least {self.min_target}")
        if (target.obs_dim, target.act_dim) != (source.obs_dim, source.act_dim):
            raise DataError(f"source {source.source} has (obs, act) dims ({source.obs_dim}, "
                            f"{source.act_dim}) but target {target.source} has ({target.obs_dim}, "
                            f"{target.act_dim})")

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> Scorer:
        """Learn what the scorer needs from the target (and source) data. Returns self."""
        self.check_inputs(target, source)
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """Score a chunk of source transitions: one (len(chunk),) array per declared column."""
        raise NotImplementedError


_REGISTRY: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Class decorator adding a scorer to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def available_scorers() -> list[str]:
    """Names of all registered scorers."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_scorer_class(name: str) -> type[Scorer]:
    """The scorer class registered as ``name``; :class:`ConfigError` if unknown."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown scorer {name!r} (available: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def make_scorer(name: str, **settings: Any) -> Scorer:
    """Instantiate a scorer by name with settings; unknown settings raise :class:`ConfigError`."""
    cls = get_scorer_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(settings) - fields
    if unknown:
        raise ConfigError(f"scorer {name!r} has no setting(s) {sorted(unknown)} (settings: {sorted(fields)})")
    return cls(**settings)


def _load_builtin() -> None:
    """Import the modules that define the built-in scorers (they register themselves)."""
    import importlib
    import pkgutil

    import xcurate.scoring as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("scorer_"):
            importlib.import_module(f"xcurate.scoring.{mod.name}")
