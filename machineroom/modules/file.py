"""`file`: a path's kind (file, directory, link, hard link, absent) and attributes.

As Ansible's module, in one remote command: the script reads what the path is, changes it
only where it differs (and not in check mode), and reports before/after kind and attributes.
New directories are made 0700 (umask 077) and then given their mode, and links are made
under a temp name and renamed over the path, so nothing exists even briefly with looser
permissions than requested, and a reader sees the old or the new link, never none.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.errors import InputError
from machineroom.modules import files_sh
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

# The script: HEAD, the helpers the state and arguments call, the state's part, TAIL. Each
# part only when needed, since dash parses all it is sent (see files_sh.PIECES).
HEAD = r"""changed=0
mr_kind() {
  if [ -L "$1" ]; then mr_k=link; elif [ -d "$1" ]; then mr_k=directory
  elif [ -e "$1" ]; then mr_k=file; else mr_k=absent; fi
}
mr_kind "$p"; before=$mr_k
mr_say before "$before"
"""
# Compare and fix mode/owner/group of $1 (kind $2: f or d), following links like Ansible.
FIX = r"""mr_fix() {
  mr_attrs "$1" || mr_fail "cannot stat $1"
  mr_say mode "$cur_mode"; mr_say owner "$cur_owner"; mr_say group "$cur_group"
  mr_want_mode "$cur_mode" "$2"
  mr_say want_mode "$want_mode"
  mr_say want_owner "${owner:-$cur_owner}"; mr_say want_group "${group:-$cur_group}"
  if [ "$want_mode" != "$cur_mode" ] || ! mr_owner_ok || ! mr_group_ok; then
    changed=1
    if [ "$CHECK" = 0 ]; then
      mr_attrs_of=
      chmod "$want_mode" "$1" || mr_fail "cannot chmod $want_mode $1"
      mr_chown "$1"
    fi
  fi
}
"""
# What a path about to be created will get (check mode: it is not there to stat).
FRESH = r"""mr_fresh() {
  mr_dmode "$1"; mr_want_mode "$mr_dm" "$1"
  mr_say want_mode "$want_mode"; mr_say want_owner "$owner"; mr_say want_group "$group"
}
"""
RECURSE = r"""mr_recurse() {
  if [ -n "$owner" ] && [ -n "$(find "$p" ! -user "$owner" -print 2>/dev/null | head -n 1)" ]; then
    changed=1; mr_say recursed 1
    [ "$CHECK" = 1 ] || chown -R -h -- "$owner" "$p" || mr_fail "cannot chown -R $owner"
  fi
  if [ -n "$group" ] && [ -n "$(find "$p" ! -group "$group" -print 2>/dev/null | head -n 1)" ]; then
    changed=1; mr_say recursed 1
    [ "$CHECK" = 1 ] || chgrp -R -h -- "$group" "$p" || mr_fail "cannot chgrp -R $group"
  fi
  [ -n "$mode" ] || return 0
  if [ "$mode_sym" = 0 ]; then
    if [ -n "$(find "$p" ! -type l ! -perm "$mode" -print | head -n 1)" ]; then
      changed=1; mr_say recursed 1
      [ "$CHECK" = 1 ] || chmod -R "$mode" "$p" || mr_fail "cannot chmod -R $mode"
    fi
  elif [ "$CHECK" = 0 ]; then
    mr_b=$(find "$p" ! -type l -exec stat -c %a {} + | cksum)
    chmod -R "$mode" "$p" || mr_fail "cannot chmod -R $mode"
    if [ "$mr_b" != "$(find "$p" ! -type l -exec stat -c %a {} + | cksum)" ]; then
      changed=1; mr_say recursed 1
    fi
  else
    # A symbolic mode's effect differs per entry; check mode cannot try it: say it may.
    changed=1; mr_say recursed maybe
  fi
}
"""
# chattr flags as Ansible's `attributes`: "=" (the default) wants exactly these flags,
# "+" at least them, "-" none of them; lsattr reads them (nothing when unsupported).
CHATTR = r"""mr_chattr() {
  mr_have=$(lsattr -d -- "$p" 2>/dev/null | awk '{gsub(/-/, "", $1); print $1}')
  mr_say attributes_was "$mr_have"
  mr_attr_ok=1
  case $attr_op in
  =) [ "$(printf '%s' "$mr_have" | fold -w1 | sort | tr -d '\n')" = \
       "$(printf '%s' "$attr_flags" | fold -w1 | sort -u | tr -d '\n')" ] || mr_attr_ok=0 ;;
  +) for mr_f in $(printf '%s' "$attr_flags" | fold -w1); do
       case $mr_have in *"$mr_f"*) ;; *) mr_attr_ok=0 ;; esac; done ;;
  -) for mr_f in $(printf '%s' "$attr_flags" | fold -w1); do
       case $mr_have in *"$mr_f"*) mr_attr_ok=0 ;; esac; done ;;
  esac
  [ "$mr_attr_ok" = 0 ] || return 0
  changed=1; mr_say attributes_changed 1
  [ "$CHECK" = 0 ] || return 0
  mr_out=$(chattr "$attr_op$attr_flags" -- "$p" 2>&1) && [ -z "$mr_out" ] \
    || mr_fail "chattr failed: Error while setting attributes: $mr_out"
}
"""
# Access and modification times, as Ansible's: "" keeps one, "now" always changes it, a
# local time ("2020-01-31 10:00:00") changes it only when the file's time is not exactly it.
TIMES = r"""mr_times() {
  mr_s=$(stat -L -c '%x|%y' -- "$p") || mr_fail "cannot stat $p"
  mr_say atime_was "${mr_s%%|*}"; mr_say mtime_was "${mr_s#*|}"
  mr_times_a=0 mr_times_m=0
  case $atime in
  now) mr_times_a=1 ;;
  ?*) [ "$(date -d "$atime" '+%Y-%m-%d %H:%M:%S.000000000 %z')" = "${mr_s%%|*}" ] \
        || mr_times_a=1 ;;
  esac
  case $mtime in
  now) mr_times_m=1 ;;
  ?*) [ "$(date -d "$mtime" '+%Y-%m-%d %H:%M:%S.000000000 %z')" = "${mr_s#*|}" ] \
        || mr_times_m=1 ;;
  esac
  [ "$mr_times_a$mr_times_m" != 00 ] || return 0
  changed=1; mr_say times_changed 1
  [ "$CHECK" = 0 ] || return 0
  mr_e="Error while updating modification or access time"
  if [ "$atime" = now ] && [ "$mtime" = now ]; then touch -c -- "$p" || mr_fail "$mr_e: $p"
    return 0
  fi
  case $atime in now) touch -c -a -- "$p" ;; ?*) touch -c -a -d "$atime" -- "$p" ;; esac \
    || mr_fail "$mr_e: $p"
  case $mtime in now) touch -c -m -- "$p" ;; ?*) touch -c -m -d "$mtime" -- "$p" ;; esac \
    || mr_fail "$mr_e: $p"
  mr_s=$(stat -L -c '%x|%y' -- "$p")
  mr_say atime_now "${mr_s%%|*}"; mr_say mtime_now "${mr_s#*|}"
}
"""
# Each state's part. `directory` makes the missing ancestors ($@, set by the script, outermost
# first) in one mkdir -m, 0700 under umask 077 until the mode is set: never looser.
STATE_BODY = {
    "absent": r"""if [ "$before" != absent ]; then
  changed=1
  [ "$CHECK" = 1 ] || rm -rf -- "$p" || mr_fail "cannot remove $p"
