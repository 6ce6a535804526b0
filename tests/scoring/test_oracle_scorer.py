"""Oracle scorer on real MuJoCo data: Hopper source replayed in a shifted and the unshifted domain."""

from __future__ import annotations

import numpy as np
import pytest

from xcurate.errors import ConfigError
from xcurate.scoring import make_scorer
from xcurate.scoring.scorer_oracle import lstd_weights, value_features
from xcurate.scoring.store import Store


@pytest.fixture(scope="module")
def hopper_data(hopper_collections):
    return hopper_collections["source_small"], hopper_collections["target_small"]


def test_oracle_gaps_shifted_vs_unshifted(tmp_path, hopper_data):
    """Measured: gravity x2 mean gap ~0.07, unshifted max gap ~1e-15."""
    source, target = hopper_data
    st = Store.create(tmp_path / "s", source, target, domain="hopper-gravity-2.0")
    rid = st.run(make_scorer("oracle"), progress=False)  # domain from the store
    assert st.load_source().has_state
    t = st.query("SELECT oracle_dynamics_gap g, oracle_bellman_error b, oracle_valid v FROM oracle").to_pydict()
    g, b = np.array(t["g"], float), np.array(t["b"], float)
    assert all(t["v"]) and (g > 1e-6).mean() > 0.95 and g.mean() > 1e-2
    assert (b > 0).all()
    # the same source replayed in its own (unshifted) domain: gaps ~ 0
    rid0 = st.run(make_scorer("oracle", domain="hopper"), progress=False)
    assert rid0 != rid
    t0 = st.query("SELECT max(oracle_dynamics_gap), max(oracle_bellman_error) FROM oracle").to_pylist()[0]
    g0, b0 = list(t0.values())
    assert g0 < 1e-8 and b0 < 1e-6


def test_oracle_needs_domain_and_reference_value(tmp_path, hopper_data):
    source, target = hopper_data
    st = Store.create(tmp_path / "s", source, target)
    with pytest.raises(ConfigError, match="domain"):
        st.run(make_scorer("oracle"), progress=False)
    sc = make_scorer("oracle", domain="hopper").fit(target, source)
    v = sc.value(target.observations)
    assert v.shape == (len(target),) and np.isfinite(v).all()
    # LSTD(0) on an exactly linear chain recovers V(s) = sum_k gamma^k r (constant reward 1 -> 1/(1-g))
    obs = np.linspace(-1, 1, 50)[:, None]
    phi = value_features(obs, np.zeros(1), np.ones(1))
    w = lstd_weights(phi, phi, np.ones(50), np.zeros(50), 0.9, 0.0)
    np.testing.assert_allclose(phi @ w, 10.0, rtol=1e-8)
