"""Issue 12, what must still work (or newly work) after the hardening: legitimate SQL and
paths with brackets, ``--force``, typed settings, fit progress, the help text, the overlay figure
and a README command 1 that runs twice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xcurate.datasets.synthetic import planted_shift
from xcurate.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A planted-shift store with ot and knn runs (three ranked score columns)."""
    from xcurate.scoring.store import score_datasets

    tg, src = planted_shift(n_target=150, n_source=300, seed=1)
    d = tmp_path_factory.mktemp("store")
    return score_datasets(src, tg, ["ot", "knn"], d / "store", settings={"ot": {"chunk": 100}, "knn": {"k": 2}})


# ------------------------------------------------------------------------------------------ SQL


def test_where_with_semicolon_in_a_string_is_accepted(store, tmp_path, run_cli):
    out = tmp_path / "c.parquet"
    code, _, err = run_cli(["curate", "--store", store.dir, "--recipe", "sql", "--where",
                            "quality IS NULL OR quality <> 'a;b'", "--weight", "1.0 -- a trailing comment",
                            "--out", out])
    assert code == 0, err
    from xcurate.datasets.io import load_dataset

    assert load_dataset(out).extras["keep"].all()


def test_where_stays_one_expression(store):
    from xcurate.curate.recipes import curate

    n = len(store.load_source())
    kept = int(curate(store, "sql", where="ot_score > (SELECT median(ot_score) FROM scores)").extras["keep"].sum())
    assert 0 < kept < n
    for bad in ("ot_score > 0.5) OR (1=1", "true; DROP VIEW scores", "1 /* open", ""):
        with pytest.raises(ConfigError, match="--where"):
            curate(store, "sql", where=bad)


def test_read_only_queries_still_work(store, run_cli):
    code, out, err = run_cli(["query", "WITH s AS (SELECT * FROM scores) SELECT count(*) AS n FROM s",
                              "--store", store.dir, "--format", "json"])
    assert code == 0 and json.loads(out) == [{"n": 300}], err
    code, out, err = run_cli(["query", "SELECT scorer FROM runs ORDER BY scorer", "--store", store.dir,
                              "--format", "csv"])
    assert code == 0 and [w.strip('"') for w in out.split()] == ["scorer", "knn", "ot"], err


def test_store_files_stay_readable(store, run_cli):
    """Inside the store everything may be read (older runs too); outside nothing."""
    code, out, err = run_cli(["query", f"SELECT count(*) AS n FROM read_parquet('{store.dir}/runs/*/scores.parquet')",
                              "--store", store.dir, "--format", "json"])
    assert code == 0 and json.loads(out) == [{"n": 600}], err
    code, _, err = run_cli(["query", f"SELECT count(*) FROM read_parquet('{store.dir}/../*/*.parquet')",
                            "--store", store.dir])
    assert code == 1 and "disabled" in err


def test_check_read_only_sql():
    from xcurate.errors import StoreError
    from xcurate.scoring.store import check_read_only_sql

    check_read_only_sql("SELECT 'a;b' AS x")
    check_read_only_sql("FROM scores")
    for sql, why in [("SELECT 1; SELECT 2", "exactly one"), ("", "exactly one"), ("DROP VIEW scores", "DROP"),
                     ("INSTALL httpfs", "only read-only"), ("PRAGMA version", "only read-only"),
                     ("SELECT (", "cannot parse")]:
        with pytest.raises(StoreError, match=why):
            check_read_only_sql(sql)


# -------------------------------------------------------------------------------- console text


def test_markup_in_user_text_is_printed_as_is(tmp_path, monkeypatch, run_cli):
    from xcurate.datasets.io import save_dataset

    tg, _ = planted_shift(n_target=60, n_source=10, seed=2)
    for folder in ("e[/red]x", "d[red]"):
        (tmp_path / folder).mkdir(parents=True)
        save_dataset(tg, tmp_path / folder / "s.hdf5")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["datasets", "info", "d[red]/s.hdf5"])
    assert code == 0 and "d[red]/s.hdf5" in out, err
    code, out, err = run_cli(["datasets", "convert", "e[/red]x/s.hdf5", "o[/]x.parquet"])
    assert code == 0 and "o[/]x.parquet" in out, err
    assert (tmp_path / "o[/]x.parquet").exists()


