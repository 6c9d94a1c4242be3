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


# /proc/net/tcp's state numbers, and the states Ansible counts as active for `drained`.
TCP_STATES = {
    "ESTABLISHED": "01",
    "SYN_SENT": "02",
    "SYN_RECV": "03",
    "FIN_WAIT1": "04",
    "FIN_WAIT2": "05",
    "TIME_WAIT": "06",
    "CLOSE": "07",
    "CLOSE_WAIT": "08",
    "LAST_ACK": "09",
    "LISTEN": "0A",
    "CLOSING": "0B",
}
ACTIVE_STATES = ("ESTABLISHED", "FIN_WAIT1", "FIN_WAIT2", "SYN_RECV", "SYN_SENT", "TIME_WAIT")

# drained: no connection on the local port in an active state from a host not excluded,
# read from /proc/net/tcp{,6} as Ansible's module does (IPv4 and IPv4-mapped peers are
# compared with exclude_hosts in dotted form).
DRAINED_AWK = r"""
function hexnum(h,   i, n) { n = 0; h = toupper(h)
  for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
  return n }
function v4(h) { return hexnum(substr(h, 7, 2)) "." hexnum(substr(h, 5, 2)) "." \
  hexnum(substr(h, 3, 2)) "." hexnum(substr(h, 1, 2)) }
BEGIN { n = split(ENVIRON["MR_EXCLUDE"], ex, " "); for (i = 1; i <= n; i++) skip[ex[i]] = 1
  n = split(ENVIRON["MR_STATES"], st, " "); for (i = 1; i <= n; i++) active[st[i]] = 1 }
FNR > 1 {
  split($2, l, ":"); split($3, r, ":")
  if (hexnum(l[2]) != ENVIRON["MR_PORT"] + 0 || !(toupper($4) in active)) next
  peer = length(r[1]) == 8 ? v4(r[1]) : r[1]
  mapped = "0000000000000000FFFF0000"
  if (length(r[1]) == 32 && substr(r[1], 1, 24) == mapped) peer = v4(substr(r[1], 25))
  if (!(peer in skip)) found = 1
}
END { exit found ? 1 : 0 }
"""


# Whole seconds elapsed, floored as Ansible's `elapsed` is, from /proc/uptime's hundredths
# (`date +%s` differences said 1 for a few milliseconds that crossed a second's edge).
_CLOCK = r"""__mr_cs() {
  if read -r __mr_u __mr_x </proc/uptime 2>/dev/null; then
    __mr_u=${__mr_u%.*}${__mr_u#*.}; __mr_u=${__mr_u#"${__mr_u%%[!0]*}"}; echo "${__mr_u:-0}"
  else echo $(( $(date +%s) * 100 )); fi
}
__mr_el() { echo $(( ($(__mr_cs) - __mr_t0) / 100 )); }"""


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
            "state": {
                "enum": ["started", "stopped", "present", "absent", "drained"],
                "default": "started",
            },
            "exclude_hosts": {"type": "array", "items": {"type": "string"}},
            "active_connection_states": {
                "type": "array",
                "items": {"enum": list(TCP_STATES)},
                "default": list(ACTIVE_STATES),
            },
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
            _CLOCK,
            "__mr_t0=$(__mr_cs)",
        ]
        if args.get("port") is not None:
            lines += [
                f"__mr_h={quote(args.get('host') or '127.0.0.1')}; __mr_p={int(args['port'])}",
                _PROBE,
            ]
            cond = "! __mr_probe" if state in ("stopped", "absent") else "__mr_probe"
            if state == "drained":
                states = " ".join(
                    TCP_STATES[s] for s in args.get("active_connection_states", ACTIVE_STATES)
                )
                lines.append(
                    f"MR_PORT={int(args['port'])} MR_STATES={quote(states)} "
                    f"MR_EXCLUDE={quote(' '.join(args.get('exclude_hosts') or []))}; "
                    "export MR_PORT MR_STATES MR_EXCLUDE"
                )
                files = "/proc/net/tcp $([ -r /proc/net/tcp6 ] && echo /proc/net/tcp6)"
                cond = f"awk {quote(DRAINED_AWK)} {files}"
            elif args.get("search_regex") and state not in ("stopped", "absent"):
                # Ansible reads what the port sends until the pattern shows or time is up.
                cond = (
                    '__mr_probe && timeout "$__mr_ct" bash -c '
                    '\'exec 3<>"/dev/tcp/$0/$1"; cat <&3\' "$__mr_h" "$__mr_p" '
                    f"2>/dev/null | grep -Eq -- {quote(args['search_regex'])}"
                )
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
            lines.append(f'sleep "$__mr_to"; echo {MARK} ok "$(__mr_el)"')
            lines.append("exit 0")
            return RemoteStep("\n".join(lines), timeout=timeout + MARGIN)
        lines.append(
            "while :; do\n"
            f'  if {cond}; then echo {MARK} ok "$(__mr_el)"; exit 0; fi\n'
            '  [ "$(__mr_el)" -ge "$__mr_to" ] && break\n'
            '  sleep "$__mr_sl"\n'
            "done\n"
            f'echo {MARK} timeout "$(__mr_el)"; exit 1'
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
