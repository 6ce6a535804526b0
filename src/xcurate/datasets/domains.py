"""Source and shifted-dynamics target domains on Gymnasium v5 / MuJoCo 3+.

INTERFACE (stable; other modules rely on it):

    get_domain(name) -> Domain          # raises ConfigError for unknown names
    list_domains() -> list[Domain]
    Domain.name, .robot, .family, .level, .description
    Domain.env_id                        # e.g. "Hopper-v5"
    Domain.obs_dim, .act_dim
    Domain.make_env(**kwargs) -> gymnasium.Env    # v5 env with this domain's dynamics
    Domain.make_model() -> mujoco.MjModel         # the same dynamics, raw MuJoCo
    Domain.references -> (j_random, j_expert) or None
    Domain.normalize(returns, reference="measured") -> 100 * (J - J_random) / (J_expert - J_random)
    Domain.references_in(reference) -> (J_min, J_max) of a reference set or None

Additions (this module): ``Domain.edits`` (hashable tuple of XML edit operations, see
:mod:`xcurate.datasets.xml_edits`), ``Domain.xml_path()`` (the edited XML, written lazily to
``data_root()/domains``), ``Domain.changes()`` (edited attributes old -> new),
``Domain.frame_skip``, ``Domain.dt``, ``Domain.source`` (the unshifted robot domain),
``Domain.reference_info`` (the full stored record), :data:`FAMILIES`, :data:`LEVELS`.

Families (ODRL levels; REFERENCE §5):

- ``{robot}`` - unshifted Gymnasium v5 dynamics (family ``none``).
- ``{robot}-friction-{0.1,0.5,2.0,5.0}`` - every geom's friction x f, the floor included
  (MuJoCo takes the max over the two geoms of a contact, so scaling all geoms scales every
  contact's friction by exactly f; scaling only the robot makes f < 1 a no-op on Hopper).
- ``{robot}-gravity-{0.1,0.5,2.0,5.0}`` - gravity x g.
- ``{robot}-kinematic-{part}-{easy,medium,hard}`` - joint range bounds x 0.8 / 0.5 / 0.2 (so the
  width is x f) on HalfCheetah ``footjnt``/``thighjnt`` (both legs), Hopper ``footjnt``/``legjnt``,
  Walker2d ``footjnt``/``thighjnt`` (both legs), Ant ``anklejnt``/``hipjnt`` (all four legs).
- ``{robot}-morph-{part}-{easy,medium,hard}`` - body sizes: HalfCheetah ``torso`` half-length
  .5 -> .4/.25/.1 (legs and head re-attached at the new torso ends) and ODRL's ``thigh`` (both
  thighs become segments from the hip, shins re-attached at their ends); Hopper ``torso`` length
  x 1.2/1.6/2.0 and radius .05 -> .075/.1/.125 (ODRL; hip kept, torso extends upward),
  ``torsolength`` (xcurate's earlier torso: length only) and ``foot`` length x 0.8/0.6/0.4; Walker2d
  ``thigh`` 0.45 -> 0.55/0.70/0.85 with the shin 0.5 -> 0.4/0.25/0.1 (both legs, total leg length
  kept) and ODRL's ``torso`` (as Hopper's); Ant ``alllegs`` lower legs .4 -> .32/.2/.08 and ODRL's
  ``halflegs`` (the two front lower legs only).
- ``{robot}-kinematic-otdf`` - the OTDF/VGDF/DVDF kinematic shift (HalfCheetah back thigh range
  x 0.01; Hopper thigh lower bound x 0.001 and foot x 0.4; Walker2d right foot x 0.01; Ant front
  hips x 0.01).
- ``{robot}-morph-otdf`` - OTDF's published morphology geometry (REFERENCE §9, its
  ``envs/assets/*_morph.xml``) edited into Gymnasium's XMLs: HalfCheetah thighs ~0 long with
  shortened shins and back foot; Hopper torso radius .05 -> .125 and thigh radius .05 -> .04;
  Walker2d right thigh 0.45 -> 0.005 and right shin 0.5 -> 0.745 (OTDF's global coordinates
  converted to Gymnasium's local ones); Ant two front lower legs .4 -> .1.
- ``{robot}-morph-xcurate`` - xcurate's earlier ``-morph-otdf`` (made before OTDF's geometry was
  known): HalfCheetah both thigh capsules half as long; Hopper torso radius and length x 1.5;
  Walker2d right thigh 0.45 -> 0.70 with right shin 0.5 -> 0.25; Ant two front lower legs x 0.5.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xcurate.errors import ConfigError

_log = logging.getLogger(__name__)

ROBOTS: dict[str, dict[str, Any]] = {
    "halfcheetah": {"env_id": "HalfCheetah-v5", "obs_dim": 17, "act_dim": 6, "env_kwargs": {},
                    "xml": "half_cheetah.xml", "frame_skip": 5},
    "hopper": {"env_id": "Hopper-v5", "obs_dim": 11, "act_dim": 3, "env_kwargs": {},
               "xml": "hopper.xml", "frame_skip": 4},
    "walker2d": {"env_id": "Walker2d-v5", "obs_dim": 17, "act_dim": 6, "env_kwargs": {},
                 "xml": "walker2d_v5.xml", "frame_skip": 4},
    "ant": {"env_id": "Ant-v5", "obs_dim": 27, "act_dim": 8,
            "env_kwargs": {"include_cfrc_ext_in_observation": False}, "xml": "ant.xml", "frame_skip": 5},
}

#: Family names in display order.
FAMILIES = ("none", "friction", "gravity", "kinematic", "morph")
#: Multiplicative factors of the friction and gravity families.
SCALE_FACTORS = ("0.1", "0.5", "2.0", "5.0")
#: ODRL difficulty levels -> joint-range factor of the kinematic family.
LEVELS = {"easy": 0.8, "medium": 0.5, "hard": 0.2}

#: Kinematic body parts -> joints whose range is scaled.
KINEMATIC_PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "halfcheetah": {"footjnt": ("bfoot", "ffoot"), "thighjnt": ("bthigh", "fthigh")},
    "hopper": {"footjnt": ("foot_joint",), "legjnt": ("leg_joint",)},
    "walker2d": {"footjnt": ("foot_joint", "foot_left_joint"), "thighjnt": ("thigh_joint", "thigh_left_joint")},
    "ant": {"anklejnt": ("ankle_1", "ankle_2", "ankle_3", "ankle_4"), "hipjnt": ("hip_1", "hip_2", "hip_3", "hip_4")},
}

_ANT_LOWER_LEGS = ("left_ankle_geom", "right_ankle_geom", "third_ankle_geom", "fourth_ankle_geom")
_ANT_FRONT_LOWER_LEGS = ("left_ankle_geom", "right_ankle_geom")
_HOPPER_TORSO_HALF = 0.19999999999999996  # torso_geom half-length in hopper.xml


def _cheetah_torso(half: float) -> tuple[tuple, ...]:
    return (("scale_vec", "geom", "torso", "fromto", half / 0.5),
            ("set_vec", "body", "bthigh", "pos", 0, -half),
            ("set_vec", "body", "fthigh", "pos", 0, half),
            ("set_vec", "geom", "head", "pos", 0, half + 0.1))


def _hopper_torso(length_factor: float, radius_factor: float = 1.0) -> tuple[tuple, ...]:
    return (("scale_vec", "geom", "torso_geom", "size", (radius_factor, length_factor)),
            ("set_vec", "geom", "torso_geom", "pos", 2, (length_factor - 1.0) * _HOPPER_TORSO_HALF))


def _walker_leg(thigh: float, shin: float, sides: tuple[str, ...] = ("", "_left")) -> tuple[tuple, ...]:
    ops: list[tuple] = []
    for s in sides:
        ops += [("set_vec", "geom", f"thigh{s}_geom", "size", 1, thigh / 2),
                ("set_vec", "geom", f"thigh{s}_geom", "pos", 2, -thigh / 2),
                ("set_vec", "body", f"leg{s}", "pos", 2, -(thigh + shin / 2)),
                ("set_vec", "joint", f"leg{s}_joint", "pos", 2, shin / 2),
                ("set_vec", "geom", f"leg{s}_geom", "size", 1, shin / 2),
                ("set_vec", "body", f"foot{s}", "pos", 2, -(shin / 2 + 0.1))]
    return tuple(ops)


def _ant_legs(length: float, geoms: tuple[str, ...] = _ANT_LOWER_LEGS) -> tuple[tuple, ...]:
    return tuple(("scale_vec", "geom", g, "fromto", length / 0.4) for g in geoms)


def _capsule_fromto(geom: str, end: tuple[float, float], radius: str = ".046") -> tuple[tuple, ...]:
    """Redefine a HalfCheetah capsule as the segment from its body origin to ``end`` = (x, z)."""
    return (("set_attr", "geom", geom, "pos", None), ("set_attr", "geom", geom, "axisangle", None),
            ("set_attr", "geom", geom, "fromto", f"0 0 0 {end[0]:g} 0 {end[1]:g}"),
            ("set_attr", "geom", geom, "size", radius))


def _cheetah_thighs(back: tuple[float, float], front: tuple[float, float]) -> tuple[tuple, ...]:
    """ODRL's HalfCheetah ``thigh`` variant: thighs as segments from the hip, shins at their ends."""
    return (_capsule_fromto("bthigh", back) + (("set_attr", "body", "bshin", "pos", f"{back[0]:g} 0 {back[1]:g}"),)
            + _capsule_fromto("fthigh", front)
            + (("set_attr", "body", "fshin", "pos", f"{front[0]:g} 0 {front[1]:g}"),))


