"""111-dim Ant data (gym v2/v3: 27 v5 dims + 84 contact-force dims) on load, and through score/curate/train."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from xcurate.datasets.collect import collect
from xcurate.datasets.io import load_dataset, save_dataset
from xcurate.errors import DataError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ant_data():
    target = collect("ant-gravity-0.5", "random", 240, seed=1, progress=False)
    source = collect("ant", "random", 300, seed=2, progress=False)
    return target, source


def _write_111(path, ds, contact: np.ndarray | None = None):
    """A D4RL-style file as gym v2/v3 Ant envs write it (no xcurate keys)."""
    pad = np.zeros((len(ds), 84), np.float64) if contact is None else contact
    with h5py.File(path, "w") as f:
        f["observations"] = np.concatenate([ds.observations, pad], 1)
        f["next_observations"] = np.concatenate([ds.next_observations, pad], 1)
        f["actions"] = ds.actions
        f["rewards"] = ds.rewards
        f["terminals"] = ds.terminals
        f["timeouts"] = ds.timeouts
    return path


def test_zero_contact_dims_are_dropped_with_one_warning(ant_data, tmp_path, capsys):
    target, _ = ant_data
    p = _write_111(tmp_path / "ant111.hdf5", target)
    capsys.readouterr()
    ds = load_dataset(p)
    err = capsys.readouterr().err
    assert ds.obs_dim == 27
    np.testing.assert_array_equal(ds.observations, target.observations)
    np.testing.assert_array_equal(ds.next_observations, target.next_observations)
    assert "ant-111 -> gymnasium-v5 27 dims" in ds.metadata["xcurate_obs_layout"]
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("warning:") and "111-dim Ant" in lines[0]
    # recorded in the metadata of what is written from it; the 27-dim file loads without a warning
    q = save_dataset(ds, tmp_path / "ant27.parquet")
    capsys.readouterr()
    back = load_dataset(q)
    assert back.obs_dim == 27 and "xcurate_obs_layout" in back.metadata and capsys.readouterr().err == ""


def test_nonzero_contact_dims_need_the_option(ant_data, tmp_path, run_cli):
    target, _ = ant_data
    contact = np.zeros((len(target), 84))
    contact[5, 10] = 0.25
    p = _write_111(tmp_path / "contacts.hdf5", target, contact)
    with pytest.raises(DataError, match=r"non-zero contact forces .*1 of 240 rows.*keep_contact_dims=True") as e:
        load_dataset(p)
    assert "\n" not in str(e.value)
    kept = load_dataset(p, keep_contact_dims=True)
    assert kept.obs_dim == 111 and kept.observations[5, 37] == 0.25
    code, _, err = run_cli(["datasets", "info", p])
    assert code == 1 and "--keep-contact-dims" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "kept.parquet"
    code, _, err = run_cli(["datasets", "convert", p, out, "--keep-contact-dims"])
    assert code == 0, err
    assert load_dataset(out).obs_dim == 111  # the choice is recorded: no option needed again


def test_a_27_dim_source_against_a_111_dim_target_through_score_curate_train(ant_data, tmp_path, run_cli):
    target, source = ant_data
    tgt = _write_111(tmp_path / "target111.hdf5", target)
    src = save_dataset(source, tmp_path / "source.parquet")
    store = tmp_path / "store"
    code, _, err = run_cli(["score", "--source", src, "--target", tgt, "--scorers", "knn", "--store", store,
                            "--no-progress"])
    assert code == 0, err
    assert sum(ln.startswith("warning:") and "111-dim Ant" in ln for ln in err.splitlines()) == 1
    cur = tmp_path / "cur.parquet"
    code, _, err = run_cli(["curate", "--store", store, "--recipe", "sql", "--where", "knn_score > -1e9",
                            "--out", cur])
    assert code == 0, err
    code, _, err = run_cli(["train", "--target", tgt, "--source", cur, "--domain", "ant-gravity-0.5",
                            "--steps", "5", "--set", "hidden_dim=16", "--set", "batch_target=16",
                            "--set", "batch_source=16", "--eval-episodes", "1", "--eval-max-steps", "5",
                            "--no-progress", "--out", tmp_path / "run"])
    assert code == 0, err
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
