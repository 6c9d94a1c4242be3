"""`systemd` (`systemd_service`): a unit's state, boot state and mask, and daemon-reload.

One remote command, as Ansible's systemd module decides: `systemctl show` gives the unit's
`status` (ActiveState, UnitFileState, ...), `is-enabled` the boot and mask state, and the
script acts only on what differs (restarted/reloaded always act).

When systemd is not PID 1 (a container, the lab hosts), `systemctl` still edits unit files
(enable, disable, mask) but cannot start anything; Ansible then fails "Service is in unknown
state". Here a unit that has an `/etc/init.d` script is started and stopped through that
script, as the `service` module does, with a warning; a unit without one fails as in
Ansible. `daemon_reload`/`daemon_reexec` fail without a running systemd unless the target
is a chroot or `SYSTEMD_OFFLINE=1` (then a warning), as in Ansible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.service import _SYSV

MARK = "__mr__"
SHOW = "__mr_show__ "

# Ansible's systemd module's own checks, in sh. $unit, $base (without .service), $CHECK,
# $scope_opts set before; `sc` is systemctl with the scope options.
_BODY = r"""set -f
M() { mr_k=$1; shift; printf '__mr__ %s %s\n' "$mr_k" "$*"; }
oneline() { printf '%s' "$1" | tr '\n' ' '; }
fail() { printf '__mr__ fail %s\n' "$*"; exit 1; }
sc() { systemctl $scope_opts "$@"; }
have_sc=; command -v systemctl >/dev/null 2>&1 && have_sc=1
online=; [ -d /run/systemd/system ] && online=1
offline_ok=
[ "${SYSTEMD_OFFLINE:-}" = 1 ] && offline_ok=1
# a chroot: / is not PID 1's root (unknown without the right to look: not a chroot)
if init_root=$(stat -L -c %d:%i /proc/1/root/. 2>/dev/null) \
  && [ "$(stat -L -c %d:%i / 2>/dev/null)" != "$init_root" ]; then offline_ok=1; fi
for verb in $daemon_verbs; do
  [ "$CHECK" = 1 ] && continue
  [ -n "$have_sc" ] || fail 'Failed to find required executable "systemctl"'
  out=$(sc "$verb" 2>&1) && continue
  rc=$?
  out=$(oneline "$out")
  if [ -n "$offline_ok" ]; then
    M warn "$verb failed, but target is a chroot or systemd is offline. Continuing." \
      "Error was: $rc / $out"
  else fail "failure $rc during $verb: $out"; fi
done
[ -n "$unit" ] || exit 0
__mr_svc=$base __mr_missing=
if [ -e "/etc/init.d/$base" ]; then initd=1; else initd=; fi
if [ -n "$initd" ]; then
__SYSV__
fi
is_systemd=
if [ -n "$online" ]; then
  if show=$(sc show -- "$unit" 2>/dev/null); then
    printf '%s\n' "$show" | sed 's/^/__mr_show__ /'
    case "$show" in *LoadState=not-found*) ;; *LoadState=*) is_systemd=1 ;; esac
  fi
elif [ -n "$have_sc" ]; then
  ufs=$(sc is-enabled -- "$unit" 2>/dev/null)
  case "$ufs" in
    enabled|enabled-runtime|linked|linked-runtime|masked|masked-runtime|static|indirect|\
disabled|generated|transient|alias) is_systemd=1 ;;
    *) sc list-unit-files -- "$unit" >/dev/null 2>&1 && is_systemd=1 ;;
  esac
  M ufs "$ufs"
fi
M online "${online:-0}"
if [ -z "$online" ] && [ -n "$initd" ]; then
  if __mr_running; then M active active; else M active inactive; fi
fi
M found "$is_systemd$initd"
missing() { [ -n "$is_systemd$initd" ] || fail "Could not find the requested service $unit: host"; }
if [ -n "$want_masked" ]; then
  masked=0
  [ -n "$have_sc" ] && [ "$(sc is-enabled -- "$unit" 2>/dev/null)" = masked ] && masked=1
  if [ "$masked" != "$want_masked" ]; then
    if [ "$want_masked" = 1 ]; then act=mask; else act=unmask; fi
    M did "$act"
    if [ "$CHECK" = 0 ]; then
      [ -n "$have_sc" ] || { missing; fail "Failed to $act the service ($unit): no systemctl"; }
      out=$(sc "$act" -- "$unit" 2>&1) \
        || { missing; fail "Failed to $act the service ($unit): $(oneline "$out")"; }
    fi
  fi
