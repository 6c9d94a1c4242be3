"""`reboot`: restart the host, wait for it to come back, run a test command, as Ansible's.

The module's one remote step reads the boot id (`boot_time_command`) and starts the reboot
command detached (`shutdown -r 0 "msg"` by default, after `pre_reboot_delay`), so that the
step itself returns before the host goes down. Waiting is the executor's part
(executor/reboot.py, `run_reboot`): it drops the connection, reconnects until the boot id
differs (within `reboot_timeout`), waits `post_reboot_delay`, then runs `test_command` until
it succeeds. Check mode does nothing and reports changed, as Ansible does.
"""

from __future__ import annotations

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

DEFAULT_BOOT_TIME_COMMAND = "cat /proc/sys/kernel/random/boot_id"
DEFAULT_MESSAGE = "Reboot initiated by Ansible"
DEFAULT_SEARCH_PATHS = ["/sbin", "/bin", "/usr/sbin", "/usr/bin", "/usr/local/sbin"]
BOOT_MARK = "__mr_boot__ "

_BODY = r"""set -f
fail() { printf 'machineroom: %s\n' "$*" >&2; exit 1; }
boot=$(sh -c "$boot_cmd" 2>&1) || fail "Failed to get last boot time: $boot"
printf '%s%s\n' "$BOOT_MARK" "$(printf '%s' "$boot" | tr '\n' ' ')"
found=
if [ "${bin#/}" != "$bin" ]; then [ -x "$bin" ] && found=$bin
else
  for d in $search_paths; do
    if [ -x "$d/$bin" ]; then found=$d/$bin; break; fi
  done
  [ -n "$found" ] || found=$(command -v "$bin" 2>/dev/null) || found=
fi
[ -n "$found" ] || fail "Unable to find command \"$bin\" in search paths: [$search_list]"
# detached, so that this step ends before the host goes down
nohup setsid sh -c "sleep $pre_delay; \"\$0\" $reboot_args" "$found" \
  </dev/null >/dev/null 2>&1 &
exit 0
"""


def _delay(args: Mapping[str, Any], key: str) -> int:
    """A delay as Ansible reads it: an int, negative values as 0; `KEY_sec` also works."""
    value = args.get(key, args.get(f"{key}_sec", 0))
    try:
        return max(0, int(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"reboot: {key}: {value!r} is not a number of seconds") from exc


class RebootModule(Module):
    """reboot_timeout, connect_timeout, msg, pre/post_reboot_delay, test_command,
    reboot_command, boot_time_command, search_paths. Results: rebooted, elapsed."""

    name: ClassVar[str] = "reboot"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "reboot_timeout": {"type": "integer", "minimum": 1, "default": 600},
            "connect_timeout": {"type": "integer", "minimum": 1},
            "msg": {"type": "string", "default": DEFAULT_MESSAGE},
            "pre_reboot_delay": {"type": "integer", "default": 0},
            "post_reboot_delay": {"type": "integer", "default": 0},
            "test_command": {"type": "string", "default": "whoami"},
            "reboot_command": {"type": "string", "minLength": 1},
            "boot_time_command": {"type": "string", "default": DEFAULT_BOOT_TIME_COMMAND},
            "search_paths": {"type": ["array", "string"], "items": {"type": "string"}},
        },
        "additionalProperties": False,
        "x-aliases": {
            "reboot_timeout_sec": "reboot_timeout",
            "connect_timeout_sec": "connect_timeout",
            "pre_reboot_delay_sec": "pre_reboot_delay",
            "post_reboot_delay_sec": "post_reboot_delay",
        },
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """Check mode: nothing to send (run_local). Else: read the boot id, start the reboot."""
        pre = _delay(args, "pre_reboot_delay")
        _delay(args, "post_reboot_delay")
        if ctx.check:
            return None
        command = args.get("reboot_command")
        if command:
            bin_name, _, rest = str(command).strip().partition(" ")
            reboot_args = rest
        else:
            bin_name = "shutdown"
            message = str(args.get("msg") or DEFAULT_MESSAGE)
            reboot_args = f"-r {pre // 60} {quote(message)}"
        paths = args.get("search_paths") or DEFAULT_SEARCH_PATHS
        if isinstance(paths, str):
            paths = [paths]
        settings = (
            f"boot_cmd={quote(args.get('boot_time_command') or DEFAULT_BOOT_TIME_COMMAND)} "
            f"bin={quote(bin_name)} pre_delay={pre % 60 if not command else pre}\n"
            f"reboot_args={quote(reboot_args)} BOOT_MARK={quote(BOOT_MARK)}\n"
            f"search_paths={quote(' '.join(shlex.quote(p) for p in paths))} "
            f"search_list={quote(', '.join(repr(p) for p in paths))}\n"
        )
        return RemoteStep(settings + _BODY)

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode: Ansible's answer without touching the host."""
        return Outcome("changed", msg="would reboot", result={"rebooted": True, "elapsed": 0})

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """The reboot started; `previous_boot_time` is for the executor's wait."""
        boot = next(
            (ln[len(BOOT_MARK) :] for ln in output.stdout.splitlines() if ln.startswith(BOOT_MARK)),
            None,
        )
        if output.exit_code != 0 or boot is None:
            err = output.stderr
            at = err.rfind("machineroom: ")
            msg = err[at + len("machineroom: ") :].strip() if at >= 0 else err.strip()
            return Outcome(
                "failed",
                msg=msg or f"Reboot command failed: exit code {output.exit_code}",
                result={"rebooted": False, "elapsed": 0},
            )
        return Outcome(
            "changed",
            msg="reboot started",
            result={"rebooted": False, "elapsed": 0, "previous_boot_time": boot.strip()},
        )
