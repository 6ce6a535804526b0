"""Oracle replay against data collected with ``env.step`` (tiny sizes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xcurate.datasets.domains import get_domain
from xcurate.datasets.oracle import ant_x_lag, oracle_bellman_error, oracle_gap, oracle_reward_gap, replay
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError

ROBOTS = ["halfcheetah", "hopper", "walker2d", "ant"]


def collect(name: str, n: int = 120, seed: int = 0, max_ep: int = 40, warmstart: bool = False) -> TransitionDataset:
    """Random-action data collected with env.step; qpos/qvel of s stored per row."""
    d = get_domain(name)
    env = d.make_env()
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("o", "a", "r", "o2", "term", "tout", "ep", "t", "qpos", "qvel", "ws")}
    obs, _ = env.reset(seed=seed)
    ep = t = 0
    while len(rows["o"]) < n:
        rows["qpos"].append(u.data.qpos.copy())
        rows["qvel"].append(u.data.qvel.copy())
        rows["ws"].append(u.data.qacc_warmstart.copy())
        a = rng.uniform(-1, 1, d.act_dim)
        nxt, r, term, trunc, _ = env.step(a)
        trunc = trunc or t + 1 >= max_ep
        for k, v in zip(("o", "a", "r", "o2", "term", "tout", "ep", "t"),
                        (obs, a, r, nxt, term, trunc and not term, ep, t), strict=True):
            rows[k].append(v)
        obs, t = nxt, t + 1
        if term or trunc:
            obs, _ = env.reset()
            ep, t = ep + 1, 0
    env.close()
    A = {k: np.array(v) for k, v in rows.items()}
    return TransitionDataset.from_arrays(A["o"], A["a"], A["r"], A["o2"], A["term"], A["tout"], A["ep"], A["t"],
                                         qpos=A["qpos"], qvel=A["qvel"],
                                         extras={"qacc_warmstart": A["ws"]} if warmstart else None,
                                         metadata={"domain": name})


@pytest.fixture(scope="module")
def data() -> dict[str, TransitionDataset]:
    return {r: collect(r) for r in ROBOTS}


@pytest.mark.parametrize("robot", ROBOTS)
def test_same_domain_replay_reproduces_env_step(data, robot):
    ds = data[robot]
    """The README's promise: replaying env.step data reproduces s' and r to < 1e-12 (measured ~2e-13)."""
    res = replay(robot, ds, chunk=50)
    assert res.valid.all() and res.reward_exact.all()
    np.testing.assert_allclose(res.next_observations, ds.next_observations, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.rewards, ds.rewards, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res.terminals, ds.terminals)
    assert np.nanmax(oracle_gap(robot, ds, result=res)) < 1e-12
    assert np.nanmax(oracle_reward_gap(robot, ds, result=res)) < 1e-12


@pytest.mark.parametrize("robot", ROBOTS)
def test_shifted_domains_change_next_states(data, robot):
    """Every shift family (friction 0.1 included: the floor is scaled too) changes the dynamics."""
    ds = data[robot]
    for name in (f"{robot}-friction-0.1", f"{robot}-gravity-2.0", f"{robot}-kinematic-otdf", f"{robot}-morph-otdf"):
        gap = oracle_gap(name, ds)
        assert np.isfinite(gap).all()
        assert gap.mean() > 1e-3, (name, gap.mean())


def test_replay_from_observations_alone_halfcheetah_ant(data):
    for robot in ("halfcheetah", "ant"):
        ds = dataclasses.replace(data[robot], qpos=None, qvel=None)
        res = replay(robot, ds)
        assert res.info["initial_state"] == "observations" and res.valid.all() and res.reward_exact.all()
        np.testing.assert_allclose(res.next_observations, ds.next_observations, rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.rewards, ds.rewards, rtol=0, atol=1e-12)


def test_hopper_clipped_rows_are_invalid(data):
    ds = data["hopper"]
    obs = ds.observations.copy()
    obs[[3, 10], 7] = 10.0  # a qvel entry clipped at +10 in the observation
    obs[5, 8] = -10.0
    bare = dataclasses.replace(ds, observations=obs, qpos=None, qvel=None)
    res = replay("hopper", bare)
    bad = ~res.valid
    assert set(np.flatnonzero(bad)) >= {3, 5, 10}
    assert all("clipped" in r for r in res.reason[bad]) and (res.reason[res.valid] == "").all()
    assert np.isnan(res.rewards[bad]).all() and np.isnan(oracle_gap("hopper", bare, result=res)[bad]).all()
    assert res.reason_counts() == {res.reason[3]: int(bad.sum())}
    ok = res.valid
    np.testing.assert_allclose(res.next_observations[ok], ds.next_observations[ok], atol=1e-8)
    np.testing.assert_allclose(res.rewards[ok], ds.rewards[ok], atol=1e-8)


def test_warmstart_gives_bit_exact_replay():
    ds = collect("walker2d", n=40, warmstart=True)
    res = replay("walker2d", ds)
    assert res.info["warmstart"] == "stored"
    np.testing.assert_array_equal(res.next_observations, ds.next_observations)


def test_ant_without_previous_rows_is_flagged_inexact(data):
    ds = data["ant"]
    sub = ds.select(np.arange(0, len(ds), 2))  # every other row: the previous step is missing
    res = replay("ant", sub)
    assert res.valid.all()
    np.testing.assert_array_equal(res.reward_exact, sub.steps == 0)
    np.testing.assert_allclose(res.next_observations, sub.next_observations, atol=1e-8)
    assert np.abs(res.rewards - sub.rewards).max() < 0.1  # the lagging torso x: a small reward error
    lag = ant_x_lag(ds)  # computed once, stored, reused by every replay
    assert np.isfinite(lag).all() and np.abs(lag).max() > 1e-6
    stored = dataclasses.replace(ds, extras={"ant_x_lag": lag})
    res = replay("ant-gravity-0.5", stored)
    ref = replay("ant-gravity-0.5", ds)
    assert res.info["ant_before_from"] == "extras[ant_x_lag]" and res.reward_exact.all()
    np.testing.assert_allclose(res.rewards, ref.rewards, rtol=0, atol=1e-12)
    shuffled = ds.select(np.random.default_rng(0).permutation(len(ds)))  # row order does not matter
    res = replay("ant", shuffled)
    assert res.reward_exact.all()
    np.testing.assert_allclose(res.rewards, shuffled.rewards, rtol=0, atol=1e-8)


def test_bellman_error_and_dimension_checks(data):
    ds = data["hopper"]

    def v(o):
        return o.sum(axis=1)

    err = oracle_bellman_error("hopper", ds, v)
    assert err.shape == (len(ds),) and np.nanmax(err) < 1e-7
    assert np.nanmean(oracle_bellman_error("hopper-gravity-5.0", ds, v)) > 1e-3
    with pytest.raises(DataError, match="do not match domain"):
        replay("walker2d", ds)


def test_rollout_and_step_loop_agree(data):
    ds = data["walker2d"]
    a = replay("walker2d-gravity-0.5", ds, use_rollout=True)
    b = replay("walker2d-gravity-0.5", ds, use_rollout=False)
    np.testing.assert_array_equal(a.next_observations, b.next_observations)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    seen = []
    replay("hopper", data["hopper"], chunk=50, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(data["hopper"]), len(data["hopper"])) and len(seen) == 3


def _with_invalid_rows(ds: TransitionDataset) -> tuple[TransitionDataset, np.ndarray]:
    """Hopper data replayed from observations, with 3 rows made unreplayable (clipped qvel)."""
    obs = ds.observations.copy()
    obs[[3, 10], 7] = 10.0
    obs[5, 8] = -10.0
    return dataclasses.replace(ds, observations=obs, qpos=None, qvel=None), np.array([3, 5, 10])


def test_replay_result_length_counts_and_summary(data):
    bare, bad = _with_invalid_rows(data["hopper"])
    res = replay("hopper-gravity-2.0", bare)
    n = len(bare)
    assert len(res) == n == res.rewards.shape[0] != res.next_observations.shape[1]
    counts = res.reason_counts()
    assert sum(counts.values()) == int((~res.valid).sum()) >= len(bad)
    s = res.summary()
    assert (s["domain"], s["n"], s["valid"], s["reward_exact"]) == (
        "hopper-gravity-2.0", n, int(res.valid.sum()), int(res.reward_exact.sum()))
    assert s["invalid_reasons"] == counts
    assert s["seconds"] == round(res.seconds, 4) and res.seconds > 0
    assert s["rows_per_s"] == round(n / max(res.seconds, 1e-9), 1)
    assert all(s[k] == v for k, v in res.info.items())


def test_oracle_readouts_use_the_given_result_or_replay_with_the_given_settings(data):
    ds = data["walker2d"]
    dom = "walker2d-gravity-2.0"
    res = replay(dom, ds)
    shifted = dataclasses.replace(res, next_observations=res.next_observations + 1.0, rewards=res.rewards + 2.0)
    np.testing.assert_allclose(oracle_gap(dom, ds, result=shifted),
                               np.linalg.norm(ds.next_observations - res.next_observations - 1.0, axis=1))
    np.testing.assert_allclose(oracle_reward_gap(dom, ds, result=shifted), np.abs(ds.rewards - res.rewards - 2.0))
    for fn in (oracle_gap, oracle_reward_gap):
        seen: list[tuple[int, int]] = []
        out = fn(dom, ds, chunk=40, progress=lambda done, total, s=seen: s.append((done, total)))
        assert seen[-1] == (len(ds), len(ds)) and len(seen) == 3  # the settings reached replay
        np.testing.assert_array_equal(out, fn(dom, ds, result=res))


def test_oracle_bellman_error_formula_invalid_rows_and_value_fn_checks(data):
    bare, bad = _with_invalid_rows(data["hopper"])
    dom = "hopper-gravity-2.0"
    res = replay(dom, bare)
    calls: list[np.ndarray] = []

    def v(o):
        calls.append(np.array(o))
        return np.tanh(o).sum(axis=1)

    err = oracle_bellman_error(dom, bare, v, result=res)  # default gamma 0.99
    ok = res.valid
    assert not ok[bad].any() and err.dtype == np.float64 and np.isnan(err[~ok]).all()
    np.testing.assert_array_equal(calls[1][~ok], 0.0)  # invalid rows: V evaluated at zeros, not NaN
    y_src = bare.rewards + 0.99 * (1.0 - bare.terminals) * np.tanh(bare.next_observations).sum(1)
    y_tar = res.rewards + 0.99 * (1.0 - res.terminals) * np.tanh(res.next_observations).sum(1)
    np.testing.assert_allclose(err[ok], np.abs(y_src - y_tar)[ok], rtol=1e-12, atol=1e-12)
    # a float32 or (N, 1) value function: read as float64 rows (no float32 arithmetic, no broadcasting)
    for v_odd in (lambda o: np.tanh(o).sum(axis=1).astype(np.float32),
                  lambda o: np.tanh(o).sum(axis=1, keepdims=True)):
        e = oracle_bellman_error(dom, bare, v_odd, result=res)
        v32s = np.asarray(v_odd(bare.next_observations), np.float64).reshape(-1)
        v32t = np.asarray(v_odd(np.where(ok[:, None], res.next_observations, 0.0)), np.float64).reshape(-1)
        ref = np.abs(bare.rewards + 0.99 * (1.0 - bare.terminals) * v32s - res.rewards
                     - 0.99 * (1.0 - res.terminals) * v32t)
        assert e.shape == (len(bare),)
        np.testing.assert_allclose(e[ok], ref[ok], rtol=1e-12, atol=1e-12)
    e5 = oracle_bellman_error(dom, bare, v, gamma=0.5, result=res)
    assert not np.allclose(e5[ok], err[ok])
    shifted = dataclasses.replace(res, rewards=res.rewards + 3.0)
    np.testing.assert_allclose(oracle_bellman_error(dom, bare, v, result=shifted)[ok],
                               np.abs(y_src - y_tar - 3.0)[ok], rtol=1e-12, atol=1e-12)
    seen: list[int] = []
    oracle_bellman_error(dom, bare, v, chunk=40, progress=lambda done, total: seen.append(done))
    assert len(seen) == 3
    n_calls = []

    def v_bad_second(o):  # right shape for s', wrong for s'_tar
        n_calls.append(1)
        return o.sum(axis=1) if len(n_calls) % 2 else o[:, :2]

    with pytest.raises(ConfigError, match="one value per row"):
        oracle_bellman_error(dom, bare, v_bad_second, result=res)
    with pytest.raises(ConfigError, match=r"got shape \(240,\)"):  # (120, 2) flattened
        oracle_bellman_error(dom, bare, lambda o: o[:, :2], result=res)