#: OTDF's published HalfCheetah morphology (REFERENCE §9): back thigh ~0 long, back shin a segment
#: to (-.13, -.15) with the foot there and 0.07 long; front thigh ~0 long, front shin a segment to
#: (.01, -.16) with the foot there.
_CHEETAH_OTDF = (_capsule_fromto("bthigh", (-0.0001, -0.0001))
                 + (("set_attr", "body", "bshin", "pos", "-0.0001 0 -0.0001"),)
                 + _capsule_fromto("bshin", (-0.13, -0.15))
                 + (("set_attr", "body", "bfoot", "pos", "-0.13 0 -0.15"),
                    ("set_attr", "geom", "bfoot", "size", "0.046 0.07"))
                 + _capsule_fromto("fthigh", (0.0001, 0.0001))
                 + (("set_attr", "body", "fshin", "pos", "0.0001 0 0.0001"),)
                 + _capsule_fromto("fshin", (0.01, -0.16))
                 + (("set_attr", "body", "ffoot", "pos", "0.01 0 -0.16"),))

#: ODRL torso radius factors (0.05 -> 0.075 / 0.1 / 0.125) and length factors per level.
_TORSO_LEVELS = (("easy", 1.2, 1.5), ("medium", 1.6, 2.0), ("hard", 2.0, 2.5))

