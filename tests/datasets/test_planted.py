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
