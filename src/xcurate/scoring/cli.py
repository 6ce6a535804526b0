"""CLI: ``xcurate score``, ``xcurate query`` and ``xcurate store show``."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from xcurate.console import esc, make_console
from xcurate.errors import ConfigError, StoreError

store_app = typer.Typer(help="Inspect score stores.", no_args_is_help=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "NULL"
    return str(v)


def _rich_table(table, title: str | None = None, max_rows: int = 50) -> Table:
    t = Table(title=title)
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        t.add_row(*[_fmt(v) for v in row.values()])
    return t


def score(
    source: str = typer.Option(..., "--source", help="Source dataset: path or dataset id."),
    target: str = typer.Option(..., "--target", help="Target dataset: path or dataset id."),
    scorers: str = typer.Option(..., "--scorers", help="Comma-separated scorer names, e.g. ot,knn."),
    store: Path = typer.Option(..., "--store", help="Store directory (created if missing)."),
    domain: str | None = typer.Option(None, "--domain", help="Target domain (needed by `oracle`)."),
    set_: list[str] = typer.Option([], "--set", help="SCORER.SETTING=VALUE, repeatable (ot.eps=0.05)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for every scorer (default: each scorer's)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    holdout: float = typer.Option(0.0, "--holdout", help="Keep this seeded fraction (0, 0.5] of the target out "
                                  "of every fit and score it like source rows (label-free validation: "
                                  "xcurate diagnose --against holdout). 0 = off."),
    holdout_block: int = typer.Option(1, "--holdout-block", help="Hold out whole segments of this many "
                                      "consecutive rows of an episode (1 = single rows; e.g. 50 stops kNN and OT "
                                      "from recognising a held-out row by its neighbours in time)."),
    engine: str = typer.Option("local", "--engine", help="local (this process) | ray (Ray tasks; same scores)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (HOST:PORT, ray://HOST:PORT, "
                                       "auto); default: a new local Ray. Only with --engine ray."),
    workers: int | None = typer.Option(None, "--workers", help="Chunks scored at once with --engine ray "
                                       "(default: the cluster's CPUs)."),
    fit_source_rows: int = typer.Option(200_000, "--fit-source-rows", help="At most this many source rows "
                                        "(a seeded sample) are used by a scorer's fit; the target is used whole."),
    score_files: str = typer.Option("auto", "--score-files", help="Layout of each run's scores.parquet: one "
                                    "(a file) | parts (part files of 4,194,304 source rows, assembled in bounded "
                                    "memory) | auto (parts above that many rows). Same scores either way."),
) -> None:
    """Score every source transition with each scorer and record the runs in a store."""
    from xcurate.scoring.base import make_scorer
    from xcurate.scoring.engine import check_engine
    from xcurate.scoring.store import (
        Store,
        check_holdout,
        check_holdout_block,
        check_score_files,
        parse_settings,
    )
    from xcurate.utils import check_output

    check_score_files(score_files)
    holdout = check_holdout(holdout)
    holdout_block = check_holdout_block(holdout_block)
    check_engine(engine, workers)
    if engine == "local" and (address is not None or workers is not None):
        raise ConfigError("--address and --workers need --engine ray")
    if fit_source_rows < 1:
        raise ConfigError(f"--fit-source-rows must be >= 1, got {fit_source_rows}")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available")
    names = [s.strip() for s in scorers.split(",") if s.strip()]
    if not names:
        raise ConfigError("--scorers is empty")
    check_output(store, what="--store", kind="dir", exist_ok=True)
    settings = parse_settings(set_)
    unknown = set(settings) - set(names)
    if unknown:
        raise ConfigError(f"--set given for scorer(s) {sorted(unknown)} not in --scorers")
    insts = []
    for name in names:
        kw = dict(settings.get(name, {}))
        if seed is not None:
            kw.setdefault("seed", seed)
        kw.setdefault("device", device)
        insts.append(make_scorer(name, **kw))
    st = Store.create(store, source, target, domain=domain)
    console = make_console(stderr=True)
    ids = []
    for s in insts:
        before = {m["run_id"] for m in st.manifests() if m.get("status") == "complete"}
        rid = st.run(s, progress=progress, domain=domain, holdout=holdout, engine=engine, address=address,
                     workers=workers, fit_source_rows=fit_source_rows, holdout_block=holdout_block,
                     score_files=score_files)
        if rid in before:
            console.print(f"{s.name}: cached run {rid}", highlight=False)
        ids.append(rid)
    ms = {m["run_id"]: m for m in st.manifests()}
    t = Table(title=f"score store {st.dir}")
    for c in ("scorer", "run", "rows", "NaN rows", "wall s", "columns (direction)"):
        t.add_column(c)
    for rid in ids:
        m = ms[rid]
        cols = ", ".join(f"{c} ({spec['direction']})" for c, spec in m.get("columns", {}).items())
        t.add_row(m["scorer"], rid, str(m.get("n_rows")), str(m.get("n_nonfinite")),
                  f"{m.get('timings', {}).get('wall_s', float('nan')):.2f}", cols)
    make_console().print(t)


def query(
    sql: str = typer.Argument(..., help="SQL over the views transitions, target, scores, runs, <scorer>."),
    store: Path = typer.Option(..., "--store", help="Store directory."),
    format: str = typer.Option("table", "--format", help="table | csv | json | parquet."),
    out: Path | None = typer.Option(None, "--out", help="Write the result to this file."),
    max_rows: int = typer.Option(50, "--max-rows", help="Rows shown by --format table."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Run a read-only SQL query (one SELECT/WITH) over a score store's views (DuckDB)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from xcurate.scoring.store import Store
    from xcurate.utils import atomic_path, check_output

    if format not in ("table", "csv", "json", "parquet"):
        raise ConfigError(f"--format must be table, csv, json or parquet, got {format!r}")
    if format == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE")
    if format == "table" and out is not None:
        raise ConfigError("--format table prints to the terminal; use csv/json/parquet with --out")
    if out is not None:
        check_output(out, force=force)
    result = Store(store).query(sql)
    if format == "table":
        if out is not None:
            raise ConfigError("--format table prints to the terminal; use csv/json/parquet with --out")
        make_console().print(_rich_table(result, max_rows=max_rows))
        if result.num_rows > max_rows:
            typer.echo(f"({result.num_rows} rows, {max_rows} shown)")
        return
    if format == "parquet":
        with atomic_path(out) as tmp:
            pq.write_table(result, tmp)
        typer.echo(f"wrote {result.num_rows} rows to {out}")
        return
    if format == "csv":
        buf = io.BytesIO()
        pcsv.write_csv(result, buf)
        text = buf.getvalue().decode()
    else:
        text = json.dumps(result.to_pylist(), default=str, indent=None) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        typer.echo(f"wrote {result.num_rows} rows to {out}")


@store_app.command("show")
def store_show(directory: Path = typer.Argument(..., help="Store directory.")) -> None:
    """Show a store: its datasets, runs and score columns (direction and range)."""
    from xcurate.scoring.store import Store

    st = Store(directory)
    console = make_console()
    info = st.info
    console.print(f"[bold]store[/] {esc(st.dir)}  (format {info['format_version']}, domain {esc(info.get('domain'))})",
                  markup=True)
    for what in ("source", "target"):
        d = info[what]
        console.print(f"  {what}: {d['path']}  n={d['n']}  dims=({d.get('obs_dim')}, {d.get('act_dim')})  "
                      f"fingerprint {d['fingerprint'][:12]}", highlight=False)
    runs = Table(title="runs")
    for c in ("run_id", "scorer", "status", "current", "rows", "NaN rows", "wall s", "device"):
        runs.add_column(c)
    for r in st.query("SELECT * FROM runs ORDER BY scorer, created").to_pylist():
        runs.add_row(r["run_id"], r["scorer"], r["status"], "yes" if r["current"] else "",
                     _fmt(r["n_rows"]), _fmt(r["n_nonfinite"]), _fmt(r["wall_s"]), _fmt(r["device"]))
    console.print(runs)
    cols = st.score_columns()
    if not cols:
        console.print("no complete runs yet")
        return
    stats_sql = ", ".join(f'min("{c}"), max("{c}"), count("{c}")' for c in cols)
    try:
        stats = st.query(f"SELECT {stats_sql} FROM scores").to_pylist()[0]
        vals = list(stats.values())
    except StoreError:  # non-numeric columns
        vals = [None] * (3 * len(cols))
    t = Table(title="score columns")
    for c in ("column", "direction", "range", "min", "max", "non-null"):
        t.add_column(c, overflow="fold")
    for i, (c, spec) in enumerate(cols.items()):
        t.add_row(c, spec.direction, spec.range, _fmt(vals[3 * i]), _fmt(vals[3 * i + 1]),
                  _fmt(vals[3 * i + 2]))
    console.print(t)


def register(app: typer.Typer) -> None:
    """Add ``score``, ``query`` and the ``store`` sub-app to the main app."""
    app.command("score")(score)
    app.command("query")(query)
    app.add_typer(store_app, name="store")
