"""Shared pieces of the file modules: sh functions, the report format, modes and diffs.

Every file module sends one POSIX sh script (coreutils, sed, awk, grep, cmp, diff: no Python
on the host). The script starts with `LIBRARY`, or with the pieces of it that it calls
(`library()`), which define:

- `mr_put NEW DEST [1]`: the one way content reaches a file. NEW holds the wanted content (a
  temp file in DEST's folder, made by `mr_tmp_near`, unless check mode), or is DEST itself
  when the caller knows that DEST has that content (no temp file then). It compares content
  (`cmp`, unless the caller passes a third argument 1: it knows they differ) and attributes (one
  `stat`, reused when the caller made it), prints the report, the diff (`diff -u`, computed
  on the host so that only the diff travels back), then, unless check mode, validates,
  backs up, sets mode and owner on the temp file and renames it over DEST. The rename is
  atomic and the temp file was created 0600 (umask 077), so the file never exists, even
  briefly, with looser permissions than requested, and a reader sees the old or the new
  content.
- `mr_attrs PATH` (cur_mode, cur_owner, cur_group, cur_uid, cur_gid, cur_size),
  `mr_want_mode BASE KIND`, `mr_owner_ok`, `mr_group_ok`, `mr_id`: state reading.

The script's stdout is a report: `key=value` lines (only values of our own making: numbers,
modes, user and group names from `stat`), then a `DIFF_MARKER` line, then the host's diff
output. The diff comes last so that no user content can be mistaken for a report line.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import shlex
from collections.abc import Mapping
from typing import Any

from machineroom.errors import InputError
from machineroom.modules.base import CommandOutput, ModuleContext, Outcome, quote

DIFF_MARKER = "@@machineroom-diff@@"
# Bytes of a content diff sent back by the host; the rest is counted, not sent.
DIFF_LIMIT = 64 * 1024
FAIL_MARKER = "machineroom: "

# Argument schemas shared by the modules that manage a file's attributes.
MODE_SCHEMA: dict[str, Any] = {"type": ["string", "integer"]}
ATTR_PROPS: dict[str, Any] = {
    "mode": MODE_SCHEMA,
    "owner": {"type": "string"},
    "group": {"type": "string"},
}

# The library in pieces, so that a script carries only the functions it calls. On the host a
# program costs about 1.5-2 ms of CPU, a fork (a $( ) or a pipeline) 0.3-0.8 ms, parsing a KB
# of sh about 0.05 ms: hence builtins wherever they do. The umask is read from
# /proc/self/status (the `umask` builtin's output needs a subshell), the exit trap runs no
# `rm` without a temp file, modes are formatted with $(( )), one `stat` reads all attributes
# and the size, one `id` the user and group a new file gets.
PIECES: dict[str, str] = {
    "prologue": r"""set -f
