"""CLI: ``xcurate collect``, ``xcurate suite build|plan`` and ``xcurate policies list|evaluate|train``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from xcurate.console import make_console


def _policy_label(origin: str, spec: str | None) -> str:
    """Short policy name for tables: ``zoo:tqc``, ``builtin:hopper-medium``, ``random``."""
    if spec is None:
        return origin
    if spec.startswith("sb3:"):
        parts = Path(spec[4:]).parts
        return f"{origin}:{parts[-3]}" if len(parts) >= 3 else f"{origin}:{parts[-1]}"
    return spec


def collect_cmd(
    domain: str = typer.Option(..., "--domain", help="Domain name (see `xcurate domains list`)."),
    policy: str = typer.Option(..., "--policy", help="sb3:PATH.zip | sb3:<algo>:PATH.zip | cs285:PATH.pkl | "
                                                     "builtin:<robot>-<level> | random"),
    transitions: int = typer.Option(..., "--transitions", "-n", help="Number of transitions to collect."),
    out: str = typer.Option(..., "--out", "-o", help="Output .hdf5/.parquet path or dataset id "
                                                     "(e.g. hopper/source/medium-v0)."),
    noise: float = typer.Option(0.0, "--noise", help="Std of Gaussian action noise (clipped to the box)."),
    seed: int = typer.Option(0, "--seed", help="Seed of resets, noise and the random policy."),
    quality: str = typer.Option(None, "--quality", help="Quality label stored in the metadata."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    force: bool = typer.Option(False, "--force", help="Replace an existing dataset at --out."),
) -> None:
    """Collect a dataset by running a behaviour policy in a domain and write it (D4RL-style HDF5)."""
    from xcurate.datasets.collect import collect
    from xcurate.datasets.io import check_dataset_output, save_dataset
    from xcurate.errors import ConfigError

    if transitions < 1:
        raise ConfigError(f"--transitions must be >= 1, got {transitions}")
    check_dataset_output(out, force=force, format_hint="a minari:<id> destination")
    ds = collect(domain, policy, transitions, noise=noise, seed=seed, progress=progress, quality=quality)
    path = save_dataset(ds, out, config={"command": "collect", "domain": domain, "policy": policy, "noise": noise,
                                         "seed": seed, "quality": quality, "transitions": transitions})
    m = ds.metadata
    make_console().print(f"wrote {path}: {len(ds)} transitions, {ds.n_episodes} episodes, "
                  f"return {m['return_mean']:.1f} +/- {m['return_std']:.1f}, "
                  f"{m['steps_per_second']:.0f} steps/s", highlight=False)


suite_app = typer.Typer(help="Build the benchmark suite of source and target datasets.", no_args_is_help=True)


def _suite_config(robots: list[str] | None, shifts: list[str] | None, source_size: int, target_size: int,
                  root: Path | None, seed: int, noise: float, prefer: str, overwrite: bool, mixed: bool = False,
                  mixed_domains: list[str] | None = None, mixed_fraction: float = 0.1,
                  mixed_policies: str = "random,medium,expert"):
    from xcurate.datasets.suite import ROBOTS, SuiteConfig

    def split(vals: list[str] | None) -> list[str] | None:
        if not vals:
            return None
        return [x.strip() for v in vals for x in v.split(",") if x.strip()]

    return SuiteConfig(robots=split(robots) or list(ROBOTS), shifts=split(shifts), source_size=source_size,
                       target_size=target_size, root=str(root) if root else None, seed=seed, noise=noise,
                       prefer=prefer, overwrite=overwrite, mixed=mixed, mixed_domains=split(mixed_domains),
                       mixed_shift_fraction=mixed_fraction,
                       mixed_qualities=[q.strip() for q in mixed_policies.split(",") if q.strip()])


_ROBOTS_OPT = typer.Option(None, "--robots", help="Robots (repeat or comma-separate); default all four.")
_SHIFTS_OPT = typer.Option(None, "--shifts", help="Target domains: full names or suffixes like friction-0.5 "
                                                  "(repeat or comma-separate); default 3 per robot.")
_MIXED_OPT = typer.Option(False, "--mixed", help="Also build <robot>/source/mixed-v0: the unshifted robot plus "
                                                 "shifted domains, several policies, provenance per row.")
_MIXED_DOMAINS_OPT = typer.Option(None, "--mixed-domains", help="Shifted domains of the mixed source (default: "
                                                                "the target domains).")
_MIXED_FRACTION_OPT = typer.Option(0.1, "--mixed-fraction", help="Fraction of the mixed source from EACH shifted "
                                                                 "domain (the unshifted robot gets the rest).")
_MIXED_POLICIES_OPT = typer.Option("random,medium,expert", "--mixed-policies",
                                   help="Behaviour policy levels of the mixed source.")


@suite_app.command("build")
def suite_build(
    robots: list[str] = _ROBOTS_OPT,
    shifts: list[str] = _SHIFTS_OPT,
    source_size: int = typer.Option(1_000_000, "--source-size", help="Transitions per source dataset."),
    target_size: int = typer.Option(5000, "--target-size", help="Transitions per target dataset."),
    root: Path = typer.Option(None, "--root", help="Data root (default $XCURATE_DATA or ~/.xcurate)."),
    seed: int = typer.Option(0, "--seed", help="Base seed."),
    noise: float = typer.Option(0.0, "--noise", help="Gaussian action noise of every collection."),
    prefer: str = typer.Option("auto", "--policies", help="auto (zoo agents if ../shared exists), zoo or builtin."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Rebuild datasets of a different size."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    mixed: bool = _MIXED_OPT,
    mixed_domains: list[str] = _MIXED_DOMAINS_OPT,
    mixed_fraction: float = _MIXED_FRACTION_OPT,
    mixed_policies: str = _MIXED_POLICIES_OPT,
) -> None:
    """Collect every missing dataset of the suite (existing complete datasets are skipped)."""
    from xcurate.datasets.suite import build_suite

    cfg = _suite_config(robots, shifts, source_size, target_size, root, seed, noise, prefer, overwrite, mixed,
                        mixed_domains, mixed_fraction, mixed_policies)
    entries = build_suite(cfg, progress=progress, log=lambda m: make_console().print(m, highlight=False))
    _entries_table(entries, "suite")


@suite_app.command("plan")
def suite_plan(
    robots: list[str] = _ROBOTS_OPT,
    shifts: list[str] = _SHIFTS_OPT,
    source_size: int = typer.Option(1_000_000, "--source-size"),
    target_size: int = typer.Option(5000, "--target-size"),
    root: Path = typer.Option(None, "--root"),
    prefer: str = typer.Option("auto", "--policies"),
    mixed: bool = _MIXED_OPT,
    mixed_domains: list[str] = _MIXED_DOMAINS_OPT,
    mixed_fraction: float = _MIXED_FRACTION_OPT,
    mixed_policies: str = _MIXED_POLICIES_OPT,
) -> None:
    """Show the datasets a `suite build` would produce and the policies it would use."""
    from xcurate.datasets.suite import plan_suite

    _entries_table(plan_suite(_suite_config(robots, shifts, source_size, target_size, root, 0, 0.0, prefer,
                                            False, mixed, mixed_domains, mixed_fraction, mixed_policies)),
                   "suite plan")


def _entries_table(entries, title: str) -> None:
    t = Table(title=title)
    for c in ("dataset id", "size", "policy", "status", "return", "seconds", "note"):
        t.add_column(c)
    for e in entries:
        t.add_row(e.dataset_id, str(e.size), _policy_label(e.policy_origin, e.policy), e.status,
                  "" if e.return_mean is None else f"{e.return_mean:.1f}",
                  f"{e.seconds:.1f}" if e.seconds else "", e.note)
    make_console().print(t)


policies_app = typer.Typer(help="Behaviour policies (builtin and found in ../shared).", no_args_is_help=True)


@policies_app.command("list")
def policies_list() -> None:
    """List builtin policies and the zoo/CS285 policies found in ../shared with their returns."""
    from xcurate.datasets.policies import find_shared_policies, list_builtin, load_policy

    t = Table(title="behaviour policies")
    t.add_column("spec", overflow="fold")
    for c in ("robot", "kind", "return", "returns measured by"):
        t.add_column(c)
    for spec in list_builtin():
        p = load_policy(spec)
        r = p.info.get("measured_return_mean")
        t.add_row(spec, p.robot, "builtin ARS (linear)", "" if r is None else f"{r:.0f}",
                  "xcurate (5 episodes, v5)")
    for d in find_shared_policies():
        r = d["reported_return"]
        t.add_row(d["spec"], d["robot"] or "?", d["algo"], "" if r is None else f"{r:.0f}",
                  "../shared README (5 episodes, v5)")
    make_console().print(t)


@policies_app.command("evaluate")
def policies_evaluate(
    spec: str = typer.Argument(..., help="Policy spec."),
    domain: str = typer.Option(..., "--domain", help="Domain to evaluate in."),
    episodes: int = typer.Option(5, "--episodes", help="Deterministic episodes."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Measure a policy's mean episode return in a domain."""
    from xcurate.datasets.collect import evaluate

    rets = evaluate(domain, spec, episodes=episodes, seed=seed)
    make_console().print(f"{spec} in {domain}: return {rets.mean():.1f} +/- {rets.std():.1f} over {episodes} episodes "
                  f"({', '.join(f'{r:.0f}' for r in rets)})", highlight=False)


