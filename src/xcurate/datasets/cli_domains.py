"""``xcurate domains list`` and ``xcurate domains show NAME``."""

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
                                        help="none, friction, gravity, kinematic or morph")) -> None:
    """List the registered domains with what changed and their reference returns."""
    from xcurate.datasets.domains import list_domains

    doms = list_domains(robot=robot, family=family)
    table = Table(title=f"{len(doms)} domains", show_lines=False)
    for col in ("name", "robot", "family", "level", "what changed"):
        table.add_column(col, overflow="fold")
    table.add_column("J_random", justify="right")
    table.add_column("J_expert", justify="right")
    for d in doms:
        ref = d.references
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
        con.print(f"references: J_random {info['j_random']:.1f} ({info.get('random_episodes', '?')} episodes), "
                  f"J_expert {info['j_expert']:.1f} ({info.get('expert_episodes', '?')} episodes, "
                  f"{info.get('expert_policy', '?')})", highlight=False)
        if info.get("expert_below_random"):
            con.print("[yellow]warning:[/] the expert scores below random here: normalised scores are meaningless",
                      markup=True)
    else:
        con.print("references: not measured (run benchmarks/measure_references.py)")


def register(app: typer.Typer) -> None:
    """Add the ``domains`` sub-app to the main app."""
    app.add_typer(domains_app, name="domains")