mr_umask=
if [ -r /proc/self/status ]; then { read -r mr_k; read -r mr_k mr_umask; } </proc/self/status; fi
case $mr_umask in [0-7][0-7][0-7][0-7]) ;; *) mr_umask=$(umask) ;; esac
umask 077
mr_t1= mr_t2= mr_attrs_of=
trap '[ -z "$mr_t1$mr_t2" ] || rm -f -- ${mr_t1:+"$mr_t1"} ${mr_t2:+"$mr_t2"}' EXIT
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_say() { printf '%s=%s\n' "$1" "$2"; }
""",
    "attrs": r"""mr_attrs() {
  mr_attrs_of= mr_s=$(stat -L -c '%a %U %G %u %g %s' -- "$1") || return 1
  mr_attrs_of=$1
  set -- $mr_s
  cur_mode=$1 cur_owner=$2 cur_group=$3 cur_uid=$4 cur_gid=$5 cur_size=$6
}
""",
    "mode": r"""mr_dmode() {
  if [ "$1" = d ]; then mr_dm=$(( 0777 & ~0$mr_umask )); else mr_dm=$(( 0666 & ~0$mr_umask )); fi
  mr_dm=$(( mr_dm >> 6 & 7 ))$(( mr_dm >> 3 & 7 ))$(( mr_dm & 7 ))
  mr_dm=${mr_dm#0}; mr_dm=${mr_dm#0}
}
mr_default_mode() { mr_dmode "$1"; printf '%s' "$mr_dm"; }
mr_want_mode() {
  if [ -z "$mode" ]; then want_mode=$1
  elif [ "$mode_sym" = 1 ]; then
    if [ "$2" = d ]; then mr_s=$(mktemp -d) || mr_fail "mktemp failed"
    else mr_s=$(mktemp) || mr_fail "mktemp failed"; fi
    chmod "$1" "$mr_s" && chmod "$mode" "$mr_s" && want_mode=$(stat -c %a -- "$mr_s")
    mr_rc=$?
    rm -rf -- "$mr_s"
    [ $mr_rc = 0 ] || mr_fail "invalid mode: $mode"
  else want_mode=$mode; fi
}
""",
    "owner": r"""
mr_owner_ok() { [ -z "$owner" ] || [ "$owner" = "$cur_owner" ] || [ "$owner" = "$cur_uid" ]; }
mr_group_ok() { [ -z "$group" ] || [ "$group" = "$cur_group" ] || [ "$group" = "$cur_gid" ]; }
mr_chown() {
  if [ -n "$owner" ]; then chown ${2:-} -- "$owner" "$1" || mr_fail "cannot chown $owner"; fi
  if [ -n "$group" ]; then chgrp ${2:-} -- "$group" "$1" || mr_fail "cannot chgrp $group"; fi
}
""",
    # mr_id: my_uid my_user my_gid my_group, whom a file this script creates belongs to
    # (the effective ids; a number where the id has no name), from one `id`.
    "id": r"""mr_id() {
  [ -z "${my_uid:-}" ] || return 0
  mr_s=$(LC_ALL=C id) || mr_fail "id failed"
  for mr_f in $mr_s; do
    mr_v=${mr_f#*=} mr_n=${mr_f#*\(}; mr_n=${mr_n%\)}
    case $mr_v in *\(*) mr_v=${mr_v%%\(*} ;; *) mr_n=$mr_v ;; esac
    case $mr_f in
    uid=*|euid=*) my_uid=$mr_v my_user=$mr_n ;;
    gid=*|egid=*) my_gid=$mr_v my_group=$mr_n ;;
    esac
  done
}
""",
    # mr_tmp_near DIR: a new empty file in DIR (check mode: in $TMPDIR), mr_t1, from mktemp
    # (a random name, O_EXCL). Not the shell's noclobber on a guessable name: it opens an
    # existing FIFO, device or link to one that another user planted there.
    "tmp": r"""mr_tmp_near() {
  if [ "$CHECK" = 1 ]; then mr_t1=$(mktemp) || mr_fail "cannot create a temporary file"
  else mr_t1=$(mktemp -- "$1/.machineroom.XXXXXXXX") \
    || mr_fail "cannot create a temporary file in $1"; fi
}
""",
    # a file ends without a newline when its last byte, kept by $( ), is not one
    "noeol": r"""mr_noeol() {
  mr_noeol=0
  if [ -s "$1" ]; then mr_s=$(tail -c 1 -- "$1"); [ -z "$mr_s" ] || mr_noeol=1; fi
}
""",
    # Only the head of a big diff travels back; the rest is counted (connection/output.py's
    # marker), so a diff of a 300 MB file costs neither the wire nor the controller.
    "put": r"""mr_put() {
  mr_new=$1 mr_dest=$2 mr_differs=${3:-}
  if [ -d "$mr_dest" ]; then mr_fail "$mr_dest is a directory"; fi
  if [ -e "$mr_dest" ]; then
    [ "$mr_attrs_of" = "$mr_dest" ] || mr_attrs "$mr_dest" || mr_fail "cannot stat $mr_dest"
    mr_say exists 1; mr_say mode "$cur_mode"; mr_say owner "$cur_owner"; mr_say group "$cur_group"
    if [ "$mr_new" = "$mr_dest" ]; then mr_content=0
    elif [ "$mr_differs" = 1 ] || ! cmp -s -- "$mr_new" "$mr_dest"; then mr_content=1
    else mr_content=0; fi
    mr_want_mode "$cur_mode" f
    mr_attrs_changed=0
    [ "$want_mode" = "$cur_mode" ] || mr_attrs_changed=1
    mr_owner_ok || mr_attrs_changed=1
    mr_group_ok || mr_attrs_changed=1
    mr_old=$mr_dest
  else
    mr_say exists 0
    mr_content=1 mr_attrs_changed=0 cur_uid= cur_gid=
    mr_id; cur_owner=$my_user cur_group=$my_group
    mr_dmode f; mr_want_mode "$mr_dm" f
    mr_old=/dev/null
  fi
  mr_say want_mode "$want_mode"
  mr_say want_owner "${owner:-$cur_owner}"; mr_say want_group "${group:-$cur_group}"
  mr_say content "$mr_content"; mr_say attrs "$mr_attrs_changed"
  if [ "$mr_content" = 1 ] && [ "$backup" = 1 ] && [ -e "$mr_dest" ] && [ "$CHECK" = 0 ]; then
    mr_bak=".$$.$(date +%Y-%m-%d@%H:%M:%S)~"
    mr_say backup "$mr_bak"
  fi
  printf '%s\n' "$DIFF_MARKER"
  if [ "$DIFF" = 1 ] && [ "$mr_content" = 1 ]; then
    { diff -u -L "$label_before" -L "$label_after" -- "$mr_old" "$mr_new" 2>&1 || :; } \
      | { head -c "$DIFF_LIMIT"; mr_n=$(wc -c); [ "$mr_n" -eq 0 ] \
          || printf '\n[... %s bytes not kept ...]\n' "$mr_n"; }
  fi
  [ "$CHECK" = 0 ] || return 0
  mr_attrs_of=
  if [ "$mr_content" = 1 ]; then
    if [ -n "$validate" ]; then
      mr_vout=$(mr_validate "$mr_new" 2>&1) \
        || mr_fail "validation failed ($validate_text): $mr_vout"
    fi
    if [ -n "${mr_bak:-}" ]; then
      cp -p -- "$mr_dest" "$mr_dest$mr_bak" || mr_fail "cannot back up $mr_dest"
    fi
    chmod "$want_mode" "$mr_new" || mr_fail "cannot chmod $want_mode"
    if [ -n "$cur_uid" ]; then chown "$cur_uid:$cur_gid" "$mr_new" 2>/dev/null || :; fi
    mr_chown "$mr_new"
    mv -f -- "$mr_new" "$mr_dest" || mr_fail "cannot rename into $mr_dest"
    [ "$mr_new" != "$mr_t1" ] || mr_t1=
  elif [ "$mr_attrs_changed" = 1 ]; then
    chmod "$want_mode" "$mr_dest" || mr_fail "cannot chmod $want_mode"
    mr_chown "$mr_dest"
  fi
}
""",
}
# What each piece calls (the prologue is always there).
_NEEDS = {"put": ("attrs", "mode", "owner", "id"), "mode": (), "owner": (), "attrs": ()}


def library(*names: str) -> str:
    """The prologue and the named pieces with those they call, in one fixed order (the same
    arguments always give the same script text)."""
    wanted = {"prologue", *names}
    for name in names:
        wanted.update(_NEEDS.get(name, ()))
    return "".join(text for name, text in PIECES.items() if name in wanted)


# Every piece: for the modules that use the whole library.
LIBRARY = library(*PIECES)

_OCTAL = re.compile(r"^0?o?[0-7]{1,4}$")
_SYMBOLIC = re.compile(r"^[ugoa]*([-+=]([rwxXst]*|[ugo]))+(,[ugoa]*([-+=]([rwxXst]*|[ugo]))+)*$")


def parse_mode(value: object) -> tuple[str, bool]:
    """A `mode` argument as (value for the script, symbolic?).

    An integer is the mode itself, as in Ansible (YAML reads `0644` as 420, which is 0o644);
    a string of octal digits is octal ("0644", "644", "0o644"); anything else must be a
    chmod symbolic mode ("u+x", "u=rw,g=r,o="). Octal modes come back without leading zeros,
    the form `stat -c %a` prints, so that the host compares strings.
    """
    if value is None or value == "":
        return "", False
    if isinstance(value, bool):
        raise InputError(f"mode: {value!r} is not a mode", expected="an octal string like '0644'")
    if isinstance(value, int):
        if not 0 <= value <= 0o7777:
            raise InputError(f"mode: {value} is out of range", expected="0 to 0o7777")
        return format(value, "o"), False
    text = str(value).strip()
    if _OCTAL.match(text):
        return format(int(text.replace("o", ""), 8), "o"), False
    if _SYMBOLIC.match(text):
        return text, True
    raise InputError(
        f"mode: {text!r} is neither an octal nor a symbolic mode",
        expected="'0644', 420 or a chmod symbolic mode like 'u+x,g-w'",
    )


def attr_vars(args: Mapping[str, Any]) -> str:
    """sh assignments of mode, mode_sym, owner and group from the arguments, quoted."""
    mode, symbolic = parse_mode(args.get("mode"))
    return (
        f"mode={quote(mode)} mode_sym={int(symbolic)} "
        f"owner={quote(args.get('owner') or '')} group={quote(args.get('group') or '')}\n"
    )


def common_vars(check: bool, diff: bool, path: str) -> str:
    """sh assignments every file script starts with (after LIBRARY)."""
    return (
        f"CHECK={int(check)} DIFF={int(diff)} DIFF_LIMIT={DIFF_LIMIT} "
        f"DIFF_MARKER={quote(DIFF_MARKER)} "
        f"FAIL_MARKER={quote(FAIL_MARKER)}\n"
        f"label_before={quote('before: ' + path)} label_after={quote('after: ' + path)}\n"
    )


def validate_vars(validate: str | None) -> str:
    """An `mr_validate FILE` function for a `validate` command like `visudo -cf %s`.

    As in Ansible, the command is split into words and run without a shell: each word is
    quoted, and `%s` becomes the temp file's path, so the user's text never reaches sh.
    """
    if not validate:
        return "validate= validate_text=\nmr_validate() { :; }\n"
    if "%s" not in validate:
        raise InputError(
            f"validate: {validate!r} has no %s", expected="a command naming the file as %s"
        )
    words = []
    for word in shlex.split(validate):
        parts = word.split("%s")
        words.append('"$1"'.join(quote(p) if p else "" for p in parts) or "''")
    return f"validate=1 validate_text={quote(validate)}\nmr_validate() {{ {' '.join(words)}; }}\n"


def parse_report(stdout: str) -> tuple[dict[str, str], str]:
    """The script's `key=value` lines and the diff text after the marker."""
    head, sep, diff = stdout.partition(DIFF_MARKER + "\n")
    if not sep:
        head, diff = stdout, ""
    report: dict[str, str] = {}
    for line in head.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            report[key] = value
    return report, diff