@policies_app.command("train")
def policies_train(
    domain: str = typer.Option(..., "--domain", help="Domain to train in (e.g. hopper-friction-0.5)."),
    algo: str = typer.Option("sac", "--algo", help="sac | tqc (stable-baselines3 / sb3-contrib)."),
    steps: str = typer.Option(..., "--steps", help="Total environment steps, e.g. 300000, 300k, 1e6 (a resumed "
                                                   "run continues to this)."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, manifest, policy.zip)."),
    warm_start: str | None = typer.Option(None, "--warm-start",
                                          help="Zoo agent of the same algorithm: sb3:PATH.zip, PATH.zip or "
                                               "<algo>/<Env>-v3_1 under ../shared/policies/sb3-zoo."),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(10_000, "--checkpoint-every", help="Steps between checkpoints."),
    learning_starts: int = typer.Option(10_000, "--learning-starts", help="Random steps before the first update."),
    buffer_size: int = typer.Option(1_000_000, "--buffer-size", help="Replay buffer capacity."),
    eval_episodes: int = typer.Option(5, "--eval-episodes", help="Deterministic evaluation episodes at the end."),
) -> None:
    """Train a SAC/TQC behaviour policy in a domain (resumable); load it as trained:OUT."""
    from xcurate.datasets.train_policy import PolicyTrainConfig, parse_budget, train_policy

    cfg = PolicyTrainConfig(domain=domain, algo=algo.lower(), steps=parse_budget(steps, "--steps"),
                            warm_start=warm_start, seed=seed,
                            checkpoint_every=checkpoint_every, learning_starts=learning_starts,
                            buffer_size=buffer_size, eval_episodes=eval_episodes)
    man = train_policy(cfg, out, log=lambda m: make_console().print(m, highlight=False))
    ev = man.get("evaluation")
    make_console().print(f"policy trained:{out} ({man['timesteps']:,} steps in {man['domain']}"
                         + (f", return {ev['return_mean']:.1f} +/- {ev['return_std']:.1f}" if ev else "")
                         + f"); collect with: xcurate collect --domain {man['domain']} --policy trained:{out} ...",
                         highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``collect``, ``suite`` and ``policies`` to the main app."""
    app.command("collect")(collect_cmd)
    app.add_typer(suite_app, name="suite")
    app.add_typer(policies_app, name="policies")
