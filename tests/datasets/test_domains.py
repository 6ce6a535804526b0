"""Domain registry: names, building, and that every shift changes the model as intended."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from xcurate.datasets.domains import (
    KINEMATIC_PARTS,
    LEVELS,
    ROBOTS,
    SCALE_FACTORS,
    Domain,
    get_domain,
    list_domains,
)
from xcurate.errors import ConfigError

EXPECTED = ["hopper-friction-0.5", "ant-gravity-2.0", "walker2d-kinematic-footjnt-hard",
            "hopper-kinematic-legjnt-easy", "ant-morph-alllegs-medium", "hopper-morph-torso-hard",
            "hopper-morph-foot-easy", "halfcheetah-morph-torso-easy", "walker2d-morph-thigh-medium",
            "halfcheetah-kinematic-otdf", "hopper-kinematic-otdf", "walker2d-kinematic-otdf",
            "ant-kinematic-otdf", "halfcheetah-morph-otdf", "ant-morph-otdf",
            "halfcheetah-kinematic-thighjnt-medium", "ant-kinematic-hipjnt-hard", "ant-kinematic-anklejnt-easy",
            "halfcheetah-friction-0.1", "walker2d-gravity-5.0"]


def _model(name: str):
    return get_domain(name).make_model()


def _geom(m, name: str) -> int:
    return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, name)


def _joint(m, name: str) -> int:
    return mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)


def test_registry_has_the_named_domains():
    names = {d.name for d in list_domains()}
    assert set(EXPECTED) <= names
    for r in ROBOTS:
        assert r in names
        for f in SCALE_FACTORS:
            assert f"{r}-friction-{f}" in names and f"{r}-gravity-{f}" in names
        for part in KINEMATIC_PARTS[r]:
            for lv in LEVELS:
                assert f"{r}-kinematic-{part}-{lv}" in names
    assert len(names) == 99
    assert {d.family for d in list_domains(robot="ant")} == {"none", "friction", "gravity", "kinematic", "morph"}
    assert all(d.family == "gravity" for d in list_domains(family="gravity"))


def test_unknown_names_raise_with_suggestions():
    with pytest.raises(ConfigError, match="did you mean hopper-friction-0.5"):
        get_domain("hoper-friction-0.5")
    with pytest.raises(ConfigError, match="unknown robot"):
        list_domains(robot="cheetah")


def test_domains_are_frozen_hashable_and_lazy(tmp_path, monkeypatch):
    monkeypatch.setenv("XCURATE_DATA", str(tmp_path))
    d = Domain(name="x", robot="hopper", family="gravity", edits=(("gravity", 2.0),))
    assert hash(d) == hash(Domain(name="x", robot="hopper", family="gravity", edits=(("gravity", 2.0),)))
    with pytest.raises(AttributeError):
        d.name = "y"  # type: ignore[misc]
    assert not (tmp_path / "domains").exists()  # constructing writes nothing
    p = d.xml_path()
    assert p.is_absolute() and p.parent == (tmp_path / "domains").resolve() and p.exists()
    assert {get_domain("hopper-gravity-2.0"), get_domain("hopper-gravity-2.0")} == {get_domain("hopper-gravity-2.0")}


def test_every_domain_builds_and_steps():
    rng = np.random.default_rng(0)
    for d in list_domains():
        src = d.source.make_model()
        m = d.make_model()
        assert (m.nq, m.nv, m.nu) == (src.nq, src.nv, src.nu), d.name
        data = mujoco.MjData(m)
        mujoco.mj_resetData(m, data)
        data.ctrl[:] = rng.uniform(-1, 1, m.nu)
        mujoco.mj_step(m, data, nstep=d.frame_skip)
        assert np.isfinite(data.qpos).all(), d.name
    # the Gymnasium env of a few domains per family: right spaces, steps, uses the edited XML
    for name in ["hopper", "ant-friction-0.1", "walker2d-kinematic-otdf", "halfcheetah-morph-torso-hard",
                 "ant-morph-alllegs-hard", "hopper-gravity-5.0"]:
        d = get_domain(name)
        env = d.make_env()
        obs, _ = env.reset(seed=0)
        assert obs.shape == (d.obs_dim,) and env.action_space.shape == (d.act_dim,)
        obs, r, *_ = env.step(env.action_space.sample())
        assert obs.shape == (d.obs_dim,) and math.isfinite(r)
        np.testing.assert_array_equal(env.unwrapped.model.geom_size, d.make_model().geom_size)
        np.testing.assert_array_equal(env.unwrapped.model.geom_friction, d.make_model().geom_friction)
        env.close()


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_friction_scales_every_contact(robot):
    src = _model(robot)
    for f in SCALE_FACTORS:
        m = _model(f"{robot}-friction-{f}")
        np.testing.assert_allclose(m.geom_friction, src.geom_friction * float(f), rtol=1e-10)
        # the floor is scaled too, so the max() contact rule gives exactly f x the source friction
        floor = _geom(m, "floor")
        assert m.geom_friction[floor, 0] == pytest.approx(src.geom_friction[floor, 0] * float(f))
        np.testing.assert_array_equal(m.geom_size, src.geom_size)


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_gravity_scales(robot):
    src = _model(robot)
    for f in SCALE_FACTORS:
        m = _model(f"{robot}-gravity-{f}")
        np.testing.assert_allclose(m.opt.gravity, src.opt.gravity * float(f))
        np.testing.assert_array_equal(m.body_mass, src.body_mass)


@pytest.mark.parametrize("robot", list(ROBOTS))
def test_kinematic_scales_joint_ranges(robot):
    src = _model(robot)
    for part, joints in KINEMATIC_PARTS[robot].items():
        for lv, f in LEVELS.items():
            m = _model(f"{robot}-kinematic-{part}-{lv}")
            ids = [_joint(m, j) for j in joints]
            np.testing.assert_allclose(m.jnt_range[ids], src.jnt_range[ids] * f, rtol=1e-10)
            w_src = np.diff(src.jnt_range[ids], axis=1)
            np.testing.assert_allclose(np.diff(m.jnt_range[ids], axis=1), w_src * f, rtol=1e-10)
            others = [j for j in range(m.njnt) if j not in ids]
            np.testing.assert_array_equal(m.jnt_range[others], src.jnt_range[others])


def test_otdf_kinematic_shifts():
    src, m = _model("hopper"), _model("hopper-kinematic-otdf")
    t, f = _joint(m, "thigh_joint"), _joint(m, "foot_joint")
    assert m.jnt_range[t, 0] == pytest.approx(src.jnt_range[t, 0] * 0.001) and m.jnt_range[t, 1] == src.jnt_range[t, 1]
    np.testing.assert_allclose(m.jnt_range[f], src.jnt_range[f] * 0.4)
    src, m = _model("ant"), _model("ant-kinematic-otdf")
    for j in ("hip_1", "hip_2"):
        np.testing.assert_allclose(m.jnt_range[_joint(m, j)], src.jnt_range[_joint(m, j)] * 0.01)
    for j in ("hip_3", "hip_4"):
        np.testing.assert_array_equal(m.jnt_range[_joint(m, j)], src.jnt_range[_joint(m, j)])
    src, m = _model("walker2d"), _model("walker2d-kinematic-otdf")
    np.testing.assert_allclose(m.jnt_range[_joint(m, "foot_joint")], src.jnt_range[_joint(m, "foot_joint")] * 0.01)
    np.testing.assert_array_equal(m.jnt_range[_joint(m, "foot_left_joint")],
                                  src.jnt_range[_joint(m, "foot_left_joint")])
    src, m = _model("halfcheetah"), _model("halfcheetah-kinematic-otdf")
    np.testing.assert_allclose(m.jnt_range[_joint(m, "bthigh")], src.jnt_range[_joint(m, "bthigh")] * 0.01)


def test_morphology_changes_sizes_and_masses():
    # hopper foot / torso half-lengths
    src = _model("hopper")
    for lv, f in (("easy", 0.8), ("medium", 0.6), ("hard", 0.4)):
        m = _model(f"hopper-morph-foot-{lv}")
        g = _geom(m, "foot_geom")
        assert m.geom_size[g, 1] == pytest.approx(src.geom_size[g, 1] * f)
        assert m.body_mass.sum() < src.body_mass.sum()
    for lv, f in (("easy", 1.2), ("medium", 1.6), ("hard", 2.0)):
        m = _model(f"hopper-morph-torso-{lv}")
        g = _geom(m, "torso_geom")
        assert m.geom_size[g, 1] == pytest.approx(src.geom_size[g, 1] * f)
        assert m.body_mass[1] > src.body_mass[1]
    # walker2d: thigh 0.45 -> T, shin 0.5 -> 0.95 - T on both legs
    src = _model("walker2d")
    for lv, t in (("easy", 0.55), ("medium", 0.70), ("hard", 0.85)):
        m = _model(f"walker2d-morph-thigh-{lv}")
        for side in ("", "_left"):
            assert 2 * m.geom_size[_geom(m, f"thigh{side}_geom"), 1] == pytest.approx(t)
            assert 2 * m.geom_size[_geom(m, f"leg{side}_geom"), 1] == pytest.approx(0.95 - t)
    # ant lower legs: capsule half-length 0.4*sqrt(2)/2 -> L*sqrt(2)/2
    src = _model("ant")
    for lv, length in (("easy", 0.32), ("medium", 0.2), ("hard", 0.08)):
        m = _model(f"ant-morph-alllegs-{lv}")
        for g in ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom"):
            assert m.geom_size[_geom(m, g), 1] == pytest.approx(src.geom_size[_geom(m, g), 1] * length / 0.4)
        assert m.body_mass.sum() < src.body_mass.sum()
    # halfcheetah torso half-length 0.5 -> h (total mass stays 14: Gymnasium's settotalmass)
    src = _model("halfcheetah")
    for lv, h in (("easy", 0.4), ("medium", 0.25), ("hard", 0.1)):
        m = _model(f"halfcheetah-morph-torso-{lv}")
        assert m.geom_size[_geom(m, "torso"), 1] == pytest.approx(h)
        assert m.body_mass.sum() == pytest.approx(src.body_mass.sum())
        assert not np.allclose(m.body_mass, src.body_mass)


def test_changes_record_old_and_new_values():
    ch = get_domain("hopper-kinematic-otdf").changes()
    assert [(c.name, c.old, c.new) for c in ch] == [("thigh_joint", "-150 0", "-0.15 0"),
                                                    ("foot_joint", "-45 45", "-18 18")]
    assert get_domain("hopper").changes() == []
    fr = {c.name: c for c in get_domain("hopper-friction-0.1").changes()}
    assert fr["floor"].old == "" and fr["floor"].new.startswith("0.1 ")


def test_references_and_normalize():
    d = get_domain("hopper")
    ref = d.references
    assert ref is not None, "references.json must hold the unshifted robots"
    lo, hi = ref
    assert hi > lo
    assert d.normalize(lo) == pytest.approx(0.0) and d.normalize(hi) == pytest.approx(100.0)
    np.testing.assert_allclose(d.normalize(np.array([lo, hi])), [0.0, 100.0])
    for dom in list_domains():
        if dom.references is not None:
            assert all(math.isfinite(v) for v in dom.references)


def _segment(name: str, geom: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Global end points (top/first, bottom/second) and radius of a capsule at the rest pose."""
    m = _model(name)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    g = _geom(m, geom)
    axis = d.geom_xmat[g].reshape(3, 3)[:, 2] * m.geom_size[g, 1]
    return d.geom_xpos[g] + axis, d.geom_xpos[g] - axis, float(m.geom_size[g, 0])


