"""`lineinfile`: make sure one line is in a file (or is not), as Ansible's module.

One round trip. The new content depends on the old, which only the host has: shipping the
old content here first would cost a second round trip per task (and the whole file over the
wire twice). So the edit itself runs on the host, in awk (POSIX; mawk, gawk and busybox all
do), and `mr_put` installs the result when it differs. The price: `regexp`, `insertafter` and
`insertbefore` are matched as POSIX ERE; `files_sh.ere` translates Python's common escapes and
refuses what ERE cannot express. With `backrefs`, sed (whose `s` keeps groups \\1..\\9)
expands `line` against the last matching line. Every user value reaches awk through the
environment (ENVIRON does no escape processing, unlike `awk -v`), quoted for sh.
"""

from __future__ import annotations

import re
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

# Reads every line, decides in END (the last match wins, as in Ansible), prints the result.
# E[i] says whether output line i ends in a newline: a file without a final newline keeps it
# that way unless a line is added after its last line.
AWK = r"""
function plain(s) { sub(/\r$/, "", s); return s }
function hit(s) {
  if (hasre) return s ~ re
  if (hasss) return index(s, ss) > 0
  return s == line
}
BEGIN {
  line = ENVIRON["MR_LINE"]; re = ENVIRON["MR_RE"]; ss = ENVIRON["MR_SS"]
  hasre = ENVIRON["MR_HAS_RE"] == 1; hasss = ENVIRON["MR_HAS_SS"] == 1
  ins = ENVIRON["MR_INS"]; insmode = ENVIRON["MR_INSMODE"]; first = ENVIRON["MR_FIRST"] == 1
  absent = ENVIRON["MR_STATE"] == "absent"; backrefs = ENVIRON["MR_BACKREFS"] == 1
  noeol = ENVIRON["MR_NOEOL"] == 1
}
{ L[NR] = $0 }
END {
  n = NR; found = 0; at = 0; exact = 0
  for (i = 1; i <= n; i++) {
    c = plain(L[i])
    if (hit(c)) { found = i; if (absent) { del[i] = 1; ndel++ } }
    else if ((insmode == "after" || insmode == "before") && !(first && at) && c ~ ins)
      at = (insmode == "after") ? i + 1 : i
  }
  pos = 0; rep = 0
  if (!absent) {
    if (!found && (hasre || hasss))
      for (i = 1; i <= n; i++) if (plain(L[i]) == line) { found = i; exact = 1 }
    if (found) {
      newl = backrefs ? ENVIRON["MR_BLINE"] : line
      if (!exact && L[found] != newl) rep = found
    }
    else if (backrefs) { }
    else if (insmode == "bof") pos = 1
    else if (insmode == "eof" || at == 0) pos = n + 1
    else if (insmode == "after") {
      if (at > n) { if (plain(L[n]) != line) pos = n + 1 }
      else if (plain(L[at]) != line) pos = at
    }
    else pos = at
  }
  # asked only whether the file would change: an edit always changes it, nothing else does
  if (ENVIRON["MR_DECIDE"] == 1) exit (pos || rep || ndel) ? 3 : 0
  m = 0
  for (i = 1; i <= n + 1; i++) {
    if (i == pos) { O[++m] = line; E[m] = 1 }
    if (i > n || del[i]) continue
    if (i == rep) { O[++m] = newl; E[m] = 1 }
    else { O[++m] = L[i]; E[m] = (i < n || !noeol) }
  }
  for (j = 1; j <= m; j++) { printf "%s", O[j]; if (j < m || E[j]) printf "\n" }
}
"""

# The line number of the last line the regexp matches (for backrefs).
AWK_LAST = r"""
{ c = $0; sub(/\r$/, "", c); if (c ~ ENVIRON["MR_RE"]) n = NR }
END { print n + 0 }
"""


def sed_template(template: str) -> str:
    """`line` with Python's \\1 / \\g<1> group references in sed's replacement syntax."""
    if "\n" in template or "\x01" in template or "\x02" in template:
        raise InputError("lineinfile: with backrefs, line cannot hold a newline")
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c == "\\" and i + 1 < len(template):
            n = template[i + 1]
            group = re.match(r"g<(\d)>", template[i + 1 :])
            if n.isdigit():
                out.append("\\" + n)
                i += 2
            elif group:
                out.append("\\" + group.group(1))
                i += 1 + len(group.group(0))
            elif n == "\\":
                out.append("\\\\")
                i += 2
            elif n == "t":
                out.append("\t")
                i += 2
            else:
                out.append("\\\\")
                i += 1
            continue
        out.append("\\&" if c == "&" else c)
        i += 1
    return "".join(out)


# A first awk only says whether the file would change (exit 3: mr_put needs no cmp) or not
# (0): then dest is left alone, no temp file; whether it ends in a newline matters only to
# the edit.
EDIT = r"""mr_new= mr_differs=
if [ "$src" != /dev/null ]; then
  MR_DECIDE=1 awk "$mr_awk" "$src"
  case $? in 0) mr_new=$path ;; 3) mr_differs=1 ;; *) mr_fail "awk failed on $path" ;; esac
fi
if [ -z "$mr_new" ]; then
  mr_noeol "$src"; MR_NOEOL=$mr_noeol
  mr_tmp_near "$dir"; mr_new=$mr_t1
  awk "$mr_awk" "$src" >"$mr_t1" || mr_fail "awk failed on $path"
fi
mr_put "$mr_new" "$path" "$mr_differs"
"""


