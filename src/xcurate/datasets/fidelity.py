"""Which domain produced a dataset? Replay it in candidate domains and rank them by next-state gap.

:func:`match_domains` replays the dataset's (s, a) pairs in each candidate domain with the oracle
(:func:`xcurate.datasets.oracle.replay`: one environment step from each stored state) and compares
the simulated next observation with the stored one. The domain that produced the data reproduces
it (gap ~0 for data collected by xcurate; for foreign data, what is left is the simulator-version
drift, e.g. MuJoCo 2.x -> 3.x), so the smallest gap is the best match. Matches are ranked by the
**mean** gap by default: shifts that act only on some rows (friction acts only during contact)
leave most rows' gaps at ~0, so medians tie (HalfCheetah expert data: 7e-14 in the unshifted
robot vs 1e-13 with friction x 0.5) and a median ranking can put a shifted domain first (CS285
Ant-v4 data: median 0.06 in ant-friction-0.1 vs 0.16 in ant; mean 0.56 vs 0.40).

Rows that cannot be replayed (Hopper/Walker2d observations with velocities clipped at +/-10 and
no raw qpos/qvel, non-finite values) are left out of the gaps and lower the valid fraction.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xcurate.datasets.domains import ROBOTS, Domain, get_domain, list_domains
from xcurate.datasets.transitions import TransitionDataset
from xcurate.errors import ConfigError, DataError

#: Fewer transitions than this cannot say which domain fits (the median of a handful of gaps is noise).
MIN_ROWS = 10


@dataclass(frozen=True)
class DomainMatch:
    """How well one domain reproduces a dataset's transitions.

    Attributes:
        domain: the candidate domain's name.
        median_gap: median over valid rows of ``||s' - s'_domain||_2`` (NaN when no row is valid).
        mean_gap: mean of the same.
        valid_fraction: replayable rows / rows replayed.
        rows: rows replayed.
        seconds: replay time.
    """

    domain: str
    median_gap: float
    mean_gap: float
    valid_fraction: float
    rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)


def _robot_of(dataset: TransitionDataset) -> str | None:
    for key in ("domain", "robot", "env_id", "env_name"):
        v = dataset.metadata.get(key)
        if isinstance(v, str) and v:
            low = v.lower().replace("_", "").replace("-", "")
            for r in ROBOTS:
                if low.startswith(r):
                    return r
    return None


def candidate_domains(dataset: TransitionDataset, domains: list[str] | None = None) -> list[Domain]:
    """The domains to try: ``domains`` if given (unknown names raise), else every domain of the robot.

    The robot comes from the metadata (``domain``, ``robot``, ``env_id``), else from the dims
    (HalfCheetah and Walker2d share theirs: both are tried).

    Raises:
        ConfigError: an unknown domain name (one line, with close names).
        DataError: the dims fit no robot, or a named domain has other dims than the data.
    """
    if domains:
        out = [get_domain(d) for d in domains]
        for d in out:
            if (d.obs_dim, d.act_dim) != (dataset.obs_dim, dataset.act_dim):
                raise DataError(f"{dataset.source}: obs/act dims ({dataset.obs_dim}, {dataset.act_dim}) do not "
                                f"match domain {d.name!r} ({d.obs_dim}, {d.act_dim})")
        return list(dict.fromkeys(out))
    dims = (dataset.obs_dim, dataset.act_dim)
    fits = [r for r, spec in ROBOTS.items() if (spec["obs_dim"], spec["act_dim"]) == dims]
    robot = _robot_of(dataset)
    robots = [robot] if robot in fits else fits
    if not robots:
        known = ", ".join(f"{r} {spec['obs_dim']}/{spec['act_dim']}" for r, spec in ROBOTS.items())
        raise DataError(f"{dataset.source}: obs/act dims {dims[0]}/{dims[1]} fit no robot ({known})")
    return [d for r in robots for d in list_domains(robot=r)]


def match_domains(dataset: TransitionDataset, domains: list[str] | None = None,
                  max_rows: int | None = 5000, by: str = "mean") -> list[DomainMatch]:
    """Replay ``dataset`` in candidate domains; return the matches, best (smallest gap) first.

    Args:
        dataset: the transitions (raw qpos/qvel are used when stored, else the observations).
        domains: candidate domain names (default: every domain of the dataset's robot).
        max_rows: replay only the first ``max_rows`` rows (None: all). Replay costs about
            ``rows x candidates`` environment steps.
        by: rank by the ``"mean"`` (default) or ``"median"`` gap (ties: the other one).

    Returns:
        One :class:`DomainMatch` per candidate, best first (domains without a valid row last).

    Raises:
        DataError: fewer than :data:`MIN_ROWS` transitions, or dims that fit no candidate.
        ConfigError: an unknown domain name or ``by``.
    """
    from xcurate.datasets.oracle import oracle_gap, replay

    if by not in ("mean", "median"):
        raise ConfigError(f"by must be 'mean' or 'median', got {by!r}")
    cands = candidate_domains(dataset, domains)
    if len(dataset) < MIN_ROWS:
        raise DataError(f"{dataset.source}: {len(dataset)} transition(s) is too short to replay "
                        f"(match needs at least {MIN_ROWS})")
    ds = dataset if max_rows is None or len(dataset) <= max_rows else dataset.select(slice(0, int(max_rows)))
    out = []
    for d in cands:
        t0 = time.perf_counter()
        res = replay(d, ds)
        gap = oracle_gap(d, ds, result=res)
        ok = np.isfinite(gap)
        out.append(DomainMatch(domain=d.name, median_gap=float(np.median(gap[ok])) if ok.any() else float("nan"),
                               mean_gap=float(gap[ok].mean()) if ok.any() else float("nan"),
                               valid_fraction=float(ok.mean()), rows=len(ds),
                               seconds=round(time.perf_counter() - t0, 3)))
    def key(m: DomainMatch) -> tuple:
        first, second = (m.mean_gap, m.median_gap) if by == "mean" else (m.median_gap, m.mean_gap)
        return (bool(np.isnan(first)), first, second, m.domain)

    return sorted(out, key=key)
