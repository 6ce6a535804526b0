"""``xcurate.datasets.ops`` and ``xcurate datasets combine|split|sample``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_io_data import multi_episode

from xcurate.datasets.io import load_dataset, manifest_path, save_dataset
from xcurate.datasets.ops import combine, provenance_labels, sample, split
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError
from xcurate.utils import sha256_file


def _part(domain: str, policy: str, quality: str, shift: float = 0.0, extras: bool = False) -> TransitionDataset:
    ds = multi_episode(extras=extras)
    ds.observations = ds.observations + shift
    ds.next_observations = ds.next_observations + shift
    ds.metadata = {"domain": domain, "policy": policy, "quality": quality}
    ds.source = f"{domain}.hdf5"
    return ds


def test_combine_renumbers_and_labels_every_row():
    a = _part("hopper", "zoo-ppo", "medium")
    b = _part("hopper-gravity-0.5", "zoo-trpo", "expert", shift=1000.0)
    c = combine([a, b])
    assert len(c) == len(a) + len(b)
    np.testing.assert_array_equal(c.transition_ids, np.arange(len(c)))
    assert c.n_episodes == a.n_episodes + b.n_episodes
    # every row keeps its data and episode structure
    np.testing.assert_array_equal(c.observations[len(a):], b.observations)
    assert len(np.intersect1d(c.episode_ids[:len(a)], c.episode_ids[len(a):])) == 0
    np.testing.assert_array_equal(c.extras["part"], [0] * len(a) + [1] * len(b))
    assert list(provenance_labels(c, "domain")) == ["hopper"] * len(a) + ["hopper-gravity-0.5"] * len(b)
    assert list(provenance_labels(c, "policy")) == ["zoo-ppo"] * len(a) + ["zoo-trpo"] * len(b)
    assert list(c.quality_labels()) == ["medium"] * len(a) + ["expert"] * len(b)
    assert c.metadata["domain"] == "mixed" and c.metadata["domains"] == ["hopper", "hopper-gravity-0.5"]
    assert [p["fingerprint"] for p in c.metadata["parts"]] == [a.fingerprint(), b.fingerprint()]
    # labels follow the rows through select (quality_ranges are transition-id ranges)
    sub = c.select(np.arange(len(c)) % 3 == 0)
    assert list(sub.quality_labels()) == [("medium" if t < len(a) else "expert") for t in sub.transition_ids]
    assert list(provenance_labels(sub, "domain")) == [("hopper" if t < len(a) else "hopper-gravity-0.5")
                                                      for t in sub.transition_ids]


def test_combine_of_a_combination_flattens_parts_and_keeps_medium_expert_labels():
    me = TransitionDataset.concat([_part("hopper", "p1", "medium"), _part("hopper", "p2", "expert")],
                                  metadata={"domain": "hopper", "policy": "p1 + p2", "quality": "medium-expert"})
    ab = combine([_part("hopper-friction-0.5", "p3", "random"), _part("hopper-gravity-0.5", "p4", "expert")])
    c = combine([me, ab])
    assert [p["domain"] for p in c.metadata["parts"]] == ["hopper", "hopper-friction-0.5", "hopper-gravity-0.5"]
    n = len(me) // 2
    assert list(c.quality_labels()) == ["medium"] * n + ["expert"] * n + ["random"] * n + ["expert"] * n
    assert list(provenance_labels(c, "policy")) == ["p1 + p2"] * (2 * n) + ["p3"] * n + ["p4"] * n


def test_combine_different_dims_names_both():
    a = _part("hopper", "p", "medium")
    b = multi_episode(obs_dim=4)
    b.source = "walker.hdf5"
    with pytest.raises(DataError, match=r"walker\.hdf5 has obs/act dims \(4, 2\) but hopper\.hdf5 has \(3, 2\)"):
        combine([a, b])


def test_combine_drops_state_of_different_widths():
    a = _part("hopper", "p", "medium")
    b = _part("walker", "p", "medium")
    b.qpos = np.zeros((len(b), 9))
    c = combine([a, b])
    assert c.qpos is None and c.metadata["combine_dropped"] == ["qpos", "qvel"]


def test_split_by_episodes_fractions_and_counts():
    ds = combine([_part("a", "p", "medium"), _part("b", "p", "expert"), _part("c", "p", "random")])  # 12 episodes
    tr, te = split(ds, fractions=[0.75, 0.25], seed=1)
    assert (tr.n_episodes, te.n_episodes) == (9, 3)
    assert len(tr) + len(te) == len(ds)
    assert not set(tr.episode_ids) & set(te.episode_ids)
    assert sorted(np.concatenate([tr.transition_ids, te.transition_ids])) == list(ds.transition_ids)
    for part in (tr, te):  # whole episodes, original order, the same rows as in the input
        assert (np.diff(part.transition_ids) > 0).all()
        for e in np.unique(part.episode_ids):
            assert (part.episode_ids == e).sum() == (ds.episode_ids == e).sum()
        np.testing.assert_array_equal(part.observations, ds.observations[part.transition_ids])
    again = split(ds, fractions=[0.75, 0.25], seed=1)
    np.testing.assert_array_equal(again[0].transition_ids, tr.transition_ids)
    other = split(ds, fractions=[0.75, 0.25], seed=2)
    assert set(other[1].episode_ids) != set(te.episode_ids)
    a, b = split(ds, counts=[2, 5], seed=0)
    assert (a.n_episodes, b.n_episodes) == (2, 5)
    with pytest.raises(ConfigError, match="ask for 13 episodes but .* has 12"):
        split(ds, counts=[10, 3])
    with pytest.raises(ConfigError, match="summing to 1"):
        split(ds, fractions=[0.5, 0.4])
    with pytest.raises(ConfigError, match="exactly one"):
        split(ds)


def test_sample_transitions_and_episodes():
    ds = multi_episode()
    s = sample(ds, n=7, seed=0)
    assert len(s) == 7 and len(set(s.transition_ids)) == 7
    assert set(s.transition_ids) <= set(ds.transition_ids)
    np.testing.assert_array_equal(sample(ds, n=7, seed=0).transition_ids, s.transition_ids)
    assert sample(ds, fraction=0.5, seed=0).__len__() == 9
    e = sample(ds, n=2, unit="episodes", seed=3)
    assert e.n_episodes == 2
    for eid in np.unique(e.episode_ids):
        assert (e.episode_ids == eid).sum() == (ds.episode_ids == eid).sum()
    with pytest.raises(ConfigError, match="n=5 episodes requested but .* has 4"):
        sample(ds, n=5, unit="episodes")
    with pytest.raises(ConfigError, match="unit"):
        sample(ds, n=1, unit="rows")


def test_cli_combine_manifest_and_store_sql(tmp_path, run_cli):
    pa = save_dataset(_part("hopper", "zoo-ppo", "medium"), tmp_path / "a.hdf5")
    pb = save_dataset(_part("hopper-gravity-0.5", "zoo-trpo", "expert", 1000.0), tmp_path / "b.parquet")
    out = tmp_path / "c.hdf5"
    code, stdout, err = run_cli(["datasets", "combine", pa, pb, "--out", out])
    assert code == 0, err
    assert "hopper-gravity-0.5" in stdout and "wrote" in stdout
    man = json.loads(manifest_path(out).read_text())
    assert sorted(v["sha256"] for v in man["inputs"].values()) == sorted([sha256_file(pa), sha256_file(pb)])
    c = load_dataset(out)
    assert list(provenance_labels(c, "domain")).count("hopper-gravity-0.5") == 18
    # no overwrite without --force
    before = sha256_file(out)
    code, _, err = run_cli(["datasets", "combine", pb, pa, "--out", out])
    assert code == 1 and err.strip().startswith("error:") and "--force" in err and len(err.strip().splitlines()) == 1
    assert sha256_file(out) == before
    code, _, err = run_cli(["datasets", "combine", pb, pa, "--out", out, "--force"])
    assert code == 0, err
    assert sha256_file(out) != before
    # the score store sees the provenance columns in SQL
    from xcurate.scoring.store import Store

    st = Store.create(tmp_path / "store", out, pa)
    for view in ("transitions", "scores"):
        rows = st.query(f"SELECT domain, policy, quality, part, count(*) AS n FROM {view} "
                        "GROUP BY ALL ORDER BY part").to_pylist()
        assert rows == [{"domain": "hopper-gravity-0.5", "policy": "zoo-trpo", "quality": "expert", "part": 0, "n": 18},
                        {"domain": "hopper", "policy": "zoo-ppo", "quality": "medium", "part": 1, "n": 18}], view
    assert st.load_source().fingerprint() == load_dataset(out).fingerprint()


def test_cli_combine_dims_error_one_line(tmp_path, run_cli):
    pa = save_dataset(_part("hopper", "p", "medium"), tmp_path / "a.hdf5")
    pb = save_dataset(multi_episode(obs_dim=5), tmp_path / "w.hdf5")
    code, _, err = run_cli(["datasets", "combine", pa, pb, "--out", tmp_path / "c.hdf5"])
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "w.hdf5" in err and "a.hdf5" in err and "(5, 2)" in err and "(3, 2)" in err
    assert not (tmp_path / "c.hdf5").exists()


def test_cli_split_and_sample(tmp_path, run_cli):
    src = save_dataset(multi_episode(), tmp_path / "d.hdf5")
    code, out, err = run_cli(["datasets", "split", src, "--fractions", "0.5,0.5", "--out", tmp_path / "a.parquet",
                              "--out", tmp_path / "b.parquet", "--seed", "4"])
    assert code == 0, err
    a, b = load_dataset(tmp_path / "a.parquet"), load_dataset(tmp_path / "b.parquet")
    assert a.n_episodes == b.n_episodes == 2 and len(a) + len(b) == 18
    assert json.loads(manifest_path(tmp_path / "a.parquet").read_text())["seed"] == 4
    code, _, err = run_cli(["datasets", "split", src, "--counts", "1,1", "--out", tmp_path / "a.parquet",
                            "--out", tmp_path / "c.parquet"])
    assert code == 1 and "exists" in err and not (tmp_path / "c.parquet").exists()
    code, _, err = run_cli(["datasets", "split", src, "--counts", "1,x", "--out", tmp_path / "x.parquet",
                            "--out", tmp_path / "y.parquet"])
    assert code == 1 and "--counts" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["datasets", "sample", src, "--n", "2", "--episodes", "--out", tmp_path / "s.hdf5"])
    assert code == 0, err
    assert load_dataset(tmp_path / "s.hdf5").n_episodes == 2
    code, _, err = run_cli(["datasets", "sample", src, "--n", "99", "--out", tmp_path / "t.hdf5"])
    assert code == 1 and "n=99 transitions requested" in err and not (tmp_path / "t.hdf5").exists()


@pytest.mark.parametrize("name,fmt", [("c.parquet", None), ("c.h5", None), ("cmin", "minari")])
def test_provenance_survives_every_format(tmp_path, run_cli, name, fmt):
    c = combine([_part("hopper", "p1", "medium"), _part("hopper-gravity-0.5", "p2", "expert", 1000.0)])
    back = load_dataset(save_dataset(c, tmp_path / name, fmt))
    for key in ("domain", "policy", "quality"):
        assert list(provenance_labels(back, key)) == list(provenance_labels(c, key)), key
    code, out, err = run_cli(["datasets", "info", tmp_path / name])
    assert code == 0, err
    assert "part" in out
