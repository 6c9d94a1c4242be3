"""`command` and `shell`: run a program on the host, as Ansible's modules of the same names.

One remote command: the script changes directory (`chdir`), checks `creates`/`removes`, then
runs the program in a subshell and appends one marker line to stderr with the start and end
times and the exit code; `interpret()` strips that line again. `command` splits its string
with shlex and quotes every word, then `exec`s it: no pipes, redirections, variables or globs
reach a shell. `shell` hands its string to `executable -c` (default /bin/sh) on purpose.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

SKIP = "__machineroom_skip__"
WOULD_RUN = "__machineroom_would_run__"
END = "__machineroom_end__"
_END_RE = re.compile(rf"\n{END} (\S*) (\S*) (-?\d+)\n\Z")

_COMMON: dict[str, Any] = {
    "cmd": {"type": "string"},
    "chdir": {"type": "string"},
    "creates": {"type": "string"},
    "removes": {"type": "string"},
    "stdin": {"type": "string"},
    "stdin_add_newline": {"type": "boolean", "default": True},
    "strip_empty_ends": {"type": "boolean", "default": True},
}

# Ansible's command expands $VAR, ${VAR} (when set; else left as written) and then a
# leading ~ or ~user in each word, on the host, as Python's os.path.expandvars/expanduser.
EXPAND_AWK = r"""
BEGIN {
  s = ENVIRON["MR_W"]; out = ""
  while (match(s, /\$([A-Za-z0-9_]+|\{[^}]*\})/)) {
    name = substr(s, RSTART + 1, RLENGTH - 1); whole = substr(s, RSTART, RLENGTH)
    if (name ~ /^\{/) name = substr(name, 2, length(name) - 2)
    out = out substr(s, 1, RSTART - 1)
    out = out ((name != "MR_W" && name in ENVIRON) ? ENVIRON[name] : whole)
    s = substr(s, RSTART + RLENGTH)
  }
  s = out s
  if (s ~ /^~/) {
    i = index(s, "/"); head = i ? substr(s, 1, i - 1) : s; rest = i ? substr(s, i) : ""
    user = substr(head, 2); home = ""
    if (user == "") home = ENVIRON["HOME"]
    else if (user ~ /^[A-Za-z0-9._][A-Za-z0-9._-]*$/) {
      cmd = "getent passwd " user
      while ((cmd | getline line) > 0) { split(line, f, ":"); home = f[6] }
      close(cmd)
    }
    if (home != "") { sub(/\/+$/, "", home); s = (home == "" ? "/" : home) rest }
  }
  printf "%s", s
}
"""
_NEEDS_EXPANSION = re.compile(r"\$(\w|\{)|^~")


def argv_script(words: list[str], expand: bool) -> str:
    """sh that `exec`s the quoted words, each expanded as Ansible's command does (unless
    expand_argument_vars is off); a word's value only ever reaches awk's ENVIRON."""
    if not expand or not any(_NEEDS_EXPANSION.search(w) for w in words):
        return "exec " + " ".join(quote(w) for w in words)
    lines = ["set --"]
    for word in words:
        if _NEEDS_EXPANSION.search(word):
            lines.append(
                f"__mr_w=$(MR_W={quote(word)} awk {quote(EXPAND_AWK)}; printf x); "
                'set -- "$@" "${__mr_w%x}"'
            )
        else:
            lines.append(f'set -- "$@" {quote(word)}')
    lines.append('exec "$@"')
    return "\n".join(lines)


def guard_script(args: Mapping[str, Any], check: bool) -> str:
    """sh lines for chdir, creates and removes; each user value quoted.

    `creates`/`removes` are globs as in Ansible: the value sits in a variable expanded
    unquoted with IFS empty, which performs pathname expansion only (no splitting, no
    command substitution), so a hostile value can match files but never run anything.
    """
    lines = []
    if args.get("chdir"):
        lines.append(f"cd -- {quote(args['chdir'])} || exit 1")
    for key, negate in (("creates", ""), ("removes", "!")):
        if not args.get(key):
            continue
        lines.append(
            f"__mr_hit=; __mr_p={quote(args[key])}; __mr_ifs=$IFS; IFS=; "
            f'for __mr_f in $__mr_p; do if [ -e "$__mr_f" ] || [ -L "$__mr_f" ]; '
            f"then __mr_hit=1; break; fi; done; IFS=$__mr_ifs; "
            f'if {negate} [ -n "$__mr_hit" ]; then echo {SKIP} {key}; exit 0; fi'
        )
    if check:
        # creates/removes did not decide: report that the command would run, run nothing.
        lines.append(f"echo {WOULD_RUN}; exit 0")
    return "\n".join(lines)


def run_script(argv_line: str) -> str:
    """Run `argv_line` in a subshell, then append the timing marker to stderr."""
    return (
        "__mr_s=$(date +%s.%N 2>/dev/null)\n"
        f"({argv_line})\n"
        "__mr_rc=$?\n"
        f'printf \'\\n{END} %s %s %s\\n\' "$__mr_s" "$(date +%s.%N 2>/dev/null)" '
        '"$__mr_rc" >&2\n'
        'exit "$__mr_rc"'
    )


def stdin_bytes(args: Mapping[str, Any]) -> bytes | None:
    """The bytes for the program's stdin (Ansible adds a newline unless told not to)."""
    data = args.get("stdin")
    if data is None:
        return None
    if args.get("stdin_add_newline", True):
        data += "\n"
    return str(data).encode()