#: Morphology parts -> level -> (edits, description).
MORPH_PARTS: dict[str, dict[str, dict[str, tuple[tuple, str]]]] = {
    "halfcheetah": {
        "torso": {lv: (_cheetah_torso(h), f"torso half-length 0.5 -> {h} (legs, head re-attached)")
                  for lv, h in (("easy", 0.4), ("medium", 0.25), ("hard", 0.1))},
        "thigh": {lv: (_cheetah_thighs(b, f), f"thighs become segments from the hip to back {b} / front {f} "
                                              "(x, z), shins re-attached there [ODRL]")
                  for lv, b, f in (("easy", (0.11, -0.11), (-0.09, -0.1)), ("medium", (0.08, -0.08), (-0.07, -0.08)),
                                   ("hard", (0.02, -0.02), (-0.04, -0.05)))},
    },
    "hopper": {
        "torso": {lv: (_hopper_torso(f, rf), f"torso length x {f}, radius 0.05 -> {0.05 * rf:g} "
                                             "(hip kept, extends upward) [ODRL]")
                  for lv, f, rf in _TORSO_LEVELS},
        "torsolength": {lv: (_hopper_torso(f), f"torso length x {f}, radius kept (hip kept, extends upward) "
                                               "[xcurate's earlier hopper-morph-torso]")
                        for lv, f, _ in _TORSO_LEVELS},
        "foot": {lv: ((("scale_vec", "geom", "foot_geom", "size", (None, f)),), f"foot length x {f}")
                 for lv, f in (("easy", 0.8), ("medium", 0.6), ("hard", 0.4))},
    },
    "walker2d": {
        "thigh": {lv: (_walker_leg(t, s), f"thighs 0.45 -> {t}, shins 0.5 -> {s} (both legs)")
                  for lv, t, s in (("easy", 0.55, 0.40), ("medium", 0.70, 0.25), ("hard", 0.85, 0.10))},
        # the walker torso capsule has the same half-length (0.2) as the hopper's
        "torso": {lv: (_hopper_torso(f, rf), f"torso top 1.45 -> {1.05 + 0.4 * f:.2f} (length x {f}), "
                                             f"radius 0.05 -> {0.05 * rf:g} (hip kept) [ODRL]")
                  for lv, f, rf in _TORSO_LEVELS},
    },
    "ant": {
        "alllegs": {lv: (_ant_legs(v), f"all four lower legs 0.4 -> {v}")
                    for lv, v in (("easy", 0.32), ("medium", 0.2), ("hard", 0.08))},
        "halflegs": {lv: (_ant_legs(v, _ANT_FRONT_LOWER_LEGS), f"two front lower legs 0.4 -> {v} [ODRL]")
                     for lv, v in (("easy", 0.32), ("medium", 0.2), ("hard", 0.08))},
    },
}

