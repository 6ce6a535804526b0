"""Ground-truth oracle scorer (``oracle``): replay each source (s, a) in the target simulator.

Needs the target domain (``needs_domain``): :func:`xcurate.datasets.oracle.replay` puts the
target simulator into each source transition's state, applies the action and reads the target's
reward and next observation. Columns:

- ``oracle_dynamics_gap`` = ||s' - s'_tar||_2 (lower = the source transition is what the target
  would have done);
- ``oracle_bellman_error`` = |r + g (1-d) V(s') - (r_tar + g (1-d_tar) V(s'_tar))| for a fixed
  reference value function V (below);
- ``oracle_valid``: False where the row could not be replayed (both other columns NULL).

Reference V: a linear TD(0) value function of the TARGET data, solved in closed form by
least-squares temporal differences (LSTD(0) with ridge): features phi(s) = [1, z, z^2] with z the
target-standardised observation, w = (Phi^T (Phi - g (1-d) Phi') + lambda n I)^-1 Phi^T r.
Deterministic (no seed, no training loop), cheap, and fixed for a given target dataset, which is
all a reference V needs (it only has to be the same function on both sides of the comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError
from xcurate.scoring.base import ColumnSpec, Scorer, register


def value_features(obs: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """phi(s) = [1, z, z^2] with z = (s - mean) / std."""
    z = (np.asarray(obs, np.float64) - mean) / std
    return np.concatenate([np.ones((len(z), 1)), z, z * z], axis=1)


def lstd_weights(phi: np.ndarray, phi_next: np.ndarray, rewards: np.ndarray, terminals: np.ndarray,
                 gamma: float, ridge: float) -> np.ndarray:
    """Closed-form LSTD(0) weights with a ridge term ``ridge * n`` on the diagonal."""
    n, k = phi.shape
    disc = gamma * (1.0 - terminals.astype(np.float64))[:, None]
    a = phi.T @ (phi - disc * phi_next) + ridge * n * np.eye(k)
    b = phi.T @ np.asarray(rewards, np.float64)
    return np.linalg.solve(a, b)


@register
@dataclass
class OracleScorer(Scorer):
    """Oracle dynamics gap and Bellman error from replay in the target simulator.

    Attributes:
        domain: target domain name (set by the store from ``--domain`` when left empty).
        gamma: discount of the Bellman error and of the reference V.
        ridge: LSTD ridge strength (times the number of target rows).
    """

    name: ClassVar[str] = "oracle"
    columns: ClassVar[dict[str, ColumnSpec]] = {
        "oracle_dynamics_gap": ColumnSpec("lower", "[0, inf)", "||s' - s'_tar|| after replay in the target"),
        "oracle_bellman_error": ColumnSpec(
            "lower", "[0, inf)", "|r + g V(s') - (r_tar + g V(s'_tar))| with a fixed LSTD(0) V of the target"),
        "oracle_valid": ColumnSpec("none", "{false, true}", "the row could be replayed exactly"),
    }
    primary: ClassVar[str] = "oracle_dynamics_gap"
    min_target: ClassVar[int] = 10
    chunk_size: ClassVar[int] = 10_000
    needs_domain: ClassVar[bool] = True

    domain: str | None = None
    gamma: float = 0.99
    ridge: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 <= self.gamma < 1:
            raise ConfigError(f"oracle.gamma must be in [0, 1), got {self.gamma}")
        self._w: np.ndarray | None = None

    def value(self, obs: np.ndarray) -> np.ndarray:
        """The reference V(s) for (B, obs_dim) observations."""
        if self._w is None:
            raise RuntimeError("OracleScorer.value() called before fit()")
        return value_features(obs, self._mean, self._std) @ self._w

    def fit(self, target: TransitionDataset, source: TransitionDataset) -> OracleScorer:
        """Check the domain and fit the reference V on the target by LSTD(0)."""
        from xcurate.datasets.domains import get_domain

        self.check_inputs(target, source)
        if not self.domain:
            raise ConfigError("scorer 'oracle' needs a target domain (pass --domain)")
        dom = get_domain(self.domain)
        source.check_dims(dom.obs_dim, dom.act_dim, what=f"domain {dom.name!r}")
        both = np.concatenate([target.observations, target.next_observations]).astype(np.float64)
        self._mean, self._std = both.mean(0), np.maximum(both.std(0), 1e-6)
        phi = value_features(target.observations, self._mean, self._std)
        phi2 = value_features(target.next_observations, self._mean, self._std)
        self._w = lstd_weights(phi, phi2, target.rewards, target.terminals, self.gamma, self.ridge)
        if not np.isfinite(self._w).all():
            raise DataError(f"{target.source}: the reference value function could not be fitted (non-finite)")
        return self

    def score(self, chunk: TransitionDataset) -> dict[str, np.ndarray]:
        """Replay the chunk in the target domain; gap, Bellman error and validity per row."""
        from xcurate.datasets.oracle import oracle_bellman_error, oracle_gap, replay

        if self._w is None:
            raise RuntimeError("OracleScorer.score() called before fit()")
        res = replay(self.domain, chunk)
        gap = oracle_gap(self.domain, chunk, result=res)
        bell = oracle_bellman_error(self.domain, chunk, self.value, gamma=self.gamma, result=res)
        return {"oracle_dynamics_gap": gap, "oracle_bellman_error": bell, "oracle_valid": res.valid.astype(bool)}
