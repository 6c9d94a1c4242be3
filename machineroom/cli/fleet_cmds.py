"""`machineroom collect`, `status` and `metrics`: the fleet's health between deployments."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from machineroom.cli.apply import finish
from machineroom.cli.context import (
    connection_options,
    inventory_options,
    make_workspace,
)
from machineroom.errors import ExitCode, UsageError
from machineroom.report.terminal import visible
from machineroom.runs.connect import ConnectSettings

if TYPE_CHECKING:
    from machineroom.runs.collect import HostReport
    from machineroom.runs.workspace import Workspace

DEFAULT_RETENTION = "35d"  # as fleet/collect.py's


@click.command("collect")
@click.argument("pattern", default="all")
@inventory_options
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print each host's metrics as JSON.")
@click.option(
    "--retention",
    default=DEFAULT_RETENTION,
    show_default=True,
    envvar="MACHINEROOM_RETENTION",
    help="Delete samples older than this after collecting (e.g. 35d, 12w; 0 keeps all).",
)
@click.option(
    "--alerts",
    "alerts_path",
    type=click.Path(dir_okay=False),
    help="Alert rules to evaluate [default: alerts.yml in the inventory's repo].",
)
@click.option("--no-alerts", is_flag=True, help="Do not evaluate alert rules.")
@click.option(
    "--install-restricted-key",
    "public_key_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Instead of collecting: install the collection script and this public key, "
    "restricted to running it, on each host (see docs/fleet.md).",
)
@click.option("-b", "--become", is_flag=True, help="Install through sudo.")
@click.option(
    "-C",
    "--check",
    is_flag=True,
    help="With --install-restricted-key: change nothing; report what would change.",
)
def collect_command(
    pattern: str,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    connect: ConnectSettings,
    as_json: bool,
    retention: str,
    alerts_path: str | None,
    no_alerts: bool,
    public_key_file: str | None,
    become: bool,
    check: bool,
) -> None:
    """Collect status, CPU, memory, disks, network, containers and the inventory's custom
    collectors from the hosts matching PATTERN: one remote command a host, hosts in
    parallel. Samples go to the database's time series; alert rules are evaluated after."""
    from machineroom.fleet.durations import parse_duration

    parse_duration(retention, "--retention", allow_zero=True)  # before anything loads
    workspace = make_workspace(inventory_paths, state_path)
    if public_key_file:
        code = _install(workspace, pattern, Path(public_key_file), become, check, as_json, connect)
    else:
        if check:
            raise UsageError("-C/--check: only with --install-restricted-key")
        code = _collect(workspace, pattern, connect, as_json, retention, alerts_path, no_alerts)
    if code:
        raise SystemExit(code)


def _collect(
    workspace: Workspace,
    pattern: str,
    connect: ConnectSettings,
    as_json: bool,
    retention: str,
    alerts_path: str | None,
    no_alerts: bool,
) -> int:
    from machineroom.fleet.collect import collect_request
    from machineroom.runs.request import RunRequest

    request = RunRequest(
        kind="collect",
        target=pattern,
        options={"retention": retention, "alerts": alerts_path, "no_alerts": no_alerts},
        connect=connect,
        command_line="machineroom collect " + pattern,
    )
    done = collect_request(request, workspace, on_host=None if as_json else _print_report)
    result = done.collection.result
    if done.collection.status in ("interrupted", "error"):
        return finish(result)
    reports, down, summary = done.collection.reports, done.collection.down, done.summary
    if as_json:
        click.echo(
            json.dumps(
                {"run": result.run_id, **summary, "hosts": [_as_dict(r) for r in reports]},
                indent=2,
            )
        )
    else:
        for change in done.changes:
            _print_change(change)
        click.echo(
            f"collected {len(reports) - len(down)}/{len(reports)} hosts in {done.seconds:.2f} s"
            + (f"; {len(down)} unreachable" if down else "")
            + (f"; pruned {done.pruned} old samples" if done.pruned else "")
            + f" (run {result.run_id})",
            err=True,
        )
    return int(ExitCode.UNREACHABLE) if down else 0


def _print_install(host_id: str, status: str, messages: Sequence[str]) -> None:
    if status in ("failed", "unreachable"):
        reason = "; ".join(messages) or status
        message = f"{host_id}: installing the restricted collector: {reason}"
        click.secho(visible(message), fg="red", err=True)
    elif messages:
        click.secho(f"{host_id}: changed: {'; '.join(messages)}", fg="yellow")
    else:
        click.secho(f"{host_id}: ok: already installed", fg="green")