#: The OTDF/VGDF/DVDF kinematic shifts (REFERENCE §5).
KINEMATIC_OTDF: dict[str, tuple[tuple[tuple, ...], str]] = {
    "halfcheetah": ((("joint_range", ("bthigh",), 0.01, 0.01),), "back thigh joint range x 0.01"),
    "hopper": ((("joint_range", ("thigh_joint",), 0.001, 1.0), ("joint_range", ("foot_joint",), 0.4, 0.4)),
               "thigh joint lower bound x 0.001, foot joint range x 0.4"),
    "walker2d": ((("joint_range", ("foot_joint",), 0.01, 0.01),), "right foot joint range x 0.01"),
    "ant": ((("joint_range", ("hip_1", "hip_2"), 0.01, 0.01),), "front hip joint ranges x 0.01"),
}

#: OTDF's published morphology targets (its ``envs/assets/*_morph.xml``, REFERENCE §9), edited into
#: Gymnasium's local-coordinate XMLs. Walker2d: OTDF's global right thigh 1.05 -> 1.045 (0.005 long)
#: and right leg 1.045 -> 0.3 (0.745 long), foot at z 0.3, in local offsets.
MORPH_OTDF: dict[str, tuple[tuple[tuple, ...], str]] = {
    "halfcheetah": (_CHEETAH_OTDF, "both thighs ~0 long; back shin (0,0)->(-.13,-.15) with the back foot there, "
                                   "0.094 -> 0.07 long; front shin (0,0)->(.01,-.16) with the front foot there"),
    "hopper": ((("set_vec", "geom", "torso_geom", "size", 0, 0.125),
                ("set_vec", "geom", "thigh_geom", "size", 0, 0.04)),
               "torso radius 0.05 -> 0.125, thigh radius 0.05 -> 0.04 (lengths kept)"),
    "walker2d": (_walker_leg(0.005, 0.745, sides=("",)),
                 "right thigh 0.45 -> 0.005, right shin 0.5 -> 0.745 (right leg 0.2 shorter; left leg kept)"),
    "ant": (_ant_legs(0.1, _ANT_FRONT_LOWER_LEGS), "two front lower legs 0.4 -> 0.1"),
}

#: xcurate's earlier ``-morph-otdf`` definition (kept as ``{robot}-morph-xcurate``).
MORPH_XCURATE: dict[str, tuple[tuple[tuple, ...], str]] = {
    "halfcheetah": ((("scale_vec", "geom", "bthigh", "size", (None, 0.5)),
                     ("scale_vec", "geom", "fthigh", "size", (None, 0.5))),
                    "both thigh capsules half as long (attachments kept)"),
    "hopper": (_hopper_torso(1.5, 1.5), "torso ('head') radius and length x 1.5"),
    "walker2d": (_walker_leg(0.70, 0.25, sides=("",)), "right thigh 0.45 -> 0.70, right shin 0.5 -> 0.25"),
    "ant": (_ant_legs(0.2, _ANT_FRONT_LOWER_LEGS), "two front lower legs 0.4 -> 0.2"),
}


