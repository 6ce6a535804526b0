"""Planted MuJoCo tasks: sources in which a known part follows the target dynamics.

A planted task is built only with :func:`xcurate.datasets.collect.collect`, as a user would:

* **source**: for each behaviour policy of the case, ``n_part`` rows collected in the unshifted
  robot (label ``planted = 0``) and ``n_part`` rows collected in the target domain itself
  (``planted = 1``), from several policies and qualities;
* **target**: ``n_target`` rows collected in the target domain by a *different* policy (or the
  same policy with a different noise level where no second policy is available).

A dynamics scorer should rank the planted rows as more useful. Because every planted row comes
from the target simulator and every other row from the source simulator, the label is exact;
the oracle says how much each row's dynamics actually differ (rows where the shift does not bind
have a gap of ~0 whatever their label, which caps the attainable AUC below 1).

INTERFACE (stable):

    PlantedCase(target_domain, source_policies, target_policy)
    planted_case(target_domain, prefer="auto") -> PlantedCase   # default policies per robot
    planted_mujoco(case, n_part=1000, n_target=1000, seed=0) -> (target, source)
    DEFAULT_CASES: tuple of target domains (all robots; gravity, morphology, kinematic shifts)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError

#: Shift families that change (nearly) every row: gravity, morphology and kinematic shifts whose limit binds.
DEFAULT_CASES: tuple[str, ...] = (
    "hopper-gravity-0.5", "hopper-morph-torso-medium", "hopper-kinematic-footjnt-medium",
    "halfcheetah-gravity-0.5", "halfcheetah-morph-torso-medium",
    "walker2d-gravity-0.5", "walker2d-morph-thigh-medium",
    "ant-gravity-0.5", "ant-morph-alllegs-medium",
)


@dataclass
class PolicyPart:
    """One behaviour policy of a planted case.

    Attributes:
        spec: policy spec (see :func:`xcurate.datasets.policies.load_policy`).
        noise: Gaussian action noise.
        quality: label stored per row (``quality`` metadata).
    """

    spec: str
    noise: float
    quality: str


@dataclass
class PlantedCase:
    """A planted task: target domain, the source's behaviour policies and the target's policy."""

    target_domain: str
    source_policies: list[PolicyPart] = field(default_factory=list)
    target_policy: PolicyPart | None = None

    @property
    def robot(self) -> str:
        """The robot (unshifted source domain)."""
        from xcurate.datasets.domains import get_domain

        return get_domain(self.target_domain).robot


def planted_case(target_domain: str, prefer: str = "auto", random_part: bool = False) -> PlantedCase:
    """The default policies of a planted case for ``target_domain``.

    Source: the robot's medium policy (noise 0.1) and, where one exists, its expert policy
    (noise 0.1); with ``random_part`` also uniform random actions. Target: a different policy of the robot: the zoo's
    second expert-level agent when ``../shared`` is present, else the builtin expert with a
    different noise, else the medium policy with noise 0.3.
    """
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.suite import policy_for
    from xcurate.utils import shared_dir

    dom = get_domain(target_domain)
    robot = dom.robot
    parts = [PolicyPart("random", 0.0, "random")] if random_part else []
    specs = {}
    for q in ("medium", "expert"):
        spec, _, _ = policy_for(robot, q, prefer=prefer)
        if spec is not None:
            specs[q] = spec
            parts.append(PolicyPart(spec, 0.1, q))
    if "medium" not in specs:
        raise ConfigError(f"planted case {target_domain!r}: no medium policy for {robot} "
                          "(needs ../shared/policies or a builtin policy)")
    sd = shared_dir()
    alt = _ALT_TARGET_POLICY.get(robot)
    if sd is not None and prefer != "builtin" and alt and (sd / "policies" / alt).is_file():
        tpol = PolicyPart(f"sb3:{sd / 'policies' / alt}", 0.1, "alt-expert")
    elif "expert" in specs:
        tpol = PolicyPart(specs["expert"], 0.3, "expert-noisy")
    else:
        tpol = PolicyPart(specs["medium"], 0.3, "medium-noisy")
    return PlantedCase(target_domain, parts, tpol)


#: A second agent per robot (not used in the source) that collects the target (``../shared/policies``).
_ALT_TARGET_POLICY: dict[str, str] = {
    "halfcheetah": "sb3-zoo/sac/HalfCheetah-v3_1/HalfCheetah-v3.zip",  # 9417
    "hopper": "sb3-zoo/tqc/Hopper-v3_1/Hopper-v3.zip",  # 3272
    "walker2d": "sb3-zoo/trpo/Walker2d-v3_1/Walker2d-v3.zip",  # 4298
    "ant": "sb3-zoo/ppo/Ant-v3_1/Ant-v3.zip",  # 1602
}


def _seed(base: int, *names: str) -> int:
    return (base * 1_000_003 + zlib.crc32("/".join(names).encode())) % (2**31)


def planted_mujoco(case: PlantedCase | str, n_part: int = 1000, n_target: int = 1000, seed: int = 0,
                   progress: bool = False) -> tuple[TransitionDataset, TransitionDataset]:
    """Collect a planted MuJoCo task.

    Args:
        case: a :class:`PlantedCase` or a target domain name (default policies, :func:`planted_case`).
        n_part: rows per (policy, dynamics) part of the source: the source has
            ``2 * n_part * len(case.source_policies)`` rows, half of them planted.
        n_target: target rows.
        seed: base seed; each part derives its own from the part's name.
        progress: show collection progress bars.

    Returns:
        (target, source). ``source.extras["planted"]`` (int8) is 1 for rows collected in the
        target domain; rows are shuffled (seeded) so no scorer can exploit the order;
        ``source.metadata["planted_case"]`` describes the case.
    """
    from xcurate.datasets.collect import collect

    if isinstance(case, str):
        case = planted_case(case)
    if n_part <= 0 or n_target <= 0:
        raise ConfigError(f"n_part and n_target must be positive, got {n_part}, {n_target}")
    robot = case.robot
    parts, labels = [], []
    for pol in case.source_policies:
        for dom, lab in ((robot, 0), (case.target_domain, 1)):
            ds = collect(dom, pol.spec, n_part, noise=pol.noise, seed=_seed(seed, dom, pol.spec, pol.quality),
                         progress=progress, quality=pol.quality)
            parts.append(ds)
            labels.append(np.full(len(ds), lab, np.int8))
    src = TransitionDataset.concat(parts)
    src.extras["planted"] = np.concatenate(labels)
    perm = np.random.default_rng(seed).permutation(len(src))
    src = src.select(perm)
    describe = {"target_domain": case.target_domain, "robot": robot, "n_part": n_part, "seed": seed,
                "source_policies": [vars(p) for p in case.source_policies],
                "target_policy": vars(case.target_policy)}
    src.metadata = {**src.metadata, "planted_case": describe, "domain": robot}
    src.source = f"<planted source {case.target_domain}>"
    tp = case.target_policy
    target = collect(case.target_domain, tp.spec, n_target, noise=tp.noise,
                     seed=_seed(seed, "target", case.target_domain, tp.spec), progress=progress,
                     quality=tp.quality)
    target.source = f"<planted target {case.target_domain}>"
    return target, src


# ------------------------------------------------------------------------------------- lakes
#: Share of the in-domain agent's return that the target's agent should reach ("medium" data).
LAKE_TARGET_SHARE = 0.25


def _zoo_spec(recorded: str) -> str | None:
    """A references.json policy spec (``sb3:shared/policies/...``) resolved against ``../shared``."""
    from xcurate.utils import shared_dir

    sd = shared_dir()
    prefix = "sb3:shared/"
    if sd is None or not recorded.startswith(prefix):
        return None
    path = sd / recorded[len(prefix):]
    return f"sb3:{path}" if path.is_file() else None


def lake_case(target_domain: str, noise: float = 0.1) -> PlantedCase:
    """A planted *lake* case: the source mixes a source expert and a better in-domain agent.

    Picked from the in-domain returns of every zoo agent that ``references.json`` records for the
    domain (``expert_candidates``, measured by ``benchmarks/measure_references.py --expert best``):

    * ``source_policies[0]``: the robot's own reference expert, collected in the *unshifted* robot
      (its data look excellent there, and its behaviour transfers badly where the shift binds);
    * ``source_policies[1]``: the best agent *in the target domain* (not the source expert),
      collected in the target domain: the slice that curation should find (``planted = 1``);
    * ``target_policy``: the remaining agent whose in-domain return is closest to
      :data:`LAKE_TARGET_SHARE` of the best one (a "medium" target dataset).

    Raises:
        ConfigError: ``../shared/policies`` absent, or the domain has no recorded candidates.
    """
    from xcurate.datasets.domains import get_domain

    dom = get_domain(target_domain)
    cand = {k: v for k, v in ((dom.reference_info or {}).get("expert_candidates") or {}).items()
            if k.startswith("sb3:shared/")}  # zoo agents only (builtin candidates are not lake parts)
    src_exp = (get_domain(dom.robot).reference_info or {}).get("expert_policy")
    if not cand or not src_exp:
        raise ConfigError(f"lake case {target_domain!r}: references.json records no in-domain zoo returns for it "
                          "(run benchmarks/measure_references.py --expert best --domains "
                          f"{target_domain} --merge)")
    specs = {k: _zoo_spec(k) for k in [*cand, src_exp]}
    if any(v is None for v in specs.values()):
        raise ConfigError(f"lake case {target_domain!r} needs the sb3-zoo agents of ../shared/policies")
    others = {k: v for k, v in cand.items() if k != src_exp}
    best = max(others, key=others.get)
    rest = {k: v for k, v in others.items() if k != best}
    if not rest:
        raise ConfigError(f"lake case {target_domain!r}: needs at least 3 zoo agents")
    goal = LAKE_TARGET_SHARE * others[best]
    tgt = min(rest, key=lambda k: abs(rest[k] - goal))
    return PlantedCase(target_domain,
                       [PolicyPart(specs[src_exp], noise, "expert"), PolicyPart(specs[best], noise, "expert")],
                       PolicyPart(specs[tgt], noise, "medium"))


def planted_lake(case: PlantedCase | str, n_source: int = 15_000, n_indomain: int = 5_000, n_target: int = 2_000,
                 seed: int = 0, progress: bool = False) -> tuple[TransitionDataset, TransitionDataset]:
    """Collect a planted lake (:func:`lake_case`): ``n_source`` rows of the source expert in the
    unshifted robot, ``n_indomain`` rows of the in-domain agent in the target domain (``planted = 1``),
    and ``n_target`` target rows of the medium agent.

    Rows are shuffled (seeded); ``source.metadata["planted_case"]`` describes the case.

    Returns:
        (target, source).
    """
    from xcurate.datasets.collect import collect

    if isinstance(case, str):
        case = lake_case(case)
    if min(n_source, n_indomain, n_target) <= 0:
        raise ConfigError(f"n_source, n_indomain and n_target must be positive, got {n_source}, {n_indomain}, "
                          f"{n_target}")
    parts = []
    for pol, dom, n in ((case.source_policies[0], case.robot, n_source),
                        (case.source_policies[1], case.target_domain, n_indomain)):
        parts.append(collect(dom, pol.spec, n, noise=pol.noise, seed=_seed(seed, dom, pol.spec, "lake"),
                             progress=progress, quality=pol.quality))
    src = TransitionDataset.concat(parts)
    src.extras["planted"] = np.concatenate([np.zeros(len(parts[0]), np.int8), np.ones(len(parts[1]), np.int8)])
    src = src.select(np.random.default_rng(seed).permutation(len(src)))
    src.metadata = {**src.metadata, "domain": case.robot, "planted_case": {
        "kind": "lake", "target_domain": case.target_domain, "robot": case.robot, "seed": seed,
        "n_source": n_source, "n_indomain": n_indomain, "source_policies": [vars(p) for p in case.source_policies],
        "target_policy": vars(case.target_policy)}}
    src.source = f"<planted lake {case.target_domain}>"
    tp = case.target_policy
    target = collect(case.target_domain, tp.spec, n_target, noise=tp.noise,
                     seed=_seed(seed, "target", case.target_domain, tp.spec), progress=progress, quality=tp.quality)
    target.source = f"<planted lake target {case.target_domain}>"
    return target, src