def failure(output: CommandOutput, what: str) -> Outcome:
    """A failed Outcome saying what `mr_fail` said (or the last stderr line)."""
    err = output.stderr
    at = err.rfind(FAIL_MARKER)
    lines = [line for line in err.splitlines() if line.strip()]
    if at >= 0:
        msg = err[at + len(FAIL_MARKER) :].strip()[:2000]
    else:
        msg = lines[-1] if lines else f"{what}: exit code {output.exit_code}"
    return Outcome(
        "failed",
        msg=msg,
        result={"rc": output.exit_code, "stderr": output.stderr, "stdout": output.stdout},
    )


def show_mode(mode: str) -> str:
    """A mode as people write it: 4 octal digits."""
    return mode.rjust(4, "0") if mode.isdigit() else mode


def attrs_diff(path: str, before: Mapping[str, str], after: Mapping[str, str]) -> str:
    """A unified diff of mode/owner/group (and state), as --diff shows attributes."""
    known = ("state", "mode", "owner", "group", "attributes", "atime", "mtime")
    keys = [k for k in known if k in before or k in after]
    old = [f"{k}: {before[k]}\n" for k in keys if before.get(k)]
    new = [f"{k}: {after[k]}\n" for k in keys if after.get(k)]
    if old == new:
        return ""
    return "".join(difflib.unified_diff(old, new, f"before: {path} (attributes)", f"after: {path}"))