@dataclass(frozen=True)
class Domain:
    """A MuJoCo locomotion domain: a robot plus (optionally) a dynamics shift.

    Cheap to construct: the edited XML is only written when :meth:`xml_path`, :meth:`make_env`
    or :meth:`make_model` is first called.
    """

    name: str
    robot: str
    family: str = "none"
    level: str | None = None
    description: str = "unshifted Gymnasium v5 dynamics"
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    edits: tuple = ()

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the underlying environment."""
        return ROBOTS[self.robot]["env_id"]

    @property
    def obs_dim(self) -> int:
        """Observation dimension."""
        return ROBOTS[self.robot]["obs_dim"]

    @property
    def act_dim(self) -> int:
        """Action dimension."""
        return ROBOTS[self.robot]["act_dim"]

    @property
    def frame_skip(self) -> int:
        """MuJoCo steps per environment step (Gymnasium v5's default for the robot)."""
        return ROBOTS[self.robot]["frame_skip"]

    @property
    def dt(self) -> float:
        """Environment step duration in seconds (timestep x frame_skip)."""
        return float(self.make_model().opt.timestep) * self.frame_skip

    @property
    def is_shifted(self) -> bool:
        """True for every domain except the unshifted robots."""
        return bool(self.edits)

    @property
    def source(self) -> Domain:
        """The unshifted domain of the same robot."""
        return _REGISTRY[self.robot]

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments passed to ``gymnasium.make`` for this domain."""
        kw = dict(ROBOTS[self.robot]["env_kwargs"])
        if self.edits:
            kw["xml_file"] = str(self.xml_path())
        return kw

    def xml_path(self) -> Path:
        """Absolute path of this domain's MuJoCo XML (Gymnasium's own file when unshifted)."""
        from xcurate.datasets.xml_edits import edited_xml_path, gymnasium_assets

        xml = ROBOTS[self.robot]["xml"]
        if not self.edits:
            return gymnasium_assets() / xml
        return edited_xml_path(self.name, xml, self.edits)

    def changes(self) -> list:
        """The edited XML attributes (:class:`~xcurate.datasets.xml_edits.Change`, old -> new)."""
        from xcurate.datasets.xml_edits import edited_tree

        if not self.edits:
            return []
        return edited_tree(ROBOTS[self.robot]["xml"], self.edits)[1]

    def make_env(self, **kwargs: Any):
        """A Gymnasium environment with this domain's dynamics (TimeLimit 1000)."""
        import gymnasium as gym

        with quiet_mujoco_warnings():
            return gym.make(self.env_id, **{**self.env_kwargs(), **kwargs})

    def make_model(self):
        """A raw ``mujoco.MjModel`` with this domain's dynamics (compiled from :meth:`xml_path`)."""
        return _compiled_model(str(self.xml_path()))

    @property
    def reference_info(self) -> dict[str, Any] | None:
        """The stored reference record (returns, episodes, policy, ...) or None."""
        return _load_references().get(self.name)

    @property
    def references(self) -> tuple[float, float] | None:
        """(J_random, J_expert) measured in this domain, or None if not measured."""
        rec = self.reference_info
        if not rec or rec.get("j_random") is None or rec.get("j_expert") is None:
            return None
        return float(rec["j_random"]), float(rec["j_expert"])

    def references_in(self, reference: str = "measured") -> tuple[float, float] | None:
        """(J_min, J_max) of this domain in a reference set (``measured``, ``odrl``, ``otdf``, ``d4rl``), or None.

        See :mod:`xcurate.datasets.reference_sets`.
        """
        from xcurate.datasets.reference_sets import set_references

        return set_references(self, reference)

    def normalize(self, returns: np.ndarray | float, reference: str = "measured") -> np.ndarray | float:
        """Normalised score 100 (J - J_min) / (J_max - J_min) in a reference set.

        Args:
            returns: undiscounted returns.
            reference: ``measured`` (default: J_random / J_expert measured in this domain),
                ``odrl``, ``otdf`` or ``d4rl`` (the published benchmarks' values).

        Raises:
            ConfigError: one line where the set has no values for this domain.
        """
        from xcurate.datasets.reference_sets import require_references

        lo, hi = require_references(self, reference)
        return 100.0 * (np.asarray(returns) - lo) / (hi - lo)


def _compiled_model(path: str):
    """Compile an XML file into a fresh ``MjModel`` (a copy of a cached compilation)."""
    import copy

    return copy.copy(_compiled_model_cached(path))


@functools.lru_cache(maxsize=128)
def _compiled_model_cached(path: str):
    import mujoco

    with quiet_mujoco_warnings():
        return mujoco.MjModel.from_xml_path(path)


