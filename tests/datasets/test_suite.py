"""Suite builder: a tiny suite builds, is resumable, falls back to builtin policies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xcurate.datasets.suite import SuiteConfig, build_suite, default_targets, plan_suite, policy_for
from xcurate.errors import ConfigError


def _tiny(root, **kw) -> SuiteConfig:
    base = dict(robots=["hopper"], shifts=["friction-0.5"], source_size=150, target_size=60, root=str(root))
    base.update(kw)
    return SuiteConfig(**base)


def test_default_targets_cover_three_families():
    from xcurate.datasets.domains import get_domain

    for robot in ("halfcheetah", "hopper", "walker2d", "ant"):
        names = default_targets(robot)
        fams = {get_domain(n).family for n in names}
        assert len(fams) == 3, (robot, fams)
        assert all(get_domain(n).robot == robot for n in names)


def test_plan_ids_and_errors(tmp_path):
    plan = plan_suite(_tiny(tmp_path, shifts=None))
    ids = [e.dataset_id for e in plan]
    assert ids[:4] == ["hopper/source/random-v0", "hopper/source/medium-v0", "hopper/source/expert-v0",
                       "hopper/source/medium-expert-v0"]
    assert "hopper-morph-torso-medium/target/expert-v0" in ids
    assert len(ids) == 4 + 3 * 2
    assert plan[3].size == 300 and plan[4].size == 60
    assert plan[0].path == str(tmp_path / "datasets/hopper/source/random-v0/data.hdf5")
    with pytest.raises(ConfigError, match="unknown robot"):
        plan_suite(_tiny(tmp_path, robots=["cheetah"]))
    with pytest.raises(ConfigError, match="unknown domain"):
        plan_suite(_tiny(tmp_path, shifts=["friction-0.33"]))
    with pytest.raises(ConfigError, match="source_size"):
        plan_suite(_tiny(tmp_path, source_size=0))


def test_tiny_suite_builds_and_resumes(tmp_path, shared_dir):
    from xcurate.datasets.io import load_dataset

    cfg = _tiny(tmp_path)
    entries = build_suite(cfg, progress=False, log=None)
    assert [e.status for e in entries] == ["built"] * len(entries) == ["built"] * 6
    assert all(e.policy_origin in ("zoo", "random", "concat") for e in entries)
    me = load_dataset(tmp_path / "datasets/hopper/source/medium-expert-v0/data.hdf5")
    med = load_dataset(tmp_path / "datasets/hopper/source/medium-v0/data.hdf5")
    exp = load_dataset(tmp_path / "datasets/hopper/source/expert-v0/data.hdf5")
    assert len(me) == 300 and me.metadata["quality"] == "medium-expert"
    assert me.metadata["n_transitions"] == 300 and me.metadata["policy_origin"] == "concat"
    assert med.metadata["return_mean"] != me.metadata["return_mean"]
    np.testing.assert_array_equal(me.observations, np.concatenate([med.observations, exp.observations]))
    tgt = load_dataset(tmp_path / "datasets/hopper-friction-0.5/target/expert-v0/data.hdf5")
    assert len(tgt) == 60 and tgt.metadata["domain"] == "hopper-friction-0.5" and tgt.has_state
    assert "trpo" in tgt.metadata["policy"]
    # second run: everything is complete and skipped
    again = build_suite(cfg, progress=False, log=None)
    assert [e.status for e in again] == ["skipped"] * 6
    # remove one dataset: only that one is rebuilt, identically (seeded)
    p = tmp_path / "datasets/hopper/source/random-v0/data.hdf5"
    fp = load_dataset(p).fingerprint()
    p.unlink()
    third = build_suite(cfg, progress=False, log=None)
    assert [e.status for e in third].count("built") == 1
    assert load_dataset(p).fingerprint() == fp
    man = json.loads((tmp_path / "datasets/suite_manifest.json").read_text())
    assert man["kind"] == "suite" and len(man["entries"]) == 6
    with pytest.raises(ConfigError, match="--overwrite"):
        build_suite(_tiny(tmp_path, target_size=61), progress=False, log=None)


def test_builtin_fallback_without_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("XCURATE_SHARED", str(tmp_path / "no-shared-here"))
    spec, origin, note = policy_for("hopper", "medium")
    assert origin == "builtin" and "../shared/policies absent" in note
    cfg = _tiny(tmp_path, source_qualities=["random", "medium"], target_qualities=["medium"])
    entries = build_suite(cfg, progress=False, log=None)
    assert [e.status for e in entries] == ["built"] * 3
    assert entries[1].policy == "builtin:hopper-medium" and "absent" in entries[1].note


def test_cli_suite_build_and_plan(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("XCURATE_SHARED", str(tmp_path / "none"))
    monkeypatch.setenv("COLUMNS", "250")
    args = ["suite", "build", "--robots", "hopper", "--shifts", "hopper-gravity-2.0", "--source-size", "80",
            "--target-size", "40", "--root", tmp_path / "root", "--no-progress"]
    code, out, err = run_cli(args)
    assert code == 0, err
    assert (tmp_path / "root/datasets/hopper-gravity-2.0/target/medium-v0/data.hdf5").is_file()
    code, out, err = run_cli(args)
    assert code == 0 and "skipped" in out
    code, out, err = run_cli(["suite", "plan", "--robots", "hopper,ant"])
    assert code == 0 and "ant-morph-alllegs-medium/target/expert-v0" in out and "planned" in out


def test_cli_policies_list(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = run_cli(["policies", "list"])
    assert code == 0, err
    assert "builtin:hopper-medium" in out and "builtin ARS" in out
