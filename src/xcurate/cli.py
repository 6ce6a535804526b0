"""The ``xcurate`` command line (Typer + Rich).

Each area defines its commands in its own module; this file only assembles them and turns
:class:`~xcurate.errors.XcurateError` into a one-line ``error: ...`` with exit code 1.
"""

from __future__ import annotations

import sys

import typer

from xcurate.console import make_console
from xcurate.errors import XcurateError

app = typer.Typer(name="xcurate", help="Curate source data for cross-domain offline RL.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _register() -> None:
    from xcurate.curate.cli import register as reg_curate
    from xcurate.datasets.cli import register as reg_datasets
    from xcurate.diagnostics.cli import register as reg_diagnostics
    from xcurate.policy.cli import register as reg_policy
    from xcurate.scoring.cli import register as reg_scoring

    for reg in (reg_datasets, reg_scoring, reg_curate, reg_policy, reg_diagnostics):
        reg(app)




@app.callback()
def _root() -> None:
    """Curate source data for cross-domain offline RL: datasets, scores, curation, training."""


_register()


@app.command("version")
def version() -> None:
    """Print the versions of xcurate and its main libraries."""
    from xcurate.utils import library_versions

    for k, v in library_versions().items():
        typer.echo(f"{k}: {v}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by tests and :func:`entry`)."""
    try:
        app(args=argv, prog_name="xcurate", standalone_mode=True)
    except SystemExit as e:  # standalone mode ends with sys.exit(code); usage errors exit 2
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except XcurateError as e:
        make_console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, markup=True, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted")
        return 130
    return 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
