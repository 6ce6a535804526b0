"""Training runs: resume, evaluation, CLI, bad inputs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from xcurate.datasets.domains import get_domain
from xcurate.datasets.io import save_dataset
from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError, DataError, StoreError
from xcurate.policy.evaluate import check_layout, run_episodes, score_returns
from xcurate.policy.runs import RunSpec, evaluate_run, list_runs, summarize, train

SETS = {"hidden_dim": "32", "batch_target": "16", "batch_source": "16"}


@pytest.fixture(scope="module")
def hopper_like():
    """Synthetic data with Hopper's layout (11 obs, 3 actions)."""
    target, source = planted_shift(n_target=200, n_source=400, obs_dim=11, act_dim=3, seed=2)
    source.extras["weight"] = np.where(source.extras["planted"] == 1, 1.0, 0.3).astype(np.float32)
    source.extras["keep"] = np.ones(len(source), bool)
    return target, source


@pytest.fixture
def files(tmp_path, hopper_like):
    target, source = hopper_like
    t = save_dataset(target, tmp_path / "target.parquet")
    s = save_dataset(source, tmp_path / "curated.parquet")
    return str(t), str(s)


def _spec(**kw) -> RunSpec:
    base = {"target": "-", "domain": "hopper", "steps": 40, "n_seeds": 2, "eval_every": 0, "eval_episodes": 0,
            "log_every": 10, "checkpoint_every": 10, "overrides": dict(SETS)}
    return RunSpec(**{**base, **kw})


def test_resume_equals_uninterrupted(tmp_path, hopper_like):
    target, source = hopper_like
    train(_spec(), tmp_path / "a", target=target, source=source, progress=False)
    s1 = train(_spec(), tmp_path / "b", target=target, source=source, progress=False, stop_after=25)
    assert s1["steps_done"] == 25 and not s1["complete"]
    s2 = train(_spec(), tmp_path / "b", target=target, source=source, progress=False)
    assert s2["complete"]
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 40
    for net in ("actor", "q", "v", "q_target"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), (net, k)
    rows_a = (tmp_path / "a" / "progress.csv").read_text().splitlines()
    rows_b = (tmp_path / "b" / "progress.csv").read_text().splitlines()
    assert len(rows_a) == len(rows_b) == 1 + 4 * 2  # header + 4 log points x 2 seeds
    assert rows_a[-1] == rows_b[-1]


def test_resumed_and_rerun_runs_keep_their_timings(tmp_path, hopper_like):
    """A resumed run sums the sessions' timings; re-running a finished run must not zero them."""
    target, source = hopper_like
    run = tmp_path / "r"
    train(_spec(), run, target=target, source=source, progress=False, stop_after=25)
    first = json.loads((run / "manifest.json").read_text())["timings"]
    assert first["updates_timed"] == 25 and first["sessions"] == 1
    train(_spec(), run, target=target, source=source, progress=False)
    second = json.loads((run / "manifest.json").read_text())["timings"]
    assert second["updates_timed"] == 40 and second["sessions"] == 2
    assert second["train_s"] > first["train_s"] and second["updates_per_s"] > 0
    train(_spec(), run, target=target, source=source, progress=False)  # already complete: no updates
    third = json.loads((run / "manifest.json").read_text())["timings"]
    assert third["updates_timed"] == 40 and third["sessions"] == 3
    assert third["train_s"] >= second["train_s"]
    assert third["updates_per_s"] == pytest.approx(second["updates_per_s"], rel=0.5)


def test_run_with_evaluation_and_summary(tmp_path, hopper_like):
    target, source = hopper_like
    spec = _spec(eval_every=20, eval_episodes=1, eval_max_steps=15)
    s = train(spec, tmp_path / "r", target=target, source=source, progress=False)
    assert s["evaluations"] == 2 and s["seeds"] == [0, 1]
    has_refs = get_domain("hopper").references is not None
    assert s["normalized"] is has_refs and ("raw return" in s["metric"]) is not has_refs
    assert s["best_mean"] >= s["last_mean"] - 1e-9
    man = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert man["kind"] == "policy_run" and man["seeds"] == [0, 1] and man["timings"]["updates_per_s"] > 0
    assert man["config"]["iql"]["n_seeds"] == 2
    assert summarize(tmp_path / "r")["last_step"] == 40
    sc = evaluate_run(tmp_path / "r", episodes=1, max_steps=15)
    assert sc.returns.shape == (2, 1)
    assert [r["run"] for r in list_runs(tmp_path)] == [str(tmp_path / "r")]