def _stamp(value: str) -> tuple[str, float | None]:
    """`date +%s.%N` output -> Ansible's "YYYY-MM-DD HH:MM:SS.ffffff" and epoch seconds."""
    try:
        seconds = float(value)
    except ValueError:
        return "", None
    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S.%f"), seconds


def _delta(seconds: float) -> str:
    hours, rest = divmod(max(seconds, 0.0), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:09.6f}"


def command_outcome(
    args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput, shown: Any
) -> Outcome:
    """The Outcome of `command`/`shell`: skipped-like ok, would-run, or the program's result."""
    first = output.stdout.split("\n", 1)[0]
    if output.exit_code == 0 and first.startswith(SKIP + " "):
        key = first.split(" ", 1)[1]
        path = args[key]
        why = "exists" if key == "creates" else "does not exist"
        return Outcome(
            "ok",
            msg=f"skipped, since {path} {why}",
            result={"cmd": shown, "rc": 0, "stdout": "", "stderr": "", "skipped": True},
        )
    if output.exit_code == 0 and first == WOULD_RUN:
        return Outcome(
            "changed",
            msg="command would have run if not in check mode",
            result={"cmd": shown, "rc": 0, "stdout": "", "stderr": ""},
        )
    stderr = output.stderr
    start = end = delta = ""
    match = _END_RE.search(stderr)
    if match:
        stderr = stderr[: match.start()]
        start, t0 = _stamp(match.group(1))
        end, t1 = _stamp(match.group(2))
        if t0 is not None and t1 is not None:
            delta = _delta(t1 - t0)
    stdout = output.stdout
    if args.get("strip_empty_ends", True):
        stdout, stderr = stdout.rstrip("\r\n"), stderr.rstrip("\r\n")
    result = {
        "cmd": shown,
        "rc": output.exit_code,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_lines": stdout.splitlines(),
        "stderr_lines": stderr.splitlines(),
        "start": start,
        "end": end,
        "delta": delta,
    }
    msg = ""
    if output.stdout_not_kept:
        # said in the result, so that a registered output is never taken for the whole of it
        result["stdout_bytes_not_kept"] = output.stdout_not_kept
        msg = f"stdout cut: {output.stdout_not_kept} bytes in its middle not kept"
    if output.exit_code != 0:
        msg = "non-zero return code" if match else (stderr.strip() or "command failed")
        return Outcome("failed", msg=msg, result=result)
    return Outcome("changed", msg=msg, result=result)


