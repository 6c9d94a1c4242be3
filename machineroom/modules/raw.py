"""`raw`: a command line sent to the host as it is, as Ansible's `ansible.builtin.raw`.

The line is the user's shell code by design (raw exists to run anything on a host that has
nothing yet, Python included): it is the whole remote command, run by the login shell the
SSH session starts, or handed as one quoted argument to `executable -c` when that is given.
Always changed, as Ansible's; check mode skips it (nothing is sent), as Ansible's does.
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


def run_result(output: CommandOutput) -> dict[str, Any]:
    """Ansible's low-level command result: rc, stdout, stderr and their lines (kept as sent)."""
    return {
        "rc": output.exit_code,
        "stdout": output.stdout,
        "stdout_lines": output.stdout.splitlines(),
        "stderr": output.stderr,
        "stderr_lines": output.stderr.splitlines(),
    }


class RawModule(Module):
    """`raw`: free form (the command line) and `executable`."""

    name: ClassVar[str] = "raw"
    free_form: ClassVar[str | None] = "cmd"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "cmd": {"type": "string", "minLength": 1},
            "executable": {"type": "string", "minLength": 1},
        },
        "required": ["cmd"],
        "additionalProperties": False,
        # Ansible's internal name for the free-form text, which `args:` may carry
        "x-aliases": {"_raw_params": "cmd"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """The line itself, or `executable -c LINE`; None (skipped) in check mode."""
        if ctx.check:
            return None
        line = str(args["cmd"])
        if args.get("executable"):
            line = f"{quote(args['executable'])} -c {quote(line)}"
        return RemoteStep(line)

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode: skipped, as Ansible skips raw there."""
        return Outcome("ok", msg="skipped in check mode", result={"skipped": True})

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Always changed; failed with "non-zero return code" when rc != 0."""
        result = run_result(output)
        if output.exit_code != 0:
            return Outcome("failed", msg="non-zero return code", result=result)
        return Outcome("changed", result=result)