def test_evaluation_is_deterministic():
    def act(o):
        return np.zeros((o.shape[0], 3), np.float32)

    r1 = run_episodes(act, "hopper", 2, 2, max_steps=10)
    r2 = run_episodes(act, "hopper", 2, 2, max_steps=10)
    assert r1.shape == (2, 2) and np.array_equal(r1, r2)
    assert np.array_equal(r1[0], r1[1])  # every seed sees the same initial states
    dom = get_domain("hopper")
    sc = score_returns(dom, r1)
    if dom.references is not None:
        assert sc.normalized and np.allclose(sc.scores, dom.normalize(r1).mean(-1))
    raw = score_returns(dataclasses.replace(dom, name="hopper-without-references"), r1)
    assert not raw.normalized and np.allclose(raw.scores, r1.mean(-1))


def test_bad_inputs(tmp_path, hopper_like):
    target, source = hopper_like
    wrong, _ = planted_shift(n_target=50, n_source=10, obs_dim=17, act_dim=6)
    with pytest.raises(DataError, match="do not match the domain"):
        train(_spec(), tmp_path / "x", target=wrong, progress=False)
    meta = target.select(slice(None))
    meta.metadata = {"domain": "walker2d"}
    with pytest.raises(DataError, match="observation layouts differ"):
        check_layout("hopper", meta)
    bad = source.select(slice(None))
    bad.extras = {"weight": np.zeros(len(source), np.float32)}
    with pytest.raises(DataError, match="all zero"):
        train(_spec(), tmp_path / "x", target=target, source=bad, progress=False)
    bad.extras = {"weight": np.full(len(source), np.nan, np.float32)}
    with pytest.raises(DataError, match="NaN"):
        train(_spec(), tmp_path / "x", target=target, source=bad, progress=False)
    with pytest.raises(DataError, match="'y_hat' is required"):
        train(_spec(variant="tabb", overrides={**SETS, "batch_norm": "none"}), tmp_path / "x",
              target=target, source=source, progress=False)
    assert not (tmp_path / "x").exists()  # nothing written for bad input
    train(_spec(steps=10), tmp_path / "v", target=target, progress=False)
    with pytest.raises(StoreError, match="different configuration"):
        train(_spec(steps=10, seed=7), tmp_path / "v", target=target, progress=False)
    conf = json.loads((tmp_path / "v" / "config.json").read_text())
    conf["format_version"] = 999
    (tmp_path / "v" / "config.json").write_text(json.dumps(conf))
    with pytest.raises(StoreError, match="format 999"):
        train(_spec(steps=10), tmp_path / "v", target=target, progress=False)
    with pytest.raises(StoreError, match="format 999"):
        evaluate_run(tmp_path / "v")


def test_cli_train_evaluate_runs(tmp_path, files, run_cli):
    t, s = files
    run = tmp_path / "runs" / "r1"
    code, out, err = run_cli(["train", "--target", t, "--source", s, "--domain", "hopper", "--steps", "30",
                              "--seeds", "2", "--eval-every", "15", "--eval-episodes", "1",
                              "--eval-max-steps", "10", "--log-every", "10", "--set", "hidden_dim=32",
                              "--set", "batch_target=16", "--set", "batch_source=16", "--out", run,
                              "--no-progress"])
    assert code == 0, err
    assert "last (mean ± std)" in out and (run / "checkpoints" / "last.pt").exists()
    code, out, err = run_cli(["evaluate", run, "--episodes", "1", "--max-steps", "10"])
    assert code == 0, err
    assert "all" in out
    code, out, _ = run_cli(["runs", "list", tmp_path / "runs"])
    assert code == 0 and "r1" in out and "hopper" in out
    code, out, _ = run_cli(["runs", "show", run])
    assert code == 0 and "iql.expectile" in out and "evaluations" in out
    code, _, err = run_cli(["train", "--target", t, "--domain", "hopper", "--steps", "5", "--set", "nope=1",
                            "--out", tmp_path / "bad"])
    assert code == 1 and "unknown IQLConfig field" in err
    code, _, err = run_cli(["train", "--target", t, "--domain", "walker2d", "--steps", "5", "--out",
                            tmp_path / "bad"])
    assert code == 1 and "do not match" in err
    code, _, err = run_cli(["runs", "show", tmp_path])
    assert code == 1 and "not a training run" in err


