"""`service_facts`: every service on the host as `ansible_facts.services`, as Ansible's.

One read-only remote command. `service --status-all` lists the init scripts (source
`sysv`, state running/stopped) where there is no chkconfig or OpenRC, as Ansible's module
reads them; where systemd is PID 1, `systemctl list-units` and `list-unit-files` add every
`.service` unit (source `systemd`, state running/stopped/..., status enabled/disabled/
static/not-found/...), keyed `NAME.service`. Never changed, so check mode runs it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep

_SCRIPT = r"""set -f
LC_ALL=C; export LC_ALL
if command -v service >/dev/null 2>&1 && ! command -v chkconfig >/dev/null 2>&1 \
   && ! command -v rc-status >/dev/null 2>&1; then
  echo @@sysv
  service --status-all 2>/dev/null
fi
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  echo @@units
  systemctl list-units --no-pager --type service --all --plain 2>/dev/null
  echo @@files
  systemctl list-unit-files --no-pager --type service --all 2>/dev/null
fi
exit 0
"""

_SYSV_LINE = re.compile(r"^\s*\[ (?P<state>[+-]) \]\s+(?P<name>.+)$")
_BAD_STATES = ("not-found", "masked", "failed")


class ServiceFactsModule(Module):
    """No arguments; `ansible_facts.services` (and the `services` variable)."""

    name: ClassVar[str] = "service_facts"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Read-only; the same script in check mode."""
        return RemoteStep(_SCRIPT)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """The services found, by name, as Ansible's module names their keys."""
        sections = _sections(output.stdout)
        services: dict[str, dict[str, Any]] = {}
        for line in sections.get("sysv", []):
            m = _SYSV_LINE.match(line)
            if m:
                name = m.group("name").strip()
                state = "running" if m.group("state") == "+" else "stopped"
                services[name] = {"name": name, "state": state, "source": "sysv"}
        services.update(_systemd_units(sections.get("units", []), sections.get("files", [])))
        if not services:
            msg = (
                "Failed to find any services. This can be due to privileges or some other "
                "configuration issue."
            )
            return Outcome("ok", msg=msg, result={"skipped": True})
        known = ctx.vars.get("ansible_facts")
        facts: dict[str, Any] = {
            "services": services,
            "ansible_facts": {
                **(known if isinstance(known, Mapping) else {}),
                "services": services,
            },
        }
        running = sum(1 for s in services.values() if s.get("state") == "running")
        return Outcome(
            "ok",
            msg=f"{len(services)} services, {running} running",
            result={"ansible_facts": {"services": services}},
            facts=facts,
        )


def _sections(stdout: str) -> dict[str, list[str]]:
    """The script's output split at its `@@name` lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("@@"):
            current = found.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return found


def _systemd_units(units: list[str], files: list[str]) -> dict[str, dict[str, Any]]:
    """`list-units` rows (state from SUB, status from ACTIVE or a bad LOAD state), then
    `list-unit-files` rows for the units not loaded and the final status of the others."""
    services: dict[str, dict[str, Any]] = {}
    for line in units:
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith(".service"):
            continue
        status = next((bad for bad in _BAD_STATES if bad in fields[1:4]), fields[2])
        state = "running" if fields[3] == "running" else "stopped"
        services[fields[0]] = {
            "name": fields[0],
            "state": state,
            "status": status,
            "source": "systemd",
        }
    for line in files:
        fields = line.split()
        if len(fields) < 2 or not fields[0].endswith(".service"):
            continue
        name, status = fields[0], fields[1]
        if name not in services:
            # a unit systemd has not loaded is not running (Ansible asks `show` for it)
            services[name] = {"name": name, "state": "inactive", "status": status}
            services[name]["source"] = "systemd"
        elif services[name]["status"] not in _BAD_STATES:
            services[name]["status"] = status
    return services