def file_outcome(
    path: str, report: Mapping[str, str], diff_text: str, *, check: bool, want_diff: bool
) -> tuple[bool, str, dict[str, Any]]:
    """(changed, diff, result) from `mr_put`'s report."""
    content = report.get("content") == "1"
    attrs = report.get("attrs") == "1"
    existed = report.get("exists") == "1"
    after_mode = report.get("want_mode", "")
    result: dict[str, Any] = {
        "path": path,
        "dest": path,
        "mode": show_mode(after_mode),
        "owner": report.get("want_owner", ""),
        "group": report.get("want_group", ""),
    }
    if "backup" in report:
        result["backup_file"] = path + report["backup"]
    diff = ""
    if want_diff:
        before = (
            {
                "mode": show_mode(report.get("mode", "")),
                "owner": report.get("owner", ""),
                "group": report.get("group", ""),
            }
            if existed
            else {"state": "absent"}
        )
        after = {
            "mode": show_mode(after_mode),
            "owner": report.get("want_owner", ""),
            "group": report.get("want_group", ""),
        }
        if not existed:
            after["state"] = "file"
        diff = diff_text + (attrs_diff(path, before, after) if (attrs or not existed) else "")
    return content or attrs, diff, result


def parents(path: str) -> list[str]:
    """`path` and its ancestors, outermost first ("/a/b" -> ["/a", "/a/b"])."""
    path = posixpath.normpath(path)
    out: list[str] = []
    while path not in ("/", ".", ""):
        out.append(path)
        path = posixpath.dirname(path)
    return out[::-1]


