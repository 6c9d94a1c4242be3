"""A recorded run as people read it back: `machineroom show RUN` (the run, its recap, every
task result per host) and `machineroom diff RUN1 RUN2` (what changed between two runs).
Plain text, coloured when asked; the CLI fetches the rows (runs/history.py) and prints."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from machineroom.events import HostStats
from machineroom.report.console import first_line, indent
from machineroom.report.recap import STATUS_COLOURS, format_duration, paint, render_recap
from machineroom.report.terminal import visible_data

if TYPE_CHECKING:
    from machineroom.state import RunRow


def run_page(
    run: RunRow,
    by_host: Mapping[str, Sequence[dict[str, Any]]],
    host_id: str | None,
    color: bool,
) -> list[str]:
    """`show RUN`'s text, a block per item: the run's head, then per host its name and a
    block per task result (with `host_id`: that host, in detail)."""
    blocks = [render_run(run, host_id, color)]
    for host, rows in by_host.items():
        blocks.append(f"\n{paint(host, 'bold', color=color)}")
        for row in rows:
            # what hosts printed is shown with its escape sequences visible, never obeyed
            blocks.append(render_result(visible_data(row), detail=host_id is not None, color=color))
    return blocks


def diff_page(first: RunRow, second: RunRow, result: Mapping[str, Any], color: bool) -> list[str]:
    """`diff RUN1 RUN2`'s text, a block per item, from runs/history.py's comparison."""
    run1, run2 = first.id, second.id
    blocks = [f"run {run_label(first)}  ->  run {run_label(second)}"]
    if not any(result.values()):
        blocks.append("no differences in task results")
        return blocks
    for host, changes in result["hosts"].items():
        blocks.append(f"\n{paint(host, 'bold', color=color)}")
        for change in changes["changed"]:
            blocks.append(render_change(change))
        for row in changes["only_in_run1"]:
            blocks.append(f"  - {row['task']}  (only in run {run1}: {row['status']})")
        for row in changes["only_in_run2"]:
            blocks.append(f"  + {row['task']}  (only in run {run2}: {row['status']})")
    if result["hosts_only_in_run1"]:
        blocks.append(f"\nhosts only in run {run1}: {', '.join(result['hosts_only_in_run1'])}")
    if result["hosts_only_in_run2"]:
        blocks.append(f"\nhosts only in run {run2}: {', '.join(result['hosts_only_in_run2'])}")
    return blocks


def _summary_hosts(run: RunRow) -> dict[str, Any]:
    hosts = run.summary.get("hosts")
    return hosts if isinstance(hosts, dict) else {}


def run_label(run: RunRow) -> str:
    """A run as one line: its id, kind, status and start."""
    return f"{run.id} ({run.kind} {run.status}, {run.started_at})"


def render_run(run: RunRow, host_id: str | None, color: bool) -> str:
    """The head of a run page: who ran what, when, how it ended, and the recap table (only
    `host_id`'s row when given)."""
    seconds = run.seconds()
    took = f", {format_duration(seconds)}" if seconds is not None else ""
    status = paint(run.status, STATUS_COLOURS.get(run.status, "bold"), "bold", color=color)
    lines = [
        f"{paint(f'run {run.id}', 'bold', color=color)}  {run.kind}  {status}  "
        f"({run.user}@{run.workstation}, {run.started_at}{took})",
        f"  command   {run.command}",
    ]
    for label, value in (
        ("playbook", run.playbook),
        ("inventory", run.inventory),
        ("git", run.git_commit),
        ("reason", run.summary.get("reason")),
    ):
        if value:
            lines.append(f"  {label:<9} {value}")
    if run.summary.get("check"):
        lines.append("  check mode: nothing was changed")
    hosts = _summary_hosts(run)
    if host_id is not None:
        hosts = {h: c for h, c in hosts.items() if h == host_id}
    stats = {}
    for host, counts in hosts.items():
        if isinstance(counts, dict):
            known = {k: v for k, v in counts.items() if k in HostStats.__dataclass_fields__}
            stats[host] = HostStats(**known)
    if stats:
        recap = render_recap(
            stats, run_id=run.id, status=run.status, duration=seconds or 0.0, color=color
        )
        # The outcome line repeats the header; the table is what is new here.
        lines.extend(["", *recap.rstrip("\n").splitlines()[:-1]])
    elif run.summary and not hosts:
        extra = {k: v for k, v in run.summary.items() if k not in ("reason", "check")}
        if extra:
            lines.append("  summary   " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    return "\n".join(lines)


def render_result(row: dict[str, Any], *, detail: bool, color: bool) -> str:
    """One task result of a host: a line (with `detail`: its location, whole message and
    output); its diff below, coloured."""
    status = paint(f"{row['status']:<11}", STATUS_COLOURS.get(row["status"], ""), color=color)
    message = row["message"] or ""
    head = f"  {status} {format_duration(row['duration']):>7}  {row['task']}"
    lines = []
    if detail:
        lines.append(head)
        if row["location"]:
            lines.append(f"      at {row['location']}")
        lines.extend(indent(message, "      ") if message else [])
        for name in ("stdout", "stderr"):
            if row[name]:
                lines.append(f"      {name}:")
                lines.extend(indent(row[name], "        "))
    else:
        short = first_line(message)
        more = " …" if message.strip() != short else ""
        lines.append(f"{head}  {short}{more}" if short else head)
    if row["diff"]:
        lines.extend(_diff_lines(row["diff"], color))
    return "\n".join(lines)


def _diff_lines(diff: str, color: bool) -> list[str]:
    out = []
    for line in diff.rstrip("\n").splitlines():
        style = (
            "bold"
            if line.startswith(("+++", "---"))
            else "green"
            if line.startswith("+")
            else "red"
            if line.startswith("-")
            else "cyan"
            if line.startswith("@@")
            else ""
        )
        out.append("      " + (paint(line, style, color=color) if style else line))
    return out


def render_change(change: dict[str, Any]) -> str:
    """A task whose result differs between two runs: its statuses, and its messages when
    they differ."""
    old, new = change["before"], change["after"]
    text = f"  ~ {change['task']}  {old['status']} -> {new['status']}"
    if old["message"] != new["message"]:
        text += f"\n      was: {_one_line(old['message'])}\n      now: {_one_line(new['message'])}"
    return text


def _one_line(message: str) -> str:
    return json.dumps(message, ensure_ascii=False) if "\n" in message else message or '""'
