"""MuJoCo planted tasks: labels are exact (checked with the oracle), rows shuffled, policies as documented."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.datasets.oracle import replay
from xcurate.datasets.planted import DEFAULT_CASES, planted_case, planted_mujoco
from xcurate.errors import ConfigError


@pytest.fixture(scope="module")
def hopper_gravity():
    return planted_mujoco("hopper-gravity-0.5", n_part=150, n_target=200, seed=0)


def test_labels_are_the_dynamics_that_produced_each_row(hopper_gravity):
    target, source = hopper_gravity
    lab = source.extras["planted"].astype(bool)
    case = planted_case("hopper-gravity-0.5")
    assert len(source) == 2 * 150 * len(case.source_policies) and lab.mean() == 0.5
    gap = np.linalg.norm(replay("hopper-gravity-0.5", source).next_observations - source.next_observations, axis=1)
    assert np.nanmax(gap[lab]) < 1e-9  # planted rows were collected in the target domain
    assert np.nanmedian(gap[~lab]) > 1e-3  # the others were not, and gravity binds on them
    assert not (np.diff(lab.astype(int)) >= 0).all()  # shuffled: the order gives nothing away
    assert len(target) == 200 and target.metadata["domain"] == "hopper-gravity-0.5"


def test_target_policy_differs_from_every_source_policy(hopper_gravity):
    _, source = hopper_gravity
    meta = source.metadata["planted_case"]
    src = {(p["spec"], p["noise"]) for p in meta["source_policies"]}
    t = meta["target_policy"]
    assert (t["spec"], t["noise"]) not in src
    assert {p["quality"] for p in meta["source_policies"]} >= {"medium"}
    labels = set(source.quality_labels())
    assert labels == {p["quality"] for p in meta["source_policies"]}


def test_seeded_and_bad_input():
    a = planted_mujoco("hopper-gravity-0.5", n_part=20, n_target=30, seed=3)[1]
    b = planted_mujoco("hopper-gravity-0.5", n_part=20, n_target=30, seed=3)[1]
    np.testing.assert_array_equal(a.observations, b.observations)
    with pytest.raises(ConfigError):
        planted_mujoco("hopper-gravity-0.5", n_part=0)
    assert {c.split("-")[0] for c in DEFAULT_CASES} == {"hopper", "halfcheetah", "walker2d", "ant"}


def test_lake_case_picks_agents_by_their_in_domain_returns(shared_dir):
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.planted import LAKE_TARGET_SHARE, lake_case

    case = lake_case("hopper-kinematic-otdf")
    cand = get_domain("hopper-kinematic-otdf").reference_info["expert_candidates"]
    algo = {k.split("/")[-3]: v for k, v in cand.items()}
    src, indomain = (p.spec.split("/")[-3] for p in case.source_policies)
    tgt = case.target_policy.spec.split("/")[-3]
    assert src == "trpo"  # the robot's reference expert (trained in the unshifted hopper)
    others = {a: v for a, v in algo.items() if a != src}
    assert indomain == max(others, key=others.get)  # the best agent in the target domain
    rest = {a: v for a, v in others.items() if a != indomain}
    assert tgt == min(rest, key=lambda a: abs(rest[a] - LAKE_TARGET_SHARE * others[indomain]))
    assert len({src, indomain, tgt}) == 3 and algo[indomain] > 4 * algo[src]
    with pytest.raises(ConfigError, match="no in-domain zoo returns"):
        lake_case("hopper")  # the unshifted robot records no in-domain candidates


def test_planted_lake_labels_and_sizes(shared_dir):
    from xcurate.datasets.planted import planted_lake

    target, source = planted_lake("hopper-kinematic-otdf", n_source=240, n_indomain=80, n_target=60, seed=1)
    lab = source.extras["planted"].astype(bool)
    assert len(source) == 320 and lab.sum() == 80 and len(target) == 60
    gap = np.linalg.norm(replay("hopper-kinematic-otdf", source).next_observations - source.next_observations, axis=1)
    assert np.nanmax(gap[lab]) < 1e-9  # the in-domain slice follows the target's dynamics
    assert np.nanmedian(gap[~lab]) > 1e-3  # the source expert's rows do not
    assert source.metadata["planted_case"]["kind"] == "lake" and not (np.diff(lab.astype(int)) >= 0).all()
    with pytest.raises(ConfigError, match="must be positive"):
        planted_lake("hopper-kinematic-otdf", n_indomain=0)