def test_tensorboard_logs_where_installed(tmp_path, hopper_like):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    target, source = hopper_like
    train(_spec(eval_every=20, eval_episodes=1, eval_max_steps=5), tmp_path / "r", target=target, source=source,
          progress=False)
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"seed0/critic_loss", "seed1/critic_loss", "seed0/eval_score", "seed1/eval_score"} <= set(tags)
    assert [e.step for e in acc.Scalars("seed0/critic_loss")] == [10, 20, 30, 40]
    assert [e.step for e in acc.Scalars("seed1/eval_score")] == [20, 40]


def test_optional_source_domain_evaluation(tmp_path, hopper_like, run_cli):
    target, source = hopper_like
    spec = _spec(eval_every=20, eval_episodes=1, eval_max_steps=30, eval_source_domain="hopper-gravity-2.0")
    s = train(spec, tmp_path / "r", target=target, source=source, progress=False)
    src = s["source"]
    assert src["domain"] == "hopper-gravity-2.0" and src["evaluations"] == 2 and src["seeds"] == [0, 1]
    tgt_rows = (tmp_path / "r" / "eval.csv").read_text().splitlines()
    src_rows = (tmp_path / "r" / "eval_source.csv").read_text().splitlines()
    assert len(tgt_rows) == len(src_rows) == 1 + 2 * 2  # header + 2 evaluations x 2 seeds
    assert src["last_per_seed"] != s["last_per_seed"]  # other dynamics, other returns
    assert summarize(tmp_path / "r")["last_per_seed"] == s["last_per_seed"]  # the target summary is unchanged
    again = evaluate_run(tmp_path / "r", episodes=1, max_steps=30, domain="hopper-gravity-2.0")
    assert np.allclose(again.scores, src["last_per_seed"])
    code, out, err = run_cli(["evaluate", tmp_path / "r", "--episodes", "1", "--max-steps", "30",
                              "--domain", "hopper-gravity-2.0"])
    assert code == 0 and "domain: hopper-gravity-2.0" in out, err
    with pytest.raises(DataError, match="walker2d"):
        train(_spec(eval_source_domain="walker2d"), tmp_path / "bad", target=target, source=source, progress=False)
    assert not (tmp_path / "bad").exists()


def test_resume_a_run_written_before_new_optional_fields(tmp_path, hopper_like):
    """A config.json without fields added later (their defaults) still resumes; other changes are refused."""
    target, source = hopper_like
    train(_spec(), tmp_path / "r", target=target, source=source, progress=False, stop_after=20)
    path = tmp_path / "r" / "config.json"
    conf = json.loads(path.read_text())
    del conf["spec"]["eval_source_domain"], conf["iql"]["cuda_graph"]
    path.write_text(json.dumps(conf))
    s = train(_spec(), tmp_path / "r", target=target, source=source, progress=False)
    assert s["complete"] and s["steps_done"] == 40
    # force_variant guards the start only: the finished run is the same run with it on
    s = train(_spec(force_variant=True), tmp_path / "r", target=target, source=source, progress=False)
    assert s["complete"] and s["steps_done"] == 40
    conf["iql"]["expectile"] = 0.9
    path.write_text(json.dumps(conf))
    with pytest.raises(StoreError, match="different configuration"):
        train(_spec(), tmp_path / "r", target=target, source=source, progress=False)
    conf["iql"]["from_the_future"] = 1
    path.write_text(json.dumps(conf))
    with pytest.raises(StoreError, match="does not match"):
        train(_spec(), tmp_path / "r", target=target, source=source, progress=False)


def _curated(source, recipe: str, paper_variant: str):
    """A copy of ``source`` marked as the output of ``recipe`` (as xcurate.curate.recipes.curate writes it)."""
    ds = source.select(slice(None))
    p = ds.extras["planted"].astype(np.float32)
    ds.extras = {"weight": np.ones(len(ds), np.float32), "keep": np.ones(len(ds), bool),
                 "penalty": (0.5 * (1 - p)).astype(np.float32), "v_next_scorer": p + np.arange(len(ds)) % 3,
                 "delta_r": (p - 0.5).astype(np.float32), "corrected_reward": (ds.rewards + 0.1 * (p - 0.5))}
    ds.metadata = {**ds.metadata, "curation": {"recipe": recipe, "paper_variant": paper_variant, "options": {}}}
    return ds


