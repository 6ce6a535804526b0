"""Error types. Every error a user can cause is an :class:`XcurateError` with a one-line message
that names the file or field and the problem; the CLI prints it as ``error: ...`` and exits 1."""

from __future__ import annotations


class XcurateError(Exception):
    """Base class for errors caused by bad input or configuration (never a bug in xcurate)."""


class DataError(XcurateError):
    """A dataset file or array is malformed: missing keys, wrong dims, NaN/Inf, truncated, empty."""


class ConfigError(XcurateError):
    """An unknown name (domain, policy, scorer, recipe) or an invalid setting."""


class StoreError(XcurateError):
    """A score store or run directory is missing, incompatible or inconsistent."""
