"""`timezone` (community.general.timezone): the system time zone and the RTC's zone.

One remote command. Where `timedatectl` works (systemd running) it reads `timedatectl
status` and sets with `set-timezone` / `set-local-rtc`. Elsewhere, the Debian way Ansible's
module uses: the zone is the first line of /etc/timezone, checked against the
/etc/localtime link (or content); setting it rewrites that line, links /etc/localtime to
/usr/share/zoneinfo/ZONE and runs `dpkg-reconfigure tzdata` (or copies the zone file where
there is no dpkg-reconfigure). `hwclock` edits UTC= in /etc/default/rcS and runs `hwclock
--systohc` where that program exists. The state is read again after the change, as Ansible
does, and a mismatch fails.
"""

from __future__ import annotations

import difflib
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

_BODY = r"""set -f
msgs=
say() { printf '%s\n' "$1"; }
note() { msgs="$msgs$1
"; }
abort() {
  printf 'machineroom: Error message:\n%s\n' "$1" >&2
  [ -z "$msgs" ] || printf 'Other message(s):\n%s' "$msgs" >&2
  exit 1
}
run() { out=$("$@" 2>&1) || abort "command \`$*\` failed: $out"; }
istrue() {
  case "$1" in [Yy]|[Yy][Ee][Ss]|[Oo][Nn]|1|[Tt][Rr][Uu][Ee]|[Tt]) return 0 ;; esac
  return 1
}
systemd=
if command -v timedatectl >/dev/null 2>&1 && timedatectl >/dev/null 2>&1; then systemd=1; fi
zoneinfo=/usr/share/zoneinfo sp='[[:space:]]'
if [ -n "$tz" ] && ! [ -f "$zoneinfo/$tz" ]; then
  abort "given timezone \"$tz\" is not available"
fi
# edit_file FILE LINE REGEX: the first matching line replaced, other matches removed
edit_file() {
  mr_new=$(mktemp) || abort "cannot create a temporary file"
  if [ -f "$1" ]; then src=$1; else src=/dev/null; fi
  deleted=$(grep -c -- "$3" "$src")
  if [ "$deleted" -gt 0 ]; then
    LINE=$2 RE=$3 awk 'BEGIN { line = ENVIRON["LINE"]; re = ENVIRON["RE"] }
      $0 ~ re { if (!m++) print line; next } { print }' "$src" > "$mr_new"
  else { printf '%s\n' "$2"; cat -- "$src"; } > "$mr_new"; fi \
    || abort "tried to configure using a file \"$1\", but could not read it"
  cat -- "$mr_new" > "$1" \
    || abort "tried to configure using a file \"$1\", but could not write to it"
  rm -f -- "$mr_new"
  note "Added 1 line and deleted $deleted line(s) on $1"
}
get_name() {
  if [ -n "$systemd" ]; then
    timedatectl status | sed -n "s/^$sp*Time \{0,1\}zone$sp*:$sp*\([^[:space:]]*\).*/\1/p" \
      | head -n 1
    return
  fi
  if [ -f /etc/timezone ]; then
    v=$(grep -m 1 -o '^[^[:space:]]\{1,\}' /etc/timezone) || v=n/a
  else v=n/a; fi
  if [ "$v" = "$tz" ]; then
    if [ -L /etc/localtime ]; then
      if [ -e /etc/localtime ]; then
        l=$(readlink /etc/localtime)
        case "$l" in
          */usr/share/zoneinfo/*) l=${l#*/usr/share/zoneinfo/}; [ "$l" = "$tz" ] || v=$l ;;
          */etc/zoneinfo/*) l=${l#*/etc/zoneinfo/}; [ "$l" = "$tz" ] || v=$l ;;
          *) v=n/a ;;
        esac
      else v=n/a; fi
    elif ! cmp -s /etc/localtime "$zoneinfo/$tz"; then v=n/a; fi
  fi
  printf '%s\n' "$v"
}
get_hwclock() {
  if [ -n "$systemd" ]; then
    v=$(timedatectl status \
      | sed -n "s/^$sp*RTC in local TZ$sp*:$sp*\([^[:space:]]*\).*/\1/p")
    if istrue "$v"; then echo local; else echo UTC; fi
    return
  fi
  v=n/a
  if [ -f /etc/default/rcS ]; then
    u=$(sed -n "s/^UTC$sp*=$sp*\([^[:space:]]*\).*/\1/p" /etc/default/rcS | head -n 1)
    if [ -n "$u" ]; then if istrue "$u"; then v=UTC; else v=local; fi; fi
  fi
  if [ "$v" = "$hw" ]; then
    v=UTC
    if [ -f /etc/adjtime ] && grep -qx LOCAL /etc/adjtime; then v=local; fi
  fi
  echo "$v"
}
[ -z "$tz" ] || say "name_before=$(get_name)"
[ -z "$hw" ] || say "hwclock_before=$(get_hwclock)"
[ "$CHECK" = 0 ] || exit 0
if [ -n "$tz" ] && [ "$(get_name)" != "$tz" ]; then
  if [ -n "$systemd" ]; then
    run timedatectl set-timezone "$tz"; note "executed \`timedatectl set-timezone $tz\`"
  else
    edit_file /etc/timezone "$tz" '^[^[:space:]]'
    if command -v dpkg-reconfigure >/dev/null 2>&1; then
      run ln -sf "$zoneinfo/$tz" /etc/localtime
      run dpkg-reconfigure --frontend noninteractive tzdata
    else run cp --remove-destination "$zoneinfo/$tz" /etc/localtime; fi
  fi
fi
if [ -n "$hw" ] && [ "$(get_hwclock)" != "$hw" ]; then
  if [ "$hw" = local ]; then opt=--localtime utc=no rtc=yes; else opt=--utc utc=yes rtc=no; fi
  if [ -n "$systemd" ]; then run timedatectl set-local-rtc "$rtc"
  else
    edit_file /etc/default/rcS "UTC=$utc" '^UTC[[:space:]]*='
    if command -v hwclock >/dev/null 2>&1; then
      run hwclock --systohc "$opt"; note "executed \`hwclock --systohc $opt\`"
    else
      note "no hwclock on this host: /etc/default/rcS only"
      if [ "$hw" = local ]; then printf '0.0 0 0.0\n0\nLOCAL\n' > /etc/adjtime
      else printf '0.0 0 0.0\n0\nUTC\n' > /etc/adjtime; fi
    fi
  fi
fi
[ -z "$tz" ] || say "name_after=$(get_name)"
[ -z "$hw" ] || say "hwclock_after=$(get_hwclock)"
printf '%s' "$msgs" | sed 's/^/msg=/'
exit 0
"""


