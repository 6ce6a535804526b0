"""Episode-boundary alignment: next states never come from the following episode.

The dataset has four episodes ending terminal / timeout / timeout / terminal. State ``j`` of
episode ``e`` has first coordinate ``100 (e + 1) + j``, so a correct successor always has first
coordinate +1 and the same hundreds digit; a pairing across episodes changes the hundreds.
"""

from __future__ import annotations

import h5py
import numpy as np
from test_io_data import EPISODES, multi_episode

from xcurate.datasets.io import hdf5_layout, load_dataset


def _write_d4rl_without_next(path, ds) -> None:
    with h5py.File(path, "w") as f:
        f["observations"] = ds.observations
        f["actions"] = ds.actions
        f["rewards"] = ds.rewards
        f["terminals"] = ds.terminals
        f["timeouts"] = ds.timeouts


def _write_otdf(path, ds) -> None:
    with h5py.File(path, "w") as f:
        f["observations"] = ds.observations
        f["actions"] = ds.actions
        f["next_observations"] = ds.next_observations
        f["rewards"] = ds.rewards.reshape(-1, 1)
        f["terminals"] = ds.terminals.reshape(-1, 1).astype(np.float32)
        f["metadata/algorithm"] = "SAC"


def _episode_of(first_coord: np.ndarray) -> np.ndarray:
    return (np.round(first_coord) // 100).astype(int)


def _naive_next(obs: np.ndarray) -> np.ndarray:
    """What the ODRL/OTDF target loaders do: next state = row i+1, whatever the episode."""
    return obs[1:]


def test_naive_loader_would_cross_episodes():
    ds = multi_episode(extras=False)
    naive = _naive_next(ds.observations)
    crossed = _episode_of(naive[:, 0]) != _episode_of(ds.observations[:-1, 0])
    ends = np.cumsum([n for n, _ in EPISODES])[:-1] - 1  # last row of each episode but the final one
    assert np.flatnonzero(crossed).tolist() == ends.tolist()
    # e.g. the terminal row of episode 0 is paired with the first state of episode 1
    assert ds.observations[ends[0], 0] == 104 and naive[ends[0], 0] == 200


def test_d4rl_without_next_observations_never_crosses_episodes(tmp_path):
    ds = multi_episode(extras=False)
    path = tmp_path / "d4rl_no_next.hdf5"
    _write_d4rl_without_next(path, ds)
    back = load_dataset(path)
    # the last row of every episode (next state unknown) is dropped, nothing else
    assert len(back) == len(ds) - len(EPISODES)
    assert back.n_episodes == len(EPISODES)
    np.testing.assert_array_equal(back.next_observations[:, 0] - back.observations[:, 0], 1.0)
    np.testing.assert_array_equal(_episode_of(back.next_observations[:, 0]), _episode_of(back.observations[:, 0]))
    # every kept pair is exactly the true (s, s') of the original dataset
    keep = np.concatenate([np.arange(n) < n - 1 for n, _ in EPISODES])
    np.testing.assert_array_equal(back.observations, ds.observations[keep])
    np.testing.assert_array_equal(back.next_observations, ds.next_observations[keep])
    np.testing.assert_array_equal(back.actions, ds.actions[keep])
    np.testing.assert_array_equal(back.steps, ds.steps[keep])
    info = back.metadata["xcurate_next_obs_from_rows"]
    assert info == {"dropped_rows": 4, "dropped_terminals": 2}


def test_otdf_layout_keeps_true_next_observations(tmp_path):
    ds = multi_episode(extras=False)
    path = tmp_path / "otdf_target.hdf5"
    _write_otdf(path, ds)
    assert hdf5_layout(path) == "otdf"
    back = load_dataset(path)
    assert back.rewards.shape == (len(ds),) and back.terminals.shape == (len(ds),)
    assert back.terminals.dtype == bool and not back.timeouts.any()
    np.testing.assert_array_equal(back.rewards, ds.rewards)
    np.testing.assert_array_equal(back.terminals, ds.terminals)
    # next states come from next_observations, including the terminal rows' real last states
    np.testing.assert_array_equal(back.next_observations, ds.next_observations)
    np.testing.assert_array_equal(_episode_of(back.next_observations[:, 0]), _episode_of(back.observations[:, 0]))
    # episodes are recovered from terminals and continuity even without timeouts
    np.testing.assert_array_equal(back.episode_ids, ds.episode_ids)
    assert back.metadata == {"algorithm": "SAC"}
    # and a naive obs[i+1] reading of the very same file would have crossed 3 boundaries
    naive = _naive_next(back.observations)
    assert int((naive[:, 0] != back.next_observations[:-1, 0]).sum()) == len(EPISODES) - 1
