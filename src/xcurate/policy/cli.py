"""CLI: ``xcurate train``, ``xcurate evaluate``, ``xcurate runs list|show``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from xcurate.console import make_console
from xcurate.errors import ConfigError


def _parse_sets(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--set {it!r}: expected key=value")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _fmt(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.1f} ± {std:.1f}"


def train_cmd(
    target: str = typer.Option(..., "--target", help="Target dataset (path or id)."),
    domain: str = typer.Option(..., "--domain", help="Target domain for evaluation (e.g. hopper-friction-0.5)."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumed if it holds the same run)."),
    source: str | None = typer.Option(None, "--source", help="Curated source dataset (omit: target only)."),
    steps: int = typer.Option(1_000_000, "--steps", help="Gradient updates (the papers' 1,000,000 takes hours on a CPU; "
                                             "20000 takes minutes). The progress bar shows the time left."),
    seeds: int = typer.Option(1, "--seeds", help="Seeds trained together in one process."),
    seed: int = typer.Option(0, "--seed", help="First seed."),
    eval_every: int = typer.Option(10_000, "--eval-every", help="Evaluate every N updates (0: at the end)."),
    eval_episodes: int = typer.Option(10, "--eval-episodes", help="Deterministic episodes per evaluation."),
    eval_max_steps: int | None = typer.Option(None, "--eval-max-steps", help="Cap episode length (quick tests)."),
    eval_source_domain: str | None = typer.Option(None, "--eval-source-domain",
                                                  help="Also evaluate in this domain (e.g. the source domain)."),
    variant: str | None = typer.Option(None, "--variant",
                                       help="iql | iql-actor | otdf | igdf | dvdf | tabb | droco | dara "
                                            "(default: the curated file's paper_variant; iql-actor for a source without one, iql without a source)"),
    force_variant: bool = typer.Option(False, "--force-variant",
                                       help="Train even if the variant ignores what the curation wrote."),
    sets: list[str] | None = typer.Option(None, "--set", help="IQLConfig override key=value (repeatable)."),
    log_every: int = typer.Option(1000, "--log-every", help="Write progress.csv every N updates."),
    checkpoint_every: int = typer.Option(10_000, "--checkpoint-every", help="Checkpoint every N updates."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    reference: str = typer.Option("measured", "--reference",
                                  help="Normalisation reference set: measured, odrl, otdf or d4rl."),
) -> None:
    """Train weighted IQL on TARGET (+ curated SOURCE), evaluating in DOMAIN."""
    from xcurate.policy.runs import RunSpec, train
    from xcurate.utils import check_output

    if steps < 1 or seeds < 1 or eval_episodes < 0:
        raise ConfigError("--steps and --seeds must be >= 1 and --eval-episodes >= 0")
    if eval_every < 0:
        raise ConfigError(f"--eval-every must be >= 0 (0: evaluate only at the end), got {eval_every}")
    if eval_max_steps is not None and eval_max_steps < 1:
        raise ConfigError(f"--eval-max-steps must be >= 1, got {eval_max_steps}")
    check_output(out, kind="dir", exist_ok=True)  # a run directory is resumed, a file is refused
    spec = RunSpec(target=target, source=source, domain=domain, steps=steps, variant=variant,
                   overrides=_parse_sets(sets), seed=seed, n_seeds=seeds, eval_every=eval_every,
                   eval_episodes=eval_episodes, eval_max_steps=eval_max_steps, eval_source_domain=eval_source_domain,
                   log_every=max(1, min(log_every, steps)), checkpoint_every=max(1, checkpoint_every),
                   reference=reference, force_variant=force_variant)
    summary = train(spec, out, progress=progress)
    _print_summary(str(out), summary)


def _print_summary(run: str, s: dict) -> None:
    t = Table(title=f"run {run}")
    for c in ("metric", "last (mean ± std)", "best (mean ± std)", "seeds", "steps"):
        t.add_column(c)
    t.add_column("domain")
    rows = [(s, "target")] + ([(s["source"], f"{s['source'].get('domain')} (source)")] if "source" in s else [])
    for r, where in rows:
        t.add_row(r.get("metric", "-"), _fmt(r.get("last_mean"), r.get("last_std")),
                  _fmt(r.get("best_mean"), r.get("best_std")), str(len(r.get("seeds", []))),
                  str(s.get("steps_done", r.get("last_step", "-"))), where)
    make_console().print(t)


def evaluate_cmd(run: Path = typer.Argument(..., help="Run directory."),
                 episodes: int = typer.Option(10, "--episodes", help="Episodes per seed."),
                 max_steps: int | None = typer.Option(None, "--max-steps", help="Cap episode length."),
                 domain: str | None = typer.Option(None, "--domain",
                                                   help="Evaluate here instead of the run's target domain."),
                 reference: str | None = typer.Option(None, "--reference",
                                                      help="Reference set: measured, odrl, otdf, d4rl "
                                                           "(default: the run's).")) -> None:
    """Evaluate the last checkpoint of RUN in its target domain (or --domain), deterministic actions."""
    from xcurate.policy.runs import evaluate_run, read_config

    sc = evaluate_run(run, episodes=episodes, max_steps=max_steps, domain=domain, reference=reference)
    t = Table(title=f"evaluation of {run} ({episodes} episode(s) per seed)",
              caption=f"domain: {domain or read_config(run)['spec']['domain']}; "
                      + (f"normalized score (reference: {sc.reference})" if sc.normalized else "raw returns"))
    t.add_column("seed")
    t.add_column("mean return")
    t.add_column(f"normalized score (reference: {sc.reference})" if sc.normalized
                 else "score (raw return: no reference returns)")
    for i in range(len(sc.scores)):
        t.add_row(str(i), f"{sc.returns[i].mean():.1f}", f"{sc.scores[i]:.1f}")
    t.add_row("all", f"{sc.returns.mean():.1f}", f"{sc.mean:.1f} ± {sc.std:.1f}")
    make_console().print(t)


runs_app = typer.Typer(help="List and inspect training runs.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(root: Path = typer.Argument(Path("."), help="Folder searched recursively for runs.")) -> None:
    """List the training runs below ROOT."""
    from xcurate.policy.runs import list_runs

    t = Table(title=f"runs under {root}")
    for c in ("run", "domain", "variant", "source", "steps", "seeds", "last", "best", "reference"):
        t.add_column(c, overflow="fold")
    for r in list_runs(root):
        sp, s = r["spec"], r["summary"]
        rel = Path(r["run"]).relative_to(root) if Path(r["run"]) != root else Path(".")
        t.add_row(str(rel), sp["domain"], sp["variant"], Path(sp["source"]).name if sp.get("source") else "-",
                  f"{s.get('steps_done', '-')}/{sp['steps']}", str(sp["n_seeds"]),
                  _fmt(s.get("last_mean"), s.get("last_std")), _fmt(s.get("best_mean"), s.get("best_std")),
                  str(s.get("reference") or ("-" if s.get("normalized") is False else "measured")))
    make_console().print(t)


@runs_app.command("show")
def runs_show(run: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Show a run's spec, configuration, evaluations and summary."""
    from xcurate.policy.runs import read_config, read_evals

    conf = read_config(run)
    t = Table(title=f"run {run}")
    t.add_column("field")
    t.add_column("value")
    for k, v in conf["spec"].items():
        t.add_row(k, json.dumps(v))
    for k, v in conf["iql"].items():
        t.add_row(f"iql.{k}", json.dumps(v))
    make_console().print(t)
    ev = read_evals(run)
    if ev:
        e = Table(title=f"evaluations (score per seed; reference: {conf['spec'].get('reference', 'measured')})")
        e.add_column("step")
        e.add_column("mean ± std")
        e.add_column("per seed")
        for step in sorted(ev):
            vals = list(ev[step].values())
            m = sum(vals) / len(vals)
            sd = (sum((x - m) ** 2 for x in vals) / len(vals)) ** 0.5
            e.add_row(str(step), f"{m:.1f} ± {sd:.1f}", ", ".join(f"{x:.1f}" for x in vals))
        make_console().print(e)
    sp = Path(run) / "summary.json"
    if sp.exists():
        _print_summary(str(run), json.loads(sp.read_text()))


def register(app: typer.Typer) -> None:
    """Add ``train``, ``evaluate`` and ``runs`` to the main app."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.add_typer(runs_app, name="runs")
