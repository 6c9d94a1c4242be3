"""`sysctl` (ansible.posix.sysctl): a kernel parameter in a sysctl file, and in the kernel.

One remote command doing what Ansible's module does: read the live value (`sysctl -e -n`)
and the file's value (the last `name = value` line), decide, then `sysctl -w` (sysctl_set),
rewrite the file (as Ansible rewrites it: every line stripped, `key=value` without spaces,
a repeated key kept once; a new key appended) and `sysctl -p FILE` (reload) when something
changed. The file is replaced atomically, keeping its mode and owner.
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
from machineroom.modules.files_sh import (
    LIBRARY,
    attr_vars,
    common_vars,
    failure,
    parse_report,
    validate_vars,
)

# Spellings Ansible reads as booleans (module_utils.parsing.convert_bool)
_TRUE = {"y", "yes", "on", "1", "true", "t"}
_FALSE = {"n", "no", "off", "0", "false", "f"}

# The file as Ansible's fix_lines() rewrites it; `found`/`fileval` for the decision.
_AWK = r"""
function trim(s) { sub(/^[ \t\r\f\v]+/, "", s); sub(/[ \t\r\f\v]+$/, "", s); return s }
BEGIN { name = ENVIRON["name"]; value = ENVIRON["value"]; state = ENVIRON["state"] }
{
  line = trim($0)
  if (line == "" || line ~ /^[#;]/ || index(line, "=") == 0) { print line > out; next }
  eq = index(line, "=")
  k = trim(substr(line, 1, eq - 1)); v = trim(substr(line, eq + 1))
  if (k == name) { found = 1; fileval = v }
  if (k in seen) next
  seen[k] = 1
  if (k == name) { if (state == "present") print k "=" value > out }
  else print k "=" v > out
}
END {
  if (!(name in seen) && state == "present") print name "=" value > out
  close(out)
  printf "found=%d\n", found
  printf "%s", fileval > valfile
}
"""

_BODY = r"""
command -v sysctl >/dev/null 2>&1 || mr_fail 'Failed to find required executable "sysctl"'
bad_set() {
  printf '%s\n' "$1" \
    | grep -Eq '^sysctl: setting key "[^"]+": (Invalid argument|Read-only file system)$'
}
same() { [ "$(printf '%s ' $1)" = "$(printf '%s ' $2)" ]; }
proc=$(LC_ALL=C sysctl -e -n "$name" 2>/dev/null) && have_proc=1 || have_proc=
real=$(readlink -f -- "$file" 2>/dev/null) || real=$file
[ -d "$real" ] && mr_fail "$file is a directory"
dir=$(dirname -- "$real")
[ -d "$dir" ] || mr_fail "cannot write $file: no folder $dir"
mr_tmp_near "$dir"
mr_t2=$(mktemp) || mr_fail "cannot create a temporary file"
if [ -f "$real" ]; then src=$real; else src=/dev/null; fi
export name value state
report=$(awk -v out="$mr_t1" -v valfile="$mr_t2" "$AWK" "$src") \
  || mr_fail "cannot read $file"
found=${report#found=}
fileval=$(cat -- "$mr_t2")
changed=0 write=0 setproc=0
if [ "$found" = 0 ]; then
  [ "$state" = present ] && changed=1 write=1
elif [ -n "$fileval" ] && [ "$state" = absent ]; then changed=1 write=1
elif [ "$fileval" != "$value" ]; then changed=1 write=1
elif [ "$reload" = 1 ]; then
  { [ -n "$have_proc" ] && same "$proc" "$value"; } || changed=1
fi
if [ "$sysset" = 1 ] && [ "$state" = present ]; then
  if [ -z "$have_proc" ]; then changed=1
  elif ! same "$proc" "$value"; then changed=1 setproc=1; fi
fi
mr_say changed "$changed"; mr_say write "$write"; mr_say setproc "$setproc"
mr_say proc "$(printf '%s ' $proc)"
if [ "$CHECK" = 0 ] && [ "$setproc" = 1 ]; then
  out=$(LC_ALL=C sysctl $ignore -w "$name=$value" 2>&1); rc=$?
  if [ $rc != 0 ] || bad_set "$out"; then mr_fail "setting $name failed: $out"; fi
fi
if [ "$write" = 1 ]; then mr_put "$mr_t1" "$real"
else printf '%s\n' "$DIFF_MARKER"; fi
if [ "$CHECK" = 0 ] && [ "$changed" = 1 ] && [ "$reload" = 1 ]; then
  out=$(LC_ALL=C sysctl $ignore -p "$real" 2>&1); rc=$?
  if [ $rc != 0 ] || bad_set "$out"; then mr_fail "Failed to reload sysctl: $out"; fi
fi
exit 0
"""


def sysctl_value(value: object) -> str:
    """The value as Ansible's module writes it: booleans as 1/0, strings stripped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value)
    if text.lower() in _TRUE:
        return "1"
    if text.lower() in _FALSE:
        return "0"
    return text.strip()


class SysctlModule(Module):
    """name, value, state, sysctl_file, reload, sysctl_set, ignoreerrors; result `changed`."""

    name: ClassVar[str] = "sysctl"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "value": {"type": ["string", "number", "boolean"]},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "reload": {"type": "boolean", "default": True},
            "sysctl_set": {"type": "boolean", "default": False},
            "ignoreerrors": {"type": "boolean", "default": False},
            "sysctl_file": {"type": "string", "minLength": 1, "default": "/etc/sysctl.conf"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "x-aliases": {"key": "name", "val": "value"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Decide on the host and act as Ansible's module does."""
        name = str(args["name"]).strip()
        state = args.get("state", "present")
        value = sysctl_value(args.get("value"))
        if not name:
            raise InputError("sysctl: name cannot be blank", expected="a kernel parameter")
        if state == "present" and args.get("value") is None:
            raise InputError("sysctl: value cannot be None", expected="value: for state present")
        if state == "present" and value == "":
            raise InputError("sysctl: value cannot be blank", expected="a value")
        if "\n" in name or "\n" in value or "=" in name:
            raise InputError(f"sysctl: {name!r}={value!r} cannot be one line of a sysctl file")
        path = str(args.get("sysctl_file") or "/etc/sysctl.conf")
        settings = (
            f"name={quote(name)} value={quote(value)} state={quote(state)} file={quote(path)}\n"
            f"reload={int(bool(args.get('reload', True)))} "
            f"sysset={int(bool(args.get('sysctl_set', False)))} "
            f"ignore={'-e' if args.get('ignoreerrors') else ''} backup=0\n"
            f"AWK={quote(_AWK)}\n"
        )
        return RemoteStep(
            LIBRARY
            + common_vars(ctx.check, ctx.diff, path)
            + attr_vars({})
            + validate_vars(None)
            + settings
            + _BODY
        )

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """changed as Ansible decides it; the file's diff with --diff."""
        if output.exit_code != 0:
            return failure(output, "sysctl")
        report, diff = parse_report(output.stdout)
        name = str(args["name"]).strip()
        if report.get("changed") != "1":
            return Outcome("ok", msg=f"{name} already set")
        what = []
        if report.get("setproc") == "1":
            what.append("set in the kernel")
        if report.get("write") == "1":
            what.append(f"written to {args.get('sysctl_file') or '/etc/sysctl.conf'}")
        if args.get("reload", True):
            what.append("reloaded")
        prefix = "would be " if ctx.check else ""
        return Outcome(
            "changed",
            msg=f"{name}: {prefix}{', '.join(what) or 'changed'}",
            diff=diff if ctx.diff else "",
        )
