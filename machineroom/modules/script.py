"""`script`: run a local script on the host, as Ansible's `ansible.builtin.script`.

The script is found as Ansible finds it (the role's `files/`, the role, the playbook's
`files/`, the playbook's folder; or an absolute path) and travels on the remote command's
stdin into a private temporary folder (`mktemp -d`, mode 0700), where it is made executable,
run and removed again: one round trip, no Python on the host. As in Ansible, the words after
the script's path are shell code (the script's arguments, with the shell's quoting and
expansion); `executable` names the program that runs the script (`python3`, `/bin/bash -e`).

`creates`/`removes` test a path (no globs, as Ansible's `test -e`) before anything runs.
Check mode runs nothing: with creates/removes it reports that the script would run (when
they do not skip it), without them the task is skipped, as in Ansible.
"""

from __future__ import annotations

import io
import posixpath
import re
import shlex
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
from machineroom.modules.files_sh import FAIL_MARKER
from machineroom.modules.raw import run_result

SKIP = "__machineroom_skip__"
WOULD_RUN = "__machineroom_would_run__"
END = "__machineroom_script_end__"
_END_RE = re.compile(rf"\n?{END} (-?\d+)\n\Z")


def split_command(text: str) -> tuple[str, str]:
    """`path/to/x.sh --flag "a b"` -> ("path/to/x.sh", '--flag "a b"'): the script's path
    (shell-unquoted, so a path with spaces may be quoted) and the rest as written."""
    text = text.strip()
    stream = io.StringIO(text)
    lexer = shlex.shlex(stream, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    first = lexer.get_token()
    if not first:
        raise InputError("script: no script given", expected="a local script's path")
    rest = stream.read()
    return first, rest.strip()


class ScriptModule(Module):
    """`script`: free form (or `cmd`): the local script and its arguments; `creates`,
    `removes`, `chdir`, `executable`, `decrypt`."""

    name: ClassVar[str] = "script"
    free_form: ClassVar[str | None] = "cmd"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "minLength": 1},
            "creates": {"type": "string"},
            "removes": {"type": "string"},
            "chdir": {"type": "string"},
            "executable": {"type": "string"},
            "decrypt": {"type": "boolean", "default": True},
        },
        "required": ["cmd"],
        "additionalProperties": False,
        "x-aliases": {"_raw_params": "cmd"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Guards, then: script from stdin into a temp folder, run, removed; None (skipped)
        in check mode without creates/removes."""
        chdir = str(args.get("chdir") or "")
        if chdir and not chdir.startswith("/"):
            raise InputError(
                f"script: chdir {chdir} must be an absolute path", expected="a path from /"
            )
        source, rest = split_command(str(args["cmd"]))
        content = ctx.read_file(source)  # InputError naming the folders searched
        guarded = bool(args.get("creates") or args.get("removes"))
        if ctx.check and not guarded:
            return None
        lines = [f"FAIL_MARKER={quote(FAIL_MARKER)}"]
        lines.append('mr_fail() { printf "%s%s\\n" "$FAIL_MARKER" "$*" >&2; exit 1; }')
        for key, negate in (("creates", ""), ("removes", "!")):
            if args.get(key):
                lines.append(
                    f"if {negate} [ -e {quote(args[key])} ]; then cat >/dev/null; "
                    f"echo {SKIP} {key}; exit 0; fi"
                )
        if ctx.check:
            lines.append(f"cat >/dev/null; echo {WOULD_RUN}; exit 0")
        name = posixpath.basename(source) or "script"
        lines += [
            "mr_d=$(mktemp -d) || mr_fail 'cannot create a temporary folder'",
            "trap 'rm -rf -- \"$mr_d\"' EXIT",
            f'mr_s="$mr_d"/{quote(name)}',
            'cat > "$mr_s" || mr_fail "cannot write the script to $mr_s"',
            'chmod 0700 "$mr_s" || mr_fail "cannot make $mr_s executable"',
        ]
        if chdir:
            lines.append(f"cd -- {quote(chdir)} || mr_fail {quote('cannot cd to ' + chdir)}")
        runner = " ".join(quote(w) for w in shlex.split(str(args.get("executable") or "")))
        command = " ".join(part for part in (runner, '"$mr_s"', rest) if part)
        lines += [
            f"( {command}\n) </dev/null",
            "mr_rc=$?",
            f"printf '\\n{END} %s\\n' \"$mr_rc\" >&2",
            'exit "$mr_rc"',
        ]
        return RemoteStep("\n".join(lines) + "\n", stdin=content)

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode without creates/removes: skipped, as Ansible skips it."""
        return Outcome(
            "ok", msg="Check mode is not supported for this task.", result={"skipped": True}
        )

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """rc, stdout, stderr (and lines); always changed when it ran; failed when rc != 0."""
        first = output.stdout.split("\n", 1)[0]
        if output.exit_code == 0 and first.startswith(SKIP + " "):
            key = first.split(" ", 1)[1]
            why = "exists" if key == "creates" else "does not exist"
            msg = f"{args[key]} {why}, matching {key} option"
            return Outcome("ok", msg=msg, result={"skipped": True})
        if output.exit_code == 0 and first == WOULD_RUN:
            return Outcome("changed", msg="the script would run (check mode)")
        match = _END_RE.search(output.stderr)
        if match is None:  # our own preparation failed, or the connection cut the marker
            at = output.stderr.rfind(FAIL_MARKER)
            msg = output.stderr[at + len(FAIL_MARKER) :].strip() if at >= 0 else ""
            return Outcome(
                "failed",
                msg=msg or output.stderr.strip() or f"script: exit code {output.exit_code}",
                result=run_result(output),
            )
        stderr = output.stderr[: match.start()]
        result = run_result(CommandOutput(output.exit_code, output.stdout, stderr))
        if output.exit_code != 0:
            return Outcome("failed", msg="non-zero return code", result=result)
        return Outcome("changed", result=result)