def _zs(name: str, geom: str) -> list[float]:
    a, b, _ = _segment(name, geom)
    return sorted([float(a[2]), float(b[2])], reverse=True)


def test_otdf_morphologies_are_otdfs_published_geometry():
    # Walker2d: OTDF's global coordinates (right thigh 1.05 -> 1.045, right leg 1.045 -> 0.3, foot at 0.3)
    assert _zs("walker2d", "thigh_geom") == pytest.approx([1.05, 0.6])  # the base, as in OTDF's table
    assert _zs("walker2d-morph-otdf", "thigh_geom") == pytest.approx([1.05, 1.045])
    assert _zs("walker2d-morph-otdf", "leg_geom") == pytest.approx([1.045, 0.3])
    assert _zs("walker2d-morph-otdf", "foot_geom") == pytest.approx([0.3, 0.3])
    for g, z in (("thigh_left_geom", [1.05, 0.6]), ("leg_left_geom", [0.6, 0.1]), ("foot_left_geom", [0.1, 0.1])):
        assert _zs("walker2d-morph-otdf", g) == pytest.approx(z)  # left leg unchanged
    m = _model("walker2d-morph-otdf")
    leg, foot = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "leg"), mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY,
                                                                                          "foot")
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    # the knee and ankle hinges sit at the new segment ends
    assert d.xanchor[_joint(m, "leg_joint")][2] == pytest.approx(1.045)
    assert d.xanchor[_joint(m, "foot_joint")][2] == pytest.approx(0.3)
    assert d.xpos[leg][2] == pytest.approx((1.045 + 0.3) / 2) and d.xpos[foot][2] == pytest.approx(0.2)
    # Hopper: torso radius .125, thigh radius .04, lengths kept
    for g, r in (("torso_geom", 0.125), ("thigh_geom", 0.04)):
        a, b, rad = _segment("hopper-morph-otdf", g)
        a0, b0, _ = _segment("hopper", g)
        assert rad == pytest.approx(r)
        np.testing.assert_allclose([a, b], [a0, b0], atol=1e-12)
    # Ant: front ankle geoms end at +-0.1 +0.1 from their body (length 0.141); back legs unchanged
    for name, length in (("ant-morph-otdf", 0.1), ("ant", 0.4)):
        m = _model(name)
        for g in ("left_ankle_geom", "right_ankle_geom"):
            assert 2 * m.geom_size[_geom(m, g), 1] == pytest.approx(length * math.sqrt(2))
        assert 2 * m.geom_size[_geom(m, "third_ankle_geom"), 1] == pytest.approx(0.4 * math.sqrt(2))
    # HalfCheetah: thighs ~0 long, back shin (0,0)->(-.13,-.15), back foot .07 long at its end,
    # front shin (0,0)->(.01,-.16) with the front foot at its end (positions relative to the hips)
    hips = {"b": np.array([-0.5, 0.0, 0.7]), "f": np.array([0.5, 0.0, 0.7])}
    for leg, shin_end in (("b", (-0.13, -0.15)), ("f", (0.01, -0.16))):
        a, b, _ = _segment("halfcheetah-morph-otdf", f"{leg}thigh")
        assert np.linalg.norm(a - b) < 2e-4 and np.linalg.norm(a - hips[leg]) < 2e-4
        a, b, _ = _segment("halfcheetah-morph-otdf", f"{leg}shin")
        assert {tuple(np.round(a - hips[leg], 3)), tuple(np.round(b - hips[leg], 3))} >= {
            (round(shin_end[0], 3), 0.0, round(shin_end[1], 3))}
        m = _model("halfcheetah-morph-otdf")
        d = mujoco.MjData(m)
        mujoco.mj_forward(m, d)
        foot = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"{leg}foot")
        np.testing.assert_allclose(d.xpos[foot] - hips[leg], [shin_end[0], 0, shin_end[1]], atol=2e-4)
    m, src = _model("halfcheetah-morph-otdf"), _model("halfcheetah")
    assert 2 * m.geom_size[_geom(m, "bfoot"), 1] == pytest.approx(0.14)
    assert m.geom_size[_geom(m, "ffoot"), 1] == pytest.approx(src.geom_size[_geom(src, "ffoot"), 1])
    assert m.body_mass.sum() == pytest.approx(14.0) and not np.allclose(m.body_mass, src.body_mass)