fi
""",
    "directory": r"""if [ -d "$p" ]; then mr_fix "$p" d
elif [ "$before" != absent ]; then mr_fail "$p exists and is not a directory"
else
  changed=1
  if [ "$CHECK" = 0 ]; then
    for a do shift; if [ ! -e "$a" ] && [ ! -L "$a" ]; then set -- "$@" "$a"; fi; done
    mr_dmode d; mr_want_mode "$mr_dm" d
    mkdir -m "$want_mode" -- "$@" || mr_fail "cannot create $1"
    if [ -n "$owner" ]; then chown -- "$owner" "$@" || mr_fail "cannot chown $owner"; fi
    if [ -n "$group" ]; then chgrp -- "$group" "$@" || mr_fail "cannot chgrp $group"; fi
  fi
  mr_fresh d
fi
if [ "$recurse" = 1 ] && [ -d "$p" ]; then mr_recurse; fi
""",
    "file": r"""if [ "$before" = absent ]; then
  mr_fail "$p does not exist (state=file does not create files: use state=touch or copy)"
fi
if [ -d "$p" ]; then mr_fail "$p is a directory"; fi
mr_fix "$p" f
""",
    # Changed when created, or by attributes and times below (default: both now, so always).
    "touch": r"""if [ "$before" = absent ]; then
  changed=1
  if [ "$CHECK" = 0 ]; then
    : >"$p" || mr_fail "cannot create $p"
    mr_fix "$p" f
  else mr_fresh f; fi
