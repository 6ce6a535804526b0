"""Scorers on real MuJoCo planted data (collected with the project's own ``collect``).

Half of the source was collected in the target domain (``planted``); the target comes from another
policy. The defaults chosen on the MuJoCo planted benchmark (README, "How good on real data") must
beat the papers' read-outs they replaced, here on a small hopper-gravity-0.5 case.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcurate.datasets.planted import planted_mujoco
from xcurate.datasets.synthetic import auc
from xcurate.scoring import make_scorer
from xcurate.utils import shared_dir

torch.set_num_threads(1)

# the measured claims are about the zoo agents' collections (the benchmark's case); without ../shared the
# case falls back to the builtin policies, where e.g. IGDF's cosine is not inverted (AUC 0.83)
pytestmark = pytest.mark.skipif(shared_dir() is None,
                                reason="../shared/policies (sb3-zoo agents of the planted case) not found")


@pytest.fixture(scope="module")
def hopper_gravity():
    return planted_mujoco("hopper-gravity-0.5", n_part=500, n_target=600, seed=0)


def _auc(cols: dict[str, np.ndarray], name: str, source) -> float:
    return auc(cols[name], source.extras["planted"])


def test_ot_default_cost_beats_otdfs_cosine(hopper_gravity):
    target, source = hopper_gravity
    default = make_scorer("ot", chunk=2000).fit(target, source).score(source)
    otdf = make_scorer("ot", chunk=2000, features="sas", normalize="none", cost="cosine").fit(target, source)
    a_def, a_otdf = _auc(default, "ot_score", source), _auc(otdf.score(source), "ot_score", source)
    assert a_def >= 0.55 and a_def >= a_otdf + 0.1, (a_def, a_otdf)  # OTDF's cosine is inverted here


def test_contrastive_primary_logit_beats_cosine(hopper_gravity):
    # measured on collection seeds 1-3 x scorer seeds 0-1: logit 0.68-0.74 with the default residual
    # input, 0.52-0.65 with IGDF's s' (0.47-0.63 on seed 0 here, 0.43 on another CPU's collection of
    # seed 0, where the test used to fail)
    target, source = hopper_gravity
    sc = make_scorer("contrastive", steps=800, hidden=(128, 128), seed=0)
    out = sc.fit(target, source).score(source)
    assert type(sc).primary == "contrastive_logit" and sc.next_input == "delta"
    a_logit, a_cos = _auc(out, "contrastive_logit", source), _auc(out, "contrastive_score", source)
    assert a_logit >= 0.62 and a_logit >= a_cos + 0.2, (a_logit, a_cos)


def test_selftrain_improves_on_its_target_only_round(hopper_gravity):
    target, source = hopper_gravity
    sc = make_scorer("selftrain", steps=600, rounds=2, n_models=3, hidden=(128, 128), seed=0)
    out = sc.fit(target, source).score(source)
    a_final, a_init = _auc(out, "selftrain_score", source), _auc(out, "selftrain_initial", source)
    assert sc.selected_ == [int(np.ceil(0.45 * len(source)))] * 2
    assert a_final >= 0.6 and a_final >= a_init + 0.02, (a_final, a_init)
