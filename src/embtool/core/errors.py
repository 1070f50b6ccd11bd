"""The exceptions that cross embtool's library border.

Library code raises these; the CLI edge (``embtool.cli.main``) turns them into one line
``embtool: error: …`` on stderr and the exit status the class names.
"""

from __future__ import annotations


class EmbtoolError(Exception):
    """Base class. ``exit_code`` is what the command exits with."""

    exit_code = 1


class BadInput(EmbtoolError):
    """The input (a file, a line, an option value) is wrong; the message names it and the fix."""

    exit_code = 2


class NonFinite(BadInput):
    """A table holds NaN/Inf. ``found`` says where, without the hint: a command that has no
    ``--allow-nonfinite`` (``train``) gives its own."""

    def __init__(self, found: str) -> None:
        super().__init__(f"{found}; pass --allow-nonfinite to accept them")
        self.found = found


class UsageError(BadInput):
    """The command was called in a way that cannot work (e.g. a table written to a terminal)."""


class WorkFailure(EmbtoolError):
    """Something failed while working on good input (I/O, an external library)."""

    exit_code = 1