else
  if [ -d "$p" ]; then mr_fix "$p" d; else mr_fix "$p" f; fi
fi
""",
    "link": r"""mr_cur=
if [ -L "$p" ]; then mr_cur=$(readlink -- "$p"); fi
if [ "$before" = link ] && [ "$mr_cur" = "$src" ]; then :
else
  if [ "$before" = directory ]; then
    if [ "$force" = 1 ] && rmdir -- "$p" 2>/dev/null; then :
    else mr_fail "$p is a directory: cannot replace it with a link"; fi
  elif [ "$before" = file ] && [ "$force" = 0 ]; then
    mr_fail "$p exists and is not a link (set force to replace it)"
  fi
  if [ "$force" = 0 ] && ! (cd -- "$linkdir" 2>/dev/null && [ -e "$src" ]); then
    mr_fail "src $src does not exist (set force to link anyway)"
  fi
  changed=1
  if [ "$CHECK" = 0 ]; then
    mr_t2=$linkdir/.machineroom.$$.link
    rm -f -- "$mr_t2"
    ln -s -- "$src" "$mr_t2" || mr_fail "cannot create link $p"
    mv -f -T -- "$mr_t2" "$p" || mr_fail "cannot rename the link into $p"
  fi
fi
mr_say link_was "$(printf '%s' "$mr_cur" | base64 | tr -d '\n')"
if [ -L "$p" ] && { [ -n "$owner" ] || [ -n "$group" ]; }; then
  mr_s=$(stat -c '%U %G %u %g' -- "$p"); set -- $mr_s
  cur_owner=$1 cur_group=$2 cur_uid=$3 cur_gid=$4
  if ! mr_owner_ok || ! mr_group_ok; then
    changed=1
    [ "$CHECK" = 1 ] || mr_chown "$p" -h
  fi
fi
""",
    "hard": r"""[ -e "$src" ] || mr_fail "src $src does not exist"
if [ -e "$p" ] && [ "$(stat -c %d:%i -- "$p")" = "$(stat -c %d:%i -- "$src")" ]; then :
else
  if [ "$before" = directory ]; then mr_fail "$p is a directory"; fi
  if [ "$before" != absent ] && [ "$force" = 0 ]; then
    mr_fail "$p exists (set force to replace it with a hard link)"
  fi
  changed=1
  if [ "$CHECK" = 0 ]; then
    mr_t2=$linkdir/.machineroom.$$.hard
    rm -f -- "$mr_t2"
    ln -- "$src" "$mr_t2" || mr_fail "cannot create hard link $p"
    mv -f -- "$mr_t2" "$p" || mr_fail "cannot rename the link into $p"
  fi
fi
if [ -e "$p" ]; then mr_fix "$p" f; fi
""",
}
# The ids after the change: the stat mr_fix made, unless a change came after it.
TAIL = r"""mr_kind "$p"; mr_say after "$mr_k"
if [ "$state" != absent ] && [ -e "$p" ]; then
  if [ "$mr_attrs_of" = "$p" ]; then mr_say ids "$cur_uid $cur_gid $cur_size"
  else mr_say ids "$(stat -L -c '%u %g %s' -- "$p")"; fi