fi
if [ -n "$want_enabled" ]; then
  missing
  enabled=0
  if [ -n "$have_sc" ]; then
    out=$(sc is-enabled -l -- "$unit" 2>/dev/null); rc=$?
    if [ $rc = 0 ]; then
      case "$out" in enabled-runtime|indirect|alias) ;; *) enabled=1 ;; esac
    elif [ $rc = 1 ] && [ -z "$scope_opts" ] && [ -n "$initd" ] && __mr_enabled; then
      case "$out" in *disabled) ;; *) enabled=1 ;; esac
    fi
  elif [ -n "$initd" ] && __mr_enabled; then enabled=1; fi
  M enabled "$enabled"
  if [ "$enabled" != "$want_enabled" ]; then
    if [ "$want_enabled" = 1 ]; then act=enable; else act=disable; fi
    M did "$act"
    if [ "$CHECK" = 0 ]; then
      if [ -n "$have_sc" ]; then out=$(sc "$act" -- "$unit" 2>&1)
      else out=$(__mr_enable "$act" 2>&1); fi \
        || fail "Unable to $act service $unit: $(oneline "$out")"
    fi
  fi
fi
if [ -n "$want_state" ]; then
  missing
  if [ -n "$online" ]; then
    active=$(printf '%s\n' "$show" | sed -n 's/^ActiveState=//p')
  elif [ -n "$initd" ]; then
    if __mr_running; then active=active; else active=inactive; fi
  else active=; fi
  if [ -z "$active" ]; then
    if [ -n "$offline_ok" ]; then
      M warn "Target is a chroot or systemd is offline. This can lead to false positives" \
        "or prevent the init system tools from working."
      exit 0
    fi
    fail "Service is in unknown state"
  fi
  case "$active" in active|activating) running=1 ;; *) running= ;; esac
  act=
  case "$want_state" in
    started) [ -n "$running" ] || act=start ;;
    stopped) { [ -n "$running" ] || [ "$active" = deactivating ]; } && act=stop ;;
    restarted) if [ -n "$running" ]; then act=restart; else act=start; fi ;;
    reloaded) if [ -n "$running" ]; then act=reload; else act=start; fi ;;
  esac
  if [ -n "$act" ]; then
    M did "$act"
    if [ "$CHECK" = 0 ]; then
      if [ -n "$online" ]; then out=$(sc "$act" -- "$unit" 2>&1)
      else
        M warn "systemd is not running on this host: $unit was ${act}ed through /etc/init.d/$base"
        out=$(__mr_do "$act" 2>&1)
      fi || fail "Unable to $act service $unit: $(oneline "$out")"
    fi
  fi