class TimezoneModule(Module):
    """name (a zone under /usr/share/zoneinfo), hwclock (`local`/`UTC`); diff before/after."""

    name: ClassVar[str] = "timezone"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "hwclock": {"enum": ["local", "UTC"]},
        },
        "additionalProperties": False,
        "x-aliases": {"rtc": "hwclock"},
        "anyOf": [{"required": ["name"]}, {"required": ["hwclock"]}],
        "x-expected": "name or hwclock",
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Read, set what differs (not in check mode), read again."""
        tz = str(args.get("name") or "")
        if tz and (not re.fullmatch(r"[A-Za-z0-9_+./-]+", tz) or ".." in tz.split("/")):
            raise InputError(f"timezone: {tz!r} is not a zone name", expected="e.g. Europe/Paris")
        hw = str(args.get("hwclock") or "")
        settings = f"tz={quote(tz)} hw={quote(hw)} CHECK={int(ctx.check)}\n"
        return RemoteStep(settings + _BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """changed when before differs from the plan; Ansible's diff of {name, hwclock}."""
        if output.exit_code != 0:
            err = output.stderr
            at = err.find("machineroom: ")
            msg = err[at + len("machineroom: ") :].strip() if at >= 0 else err.strip()
            return Outcome("failed", msg=msg or f"timezone: exit code {output.exit_code}")
        report: dict[str, str] = {}
        notes: list[str] = []
        for line in output.stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "msg":
                notes.append(value)
            else:
                report[key] = value
        planned = {k: str(args[k]) for k in ("name", "hwclock") if args.get(k)}
        before = {k: report.get(f"{k}_before", "") for k in planned}
        after = planned if ctx.check else {k: report.get(f"{k}_after", "") for k in planned}
        if after != planned:
            return Outcome(
                "failed",
                msg="Error message:\nstill not desired state, though changes have made - "
                f"planned: {planned}, after: {after}",
            )
        result: dict[str, Any] = {"diff": {"before": before, "after": after}}
        if notes:
            result["msg"] = "\n".join(notes)
        if before == after:
            return Outcome("ok", msg=f"time zone already {_show(after)}", result=result)
        diff = ""
        if ctx.diff:
            diff = "".join(
                difflib.unified_diff(
                    [f"{k}: {v}\n" for k, v in before.items()],
                    [f"{k}: {v}\n" for k, v in after.items()],
                    "before",
                    "after",
                )
            )
        verb = "would be" if ctx.check else "now"
        return Outcome("changed", msg=f"time zone {verb} {_show(after)}", diff=diff, result=result)


def _show(values: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in values.items())
