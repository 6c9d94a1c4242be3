"""`blockinfile`: keep a block of lines between two marker lines, as Ansible's module.

One round trip, for the reason lineinfile gives: the edit depends on the old content, so it
runs on the host, in awk. The block travels on stdin (it is file content) and awk reads it
as its first input (`-`), then the file; `mr_put` installs the result when it differs.
Markers and insert patterns reach awk through the environment, quoted for sh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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

# First input: the block (one record per line), second: the file. The last begin and the
# last end marker delimit the old block (as in Ansible); it is cut out and the new block goes
# where it was, or where insertafter/insertbefore say, or at the end.
AWK = r"""
function plain(s) { sub(/\r$/, "", s); return s }
BEGIN {
  mb = ENVIRON["MR_BEGIN"]; me = ENVIRON["MR_END"]; ins = ENVIRON["MR_INS"]
  insmode = ENVIRON["MR_INSMODE"]; absent = ENVIRON["MR_STATE"] == "absent"
  noeol = ENVIRON["MR_NOEOL"] == 1; nb = 0; n = 0
  pre = ENVIRON["MR_PREPEND"] == 1; post = ENVIRON["MR_APPEND"] == 1
}
FILENAME == "-" { B[++nb] = $0; next }
{ L[++n] = $0 }
END {
  if (ENVIRON["MR_EMPTY"] == 1) nb = 0
  n0 = 0; n1 = 0
  for (i = 1; i <= n; i++) { c = plain(L[i]); if (c == mb) n0 = i; if (c == me) n1 = i }
  if (n0 && n1) {
    lo = n0 < n1 ? n0 : n1; hi = n0 < n1 ? n1 : n0
    for (i = lo; i <= hi; i++) del[i] = 1
    pos = lo
  } else {
    pos = 0
    if (insmode == "after" || insmode == "before") {
      for (i = 1; i <= n; i++) if (L[i] ~ ins) pos = i
      if (pos == 0) pos = n + 1
      else if (insmode == "after") pos++
    } else if (insmode == "bof") pos = 1
    else pos = n + 1
  }
  m = 0
  for (i = 1; i <= n + 1; i++) {
    if (i == pos && !absent) {
      # prepend_newline/append_newline, as Ansible's: a blank line only between the block
      # and a neighbour line that is not already blank (none at the file's start or end)
      if (pre && m > 0 && O[m] != "") { O[++m] = ""; E[m] = 1 }
      if (nb > 0) {
        O[++m] = mb; E[m] = 1
        for (j = 1; j <= nb; j++) { O[++m] = B[j]; E[m] = 1 }
        O[++m] = me; E[m] = 1
      }
      for (k = i; k <= n && del[k]; k++) ;
      if (post && k <= n && L[k] != "") { O[++m] = ""; E[m] = 1 }
    }
    if (i > n || del[i]) continue
    O[++m] = L[i]; E[m] = (i < n || !noeol)
  }
  for (j = 1; j <= m; j++) { printf "%s", O[j]; if (j < m || E[j]) printf "\n" }
}
"""


class BlockinfileModule(Module):
    """Insert, update or remove a block of lines surrounded by marker lines."""

    name: ClassVar[str] = "blockinfile"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "block": {"type": "string", "default": ""},
            "marker": {"type": "string", "default": "# {mark} ANSIBLE MANAGED BLOCK"},
            "marker_begin": {"type": "string", "default": "BEGIN"},
            "marker_end": {"type": "string", "default": "END"},
            "state": {"enum": ["present", "absent"], "default": "present"},
            "insertafter": {"type": "string"},
            "insertbefore": {"type": "string"},
            "create": {"type": "boolean", "default": False},
            "backup": {"type": "boolean", "default": False},
            "validate": {"type": "string"},
            "prepend_newline": {"type": "boolean", "default": False},
            "append_newline": {"type": "boolean", "default": False},
            **files_sh.ATTR_PROPS,
        },
        "required": ["path"],
        "additionalProperties": False,
        # Ansible's names for the same arguments
        "x-aliases": {"dest": "path", "destfile": "path", "name": "path", "content": "block"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """awk rewrites a copy of the file with the block (from stdin) in place."""
        path = args["path"]
        marker = args.get("marker", "# {mark} ANSIBLE MANAGED BLOCK")
        begin = marker.replace("{mark}", args.get("marker_begin", "BEGIN"))
        end = marker.replace("{mark}", args.get("marker_end", "END"))
        if begin == end:
            raise InputError("blockinfile: marker needs {mark}: begin and end markers are equal")
        if "\n" in begin or "\n" in end:
            raise InputError("blockinfile: a marker cannot hold a newline")
        if "insertafter" in args and "insertbefore" in args:
            raise InputError("blockinfile: insertafter and insertbefore exclude each other")
        insmode, ins = "eof", ""
        if "insertafter" in args and args["insertafter"] != "EOF":
            insmode, ins = "after", files_sh.ere(args["insertafter"], "insertafter")
        elif "insertbefore" in args:
            if args["insertbefore"] == "BOF":
                insmode = "bof"
            else:
                insmode, ins = "before", files_sh.ere(args["insertbefore"], "insertbefore")
        block = str(args.get("block") or "")
        env = {
            "MR_BEGIN": begin,
            "MR_END": end,
            "MR_INS": ins,
            "MR_INSMODE": insmode,
            "MR_STATE": args.get("state", "present"),
            # awk cannot tell an empty block (remove it) from one empty line: say which.
            "MR_EMPTY": int(block == ""),
            "MR_PREPEND": int(bool(args.get("prepend_newline"))),
            "MR_APPEND": int(bool(args.get("append_newline"))),
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
            f"export {' '.join(env)} MR_NOEOL\n",
            "src=$path\n"
            'if [ -d "$path" ]; then mr_fail "$path is a directory"; fi\n'
            'if [ ! -e "$path" ]; then\n'
            '  if [ "$MR_STATE" = absent ] || [ "$MR_EMPTY" = 1 ]; then\n'
            "    cat >/dev/null; mr_say missing 1; exit 0; fi\n"
            '  [ "$create" = 1 ] || mr_fail "$path does not exist (set create to make it)"\n'
            '  if [ ! -d "$dir" ] && [ "$CHECK" = 0 ]; then\n'
            '    mkdir -p -- "$dir" || mr_fail "cannot create $dir"; fi\n'
            "  src=/dev/null\n"
            "fi\n"
            'mr_noeol "$src"; MR_NOEOL=$mr_noeol\n'
            'mr_tmp_near "$dir"\n',
            f'awk {quote(AWK)} - "$src" >"$mr_t1" || mr_fail "awk failed on $path"\n',
            'mr_put "$mr_t1" "$path"\n',
        ]
        return RemoteStep("".join(script), stdin=block.encode())

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the file's content or attributes differed; `msg` as Ansible's."""
        outcome = files_sh.edit_outcome(
            args["path"],
            ctx,
            output,
            module="blockinfile",
            absent=args.get("state") == "absent",
            missing="no block to remove",
            removed="block removed",
            added="block inserted or updated",
        )
        if not outcome.changed:
            return outcome
        report, _ = files_sh.parse_report(output.stdout)
        # Ansible's words, which playbooks and ansible-core's tests read from the result
        content = report.get("content") == "1"
        msg = ""
        if content:
            msg = (
                "File created"
                if report.get("exists") != "1"
                else ("Block removed" if args.get("state") == "absent" else "Block inserted")
            )
        if report.get("attrs") == "1":
            attrs = "ownership, perms or SE linux context changed"
            msg = f"{msg} and {attrs}" if msg else attrs
        return replace(outcome, msg=msg or outcome.msg)
