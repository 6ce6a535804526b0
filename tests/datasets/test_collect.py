"""collect(): determinism, terminals vs timeouts, next observations, qpos/qvel, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.datasets.collect import collect, evaluate
from xcurate.datasets.domains import get_domain
from xcurate.errors import ConfigError


@pytest.fixture(scope="module")
def hopper_random():
    return collect("hopper", "random", 600, noise=0.0, seed=5, progress=False, quality="random")


def test_shapes_metadata_and_state(hopper_random):
    ds = hopper_random
    assert len(ds) == 600 and ds.obs_dim == 11 and ds.act_dim == 3
    assert ds.qpos.shape == (600, 6) and ds.qvel.shape == (600, 6)
    # qpos holds the root x (not in the observation) and the rest equals the observation
    np.testing.assert_allclose(ds.qpos[:, 1:], ds.observations[:, :5])
    np.testing.assert_allclose(np.clip(ds.qvel, -10, 10), ds.observations[:, 5:])
    m = ds.metadata
    for key in ("domain", "quality", "policy", "noise", "seed", "env_id", "versions"):
        assert key in m
    assert m["domain"] == "hopper" and m["env_id"] == "Hopper-v5" and m["quality"] == "random"
    assert m["seed"] == 5 and m["policy"] == "random"


def test_deterministic_given_seed(hopper_random):
    again = collect("hopper", "random", 600, seed=5, progress=False, quality="random")
    assert again.fingerprint() == hopper_random.fingerprint()
    other = collect("hopper", "random", 600, seed=6, progress=False, quality="random")
    assert other.fingerprint() != hopper_random.fingerprint()
    noisy = [collect("hopper", "random", 200, noise=0.3, seed=1, progress=False) for _ in range(2)]
    assert np.array_equal(noisy[0].actions, noisy[1].actions)


def test_terminals_episodes_and_next_observations(hopper_random):
    ds = hopper_random
    ends = ds.terminals | ds.timeouts
    assert ds.terminals.sum() >= 5  # random hopper falls quickly
    assert not (ds.terminals & ds.timeouts).any()
    assert ends[-1]  # the last episode is closed (cut by the budget -> timeout)
    # within an episode, s' is the next row's s; across an end it is not the reset observation
    inner = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(ds.next_observations[inner], ds.observations[inner + 1])
    for i in np.flatnonzero(ends[:-1]):
        assert not np.allclose(ds.next_observations[i], ds.observations[i + 1])
        assert ds.episode_ids[i + 1] == ds.episode_ids[i] + 1 and ds.steps[i + 1] == 0
    assert np.array_equal(ds.steps[1:][~ends[:-1]], ds.steps[:-1][~ends[:-1]] + 1)


def test_next_observation_replays_from_qpos_qvel(hopper_random):
    """The stored s' at terminal rows is the real final observation: replay (qpos, qvel, a)."""
    ds = hopper_random
    env = get_domain("hopper").make_env()
    u = env.unwrapped
    env.reset(seed=0)
    rows = list(np.flatnonzero(ds.terminals)[:5]) + [0, 1, 7]
    for i in rows:
        u.set_state(ds.qpos[i], ds.qvel[i])
        obs, r, terminated, _, _ = u.step(ds.actions[i])
        np.testing.assert_allclose(obs, ds.next_observations[i], atol=1e-8)
        assert r == pytest.approx(ds.rewards[i])
        assert terminated == ds.terminals[i]
    env.close()


def test_timeouts_at_1000_steps_are_not_terminals():
    ds = collect("halfcheetah", "random", 1005, seed=0, progress=False)
    assert not ds.terminals.any()
    assert ds.timeouts[999] and ds.timeouts[-1] and ds.timeouts.sum() == 2
    assert ds.steps[999] == 999 and ds.steps[1000] == 0 and ds.episode_ids[1000] == 1
    assert ds.metadata["last_episode_cut_by_budget"]
    assert not np.allclose(ds.next_observations[999], ds.observations[1000])


def test_noise_is_clipped_to_action_box():
    ds = collect("hopper", "random", 100, noise=5.0, seed=0, progress=False)
    assert np.all(np.abs(ds.actions) <= 1.0) and (np.abs(ds.actions) == 1.0).mean() > 0.5


def test_collect_with_policy_object_and_errors():
    from xcurate.datasets.policies import load_policy

    pol = load_policy("random", "walker2d", seed=1)
    ds = collect("walker2d-friction-0.5", pol, 50, progress=False)
    assert ds.metadata["domain"] == "walker2d-friction-0.5" and len(ds) == 50
    with pytest.raises(ConfigError, match="do not fit domain"):
        collect("hopper", pol, 10, progress=False)
    with pytest.raises(ConfigError, match="n_transitions must be positive"):
        collect("hopper", "random", 0, progress=False)
    with pytest.raises(ConfigError, match="noise"):
        collect("hopper", "random", 10, noise=-1.0, progress=False)
    with pytest.raises(ConfigError, match="unknown domain"):
        collect("hoppper", "random", 10, progress=False)


def test_evaluate_random_hopper_is_low():
    rets = evaluate("hopper", "random", episodes=2, seed=0)
    assert rets.shape == (2,) and np.all(rets < 200)


def test_cli_collect_writes_loadable_hdf5(run_cli, tmp_path):
    import h5py

    from xcurate.datasets.io import load_dataset, read_manifest

    out = tmp_path / "hop.hdf5"
    code, out_text, err = run_cli(["collect", "--domain", "hopper", "--policy", "random", "--transitions", "300",
                                   "--seed", "2", "--noise", "0.1", "--quality", "random", "--out", out,
                                   "--no-progress"])
    assert code == 0, err
    assert "300 transitions" in out_text
    with h5py.File(out) as f:
        assert f["infos/qpos"].shape == (300, 6) and f["infos/qvel"].shape == (300, 6)
        assert f["terminals"].dtype == bool and f["timeouts"].dtype == bool
    ds = load_dataset(out)
    assert len(ds) == 300 and ds.has_state and ds.metadata["quality"] == "random"
    assert read_manifest(out)["transitions"] == 300
    # dataset ids resolve under $XCURATE_DATA
    code, _, err = run_cli(["collect", "--domain", "hopper", "--policy", "random", "-n", "50", "--out",
                            "hopper/source/random-v0", "--no-progress"])
    assert code == 0, err
    from xcurate.datasets.ids import dataset_path

    assert dataset_path("hopper/source/random-v0").is_file()


def test_cli_collect_errors_are_one_line(run_cli, tmp_path):
    code, _, err = run_cli(["collect", "--domain", "hopper", "--policy", "nope:x", "-n", "5", "--out",
                            tmp_path / "x.hdf5"])
    assert code == 1 and "error: unknown policy spec" in err and "Traceback" not in err
    assert not (tmp_path / "x.hdf5").exists()
