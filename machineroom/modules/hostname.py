"""`hostname`: the host's name, permanent (a file or hostnamectl) and running (the kernel's).

One remote command. Where systemd runs (or `use: systemd`/`debian`), `hostnamectl` reads
and sets the static and transient names, as Ansible's module does. Elsewhere the permanent
name lives in a file (/etc/hostname; /etc/HOSTNAME for `sles`, `hostname="..."` in
/etc/conf.d/hostname for `openrc`, `HOSTNAME=` in /etc/sysconfig/network for `redhat`) and
the running name is set with `hostname NAME`. Each is changed only when it differs; the
result carries Ansible's facts (ansible_hostname, ansible_nodename, ansible_fqdn,
ansible_domain) and its `hostname = NAME` diff.
"""

from __future__ import annotations

import re
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
from machineroom.modules.files_sh import failure, parse_report

STRATEGIES = [
    "alpine",
    "debian",
    "freebsd",
    "generic",
    "macos",
    "macosx",
    "darwin",
    "openbsd",
    "openrc",
    "redhat",
    "sles",
    "solaris",
    "systemd",
]
# Strategies of other systems than Linux: refused by name rather than half done.
_UNSUPPORTED = {"freebsd", "macos", "macosx", "darwin", "openbsd", "solaris"}

_BODY = r"""set -f
mr_fail() { printf 'machineroom: %s\n' "$*" >&2; exit 1; }
if [ "$use" = auto ]; then
  if [ -d /run/systemd/system ] && command -v hostnamectl >/dev/null 2>&1; then use=systemd
  else use=file; fi
fi
case "$use" in
  systemd|debian) use=systemd ;;
  sles) file=/etc/HOSTNAME use=file ;;
  openrc) file=/etc/conf.d/hostname ;;
  redhat) file=/etc/sysconfig/network ;;
  *) file=/etc/hostname use=file ;;
esac
ctl() {
  out=$(hostnamectl "$@" 2>&1) || mr_fail "Command failed rc=$?, out=$out"
  printf '%s\n' "$out"
}
permanent() {
  case "$use" in
    systemd) ctl --static status ;;
    file) [ -f "$file" ] && sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -- "$file" \
      | sed -n '1p' ;;
    openrc) [ -f "$file" ] && sed -n 's/^[[:space:]]*hostname=\(.*\)/\1/p' -- "$file" \
      | sed -n '1{s/^"//;s/"[[:space:]]*$//;p}' ;;
    redhat) [ -f "$file" ] && sed -n 's/^[[:space:]]*HOSTNAME=\(.*\)/\1/p' -- "$file" \
      | sed -n '1{s/^"//;s/"[[:space:]]*$//;p}' ;;
  esac
  return 0
}
current() {
  if [ "$use" = systemd ]; then ctl --transient status
  elif command -v hostname >/dev/null 2>&1; then hostname
  else cat /proc/sys/kernel/hostname; fi
}
set_permanent() {
  case "$use" in
    systemd) ctl --pretty --static set-hostname "$name" >/dev/null ;;
    file) printf '%s\n' "$name" > "$file" \
      || mr_fail "failed to update hostname: cannot write $file" ;;
    openrc|redhat)
      if [ "$use" = openrc ]; then key=hostname line="hostname=\"$name\""
      else key=HOSTNAME line="HOSTNAME=$name"; fi
      new=$(mktemp) || mr_fail "cannot create a temporary file"
      if [ -f "$file" ] && grep -q "^[[:space:]]*$key=" "$file"; then
        LINE=$line KEY=$key awk '$0 ~ "^[ \t]*" ENVIRON["KEY"] "=" { print ENVIRON["LINE"]; next }
          { print }' "$file" > "$new"
      else { [ -f "$file" ] && cat -- "$file"; printf '%s\n' "$line"; } > "$new"; fi
      cat -- "$new" > "$file" || mr_fail "failed to update hostname: cannot write $file"
      rm -f -- "$new" ;;
  esac
}
set_current() {
  if [ "$use" = systemd ]; then ctl --transient set-hostname "$name" >/dev/null
  else out=$(hostname "$name" 2>&1) || mr_fail "Command failed rc=$?, out=$out"; fi
}
perm=$(permanent) || exit 1
cur=$(current) || exit 1
printf 'permanent=%s\ncurrent=%s\n' "$perm" "$cur"
if [ "$perm" != "$name" ]; then echo did_permanent=1; [ "$CHECK" = 1 ] || set_permanent; fi
if [ "$cur" != "$name" ]; then echo did_current=1; [ "$CHECK" = 1 ] || set_current; fi
if [ "$CHECK" = 0 ]; then
  fqdn=$(hostname -f 2>/dev/null) || fqdn=$name
  printf 'fqdn=%s\n' "$fqdn"
fi
exit 0
"""

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


class HostnameModule(Module):
    """name, use; result `name` and Ansible's hostname facts."""

    name: ClassVar[str] = "hostname"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "use": {"enum": STRATEGIES},
        },
        "required": ["name"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Read both names, set what differs."""
        name = str(args["name"])
        use = args.get("use") or "auto"
        if use in _UNSUPPORTED:
            raise InputError(
                f"hostname: use: {use} is not implemented by machineroom",
                expected="systemd, debian, alpine, generic, openrc, redhat or sles",
            )
        if not _NAME.match(name):
            raise InputError(
                f"hostname: {name!r} is not a host name",
                expected="letters, digits, '-', '.' and '_'",
            )
        if use in ("systemd", "debian") and len(name) > 64:
            raise InputError(
                "name cannot be longer than 64 characters on systemd servers, try a shorter name"
            )
        return RemoteStep(f"name={quote(name)} use={quote(use)} CHECK={int(ctx.check)}\n" + _BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """changed when either name differed; the facts as Ansible sets them."""
        if output.exit_code != 0:
            return failure(output, "hostname")
        report, _ = parse_report(output.stdout)
        name = str(args["name"])
        fqdn = report.get("fqdn") or name
        facts = {
            "ansible_hostname": name.split(".")[0],
            "ansible_nodename": name,
            "ansible_fqdn": fqdn,
            "ansible_domain": ".".join(fqdn.split(".")[1:]),
        }
        known = ctx.vars.get("ansible_facts")
        namespaced = dict(known) if isinstance(known, Mapping) else {}
        namespaced.update({k.removeprefix("ansible_"): v for k, v in facts.items()})
        result = {"name": name}
        all_facts = {**facts, "ansible_facts": namespaced}
        changed = "did_permanent" in report or "did_current" in report
        if not changed:
            return Outcome("ok", msg=f"hostname already {name}", result=result, facts=all_facts)
        current = report.get("current", "")
        before = current if name != current else report.get("permanent", "")
        diff = f"--- before\n+++ after\n@@ -1 +1 @@\n-hostname = {before}\n+hostname = {name}\n"
        verb = "would be" if ctx.check else "now"
        return Outcome(
            "changed",
            msg=f"hostname {verb} {name} (was {before})",
            diff=diff if ctx.diff else "",
            result=result,
            facts=all_facts,
        )