def test_variant_defaults_to_the_curated_files_paper_variant(tmp_path, hopper_like, run_cli):
    """No --variant: the file's recorded paper_variant is trained and recorded (issue 16 point 6)."""
    target, source = hopper_like
    t = save_dataset(target, tmp_path / "t.parquet")
    s = save_dataset(_curated(source, "droco", "droco"), tmp_path / "droco.parquet")
    train(_spec(target=str(t), source=str(s), steps=10), tmp_path / "r", progress=False)
    conf = json.loads((tmp_path / "r" / "config.json").read_text())
    assert conf["spec"]["variant"] == "droco" and conf["iql"]["source_target"] == "droco"
    train(_spec(target=str(t), source=str(s), steps=10), tmp_path / "r", progress=False)  # resumes: same config
    train(_spec(steps=10), tmp_path / "plain", target=target, source=source, progress=False)  # uncurated
    conf = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert conf["spec"]["variant"] == "iql-actor" and conf["iql"]["source_in"] == "critic_actor"
    train(_spec(steps=10), tmp_path / "alone", target=target, progress=False)  # no source: plain iql
    assert json.loads((tmp_path / "alone" / "config.json").read_text())["spec"]["variant"] == "iql"


@pytest.mark.parametrize(("recipe", "variant"), [("droco", "iql"), ("dara", "iql"), ("droco", "dara"),
                                                 ("dara", "iql-actor")])
def test_inert_curation_is_refused_unless_forced(tmp_path, hopper_like, recipe, variant):
    target, source = hopper_like
    cur = _curated(source, recipe, recipe)
    with pytest.raises(ConfigError, match=f"recipe '{recipe}'.*--variant {recipe}.*--force-variant"):
        train(_spec(variant=variant), tmp_path / "x", target=target, source=cur, progress=False)
    assert not (tmp_path / "x").exists()
    s = train(_spec(variant=variant, steps=10, force_variant=True), tmp_path / "f", target=target, source=cur,
              progress=False)
    assert s["steps_done"] == 10
    # a config that reads the column is no fallback: allowed without forcing
    sets = {**SETS, "source_target": "droco"} if recipe == "droco" else {**SETS, "reward_correction": "delta_r"}
    train(_spec(variant="iql", steps=10, overrides=sets), tmp_path / "ok", target=target, source=cur, progress=False)


def test_cli_refuses_inert_curation_in_one_line(tmp_path, hopper_like, run_cli):
    target, source = hopper_like
    t = save_dataset(target, tmp_path / "t.parquet")
    s = save_dataset(_curated(source, "dara", "dara"), tmp_path / "dara.parquet")
    args = ["train", "--target", t, "--source", s, "--domain", "hopper", "--steps", "5", "--eval-episodes", "0",
            "--set", "hidden_dim=16", "--set", "batch_target=8", "--set", "batch_source=8", "--no-progress"]
    code, _, err = run_cli([*args, "--variant", "iql", "--out", tmp_path / "bad"])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error:") and "--force-variant" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "bad").exists()
    code, _, err = run_cli([*args, "--variant", "iql", "--force-variant", "--out", tmp_path / "forced"])
    assert code == 0, err
    code, _, err = run_cli([*args, "--out", tmp_path / "default"])
    assert code == 0, err
    assert json.loads((tmp_path / "default" / "config.json").read_text())["spec"]["variant"] == "dara"


def test_files_from_older_scorers_name_the_fix(tmp_path, hopper_like):
    """A droco file without v_next_scorer (ensemble scorer v1) under the preset: one line naming the fix."""
    target, source = hopper_like
    cur = _curated(source, "droco", "droco")
    del cur.extras["v_next_scorer"]
    with pytest.raises(DataError, match="re-score with the current 'ensemble'.*--set droco_penalty=column"):
        train(_spec(), tmp_path / "x", target=target, source=cur, progress=False)
    s = train(_spec(steps=10, overrides={**SETS, "droco_penalty": "column"}), tmp_path / "ok", target=target,
              source=cur, progress=False)
    assert s["steps_done"] == 10
