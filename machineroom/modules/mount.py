"""`mount` (ansible.posix.mount): an fstab entry and whether it is mounted (Linux).

One remote command doing what Ansible's module does: the fstab is edited by awk line for
line as Ansible edits it (`src path fstype opts dump passno`, fields escaped with \\040
for a space, \\046 for &, \\134 for a backslash; an existing entry rewritten only when a
field differs, comments and other lines kept), then `mount [-T FSTAB] PATH`, `umount`, or
`mount -o remount` as the state asks. A failed mount puts the old fstab back and removes
the folders it made.
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
from machineroom.modules.files_sh import DIFF_MARKER, failure, parse_report

STATES = [
    "absent",
    "absent_from_fstab",
    "mounted",
    "present",
    "unmounted",
    "remounted",
    "ephemeral",
]

# ENVIRON: action (set/unset), src, name, fstype, opts, dump, passno (escaped), raw_src
# (as given, for the swap rule), has_src, out. Prints changed=0/1, exists=0/1.
_AWK = r"""
BEGIN {
  name = ENVIRON["name"]; out = ENVIRON["out"]; action = ENVIRON["action"]
  split("src name fstype opts dump passno", labels, " ")
  W["src"] = ENVIRON["src"]; W["name"] = name; W["fstype"] = ENVIRON["fstype"]
  W["opts"] = ENVIRON["opts"]; W["dump"] = ENVIRON["dump"]; W["passno"] = ENVIRON["passno"]
  changed = 0; exists = 0
}
function whole() { return W["src"] " " W["name"] " " W["fstype"] " " W["opts"] " " \
  W["dump"] " " W["passno"] }
{
  line = $0
  stripped = line; gsub(/^[ \t\r\n\f\v]+|[ \t\r\n\f\v]+$/, "", stripped)
  if (stripped == "" || substr(stripped, 1, 1) == "#") { print line > out; next }
  if (action == "unset") {
    n = split(line, f, /[ \t\r\n\f\v]+/)
    if (f[1] == "") { for (i = 1; i < n; i++) f[i] = f[i + 1]; n-- }
    if (f[n] == "") n--
    if (n != 6 || f[2] != name || (ENVIRON["has_src"] == "1" && f[2] == "none" \
        && f[3] == "swap" && f[1] != ENVIRON["raw_src"])) { print line > out; next }
    changed = 1; next
  }
  body = line; sub(/#.*/, "", body)
  n = split(body, f, /[ \t\r\n\f\v]+/)
  if (f[1] == "") { for (i = 1; i < n; i++) f[i] = f[i + 1]; n-- }
  if (n > 0 && f[n] == "") n--
  if (n < 4 || n > 6) { print line > out; next }
  delete D; D["dump"] = "0"; D["passno"] = "0"
  for (i = 1; i <= n; i++) D[labels[i]] = f[i]
  if (D["name"] != name || (ENVIRON["has_src"] == "1" && D["name"] == "none" \
      && D["fstype"] == "swap" && D["src"] != ENVIRON["raw_src"])) { print line > out; next }
  exists = 1
  split("src fstype opts dump passno", check, " ")
  for (i = 1; i <= 5; i++)
    if (D[check[i]] != W[check[i]]) { D[check[i]] = W[check[i]]; changed = 1 }
  if (changed) print D["src"] " " D["name"] " " D["fstype"] " " D["opts"] " " D["dump"] " " \
    D["passno"] > out
  else print line > out
}
END {
  if (action == "set" && !exists) { print whole() > out; changed = 1 }
  close(out)
  print "changed=" changed
}
"""

_BODY = r"""set -f
mr_fail() { printf 'machineroom: %s\n' "$*" >&2; exit 1; }
umask 022
new=$(mktemp) && old=$(mktemp) || mr_fail "cannot create a temporary file"
trap 'rm -f -- "$new" "$old"' EXIT
is_mounted() {
  awk -v p="$MI_PATH" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo \
    2>/dev/null || mountpoint -q -- "$path" 2>/dev/null
}
if [ "$state" != ephemeral ]; then
  if [ ! -e "$fstab" ]; then
    mkdir -p -- "$(dirname -- "$fstab")" && : >> "$fstab" \
      || mr_fail "Failed to open $fstab due to permission issue"
  fi
  cp -- "$fstab" "$old" || mr_fail "cannot read $fstab"
fi
fstab_opt=
[ "$fstab" = /etc/fstab ] || fstab_opt="-T"
do_mount() {
  if [ "$state" = ephemeral ]; then
    if [ "$opts" = defaults ]; then out=$(mount -t "$fstype" -- "$raw_src" "$path" 2>&1)
    else out=$(mount -t "$fstype" -o "$raw_opts" -- "$raw_src" "$path" 2>&1); fi
  else out=$(mount ${fstab_opt:+"$fstab_opt"} ${fstab_opt:+"$fstab"} -- "$path" 2>&1); fi
}
do_umount() { out=$(umount -- "$path" 2>&1); }
do_remount() {
  ro=remount
  if [ "$state" = remounted ] && [ "$opts" != defaults ]; then ro="remount,$raw_opts"; fi
  if [ "$state" = ephemeral ]; then out=$(mount -o "$ro" -- "$path" 2>&1)
  else out=$(mount -o "$ro" ${fstab_opt:+"$fstab_opt"} ${fstab_opt:+"$fstab"} -- "$path" 2>&1)
  fi && return 0
  if [ "$state" = remounted ] && [ "$opts" != defaults ]; then
    mr_fail "Options were specified with remounted, but the remount command failed." \
      "Failing in order to prevent an unexpected mount result. Try replacing this command" \
      "with a \"state: unmounted\" followed by a \"state: mounted\" using the full desired" \
      "mount options instead."
  fi
  do_umount && do_mount
}
edit() {
  report=$(action=$1 out=$new awk "$AWK" "$fstab") || mr_fail "cannot read $fstab"
  case "$report" in *changed=1*) changed=1 ;; *) changed=0 ;; esac
}
write_fstab() {
  if [ "$backup" = 1 ]; then
    bak="$fstab.$$.$(date +%Y-%m-%d@%H:%M:%S)~"
    cp -p -- "$fstab" "$bak" && echo "backup_file=$bak"
  fi
  cat -- "$1" > "$fstab" || mr_fail "cannot write $fstab"
}
export name src fstype opts dump passno raw_src has_src
changed=0
case "$state" in
  absent_from_fstab|absent)
    edit unset
    if [ "$changed" = 1 ] && [ "$CHECK" = 0 ]; then
      write_fstab "$new"
      if [ "$state" = absent ]; then
        if is_mounted; then do_umount || mr_fail "Error unmounting $path: $out"; fi
        if [ -e "$path" ]; then
          out=$(rmdir -- "$path" 2>&1) || mr_fail "Error rmdir $path: $out"
        fi
      fi
    fi ;;
  unmounted)
    if is_mounted; then
      changed=1
      [ "$CHECK" = 1 ] || do_umount || mr_fail "Error unmounting $path: $out"
    fi ;;
  present)
    edit set
    [ "$changed" = 0 ] || [ "$CHECK" = 1 ] || write_fstab "$new" ;;
  remounted)
    changed=1
    [ "$CHECK" = 1 ] || do_remount || mr_fail "Error remounting $path: $out" ;;
  mounted|ephemeral)
    top=
    if [ ! -e "$path" ] && [ "$CHECK" = 0 ]; then
      top=$path
      while [ ! -e "$(dirname -- "$top")" ]; do top=$(dirname -- "$top"); done
      mkdir -p -- "$path" || mr_fail "Error making dir $path"
    fi
    if [ "$state" = mounted ]; then
      edit set
      [ "$changed" = 0 ] || [ "$CHECK" = 1 ] || write_fstab "$new"
    fi
    rc=0
    if is_mounted; then
      if [ "$state" = ephemeral ]; then
        cur=$(findmnt -n -o SOURCE --mountpoint "$path" 2>/dev/null | head -n 1)
        [ "$cur" = "$raw_src" ] || mr_fail "Ephemeral mount point is already mounted with a" \
          "different source than the specified one. Failing in order to prevent an unwanted" \
          "unmount or override operation. Try replacing this command with a" \
          "\"state: unmounted\" followed by a \"state: ephemeral\", or use a different" \
          "destination path."
        changed=1
      fi
      if [ "$changed" = 1 ] && [ "$CHECK" = 0 ]; then do_remount || rc=1; fi
    else
      changed=1
      if [ "$CHECK" = 0 ]; then do_mount || rc=1; fi
    fi
    if [ $rc != 0 ]; then
      [ "$state" = ephemeral ] || cat -- "$old" > "$fstab"
      d=$path
      while [ -n "$top" ]; do
        rmdir -- "$d" 2>/dev/null; [ "$d" = "$top" ] && break; d=$(dirname -- "$d")
      done
      mr_fail "Error mounting $path: $out"
    fi ;;
