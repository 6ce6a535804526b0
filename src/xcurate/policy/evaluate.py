"""Deterministic evaluation of trained policies in the target domain.

K policies (one per seed, stacked) act in K copies of the target environment in lock step, so one
batched forward pass serves all seeds. Episode ``e`` of every seed starts from
``env.reset(seed=eval_seed + e)``: every evaluation of every seed sees the same initial states.
Scores are normalised with :meth:`Domain.normalize` in a reference set (``measured`` by default,
or ``odrl``/``otdf``/``d4rl``, :mod:`xcurate.datasets.reference_sets`); where the measured set has
no values for the domain, raw returns are reported and ``normalized`` is False.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from xcurate.datasets.domains import Domain, get_domain
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import DataError

EVAL_SEED = 10_000  # first env seed of evaluation episodes


def check_layout(domain: Domain | str, ds: TransitionDataset, what: str = "dataset") -> None:
    """Raise :class:`DataError` unless ``ds`` has the observation/action layout of ``domain``.

    Checks the dims and, where the dataset's metadata names a domain or robot, that the robot is
    the same (a Walker2d dataset has HalfCheetah's dims but not its layout).
    """
    dom = get_domain(domain)
    ds.check_dims(dom.obs_dim, dom.act_dim, what=f"domain {dom.name!r}")
    meta_dom = ds.metadata.get("domain") or ds.metadata.get("robot")
    if isinstance(meta_dom, str) and meta_dom:
        robot = meta_dom.split("-")[0].strip().lower()
        if robot in ("halfcheetah", "hopper", "walker2d", "ant") and robot != dom.robot:
            raise DataError(f"{ds.source}: {what} was collected on {meta_dom!r} ({robot}) but the evaluation "
                            f"domain {dom.name!r} is a {dom.robot}: observation layouts differ")


def run_episodes(act: Callable[[np.ndarray], np.ndarray], domain: Domain | str, n_policies: int,
                 episodes: int, eval_seed: int = EVAL_SEED, max_steps: int | None = None) -> np.ndarray:
    """Undiscounted returns of deterministic episodes, shape (n_policies, episodes).

    Args:
        act: maps (n_policies, obs_dim) observations to (n_policies, act_dim) actions.
        domain: the target domain (its ``make_env()`` is used).
        n_policies: number of stacked policies (seeds).
        episodes: episodes per policy.
        eval_seed: env seed of the first episode (episode e uses eval_seed + e).
        max_steps: optional cap on episode length (tests); the env's TimeLimit applies anyway.
    """
    dom = get_domain(domain)
    envs = [dom.make_env() for _ in range(n_policies)]
    returns = np.zeros((n_policies, episodes))
    try:
        for e in range(episodes):
            obs = np.stack([env.reset(seed=eval_seed + e)[0] for env in envs]).astype(np.float32)
            alive = np.ones(n_policies, bool)
            t = 0
            while alive.any():
                a = np.asarray(act(obs))
                for i, env in enumerate(envs):
                    if not alive[i]:
                        continue
                    o, r, term, trunc, _ = env.step(a[i])
                    returns[i, e] += float(r)
                    obs[i] = o
                    if term or trunc:
                        alive[i] = False
                t += 1
                if max_steps is not None and t >= max_steps:
                    break
    finally:
        for env in envs:
            env.close()
    return returns


@dataclass
class EvalScores:
    """Per-seed evaluation result of one evaluation round."""

    returns: np.ndarray  # (K, E) raw returns
    scores: np.ndarray  # (K,) mean over episodes of the normalised score (or raw return)
    normalized: bool  # False where the domain has no reference returns
    reference: str | None = None  # the reference set of the normalised scores (None: raw returns)

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return float(self.scores.mean())

    @property
    def std(self) -> float:
        """Standard deviation over seeds (0 for one seed)."""
        return float(self.scores.std())


def score_returns(domain: Domain | str, returns: np.ndarray, reference: str = "measured",
                  strict: bool = True) -> EvalScores:
    """Normalise (K, E) returns in a reference set.

    Args:
        domain: the domain the returns were obtained in.
        returns: (K, E) raw returns.
        reference: ``measured`` (default), ``odrl``, ``otdf`` or ``d4rl``.
        strict: a set other than ``measured`` that lacks the domain raises a one-line
            :class:`~xcurate.errors.ConfigError`; with ``strict=False`` the measured set is used
            instead. The measured set lacking the domain gives raw returns (``normalized=False``).
    """
    from xcurate.datasets.reference_sets import check_reference_set, require_references

    dom = get_domain(domain)
    reference = check_reference_set(reference)
    returns = np.asarray(returns, dtype=np.float64)
    if reference != "measured" and (strict or dom.references_in(reference) is not None):
        require_references(dom, reference)
    elif dom.references is None:
        return EvalScores(returns, returns.mean(-1), False, None)
    else:
        reference = "measured"
    return EvalScores(returns, np.asarray(dom.normalize(returns, reference)).mean(-1), True, reference)


def evaluate_trainer(trainer, domain: Domain | str, episodes: int, max_steps: int | None = None) -> EvalScores:
    """Evaluate every seed of an :class:`~xcurate.policy.iql.IQLTrainer` (deterministic actions)."""
    rets = run_episodes(trainer.act, domain, trainer.cfg.n_seeds, episodes, max_steps=max_steps)
    return score_returns(domain, rets)
