"""Round trips and foreign layouts for xcurate.datasets.io."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest
from test_io_data import assert_same, multi_episode

from xcurate.datasets import ids
from xcurate.datasets.io import (
    detect_format,
    hdf5_layout,
    load_dataset,
    manifest_path,
    read_manifest,
    save_dataset,
)
from xcurate.datasets.transitions import TransitionDataset


@pytest.mark.parametrize("name,fmt", [("d.hdf5", None), ("d.h5", None), ("d.parquet", None),
                                      ("mdir", "minari")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_lossless(tmp_path, name, fmt, dtype):
    ds = multi_episode(dtype=dtype)
    out = save_dataset(ds, tmp_path / name, fmt)
    back = load_dataset(out)
    assert_same(ds, back)
    assert back.source == str(out)
    assert back.transition_ids[:3].tolist() == [11, 18, 25]
    assert back.extras["keep"].dtype == bool and back.extras["embedding"].shape == (len(ds), 4)
    man = json.loads(manifest_path(out).read_text())
    assert man["kind"] == "dataset" and man["fingerprint"] == ds.fingerprint()
    assert man["transitions"] == len(ds) and man["config"]["format"] == (fmt or detect_format(out))
    assert man["seed"] == 3


@pytest.mark.parametrize("name,fmt", [("c.hdf5", None), ("c.parquet", None), ("cdir", "minari")])
def test_curated_subset_round_trip(tmp_path, name, fmt):
    """A curated subset (gaps inside episodes, weight/keep columns) survives every format."""
    ds = multi_episode()
    sub = ds.select(ds.extras["keep"])
    sub.extras["score_ot"] = np.linspace(-1, 0, len(sub))
    back = load_dataset(save_dataset(sub, tmp_path / name, fmt))
    assert_same(sub, back)
    # transitions still pair each state with its own successor (never across a gap)
    np.testing.assert_array_equal(back.next_observations[:, 0] - back.observations[:, 0], 1)


def test_hdf5_uses_d4rl_keys(tmp_path):
    ds = multi_episode()
    out = save_dataset(ds, tmp_path / "d.hdf5")
    with h5py.File(out) as f:
        for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                  "infos/qpos", "infos/qvel", "infos/action_log_probs", "metadata/domain",
                  "xcurate/episode_ids", "xcurate/steps", "xcurate/transition_ids", "xcurate/extras/weight"):
            assert k in f, k
        assert f["rewards"].shape == (len(ds),) and f["terminals"].dtype == bool
        assert f["metadata/domain"][()].decode() == "toy"
        assert json.loads(f["metadata/nested"][()]) == ds.metadata["nested"]
    assert hdf5_layout(out) == "xcurate"


def test_parquet_is_one_row_per_transition_with_list_columns(tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = multi_episode()
    out = save_dataset(ds, tmp_path / "d.parquet")
    t = pq.read_table(out)
    assert t.num_rows == len(ds)
    typ = t.schema.field("observations").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 3 and typ.value_type == pa.float32()
    assert json.loads(t.schema.metadata[b"xcurate"])["metadata"]["domain"] == "toy"
    # queryable with DuckDB as is
    got = duckdb.sql(f"select sum(weight), count(*) from '{out}' where keep").fetchall()[0]
    assert got[1] == int(ds.extras["keep"].sum())
    assert got[0] == pytest.approx(float(ds.extras["weight"][ds.extras["keep"]].sum()), rel=1e-5)


def test_dataset_id_and_minari_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = multi_episode()
    out = save_dataset(ds, "toy-gravity-2.0/target/expert-v0")
    assert out == ids.dataset_path("toy-gravity-2.0/target/expert-v0")
    assert (out.parent / "manifest.json").exists()
    assert_same(ds, load_dataset("toy-gravity-2.0/target/expert-v0"))
    assert read_manifest(out)["fingerprint"] == ds.fingerprint()
    mout = save_dataset(ds, "minari:xcurate/toy/expert-v0")
    assert mout == tmp_path / "minari" / "xcurate/toy/expert-v0"
    assert (mout / "data" / "main_data.hdf5").exists() and (mout / "manifest.json").exists()
    assert_same(ds, load_dataset("minari:xcurate/toy/expert-v0"))
    meta = json.loads((mout / "data" / "metadata.json").read_text())
    assert meta["dataset_id"] == "xcurate/toy/expert-v0" and meta["total_steps"] == len(ds)


def test_minari_package_loads_what_we_write(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = multi_episode()
    save_dataset(ds, "minari:xcurate/toy/medium-v0")
    m = minari.load_dataset("xcurate/toy/medium-v0")
    assert m.total_steps == len(ds) and m.total_episodes == 4
    ep = m[1]
    assert ep.observations.shape == (5, 3) and len(ep.actions) == 4
    np.testing.assert_array_equal(ep.observations[:-1], ds.observations[ds.episode_ids == 1])
    np.testing.assert_array_equal(ep.observations[-1], ds.next_observations[ds.episode_ids == 1][-1])
    assert ep.truncations[-1] and not ep.terminations.any()
    assert m[0].terminations[-1]
    np.testing.assert_array_equal(ep.infos["xcurate"]["transition_ids"][:-1],
                                  ds.transition_ids[ds.episode_ids == 1])


def test_minari_reads_without_the_package(tmp_path, monkeypatch):
    ds = multi_episode()
    out = save_dataset(ds, tmp_path / "m", "minari")
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` now fails
    assert_same(ds, load_dataset(out))
    assert_same(ds, load_dataset(out / "data"))
    assert_same(ds, load_dataset(out / "data" / "main_data.hdf5"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_reads_a_dataset_written_by_minari_itself(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    import gymnasium as gym
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(1)
    bufs = []
    for length in (3, 5):
        o = rng.normal(size=(length + 1, 2)).astype(np.float32)
        bufs.append(EpisodeBuffer(observations=o, actions=rng.normal(size=(length, 1)).astype(np.float32),
                                  rewards=np.ones(length), terminations=np.arange(length) == length - 1,
                                  truncations=np.zeros(length, bool),
                                  infos={"qpos": rng.normal(size=(length + 1, 3))}))
    box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    minari.create_dataset_from_buffers("ext/toy/native-v0", bufs, observation_space=box,
                                       action_space=gym.spaces.Box(-1, 1, (1,), np.float32),
                                       algorithm_name="random", author="t", author_email="t@x")
    ds = load_dataset("minari:ext/toy/native-v0")
    assert len(ds) == 8 and ds.n_episodes == 2 and ds.terminals.sum() == 2
    assert ds.episode_ids.tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and ds.steps.tolist()[3:] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(ds.observations[:3], bufs[0].observations[:-1])
    np.testing.assert_array_equal(ds.next_observations[:3], bufs[0].observations[1:])
    np.testing.assert_array_equal(ds.qpos[3:], bufs[1].infos["qpos"][:-1])
    assert ds.metadata["dataset_id"] == "ext/toy/native-v0"


def _write_foreign_d4rl(path, ds: TransitionDataset, next_obs: bool = True) -> None:
    with h5py.File(path, "w") as f:
        f["observations"] = ds.observations
        f["actions"] = ds.actions
        f["rewards"] = ds.rewards
        if next_obs:
            f["next_observations"] = ds.next_observations
        f["terminals"] = ds.terminals
        f["timeouts"] = ds.timeouts
        f["infos/qpos"] = ds.qpos
        f["infos/qvel"] = ds.qvel
        f["infos/action_log_probs"] = ds.extras["action_log_probs"]
        f["metadata/algorithm"] = "SAC"
        f["metadata/policy/fc0/weight"] = np.zeros((256, 17))
        f["metadata/policy/nonlinearity"] = "relu"
        f["metadata"].attrs["iteration"] = 5


def test_foreign_d4rl_file(tmp_path):
    ds = multi_episode()
    _write_foreign_d4rl(tmp_path / "d4rl.hdf5", ds)
    back = load_dataset(tmp_path / "d4rl.hdf5")
    assert hdf5_layout(tmp_path / "d4rl.hdf5") == "d4rl"
    np.testing.assert_array_equal(back.episode_ids, ds.episode_ids)  # derived from ends + continuity
    np.testing.assert_array_equal(back.steps, ds.steps)
    np.testing.assert_array_equal(back.next_observations, ds.next_observations)
    np.testing.assert_array_equal(back.qpos, ds.qpos)
    np.testing.assert_array_equal(back.extras["action_log_probs"], ds.extras["action_log_probs"])
    assert back.transition_ids.tolist() == list(range(len(ds)))
    assert back.metadata["algorithm"] == "SAC" and back.metadata["iteration"] == 5
    assert back.metadata["policy/nonlinearity"] == "relu"
    assert back.metadata["policy/fc0/weight"] == "<array shape=[256, 17] dtype=float64>"


@pytest.mark.parametrize("robot,obs_dim,act_dim", [("Ant", 27, 8), ("HalfCheetah", 17, 6), ("Hopper", 11, 3),
                                                   ("Walker2d", 17, 6)])
def test_real_cs285_rollouts(shared_dir, tmp_path, robot, obs_dim, act_dim):
    path = shared_dir / "data" / "cs285-expert-rollouts" / f"expert_data_{robot}-v4.pkl"
    ds = load_dataset(path)
    assert (len(ds), ds.n_episodes, ds.obs_dim, ds.act_dim) == (2000, 2, obs_dim, act_dim)
    assert ds.observations.dtype == np.float64 and ds.actions.dtype == np.float32
    # CS285 flags the end of each 1000-step rollout as terminal: it is a time-limit cut
    assert ds.terminals.sum() == 0 and np.flatnonzero(ds.timeouts).tolist() == [999, 1999]
    assert ds.steps.max() == 999 and ds.metadata["env_id"] == f"{robot}-v4"
    same_ep = ds.episode_ids[1:] == ds.episode_ids[:-1]
    np.testing.assert_array_equal(ds.next_observations[:-1][same_ep], ds.observations[1:][same_ep])
    assert ds.returns_per_episode().min() > 3000  # expert rollouts
    assert_same(ds, load_dataset(save_dataset(ds, tmp_path / "x.parquet")))


def test_cs285_short_path_keeps_real_termination(tmp_path):
    import pickle

    rng = np.random.default_rng(0)

    def path(t, end_terminal):
        s = rng.normal(size=(t + 1, 2))
        term = np.zeros(t, bool)
        term[-1] = end_terminal
        return {"observation": s[:-1], "action": rng.normal(size=(t, 1)).astype(np.float32),
                "reward": np.ones(t), "next_observation": s[1:], "terminal": term, "image_obs": []}

    p = tmp_path / "expert_data_Toy-v1.pkl"
    p.write_bytes(pickle.dumps([path(3, True), path(5, True)]))
    ds = load_dataset(p, max_episode_steps=5)
    assert ds.terminals.tolist() == [False, False, True] + [False] * 5  # fell after 3 steps
    assert ds.timeouts.tolist() == [False] * 7 + [True]  # cut by the 5-step limit
    assert ds.episode_ids.tolist() == [0, 0, 0, 1, 1, 1, 1, 1] and ds.metadata["env_id"] == "Toy-v1"
