"""`template`: render a local Jinja2 template with the host's variables and copy the result.

Rendering happens on the workstation (`ModuleContext.render_template`); from there it is
`copy` with `content`: one remote command, the text on stdin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import CommandOutput, Module, ModuleContext, Outcome, RemoteStep
from machineroom.modules.copy import COPY_PROPS, copy_outcome, copy_step

# the arguments that change Jinja's delimiters for this file, by Jinja's own names
DELIMITERS = (
    "variable_start_string",
    "variable_end_string",
    "block_start_string",
    "block_end_string",
    "comment_start_string",
    "comment_end_string",
)


class TemplateModule(Module):
    """Render `src` (a local template) and install it at `dest`."""

    name: ClassVar[str] = "template"
    in_programs: ClassVar[bool] = True  # a per-host program may hold its step
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "src": {"type": "string", "minLength": 1},
            **COPY_PROPS,
            # rendering, as Ansible's template module: trim_blocks on, lstrip_blocks off
            "trim_blocks": {"type": "boolean", "default": True},
            "lstrip_blocks": {"type": "boolean", "default": False},
            "newline_sequence": {"enum": ["\n", "\r", "\r\n", "\\n", "\\r", "\\r\\n"]},
            # Jinja's delimiters for this file (a Go or Helm template's own `{{ }}` kept)
            **{name: {"type": "string", "minLength": 1} for name in DELIMITERS},
        },
        "required": ["src", "dest"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """The rendered text, installed by the copy script (dest is the file's path)."""
        # a YAML single-quoted '\r\n' arrives as backslashes: Ansible accepts both spellings
        newline = str(args.get("newline_sequence", "\n"))
        newline = newline.replace("\\r", "\r").replace("\\n", "\n")
        text = ctx.render_template(
            args["src"],
            trim_blocks=args.get("trim_blocks", True),
            lstrip_blocks=args.get("lstrip_blocks", False),
            newline_sequence=newline,
            dest=str(args["dest"]),  # the file's `template_destpath`
            **{name: str(args[name]) for name in DELIMITERS if name in args},
        )
        return copy_step(text.encode(), args["dest"], None, args, ctx)

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when the rendered content or the attributes differed."""
        return copy_outcome(args["dest"], "", ctx, output, "template", str(args["src"]))
