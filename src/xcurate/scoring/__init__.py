"""Offline scorers that annotate every source transition, and the Parquet score store."""

from xcurate.scoring.base import (
                                  ColumnSpec,
                                  Scorer,
                                  available_scorers,
                                  get_scorer_class,
                                  make_scorer,
                                  register,
)

__all__ = ["ColumnSpec", "Scorer", "available_scorers", "get_scorer_class", "make_scorer", "register"]
