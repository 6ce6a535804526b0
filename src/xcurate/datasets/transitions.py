"""The in-memory columnar transition dataset that every part of xcurate exchanges."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xcurate.errors import DataError

#: Per-transition array fields, in canonical order (``qpos``/``qvel`` may be None).
ARRAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                "episode_ids", "steps", "transition_ids", "qpos", "qvel")


@dataclass
class TransitionDataset:
    """A set of transitions (s, a, r, s') stored column-wise as numpy arrays.

    ``terminals`` marks real terminations (the MDP ended: no bootstrap); ``timeouts`` marks
    episodes cut by a time limit (bootstrap from ``next_observations``). They are never merged.
    ``next_observations`` is always explicit: nothing is ever taken from row i+1, so episode
    boundaries cannot leak.

    Attributes:
        observations: (N, obs_dim) states s.
        actions: (N, act_dim) actions a.
        rewards: (N,) rewards r.
        next_observations: (N, obs_dim) next states s'.
        terminals: (N,) bool, true where the episode really terminated at s'.
        timeouts: (N,) bool, true where the episode was truncated after this transition.
        episode_ids: (N,) int64 episode index (contiguous rows share one id).
        steps: (N,) int64 step index within the episode (0-based).
        transition_ids: (N,) int64 stable ids; score tables and curated datasets join on them.
        qpos: optional (N, nq) raw MuJoCo positions of s (unclipped, root x/y included).
        qvel: optional (N, nv) raw MuJoCo velocities of s (unclipped).
        extras: further per-transition columns (e.g. ``weight``, ``keep``, ``penalty``,
            ``qacc_warmstart``, ``action_log_probs``), each of length N.
        metadata: free-form description: domain, quality, policy, seed, references, ...
        source: where the data came from (a path), used in error messages.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_ids: np.ndarray
    steps: np.ndarray
    transition_ids: np.ndarray
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(cls, observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    next_observations: np.ndarray, terminals: np.ndarray | None = None,
                    timeouts: np.ndarray | None = None, episode_ids: np.ndarray | None = None,
                    steps: np.ndarray | None = None, transition_ids: np.ndarray | None = None,
                    qpos: np.ndarray | None = None, qvel: np.ndarray | None = None,
                    extras: dict[str, np.ndarray] | None = None,
                    metadata: dict[str, Any] | None = None, source: str = "<memory>",
                    validate: bool = True) -> TransitionDataset:
        """Build a dataset, filling in what is missing.

        Missing ``terminals``/``timeouts`` default to False. Missing ``episode_ids`` are derived
        from episode ends (terminal or timeout) and, where those are absent, from breaks in
        continuity (``next_observations[i] != observations[i+1]``). Missing ``steps`` count from 0
        within each episode; missing ``transition_ids`` are the row numbers.
        """
        obs = np.asarray(observations)
        n = len(obs)
        rewards = np.asarray(rewards).reshape(-1) if np.asarray(rewards).size == n else np.asarray(rewards)
        terminals = np.zeros(n, bool) if terminals is None else np.asarray(terminals).reshape(-1).astype(bool)
        timeouts = np.zeros(n, bool) if timeouts is None else np.asarray(timeouts).reshape(-1).astype(bool)
        next_obs = np.asarray(next_observations)
        if episode_ids is None:
            episode_ids = infer_episode_ids(obs, next_obs, terminals, timeouts)
        episode_ids = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
        if steps is None:
            steps = steps_from_episode_ids(episode_ids)
        if transition_ids is None:
            transition_ids = np.arange(n, dtype=np.int64)
        ds = cls(observations=obs, actions=np.asarray(actions), rewards=rewards,
                 next_observations=next_obs, terminals=terminals, timeouts=timeouts,
                 episode_ids=episode_ids, steps=np.asarray(steps, dtype=np.int64).reshape(-1),
                 transition_ids=np.asarray(transition_ids, dtype=np.int64).reshape(-1),
                 qpos=None if qpos is None else np.asarray(qpos),
                 qvel=None if qvel is None else np.asarray(qvel),
                 extras={k: np.asarray(v) for k, v in (extras or {}).items()},
                 metadata=dict(metadata or {}), source=str(source))
        if validate:
            ds.validate()
        return ds

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        """Observation dimension."""
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action dimension."""
        return int(self.actions.shape[1])

    @property
    def has_state(self) -> bool:
        """True when raw MuJoCo ``qpos``/``qvel`` are stored (exact oracle replay possible)."""
        return self.qpos is not None and self.qvel is not None

    @property
    def n_episodes(self) -> int:
        """Number of distinct episodes."""
        return int(len(np.unique(self.episode_ids))) if len(self) else 0

    def columns(self) -> dict[str, np.ndarray]:
        """All per-transition arrays (fields that are set, then extras) by name."""
        out = {f: getattr(self, f) for f in ARRAY_FIELDS if getattr(self, f) is not None}
        out.update(self.extras)
        return out

    # ------------------------------------------------------------------ validation
    def validate(self, require_finite: bool = True) -> TransitionDataset:
        """Check shapes, dtypes and values; raise :class:`DataError` naming source and field.

        Args:
            require_finite: if True, NaN/Inf in observations, actions, rewards or next
                observations is an error (use :meth:`finite_mask` to drop such rows instead).
        """
        src = self.source
        n = len(self)
        if n == 0:
            raise DataError(f"{src}: dataset is empty (0 transitions)")
        if self.observations.ndim != 2:
            raise DataError(f"{src}: observations must be 2-D (N, obs_dim), got shape {self.observations.shape}")
        if self.actions.ndim != 2:
            raise DataError(f"{src}: actions must be 2-D (N, act_dim), got shape {self.actions.shape}")
        for name, arr in (("observations", self.observations), ("actions", self.actions)):
            if arr.shape[1] == 0:
                raise DataError(f"{src}: {name} have dimension 0 (shape {arr.shape}); a dataset needs at "
                                "least one observation and one action component")
        if self.next_observations.shape != self.observations.shape:
            raise DataError(f"{src}: next_observations shape {self.next_observations.shape} does not match "
                            f"observations shape {self.observations.shape}")
        for name in ("actions", "rewards", "terminals", "timeouts", "episode_ids", "steps", "transition_ids"):
            arr = getattr(self, name)
            if arr.shape[0] != n:
                raise DataError(f"{src}: {name} has {arr.shape[0]} rows but observations has {n}")
        if self.rewards.ndim != 1:
            raise DataError(f"{src}: rewards must be 1-D (N,), got shape {self.rewards.shape}")
        for name in ("qpos", "qvel"):
            arr = getattr(self, name)
            if arr is not None and (arr.ndim != 2 or arr.shape[0] != n):
                raise DataError(f"{src}: {name} must have shape (N={n}, dim), got {arr.shape}")
        for name, arr in self.extras.items():
            if arr.shape[0] != n:
                raise DataError(f"{src}: column {name!r} has {arr.shape[0]} rows but observations has {n}")
        if len(np.unique(self.transition_ids)) != n:
            raise DataError(f"{src}: transition_ids are not unique")
        if require_finite:
            bad = ~self.finite_mask()
            if bad.any():
                rows = np.flatnonzero(bad)
                fields = [f for f in ("observations", "actions", "rewards", "next_observations")
                          if not np.isfinite(getattr(self, f)[rows[0]]).all()]
                raise DataError(f"{src}: {bad.sum()} row(s) contain NaN/Inf (first row {rows[0]}, "
                                f"field {fields[0] if fields else '?'})")
        return self

    def finite_mask(self) -> np.ndarray:
        """(N,) bool: True where observations, actions, rewards and next observations are finite."""
        m = np.isfinite(self.rewards)
        for f in ("observations", "actions", "next_observations"):
            m &= np.isfinite(getattr(self, f)).all(axis=1)
        return m

    def check_dims(self, obs_dim: int, act_dim: int, what: str = "domain") -> None:
        """Raise :class:`DataError` unless the dataset has the given observation/action dims."""
        if self.obs_dim != obs_dim or self.act_dim != act_dim:
            raise DataError(f"{self.source}: observation/action dims ({self.obs_dim}, {self.act_dim}) do not "
                            f"match the {what}'s ({obs_dim}, {act_dim})")

    # ------------------------------------------------------------------ transformations
    def select(self, index: np.ndarray | slice) -> TransitionDataset:
        """Rows by integer index, boolean mask or slice; ids and metadata are kept."""
        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return TransitionDataset(
            observations=self.observations[index], actions=self.actions[index],
            rewards=self.rewards[index], next_observations=self.next_observations[index],
            terminals=self.terminals[index], timeouts=self.timeouts[index],
            episode_ids=self.episode_ids[index], steps=self.steps[index],
            transition_ids=self.transition_ids[index], qpos=take(self.qpos), qvel=take(self.qvel),
            extras={k: v[index] for k, v in self.extras.items()}, metadata=dict(self.metadata),
            source=self.source)

    def cut_mask(self) -> np.ndarray:
        """(N,) bool: rows after which the file's next row is *not* the next step of the same episode.

        True where a row is neither a terminal nor a timeout and the following row (if any) belongs
        to another episode, is not the next step, or does not start at this row's next observation.
        Readers that rebuild next observations from row i+1 (``d4rl.qlearning_dataset``, d3rlpy's
        ``MDPDataset``, the ODRL/OTDF loaders) would pair such a row with a state it never reached.
        """
        n = len(self)
        ends = self.terminals.astype(bool) | self.timeouts.astype(bool)
        follows = np.zeros(n, bool)
        if n > 1:
            same = self.episode_ids[1:] == self.episode_ids[:-1]
            nxt = self.steps[1:] == self.steps[:-1] + 1
            obs_eq = np.all(self.next_observations[:-1] == self.observations[1:], axis=1)
            follows[:-1] = same & nxt & obs_eq
        return ~ends & ~follows

    def mark_cuts(self) -> TransitionDataset:
        """A copy where every :meth:`cut_mask` row is marked as a **timeout** (a cut, never a termination).

        Real terminals and timeouts are kept as they are; the marked rows are listed in
        ``extras["cut"]`` (bool) and counted in ``metadata["xcurate_cuts"]``. ``next_observations``
        are unchanged, so readers that use them see the same transitions as before, and readers
        that rebuild them from row i+1 stop at every cut.
        """
        cut = self.cut_mask()
        extras = dict(self.extras)
        extras["cut"] = cut | (np.asarray(extras["cut"], bool) if "cut" in extras else False)
        md = dict(self.metadata)
        md["xcurate_cuts"] = int(extras["cut"].sum())
        return TransitionDataset(
            observations=self.observations, actions=self.actions, rewards=self.rewards,
            next_observations=self.next_observations, terminals=self.terminals,
            timeouts=self.timeouts.astype(bool) | cut, episode_ids=self.episode_ids, steps=self.steps,
            transition_ids=self.transition_ids, qpos=self.qpos, qvel=self.qvel, extras=extras, metadata=md,
            source=self.source)

    @staticmethod
    def concat(parts: list[TransitionDataset], renumber: bool = True,
               metadata: dict[str, Any] | None = None) -> TransitionDataset:
        """Concatenate datasets (e.g. medium + expert = medium-expert).

        With ``renumber`` the parts' ``metadata["quality"]`` labels are kept per row: the result's
        metadata gets ``quality_ranges`` = ``[[first_id, end_id, label], ...]`` (transition-id ranges,
        so they stay right after :meth:`select`), which :meth:`quality_labels` reads.

        Args:
            parts: datasets with equal dims.
            renumber: if True, episode ids and transition ids are made unique by offsetting.
            metadata: metadata of the result (defaults to the first part's).
        """
        if not parts:
            raise DataError("concat: no datasets given")
        for p in parts[1:]:
            p.check_dims(parts[0].obs_dim, parts[0].act_dim, what=f"first dataset ({parts[0].source})")
        ep, tid = [], []
        ep_off = tid_off = 0
        for p in parts:
            e = p.episode_ids - (p.episode_ids.min() if len(p) else 0)
            ep.append(e + ep_off if renumber else p.episode_ids)
            tid.append(np.arange(len(p), dtype=np.int64) + tid_off if renumber else p.transition_ids)
            ep_off += int(e.max()) + 1 if len(p) else 0
            tid_off += len(p)
        both_state = all(p.has_state for p in parts)
        keys = set.intersection(*(set(p.extras) for p in parts))
        meta = dict(metadata if metadata is not None else parts[0].metadata)
        if renumber and "quality_ranges" not in meta:
            ranges, off = [], 0
            for p in parts:
                q = p.metadata.get("quality")
                if q is not None and len(p):
                    ranges.append([off, off + len(p), str(q)])
                off += len(p)
            if len({r[2] for r in ranges}) > 1:
                meta["quality_ranges"] = ranges
        return TransitionDataset(
            observations=np.concatenate([p.observations for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            rewards=np.concatenate([p.rewards for p in parts]),
            next_observations=np.concatenate([p.next_observations for p in parts]),
            terminals=np.concatenate([p.terminals for p in parts]),
            timeouts=np.concatenate([p.timeouts for p in parts]),
            episode_ids=np.concatenate(ep), steps=np.concatenate([p.steps for p in parts]),
            transition_ids=np.concatenate(tid),
            qpos=np.concatenate([p.qpos for p in parts]) if both_state else None,
            qvel=np.concatenate([p.qvel for p in parts]) if both_state else None,
            extras={k: np.concatenate([p.extras[k] for p in parts]) for k in sorted(keys)},
            metadata=meta, source="+".join(p.source for p in parts))

    # ------------------------------------------------------------------ summaries
    def quality_labels(self) -> np.ndarray:
        """(N,) object array: each row's quality label, or None where unknown.

        Rows get the label of their transition-id range in ``metadata["quality_ranges"]`` (written
        by :meth:`concat` of differently labelled parts), else the dataset's ``metadata["quality"]``.
        """
        out = np.full(len(self), self.metadata.get("quality"), dtype=object)
        ranges = self.metadata.get("quality_ranges")
        if ranges:
            ids = self.transition_ids
            out[:] = None
            for lo, hi, label in ranges:
                out[(ids >= int(lo)) & (ids < int(hi))] = str(label)
        return out

    def episode_returns(self) -> np.ndarray:
        """(N,) the undiscounted return of the episode each transition belongs to."""
        uniq, inv = np.unique(self.episode_ids, return_inverse=True)
        sums = np.bincount(inv, weights=self.rewards.astype(np.float64), minlength=len(uniq))
        return sums[inv]

    def returns_per_episode(self) -> np.ndarray:
        """(E,) undiscounted return of each episode."""
        _, inv = np.unique(self.episode_ids, return_inverse=True)
        return np.bincount(inv, weights=self.rewards.astype(np.float64))

    def fingerprint(self) -> str:
        """SHA-256 over all arrays (content hash, independent of file format)."""
        h = hashlib.sha256()
        for name, arr in sorted(self.columns().items()):
            a = np.ascontiguousarray(arr)
            h.update(name.encode())
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """A small dict describing the dataset (for ``xcurate datasets info``)."""
        rets = self.returns_per_episode() if len(self) else np.zeros(0)
        return {
            "source": self.source, "transitions": len(self), "episodes": self.n_episodes,
            "obs_dim": self.obs_dim, "act_dim": self.act_dim,
            "terminals": int(self.terminals.sum()), "timeouts": int(self.timeouts.sum()),
            "has_qpos_qvel": self.has_state, "extras": sorted(self.extras),
            "return_mean": float(rets.mean()) if len(rets) else float("nan"),
            "return_std": float(rets.std()) if len(rets) else float("nan"),
            "reward_mean": float(self.rewards.mean()) if len(self) else float("nan"),
            "metadata": self.metadata,
        }


def infer_episode_ids(observations: np.ndarray, next_observations: np.ndarray,
                      terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Episode ids from episode ends and, where no end is marked, breaks in continuity."""
    n = len(observations)
    if n == 0:
        return np.zeros(0, np.int64)
    ends = terminals.astype(bool) | timeouts.astype(bool)
    if n > 1:
        cont = np.all(np.isclose(next_observations[:-1], observations[1:], rtol=0, atol=1e-6), axis=1)
        ends[:-1] |= ~cont
    starts = np.concatenate([[0], ends[:-1].astype(np.int64)])
    return np.cumsum(starts).astype(np.int64)


def steps_from_episode_ids(episode_ids: np.ndarray) -> np.ndarray:
    """0-based step index within each run of equal episode ids."""
    n = len(episode_ids)
    if n == 0:
        return np.zeros(0, np.int64)
    new = np.ones(n, bool)
    new[1:] = episode_ids[1:] != episode_ids[:-1]
    start_idx = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    return (np.arange(n) - start_idx).astype(np.int64)
