"""Rich consoles for the command line.

On a terminal a console takes the terminal's width; piped or captured output (``| grep``, logs,
tests) is not folded at Rich's 80-column default but written up to 200 columns wide (or
``$COLUMNS`` when set), so that file names and table rows stay on one line.

Consoles are made with ``markup=False``: text printed (and table cells) is shown as it is, so a
user's path or SQL such as ``x[/]y.hdf5`` can neither raise Rich's ``MarkupError`` nor change
colours. A print that wants styling passes ``markup=True`` and wraps every user string in
:func:`esc`.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.markup import escape

PIPED_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr), created at call time so that it sees the current streams."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not (hasattr(stream, "isatty") and stream.isatty()) and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=PIPED_WIDTH if wide else None, markup=False)


def esc(value: object) -> str:
    """``str(value)`` with Rich markup escaped, for user strings inside ``markup=True`` prints."""
    return escape(str(value))