def _install(
    workspace: Workspace,
    pattern: str,
    public_key_file: Path,
    become: bool,
    check: bool,
    as_json: bool,
    connect: ConnectSettings,
) -> int:
    from machineroom.report import make_reporter
    from machineroom.runs.collect import HostLines, install_collector

    public_key = public_key_file.read_text().strip()
    if not public_key or "PRIVATE KEY" in public_key:
        raise UsageError(
            f"--install-restricted-key: {public_key_file} is not a public key (give the .pub file)"
        )
    reporter: Any = HostLines(_print_install)
    if as_json:
        reporter = make_reporter(as_json=True, verbosity=0, diff=False)
    result = install_collector(
        workspace,
        pattern,
        public_key,
        connect,
        [reporter],
        become=become,
        check=check,
        key_file=str(public_key_file),
        command_line=f"machineroom collect --install-restricted-key {public_key_file}",
    )
    return finish(result)


def _as_dict(report: HostReport) -> dict[str, Any]:
    return {
        "host": report.host_id,
        "reachable": report.reachable,
        "error": report.error,
        "duration": round(report.duration, 3),
        "metrics": dict(report.metrics),
        "containers": [dict(c) for c in report.containers],
        "problems": list(report.problems),
    }


def _print_report(report: HostReport) -> None:
    if not report.reachable:
        click.secho(f"{report.host_id:<20} unreachable: {report.error}", fg="red")
        return
    click.echo(f"{report.host_id:<20} {describe(report.metrics)}")
    for problem in report.problems:
        click.secho(f"{'':<20} {problem}", fg="yellow")


def _print_change(change: Any) -> None:
    opened = change.state == "opened"
    subject = f" {change.subject}" if change.subject else ""
    click.secho(
        visible(  # messages quote what hosts reported
            f"alert {change.state}: {change.rule} on {change.host_id}{subject}"
            f" [{change.severity}] {change.message}"
        ),
        fg="red" if opened else "green",
        err=True,
    )


def describe(metrics: Mapping[str, float]) -> str:
    """One line of a host's latest metrics: uptime, load, CPU, memory, disk, containers."""
    parts = []
    if "uptime_seconds" in metrics:
        parts.append("up " + _span(metrics["uptime_seconds"]))
    if "load1" in metrics:
        parts.append(f"load {metrics['load1']:.2f}")
    if "cpu_used_pct" in metrics:
        parts.append(f"cpu {metrics['cpu_used_pct']:.0f}%")
    if "mem_used_pct" in metrics:
        parts.append(f"mem {metrics['mem_used_pct']:.0f}%")
    if "disk_used_pct_max" in metrics:
        parts.append(f"disk {metrics['disk_used_pct_max']:.0f}%")
    if "containers_total" in metrics:
        parts.append(
            f"containers {metrics.get('containers_running', 0):.0f}/"
            f"{metrics['containers_total']:.0f}"
        )
    return "  ".join(parts)


