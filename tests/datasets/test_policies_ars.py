"""ARS trainer: running statistics, a tiny run, saved linear policies load back."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.datasets.ars import ARSConfig, RunningStat, train_ars
from xcurate.errors import ConfigError


def test_running_stat_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 4))
    st = RunningStat(4)
    for chunk in np.array_split(x, 7):
        st.update(chunk)
    np.testing.assert_allclose(st.mean, x.mean(0))
    np.testing.assert_allclose(st.std, x.std(0, ddof=1))
    st.update(np.zeros((0, 4)))
    assert st.n == 500


def test_tiny_ars_run_is_seeded_and_improves_nothing_breaks():
    cfg = ARSConfig(n_directions=2, top_directions=1, horizon=30, max_iterations=2, eval_every=1,
                    eval_episodes=1, seed=1)
    a = train_ars("hopper", cfg)
    b = train_ars("hopper", cfg)
    assert len(a.checkpoints) == 2 and a.env_steps > 0
    assert a.checkpoints[-1].W.shape == (3, 11)
    np.testing.assert_array_equal(a.checkpoints[-1].W, b.checkpoints[-1].W)
    assert not np.allclose(a.checkpoints[-1].W, 0.0)
    assert a.best.eval_return == max(c.eval_return for c in a.checkpoints)
    with pytest.raises(ConfigError, match="top_directions"):
        train_ars("hopper", ARSConfig(n_directions=2, top_directions=3))


def test_saved_linear_policy_round_trip(tmp_path, monkeypatch):
    from xcurate.datasets import policies

    W = np.random.default_rng(0).normal(size=(3, 11))
    mean, std = np.full(11, 0.5), np.full(11, 2.0)
    policies.save_linear_policy(tmp_path / "hopper-test.npz", W, np.zeros(3), mean, std,
                                {"robot": "hopper", "level": "test"})
    monkeypatch.setattr(policies, "builtin_dir", lambda: tmp_path)
    p = policies.load_policy("builtin:hopper-test", "hopper")
    obs = np.random.default_rng(1).normal(size=(5, 11))
    np.testing.assert_allclose(p(obs), np.clip(((obs - mean) / std) @ W.T, -1, 1), rtol=1e-6, atol=1e-6)
    assert p.info["level"] == "test"


def test_ars_resume_from_final_state():
    cfg = ARSConfig(n_directions=2, top_directions=1, horizon=20, max_iterations=1, eval_every=1,
                    eval_episodes=1, seed=0)
    a = train_ars("hopper", cfg)
    b = train_ars("hopper", cfg, init=a.final_state)
    assert int(b.final_state["n"]) > int(a.final_state["n"]) > 0
    assert not np.allclose(b.final_state["W"], a.final_state["W"])
    with pytest.raises(ConfigError, match="init W has shape"):
        train_ars("walker2d", cfg, init=a.final_state)
