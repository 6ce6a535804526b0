"""CLI commands of the diagnostics area: ``xcurate diagnose`` and ``xcurate demo``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add ``diagnose`` and ``demo`` to the main app."""

    @app.command("diagnose")
    def diagnose_cmd(
        store: Path = typer.Option(..., "--store", help="Score store directory (xcurate score --store DIR)."),
        out: Path = typer.Option(..., "--out", help="Report directory (report.md, PNG figures, CSV/Parquet)."),
        scores: str = typer.Option("", "--scores", help="Comma-separated score columns (default: every "
                                   "ranked non-oracle column in the store)."),
        against: str = typer.Option("oracle_bellman_error", "--against", help="Reference quantity: "
                                    "oracle_bellman_error | oracle_dynamics_gap | episode_return | quality | "
                                    "holdout (held-out target rows vs source rows; needs score --holdout)."),
        bins: int = typer.Option(10, "--bins", help="Number of equal-size percentile groups."),
        force: bool = typer.Option(False, "--force", help="Replace an existing report in --out."),
    ) -> None:
        """Rank source transitions by each score and compare with the oracle (TABB's diagnostic)."""
        from rich.table import Table

        from xcurate.console import make_console
        from xcurate.diagnostics.report import diagnose
        from xcurate.scoring.store import Store
        from xcurate.utils import check_output

        st = Store(store)
        check_output(out, kind="dir", exist_ok=True)  # an existing report is diagnose's to refuse (--force)
        cols = [s.strip() for s in scores.split(",") if s.strip()] or None
        if against == "holdout":
            from xcurate.diagnostics.holdout import holdout_report

            tab = holdout_report(st, out, force=force)
            rows = [r for r in tab.to_pylist() if cols is None or r["column"] in cols]
            table = Table(title="held-out target rows vs source rows (label-free; AUC 0.5 = cannot tell apart)")
            for c in ("score", "direction", "holdout AUC", "held-out median pct", "source share above q10"):
                table.add_column(c, justify="left" if c in ("score", "direction") else "right")
            for r in rows:
                table.add_row(r["column"], r["direction"], f"{r['holdout_auc']:.3f}",
                              f"{r['holdout_median_pct']:.1f}", f"{r['source_above_holdout_q10']:.3f}")
            console = make_console()
            console.print(table)
            console.print(f"report: {Path(out) / 'report.md'}", highlight=False, markup=False)
            return
        rep = diagnose(st, scores=cols, against=against, bins=bins, out=out, force=force)
        console = make_console()
        table = Table(title=f"scores vs {against} ({rep.n_rows} rows, {bins} groups, most useful first)")
        for c in ("score", "direction", "Spearman (aligned)", "bin trend", "top group", "bottom group", "verdict"):
            table.add_column(c, justify="right" if c not in ("score", "direction", "verdict") else "left")
        for r in rep.summary.to_pylist():
            table.add_row(r["score"], r["direction"], f"{r['spearman_aligned']:+.3f}", f"{r['bin_trend']:+.2f}",
                          f"{r['top_mean']:.4g}", f"{r['bottom_mean']:.4g}", r["verdict"])
        console.print(table)
        console.print(f"report: {rep.markdown}")

    @app.command("demo")
    def demo_cmd(
        out: Path = typer.Option(None, "--out", help="Output directory (default: ./xcurate-demo, or ./xcurate-demo-fast with "
                                "--fast; an earlier demo there is replaced)."),
        fast: bool = typer.Option(False, "--fast", help="Tiny budgets (< 2 min; what CI runs)."),
        force: bool = typer.Option(False, "--force", help="Replace an existing demo output directory."),
        seed: int = typer.Option(0, "--seed", help="Random seed for collection, scorers and training."),
    ) -> None:
        """End-to-end demo: collect, score with every scorer, query, curate, train IQL, evaluate, diagnose."""
        from xcurate.diagnostics.demo import run_demo

        run_demo(out=out, fast=fast, force=force, seed=seed)
