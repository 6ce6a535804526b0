"""CLI for datasets, domains, collection and the suite builder.

Each sub-area registers its own commands from its own module so that they can be edited
independently: ``cli_io`` (datasets info/convert), ``cli_domains`` (domains list/show),
``cli_collect`` (collect, suite build).
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the datasets-related commands to the main app."""
    from xcurate.datasets import cli_collect, cli_domains, cli_io

    cli_io.register(app)
    cli_domains.register(app)
    cli_collect.register(app)
