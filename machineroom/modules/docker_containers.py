"""`docker_containers`: the host's containers and their state, as `scan-docker` lists them.

One remote command: `docker ps -a` with a JSON line per container (a Go template every docker
client since 1.13 understands). A host without docker is no failure (a marker line says so);
a daemon that does not answer fails the task with docker's own last line. The containers go
into the result and, through `record`, into the host's `server_room.res` (`containers`,
`containers_at`, `reachable`, `last_seen`; `docker_error` when docker failed), which
`machineroom ls` and `show` read. Read-only: never changed, runs in check mode too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep

MARK = "__mr__"
# No docker: a marker, not a failure; a daemon that does not answer: exit 3 with its message.
SCAN_SCRIPT = f"""\
if ! command -v docker >/dev/null 2>&1; then echo '{MARK} no-docker'; exit 0; fi
docker ps -a --no-trunc --format '{{{{json .}}}}' || exit 3
"""

# `docker ps` JSON fields -> our keys
_FIELDS = {
    "Names": "name",
    "Image": "image",
    "State": "state",
    "Status": "status",
    "CreatedAt": "created",
    "Ports": "ports",
}


def parse_containers(stdout: str) -> list[dict[str, Any]] | None:
    """`docker ps` JSON lines as a list of containers, by name (None: docker is not
    installed)."""
    containers: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if line == f"{MARK} no-docker":
            return None
        if not line.startswith("{"):
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue
        item: dict[str, Any] = {key: raw.get(field, "") for field, key in _FIELDS.items()}
        item["id"] = str(raw.get("ID", ""))[:12]
        if not item["state"]:  # clients before 20.10 have no State: derive it from Status
            status = str(item["status"]).lower()
            item["state"] = "running" if status.startswith("up") else status.split(" ")[0]
        labels = _labels(str(raw.get("Labels", "")))
        if "com.docker.compose.project" in labels:
            item["project"] = labels["com.docker.compose.project"]
            item["service"] = labels.get("com.docker.compose.service", "")
        containers.append(item)
    return sorted(containers, key=lambda c: str(c["name"]))


def _labels(text: str) -> dict[str, str]:
    """`a=1,b=2` (docker ps' Labels column) as a dict."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DockerContainersModule(Module):
    """`docker_containers`: no arguments; the host's containers under `containers`."""

    name: ClassVar[str] = "docker_containers"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The same script in check mode too: it only reads."""
        return RemoteStep(SCAN_SCRIPT)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """ok with `containers` (None: no docker) and `docker`; failed with docker's last
        line when it did not answer."""
        at = _now()
        if output.exit_code != 0:
            lines = [line for line in output.stderr.splitlines() if line.strip()]
            error = lines[-1] if lines else f"docker ps: exit {output.exit_code}"
            return Outcome(
                "failed",
                msg=error,
                result={"rc": output.exit_code, "stderr": output.stderr},
                record={"reachable": True, "last_seen": at, "docker_error": error},
            )
        containers = parse_containers(output.stdout)
        if containers is None:
            msg = "docker is not installed"
        else:
            running = sum(c["state"] == "running" for c in containers)
            msg = f"{len(containers)} container(s), {running} running"
        return Outcome(
            "ok",
            msg=msg,
            result={"containers": containers, "docker": containers is not None},
            record={
                "reachable": True,
                "last_seen": at,
                "containers": containers,
                "containers_at": at,
            },
        )