@contextlib.contextmanager
def quiet_mujoco_warnings():
    """Route MuJoCo's compiler warnings to :mod:`logging` instead of ``./MUJOCO_LOG.TXT``.

    Gymnasium's half_cheetah.xml uses the deprecated ``settotalmass`` (kept: it defines the
    masses of the model), which makes MuJoCo 3.3+/4 write a log file into the working directory.
    """
    import mujoco

    prev = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda msg: _log.debug("mujoco: %s", msg))
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(prev)


REFERENCES_FILE = Path(__file__).with_name("references.json")


@functools.lru_cache(maxsize=1)
def _load_references() -> dict[str, dict[str, Any]]:
    if not REFERENCES_FILE.exists():
        return {}
    try:
        data = json.loads(REFERENCES_FILE.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{REFERENCES_FILE}: not valid JSON ({e})") from None
    return dict(data.get("domains", {}))


def _build_registry() -> dict[str, Domain]:
    reg: dict[str, Domain] = {}

    def add(d: Domain) -> None:
        reg[d.name] = d

    for r in ROBOTS:
        add(Domain(name=r, robot=r))
        for f in SCALE_FACTORS:
            add(Domain(name=f"{r}-friction-{f}", robot=r, family="friction", level=f,
                       description=f"friction of every geom (floor included) x {f}",
                       params={"factor": float(f)}, edits=(("friction", float(f)),)))
            add(Domain(name=f"{r}-gravity-{f}", robot=r, family="gravity", level=f,
                       description=f"gravity x {f}", params={"factor": float(f)},
                       edits=(("gravity", float(f)),)))
        for part, joints in KINEMATIC_PARTS[r].items():
            for lv, fac in LEVELS.items():
                add(Domain(name=f"{r}-kinematic-{part}-{lv}", robot=r, family="kinematic", level=lv,
                           description=f"range of {', '.join(joints)} x {fac}",
                           params={"factor": fac, "part": part, "joints": joints},
                           edits=(("joint_range", joints, fac, fac),)))
        for part, levels in MORPH_PARTS[r].items():
            for lv, (edits, desc) in levels.items():
                params: dict[str, Any] = {"part": part}
                if r == "hopper" and part == "torso":
                    params["note"] = ("changed: now ODRL's torso (radius scaled too); the earlier length-only "
                                      f"definition is hopper-morph-torsolength-{lv}")
                add(Domain(name=f"{r}-morph-{part}-{lv}", robot=r, family="morph", level=lv,
                           description=desc, params=params, edits=edits))
        edits, desc = KINEMATIC_OTDF[r]
        add(Domain(name=f"{r}-kinematic-otdf", robot=r, family="kinematic", level="otdf",
                   description=desc, params={"variant": "otdf"}, edits=edits))
        edits, desc = MORPH_OTDF[r]
        add(Domain(name=f"{r}-morph-otdf", robot=r, family="morph", level="otdf",
                   description=desc + " [OTDF's published geometry]",
                   params={"variant": "otdf", "note": "changed: now OTDF's published geometry; xcurate's earlier "
                                                      f"definition of this name is {r}-morph-xcurate"},
                   edits=edits))
        edits, desc = MORPH_XCURATE[r]
        add(Domain(name=f"{r}-morph-xcurate", robot=r, family="morph", level="xcurate",
                   description=desc + " [xcurate's earlier -morph-otdf]", params={"variant": "xcurate"},
                   edits=edits))
    return reg


_REGISTRY: dict[str, Domain] = _build_registry()


def get_domain(name: str | Domain) -> Domain:
    """Look a domain up by name; raise :class:`ConfigError` listing close names if unknown."""
    if isinstance(name, Domain):
        return name
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `xcurate domains list`)"
        raise ConfigError(f"unknown domain {name!r}{hint}")
    return _REGISTRY[key]


def list_domains(robot: str | None = None, family: str | None = None) -> list[Domain]:
    """All registered domains sorted by name, optionally filtered by robot and family."""
    out = [_REGISTRY[k] for k in sorted(_REGISTRY)]
    if robot is not None:
        if robot not in ROBOTS:
            raise ConfigError(f"unknown robot {robot!r} (one of {', '.join(ROBOTS)})")
        out = [d for d in out if d.robot == robot]
    if family is not None:
        if family not in FAMILIES:
            raise ConfigError(f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
        out = [d for d in out if d.family == family]
    return out
