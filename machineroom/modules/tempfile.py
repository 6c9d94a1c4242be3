"""`tempfile`: create a temporary file or folder on the host, as Ansible's module does.

`mktemp` makes it (mode 0600 for a file, 0700 for a folder, as Python's mkstemp/mkdtemp),
named prefix + 8 random characters + suffix, in `path` or $TMPDIR or /tmp. Always changed.
Ansible's module does not support check mode, so there the task is skipped, as in Ansible.
"""

from __future__ import annotations

import posixpath
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
from machineroom.modules.files_sh import failure

BODY = r"""dir=${path:-${TMPDIR:-/tmp}}
if [ "$state" = directory ]; then
  made=$(mktemp -d -p "$dir" --suffix="$suffix" -- "${prefix}XXXXXXXX") || exit 1
else
  made=$(mktemp -p "$dir" --suffix="$suffix" -- "${prefix}XXXXXXXX") || exit 1
fi
printf 'path=%s\n' "$made"
"""


class TempfileModule(Module):
    """Create a uniquely named temporary file or folder on the host."""

    name: ClassVar[str] = "tempfile"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "state": {"enum": ["file", "directory"], "default": "file"},
            "path": {"type": "string"},
            "prefix": {"type": "string", "default": "ansible."},
            "suffix": {"type": "string", "default": ""},
        },
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """mktemp; nothing in check mode (run_local then skips)."""
        prefix = str(args.get("prefix", "ansible."))
        suffix = str(args.get("suffix") or "")
        for what, value in (("prefix", prefix), ("suffix", suffix)):
            if value and value != posixpath.basename(value):
                raise InputError(
                    f"tempfile: {what} must be a valid file name component, got {value!r}"
                )
        if ctx.check:
            return None
        settings = (
            f"state={quote(args.get('state') or 'file')} path={quote(args.get('path') or '')} "
            f"prefix={quote(prefix)} suffix={quote(suffix)}\n"
        )
        return RemoteStep(settings + BODY)

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode: skipped, as Ansible skips a module without check mode support."""
        msg = "remote module (tempfile) does not support check mode"
        return Outcome("ok", msg=msg, result={"skipped": True})

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """The path made."""
        if output.exit_code != 0:
            return failure(output, "tempfile")
        path = output.stdout.rstrip("\n").partition("path=")[2]
        # Ansible adds the path's state (file or directory), which its tests read
        state = "directory" if args.get("state") == "directory" else "file"
        return Outcome("changed", msg=f"created {path}", result={"path": path, "state": state})
