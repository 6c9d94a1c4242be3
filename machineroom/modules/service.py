"""`service`: start, stop, restart or reload a service and set whether it starts at boot.

One remote command. The script uses systemctl when systemd is PID 1 (`/run/systemd/system`
exists), else `service NAME` or `/etc/init.d/NAME` for the state and update-rc.d / chkconfig /
rc-update for `enabled`. It reads the current state first (is-active / `status`; is-enabled /
an `S??NAME` link in /etc/rc[2-5].d), acts only when it differs, and prints marker lines
(`__mr__ running yes`, `__mr__ did start`) that `interpret()` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

MARK = "__mr__"

# sh functions over "$__mr_svc", defined for both init systems.
_SYSTEMD = """\
__mr_kind=systemd
systemctl cat -- "$__mr_svc" >/dev/null 2>&1 || __mr_missing=1
__mr_running() { systemctl is-active --quiet -- "$__mr_svc"; }
__mr_enabled() { systemctl is-enabled --quiet -- "$__mr_svc" 2>/dev/null; }
__mr_do() { systemctl "$1" -- "$__mr_svc" >&2; }
__mr_enable() { systemctl "$1" -- "$__mr_svc" >&2; }"""

_SYSV = """\
__mr_kind=sysv
[ -x "/etc/init.d/$__mr_svc" ] || __mr_missing=1
if command -v service >/dev/null 2>&1; then
  __mr_do() { service "$__mr_svc" "$1" >&2; }
else
  __mr_do() { "/etc/init.d/$__mr_svc" "$1" >&2; }
fi
__mr_running() { __mr_do status >/dev/null 2>&1; }
__mr_enabled() {
  for __mr_l in /etc/rc[2345].d/S??"$__mr_svc"; do [ -e "$__mr_l" ] && return 0; done
  [ -e "/etc/runlevels/default/$__mr_svc" ]
}
__mr_enable() {
  if command -v update-rc.d >/dev/null 2>&1; then
    if [ "$1" = enable ]; then
      update-rc.d "$__mr_svc" defaults >&2 && update-rc.d "$__mr_svc" enable >&2
    else update-rc.d "$__mr_svc" disable >&2; fi
  elif command -v chkconfig >/dev/null 2>&1; then
    if [ "$1" = enable ]; then chkconfig "$__mr_svc" on; else chkconfig "$__mr_svc" off; fi
  elif command -v rc-update >/dev/null 2>&1; then
    if [ "$1" = enable ]; then rc-update add "$__mr_svc" default
    else rc-update del "$__mr_svc" default; fi
  else echo 'no update-rc.d, chkconfig or rc-update to change the boot state' >&2; return 1; fi
}"""


class ServiceModule(Module):
    """`service`: name, state (started/stopped/restarted/reloaded), enabled.

    started/stopped change only when the service is not already so; restarted and reloaded
    always act (and are always changed), reloaded starts a stopped service as Ansible's
    systemd module does. `enabled` compares the boot state first. Check mode reports what
    would be done and does nothing.
    """

    name: ClassVar[str] = "service"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "pattern": "^[^-/][^/]*$"},
            "state": {"enum": ["started", "stopped", "restarted", "reloaded"]},
            "enabled": {"type": "boolean"},
            "use": {"enum": ["auto", "systemd", "sysvinit", "service"], "default": "auto"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "x-aliases": {"service": "name"},  # Ansible's name for the same argument
        "anyOf": [{"required": ["state"]}, {"required": ["enabled"]}],
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Detect the init system, read running/enabled, act on what differs."""
        use = args.get("use") or "auto"
        if use == "systemd":
            detect = _SYSTEMD
        elif use in ("sysvinit", "service"):
            detect = _SYSV
        else:
            detect = f"if [ -d /run/systemd/system ]; then\n{_SYSTEMD}\nelse\n{_SYSV}\nfi"
        lines = [
            f"__mr_svc={quote(args['name'])}; __mr_missing=",
            detect,
            'if [ -n "$__mr_missing" ]; then echo "could not find the service $__mr_svc" >&2; '
            "exit 3; fi",
            f'echo {MARK} init "$__mr_kind"',
            f"if __mr_running; then echo {MARK} running yes; __mr_up=1; "
            f"else echo {MARK} running no; __mr_up=; fi",
        ]
        state = args.get("state")
        verb = {"started": "start", "stopped": "stop", "restarted": "restart"}.get(state or "")
        if state == "started":
            cond = '[ -z "$__mr_up" ]'
        elif state == "stopped":
            cond = '[ -n "$__mr_up" ]'
        elif state == "restarted":
            cond = "true"
        elif state == "reloaded":
            cond = "true"
            verb = "$__mr_rl"
            lines.append('if [ -n "$__mr_up" ]; then __mr_rl=reload; else __mr_rl=start; fi')
        if state:
            run = "" if ctx.check else f"__mr_do {verb} || exit 1; "
            lines.append(f"if {cond}; then {run}echo {MARK} did {verb}; fi")
        if "enabled" in args:
            want = "enable" if args["enabled"] else "disable"
            differs = "! __mr_enabled" if args["enabled"] else "__mr_enabled"
            run = "" if ctx.check else f"__mr_enable {want} || exit 1; "
            lines.append(f"if {differs}; then {run}echo {MARK} did {want}; fi")
        lines.append("exit 0")
        return RemoteStep("\n".join(lines))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the script started/stopped/... or changed the boot state."""
        did: list[str] = []
        info: dict[str, str] = {}
        for line in output.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[0] == MARK:
                if parts[1] == "did":
                    did.append(parts[2])
                else:
                    info[parts[1]] = parts[2]
        name = args["name"]
        result: dict[str, Any] = {
            "name": name,
            "rc": output.exit_code,
            "stdout": output.stdout,
            "stderr": output.stderr,
            "init": info.get("init"),
            "was_running": info.get("running") == "yes",
        }
        if args.get("state"):
            result["state"] = args["state"]
        if "enabled" in args:
            result["enabled"] = args["enabled"]
        if output.exit_code != 0:
            tail = [ln for ln in output.stderr.splitlines() if ln.strip()][-3:]
            return Outcome(
                "failed", msg="; ".join(tail) or f"exit {output.exit_code}", result=result
            )
        if not did:
            now = "running" if info.get("running") == "yes" else "stopped"
            boot = ""
            if "enabled" in args:
                boot = ", enabled" if args["enabled"] else ", disabled"
            return Outcome("ok", msg=f"{name} already {now}{boot}", result=result)
        verb = "would " if ctx.check else ""
        return Outcome("changed", msg=f"{name}: {verb}{', '.join(did)}", result=result)
