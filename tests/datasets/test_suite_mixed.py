"""Suite: the mixed-dynamics source (unshifted + shifted domains, several policies, provenance per row)."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.datasets.suite import SuiteConfig, _mixed_shares, build_suite, plan_suite
from xcurate.errors import ConfigError


def _cfg(root, **kw) -> SuiteConfig:
    base = dict(robots=["hopper"], shifts=["friction-0.5", "gravity-2.0"], source_size=200, target_size=40,
                root=str(root), source_qualities=[], target_qualities=["medium"], mixed=True,
                mixed_qualities=["random", "medium"], mixed_shift_fraction=0.2)
    base.update(kw)
    return SuiteConfig(**base)


def test_mixed_shares_add_up():
    assert _mixed_shares(200, 2, 2, 0.2) == [[60, 60], [20, 20], [20, 20]]
    assert sum(map(sum, _mixed_shares(1001, 3, 3, 0.1))) == 1001


def test_plan_mixed_and_errors(tmp_path):
    plan = plan_suite(_cfg(tmp_path))
    ids = [e.dataset_id for e in plan]
    assert ids[:7] == ["hopper/source/mixed-parts/hopper-random-v0", "hopper/source/mixed-parts/hopper-medium-v0",
                       "hopper/source/mixed-parts/hopper-friction-0.5-random-v0",
                       "hopper/source/mixed-parts/hopper-friction-0.5-medium-v0",
                       "hopper/source/mixed-parts/hopper-gravity-2.0-random-v0",
                       "hopper/source/mixed-parts/hopper-gravity-2.0-medium-v0", "hopper/source/mixed-v0"]
    assert plan[6].size == 200 and plan[6].parts == ids[:6] and [e.size for e in plan[:6]] == [60, 60] + [20] * 4
    with pytest.raises(ConfigError, match="leave no rows"):
        plan_suite(_cfg(tmp_path, mixed_shift_fraction=0.5))
    with pytest.raises(ConfigError, match="not a shifted domain of hopper"):
        plan_suite(_cfg(tmp_path, mixed_domains=["walker2d-friction-0.5"]))
    with pytest.raises(ConfigError, match="unknown mixed-source quality"):
        plan_suite(_cfg(tmp_path, mixed_qualities=["medium-expert"]))


def test_mixed_source_builds_with_provenance_and_store_sql(tmp_path, monkeypatch):
    monkeypatch.setenv("XCURATE_SHARED", str(tmp_path / "no-shared"))  # builtin policies: fast and always there
    from xcurate.datasets.io import load_dataset
    from xcurate.datasets.ops import provenance_labels
    from xcurate.scoring.store import Store

    entries = build_suite(_cfg(tmp_path), progress=False, log=None)
    assert all(e.status == "built" for e in entries), [(e.dataset_id, e.status, e.note) for e in entries]
    mixed = load_dataset(tmp_path / "datasets/hopper/source/mixed-v0/data.hdf5")
    assert len(mixed) == 200 and mixed.has_state and mixed.metadata["domain"] == "mixed"
    dom = provenance_labels(mixed, "domain")
    assert {d: int((dom == d).sum()) for d in set(dom)} == {"hopper": 120, "hopper-friction-0.5": 40,
                                                             "hopper-gravity-2.0": 40}
    assert set(mixed.quality_labels()) == {"random", "medium"}
    pol = provenance_labels(mixed, "policy")
    assert set(pol[mixed.quality_labels() == "random"]) == {"random"}
    assert all("hopper-medium" in p for p in pol[mixed.quality_labels() == "medium"])
    # a target finds a slice of its own dynamics, and SQL sees where each row came from
    st = Store.create(tmp_path / "store", mixed, tmp_path / "datasets/hopper-gravity-2.0/target/medium-v0/data.hdf5",
                      domain="hopper-gravity-2.0")
    rows = st.query("SELECT domain, quality, count(*) n FROM scores GROUP BY ALL ORDER BY domain, quality").to_pylist()
    assert rows == [{"domain": "hopper", "quality": "medium", "n": 60}, {"domain": "hopper", "quality": "random", "n": 60},
                    {"domain": "hopper-friction-0.5", "quality": "medium", "n": 20},
                    {"domain": "hopper-friction-0.5", "quality": "random", "n": 20},
                    {"domain": "hopper-gravity-2.0", "quality": "medium", "n": 20},
                    {"domain": "hopper-gravity-2.0", "quality": "random", "n": 20}]
    # resumable: a second build skips everything
    assert {e.status for e in build_suite(_cfg(tmp_path), progress=False, log=None)} == {"skipped"}
    np.testing.assert_array_equal(mixed.transition_ids, np.arange(200))


def test_cli_suite_plan_mixed(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    code, out, err = run_cli(["suite", "plan", "--robots", "hopper", "--mixed", "--mixed-fraction", "0.05"])
    assert code == 0, err
    assert "hopper/source/mixed-v0" in out and "mixed-parts/hopper-morph-torso-medium-expert-v0" in out
    code, _, err = run_cli(["suite", "plan", "--robots", "hopper", "--mixed", "--mixed-fraction", "0.4"])
    assert code == 1 and "leave no rows" in err and len(err.strip().splitlines()) == 1