fi
mr_say changed "$changed"
"""

STATES = ["file", "directory", "link", "hard", "absent", "touch"]
TIME_FORMAT = "%Y%m%d%H%M.%S"


def _time_arg(args: Mapping[str, Any], name: str, state: str) -> str:
    """`access_time`/`modification_time` for the script: "" to keep it, "now", or a local
    time "YYYY-mm-dd HH:MM:SS" that `date -d` reads on the host (Ansible's mktime there).
    Unset means preserve, except for touch (now), as in Ansible."""
    value = args.get(name)
    if value is None:
        value = "now" if state == "touch" else "preserve"
    if value == "preserve":
        return ""
    if value == "now":
        return "now"
    time_format = str(args.get(f"{name}_format") or TIME_FORMAT)
    try:
        parsed = time.strptime(str(value), time_format)
    except ValueError as error:
        raise InputError(
            f"file: {name}: Error while obtaining timestamp for time {value} using format "
            f"{time_format}: {error}",
            expected=f"now, preserve or a time in the format {time_format}",
        ) from None
    return time.strftime("%Y-%m-%d %H:%M:%S", parsed)


def _attributes_vars(attributes: str | None) -> str:
    """sh assignments of `attributes` as Ansible reads it: "+i", "-i", "=i" or "i" (=)."""
    text = (attributes or "").strip()
    op = "="
    if text[:1] in ("+", "-", "="):
        op, text = text[0], text[1:]
    if text and not text.isalnum():
        raise InputError(
            f"file: attributes: {attributes!r} is not a set of chattr flags",
            expected="letters such as 'i' or 'a', optionally after +, - or =",
        )
    return f"attr_op={quote(op)} attr_flags={quote(text)}\n"


class FileModule(Module):
    """Make a path a file, directory, link or hard link, or remove it; set its attributes."""

    name: ClassVar[str] = "file"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "state": {"enum": STATES},
            "src": {"type": "string", "minLength": 1},
            "recurse": {"type": "boolean", "default": False},
            "force": {"type": "boolean", "default": False},
            "follow": {"type": "boolean", "default": True},
            "attributes": {"type": "string"},
            "access_time": {"type": "string"},
            "access_time_format": {"type": "string", "default": TIME_FORMAT},
            "modification_time": {"type": "string"},
            "modification_time_format": {"type": "string", "default": TIME_FORMAT},
            # what copy/template ask before a diff: does the file look binary? (changes nothing)
            "_diff_peek": {"type": "boolean"},
            **files_sh.ATTR_PROPS,
        },
        "required": ["path"],
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {"dest": "path", "name": "path", "attr": "attributes"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: read the path's kind, change it when it differs, report."""
        path = args["path"]
        if args.get("_diff_peek"):  # a NUL byte in the first 8 KiB, as Ansible's peek
            return RemoteStep(
                f"p={quote(path)}\n"
                'if [ -f "$p" ] && [ "$(head -c 8192 -- "$p" | tr -dc \'\\000\' | wc -c)" -gt 0 ]'
                "; then echo peek=binary; else echo peek=text; fi\n"
            )
        state = self._state(args)
        src = args.get("src", "")
        if state in ("link", "hard") and not src:
            raise InputError(f"file: state={state} needs src")
        if args.get("recurse") and state != "directory":
            raise InputError("file: recurse needs state=directory")
        atime = _time_arg(args, "access_time", state)
        mtime = _time_arg(args, "modification_time", state)
        attributes = _attributes_vars(args.get("attributes"))
        recurse = bool(args.get("recurse"))
        # which helpers the state's part and the tail call
        helpers = [HEAD]
        if state in ("directory", "file", "touch", "hard"):
            helpers.append(FIX)
        if state in ("directory", "touch"):
            helpers.append(FRESH)
        if recurse:
            helpers.append(RECURSE)
        flags = str(args.get("attributes") or "").strip().lstrip("+-=")
        chattr = state not in ("absent", "link") and bool(flags)
        if chattr:
            helpers.append(CHATTR)
        if atime or mtime:
            helpers.append(TIMES)
        tail = []
        if state != "absent" and (chattr or atime or mtime):
            calls = ("mr_chattr; " if chattr else "") + ("mr_times; " if atime or mtime else "")
            tail.append(f'if [ -e "$p" ]; then {calls}fi\n')
        script = [
            files_sh.library("attrs", "mode", "owner"),
            files_sh.common_vars(ctx.check, ctx.diff, path),
            files_sh.attr_vars(args),
            f"p={quote(path)} state={quote(state)} src={quote(src)}\n",
            f"linkdir={quote(files_sh.folder(path))}\n",
            f"recurse={int(recurse)} force={int(bool(args.get('force')))}\n",
            attributes,
            f"atime={quote(atime)} mtime={quote(mtime)}\n",
            *helpers,
        ]
        if state == "directory":
            # the ancestors, outermost first, each quoted: any byte survives
            script.append(f"set -- {' '.join(quote(a) for a in files_sh.parents(path))}\n")
        script += [STATE_BODY[state], *tail, TAIL]
        return RemoteStep("".join(script))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the kind or an attribute differed (touch: always, as in Ansible)."""
        path = args["path"]
        if args.get("_diff_peek") and output.exit_code == 0:
            binary = "peek=binary" in output.stdout
            return Outcome("ok", result={"path": path, "appears_binary": binary})
        if output.exit_code != 0:
            return files_sh.failure(output, "file")
        report, _ = files_sh.parse_report(output.stdout)
        state = self._state(args)
        before_kind = report.get("before", "")
        after_kind = state if ctx.check and report.get("changed") == "1" else report.get("after")
        result: dict[str, Any] = {"path": path, "state": after_kind}
        if "want_mode" in report:
            result["mode"] = files_sh.show_mode(report["want_mode"])
            result["owner"] = report.get("want_owner", "")
            result["group"] = report.get("want_group", "")
        ids = report.get("ids", "").split()
        if len(ids) == 3 and all(part.isdigit() for part in ids):
            # as Ansible's add_path_info; in check mode, the values before the change
            result.update(uid=int(ids[0]), gid=int(ids[1]), size=int(ids[2]))
        if state == "absent":
            result["state"] = "absent"
        if report.get("changed") != "1":
            return Outcome("ok", msg=f"{path} already matches", result=result)
        diff = ""
        if ctx.diff:
            before = {
                "state": before_kind,
                "mode": files_sh.show_mode(report.get("mode", "")),
                "owner": report.get("owner", ""),
                "group": report.get("group", ""),
            }
            after = {
                "state": str(result["state"]),
                "mode": str(result.get("mode", "")),
                "owner": str(result.get("owner", "")),
                "group": str(result.get("group", "")),
            }
            if report.get("attributes_changed"):
                before["attributes"] = report.get("attributes_was", "")
                after["attributes"] = str(args.get("attributes", "")).strip()
            if report.get("times_changed"):
                for key, name in (("atime", "access_time"), ("mtime", "modification_time")):
                    before[key] = report.get(f"{key}_was", "")
                    after[key] = report.get(f"{key}_now") or str(args.get(name) or "now")
            if state == "absent":
                after = {"state": "absent"}
            if state == "link":
                before["state"] = f"{before_kind} {_unb64(report.get('link_was', ''))}".strip()
                after["state"] = f"link {args['src']}"
            diff = files_sh.attrs_diff(path, before, after)
            if report.get("recursed"):
                diff += f"# and entries under {path} (recurse)\n"
        verb = "would change" if ctx.check else "changed"
        what = {"absent": "removed", "touch": "touched"}.get(state, f"made {state}")
        if ctx.check:
            what = {"absent": "remove", "touch": "touch"}.get(state, f"make {state}")
        return Outcome("changed", msg=f"{path}: {verb}: {what}", diff=diff, result=result)

    @staticmethod
    def _state(args: Mapping[str, Any]) -> str:
        """The state asked for; as in Ansible, without one: directory with recurse, link
        with src, else file (which only changes attributes of what exists)."""
        state = args.get("state")
        if state:
            return str(state)
        if args.get("recurse"):
            return "directory"
        if args.get("src"):
            return "link"
        return "file"


def _unb64(text: str) -> str:
    try:
        return base64.b64decode(text).decode(errors="replace")
    except ValueError:
        return ""
