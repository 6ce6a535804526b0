"""Resume is bit-identical for the variants with extra state: ``otdf`` (the CVAE), ``tabb`` and ``iql``.

Only the public ``train(RunSpec, ...)`` API is used: a run interrupted twice (``stop_after``) and
resumed must leave the same checkpoint, every tensor and counter of it, and the same progress log
as the uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from xcurate.datasets.synthetic import planted_shift
from xcurate.policy.runs import RunSpec, train

SETS = {"hidden_dim": "32", "batch_target": "16", "batch_source": "16"}
EXTRA = {"otdf": {"cvae_steps": "20", "cvae_hidden": "32", "cvae_batch": "16"}, "tabb": {"tabb_target": "column"}, "iql": {}}


@pytest.fixture(scope="module")
def hopper_like():
    """Synthetic data with Hopper's layout and every column the three variants read."""
    target, source = planted_shift(n_target=200, n_source=400, obs_dim=11, act_dim=3, seed=2)
    rng = np.random.default_rng(0)
    p = source.extras["planted"].astype(np.float64)
    n = len(source)
    source.extras.update({
        "weight": np.where(p == 1, 1.0, 0.3).astype(np.float32), "keep": np.ones(n, bool),
        "score": p - 1 + 0.1 * rng.random(n), "tbm": 1 - p + 0.1 * rng.random(n),
        "y_hat": source.rewards * 10 + rng.random(n)})
    return target, source


def _spec(variant: str, seed: int = 0) -> RunSpec:
    return RunSpec(target="-", domain="hopper", steps=30, variant=variant, seed=seed, n_seeds=2, eval_every=0,
                   eval_episodes=0, log_every=10, checkpoint_every=10, overrides={**SETS, **EXTRA[variant]})


def _assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Recursive bit-equality of two checkpoint trees (tensors with torch.equal)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert a.keys() == b.keys(), (where, sorted(a), sorted(b))
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


def _load(run) -> dict[str, Any]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.parametrize("variant", ["otdf", "tabb", "iql"])
def test_interrupted_twice_equals_uninterrupted(tmp_path, hopper_like, variant):
    target, source = hopper_like
    full = train(_spec(variant), tmp_path / "a", target=target, source=source, progress=False)
    assert full["complete"]
    for stop in (15, 25):
        s = train(_spec(variant), tmp_path / "b", target=target, source=source, progress=False, stop_after=stop)
        assert s["steps_done"] == stop and not s["complete"]
    assert train(_spec(variant), tmp_path / "b", target=target, source=source, progress=False)["complete"]
    a, b = _load(tmp_path / "a"), _load(tmp_path / "b")
    assert a["step"] == 30
    if variant == "otdf":
        assert "cvae" in a and a["cvae_step"] == 20  # the CVAE is part of the state
    _assert_same(a, b)
    assert (tmp_path / "a" / "progress.csv").read_text() == (tmp_path / "b" / "progress.csv").read_text()
    # the comparison is not vacuous: another seed gives another checkpoint
    train(_spec(variant, seed=5), tmp_path / "c", target=target, source=source, progress=False)
    with pytest.raises(AssertionError):
        _assert_same(_load(tmp_path / "c")["actor"], a["actor"])
