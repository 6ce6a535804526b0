"""Small datasets shared by the datasets-io tests (no tests here; imported by test_io_*.py)."""

from __future__ import annotations

import numpy as np

from xcurate.datasets.transitions import TransitionDataset

#: (length, how it ends) of each episode in :func:`multi_episode`.
EPISODES = ((5, "terminal"), (4, "timeout"), (6, "timeout"), (3, "terminal"))


def multi_episode(obs_dim: int = 3, act_dim: int = 2, dtype: type = np.float32,
                  extras: bool = True) -> TransitionDataset:
    """Several episodes ending in terminals and timeouts; every state is unique.

    State ``j`` of episode ``e`` is ``100 * (e + 1) + j`` in its first coordinate, so that any
    pairing across episodes is visible.
    """
    rng = np.random.default_rng(0)
    obs, nxt, eps, term, tout = [], [], [], [], []
    for e, (length, end) in enumerate(EPISODES):
        states = np.zeros((length + 1, obs_dim), dtype)
        states[:, 0] = 100 * (e + 1) + np.arange(length + 1)
        states[:, 1:] = rng.normal(size=(length + 1, obs_dim - 1))
        obs.append(states[:-1])
        nxt.append(states[1:])
        eps.append(np.full(length, e))
        t = np.zeros(length, bool)
        o = np.zeros(length, bool)
        (t if end == "terminal" else o)[-1] = True
        term.append(t)
        tout.append(o)
    o = np.concatenate(obs)
    n = len(o)
    ex = {}
    if extras:
        ex = {"weight": rng.random(n).astype(np.float32), "keep": rng.random(n) > 0.3,
              "embedding": rng.normal(size=(n, 4)), "action_log_probs": rng.normal(size=n)}
    return TransitionDataset.from_arrays(
        o, rng.uniform(-1, 1, size=(n, act_dim)).astype(dtype), rng.normal(size=n).astype(dtype),
        np.concatenate(nxt), terminals=np.concatenate(term), timeouts=np.concatenate(tout),
        episode_ids=np.concatenate(eps), qpos=rng.normal(size=(n, obs_dim + 1)),
        qvel=rng.normal(size=(n, obs_dim)), extras=ex,
        metadata={"domain": "toy", "quality": "medium", "seed": 3, "ratio": 0.5, "flag": True,
                  "nested": {"references": [1.5, -2.0], "policy": {"name": "sac"}}, "none": None},
        transition_ids=np.arange(n, dtype=np.int64) * 7 + 11)


def assert_same(a: TransitionDataset, b: TransitionDataset, metadata: bool = True) -> None:
    """Arrays (values and dtypes), ids, extras and metadata are equal."""
    ca, cb = a.columns(), b.columns()
    assert sorted(ca) == sorted(cb)
    for k in ca:
        assert ca[k].dtype == cb[k].dtype, (k, ca[k].dtype, cb[k].dtype)
        assert ca[k].shape == cb[k].shape, (k, ca[k].shape, cb[k].shape)
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)
    assert a.fingerprint() == b.fingerprint()
    if metadata:
        assert a.metadata == b.metadata
