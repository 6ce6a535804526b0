"""Build the benchmark suite: source datasets per robot and small target datasets per shifted domain.

INTERFACE (stable):

    build_suite(SuiteConfig(...), progress=True, log=print) -> list[SuiteEntry]
    plan_suite(SuiteConfig(...)) -> list[SuiteEntry]       # what would be built (nothing runs)
    default_targets(robot) -> list[str]                     # default shifted target domains
    policy_for(robot, quality, prefer="auto") -> (spec, origin)

Ids follow :mod:`xcurate.datasets.ids`: ``hopper/source/medium-v0`` (unshifted domain, qualities
random / medium / expert / medium-expert) and ``hopper-morph-torso-medium/target/expert-v0``
(qualities medium / expert). Behaviour policies are the real zoo agents in ``../shared/policies``
(the levels of ../shared/policies/README.md); where ../shared is absent the builtin ARS policies
are used instead and each entry says so (``policy_origin``). ``medium-expert`` is the
concatenation of the medium and the expert datasets (2 x source_size transitions, as in D4RL).
Target datasets are collected by the same (source-trained) policies acting in the target domain:
the quality label names the policy, not the return it reaches under the shift.

Mixed-dynamics sources (the data-lake case, ``SuiteConfig.mixed``): ``hopper/source/mixed-v0``
combines (:func:`xcurate.datasets.ops.combine`) the unshifted robot with several shifted domains of
the same robot (default: the suite's target domains of that robot, so every target finds a slice
of its own dynamics in it), each collected by several behaviour policies (``mixed_qualities``).
Each shifted domain contributes ``mixed_shift_fraction`` of the ``source_size`` rows, the
unshifted robot the rest; each domain's share is split evenly over the policies. The parts are
datasets of their own (``hopper/source/mixed-parts/<domain>-<quality>-v0``, resumable like the
rest); every row of the combination carries its provenance (``part``, ``domain``, ``policy``,
``quality``), which the score store exposes to SQL.

Resumable: a dataset whose ``manifest.json`` exists with the expected number of transitions is
complete (the manifest is written after the data file, both atomically) and is skipped.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from xcurate.errors import ConfigError

ROBOTS = ("halfcheetah", "hopper", "walker2d", "ant")
SOURCE_QUALITIES = ("random", "medium", "expert", "medium-expert")
TARGET_QUALITIES = ("medium", "expert")

#: Zoo agents (relative to ``<shared>/policies``) per robot and level (returns: shared README).
ZOO_POLICIES: dict[str, dict[str, str]] = {
    "halfcheetah": {"expert": "sb3-zoo/tqc/HalfCheetah-v3_1/HalfCheetah-v3.zip",  # 12183
                    "medium": "sb3-zoo/ppo/HalfCheetah-v3_1/HalfCheetah-v3.zip"},  # 5893
    "hopper": {"expert": "sb3-zoo/trpo/Hopper-v3_1/Hopper-v3.zip",  # 3626
               "medium": "sb3-zoo/ppo/Hopper-v3_1/Hopper-v3.zip"},  # 2441
    "walker2d": {"expert": "sb3-zoo/tqc/Walker2d-v3_1/Walker2d-v3.zip",  # 4499
                 "medium": "sb3-zoo/ppo/Walker2d-v3_1/Walker2d-v3.zip"},  # 3657
    "ant": {"expert": "sb3-zoo/trpo/Ant-v3_1/Ant-v3.zip",  # 5147
            "medium": "sb3-zoo/ars/Ant-v3_1/Ant-v3.zip"},  # 2329
}

#: Default target domains: one friction/gravity, one kinematic and one morphology shift per robot.
DEFAULT_TARGETS: dict[str, list[str]] = {
    "halfcheetah": ["halfcheetah-friction-0.5", "halfcheetah-kinematic-footjnt-medium",
                    "halfcheetah-morph-torso-medium"],
    "hopper": ["hopper-friction-0.5", "hopper-kinematic-footjnt-medium", "hopper-morph-torso-medium"],
    "walker2d": ["walker2d-friction-0.5", "walker2d-kinematic-footjnt-medium", "walker2d-morph-thigh-medium"],
    "ant": ["ant-gravity-0.5", "ant-kinematic-anklejnt-medium", "ant-morph-alllegs-medium"],
}


@dataclass
class SuiteConfig:
    """What the suite contains and where it goes."""

    robots: list[str] = field(default_factory=lambda: list(ROBOTS))  # robots to build
    shifts: list[str] | None = None  # target domains: full names or robot-free suffixes ("friction-0.5"); None = defaults
    source_size: int = 1_000_000  # transitions per source dataset (medium-expert has twice as many)
    target_size: int = 5000  # transitions per target dataset
    source_qualities: list[str] = field(default_factory=lambda: list(SOURCE_QUALITIES))  # source levels
    target_qualities: list[str] = field(default_factory=lambda: list(TARGET_QUALITIES))  # target levels
    noise: float = 0.0  # Gaussian action noise of every collection
    seed: int = 0  # base seed (each dataset derives its own from its id)
    root: str | None = None  # data root (default $XCURATE_DATA); datasets go to <root>/datasets/<id>
    version: int = 0  # the -v<k> suffix of the ids
    prefer: str = "auto"  # behaviour policies: auto (zoo if ../shared exists, else builtin), zoo, builtin
    overwrite: bool = False  # rebuild datasets whose size differs from the request instead of failing
    mixed: bool = False  # also build <robot>/source/mixed-v<k>: unshifted + shifted domains, several policies
    mixed_domains: list[str] | None = None  # shifted domains of the mixed source (None = the suite's targets)
    mixed_qualities: list[str] = field(default_factory=lambda: ["random", "medium", "expert"])  # its policies
    mixed_shift_fraction: float = 0.1  # fraction of the mixed source from EACH shifted domain


@dataclass
class SuiteEntry:
    """One dataset of the suite."""

    dataset_id: str  # e.g. hopper/source/medium-v0
    domain: str  # domain it is collected in
    quality: str  # random / medium / expert / medium-expert
    size: int  # transitions
    policy: str | None  # policy spec (None for medium-expert, built from parts)
    policy_origin: str  # zoo, builtin, random or concat
    path: str  # data file
    status: str = "planned"  # planned, built, skipped (complete), missing (no policy)
    seconds: float = 0.0  # build time
    return_mean: float | None = None  # mean episode return of the complete episodes
    note: str = ""  # why something was skipped or substituted
    parts: list[str] = field(default_factory=list)  # mixed source: the dataset ids it combines


def default_targets(robot: str) -> list[str]:
    """Default shifted target domains of a robot."""
    if robot not in DEFAULT_TARGETS:
        raise ConfigError(f"unknown robot {robot!r} (one of {', '.join(ROBOTS)})")
    return list(DEFAULT_TARGETS[robot])


def policy_for(robot: str, quality: str, prefer: str = "auto") -> tuple[str | None, str, str]:
    """The behaviour policy spec of a robot and level.

    Returns:
        (spec or None, origin, note): origin is ``zoo``, ``builtin`` or ``random``; the spec is
        None when no policy of that level is available (note says why).
    """
    from xcurate.datasets.policies import builtin_dir
    from xcurate.utils import shared_dir

    if quality == "random":
        return "random", "random", ""
    if prefer not in ("auto", "zoo", "builtin"):
        raise ConfigError(f"prefer must be auto, zoo or builtin, got {prefer!r}")
    sd = shared_dir()
    note = ""
    if prefer in ("auto", "zoo"):
        rel = ZOO_POLICIES.get(robot, {}).get(quality)
        if sd is not None and rel is not None and (sd / "policies" / rel).is_file():
            return f"sb3:{sd / 'policies' / rel}", "zoo", ""
        if prefer == "zoo":
            raise ConfigError(f"zoo policy for {robot} {quality} not found (needs ../shared/policies/{rel})")
        note = "../shared/policies absent: builtin ARS policy used instead of the zoo agent"
    if (builtin_dir() / f"{robot}-{quality}.npz").is_file():
        return f"builtin:{robot}-{quality}", "builtin", note
    return None, "builtin", f"no {quality} policy for {robot} (no ../shared and no builtin:{robot}-{quality})"


def _target_domains(cfg: SuiteConfig, robot: str) -> list[str]:
    from xcurate.datasets.domains import get_domain

    if cfg.shifts is None:
        names = default_targets(robot)
    else:
        names = []
        for s in cfg.shifts:
            s = s.strip().lower()
            if s.split("-")[0] in ROBOTS:
                if s.split("-")[0] == robot:
                    names.append(s)
            else:
                names.append(f"{robot}-{s}")
    for n in names:
        get_domain(n)  # ConfigError for unknown names
    return names


def _path(root: str | None, dataset_id: str) -> Path:
    from xcurate.datasets import ids

    if root is None:
        return ids.dataset_path(dataset_id)
    ids.dataset_dir(dataset_id)  # validates the id
    return Path(root).expanduser() / "datasets" / dataset_id / "data.hdf5"


def plan_suite(cfg: SuiteConfig) -> list[SuiteEntry]:
    """The datasets of the suite in build order (medium and expert before medium-expert)."""
    for name, val in (("source_size", cfg.source_size), ("target_size", cfg.target_size)):
        if int(val) <= 0:
            raise ConfigError(f"{name} must be positive, got {val}")
    out: list[SuiteEntry] = []
    v = f"-v{cfg.version}"
    for robot in cfg.robots:
        robot = robot.strip().lower()
        if robot not in ROBOTS:
            raise ConfigError(f"unknown robot {robot!r} (one of {', '.join(ROBOTS)})")
        for q in cfg.source_qualities:
            if q not in SOURCE_QUALITIES:
                raise ConfigError(f"unknown source quality {q!r} (one of {', '.join(SOURCE_QUALITIES)})")
        order = sorted(cfg.source_qualities, key=lambda q: SOURCE_QUALITIES.index(q))
        for q in order:
            did = f"{robot}/source/{q}{v}"
            if q == "medium-expert":
                out.append(SuiteEntry(did, robot, q, 2 * cfg.source_size, None, "concat", str(_path(cfg.root, did))))
                continue
            spec, origin, note = policy_for(robot, q, cfg.prefer)
            out.append(SuiteEntry(did, robot, q, cfg.source_size, spec, origin, str(_path(cfg.root, did)),
                                  note=note))
        if cfg.mixed:
            out.extend(_plan_mixed(cfg, robot, v))
        for dom in _target_domains(cfg, robot):
            for q in cfg.target_qualities:
                if q not in TARGET_QUALITIES + ("random",):
                    raise ConfigError(f"unknown target quality {q!r} (one of {', '.join(TARGET_QUALITIES)}, random)")
                did = f"{dom}/target/{q}{v}"
                spec, origin, note = policy_for(robot, q, cfg.prefer)
                out.append(SuiteEntry(did, dom, q, cfg.target_size, spec, origin, str(_path(cfg.root, did)),
                                      note=note))
    return out


def _mixed_shares(total: int, n_shifted: int, n_policies: int, frac: float) -> list[list[int]]:
    """Rows per (domain, policy) of a mixed source: row 0 the unshifted robot, then each shifted domain."""
    shifted = int(round(frac * total))
    base = total - n_shifted * shifted
    out = []
    for size in [base] + [shifted] * n_shifted:
        q, r = divmod(size, n_policies)
        out.append([q + (i < r) for i in range(n_policies)])
    return out


def _plan_mixed(cfg: SuiteConfig, robot: str, v: str) -> list[SuiteEntry]:
    """The parts of ``<robot>/source/mixed<v>`` and the combined entry (last)."""
    from xcurate.datasets.domains import get_domain

    if not 0 < cfg.mixed_shift_fraction < 1:
        raise ConfigError(f"mixed_shift_fraction must be in (0, 1), got {cfg.mixed_shift_fraction}")
    for q in cfg.mixed_qualities:
        if q not in ("random", "medium", "expert"):
            raise ConfigError(f"unknown mixed-source quality {q!r} (one of random, medium, expert)")
    if not cfg.mixed_qualities:
        raise ConfigError("mixed_qualities is empty: the mixed source needs at least one behaviour policy")
    if cfg.mixed_domains is None:
        shifted = _target_domains(cfg, robot)
    else:
        shifted = [d.strip().lower() if d.strip().lower().split("-")[0] in ROBOTS else f"{robot}-{d.strip().lower()}"
                   for d in cfg.mixed_domains if d.strip()]
    for d in shifted:
        if get_domain(d).robot != robot or d == robot:
            raise ConfigError(f"mixed source of {robot}: {d!r} is not a shifted domain of {robot}")
    shifted = list(dict.fromkeys(shifted))
    if len(shifted) * cfg.mixed_shift_fraction >= 1:
        raise ConfigError(f"mixed source of {robot}: {len(shifted)} shifted domains x mixed_shift_fraction "
                          f"{cfg.mixed_shift_fraction} leave no rows for the unshifted robot")
    shares = _mixed_shares(cfg.source_size, len(shifted), len(cfg.mixed_qualities), cfg.mixed_shift_fraction)
    parts: list[SuiteEntry] = []
    for dom, sizes in zip([robot, *shifted], shares, strict=True):
        for q, n in zip(cfg.mixed_qualities, sizes, strict=True):
            if n <= 0:
                continue
            did = f"{robot}/source/mixed-parts/{dom}-{q}{v}"
            spec, origin, note = policy_for(robot, q, cfg.prefer)
            parts.append(SuiteEntry(did, dom, q, n, spec, origin, str(_path(cfg.root, did)), note=note))
    did = f"{robot}/source/mixed{v}"
    mixed = SuiteEntry(did, "mixed", "mixed", sum(p.size for p in parts), None, "combine",
                       str(_path(cfg.root, did)), parts=[p.dataset_id for p in parts],
                       note=f"{robot} + {', '.join(shifted)} ({100 * cfg.mixed_shift_fraction:g}% each)")
    return [*parts, mixed]


def _complete(entry: SuiteEntry, overwrite: bool) -> bool:
    from xcurate.datasets.io import manifest_path

    m = manifest_path(Path(entry.path))
    if not (Path(entry.path).is_file() and m.is_file()):
        return False
    try:
        n = int(json.loads(m.read_text()).get("transitions", -1))
    except (OSError, ValueError):
        return False
    if n == entry.size:
        return True
    if overwrite:
        return False
    raise ConfigError(f"{entry.path}: exists with {n} transitions but {entry.size} were requested "
                      "(use --overwrite or another --root)")


def _seed(base: int, dataset_id: str) -> int:
    return (int(base) * 1_000_003 + zlib.crc32(dataset_id.encode())) % (2**31)


def build_suite(cfg: SuiteConfig, progress: bool = True,
                log: Callable[[str], None] | None = print) -> list[SuiteEntry]:
    """Collect every dataset of the suite that is not complete yet; return the entries with status.

    Raises:
        ConfigError: unknown robots/domains/qualities, or an existing dataset of another size.
    """
    from xcurate.datasets.collect import collect
    from xcurate.datasets.io import load_dataset, save_dataset
    from xcurate.datasets.transitions import TransitionDataset
    from xcurate.utils import make_manifest, write_json_atomic

    entries = plan_suite(cfg)
    say = log or (lambda _m: None)
    t_all = time.perf_counter()
    for e in entries:
        if _complete(e, cfg.overwrite):
            e.status = "skipped"
            e.note = (e.note + "; " if e.note else "") + "already complete"
            say(f"skip   {e.dataset_id} (complete)")
            continue
        t0 = time.perf_counter()
        if e.quality == "mixed":
            from xcurate.datasets.ops import combine

            part_paths = [_path(cfg.root, i) for i in e.parts]
            missing = [i for i, p in zip(e.parts, part_paths, strict=True) if not p.is_file()]
            if missing:
                e.status, e.note = "missing", f"needs {', '.join(missing)} (not built)"
                say(f"miss   {e.dataset_id}: {e.note}")
                continue
            ds = combine([load_dataset(p) for p in part_paths],
                         metadata={"dataset_id": e.dataset_id, "policy_origin": "combine",
                                   "seed": _seed(cfg.seed, e.dataset_id),
                                   "mixed_shift_fraction": cfg.mixed_shift_fraction, "part_ids": e.parts})
            inputs = {i: str(p) for i, p in zip(e.parts, part_paths, strict=True)}
        elif e.quality == "medium-expert":
            parts_ids = [e.dataset_id.replace("/medium-expert-", f"/{q}-") for q in ("medium", "expert")]
            part_paths = [_path(cfg.root, i) for i in parts_ids]
            missing = [str(p) for p in part_paths if not p.is_file()]
            if missing:
                e.status, e.note = "missing", f"needs {', '.join(parts_ids)} (not built)"
                say(f"miss   {e.dataset_id}: {e.note}")
                continue
            parts = [load_dataset(p) for p in part_paths]
            rets = []
            for p in parts:  # complete episodes only (the last one of each part may be cut by its budget)
                r = p.returns_per_episode()
                rets.append(r[:-1] if p.metadata.get("last_episode_cut_by_budget") and len(r) > 1 else r)
            allr = np.concatenate(rets)
            meta = {**parts[0].metadata, "quality": "medium-expert", "dataset_id": e.dataset_id,
                    "policy": " + ".join(str(p.metadata.get("policy")) for p in parts),
                    "policy_name": " + ".join(str(p.metadata.get("policy_name")) for p in parts),
                    "policy_info": {q: p.metadata.get("policy_info") for q, p in zip(("medium", "expert"), parts,
                                                                                      strict=True)},
                    "policy_origin": "concat", "parts": parts_ids, "seed": _seed(cfg.seed, e.dataset_id),
                    "n_transitions": sum(len(p) for p in parts),
                    "n_episodes": sum(p.n_episodes for p in parts),
                    "return_mean": float(allr.mean()), "return_std": float(allr.std())}
            for k in ("collect_seconds", "steps_per_second"):
                meta.pop(k, None)
            ds = TransitionDataset.concat(parts, metadata=meta)
            inputs = {i: str(p) for i, p in zip(parts_ids, part_paths, strict=True)}
        else:
            if e.policy is None:
                e.status = "missing"
                say(f"miss   {e.dataset_id}: {e.note}")
                continue
            if e.note:
                say(f"note   {e.dataset_id}: {e.note}")
            ds = collect(e.domain, e.policy, e.size, noise=cfg.noise, seed=_seed(cfg.seed, e.dataset_id),
                         progress=progress, quality=e.quality)
            ds.metadata.update({"dataset_id": e.dataset_id, "policy_origin": e.policy_origin})
            inputs = {}
        save_dataset(ds, e.path, inputs=inputs, config={"suite": asdict(cfg), "dataset_id": e.dataset_id,
                                                       "policy_origin": e.policy_origin})
        e.status = "built"
        e.seconds = round(time.perf_counter() - t0, 2)
        rets = ds.returns_per_episode()
        e.return_mean = round(float(ds.metadata.get("return_mean", rets.mean())), 1)
        say(f"built  {e.dataset_id}: {len(ds)} transitions, return {e.return_mean}, {e.seconds:.1f}s "
            f"[{e.policy_origin}]")
    root = Path(cfg.root).expanduser() if cfg.root else None
    from xcurate.datasets import ids

    base = (root / "datasets") if root else ids.datasets_root()
    man = make_manifest("suite", config=asdict(cfg), seed=cfg.seed,
                        timings={"total_s": round(time.perf_counter() - t_all, 2)},
                        entries=[asdict(x) for x in entries])
    write_json_atomic(base / "suite_manifest.json", man)
    return entries
