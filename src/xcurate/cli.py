"""The ``xcurate`` command line (Typer + Rich).

Each area defines its commands in its own module; this file only assembles them and turns
:class:`~xcurate.errors.XcurateError` into a one-line ``error: ...`` with exit code 1.
"""

from __future__ import annotations

import sys

import typer

from xcurate.console import esc, make_console
from xcurate.errors import XcurateError


def _drop_type_tags() -> None:
    """Show no ``<bool>``/``<str>``/``<int>`` type tags in ``--help`` (Typer prints one after every
    option, even ``--help <bool>``); the help texts and defaults say what a value is."""
    import typer.core as tcore

    for name in ("TyperOption", "TyperArgument"):
        cls = getattr(tcore, name, None)
        if cls is not None and hasattr(cls, "display_type_rich"):
            cls.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]


_drop_type_tags()

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


def _error(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr as one line (user text escaped, never read as markup)."""
    line = " ".join(message.split("\n")).strip()
    make_console(stderr=True).print(f"[bold red]error:[/] {esc(line)}", highlight=False, markup=True,
                                    soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by tests and :func:`entry`)."""
    try:
        app(args=argv, prog_name="xcurate", standalone_mode=True)
    except SystemExit as e:  # standalone mode ends with sys.exit(code); usage errors exit 2
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except XcurateError as e:
        _error(str(e))
        return 1
    except OSError as e:  # the environment refused (permissions, disk full, a path that is a file ...)
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        _error(f"{where}{e.strerror or e}")
        return 1
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted")
        return 130
    return 0


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
