"""``xcurate domains list`` / ``xcurate domains show``."""

from __future__ import annotations

from conftest import assert_one_error_line


def test_list_all_and_filtered(run_cli):
    code, out, _ = run_cli(["domains", "list"])
    assert code == 0
    for name in ("hopper-friction-0.5", "ant-gravity-2.0", "walker2d-kinematic-footjnt-hard", "ant-morph-otdf"):
        assert name in out
    assert "99 domains" in out and "J_expert" in out
    code, out, _ = run_cli(["domains", "list", "--robot", "hopper", "--family", "kinematic"])
    assert code == 0 and "7 domains" in out
    assert "hopper-kinematic-legjnt-easy" in out and "range of leg_joint x 0.8" in out
    assert "walker2d" not in out and "hopper-friction" not in out


def test_show_prints_edits_and_references(run_cli):
    code, out, _ = run_cli(["domains", "show", "hopper-kinematic-otdf"])
    assert code == 0
    assert "thigh_joint" in out and "-150 0" in out and "-0.15 0" in out and "-18 18" in out
    assert "references (measured):" in out
    code, out, _ = run_cli(["domains", "show", "hopper-friction-0.1"])
    assert code == 0 and "floor" in out and "(inherited)" in out and "0.09 0.0005" in out
    code, out, _ = run_cli(["domains", "show", "ant"])
    assert code == 0 and "no XML edits" in out


def test_unknown_names_give_one_line_errors(run_cli):
    code, out, err = run_cli(["domains", "show", "hoper-friction-0.5"])
    assert_one_error_line(code, err, "did you mean hopper-friction-0.5")
    code, _, err = run_cli(["domains", "list", "--family", "wind"])
    assert_one_error_line(code, err, "unknown family")


def test_show_states_changed_definitions(run_cli):
    code, out, _ = run_cli(["domains", "show", "hopper-morph-torso-easy"])
    assert code == 0 and "note: changed" in out and "hopper-morph-torsolength-easy" in out
    code, out, _ = run_cli(["domains", "show", "halfcheetah-morph-otdf"])
    assert code == 0 and "halfcheetah-morph-xcurate" in out and "(removed)" in out and "0 0 0 -0.13 0 -0.15" in out