def test_xcurate_morph_keeps_the_earlier_definition():
    m, src = _model("halfcheetah-morph-xcurate"), _model("halfcheetah")
    for g in ("bthigh", "fthigh"):
        assert m.geom_size[_geom(m, g), 1] == pytest.approx(0.5 * src.geom_size[_geom(src, g), 1])
    a, b, r = _segment("hopper-morph-xcurate", "torso_geom")
    assert r == pytest.approx(0.075) and np.linalg.norm(a - b) == pytest.approx(0.6)
    assert _zs("walker2d-morph-xcurate", "thigh_geom") == pytest.approx([1.05, 0.35])
    assert "xcurate's earlier" in get_domain("ant-morph-xcurate").description


def test_odrl_morphology_variants():
    # HalfCheetah thigh: thigh segments from the hip to the published ends, shins attached there
    ends = {"easy": ((0.11, -0.11), (-0.09, -0.1)), "medium": ((0.08, -0.08), (-0.07, -0.08)),
            "hard": ((0.02, -0.02), (-0.04, -0.05))}
    for lv, (back, front) in ends.items():
        name = f"halfcheetah-morph-thigh-{lv}"
        m = _model(name)
        d = mujoco.MjData(m)
        mujoco.mj_forward(m, d)
        for leg, hip, end in (("b", np.array([-0.5, 0, 0.7]), back), ("f", np.array([0.5, 0, 0.7]), front)):
            a, b, _ = _segment(name, f"{leg}thigh")
            got = sorted([tuple(np.round(a - hip, 6)), tuple(np.round(b - hip, 6))])
            assert got == sorted([(0.0, 0.0, 0.0), (end[0], 0.0, end[1])])
            shin = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"{leg}shin")
            np.testing.assert_allclose(d.xpos[shin] - hip, [end[0], 0, end[1]], atol=1e-9)
    # Walker2d and Hopper torso: top 1.45 -> 1.53/1.69/1.85, radius .05 -> .075/.1/.125, bottom (hip) kept
    for lv, top, r in (("easy", 1.53, 0.075), ("medium", 1.69, 0.1), ("hard", 1.85, 0.125)):
        for robot in ("walker2d", "hopper"):
            name = f"{robot}-morph-torso-{lv}"
            assert _zs(name, "torso_geom") == pytest.approx([top, 1.05]), name
            assert _segment(name, "torso_geom")[2] == pytest.approx(r), name
        # the earlier hopper torso (length only) lives on as torsolength
        assert _zs(f"hopper-morph-torsolength-{lv}", "torso_geom") == pytest.approx([top, 1.05])
        assert _segment(f"hopper-morph-torsolength-{lv}", "torso_geom")[2] == pytest.approx(0.05)
    # Ant halflegs: front lower legs only
    src = _model("ant")
    for lv, length in (("easy", 0.32), ("medium", 0.2), ("hard", 0.08)):
        m = _model(f"ant-morph-halflegs-{lv}")
        for g in ("left_ankle_geom", "right_ankle_geom"):
            assert 2 * m.geom_size[_geom(m, g), 1] == pytest.approx(length * math.sqrt(2))
        for g in ("third_ankle_geom", "fourth_ankle_geom"):
            assert m.geom_size[_geom(m, g), 1] == pytest.approx(src.geom_size[_geom(src, g), 1])
    for name in ("hopper-morph-torso-easy", "walker2d-morph-torso-hard", "ant-morph-halflegs-medium",
                 "halfcheetah-morph-thigh-hard", "halfcheetah-morph-otdf"):
        assert "ODRL" in get_domain(name).description or "OTDF" in get_domain(name).description