fi
exit 0
"""

_GLOB = ("*", "?", "[")


class SystemdModule(Module):
    """Ansible's `systemd`/`systemd_service`: name, state, enabled, masked, daemon_reload,
    daemon_reexec, scope, no_block, force. Result keys as Ansible's: name, status (the
    unit's `systemctl show` properties), state, enabled."""

    name: ClassVar[str] = "systemd"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "state": {"enum": ["reloaded", "restarted", "started", "stopped"]},
            "enabled": {"type": "boolean"},
            "force": {"type": "boolean"},
            "masked": {"type": "boolean"},
            "daemon_reload": {"type": "boolean", "default": False},
            "daemon_reexec": {"type": "boolean", "default": False},
            "scope": {"enum": ["system", "user", "global"], "default": "system"},
            "no_block": {"type": "boolean", "default": False},
        },
        "additionalProperties": False,
        "x-aliases": {
            "service": "name",
            "unit": "name",
            "daemon-reload": "daemon_reload",
            "daemon-reexec": "daemon_reexec",
        },
        "anyOf": [
            {"required": ["state"]},
            {"required": ["enabled"]},
            {"required": ["masked"]},
            {"required": ["daemon_reload"], "properties": {"daemon_reload": {"const": True}}},
            {"required": ["daemon_reexec"], "properties": {"daemon_reexec": {"const": True}}},
        ],
        "x-expected": "one of state, enabled, masked, daemon_reload, daemon_reexec",
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The whole decision in one script: reload, then mask, enable, state."""
        unit = str(args.get("name") or "")
        for key in ("state", "enabled", "masked"):
            if args.get(key) is not None and not unit:
                raise InputError(f"systemd: {key} needs name", expected="name: UNIT")
        for pattern in _GLOB:
            if pattern in unit:
                raise InputError(
                    "This module does not currently support using glob patterns, "
                    f"found '{pattern}' in service name: {unit}"
                )
        if unit.startswith("-"):
            raise InputError(f"systemd: name {unit!r} starts with '-'", expected="a unit name")
        opts = []
        if args.get("scope", "system") != "system":
            opts.append(f"--{args['scope']}")
        if args.get("no_block"):
            opts.append("--no-block")
        if args.get("force"):
            opts.append("--force")
        verbs = [v for v in ("daemon_reload", "daemon_reexec") if args.get(v)]
        base = unit.removesuffix(".service")
        settings = (
            f"unit={quote(unit)} base={quote(base)} CHECK={int(ctx.check)} "
            f"scope_opts={quote(' '.join(opts))} "
            f"daemon_verbs={quote(' '.join(v.replace('_', '-') for v in verbs))}\n"
            f"want_state={quote(args.get('state') or '')} "
            f"want_enabled={_flag(args.get('enabled'))} want_masked={_flag(args.get('masked'))}\n"
        )
        return RemoteStep(settings + _BODY.replace("__SYSV__", _SYSV))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result: name, changed, status, state, enabled; warnings for fallbacks."""
        report = parse_marks(output.stdout)
        unit = args.get("name")
        status = parse_systemctl_show(
            [ln[len(SHOW) :] for ln in output.stdout.splitlines() if ln.startswith(SHOW)]
        )
        if report.get("online") == ["0"] and unit:
            status = offline_status(str(unit), report)
        did = report.get("did", [])
        result: dict[str, Any] = {"name": unit, "status": status}
        if report.get("warn"):
            result["warnings"] = report["warn"]
        if args.get("enabled") is not None and "enabled" in report:
            result["enabled"] = bool(args["enabled"])  # as it is now, or would be in check mode
        if args.get("state"):
            state = args["state"]
            result["state"] = "started" if state in ("restarted", "reloaded") else state
        if "fail" in report or output.exit_code != 0:
            lines = (
                report.get("fail") or [ln for ln in output.stderr.splitlines() if ln.strip()][-3:]
            )
            msg = "; ".join(lines) or f"systemd: exit code {output.exit_code}"
            return Outcome("failed", msg=msg, result={**result, "rc": output.exit_code})
        if not did and not (args.get("daemon_reload") or args.get("daemon_reexec")):
            return Outcome("ok", msg=f"{unit} already as wanted", result=result)
        if not did:
            return Outcome("ok", msg="daemon reloaded", result=result)
        verb = "would " if ctx.check else ""
        return Outcome("changed", msg=f"{unit}: {verb}{', '.join(did)}", result=result)


def _flag(value: object) -> str:
    """'' for unset, 1 or 0 for a boolean argument."""
    return "" if value is None else str(int(bool(value)))


def parse_marks(stdout: str) -> dict[str, list[str]]:
    """`__mr__ KEY VALUE` lines, values of one key in order."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith(MARK + " "):
            _, key, *rest = line.split(" ", 2)
            found.setdefault(key, []).append(rest[0] if rest else "")
    return found


def parse_systemctl_show(lines: list[str]) -> dict[str, str]:
    """`systemctl show` output as a dict, an `Exec*={ ... }` value spanning lines kept whole
    (the parse Ansible's systemd module does)."""
    parsed: dict[str, str] = {}
    pending: list[str] = []
    key: str | None = None
    for line in lines:
        if key is None:
            if "=" not in line:
                continue
            name, value = line.split("=", 1)
            multiline = value.lstrip().startswith("{") and not value.rstrip().endswith("}")
            if name.startswith("Exec") and multiline:
                key, pending = name, [value]
                continue
            parsed[name] = value.strip()
        else:
            pending.append(line)
            if line.rstrip().endswith("}"):
                parsed[key] = "\n".join(pending).strip()
                key, pending = None, []
    return parsed


def offline_status(unit: str, report: Mapping[str, list[str]]) -> dict[str, str]:
    """The `status` keys that can be known without a running systemd: the unit file's
    state (`systemctl is-enabled` works offline) and, through an init script, ActiveState."""
    status: dict[str, str] = {"Id": unit if "." in unit else unit + ".service"}
    found = report.get("found", [""])[0]
    status["LoadState"] = "loaded" if found else "not-found"
    ufs = report.get("ufs", [""])[0]
    if ufs:
        status["UnitFileState"] = ufs
    if "active" in report:
        active = report["active"][0]
        status["ActiveState"] = active
        status["SubState"] = "running" if active == "active" else "dead"
    return status
