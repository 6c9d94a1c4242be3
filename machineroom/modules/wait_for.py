"""`wait_for`: wait on the host until a port opens or closes, or a file appears or goes.

The polling loop runs on the target, in sh, in one remote command: a port is probed with
bash's /dev/tcp (under `timeout` when present), else `nc -z`; a path with `test -e` and, with
`search_regex`, `grep -E`. The step's own timeout is the module's plus a margin, so the
connection never cuts the loop off before it can report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

MARK = "__mr__"
MARGIN = 15.0  # seconds on top of `timeout` for the connection's own deadline

# sh: __mr_probe -> 0 when a TCP connection to $__mr_h:$__mr_p succeeds.
_PROBE = """\
if command -v bash >/dev/null 2>&1; then
  if command -v timeout >/dev/null 2>&1; then
    __mr_probe() {
      timeout "$__mr_ct" bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$__mr_h" "$__mr_p" 2>/dev/null
    }
  else
    __mr_probe() { bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$__mr_h" "$__mr_p" 2>/dev/null; }
  fi
elif command -v nc >/dev/null 2>&1; then
  __mr_probe() { nc -z -w "$__mr_ct" "$__mr_h" "$__mr_p" >/dev/null 2>&1; }
else
  echo 'wait_for: neither bash nor nc on the host to probe a port' >&2; exit 2
fi"""


class WaitForModule(Module):
    """`wait_for`: host (default 127.0.0.1, seen from the target), port, path, state
    (started/stopped for a port, present/absent for a path; started = present), search_regex
    (path only), timeout (300 s), delay (0), sleep (1), connect_timeout (5), msg.

    Never changes anything: ok when the condition held within `timeout` (result `elapsed`),
    failed otherwise. Runs in check mode too (waiting changes nothing).
    """

    name: ClassVar[str] = "wait_for"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "host": {"type": "string", "minLength": 1, "default": "127.0.0.1"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "path": {"type": "string", "minLength": 1},
            "state": {"enum": ["started", "stopped", "present", "absent"], "default": "started"},
            "search_regex": {"type": "string"},
            "timeout": {"type": "number", "minimum": 0, "default": 300},
            "delay": {"type": "number", "minimum": 0, "default": 0},
            "sleep": {"type": "number", "minimum": 0, "default": 1},
            "connect_timeout": {"type": "number", "minimum": 1, "default": 5},
            "msg": {"type": "string"},
        },
        "additionalProperties": False,
        "oneOf": [
            {"required": ["port"], "not": {"required": ["path"]}},
            {"required": ["path"], "not": {"required": ["port"]}},
            {"not": {"anyOf": [{"required": ["port"]}, {"required": ["path"]}]}},
        ],
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """A loop until the condition holds or `timeout` seconds pass; prints the elapsed."""
        timeout = float(args.get("timeout", 300))
        state = args.get("state", "started")
        lines = [
            f"__mr_to={int(timeout)}; __mr_sl={quote(args.get('sleep', 1))}; "
            f"__mr_ct={int(args.get('connect_timeout', 5))}",
            f"sleep {quote(args.get('delay', 0))}",
            "__mr_t0=$(date +%s)",
        ]
        if args.get("port") is not None:
            lines += [
                f"__mr_h={quote(args.get('host') or '127.0.0.1')}; __mr_p={int(args['port'])}",
                _PROBE,
            ]
            cond = "! __mr_probe" if state in ("stopped", "absent") else "__mr_probe"
        elif args.get("path") is not None:
            lines.append(f"__mr_f={quote(args['path'])}")
            if state == "absent" or state == "stopped":
                cond = '! [ -e "$__mr_f" ]'
            elif args.get("search_regex"):
                cond = f'grep -Eq -- {quote(args["search_regex"])} "$__mr_f" 2>/dev/null'
            else:
                cond = '[ -e "$__mr_f" ]'
        else:
            # Neither port nor path: Ansible then just sleeps `timeout` seconds.
            lines.append(f'sleep "$__mr_to"; echo {MARK} ok "$(( $(date +%s) - __mr_t0 ))"')
            lines.append("exit 0")
            return RemoteStep("\n".join(lines), timeout=timeout + MARGIN)
        lines.append(
            "while :; do\n"
            f'  if {cond}; then echo {MARK} ok "$(( $(date +%s) - __mr_t0 ))"; exit 0; fi\n'
            '  [ "$(( $(date +%s) - __mr_t0 ))" -ge "$__mr_to" ] && break\n'
            '  sleep "$__mr_sl"\n'
            "done\n"
            f'echo {MARK} timeout "$(( $(date +%s) - __mr_t0 ))"; exit 1'
        )
        return RemoteStep("\n".join(lines), timeout=timeout + MARGIN)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """ok with `elapsed` when the condition held; failed on timeout or error."""
        status, elapsed = "", 0
        for line in output.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == MARK:
                status, elapsed = parts[1], int(parts[2])
        state = args.get("state", "started")
        result: dict[str, Any] = {"elapsed": elapsed, "state": state}
        target = ""
        if args.get("port") is not None:
            result["port"] = args["port"]
            target = f"{args.get('host') or '127.0.0.1'}:{args['port']}"
        if args.get("path") is not None:
            result["path"] = args["path"]
            target = args["path"]
        if status == "ok" and output.exit_code == 0:
            return Outcome("ok", msg=f"{target} {state} after {elapsed}s".strip(), result=result)
        if status == "timeout":
            msg = args.get("msg") or (
                f"Timeout when waiting for {target} to be {state} ({args.get('timeout', 300)}s)"
            )
            return Outcome("failed", msg=msg, result=result)
        tail = [ln for ln in output.stderr.splitlines() if ln.strip()][-3:]
        result["stderr"] = output.stderr
        return Outcome("failed", msg="; ".join(tail) or f"exit {output.exit_code}", result=result)