def test_query_result_with_markup(store, run_cli):
    code, out, err = run_cli(["query", "SELECT 'a [/] b' AS s, '[bold]x' AS t", "--store", store.dir])
    assert code == 0 and "a [/] b" in out and "[bold]x" in out, err


# ---------------------------------------------------------------------------------- outputs


def test_force_replaces_a_dataset(tmp_path, run_cli):
    from xcurate.datasets.io import load_dataset, save_dataset

    tg, src = planted_shift(n_target=80, n_source=120, seed=3)
    save_dataset(src, tmp_path / "a.parquet")
    save_dataset(tg, tmp_path / "b.hdf5")
    code, _, err = run_cli(["datasets", "convert", tmp_path / "a.parquet", tmp_path / "b.hdf5"])
    assert code == 1 and "--force" in err and len(load_dataset(tmp_path / "b.hdf5")) == 80
    code, _, err = run_cli(["datasets", "convert", tmp_path / "a.parquet", tmp_path / "b.hdf5", "--force"])
    assert code == 0 and len(load_dataset(tmp_path / "b.hdf5")) == 120, err


def test_check_output(tmp_path):
    from xcurate.utils import check_output

    (tmp_path / "f.txt").write_text("x")
    (tmp_path / "d").mkdir()
    assert check_output(tmp_path / "new" / "deeper" / "x.parquet") == tmp_path / "new" / "deeper" / "x.parquet"
    assert not (tmp_path / "new").exists()  # nothing created by the check
    check_output(tmp_path / "f.txt", force=True)
    check_output(tmp_path / "d", kind="dir", exist_ok=True)
    for kw, why in [({"path": tmp_path / "f.txt"}, "already exists"),
                    ({"path": tmp_path / "d"}, "is a directory"),
                    ({"path": tmp_path / "f.txt", "kind": "dir", "exist_ok": True}, "not a directory"),
                    ({"path": tmp_path / "f.txt" / "x.parquet"}, "is a file"),
                    ({"path": "/proc/x.parquet"}, "cannot write")]:
        with pytest.raises(ConfigError, match=why):
            check_output(**kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.txt"]  # no probe file left


def test_minari_ids_stay_under_the_root(tmp_path, monkeypatch):
    from xcurate.datasets.io import minari_path

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "root"))
    assert minari_path("minari:xcurate/toy/expert-v0") == tmp_path / "root" / "xcurate/toy/expert-v0"
    for bad in ("minari:../evil", "minari:a/../../evil", "minari:/etc", "minari:"):
        with pytest.raises(DataError, match="Minari"):
            minari_path(bad)


# --------------------------------------------------------------------------------- settings


def test_scorer_settings_are_typed_and_ranged():
    from xcurate.scoring.base import make_scorer

    s = make_scorer("contrastive", hidden=[16, 16], steps=0, lr=1)
    assert s.hidden == (16, 16) and s.lr == 1.0 and isinstance(s.lr, float)
    assert make_scorer("knn", k=np.int64(3)).k == 3
    for name, kw, why in [("knn", {"k": 1.5}, "integer"), ("knn", {"k": True}, "integer"),
                          ("ot", {"eps": "abc"}, "number"), ("ot", {"eps": float("nan")}, "finite"),
                          ("contrastive", {"steps": -1}, r"\[0, inf\)"), ("contrastive", {"lr": 0}, r"\(0, inf\)"),
                          ("contrastive", {"hidden": [16, 0]}, r"\[1, inf\)"), ("ot", {"official": 1}, "true or"),
                          ("advantage", {"gamma": 1.0}, r"\[0, 1\)"), ("ot", {"solver": 3}, "string")]:
        with pytest.raises(ConfigError, match=why):
            make_scorer(name, **kw)


def test_iql_settings_are_finite_and_in_range():
    from xcurate.policy.iql import IQLConfig

    assert IQLConfig().with_overrides({"hidden_dim": "1e2", "actor_lr": "1e-4"}).hidden_dim == 100
    for key, value in [("actor_lr", "nan"), ("actor_lr", "inf"), ("actor_lr", "-1"), ("critic_lr", "0"),
                       ("gamma", "1.5"), ("tau", "0"), ("expectile", "1"), ("beta", "nan"),
                       ("hidden_dim", "1.5"), ("hidden_dim", "inf"), ("hidden_dim", "0"), ("dara_eta", "inf")]:
        with pytest.raises(ConfigError):
            IQLConfig().with_overrides({key: value})


# ------------------------------------------------------------------------- progress and help


