"""Failure injection: a write that fails mid-way leaves the old file intact and no temporary file.

Covers the three kinds of outputs users keep: diagnostics reports (a directory swapped in whole),
training runs (checkpoint, progress log, summary) and a store's ``store.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

INJECTED = "injected failure: disk full"


def _snapshot(d: Path) -> dict[str, str]:
    """sha256 of every file below ``d`` (relative names)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _temporaries(d: Path) -> list[str]:
    return [str(p) for p in d.rglob("*") if ".tmp" in p.name or ".old-" in p.name]


def _fail_write_text_half_way(monkeypatch, name_part: str) -> list[Path]:
    """Make Path.write_text write half of its text, then raise, for files whose name contains ``name_part``."""
    real = Path.write_text
    hit: list[Path] = []

    def write_text(self, data, *args, **kwargs):
        if name_part in self.name:
            hit.append(self)
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(INJECTED)
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    return hit


def test_report_write_failing_mid_way_keeps_the_old_report(planted_store, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from xcurate.diagnostics.report import diagnose

    out = tmp_path / "report"
    diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=4, out=out, figures=False)
    before = _snapshot(out)
    assert "report.md" in before and "bins.parquet" in before
    real, calls = pq.write_table, []

    def write_table(table, where, *a, **kw):  # the first table lands, the second write fails
        calls.append(where)
        if len(calls) == 2:
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(INJECTED)
        return real(table, where, *a, **kw)

    monkeypatch.setattr(pq, "write_table", write_table)
    with pytest.raises(OSError, match="disk full"):
        diagnose(planted_store, scores=["knn_score"], against="episode_return", bins=6, out=out, force=True,
                 figures=False)
    assert len(calls) == 2 and out not in [Path(c).parent for c in calls]  # written beside, not into, out
    assert _snapshot(out) == before
    assert _temporaries(tmp_path) == []


def test_run_writes_failing_mid_way_keep_checkpoint_log_and_summary(tmp_path, monkeypatch):
    import torch

    from xcurate.datasets.synthetic import planted_shift
    from xcurate.policy.runs import RunSpec, train

    target, source = planted_shift(n_target=100, n_source=200, obs_dim=11, act_dim=3, seed=2)
    spec = RunSpec(target="-", domain="hopper", steps=20, n_seeds=1, eval_every=0, eval_episodes=0, log_every=5,
                   checkpoint_every=10, overrides={"hidden_dim": "16", "batch_target": "8", "batch_source": "8"})
    run = tmp_path / "run"
    train(spec, run, target=target, source=source, progress=False, stop_after=10)
    ckpt = run / "checkpoints" / "last.pt"
    before = _snapshot(run)
    real_save = torch.save

    def save(obj, f, *a, **kw):  # half a checkpoint, then the disk is full
        real_save(obj, f, *a, **kw)
        Path(f).write_bytes(Path(f).read_bytes()[:100])
        raise OSError(INJECTED)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="disk full"):
        train(spec, run, target=target, source=source, progress=False)
    monkeypatch.undo()
    assert torch.load(ckpt, weights_only=True)["step"] == 10  # the old checkpoint, still loadable
    assert _snapshot(run)["checkpoints/last.pt"] == before["checkpoints/last.pt"]
    assert _temporaries(run) == []
    # the summary (written last) failing half-way: the old summary stays whole, no temporary left
    old_summary = (run / "summary.json").read_bytes()
    hit = _fail_write_text_half_way(monkeypatch, "summary.json")
    with pytest.raises(OSError, match="disk full"):
        train(spec, run, target=target, source=source, progress=False)
    assert hit and all(p.name != "summary.json" for p in hit)  # the writer only ever saw a temporary
    monkeypatch.undo()
    assert (run / "summary.json").read_bytes() == old_summary and _temporaries(run) == []
    assert torch.load(ckpt, weights_only=True)["step"] == 20  # the finished checkpoint is whole
    s = train(spec, run, target=target, source=source, progress=False)
    assert s["complete"] and (run / "summary.json").exists()


def test_store_json_write_failing_mid_way_keeps_the_store(tmp_path, monkeypatch):
    from xcurate.datasets.synthetic import planted_shift
    from xcurate.scoring.store import Store

    target, source = planted_shift(n_target=50, n_source=80, seed=0)
    d = tmp_path / "store"
    Store.create(d, source, target)
    before = (d / "store.json").read_bytes()
    hit = _fail_write_text_half_way(monkeypatch, "store.json")
    with pytest.raises(OSError, match="disk full"):
        Store.create(d, source, target, domain="hopper")  # records the domain: rewrites store.json
    assert hit and all(p.name != "store.json" for p in hit)
    monkeypatch.undo()
    assert (d / "store.json").read_bytes() == before
    assert _temporaries(d) == []
    st = Store(d)
    assert not st.domain and len(st.load_source()) == len(source)
    assert np.array_equal(st.load_source().transition_ids, source.transition_ids)