def folder(path: str) -> str:
    """The folder a temp file for `path` goes in (same filesystem: the rename is atomic)."""
    return posixpath.dirname(path.rstrip("/")) or "."


def nothing_to_do(path: str, check: bool) -> str:
    """The ok message."""
    return f"{path} already matches"


# Python regex escapes and their POSIX ERE spelling, outside and inside a bracket expression.
_ERE_CLASSES = {
    "d": ("[0-9]", "0-9"),
    "D": ("[^0-9]", None),
    "s": ("[[:space:]]", "[:space:]"),
    "S": ("[^[:space:]]", None),
    "w": ("[[:alnum:]_]", "[:alnum:]_"),
    "W": ("[^[:alnum:]_]", None),
}
_UNSUPPORTED = re.compile(r"\(\?|[*+?}]\?|\\[bBAZzG]|\\[1-9]")


def ere(pattern: str, what: str) -> str:
    """A Python regular expression (Ansible's dialect) as a POSIX ERE for awk and sed.

    The host has no Python, so matching happens in awk: the common escapes (\\d \\s \\w and
    their negations) are translated; constructs ERE lacks (lookaround, non-greedy
    quantifiers, \\b, back references in the pattern) are refused here rather than
    silently matching something else on the host.
    """
    bad = _UNSUPPORTED.search(pattern)
    if bad:
        raise InputError(
            f"{what}: {pattern!r} uses {bad.group(0)!r}, which POSIX ERE (awk on the host) lacks",
            expected="a regular expression without lookaround, lazy quantifiers, \\b or \\1",
        )
    if "\n" in pattern or "\x01" in pattern or "\x02" in pattern:
        raise InputError(f"{what}: a newline or control character in {pattern!r}")
    # A list of atoms, so that an interval can repeat the atom before it: mawk (Debian's
    # awk) has no {n,m}, so x{2,3} is spelled out as xxx?.
    out: list[str] = []
    groups: list[int] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            n = pattern[i + 1]
            outside = _ERE_CLASSES.get(n, (None, None))[0]
            if outside is not None:
                out.append(outside)
            elif n in "tn":
                out.append("\t" if n == "t" else "\n")
            else:
                out.append(c + n)
            i += 2
        elif c == "[":
            j, atom = _bracket(pattern, i, what)
            out.append(atom)
            i = j
        elif c == "(":
            groups.append(len(out))
            out.append(c)
            i += 1
        elif c == ")" and groups:
            start = groups.pop()
            out[start:] = ["".join(out[start:]) + ")"]
            i += 1
        elif c == "{" and out and (m := _INTERVAL.match(pattern, i)):
            atom = out.pop()
            low = int(m.group(1))
            high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
            if high is not None and (high < low or high > 255):
                raise InputError(f"{what}: bad interval {m.group(0)!r} in {pattern!r}")
            rest = atom + "*" if high is None else (atom + "?") * (high - low)
            out.append(atom * low + rest)
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


