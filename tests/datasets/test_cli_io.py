"""``xcurate datasets info|convert|list|show``."""

from __future__ import annotations

import json

import h5py
import pytest
from conftest import assert_one_error_line
from test_io_data import assert_same, multi_episode

from xcurate.datasets import ids
from xcurate.datasets.io import load_dataset, manifest_path, save_dataset
from xcurate.utils import sha256_file


def test_info_table_and_json(tmp_path, run_cli):
    ds = multi_episode()
    p = save_dataset(ds, tmp_path / "d.hdf5")
    code, out, err = run_cli(["datasets", "info", p])
    assert code == 0, err
    for s in ("transitions", "18", "episodes", "3 / 2", "2 / 2", "qpos/qvel", "yes", "metadata.domain", "toy",
              "hdf5 (xcurate layout)", "weight"):
        assert s in out, s
    rets = ds.returns_per_episode()
    assert f"{rets.mean():.2f} ± {rets.std():.2f}" in out
    code, out, _ = run_cli(["datasets", "info", p, "--json"])
    info = json.loads(out)
    assert info["transitions"] == 18 and info["episodes"] == 4 and info["terminals"] == 2
    assert info["return_mean"] == pytest.approx(rets.mean())


def test_convert_chain_is_lossless_and_has_manifests(tmp_path, run_cli):
    ds = multi_episode()
    src = save_dataset(ds, tmp_path / "d.hdf5")
    code, out, err = run_cli(["datasets", "convert", src, tmp_path / "d.parquet"])
    assert code == 0, err
    assert "wrote" in out, out
    code, _, err = run_cli(["datasets", "convert", tmp_path / "d.parquet", tmp_path / "mdir", "--format", "minari"])
    assert code == 0, err
    code, _, err = run_cli(["datasets", "convert", tmp_path / "mdir", tmp_path / "back.h5"])
    assert code == 0, err
    assert_same(ds, load_dataset(tmp_path / "back.h5"))
    man = json.loads(manifest_path(tmp_path / "d.parquet").read_text())
    assert man["kind"] == "dataset" and man["inputs"]["input"]["sha256"] == sha256_file(src)
    assert man["config"]["command"] == "datasets convert" and man["config"]["format"] == "parquet"
    assert (tmp_path / "mdir" / "manifest.json").exists()
    assert json.loads((tmp_path / "back.h5.manifest.json").read_text())["inputs"]["input"]["sha256"] == \
        sha256_file(tmp_path / "mdir")


def test_convert_real_pickle_to_id_then_list_and_show(shared_dir, run_cli):
    pkl = shared_dir / "data" / "cs285-expert-rollouts" / "expert_data_Hopper-v4.pkl"
    code, _, err = run_cli(["datasets", "convert", pkl, "hopper/target/cs285-expert-v0"])
    assert code == 0, err
    assert ids.dataset_path("hopper/target/cs285-expert-v0").exists()
    code, out, _ = run_cli(["datasets", "list"])
    assert code == 0 and "hopper/target/cs285-expert-v0" in out and "2,000" in out and "KB" in out
    code, out, err = run_cli(["datasets", "show", "hopper/target/cs285-expert-v0"])
    assert code == 0, err
    for s in ("manifest", "dataset", "fingerprint check", "ok", "input.input", "sha256",
              "11 / 3", "0 / 2", "Hopper-v4"):
        assert s in out, s


def test_show_detects_changed_data(tmp_path, run_cli):
    p = save_dataset(multi_episode(), "toy/source/medium-v0")
    with h5py.File(p, "a") as f:
        f["rewards"][0] = 123.0
    code, out, _ = run_cli(["datasets", "show", "toy/source/medium-v0"])
    assert code == 0 and "MISMATCH" in out


def test_list_empty_and_minari(tmp_path, run_cli, monkeypatch):
    code, out, _ = run_cli(["datasets", "list"])
    assert code == 0 and "no datasets" in out
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    save_dataset(multi_episode(), "minari:toy/expert-v0")
    code, out, _ = run_cli(["datasets", "list", "--minari"])
    assert code == 0 and "minari:toy/expert-v0" in out and "18" in out
    code, out, _ = run_cli(["datasets", "info", "minari:toy/expert-v0"])
    assert code == 0 and "minari" in out


@pytest.mark.parametrize("args,msg", [
    (["datasets", "info", "{tmp}/nope.hdf5"], "no such file"),
    (["datasets", "info", "{tmp}/bad.hdf5"], "missing HDF5 key(s) actions, rewards, terminals"),
    (["datasets", "convert", "{tmp}/good.hdf5", "{tmp}/out.csv"], "unknown dataset format '.csv'"),
    (["datasets", "convert", "{tmp}/good.hdf5", "{tmp}/out.parquet", "--format", "zip"],
     "unknown dataset format 'zip'"),
    (["datasets", "show", "toy/none-v0"], "no such file"),
])
def test_bad_input_is_one_error_line(tmp_path, run_cli, args, msg):
    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f["observations"] = [[0.0]]
    save_dataset(multi_episode(), tmp_path / "good.hdf5")
    code, out, err = run_cli([a.replace("{tmp}", str(tmp_path)) for a in args])
    assert_one_error_line(code, err, msg)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.parquet").exists()