def _span(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            smaller = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{seconds // size}{unit}{rest // smaller[1]}{smaller[0]}"
    return f"{seconds}s"


def _ago(stamp: str | None) -> str:
    if not stamp:
        return "never"
    then = datetime.fromisoformat(stamp)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return _span(max((datetime.now(UTC) - then).total_seconds(), 0)) + " ago"


@click.command("status")
@click.argument("pattern", default="all")
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="Print the hosts and totals as JSON.")
def status_command(
    pattern: str, inventory_paths: tuple[str, ...], state_path: str | None, as_json: bool
) -> None:
    """One line per host of PATTERN from the latest collection (reachable, last seen, load,
    memory and disk use, containers, installed stages, pending next action) and a fleet
    total. Nothing is contacted: run `machineroom collect` to refresh."""
    from machineroom.fleet.status import fleet_status

    workspace = make_workspace(inventory_paths, state_path)
    rows, totals = fleet_status(workspace, pattern)
    if as_json:
        click.echo(json.dumps({"hosts": rows, "total": totals}, indent=2))
        return
    _print_status(rows, totals)


_COLOURS = {"up": "green", "down": "red", "never": "yellow", "retired": "bright_black"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _print_status(rows: Sequence[Mapping[str, Any]], totals: Mapping[str, Any]) -> None:
    header = (
        "HOST",
        "STATE",
        "LAST SEEN",
        "LOAD",
        "MEM",
        "DISK",
        "CONTAINERS",
        "STAGES",
        "PENDING",
        "ALERTS",
    )
    table = [header]
    for r in rows:
        pending = r["next_action"]
        table.append(
            (
                r["host"],
                r["state"] + (f" ({r['failures']}x)" if r["state"] == "down" else ""),
                _ago(r["last_seen"]),
                "-" if r["load1"] is None else f"{r['load1']:.2f}",
                _pct(r["mem_used_pct"]),
                _pct(r["disk_used_pct_max"]),
                f"{r['containers_running']}/{r['containers_total']}"
                if r["containers_total"]
                else "-",
                ",".join(r["stages"]) or "-",
                str(pending.get("stage") or pending.get("reason") or "yes") if pending else "-",
                str(r["open_alerts"] or "-"),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for index, line in enumerate(table):
        text = "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        if index == 0:
            click.secho(text, bold=True)
        else:
            click.secho(text, fg=_COLOURS.get(rows[index - 1]["state"]))
    click.echo(
        f"\n{totals['hosts']} hosts: {totals['up']} up, {totals['down']} down, "
        f"{totals['never_collected']} never collected"
        + (f", {totals['retired']} retired" if totals["retired"] else "")
        + (f"; mean load {totals['mean_load1']}" if totals["mean_load1"] is not None else "")
        + f"; containers {totals['containers_running']}/{totals['containers_total']} running"
        + f"; {totals['pending']} with pending actions; {totals['open_alerts']} open alerts"
    )


@click.command("metrics")
@click.argument("host_id")
@click.argument("metric", required=False)
@inventory_options
@click.option("--since", default="24h", show_default=True, help="How far back (e.g. 1h, 7d).")
@click.option(
    "--points",
    type=click.IntRange(1, 10000),
    default=60,
    show_default=True,
    help="At most this many rows (each the mean of its slice of time).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the samples as JSON.")
def metrics_command(
    host_id: str,
    metric: str | None,
    inventory_paths: tuple[str, ...],
    state_path: str | None,
    since: str,
    points: int,
    as_json: bool,
) -> None:
    """A host's metric over time: the samples and a sparkline. Without METRIC, every metric
    of the host with its last value and a sparkline; METRIC may be a glob (`disk_used_pct:*`)."""
    from machineroom.fleet.durations import parse_duration
    from machineroom.fleet.status import metric_history

    window = parse_duration(since, "--since")
    workspace = make_workspace(inventory_paths, state_path, need_inventory=False)
    wanted, series = metric_history(workspace, host_id, metric, window)
    if as_json:
        click.echo(
            json.dumps(
                {name: [[at, v] for at, v in rows] for name, rows in series.items()}, indent=2
            )
        )
        return
    unicode = _can_print("▁█")
    if len(series) == 1:
        _print_series(host_id, wanted[0], series[wanted[0]], points, since, unicode)
    else:
        _print_overview(series, unicode)


def _can_print(text: str) -> bool:
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _print_series(
    host_id: str,
    name: str,
    rows: Sequence[tuple[int, float]],
    points: int,
    since: str,
    unicode: bool,
) -> None:
    from machineroom.report.sparkline import bucket_means, sparkline

    if not rows:
        click.echo(f"{host_id} {name}: no samples in the last {since}")
        return
    times = [at for at, _ in rows]
    values = [v for _, v in rows]
    shown_times = bucket_means([float(t) for t in times], points)
    shown_values = bucket_means(values, points)
    for at, value in zip(shown_times, shown_values, strict=True):
        stamp = datetime.fromtimestamp(int(at), UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp}  {_fmt(value)}")
    click.echo(
        f"\n{host_id} {name}  {sparkline(values, 60, unicode)}\n"
        f"{len(values)} samples in the last {since}: min {_fmt(min(values))}, "
        f"max {_fmt(max(values))}, mean {_fmt(sum(values) / len(values))}, "
        f"last {_fmt(values[-1])}"
    )


def _print_overview(series: Mapping[str, Sequence[tuple[int, float]]], unicode: bool) -> None:
    from machineroom.report.sparkline import sparkline

    width = max(len(name) for name in series)
    for name, rows in series.items():
        values = [v for _, v in rows]
        last = _fmt(values[-1]) if values else "-"
        click.echo(f"{name:<{width}}  {last:>12}  {sparkline(values, 40, unicode)}")


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.2f}"
