"""Shared pytest fixtures and helpers.

Helpers (import them with ``from conftest import ...``; pytest puts ``tests/`` on the path):

- :func:`assert_one_error_line`: the CLI's bad-input contract (exit 1, exactly one ``error:`` line).
- :func:`trivial_auc` / :func:`assert_beats_trivial`: a planted-signal AUC must beat the best
  trivial column (reward, ||s||, ||s'||, either sign) by a stated margin.

Fixtures: ``shared_dir``, ``run_cli``, ``planted_store`` (knn store over synthetic planted data),
``hopper_collections`` (small real Hopper source/target datasets) and ``hopper_store`` (a knn +
oracle store over them). ``torch.set_num_threads(1)`` is set once for the whole session.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_configure(config):
    """One torch thread for every test (the machines running the suite are shared)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return
    torch.set_num_threads(1)


# ---------------------------------------------------------------------------- helpers
def assert_one_error_line(code: int, err: str, *needles: str) -> str:
    """Assert the CLI bad-input contract: exit 1, exactly one ``error: ...`` line, no traceback.

    Args:
        code: the exit code.
        err: captured stderr.
        needles: substrings the error line must contain (the file/field/setting it names).

    Returns:
        The error line.
    """
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1, (code, err)
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def trivial_columns(source) -> dict[str, np.ndarray]:
    """The trivial per-row baselines a planted-signal scorer must beat: r, ||s||, ||s'||."""
    return {"reward": np.asarray(source.rewards, np.float64),
            "|s|": np.linalg.norm(source.observations, axis=1),
            "|s'|": np.linalg.norm(source.next_observations, axis=1)}


def trivial_auc(source, labels: np.ndarray | None = None) -> float:
    """The best AUC any trivial column reaches, in either direction (so >= 0.5)."""
    from xcurate.datasets.synthetic import auc

    lab = source.extras["planted"] if labels is None else labels
    return max(max(a, 1 - a) for a in (auc(c, lab) for c in trivial_columns(source).values()))


def assert_beats_trivial(scores: np.ndarray, source, margin: float, labels: np.ndarray | None = None,
                         ) -> float:
    """Assert that ``scores`` separate the planted rows better than every trivial column by ``margin``.

    Args:
        scores: one score per source row (higher = more target-like).
        source: the source dataset (``extras["planted"]`` holds the labels unless ``labels`` is given).
        margin: required AUC margin over the best trivial column.
        labels: optional labels (default ``source.extras["planted"]``).

    Returns:
        The scorer's AUC.
    """
    from xcurate.datasets.synthetic import auc

    lab = source.extras["planted"] if labels is None else labels
    a, base = auc(scores, lab), trivial_auc(source, lab)
    assert a >= base + margin, f"AUC {a:.3f} does not beat the best trivial column ({base:.3f}) by {margin}"
    return a


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (real policies and data); tests using it skip where it is absent."""
    from xcurate.utils import shared_dir as find

    d = find()
    if d is None:
        pytest.skip("../shared is absent (real policies/data live there); skipping")
    return d


@pytest.fixture
def run_cli(capsys):
    """Run the xcurate CLI in-process: ``code, out, err = run_cli(["datasets", "info", path])``."""
    from xcurate.cli import main

    def _run(args: list[str]) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return _run


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    """Point XCURATE_DATA at a temporary folder so that tests never touch ~/.xcurate."""
    monkeypatch.setenv("XCURATE_DATA", str(tmp_path_factory.mktemp("xcurate_data")))


@pytest.fixture(scope="session")
def planted_store(tmp_path_factory):
    """A real store over synthetic planted-shift data with the knn scorer (no oracle columns)."""
    from xcurate.datasets.synthetic import planted_shift
    from xcurate.scoring.store import score_datasets

    target, source = planted_shift(n_target=200, n_source=600, seed=0)
    return score_datasets(source, target, ["knn"], tmp_path_factory.mktemp("planted") / "store")


@pytest.fixture(scope="session")
def hopper_collections():
    """Small real Hopper data collected once per session, random actions.

    Returns a dict: ``source`` (hopper, 300 noisy + 300 noise-free rows, quality "random"),
    ``target`` (hopper-gravity-2.0, 200 rows), ``source_small`` (hopper, 300 rows, seed 0) and
    ``target_small`` (hopper-gravity-2.0, 200 rows, seed 1).
    """
    from xcurate.datasets.collect import collect
    from xcurate.datasets.transitions import TransitionDataset

    parts = [collect("hopper", "random", 300, seed=0, progress=False, quality="random"),
             collect("hopper", "random", 300, noise=0.0, seed=1, progress=False, quality="random")]
    return {"source": TransitionDataset.concat(parts),
            "target": collect("hopper-gravity-2.0", "random", 200, seed=2, progress=False, quality="random"),
            "source_small": collect("hopper", "random", 300, seed=0, progress=False),
            "target_small": collect("hopper-gravity-2.0", "random", 200, seed=1, progress=False)}


@pytest.fixture(scope="session")
def hopper_store(tmp_path_factory, hopper_collections):
    """A real MuJoCo store: hopper source (random actions), hopper-gravity-2.0 target, knn + oracle."""
    from xcurate.scoring.base import available_scorers
    from xcurate.scoring.store import score_datasets

    if "oracle" not in available_scorers():
        pytest.skip("the oracle scorer is not available")
    return score_datasets(hopper_collections["source"], hopper_collections["target"], ["knn", "oracle"],
                          tmp_path_factory.mktemp("hopper") / "store", domain="hopper-gravity-2.0")
