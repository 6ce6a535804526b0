"""``xcurate domains list``, ``xcurate domains show NAME`` and ``xcurate domains match FILE``."""

from __future__ import annotations

import typer
from rich.table import Table

from xcurate.console import esc, make_console

domains_app = typer.Typer(help="Source and shifted-dynamics target domains.", no_args_is_help=True)


def _fmt_ref(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


@domains_app.command("list")
def list_cmd(robot: str = typer.Option(None, "--robot", "-r", help="halfcheetah, hopper, walker2d or ant"),
             family: str = typer.Option(None, "--family", "-f",
                                        help="none, friction, gravity, kinematic or morph"),
             reference: str = typer.Option("measured", "--reference",
                                           help="reference set shown (measured, odrl, otdf, d4rl); other than "
                                                "measured: only the domains the set covers")) -> None:
    """List the registered domains with what changed and their reference returns."""
    from xcurate.datasets.domains import list_domains
    from xcurate.datasets.reference_sets import check_reference_set

    reference = check_reference_set(reference)
    doms = list_domains(robot=robot, family=family)
    if reference != "measured":
        doms = [d for d in doms if d.references_in(reference) is not None]
    title = f"{len(doms)} domains" + ("" if reference == "measured" else f" in reference set {reference!r}")
    table = Table(title=title, show_lines=False)
    for col in ("name", "robot", "family", "level", "what changed"):
        table.add_column(col, overflow="fold")
    lo_name, hi_name = ("J_random", "J_expert") if reference == "measured" else ("J_min", "J_max")
    table.add_column(f"{lo_name} ({reference})", justify="right")
    table.add_column(f"{hi_name} ({reference})", justify="right")
    for d in doms:
        ref = d.references_in(reference)
        table.add_row(d.name, d.robot, d.family, d.level or "-", d.description,
                      _fmt_ref(ref[0] if ref else None), _fmt_ref(ref[1] if ref else None))
    make_console().print(table)


@domains_app.command("show")
def show_cmd(name: str = typer.Argument(..., help="domain name, e.g. hopper-friction-0.5")) -> None:
    """Show a domain in detail: the edited XML attributes (old -> new) and its references."""
    from xcurate.datasets.domains import get_domain

    d = get_domain(name)
    con = make_console()
    con.print(f"[bold]{esc(d.name)}[/]  robot={d.robot} ({d.env_id})  family={d.family}  level={d.level or '-'}",
              markup=True)
    con.print(f"obs_dim={d.obs_dim}  act_dim={d.act_dim}  frame_skip={d.frame_skip}  dt={d.dt:g}")
    con.print(f"what changed: {d.description}")
    if d.params.get("note"):
        con.print(f"note: {d.params['note']}", highlight=False)
    con.print(f"xml: {d.xml_path()}", highlight=False)
    changes = d.changes()
    if changes:
        table = Table(title=f"{len(changes)} edited XML attributes")
        for col in ("element", "name", "attribute", "old", "new"):
            table.add_column(col, overflow="fold")
        for c in changes:
            table.add_row(c.tag, c.name or "-", c.attr, c.old or "(inherited)", c.new)
        con.print(table)
    else:
        con.print("no XML edits (Gymnasium's own model)")
    info = d.reference_info
    if info and d.references:
        con.print(f"references (measured): J_random {info['j_random']:.1f} ({info.get('random_episodes', '?')} "
                  f"episodes, {info.get('random_policy', 'uniform random actions')}), "
                  f"J_expert {info['j_expert']:.1f} ({info.get('expert_episodes', '?')} episodes, "
                  f"{info.get('expert_policy', '?')})", highlight=False)
        if info.get("expert_below_random"):
            con.print("[yellow]warning:[/] the expert scores below random here: normalised scores are meaningless",
                      markup=True)
    else:
        con.print("references (measured): not measured (run benchmarks/measure_references.py)")
    from xcurate.datasets.reference_sets import REFERENCE_SETS

    for ref_set in REFERENCE_SETS[1:]:
        ref = d.references_in(ref_set)
        if ref is not None:
            con.print(f"references ({ref_set}): J_min {ref[0]:.1f}, J_max {ref[1]:.1f}", highlight=False)


@domains_app.command("match")
def match_cmd(file: str = typer.Argument(..., help="dataset file, folder or id (any format load_dataset reads)"),
              domains: list[str] | None = typer.Option(None, "--domains", "-d",
                                                       help="candidate domains (repeatable or comma-separated; "
                                                            "default: every domain of the dataset's robot)"),
              max_rows: int = typer.Option(5000, "--max-rows", help="replay the first N rows (0: all)"),
              top: int = typer.Option(0, "--top", help="show only the N best matches (0: all)"),
              by: str = typer.Option("mean", "--by", help="rank by the mean (default) or median gap"),
              json_out: bool = typer.Option(False, "--json", help="print the matches as JSON")) -> None:
    """Replay FILE in candidate domains and rank them by next-state gap (best match first)."""
    import json

    from xcurate.datasets.fidelity import match_domains
    from xcurate.datasets.io import load_dataset
    from xcurate.errors import ConfigError

    if max_rows < 0 or top < 0:
        raise ConfigError("--max-rows and --top must be >= 0")
    names = [n.strip() for item in (domains or []) for n in item.split(",") if n.strip()] or None
    if names:  # unknown names fail before the dataset is read
        from xcurate.datasets.domains import get_domain

        for n in names:
            get_domain(n)
    ds = load_dataset(file)
    matches = match_domains(ds, names, max_rows=max_rows or None, by=by)
    shown = matches[:top] if top else matches
    if json_out:
        typer.echo(json.dumps({"dataset": str(ds.source), "rows": len(ds),
                               "matches": [m.to_dict() for m in shown]}, indent=1))
        return
    table = Table(title=f"{ds.source}: {matches[0].rows} of {len(ds)} rows replayed in {len(matches)} domains",
                  caption=f"gap = ||s' - s'_domain||_2 over replayable rows; ranked by the {by} gap")
    for col, just in (("rank", "right"), ("domain", "left"), ("median gap", "right"), ("mean gap", "right"),
                      ("valid", "right"), ("s", "right")):
        table.add_column(col, justify=just, overflow="fold")
    for i, m in enumerate(shown, 1):
        table.add_row(str(i), m.domain, f"{m.median_gap:.4g}", f"{m.mean_gap:.4g}", f"{m.valid_fraction:.1%}",
                      f"{m.seconds:.1f}")
    make_console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``domains`` sub-app to the main app."""
    app.add_typer(domains_app, name="domains")
