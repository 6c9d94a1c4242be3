"""What happens on a bug: one line on the terminal, the traceback in a log file."""

from __future__ import annotations

import os
import tempfile
import traceback

import click

from machineroom.errors import ExitCode
from machineroom.masking import mask


def report_bug() -> int:
    """Write the current exception's traceback to a private log and say where it is."""
    fd, path = tempfile.mkstemp(prefix="machineroom-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write(mask(traceback.format_exc()))  # a secret in a message stays out
    click.echo(
        f"error: machineroom hit an internal error (a bug); the traceback is in {path}",
        err=True,
    )
    return int(ExitCode.BUG)
