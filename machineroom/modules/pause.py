"""`pause`: wait a while, as Ansible's `ansible.builtin.pause`; never contacts the host.

`seconds` or `minutes` waits that long (at least one second, as Ansible). A run of
machineroom is not interactive (hosts run in parallel under a live display), so a `prompt`
is never waited for: as Ansible does when stdin is not a terminal, the task says so and goes
on with an empty `user_input` (with a duration, it waits the duration). Result keys as
Ansible's: `start`, `stop`, `delta`, `echo`, `stdout` ("Paused for 2.0 seconds"),
`user_input`, `rc`, `stderr`. Never changed; runs in check mode too.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from machineroom.modules.base import Module, ModuleContext, Outcome

NOT_WAITING = "Not waiting for response to prompt as stdin is not interactive"


class PauseModule(Module):
    """`pause`: seconds or minutes, prompt, echo."""

    name: ClassVar[str] = "pause"
    local: ClassVar[bool] = True
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "seconds": {"type": ["integer", "number"]},
            "minutes": {"type": ["integer", "number"]},
            "prompt": {"type": "string"},
            "echo": {"type": "boolean", "default": True},
        },
        "additionalProperties": False,
        "not": {"required": ["seconds", "minutes"]},
    }

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Sleep the duration (if any); an unanswerable prompt is skipped with a warning."""
        if args.get("minutes") is not None and args.get("seconds") is not None:
            return Outcome("failed", msg="parameters are mutually exclusive: minutes|seconds")
        unit = "minutes"
        seconds: float | None = None
        if args.get("minutes") is not None:
            seconds = int(args["minutes"]) * 60
        elif args.get("seconds") is not None:
            seconds = int(args["seconds"])
            unit = "seconds"
        start = time.time()
        started = datetime.datetime.now()
        warnings: list[str] = []
        if seconds is not None:
            time.sleep(max(seconds, 1))
        else:
            warnings.append(NOT_WAITING)
        duration = time.time() - start
        shown = round(duration / 60.0, 2) if unit == "minutes" else round(duration, 2)
        result: dict[str, Any] = {
            "rc": 0,
            "stderr": "",
            "stdout": f"Paused for {shown} {unit}",
            "start": str(started),
            "stop": str(datetime.datetime.now()),
            "delta": int(duration),
            "echo": bool(args.get("echo", True)),
            "user_input": "",
        }
        if warnings:
            result["warnings"] = warnings
        return Outcome("ok", msg=warnings[0] if warnings else result["stdout"], result=result)
