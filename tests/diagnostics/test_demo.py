"""`xcurate demo --fast` end to end (the expensive test of this area), and its output-dir rules."""

from __future__ import annotations

import json
import math
import resource
import time

import pytest

from xcurate.errors import ConfigError


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@pytest.mark.slow
def test_demo_fast(run_cli, tmp_path):
    """The CI-sized demo runs every stage, every scorer, and writes a complete, readable output."""
    out = tmp_path / "demo"
    t0, c0 = time.perf_counter(), _cpu()
    code, stdout, stderr = run_cli(["demo", "--fast", "--out", out])
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    assert code == 0, stderr[-3000:]
    # CPU time, not wall time: the budget (2 minutes on 2 cores) must not fail on a busy machine
    assert cpu < 110, f"demo --fast used {cpu:.0f} s of CPU ({wall:.0f} s wall; budget: 2 minutes)"
    man = json.loads((out / "demo.json").read_text())
    assert man["kind"] == "demo" and man["fast"] is True
    for stage in ("collect", "score", "query", "curate", "train_and_evaluate", "diagnose", "total"):
        assert man["timings"][stage] > 0, stage
    # every scorer ran and is current in the store
    from xcurate.scoring.store import Store

    st = Store(out / "store")
    assert set(st.current_runs()) == {"ot", "knn", "contrastive", "advantage", "tbm", "ensemble", "dara", "oracle"}
    n = st.query("SELECT count(*) AS n, count(oracle_bellman_error) AS o FROM scores").to_pylist()[0]
    assert n["n"] == 1200 and n["o"] > 0
    # query result: 10 deciles; curated datasets; one training run per job with a finite score
    assert (out / "query_ot_deciles.csv").read_text().count("\n") == 11
    assert {p.name for p in (out / "curated").iterdir() if p.suffix == ".parquet"} == \
        {"none.parquet", "otdf.parquet", "tabb.parquet"}
    names = [r["name"] for r in man["results"]]
    assert names == ["target-only", "unfiltered", "otdf", "tabb"]
    assert all(math.isfinite(r["last_mean"]) for r in man["results"])
    assert all((out / "runs" / nm / "summary.json").exists() for nm in names)
    # the diagnostics report and the Rich summary
    md = (out / "report" / "report.md").read_text()
    assert "ot_score" in md and "bins_overlay.png" in md
    assert "Where everything is" in stdout and "target-only" in stdout and "decile" in stdout
    # a second run into the same directory is refused without --force
    code, _, err = run_cli(["demo", "--fast", "--out", out])
    assert code == 1 and "--force" in err


def test_demo_output_dir_rules(tmp_path):
    from xcurate.diagnostics.demo import DEMO_MARKER, _prepare_out

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="holds other files"):
        _prepare_out(foreign, force=True)
    assert (foreign / "thesis.tex").exists()
    old = tmp_path / "old"
    (old / "runs" / "a").mkdir(parents=True)
    (old / DEMO_MARKER).write_text("{}")
    (old / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        _prepare_out(old, force=False)
    _prepare_out(old, force=True)
    assert not (old / "runs").exists() and not (old / DEMO_MARKER).exists()
    assert (old / "keep.txt").read_text() == "mine"  # only the demo's own outputs are removed
