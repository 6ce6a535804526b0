"""benchmarks/run_experiment.py and benchmarks/measure_references.py end to end on tiny budgets.

The planted experiment: the oracle arm (exact mode) keeps exactly the rows collected in the target's
own dynamics, the random arm keeps the same fraction, every arm records its raw returns, and the
scores re-normalise in another reference set from those raw returns.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_planted_experiment_controls_and_renormalise(tmp_path, monkeypatch, capsys):
    from xcurate.datasets.domains import get_domain
    from xcurate.datasets.io import load_dataset

    mod = _load("run_experiment")
    out = tmp_path / "exp"
    task = "hopper-gravity-0.5"
    argv = ["run_experiment.py", "--out", str(out), "--tasks", task, "--source-quality", "planted",
            "--mode", "static", "--recipes", "none", "--source-size", "400", "--target-size", "150",
            "--steps", "40", "--eval-every", "20", "--eval-episodes", "1", "--seeds", "2",
            "--oracle-mode", "exact", "--set", "hidden_dim=16", "--set", "batch_source=16",
            "--set", "batch_target=16"]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("XCURATE_DATA", str(tmp_path / "data"))
    mod.main()
    src = load_dataset(out / "data" / task / "source.parquet")
    planted = np.asarray(src.extras["planted"], bool)
    assert 0 < planted.sum() < len(src)
    oracle = load_dataset(out / "curated" / task / "oracle.parquet")
    random = load_dataset(out / "curated" / task / "random.parquet")
    # the curated files keep the source's row order: the oracle keeps exactly the planted rows
    np.testing.assert_array_equal(np.asarray(oracle.extras["keep"], bool), planted)
    assert int(np.asarray(random.extras["keep"], bool).sum()) == int(planted.sum())
    assert not np.array_equal(np.asarray(random.extras["keep"], bool), planted)

    rows = json.loads((out / "results.json").read_text())
    assert {r["arm"] for r in rows} == {"target-only", "none", "oracle", "random"}
    # the source reaches the actor in every source arm (--source-in critic_actor, the default)
    assert {r["arm"]: r["variant"] for r in rows} == {"target-only": "iql", "none": "iql-actor",
                                                      "oracle": "iql-actor", "random": "iql-actor"}
    for arm in ("none", "oracle"):
        conf = json.loads((out / "runs" / task / arm / "config.json").read_text())
        assert '"source_in": "critic_actor"' in json.dumps(conf)
    for r in rows:
        assert r["reference"] == "measured" and len(r["last_return_per_seed"]) == 2
        np.testing.assert_allclose(get_domain(task).normalize(np.array(r["last_return_per_seed"])),
                                   r["last_per_seed"], rtol=1e-9, atol=1e-9)
    md = (out / "results.md").read_text()
    assert "normalized score (reference: measured)" in md and "regret" in md

    # re-normalise the finished runs in the ODRL set, from the raw returns only
    rows_odrl = mod.renormalize(rows, "odrl", [out])
    lo, hi = get_domain(task).references_in("odrl")
    for r, r2 in zip(rows, rows_odrl, strict=True):
        want = 100 * (np.array(r["last_return_per_seed"]) - lo) / (hi - lo)
        np.testing.assert_allclose(r2["last_per_seed"], want, rtol=1e-9)
        assert r2["metric"] == "normalized score (reference: odrl)"
        # each seed's best of the two evaluations, re-normalised with the same affine map
        best = 100 * (np.array(r2["best_return_per_seed"]) - lo) / (hi - lo)
        assert r2["best_mean"] == pytest.approx(best.mean(), rel=1e-9)
        assert (np.array(r2["best_return_per_seed"]) >= np.array(r["last_return_per_seed"])).all()
    # rows written before the raw returns were recorded are read back from the runs' eval.csv
    old = [{k: v for k, v in r.items() if not k.endswith("_return_per_seed")} for r in rows]
    again = mod.renormalize(old, "odrl", [out])[0]
    assert again["last_per_seed"] == rows_odrl[0]["last_per_seed"]
    assert again["best_mean"] == rows_odrl[0]["best_mean"]
    with pytest.raises(SystemExit, match="no eval.csv"):
        mod.renormalize(old, "odrl", [tmp_path / "elsewhere"])

    # bring your own lake: --source-file/--target-file are scored and trained on as they are
    out2 = tmp_path / "byo"
    tgt_file = out / "data" / task / "target.parquet"
    byo = ["run_experiment.py", "--out", str(out2), "--tasks", task, "--source-file",
           str(out / "data" / task / "source.parquet"), "--target-file", str(tgt_file), "--mode", "static",
           "--recipes", "none", "--no-controls", "--steps", "20", "--eval-every", "20", "--eval-episodes", "1",
           "--seeds", "1", "--set", "hidden_dim=16", "--set", "batch_source=16", "--set", "batch_target=16"]
    monkeypatch.setattr(sys, "argv", byo)
    mod.main()
    from xcurate.scoring.store import Store

    st = Store(out2 / "stores" / task)
    assert st.query("SELECT count(*) AS n FROM transitions").column("n")[0].as_py() == len(src)
    assert {r["arm"] for r in json.loads((out2 / "results.json").read_text())} == {"target-only", "none"}
    for bad, msg in ((["--target-file", str(tgt_file)], "go together"),
                     (["--source-file", str(tgt_file), "--target-file", str(tgt_file), "--tasks", f"{task},hopper"],
                      "exactly one task")):
        monkeypatch.setattr(sys, "argv", ["run_experiment.py", "--out", str(tmp_path / "x"), *bad])
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            mod.main()
        err = capsys.readouterr().err
        assert e.value.code == 1 and err.startswith("error: ") and msg in err and len(err.splitlines()) == 1


def test_lake_source_quality_builds_the_planted_lake(tmp_path, shared_dir):
    from xcurate.datasets.io import load_dataset

    mod = _load("run_experiment")
    src, tgt = mod.ensure_datasets("hopper-kinematic-otdf", "lake", "medium", 200, 50, tmp_path)
    source, target = load_dataset(src), load_dataset(tgt)
    assert Path(src).parent.parent.name == "data-lake"  # not the cache of --source-quality planted
    assert len(source) == 200 and int(source.extras["planted"].sum()) == 50 and len(target) == 50
    case = source.metadata["planted_case"]
    assert case["kind"] == "lake" and case["n_indomain"] == 50 and case["n_source"] == 150
    assert mod.ensure_datasets("hopper-kinematic-otdf", "lake", "medium", 200, 50, tmp_path) == (src, tgt)  # cached


def test_references_best_expert_is_the_best_candidate():
    """``--expert best``: every zoo agent of the robot runs in the domain; J_expert is the best mean."""
    from xcurate.utils import shared_dir

    sd = shared_dir()
    if sd is None:
        pytest.skip("../shared (the sb3-zoo agents) is absent; skipping the in-domain expert check")
    mod = _load("measure_references")
    root = Path(sd) / "policies"
    cands = mod.zoo_candidates("hopper", root)
    assert len(cands) >= 2 and all("Hopper-v3" in c for c in cands)
    rec = mod.measure("hopper-gravity-0.5", 1, 1, 0, root, expert="best")
    means = rec["expert_candidates"]
    assert len(means) == len(cands)
    assert rec["j_expert"] == pytest.approx(max(means.values()), abs=0.01)
    assert means[rec["expert_policy"]] == pytest.approx(rec["j_expert"], abs=0.01)
    # the source-trained default expert is among the candidates and is not better than the winner
    default = mod.EXPERTS["hopper"].format(root="shared/policies")
    assert means[default] <= rec["j_expert"]
    assert rec["expert_choice"].startswith("best")
