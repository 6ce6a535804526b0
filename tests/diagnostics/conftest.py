"""Small real score stores shared by the diagnostics tests (built once per session)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def planted_store(tmp_path_factory):
    """A real store over synthetic planted-shift data with the knn scorer (no oracle columns)."""
    from xcurate.datasets.synthetic import planted_shift
    from xcurate.scoring.store import score_datasets

    target, source = planted_shift(n_target=200, n_source=600, seed=0)
    return score_datasets(source, target, ["knn"], tmp_path_factory.mktemp("planted") / "store")


@pytest.fixture(scope="session")
def hopper_store(tmp_path_factory):
    """A real MuJoCo store: hopper source (random actions), hopper-gravity-2.0 target, knn + oracle."""
    import torch

    from xcurate.datasets.collect import collect
    from xcurate.datasets.transitions import TransitionDataset
    from xcurate.scoring.base import available_scorers
    from xcurate.scoring.store import score_datasets

    if "oracle" not in available_scorers():
        pytest.skip("the oracle scorer is not available")
    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    parts = [collect("hopper", "random", 300, seed=0, progress=False, quality="random"),
             collect("hopper", "random", 300, noise=0.0, seed=1, progress=False, quality="random")]
    source = TransitionDataset.concat(parts)
    target = collect("hopper-gravity-2.0", "random", 200, seed=2, progress=False, quality="random")
    return score_datasets(source, target, ["knn", "oracle"], tmp_path_factory.mktemp("hopper") / "store",
                          domain="hopper-gravity-2.0")