def test_fit_progress_reports_steps_and_loss(capsys):
    from xcurate.scoring.base import fit_progress, make_scorer
    from xcurate.scoring.store import Store

    tg, src = planted_shift(n_target=64, n_source=64, seed=4)
    seen: list[tuple[str, int, int, float]] = []
    scorer = make_scorer("contrastive", steps=150, hidden=[16], embed_dim=8, batch_size=16, n_negatives=15,
                         device="cpu")
    with fit_progress(lambda *a: seen.append(a)):
        scorer.fit(tg, src)
    assert [s[1] for s in seen] == [1, 101, 150] and all(s[2] == 150 and math.isfinite(s[3]) for s in seen)
    assert "contrastive" in seen[0][0]
    # the store shows it beside the scoring bar
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        st = Store.create(Path(d) / "s", src, tg)
        st.run(make_scorer("contrastive", steps=120, hidden=[16], embed_dim=8, batch_size=16, n_negatives=15,
                           device="cpu"), progress=True)
    err = capsys.readouterr().err
    assert "fit contrastive" in err and "loss" in err and "120/120" in err


def test_help_has_no_type_tags_and_states_the_steps(capsys):
    from xcurate.cli import main

    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out and "<int>" not in out and "<str>" not in out and "<path>" not in out
    assert "1,000,000" in " ".join(out.split())


def test_bins_overlay_highlights_best_and_worst(store, tmp_path, monkeypatch):
    import matplotlib.figure

    from xcurate.diagnostics.report import diagnose

    figs = {}
    real = matplotlib.figure.Figure.savefig

    def keep(self, fname, *a, **k):
        figs[Path(fname).name] = self
        return real(self, fname, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    rep = diagnose(store, scores=["ot_score", "knn_score", "knn_distance"], against="episode_return", bins=5,
                   out=tmp_path / "rep")
    assert len(rep.scores) >= 3
    lines = [ln for ln in figs["bins_overlay.png"].axes[0].get_lines() if not ln.get_label().startswith("all rows")]
    labels = [ln.get_label() for ln in lines]
    best = [ln for ln in lines if ln.get_label().startswith("best: ")]
    worst = [ln for ln in lines if ln.get_label().startswith("worst: ")]
    assert len(best) == 1 and len(worst) == 1, labels
    others = [ln for ln in lines if ln not in best + worst]
    assert all(o.get_linewidth() < best[0].get_linewidth() and o.get_alpha() < 1 for o in others)
    rho = {r["score"]: r["spearman_aligned"] for r in rep.summary.to_pylist()}
    assert best[0].get_label().split()[1] == max(rho, key=rho.get)


# ------------------------------------------------------------------------------------ demo


def test_demo_default_output_runs_twice(tmp_path, monkeypatch, run_cli):
    """README command 1 (``xcurate demo``) twice in a row: the default output is under the working
    directory and its earlier demo is replaced; anything else there is kept or refused."""
    import xcurate.diagnostics.demo as demo

    calls = []

    def fake_run(cfg, out, fast, console):  # the pipeline itself is tested in tests/diagnostics/test_demo.py
        calls.append(out)
        (out / "store").mkdir()
        (out / "store" / "store.json").write_text("{}")
        (out / demo.DEMO_MARKER).write_text(json.dumps({"kind": "demo"}))
        return None

    monkeypatch.setattr(demo, "_run", fake_run)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, _, err = run_cli(["demo", "--fast"])
        assert code == 0, err
    assert calls == [Path("xcurate-demo-fast")] * 2 and (tmp_path / "xcurate-demo-fast" / demo.DEMO_MARKER).exists()
    (tmp_path / "xcurate-demo-fast" / "notes.txt").write_text("mine")
    code, _, err = run_cli(["demo", "--fast"])
    assert code == 0 and (tmp_path / "xcurate-demo-fast" / "notes.txt").read_text() == "mine", err
    (tmp_path / "xcurate-demo").mkdir()
    (tmp_path / "xcurate-demo" / "thesis.tex").write_text("x")
    code, _, err = run_cli(["demo"])
    assert code == 1 and "not a demo" in err and (tmp_path / "xcurate-demo" / "thesis.tex").exists()
    # an explicit --out holding a demo still needs --force
    code, _, err = run_cli(["demo", "--fast", "--out", tmp_path / "xcurate-demo-fast"])
    assert code == 1 and "--force" in err
