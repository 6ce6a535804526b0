"""Tests of the shared torch building blocks in xcurate.scoring.nets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import DataError
from xcurate.scoring import nets


def test_mlp_shapes_and_activation():
    m = nets.mlp(5, 3, (8, 8), activation="swish")
    assert m(torch.zeros(4, 5)).shape == (4, 3)
    assert isinstance(m[1], torch.nn.SiLU)


def test_standardizer_zscores_and_floors_constant_columns():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    st = nets.Standardizer.fit(x)
    z = st(x)
    assert torch.allclose(z[:, 0], torch.tensor([-1.0, 1.0]))
    assert torch.isfinite(z).all() and torch.all(z[:, 1] == 0)


def test_generator_sampling_is_deterministic():
    a = nets.sample_index(nets.make_generator(3), 100, 50, torch.device("cpu"))
    b = nets.sample_index(nets.make_generator(3), 100, 50, torch.device("cpu"))
    c = nets.sample_index(nets.make_generator(4), 100, 50, torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_train_loop_raises_clear_error_on_divergence():
    def step(i: int) -> torch.Tensor:
        return torch.tensor(float("nan") if i == 3 else 1.0)

    with pytest.raises(DataError, match="widget diverged at step 3"):
        nets.train_loop(step, 10, "widget", check_every=1)
    assert nets.train_loop(lambda i: torch.tensor(2.0), 5, "widget") == 2.0


def test_finite_rows_drops_nan_rows_and_score_chunk_returns_nan_there():
    _, src = planted_shift(n_target=20, n_source=30, seed=1)
    src.observations = src.observations.copy()
    src.observations[4, 0] = np.nan
    kept = nets.finite_rows(src, "source")
    assert len(kept) == 29
    out = nets.score_chunk(src, torch.device("cpu"), lambda t: {"x": t["r"] * 0 + 1}, ["x"])
    assert np.isnan(out["x"][4]) and np.all(out["x"][np.arange(30) != 4] == 1)
    src.observations[:, :] = np.nan
    with pytest.raises(DataError, match="no finite transitions"):
        nets.finite_rows(src, "source")


def test_batched_matches_unbatched():
    x = torch.randn(1000, 3)
    assert torch.allclose(nets.batched(lambda v: v.sum(1), x, batch=128), x.sum(1))


def test_soft_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    w_a, w_b = a.weight.detach().clone(), b.weight.detach().clone()
    nets.soft_update(a, b, 0.25)
    assert torch.allclose(a.weight, 0.75 * w_a + 0.25 * w_b)
