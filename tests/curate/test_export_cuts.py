"""A curated export with --drop-unkept reads correctly in readers that take s' from row i+1.

d3rlpy 2.8 pins gymnasium==1.0.0 (the venv has 1.4), so it is not installed here; the test
re-implements ``d4rl.qlearning_dataset``'s rule (next obs = obs[i+1]; a timeout row is skipped,
a terminal row is kept with done=True) and d3rlpy ``MDPDataset``'s episode split (episodes end at
terminals | timeouts; next obs from the next row inside an episode).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from xcurate.curate.recipes import curate, curate_to_file
from xcurate.datasets.collect import collect
from xcurate.scoring.base import make_scorer
from xcurate.scoring.store import Store


def qlearning_dataset(f: h5py.File) -> dict[str, np.ndarray]:
    """``d4rl.qlearning_dataset(env, dataset)`` with timeouts (terminate_on_end=False)."""
    obs, act, rew = f["observations"][:], f["actions"][:], f["rewards"][:]
    term, tout = f["terminals"][:], f["timeouts"][:]
    out: dict[str, list] = {"observations": [], "actions": [], "rewards": [], "next_observations": [],
                            "terminals": []}
    for i in range(len(obs) - 1):
        if tout[i]:
            continue
        out["observations"].append(obs[i])
        out["next_observations"].append(obs[i + 1])
        out["actions"].append(act[i])
        out["rewards"].append(rew[i])
        out["terminals"].append(bool(term[i]))
    return {k: np.asarray(v) for k, v in out.items()}


def mdp_episode_transitions(f: h5py.File) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(s, a, s') of d3rlpy's MDPDataset episodes: split at terminals | timeouts, s' = next row."""
    obs, act = f["observations"][:], f["actions"][:]
    ends = f["terminals"][:] | f["timeouts"][:]
    out, start = [], 0
    for i in range(len(obs)):
        if ends[i] or i == len(obs) - 1:
            out += [(obs[j], act[j], obs[j + 1]) for j in range(start, i)]
            start = i + 1
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    source = collect("hopper", "random", 700, seed=3, progress=False, quality="random")
    target = collect("hopper-gravity-0.5", "random", 300, seed=4, progress=False, quality="random")
    assert source.terminals.sum() > 5  # random Hopper falls: real terminations are in the data
    st = Store.create(tmp_path_factory.mktemp("store") / "s", source, target)
    st.run(make_scorer("knn"), progress=False)
    return st


def _source_keys(ds) -> set[bytes]:
    return {np.concatenate([o, a, [r], o2]).astype(np.float64).tobytes()
            for o, a, r, o2 in zip(ds.observations, ds.actions, ds.rewards, ds.next_observations, strict=True)}


def test_drop_unkept_export_marks_every_gap_as_a_timeout(store, tmp_path):
    knn = np.asarray(store.query("SELECT knn_score FROM scores ORDER BY transition_id").column(0).to_numpy())
    where = f"knn_score > {float(np.median(knn))}"
    src = store.load_source()
    full = curate(store, "sql", where=where)
    ds, path = curate_to_file(store, "sql", tmp_path / "c.hdf5", drop_unkept=True, where=where)
    keep = full.extras["keep"]
    assert 0 < keep.sum() < len(src)
    keys = _source_keys(src)
    with h5py.File(path) as f:
        q = qlearning_dataset(f)
        mdp = mdp_episode_transitions(f)
        n_rows = len(f["observations"])
    # every transition a D4RL reader rebuilds exists in the source (terminal rows: s' is masked by done)
    live = ~q["terminals"]
    assert live.sum() > 0.5 * n_rows
    for o, a, r, o2 in zip(q["observations"][live], q["actions"][live], q["rewards"][live],
                           q["next_observations"][live], strict=True):
        assert np.concatenate([o, a, [r], o2]).astype(np.float64).tobytes() in keys
    src_sa2 = {np.concatenate([o, a, o2]).astype(np.float64).tobytes()
               for o, a, o2 in zip(src.observations, src.actions, src.next_observations, strict=True)}
    assert mdp and all(np.concatenate([o, a, o2]).astype(np.float64).tobytes() in src_sa2 for o, a, o2 in mdp)
    # real terminals are kept exactly; cuts are timeouts, never terminations
    np.testing.assert_array_equal(ds.terminals, src.terminals[keep])
    cut = ds.extras["cut"]
    assert cut.sum() > 10 and not (cut & ds.terminals).any() and ds.timeouts[cut].all()
    assert ds.metadata["xcurate_cuts"] == int(cut.sum())
    np.testing.assert_array_equal(ds.timeouts, src.timeouts[keep] | cut)
    np.testing.assert_array_equal(ds.next_observations, src.next_observations[keep])  # s' untouched


def test_contiguous_data_gets_no_cuts():
    ds = collect("halfcheetah", "random", 120, seed=0, progress=False)
    assert not ds.cut_mask()[:-1].any()  # inside the data every row is followed by its next step
    sub = ds.select(np.r_[0:40, 60:120])
    mask = sub.cut_mask()
    assert mask[39] and mask.sum() == (1 if sub.timeouts[-1] or sub.terminals[-1] else 2)
    marked = sub.mark_cuts()
    assert marked.timeouts[39] and not marked.terminals[39] and marked.extras["cut"][39]
    assert not marked.mark_cuts().cut_mask().any()  # idempotent
