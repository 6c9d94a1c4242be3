"""`machineroom run-request FILE|-` (hidden): run one RunRequest given as JSON.

The scheduler and the dashboard start their runs as this command, the request on its stdin
(machineroom/runs/execute.py), rather than as a command line plus an environment variable:
the request says what to run, where, and what started it (its `trigger`), which the run's row
records. Output is the console reporter's plain lines (what `apply` prints, no colour; a
collection: a line per host and the totals); the exit status is the run's, as for the command
a person would type.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import TYPE_CHECKING

import click

from machineroom.errors import ExitCode, UsageError
from machineroom.runs.request import RunRequest

if TYPE_CHECKING:
    from machineroom.runs.collect import HostReport

MAX_REQUEST = 1 << 20  # bytes: a request is a few hundred; anything this large is a mistake


@click.command("run-request", hidden=True)
@click.argument("source", metavar="FILE|-")
def run_request_command(source: str) -> None:
    """Run the RunRequest (JSON) in FILE, or on stdin with `-`; exit with the run's status."""
    from machineroom.cli.apply import finish
    from machineroom.report import make_reporter
    from machineroom.runs.execute import execute_request, settled

    request = settled(RunRequest.from_json(_read(source)))
    if request.kind == "collect":
        sys.exit(_collect(request))
    if request.kind == "run" and not request.module:
        # as `machineroom run -- COMMAND` prints it: each host's block with its output
        from machineroom.report.adhoc import CommandReporter, command_summary

        result = execute_request(request, [CommandReporter()])
        click.echo("\n" + command_summary(result.data.get("hosts", {}), result.run_id), err=True)
        sys.exit(finish(result))
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


# -- collect: its fleet part (alert rules, retention) lives in fleet/, above runs/ ------------


def _collect(request: RunRequest) -> int:
    """A `collect` request, as `machineroom collect PATTERN` runs it: fleet/collect.py's
    collection, alert rules and pruning, with the request's trigger and command line.
    `options` may say `retention` (default $MACHINEROOM_RETENTION, else 35d), `alerts` (a
    rules file; default the repo's alerts.yml) and `no_alerts`. One line per host, then the
    totals; exit 0, 3 when a host was unreachable, or the run's status when it stopped."""
    from machineroom.cli.apply import finish
    from machineroom.fleet.collect import collect_request
    from machineroom.runs.execute import prepared_workspace

    unknown = sorted(set(request.options) - {"retention", "alerts", "no_alerts"})
    if unknown:
        raise UsageError(f"run request: collect: unknown option(s): {', '.join(unknown)}")
    from_env = os.environ.get("MACHINEROOM_RETENTION")  # as `collect --retention` reads it
    if from_env and "retention" not in request.options:
        request = dataclasses.replace(request, options={**request.options, "retention": from_env})
    done = collect_request(request, prepared_workspace(request), on_host=_print_host)
    collection = done.collection
    if collection.status in ("interrupted", "error"):
        return finish(collection.result)
    down = collection.down
    click.echo(
        f"collected {len(collection.reports) - len(down)}/{len(collection.reports)} hosts in "
        f"{done.seconds:.2f} s"
        + (f"; {len(down)} unreachable" if down else "")
        + f" (run {collection.result.run_id})",
        err=True,
    )
    return int(ExitCode.UNREACHABLE) if down else int(ExitCode.OK)


def _print_host(report: HostReport) -> None:
    if report.reachable:
        problems = f" ({'; '.join(report.problems)})" if report.problems else ""
        click.echo(f"{report.host_id}: ok, {len(report.metrics)} metrics{problems}")
    else:
        click.echo(f"{report.host_id}: unreachable: {report.error}", err=True)