def _skipped_in_check(shown: Any) -> Outcome:
    return Outcome(
        "ok",
        msg="skipped in check mode",
        result={"cmd": shown, "rc": 0, "stdout": "", "stderr": "", "skipped": True},
    )


def _warn_executable(args: Mapping[str, Any], outcome: Outcome) -> Outcome:
    """Ansible's warning for `executable` given to `command`, which ignores it."""
    if not args.get("executable"):
        return outcome
    warning = (
        "As of Ansible 2.4, the parameter 'executable' is no longer supported with the "
        f"'command' module. Not using '{args['executable']}'."
    )
    result = dict(outcome.result)
    result["warnings"] = [*result.get("warnings", []), warning]
    return replace(outcome, result=result)


class CommandModule(Module):
    """`command`: run a program with its arguments, without a shell.

    `cmd` (free form) is split like a shell would split it (shlex), or `argv` gives the
    words as a list; each word is quoted and the program is `exec`ed, so `;`, `$()`, `>`, `*`
    are passed to it literally. Reports changed whenever the program ran (as Ansible does);
    use `creates`/`removes` or `changed_when` for idempotence. In check mode nothing runs:
    with creates/removes the step only checks them and reports "would run"; without them
    there is no remote command at all.
    """

    name: ClassVar[str] = "command"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    free_form: ClassVar[str | None] = "cmd"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            **_COMMON,
            "argv": {"type": "array", "items": {"type": "string"}},
            "expand_argument_vars": {"type": "boolean", "default": True},
            # Ignored with a warning, as in Ansible since 2.4 (shell takes it).
            "executable": {"type": "string"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["cmd"]}, {"required": ["argv"]}],
    }

    def argv(self, args: Mapping[str, Any]) -> list[str]:
        """The program and its arguments."""
        if args.get("argv") is not None:
            return [str(word) for word in args["argv"]]
        return shlex.split(str(args.get("cmd", "")))

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Guards, then `exec` of the quoted words; None in check mode without guards."""
        if ctx.check and not (args.get("creates") or args.get("removes")):
            return None
        words = self.argv(args)
        if not words:
            raise ValueError("command: no command given")
        guards = guard_script(args, ctx.check)
        body = run_script(argv_script(words, args.get("expand_argument_vars", True)))
        script = f"{guards}\n{body}" if guards else body
        return RemoteStep(script, stdin=stdin_bytes(args))

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode without creates/removes: nothing to ask the host."""
        return _warn_executable(args, _skipped_in_check(self.argv(args)))

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """rc, stdout, stderr (and their lines), start/end/delta; failed when rc != 0."""
        return _warn_executable(args, command_outcome(args, ctx, output, self.argv(args)))


class ShellModule(Module):
    """`shell`: run a command line through a shell (`executable -c`, default /bin/sh).

    The line is the user's shell code by design; it travels as one quoted argument, so the
    surrounding script never interprets it. Same results, guards and check mode as `command`.
    """

    name: ClassVar[str] = "shell"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    free_form: ClassVar[str | None] = "cmd"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {**_COMMON, "executable": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Guards, then `exec EXECUTABLE -c CMD`; None in check mode without guards."""
        if ctx.check and not (args.get("creates") or args.get("removes")):
            return None
        executable = args.get("executable") or "/bin/sh"
        guards = guard_script(args, ctx.check)
        body = run_script(f"exec {quote(executable)} -c {quote(args['cmd'])}")
        script = f"{guards}\n{body}" if guards else body
        return RemoteStep(script, stdin=stdin_bytes(args))

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode without creates/removes: nothing to ask the host."""
        return _skipped_in_check(args["cmd"])

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """rc, stdout, stderr (and their lines), start/end/delta; failed when rc != 0."""
        return command_outcome(args, ctx, output, args["cmd"])
