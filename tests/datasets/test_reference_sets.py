"""Normalisation reference sets: measured (default), odrl, otdf, d4rl."""

from __future__ import annotations

import json

import pytest

from xcurate.datasets.domains import REFERENCES_FILE, get_domain, list_domains
from xcurate.datasets.reference_sets import REFERENCE_SETS, covered_domains
from xcurate.errors import ConfigError


def test_published_values_normalise_to_0_and_100():
    cases = [("halfcheetah-friction-0.5", "odrl", -280.178953, 7357.0712890625),
             ("walker2d-gravity-2.0", "odrl", 10.079455055289959, 5056.445),
             ("ant-morph-halflegs-hard", "odrl", -325.6, 5139.832),
             ("hopper-kinematic-footjnt-easy", "odrl", -26.3360015397715, 3234.3),
             ("halfcheetah-morph-otdf", "otdf", -280.178953, 9713.59),
             ("walker2d-kinematic-otdf", "otdf", 1.629008, 3257.51),
             ("ant-gravity-0.5", "otdf", -325.6, 4317.065),
             ("hopper-friction-2.0", "d4rl", -20.272305, 3234.3),
             ("ant", "d4rl", -325.6, 3879.7)]
    for name, ref, lo, hi in cases:
        d = get_domain(name)
        assert d.references_in(ref) == pytest.approx((lo, hi)), (name, ref)
        assert d.normalize(lo, reference=ref) == pytest.approx(0.0)
        assert d.normalize(hi, reference=ref) == pytest.approx(100.0)
        assert d.normalize((lo + hi) / 2, ref) == pytest.approx(50.0)


def test_measured_is_the_default_and_differs_from_published():
    d = get_domain("halfcheetah-friction-0.5")
    lo, hi = d.references
    assert d.normalize(hi) == pytest.approx(100.0) == d.normalize(hi, reference="measured")
    assert d.normalize(hi, reference="odrl") != pytest.approx(100.0)


def test_coverage_of_each_set():
    assert REFERENCE_SETS[0] == "measured"
    assert len(covered_domains("d4rl")) == len(list_domains())
    otdf = covered_domains("otdf")
    assert sorted(otdf) == sorted(f"{r}-{s}" for r in ("halfcheetah", "hopper", "walker2d", "ant")
                                  for s in ("kinematic-otdf", "morph-otdf", "gravity-0.5"))
    odrl = set(covered_domains("odrl"))
    assert len(odrl) == 80  # per robot: 4 friction + 4 gravity + 6 kinematic + 6 ODRL morphology
    for name in ("hopper", "hopper-morph-otdf", "hopper-morph-torsolength-easy", "ant-morph-xcurate",
                 "walker2d-kinematic-otdf"):
        assert name not in odrl


def test_a_set_lacking_the_domain_is_a_one_line_error():
    with pytest.raises(ConfigError, match="reference set 'odrl' has no values for domain 'hopper'") as e:
        get_domain("hopper").normalize(100.0, reference="odrl")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="reference set 'otdf' has no values"):
        get_domain("hopper-friction-0.5").normalize(1.0, "otdf")
    with pytest.raises(ConfigError, match="unknown reference set 'paper'"):
        get_domain("hopper").normalize(1.0, "paper")


def test_measured_records_name_their_policies():
    recs = json.loads(REFERENCES_FILE.read_text())["domains"]
    assert len(recs) == len(list_domains())
    for name, rec in recs.items():
        assert rec["expert_policy"].startswith(("sb3:shared/policies/", "builtin:")), name  # a named agent
        if "expert_candidates" in rec:  # the winner is the best candidate
            assert rec["j_expert"] == pytest.approx(max(rec["expert_candidates"].values()), abs=0.01), name
        assert rec["random_policy"].startswith("uniform random actions"), name


def test_cli_lists_and_shows_sets(run_cli):
    code, out, _ = run_cli(["domains", "list", "--reference", "otdf"])
    assert code == 0 and "12 domains in reference set 'otdf'" in out and "9713.6" in out
    code, out, _ = run_cli(["domains", "show", "halfcheetah-friction-0.5"])
    assert code == 0 and "references (odrl): J_min -280.2, J_max 7357.1" in out
    assert "references (d4rl)" in out and "references (otdf)" not in out
    code, _, err = run_cli(["domains", "list", "--reference", "nope"])
    assert code == 1 and "unknown reference set" in err and len(err.strip().splitlines()) == 1
