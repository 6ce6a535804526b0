"""k-nearest-neighbour distance scorer (``knn``).

The target transitions u' = concat(s, a, s') are z-scored with the target's own statistics and
put in an exact faiss index (``IndexFlatL2``); a source row's score is its mean Euclidean distance
to the k nearest target transitions in that normalised space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError
from xcurate.scoring.base import ColumnSpec, Scorer, register
from xcurate.scoring.ot_math import transition_features, zscore_stats


def knn_mean_distance(index, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean Euclidean distance of each query row to its ``k`` nearest points in a faiss index."""
    sq, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.sqrt(np.maximum(sq.astype(np.float64), 0.0)).mean(axis=1)


@register
@dataclass
class KNNScorer(Scorer):
    """Mean distance to the k nearest target transitions (faiss, exact L2).

    Attributes:
        k: number of neighbours (capped at the number of target rows).
        min_std: floor of the per-feature target standard deviation used for z-scoring.
    """

    name: ClassVar[str] = "knn"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "knn_distance": ColumnSpec("lower", "[0, inf)",
                                   "mean z-scored L2 distance of (s,a,s') to the k nearest target transitions"),
        "knn_score": ColumnSpec("higher", "(-inf, 0]", "-knn_distance"),
    }
    primary: ClassVar[str] = "knn_score"
    min_target: ClassVar[int] = 1
    chunk_size: ClassVar[int] = 100_000

    k: int = 5
    min_std: float = 1e-6

    def __post_init__(self) -> None:
        if int(self.k) < 1:
            raise ConfigError(f"knn.k must be >= 1, got {self.k}")
        self._index = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def _features(self, ds: TransitionDataset) -> np.ndarray:
        u = transition_features(ds.observations, ds.actions, ds.next_observations).astype(np.float64)
        return (u - self._mean) / self._std

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> KNNScorer:
        """Build the exact L2 index over the z-scored target transitions."""
        import faiss

        self.check_inputs(target, source)
        u = transition_features(target.observations, target.actions, target.next_observations)
        self._mean, self._std = zscore_stats(u.astype(np.float64), self.min_std)
        feats = np.ascontiguousarray(self._features(target), dtype=np.float32)
        self._index = faiss.IndexFlatL2(feats.shape[1])
        self._index.add(feats)
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """``knn_distance`` (lower = closer) and ``knn_score`` = -distance for each chunk row."""
        if self._index is None:
            raise RuntimeError("KNNScorer.score() called before fit()")
        k = min(int(self.k), int(self._index.ntotal))
        dist = knn_mean_distance(self._index, self._features(chunk), k)
        return {"knn_distance": dist, "knn_score": -dist}
