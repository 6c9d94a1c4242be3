"""What `scan-docker PATTERN` shows: per host a summary line, then each container's name,
state, image and status, as the host's scan finishes; docker failures and unreachable hosts
on stderr. Events come masked; a host's text is shown, never obeyed (`visible`)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from machineroom.events import Event, TaskFinished
from machineroom.report.recap import paint, use_color
from machineroom.report.terminal import visible_data

STATE_COLOURS = {"running": "green", "exited": "red", "dead": "red", "restarting": "yellow"}


def host_containers(event: TaskFinished) -> dict[str, Any]:
    """What `scan-docker --json` says of a host: its containers (None: no docker) and whether
    docker is there, or the error, with `unreachable` when the host could not be reached."""
    if event.status == "unreachable":
        return {"error": event.msg, "unreachable": True}
    if event.status == "failed":
        return {"error": event.msg}
    return {
        "containers": event.result.get("containers"),
        "docker": bool(event.result.get("docker")),
    }


class ContainersReporter:
    """Prints each host's containers (on `out`) or why there are none (on `err`)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def __call__(self, event: Event) -> None:
        """A host's lines when its scan finished."""
        if not isinstance(event, TaskFinished) or event.item is not None:
            return
        found = visible_data(host_containers(event))
        color = use_color(self.err)
        if event.status == "unreachable":
            text = paint(f"{event.host}: unreachable: {found['error']}", "magenta", color=color)
            print(text, file=self.err, flush=True)
        elif event.status == "failed":
            print(paint(f"{event.host}: {found['error']}", "red", color=color), file=self.err)
        else:
            self._print_host(event.host, found["containers"])

    def _print_host(self, host: str, containers: list[dict[str, Any]] | None) -> None:
        if containers is None:
            print(f"{host}: docker is not installed", file=self.out, flush=True)
            return
        color = use_color(self.out)
        running = sum(c["state"] == "running" for c in containers)
        lines = [f"{host}: {len(containers)} container(s), {running} running"]
        for c in containers:
            colour = STATE_COLOURS.get(str(c["state"]))
            state = paint(f"{c['state']:<10}", *((colour,) if colour else ()), color=color)
            lines.append(f"  {c['name']:<30} {state} {c['image']:<30} {c['status']}")
        print("\n".join(lines), file=self.out, flush=True)

    def close(self) -> None:
        """Nothing held back."""
