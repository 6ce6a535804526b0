"""Training and evaluation name and use the selected normalisation reference set."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from xcurate.datasets.domains import get_domain
from xcurate.datasets.io import save_dataset
from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError
from xcurate.policy.evaluate import score_returns

torch.set_num_threads(1)


def test_score_returns_in_each_set():
    rets = np.array([[100.0, 300.0], [0.0, 50.0]])
    d = get_domain("hopper-friction-0.5")
    for ref in ("measured", "odrl", "d4rl"):
        sc = score_returns(d, rets, reference=ref)
        assert sc.normalized and sc.reference == ref
        np.testing.assert_allclose(sc.scores, np.asarray(d.normalize(rets, ref)).mean(-1))
    with pytest.raises(ConfigError, match="'otdf' has no values for domain 'hopper-friction-0.5'"):
        score_returns(d, rets, reference="otdf")
    sc = score_returns(d, rets, reference="otdf", strict=False)  # e.g. the optional source-domain evaluation
    assert sc.reference == "measured"


def test_train_and_evaluate_with_a_reference_set(tmp_path, run_cli):
    target, _ = planted_shift(n_target=200, n_source=10, obs_dim=11, act_dim=3, seed=2)
    t = str(save_dataset(target, tmp_path / "target.parquet"))
    common = ["--target", t, "--steps", "10", "--eval-every", "10", "--eval-episodes", "1", "--eval-max-steps",
              "5", "--log-every", "5", "--set", "hidden_dim=16", "--set", "batch_target=16", "--no-progress"]
    code, _, err = run_cli(["train", *common, "--domain", "hopper", "--reference", "odrl", "--out", tmp_path / "x"])
    assert code == 1 and "reference set 'odrl' has no values for domain 'hopper'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    run = tmp_path / "r"
    code, out, err = run_cli(["train", *common, "--domain", "hopper-friction-0.5", "--reference", "odrl",
                              "--out", run])
    assert code == 0, err
    assert "normalized score (reference: odrl)" in out
    rows = list(csv.DictReader(open(run / "eval.csv")))
    assert {r["reference"] for r in rows} == {"odrl"}
    d = get_domain("hopper-friction-0.5")
    for r in rows:
        assert float(r["score"]) == pytest.approx(float(d.normalize(float(r["return_mean"]), "odrl")))
    code, out, err = run_cli(["evaluate", run, "--episodes", "1", "--max-steps", "5"])
    assert code == 0, err
    assert "normalized score (reference: odrl)" in out
    code, out, err = run_cli(["evaluate", run, "--episodes", "1", "--max-steps", "5", "--reference", "d4rl"])
    assert code == 0 and "normalized score (reference: d4rl)" in out
    code, _, err = run_cli(["evaluate", run, "--episodes", "1", "--reference", "otdf"])
    assert code == 1 and "'otdf' has no values" in err
    code, out, _ = run_cli(["runs", "list", tmp_path])
    assert code == 0 and "odrl" in out
