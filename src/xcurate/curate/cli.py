"""CLI: ``xcurate curate --store DIR --recipe NAME [options] --out PATH``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from xcurate.console import make_console
from xcurate.errors import ConfigError


def curate_cmd(
    store: Path = typer.Option(..., "--store", help="Score store directory."),
    recipe: str = typer.Option(..., "--recipe", help="none | otdf | igdf | dvdf | tabb | droco | dara | sql | "
                               "oracle | random | auto (column and keep fraction from score --holdout)"),
    out: str = typer.Option(..., "--out", help="Output: .parquet, .hdf5, a folder (--format minari), minari:<id>."),
    fmt: str | None = typer.Option(None, "--format", help="parquet | hdf5 | minari (default: from --out)."),
    proportion: float | None = typer.Option(None, "--proportion", help="otdf: fraction kept (0.8)."),
    xi: float | None = typer.Option(None, "--xi", help="igdf (0.75) / dvdf (0.5): fraction kept."),
    alpha: float | None = typer.Option(None, "--alpha", help="igdf: weight exp(alpha * score) (1.0)."),
    lam: float | None = typer.Option(None, "--lambda", help="dvdf: g = lambda h + (1-lambda) A_norm (0.7)."),
    temperature: float | None = typer.Option(None, "--temperature", help="tabb: softmax temperature (1.0); oracle weight/both: T of exp(-gap/T) (median)."),
    eta: float | None = typer.Option(None, "--eta", help="dara: reward correction scale (0.1)."),
    column: str | None = typer.Option(None, "--column", help="otdf/igdf: score column to use; oracle: oracle_dynamics_gap | oracle_bellman_error."),
    h_column: str | None = typer.Option(None, "--h-column", help="dvdf: dynamics score column."),
    where: str | None = typer.Option(None, "--where", help="sql: SQL predicate over the scores view."),
    weight: str | None = typer.Option(None, "--weight", help="sql: SQL weight expression (default 1.0)."),
    fraction: float | None = typer.Option(None, "--fraction", help="oracle / random: fraction kept (0.5)."),
    oracle_mode: str | None = typer.Option(None, "--oracle-mode",
                                           help="oracle: keep | weight | both | exact (keep)."),
    tolerance: float | None = typer.Option(None, "--tolerance", help="oracle exact: largest gap counted as 0 (1e-6)."),
    seed: int | None = typer.Option(None, "--seed", help="random: seed of the uniform choice (0)."),
    signal: str | None = typer.Option(None, "--signal", help="auto: consensus | holdout_auc | matched_win: "
                                      "the label-free signal that picks the column (consensus)."),
    drop_unkept: bool = typer.Option(False, "--drop-unkept", help="Write only kept rows."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset at --out."),
) -> None:
    """Curate the store's source dataset with a recipe and export it (with a manifest)."""
    from xcurate.curate.recipes import curate_to_file
    from xcurate.curate.stream import curate_stream
    from xcurate.datasets.io import check_dataset_output, dataset_destination
    from xcurate.scoring.store import Store

    opts = {k: v for k, v in {"proportion": proportion, "xi": xi, "alpha": alpha, "lam": lam,
                               "temperature": temperature, "eta": eta, "column": column,
                               "h_column": h_column, "where": where, "weight": weight, "fraction": fraction,
                               "mode": oracle_mode, "tolerance": tolerance, "seed": seed,
                               "signal": signal}.items() if v is not None}
    if recipe != "sql" and ("where" in opts or "weight" in opts):
        raise ConfigError("--where/--weight are options of --recipe sql")
    st = Store(store)  # input errors first, then the output (before the work)
    check_dataset_output(out, fmt, force=force)
    if dataset_destination(out, fmt)[1] == "parquet":  # streams the source: bounded memory
        info, path = curate_stream(st, recipe, out, drop_unkept=drop_unkept, **opts)
        w, keep, n, extras, md = info["weight"], info["keep"], len(info["keep"]), info["extras"], info["metadata"]
    else:
        ds, path = curate_to_file(st, recipe, out, format=fmt, drop_unkept=drop_unkept, **opts)
        w, keep, n, extras, md = ds.extras["weight"], ds.extras["keep"], len(ds), list(ds.extras), ds.metadata
        if drop_unkept:  # the table describes the source rows, as the streamed path does
            keep, n = np.ones(len(ds), bool), md["curation"]["total"]
    t = Table(title=f"curated {recipe} -> {path}")
    for c in ("rows", "kept", "kept %", "weight mean (kept)", "weight min..max (kept)", "columns"):
        t.add_column(c)
    wk = w[keep] if keep.any() else np.zeros(1)
    t.add_row(str(n), str(int(keep.sum())), f"{100 * keep.sum() / n:.1f}", f"{wk.mean():.3g}",
              f"{wk.min():.3g}..{wk.max():.3g}", ", ".join(sorted(extras)))
    console = make_console()
    console.print(t)
    if recipe == "auto":
        o = md["curation"]["options"]
        console.print(f"auto chose {o['chosen_column']} by {o['signal_used']} ({o['direction']} is better; "
                      f"held-out AUC {o['holdout_auc']:.3f}, consensus {o['consensus']:+.3f}) and kept the top "
                      f"{100 * o['keep_fraction']:.1f}%", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``curate`` to the main app."""
    app.command("curate")(curate_cmd)
