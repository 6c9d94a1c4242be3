"""`machineroom run-request FILE|-` (hidden): run one RunRequest given as JSON.

The scheduler and the dashboard start their runs as this command, the request on its stdin
(machineroom/runs/execute.py), rather than as a command line plus an environment variable:
the request says what to run, where, and what started it (its `trigger`), which the run's row
records. Output is the console reporter's plain lines (what `apply` prints, no colour); the
exit status is the run's, as for the command a person would type.
"""

from __future__ import annotations

import shlex
import sys

import click

from machineroom.errors import UsageError
from machineroom.runs.request import RunRequest

MAX_REQUEST = 1 << 20  # bytes: a request is a few hundred; anything this large is a mistake


@click.command("run-request", hidden=True)
@click.argument("source", metavar="FILE|-")
def run_request_command(source: str) -> None:
    """Run the RunRequest (JSON) in FILE, or on stdin with `-`; exit with the run's status."""
    from machineroom.cli.apply import finish
    from machineroom.report import make_reporter
    from machineroom.runs.execute import execute_request, executes

    request = RunRequest.from_json(_read(source))
    if not executes(request.kind):
        sys.exit(_through_the_cli(request))
    reporter = make_reporter(verbosity=request.verbosity, diff=request.diff)
    sys.exit(finish(execute_request(request, [reporter])))


def _read(source: str) -> str:
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_REQUEST + 1)
        else:
            with open(source, "rb") as handle:
                data = handle.read(MAX_REQUEST + 1)
    except OSError as exc:
        raise UsageError(f"run request: cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_REQUEST:
        raise UsageError(f"run request: more than {MAX_REQUEST} bytes")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UsageError("run request: not UTF-8 text") from None


# -- stop-gap: kinds whose command has not moved into machineroom/runs/ yet -----------------


def _through_the_cli(request: RunRequest) -> int:
    """Run the request's kind through its own CLI command, in this process.

    Stop-gap (issue 12) while `collect` still lives in cli/: once runs/ has its function,
    runs/execute.py's EXECUTORS lists it and this goes. The command records its run without
    a trigger, so the request's is given to every run this process starts. Returns the
    command's exit status."""
    from machineroom.cli import cli
    from machineroom.runs.execute import default_trigger

    words = _words(request)
    code = 0
    argv = sys.argv
    # the command records sys.argv as the run's command: the request's command line instead
    sys.argv = shlex.split(request.command_line) or ["machineroom", *words]
    try:
        with default_trigger(request.trigger):
            cli.main(args=words, prog_name="machineroom", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code


def _words(request: RunRequest) -> list[str]:
    """The command line of the request's kind (values as separate words, never a shell)."""
    if request.kind != "collect":
        raise UsageError(f"run request: kind '{request.kind}' cannot be run from a request yet")
    words = [request.kind]
    for path in request.inventory_paths:
        words += ["--inventory", path]
    if request.state_path:
        words += ["--state", request.state_path]
    connect = request.connect
    words += ["--forks", str(connect.forks), "--connect-timeout", str(connect.connect_timeout)]
    if connect.command_timeout is not None:
        words += ["--timeout", str(connect.command_timeout)]
    for path in connect.known_hosts:
        words += ["--known-hosts", path]
    if connect.accept_new_host_keys:
        words.append("--accept-new-host-keys")
    if connect.vault_password_file:
        words += ["--vault-password-file", connect.vault_password_file]
    for vault_id in connect.vault_ids:
        words += ["--vault-id", vault_id]
    return [*words, "--", request.target]
