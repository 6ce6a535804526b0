import numpy as np
import pytest

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import DataError


def _ds(n=10, obs=3, act=2, seed=0):
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n + 1, obs))
    return TransitionDataset.from_arrays(o[:-1].copy(), rng.normal(size=(n, act)), rng.normal(size=n), o[1:].copy())


def test_episode_ids_from_continuity_and_ends():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    obs = np.concatenate([a[:-1], b[:-1]])
    nxt = np.concatenate([a[1:], b[1:]])
    ds = TransitionDataset.from_arrays(obs, np.zeros((7, 1)), np.ones(7), nxt)
    assert ds.episode_ids.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert ds.steps.tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert ds.returns_per_episode().tolist() == [4.0, 3.0]


def test_validate_errors_name_source_and_field():
    ds = _ds()
    ds.observations[3, 1] = np.nan
    ds.source = "file.hdf5"
    with pytest.raises(DataError, match=r"file.hdf5: 1 row\(s\) contain NaN/Inf \(first row 3, field observations\)"):
        ds.validate()
    assert ds.finite_mask().sum() == 9
    with pytest.raises(DataError, match="empty"):
        _ds().select(slice(0, 0)).validate()
    with pytest.raises(DataError, match="rewards has 3 rows"):
        TransitionDataset.from_arrays(np.zeros((4, 2)), np.zeros((4, 1)), np.zeros(3), np.zeros((4, 2)),
                                      episode_ids=np.zeros(4), source="x")


def test_concat_renumbers_and_select_keeps_ids():
    a, b = _ds(5), _ds(6, seed=1)
    c = TransitionDataset.concat([a, b])
    assert len(c) == 11 and len(np.unique(c.transition_ids)) == 11
    assert c.n_episodes == 2
    sub = c.select(np.array([10, 2]))
    assert sub.transition_ids.tolist() == [10, 2]
    assert c.fingerprint() != a.fingerprint()
    with pytest.raises(DataError, match="do not match"):
        TransitionDataset.concat([a, _ds(3, obs=4)])


def test_concat_keeps_each_parts_quality_label_per_row():
    a, b, u = _ds(5), _ds(6, seed=1), _ds(2, seed=2)
    a.metadata, b.metadata = {"quality": "random"}, {"quality": "medium"}
    c = TransitionDataset.concat([a, b, u], metadata={"quality": "random+medium"})
    assert c.metadata["quality_ranges"] == [[0, 5, "random"], [5, 11, "medium"]]
    assert c.quality_labels().tolist() == ["random"] * 5 + ["medium"] * 6 + [None] * 2
    sub = c.select(np.array([12, 7, 1]))  # ids, not positions, carry the labels
    assert sub.quality_labels().tolist() == [None, "medium", "random"]
    same = TransitionDataset.concat([a, a])  # one label: nothing to record, the dataset label applies
    assert "quality_ranges" not in same.metadata and same.quality_labels().tolist() == ["random"] * 10
