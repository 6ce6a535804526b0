"""Small synthetic datasets with planted dynamics shifts, for tests and examples.

A linear-Gaussian system s' = A s + B a + noise with a reward r = -|s|^2/dim - 0.1 |a|^2/dim.
The *target* dynamics use (A_t, B_t); *other* dynamics are the target system seen in a rotated
frame (A_o = R A_t R^T, B_o = R B_t, R a rotation). A source set mixes transitions of both, with
``extras["planted"] = 1`` on rows generated under the target dynamics, so a scorer's AUC at
separating them can be measured.

The planted set is *confound-free*: the other-dynamics rows are simulated with the same random
numbers as the target-dynamics source rows (common random numbers), so the reward, the action
and the norms ||s||, ||s'|| of the two groups have the same distribution (exactly the same values
row by row where the groups have equal size). Only the dynamics, i.e. how s' relates to (s, a),
tell them apart; a scorer that returned r or ||s|| would score an AUC of 0.5.
"""

from __future__ import annotations

import numpy as np

from xcurate.datasets.transitions import TransitionDataset


def _system(rng: np.random.Generator, obs_dim: int, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(rng.normal(size=(obs_dim, obs_dim)))
    a = 0.9 * q
    b = rng.normal(scale=0.5, size=(obs_dim, act_dim))
    return a, b


def rollout(a_mat: np.ndarray, b_mat: np.ndarray, n: int, rng: np.random.Generator,
            episode_len: int = 50, noise: float = 0.01, policy_gain: np.ndarray | None = None,
            action_noise: float = 0.5, source: str = "<synthetic>") -> TransitionDataset:
    """Roll out ``n`` transitions of s' = A s + B a + noise in episodes of ``episode_len`` steps.

    Actions are a fixed linear policy (``policy_gain``, default random) plus Gaussian noise.
    """
    obs_dim, act_dim = b_mat.shape
    gain = policy_gain if policy_gain is not None else rng.normal(scale=0.1, size=(act_dim, obs_dim))
    obs, acts, nxt, eps, steps, tos = [], [], [], [], [], []
    s = rng.normal(size=obs_dim)
    ep = t = 0
    for _ in range(n):
        act = np.clip(gain @ s + rng.normal(scale=action_noise, size=act_dim), -1, 1)
        s2 = a_mat @ s + b_mat @ act + rng.normal(scale=noise, size=obs_dim)
        obs.append(s)
        acts.append(act)
        nxt.append(s2)
        eps.append(ep)
        steps.append(t)
        t += 1
        tos.append(t == episode_len)
        if t == episode_len:
            s, t, ep = rng.normal(size=obs_dim), 0, ep + 1
        else:
            s = s2
    o, a, s2 = np.array(obs), np.array(acts), np.array(nxt)
    r = -(o ** 2).mean(1) - 0.1 * (a ** 2).mean(1)
    return TransitionDataset.from_arrays(o, a, r, s2, timeouts=np.array(tos), episode_ids=np.array(eps),
                                         steps=np.array(steps), source=source)


def _rotation(rng: np.random.Generator, dim: int, angle: float) -> np.ndarray:
    """A random rotation exp(angle * K): K skew-symmetric, scaled to a largest |eigenvalue| of 1."""
    from scipy.linalg import expm

    m = rng.normal(size=(dim, dim))
    k = m - m.T
    k /= np.abs(np.linalg.eigvals(k)).max()
    return expm(angle * k)


def planted_shift(n_target: int = 1000, n_source: int = 2000, frac_target_dyn: float = 0.5,
                  obs_dim: int = 6, act_dim: int = 2, shift: float = 0.5, seed: int = 0,
                  ) -> tuple[TransitionDataset, TransitionDataset]:
    """A (target, source) pair in which part of the source follows the target dynamics.

    The target system is s' = A_t s + B_t a + noise under the linear policy a = clip(G s + eps).
    The other dynamics are A_o = R A_t R^T, B_o = R B_t, with the policy G R^T, where R rotates by
    up to ``shift`` radians. Their rows are the rotated images (s, a, s') -> (R s, a, R s') of a
    target-dynamics rollout that shares its random numbers with the target-dynamics source rows,
    which is an exact rollout of the other system (isotropic start and noise are rotation
    invariant). Hence reward, ||a||, ||s|| and ||s'|| do not separate the planted rows.

    Args:
        n_target: target transitions (target dynamics, independent random numbers).
        n_source: source transitions; ``frac_target_dyn`` of them under target dynamics, the rest
            under the rotated dynamics.
        frac_target_dyn: fraction of source rows generated under the target dynamics.
        obs_dim: state dimension.
        act_dim: action dimension.
        shift: rotation angle scale (radians) of the other dynamics; 0 gives identical dynamics.
        seed: random seed.

    Returns:
        (target, source); ``source.extras["planted"]`` is 1 for target-dynamics rows, else 0.
    """
    rng = np.random.default_rng(seed)
    a_t, b_t = _system(rng, obs_dim, act_dim)
    rot = _rotation(rng, obs_dim, shift)
    gain = rng.normal(scale=0.1, size=(act_dim, obs_dim))
    target = rollout(a_t, b_t, n_target, rng, policy_gain=gain, source="<synthetic target>")
    n_same = int(round(n_source * frac_target_dyn))
    n_other = n_source - n_same
    base = rollout(a_t, b_t, max(n_same, n_other), rng, policy_gain=gain)
    same = base.select(slice(0, n_same))
    twin = base.select(slice(0, n_other))
    other = TransitionDataset.from_arrays(
        twin.observations @ rot.T, twin.actions, twin.rewards, twin.next_observations @ rot.T,
        timeouts=twin.timeouts, episode_ids=twin.episode_ids, steps=twin.steps)
    src = TransitionDataset.concat([same, other])
    src.extras["planted"] = np.concatenate([np.ones(len(same), np.int8), np.zeros(len(other), np.int8)])
    perm = rng.permutation(len(src))
    src = src.select(perm)
    src.transition_ids = np.arange(len(src), dtype=np.int64)
    src.source = "<synthetic source>"
    return target, src


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of ``scores`` (higher = positive) against binary ``labels`` (ties count half)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
