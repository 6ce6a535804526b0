"""Normalisation reference sets: which (J_min, J_max) a normalised score is relative to.

``score = 100 (J - J_min) / (J_max - J_min)``. Four sets (REFERENCE §5 and §9):

- ``measured`` (default): J_random / J_expert measured in each xcurate domain by
  ``benchmarks/measure_references.py`` (``references.json``; its records name the policies).
- ``odrl``: ODRL's ``envs/infos.py``: REF_MIN per robot (every shift), REF_MAX per shift (per
  friction / gravity factor; one value for all kinematic and all morphology levels). Covers the
  friction, gravity, kinematic and ODRL morphology domains (not the unshifted robots, not the
  ``-otdf`` / ``-xcurate`` / ``hopper-morph-torsolength-*`` domains).
- ``otdf``: OTDF's ``info.py``: REF_MIN = D4RL random, REF_MAX per robot for its three targets,
  ``{robot}-kinematic-otdf``, ``{robot}-morph-otdf`` and ``{robot}-gravity-0.5``.
- ``d4rl``: D4RL's per-robot random / expert returns, applied to every domain of the robot (the
  shift is ignored: this is what papers that normalise shifted targets by D4RL do).

Published ODRL/OTDF maxima come from experts trained *in* the target domain; the measured set
uses source-domain experts, so the sets are not interchangeable: every score table names its set.
"""

from __future__ import annotations

from xcurate.errors import ConfigError

#: The selectable sets, default first.
REFERENCE_SETS = ("measured", "odrl", "otdf", "d4rl")

#: D4RL (REFERENCE §5): robot -> (random, expert).
D4RL: dict[str, tuple[float, float]] = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3),
                                        "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}

#: ODRL envs/infos.py REF_MIN per robot (REFERENCE §9).
ODRL_MIN: dict[str, float] = {"halfcheetah": -280.178953, "hopper": -26.3360015397715,
                              "walker2d": 10.079455055289959, "ant": -325.6}
#: ODRL REF_MAX: robot -> family -> factor (friction, gravity) or one value (kinematic, morph).
ODRL_MAX: dict[str, dict[str, dict[str, float] | float]] = {
    "halfcheetah": {"friction": {"0.1": 41696.546875, "0.5": 7357.0712890625, "2.0": 11255.9677734375,
                                 "5.0": 10199.3271484375},
                    "gravity": {"0.1": 2466.85, "0.5": 9509.15, "2.0": 9509.15, "5.0": 3756.24},
                    "kinematic": 12135.0, "morph": 12135.0},
    "hopper": {"friction": 3234.3, "gravity": 3234.3, "kinematic": 3234.3, "morph": 3234.3},
    "walker2d": {"friction": {"0.1": 3360.181, "0.5": 4229.348, "2.0": 5180.044, "5.0": 4988.835},
                 "gravity": {"0.1": 2074.904, "0.5": 5194.713, "2.0": 5056.445, "5.0": 3665.385},
                 "kinematic": 4592.3, "morph": 4592.3},
    "ant": {"friction": {"0.1": 7938.962, "0.5": 8301.338, "2.0": 5167.376, "5.0": 4545.021},
            "gravity": {"0.1": 2782.098, "0.5": 4317.065, "2.0": 6705.12, "5.0": 6226.89},
            "kinematic": 5139.832, "morph": 5139.832},
}
#: Morphology parts that are ODRL's definitions (the others are xcurate's).
ODRL_MORPH_PARTS = {"halfcheetah": ("torso", "thigh"), "hopper": ("torso", "foot"),
                    "walker2d": ("thigh", "torso"), "ant": ("alllegs", "halflegs")}
#: OTDF info.py REF_MAX: robot -> domain-name suffix -> value (REF_MIN = D4RL random).
OTDF_MAX: dict[str, dict[str, float]] = {
    "halfcheetah": {"kinematic-otdf": 7065.03, "morph-otdf": 9713.59, "gravity-0.5": 9509.15},
    "hopper": {"kinematic-otdf": 2842.73, "morph-otdf": 3152.75, "gravity-0.5": 3234.3},
    "walker2d": {"kinematic-otdf": 3257.51, "morph-otdf": 4398.43, "gravity-0.5": 5194.713},
    "ant": {"kinematic-otdf": 5122.57, "morph-otdf": 5722.01, "gravity-0.5": 4317.065},
}


def check_reference_set(reference: str) -> str:
    """Return ``reference`` lower-cased if it names a set, else raise a one-line :class:`ConfigError`."""
    key = str(reference).strip().lower()
    if key not in REFERENCE_SETS:
        raise ConfigError(f"unknown reference set {reference!r} (one of {', '.join(REFERENCE_SETS)})")
    return key


def _odrl(domain) -> tuple[float, float] | None:
    fam = ODRL_MAX[domain.robot].get(domain.family)
    if fam is None:
        return None
    if domain.family == "morph" and domain.params.get("part") not in ODRL_MORPH_PARTS[domain.robot]:
        return None
    if domain.family == "kinematic" and domain.level not in ("easy", "medium", "hard"):
        return None
    hi = fam.get(domain.level) if isinstance(fam, dict) else fam
    return None if hi is None else (ODRL_MIN[domain.robot], float(hi))


def set_references(domain, reference: str = "measured") -> tuple[float, float] | None:
    """(J_min, J_max) of ``domain`` (a :class:`~xcurate.datasets.domains.Domain`) in a set, or None."""
    key = check_reference_set(reference)
    if key == "measured":
        return domain.references
    if key == "d4rl":
        return D4RL[domain.robot]
    if key == "otdf":
        hi = OTDF_MAX[domain.robot].get(domain.name[len(domain.robot) + 1:])
        return None if hi is None else (D4RL[domain.robot][0], hi)
    return _odrl(domain)


def covered_domains(reference: str) -> list[str]:
    """Names of the registered domains a set has references for."""
    from xcurate.datasets.domains import list_domains

    return [d.name for d in list_domains() if set_references(d, reference) is not None]


def require_references(domain, reference: str = "measured") -> tuple[float, float]:
    """Like :func:`set_references` but raise a one-line :class:`ConfigError` where the set lacks the domain."""
    ref = set_references(domain, reference)
    if ref is None:
        key = check_reference_set(reference)
        if key == "measured":
            raise ConfigError(f"domain {domain.name!r} has no measured reference returns "
                              "(run benchmarks/measure_references.py)")
        n = len(covered_domains(key))
        raise ConfigError(f"reference set {key!r} has no values for domain {domain.name!r} "
                          f"(it covers {n} domains; see `xcurate domains list --reference {key}`)")
    return ref