class LineinfileModule(Module):
    """Ensure a line is present in (or absent from) a text file on the host."""

    name: ClassVar[str] = "lineinfile"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "line": {"type": "string"},
            "regexp": {"type": "string"},
            "search_string": {"type": "string"},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "insertafter": {"type": "string"},
            "insertbefore": {"type": "string"},
            "firstmatch": {"type": "boolean", "default": False},
            "backrefs": {"type": "boolean", "default": False},
            "create": {"type": "boolean", "default": False},
            "backup": {"type": "boolean", "default": False},
            "validate": {"type": "string"},
            **files_sh.ATTR_PROPS,
        },
        "required": ["path"],
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {"dest": "path", "destfile": "path", "name": "path", "regex": "regexp"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """awk edits a copy of the file on the host; mr_put installs it when it differs."""
        path = args["path"]
        state = args.get("state", "present")
        line = args.get("line")
        if state == "present" and line is None:
            raise InputError("lineinfile: state=present needs line")
        if (
            state == "absent"
            and line is None
            and not args.get("regexp")
            and args.get("search_string") is None
        ):
            raise InputError("lineinfile: state=absent needs regexp, search_string or line")
        if args.get("regexp") is not None and args.get("search_string") is not None:
            raise InputError("lineinfile: regexp and search_string exclude each other")
        if "insertafter" in args and "insertbefore" in args:
            raise InputError("lineinfile: insertafter and insertbefore exclude each other")
        backrefs = bool(args.get("backrefs")) and state == "present"
        if backrefs and not args.get("regexp"):
            raise InputError("lineinfile: backrefs needs regexp")
        regexp = files_sh.ere(args["regexp"], "regexp") if args.get("regexp") else ""
        insmode, ins = "", ""
        if "insertafter" in args:
            value = args["insertafter"]
            insmode, ins = ("eof", "") if value == "EOF" else ("after", value)
            if value == "BOF":
                insmode, ins = "bof", ""
        elif "insertbefore" in args:
            value = args["insertbefore"]
            insmode, ins = ("bof", "") if value == "BOF" else ("before", value)
        if insmode in ("after", "before"):
            ins = files_sh.ere(ins, "insert" + insmode)
        env = {
            "MR_STATE": state,
            "MR_LINE": line or "",
            "MR_RE": regexp,
            "MR_HAS_RE": int(bool(regexp)),
            "MR_SS": args.get("search_string") or "",
            "MR_HAS_SS": int(args.get("search_string") is not None and not regexp),
            "MR_INS": ins,
            "MR_INSMODE": insmode,
            "MR_FIRST": int(bool(args.get("firstmatch"))),
            "MR_BACKREFS": int(backrefs),
            "MR_SED": (
                f"s\x01{regexp}\x01\x02{sed_template(line or '')}\x02\x01" if backrefs else ""
            ),
        }
        dir_ = files_sh.folder(path)
        script = [
            files_sh.library("put", "tmp", "noeol"),
            files_sh.common_vars(ctx.check, ctx.diff, path),
            files_sh.attr_vars(args),
            files_sh.validate_vars(args.get("validate")),
            f"backup={int(bool(args.get('backup')))} create={int(bool(args.get('create')))}\n",
            f"path={quote(path)} dir={quote(dir_)}\n",
            *(f"{k}={quote(v)}\n" for k, v in env.items()),
            f"export {' '.join(env)} MR_NOEOL MR_BLINE\n",
            "MR_BLINE= src=$path\n",
            'if [ -d "$path" ]; then mr_fail "$path is a directory"; fi\n'
            'if [ ! -e "$path" ]; then\n'
            '  if [ "$MR_STATE" = absent ]; then mr_say missing 1; exit 0; fi\n'
            '  [ "$create" = 1 ] || mr_fail "$path does not exist (set create to make it)"\n'
            '  if [ ! -d "$dir" ] && [ "$CHECK" = 0 ]; then\n'
            '    mkdir -p -- "$dir" || mr_fail "cannot create $dir"; fi\n'
            "  src=/dev/null\n"
            "fi\n",
        ]
        if backrefs:
            script.append(
                f'n=$(awk {quote(AWK_LAST)} "$src") || mr_fail "awk failed"\n'
                'if [ "$n" -gt 0 ]; then\n'
                '  MR_BLINE=$(sed -n "${n}p" -- "$src" | sed -E -e "$MR_SED" '
                "| awk -F '\\002' 'NR == 1 { print $2 }')\n"
                "fi\n"
            )
        script += [
            f"mr_awk={quote(AWK)}\n",
            EDIT,
        ]
        return RemoteStep("".join(script))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the file's content or attributes differed."""
        return files_sh.edit_outcome(
            args["path"],
            ctx,
            output,
            module="lineinfile",
            absent=args.get("state") == "absent",
            missing="nothing to remove",
            removed="line removed",
            added="line added or replaced",
        )