_INTERVAL = re.compile(r"\{(\d+)(,(\d*))?\}")


def _bracket(pattern: str, i: int, what: str) -> tuple[int, str]:
    """The bracket expression starting at pattern[i], translated; and where it ends."""
    out = ["["]
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        out.append("^")
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        out.append("]")
        j += 1
    while j < len(pattern) and pattern[j] != "]":
        c = pattern[j]
        if c == "[" and pattern.startswith("[:", j):
            end = pattern.find(":]", j)
            if end < 0:
                break
            out.append(pattern[j : end + 2])
            j = end + 2
            continue
        if c == "\\" and j + 1 < len(pattern):
            n = pattern[j + 1]
            outside, inside = _ERE_CLASSES.get(n, (None, None))
            if inside is None and outside is not None:
                raise InputError(f"{what}: \\{n} inside [...] is not supported: {pattern!r}")
            out.append(inside if inside is not None else {"t": "\t", "n": "\n"}.get(n, n))
            j += 2
            continue
        out.append(c)
        j += 1
    if j >= len(pattern):
        raise InputError(f"{what}: unterminated [ in {pattern!r}")
    out.append("]")
    return j + 1, "".join(out)


def edit_outcome(
    path: str,
    ctx: ModuleContext,
    output: CommandOutput,
    *,
    module: str,
    absent: bool,
    missing: str,
    removed: str,
    added: str,
) -> Outcome:
    """The outcome of an in-place edit (lineinfile, blockinfile) from `mr_put`'s report:
    `missing` when there was no file to remove from, `removed`/`added` name the change."""
    if output.exit_code != 0:
        return failure(output, module)
    report, diff_text = parse_report(output.stdout)
    if report.get("missing") == "1":
        return Outcome("ok", msg=f"{path} does not exist: {missing}")
    changed, diff, result = file_outcome(
        path, report, diff_text, check=ctx.check, want_diff=ctx.diff
    )
    if not changed:
        return Outcome("ok", msg=nothing_to_do(path, ctx.check), result=result)
    what = removed if absent else added
    if report.get("content") != "1":
        what = "attributes changed"
    prefix = "would be " if ctx.check else ""
    return Outcome("changed", msg=f"{path}: {prefix}{what}", diff=diff, result=result)
