"""Bad input gives one-line DataErrors naming the file; failing writes leave nothing behind."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
from test_io_data import assert_same, multi_episode

import xcurate.datasets.io as dio
from xcurate.datasets.io import load_dataset, manifest_path, save_dataset
from xcurate.errors import DataError


def _one_line(e: pytest.ExceptionInfo, path) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def _h5(path, **arrays) -> None:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v


def _basic(n=6, obs=3, act=2):
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(n, obs)), "actions": rng.normal(size=(n, act)),
            "rewards": rng.normal(size=n), "next_observations": rng.normal(size=(n, obs)),
            "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}


def test_missing_hdf5_keys_are_listed(tmp_path):
    p = tmp_path / "m.hdf5"
    a = _basic()
    _h5(p, observations=a["observations"], next_observations=a["next_observations"])
    with pytest.raises(DataError) as e:
        load_dataset(p)
    assert "missing HDF5 key(s) actions, rewards, terminals" in _one_line(e, p)


def test_no_next_observations_and_no_timeouts_is_refused(tmp_path):
    p = tmp_path / "m.hdf5"
    a = _basic()
    del a["next_observations"], a["timeouts"]
    _h5(p, **a)
    with pytest.raises(DataError, match="neither next_observations nor timeouts") as e:
        load_dataset(p)
    _one_line(e, p)


@pytest.mark.parametrize("name,fmt", [("t.hdf5", None), ("t.parquet", None)])
def test_truncated_file(tmp_path, name, fmt):
    p = save_dataset(multi_episode(), tmp_path / name, fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt|cannot read") as e:
        load_dataset(p)
    _one_line(e, p)


def test_truncated_minari_file(tmp_path):
    p = save_dataset(multi_episode(), tmp_path / "m", "minari")
    main = p / "data" / "main_data.hdf5"
    main.write_bytes(main.read_bytes()[:1000])
    with pytest.raises(DataError) as e:
        load_dataset(p)
    _one_line(e, main)
    (p / "data" / "metadata.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt metadata.json"):
        load_dataset(p)


def test_nan_rows(tmp_path):
    p = tmp_path / "nan.hdf5"
    a = _basic()
    a["rewards"][2] = np.nan
    a["observations"][4, 1] = np.inf
    _h5(p, **a)
    with pytest.raises(DataError, match=r"2 row\(s\) contain NaN/Inf \(first row 2, field rewards\)") as e:
        load_dataset(p)
    _one_line(e, p)
    ds = load_dataset(p, on_nonfinite="drop")
    assert len(ds) == 4 and ds.metadata["xcurate_dropped_nonfinite"] == 2
    assert ds.transition_ids.tolist() == [0, 1, 3, 5]


@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_empty_dataset(tmp_path, fmt):
    a = {k: v[:0] for k, v in _basic().items()}
    if fmt == "hdf5":
        p = tmp_path / "e.hdf5"
        _h5(p, **a)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp_path / "e.parquet"
        pq.write_table(pa.table({k: pa.array([], pa.list_(pa.float64())) if v.ndim == 2 else pa.array(v)
                                 for k, v in a.items()}), p)
    with pytest.raises(DataError, match="empty") as e:
        load_dataset(p)
    _one_line(e, p)


def test_empty_dataset_is_not_written(tmp_path):
    ds = multi_episode()
    with pytest.raises(DataError, match="empty"):
        save_dataset(ds.select(np.zeros(len(ds), bool)), tmp_path / "e.hdf5")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("key,bad,msg", [
    ("actions", lambda a: a["actions"][:-1], "actions has 5 rows but observations has 6"),
    ("rewards", lambda a: a["rewards"][:-2], "rewards has 4 rows but observations has 6"),
    ("next_observations", lambda a: a["next_observations"][:, :2], "next_observations shape (6, 2) does not match"),
    ("rewards", lambda a: np.zeros((6, 2)), "rewards must have shape (N,) or (N, 1)"),
])
def test_mismatched_lengths_and_dims(tmp_path, key, bad, msg):
    p = tmp_path / "bad.hdf5"
    a = _basic()
    a[key] = bad(a)
    _h5(p, **a)
    with pytest.raises(DataError) as e:
        load_dataset(p)
    assert msg in _one_line(e, p)


def test_mismatched_dims_across_minari_episodes(tmp_path):
    p = save_dataset(multi_episode(), tmp_path / "m", "minari")
    with h5py.File(p / "data" / "main_data.hdf5", "a") as f:
        del f["episode_1/actions"]
        f["episode_1/actions"] = np.zeros((2, 2))
    with pytest.raises(DataError, match="episode_1: actions has 2 rows, rewards has 4") as e:
        load_dataset(p)
    _one_line(e, p)


def test_unknown_format(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("a,b\n")
    with pytest.raises(DataError, match="unknown dataset format '.csv'") as e:
        load_dataset(p)
    _one_line(e, p)
    with pytest.raises(DataError, match="unknown dataset format 'feather'"):
        load_dataset(p, format="feather")
    with pytest.raises(DataError, match="unknown dataset format '.csv' for writing"):
        save_dataset(multi_episode(), p)
    with pytest.raises(DataError, match="can be read but not written"):
        save_dataset(multi_episode(), tmp_path / "x.pkl")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.hdf5")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("toy/source/missing-v0")
    with pytest.raises(DataError, match="folder holds no dataset"):
        load_dataset(tmp_path)


def test_pickles_are_restricted(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps([{"observation": np.zeros((2, 2)), "cls": DataError("x")}]))
    with pytest.raises(DataError, match="refusing to unpickle") as e:
        load_dataset(p)
    _one_line(e, p)
    p.write_bytes(pickle.dumps([{"observation": np.zeros((2, 2)), "reward": np.zeros(2)}]))
    with pytest.raises(DataError, match="path 0 lacks key\\(s\\) action, next_observation, terminal"):
        load_dataset(p)


@pytest.mark.parametrize("name,fmt", [("a.hdf5", None), ("a.parquet", None), ("adir", "minari")])
def test_failing_write_leaves_no_partial_file(tmp_path, monkeypatch, name, fmt):
    good = multi_episode()
    out = save_dataset(good, tmp_path / name, fmt)
    before = sorted(p.name for p in tmp_path.iterdir())

    def crash(*args, **kwargs):
        raise OSError("disk full (simulated)")

    # crash after the writer has started producing output
    if fmt == "minari":
        monkeypatch.setattr(dio, "_box_json", crash)
    elif name.endswith(".hdf5"):
        monkeypatch.setattr(dio, "_write_meta_value", crash)
    else:
        import pyarrow.parquet as pq

        real = pq.write_table

        def half(table, where, **kw):
            real(table.slice(0, 3), where, **kw)
            raise OSError("disk full (simulated)")

        monkeypatch.setattr(pq, "write_table", half)
    changed = good.select(np.arange(5))
    with pytest.raises(OSError, match="simulated"):
        save_dataset(changed, tmp_path / name, fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temp files left
    monkeypatch.undo()
    assert_same(good, load_dataset(out))  # old content untouched
    assert load_dataset(out).fingerprint() == dio.read_manifest(out)["fingerprint"]  # manifest too
    assert manifest_path(out).exists()


def test_failing_write_to_new_path_creates_nothing(tmp_path):
    ds = multi_episode()
    ds.metadata["bad/key"] = 1  # metadata keys may not contain '/': fails after arrays were written
    with pytest.raises(DataError, match="metadata key 'bad/key'"):
        save_dataset(ds, tmp_path / "new.hdf5")
    assert list(tmp_path.iterdir()) == []
    ds.extras["cube"] = np.zeros((len(ds), 2, 2))
    del ds.metadata["bad/key"]
    with pytest.raises(DataError, match="column 'cube' has 3 dims"):
        save_dataset(ds, tmp_path / "new.parquet")
    assert list(tmp_path.iterdir()) == []


def test_truncated_pickle(tmp_path):
    p = tmp_path / "rollouts.pkl"
    path = {"observation": np.zeros((4, 2)), "action": np.zeros((4, 1), np.float32), "reward": np.ones(4),
            "next_observation": np.ones((4, 2)), "terminal": np.zeros(4, bool)}
    data = pickle.dumps([path, path])
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read pickle") as e:
        load_dataset(p)
    _one_line(e, p)