esac
echo "changed=$changed"
printf '%s\n' "$DIFF_MARKER"
if [ "$DIFF" = 1 ] && [ "$changed" = 1 ] && [ "$state" != ephemeral ] && [ -s "$new" ]; then
  diff -u -L "before: $fstab" -L "after: $fstab" -- "$old" "$new"
fi
exit 0
"""


def fstab_escape(value: str) -> str:
    """A field as Ansible writes it in fstab (backslash, space and & as octal escapes)."""
    return value.replace("\\", "\\134").replace(" ", "\\040").replace("&", "\\046")


def mountinfo_escape(value: str) -> str:
    """A path as /proc/self/mountinfo spells it."""
    for char, code in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        value = value.replace(char, code)
    return value


class MountModule(Module):
    """path, src, fstype, opts, dump, passno, state, fstab, boot, backup."""

    name: ClassVar[str] = "mount"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "src": {"type": "string"},
            "fstype": {"type": "string"},
            "opts": {"type": "string"},
            "opts_no_log": {"type": "boolean", "default": False},
            "dump": {"type": ["string", "integer"], "default": "0"},
            "passno": {"type": ["string", "integer"], "default": "0"},
            "state": {"enum": STATES},
            "fstab": {"type": "string"},
            "boot": {"type": "boolean", "default": True},
            "backup": {"type": "boolean", "default": False},
        },
        "required": ["path", "state"],
        "additionalProperties": False,
        "x-aliases": {"name": "path"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """Edit fstab and (un)mount in one script, as the state asks."""
        state = args["state"]
        path = str(args["path"])
        if len(path) > 1:
            path = path.rstrip("/")
        if state in ("mounted", "present", "ephemeral"):
            missing = [k for k in ("src", "fstype") if not args.get(k)]
            if missing:
                raise InputError(
                    f"state is {state} but all of the following are missing: " + ", ".join(missing)
                )
        if any("\n" in str(args.get(k) or "") for k in ("path", "src", "fstype", "opts")):
            raise InputError("mount: a newline cannot be part of an fstab field")
        opts = str(args.get("opts") or "defaults")
        warnings: list[str] = []
        if "noauto" in opts.split(",") and args.get("boot", True):
            warnings.append("Ignore the 'boot' due to 'opts' contains 'noauto'.")
        elif not args.get("boot", True):
            opts = opts + ",noauto"
        fields = {
            "name": path,
            "src": str(args.get("src") or ""),
            "fstype": str(args.get("fstype") or ""),
            "opts": opts,
            "dump": str(args.get("dump", "0")),
            "passno": str(args.get("passno", "0")),
        }
        settings = "".join(f"{k}={quote(fstab_escape(v))} " for k, v in fields.items())
        settings += (
            f"\npath={quote(path)} state={quote(state)} raw_src={quote(fields['src'])} "
            f"raw_opts={quote(opts)} has_src={int(bool(args.get('src')))} "
            f"fstab={quote(args.get('fstab') or '/etc/fstab')} "
            f"MI_PATH={quote(mountinfo_escape(path))} "
            f"backup={int(bool(args.get('backup')))} CHECK={int(ctx.check)} "
            f"DIFF={int(ctx.diff)} DIFF_MARKER={quote(DIFF_MARKER)}\n"
            f"AWK={quote(_AWK)}\n"
        )
        return RemoteStep(settings + _BODY)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result: changed plus name, src, fstype, opts, dump, passno, fstab,
        boot, backup_file, warnings."""
        if output.exit_code != 0:
            return failure(output, "mount")
        report, diff = parse_report(output.stdout)
        path = str(args["path"])
        opts = str(args.get("opts") or "defaults")
        warnings: list[str] = []
        if "noauto" in opts.split(",") and args.get("boot", True):
            warnings.append("Ignore the 'boot' due to 'opts' contains 'noauto'.")
        elif not args.get("boot", True):
            opts += ",noauto"
        result: dict[str, Any] = {
            "name": path,
            "opts": opts,
            "dump": str(args.get("dump", "0")),
            "passno": str(args.get("passno", "0")),
            "fstab": args.get("fstab") or "/etc/fstab",
            "boot": "yes" if args.get("boot", True) else "no",
            "backup_file": report.get("backup_file", ""),
            "warnings": warnings,
        }
        for key in ("src", "fstype"):
            if args.get(key):
                result[key] = args[key]
        state = args["state"]
        if report.get("changed") != "1":
            return Outcome("ok", msg=f"{path} already {state}", result=result)
        verb = "would be" if ctx.check else "now"
        return Outcome(
            "changed",
            msg=f"{path} {verb} {state}",
            diff=diff if ctx.diff else "",
            result=result,
        )
