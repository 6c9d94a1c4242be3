"""`slurp`: a remote file's content, base64-encoded, as Ansible's module returns it.

The file comes in pieces over as many round trips as it needs (remote_read.py), so a file
bigger than what one command's output may hold still arrives whole. Never changes anything.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import Conversation, Module, ModuleContext, Outcome
from machineroom.modules.remote_read import read_remote_file


class SlurpModule(Module):
    """Read a file from the host into the result (`content`, base64)."""

    name: ClassVar[str] = "slurp"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"src": {"type": "string", "minLength": 1}},
        "required": ["src"],
        "additionalProperties": False,
        "x-aliases": {"path": "src"},
    }

    def converse(self, args: Mapping[str, Any], ctx: ModuleContext) -> Conversation:
        """Read the file; the same in check mode (reading changes nothing)."""
        src = str(args["src"])
        found = yield from read_remote_file(src)
        if not found.exists:
            return Outcome("failed", msg=f"File not found: {src}")
        if found.isdir:
            return Outcome("failed", msg=f"Source is a directory and must be a file: {src}")
        if found.error:
            if "not readable" in found.error:
                return Outcome("failed", msg=f"File is not readable: {src}")
            return Outcome("failed", msg=f"Unable to slurp file: {src}: {found.error}")
        content = base64.b64encode(found.data).decode()
        return Outcome(
            "ok",
            msg=f"{src}: {len(found.data)} bytes",
            result={"content": content, "source": src, "encoding": "base64"},
        )
