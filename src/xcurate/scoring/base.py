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

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
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


#: Receives fit progress (what, step, total steps, loss) while a scorer trains (see :func:`fit_progress`).
_FIT_CALLBACK: contextvars.ContextVar[Callable[[str, int, int, float], None] | None] = \
    contextvars.ContextVar("xcurate_fit_progress", default=None)


@contextlib.contextmanager
def fit_progress(callback: Callable[[str, int, int, float], None] | None) -> Iterator[None]:
    """Send the fit progress of scorers trained inside the ``with`` block to ``callback``.

    ``callback(what, step, steps, loss)`` is called by :func:`xcurate.scoring.nets.train_loop`
    whenever it checks the loss (every 100 steps and at the end); the store uses it to show a
    "fit" bar with the loss beside the scoring bar.
    """
    token = _FIT_CALLBACK.set(callback)
    try:
        yield
    finally:
        _FIT_CALLBACK.reset(token)


def report_fit_progress(what: str, step: int, steps: int, loss: float) -> None:
    """Forward one progress report to the callback of :func:`fit_progress` (if any)."""
    cb = _FIT_CALLBACK.get()
    if cb is not None:
        cb(what, step, steps, loss)


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


#: Allowed ranges of scorer settings, by setting name (shared by every scorer that has the
#: setting): (low, high, low_inclusive, high_inclusive). Every float setting must also be finite.
SETTING_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    **{k: (0, np.inf, True, False) for k in (
        "steps", "value_steps", "encoder_steps", "finetune_steps", "seed", "ridge", "weight_decay",
        "input_noise", "threshold", "beta", "eta", "logvar_bound_weight", "reward_weight")},
    **{k: (1, np.inf, True, False) for k in (
        "k", "batch_size", "n_negatives", "embed_dim", "n_models", "chunk", "n_iter", "emd_iter",
        "zs_dim", "zsa_dim", "hidden", "value_hidden")},
    **{k: (0, np.inf, False, False) for k in ("lr", "eps", "alpha", "min_std", "clip", "lambda_src",
                                               "lambda_tar")},
    "gamma": (0, 1, True, False), "tau": (0, 1, False, True), "expectile": (0, 1, False, False),
}


def _check_setting(scorer: str, key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the field's type ``hint`` and :data:`SETTING_RANGES`; returns it
    converted (an int for a float field becomes a float, a list for a tuple field a tuple)."""
    import math
    import numbers
    import types
    import typing

    where = f"scorer setting {scorer}.{key}"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(a for a in options if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where} must be a non-empty list of integers such as [256, 256], got {value!r}")
        return tuple(_check_setting(scorer, key, v, int) for v in value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        value = int(value)
    elif hint is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be finite, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if key in SETTING_RANGES and isinstance(value, (int, float)):
        lo, hi, lo_in, hi_in = SETTING_RANGES[key]
        if not ((value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)):
            interval = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
            raise ConfigError(f"{where} must be in {interval}, got {value!r}")
    return value


def make_scorer(name: str, **settings: Any) -> Scorer:
    """Instantiate a scorer by name with settings.

    Each setting is checked against its dataclass field's type (an ``int`` field refuses ``1.5``
    and ``"abc"``, a ``float`` field refuses text and NaN/inf) and against
    :data:`SETTING_RANGES` (``steps >= 0``, ``k >= 1``, ``lr > 0`` ...).

    Raises:
        ConfigError: unknown setting, wrong type or out-of-range value (one line naming it).
    """
    import typing

    cls = get_scorer_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(settings) - fields
    if unknown:
        raise ConfigError(f"scorer {name!r} has no setting(s) {sorted(unknown)} (settings: {sorted(fields)})")
    hints = typing.get_type_hints(cls)
    checked = {k: _check_setting(name, k, v, hints.get(k, Any)) for k, v in settings.items()}
    return cls(**checked)


def _load_builtin() -> None:
    """Import the modules that define the built-in scorers (they register themselves)."""
    import importlib
    import pkgutil

    import xcurate.scoring as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("scorer_"):
            importlib.import_module(f"xcurate.scoring.{mod.name}")
