"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


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
