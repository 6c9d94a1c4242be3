"""What `run PATTERN -m MODULE` shows: each host's result in ansible's ad-hoc layout as it
arrives, `h1 | SUCCESS => {...}`, `h1 | CHANGED | rc=0 >>` and the output for command, shell
and raw."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from machineroom.events import Event, TaskFinished
from machineroom.masking import mask
from machineroom.report.recap import paint, use_color

NO_JSON_MODULES = frozenset({"command", "shell", "raw"})


class AdhocReporter:
    """Prints each host's result in ansible's ad-hoc layout as it arrives."""

    def __init__(self, module: str, task: str, out: TextIO | None = None) -> None:
        self.module = module
        self.task = task  # the one task's name (runs/one_task.py)
        self.out = out or sys.stdout
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}

    def __call__(self, event: Event) -> None:
        """Print a host's line when the module finished there (or could not reach it)."""
        if isinstance(event, TaskFinished) and event.item is None and event.task == self.task:
            self.counts[event.status] = self.counts.get(event.status, 0) + 1
            self._print(event.host, event.status, dict(event.result), event.msg)

    def _print(self, host: str, status: str, result: dict[str, Any], msg: str) -> None:
        if status == "unreachable":
            body = {"changed": False, "msg": msg or result.get("msg", ""), "unreachable": True}
            self._echo(f"{host} | UNREACHABLE! => {_dump(body)}", "magenta")
            return
        if status == "skipped":
            self._echo(f"{host} | SKIPPED", "cyan")
            return
        result.setdefault("changed", status == "changed")
        if status == "failed":
            result.setdefault("msg", msg)
            if self.module in NO_JSON_MODULES:
                self._echo(_command_text(host, result, "FAILED"), "red")
            else:
                result["failed"] = True
                self._echo(f"{host} | FAILED! => {_dump(result)}", "red")
            return
        state, colour = ("CHANGED", "yellow") if status == "changed" else ("SUCCESS", "green")
        if self.module in NO_JSON_MODULES:
            self._echo(_command_text(host, result, state), colour)
        else:
            self._echo(f"{host} | {state} => {_dump(result)}", colour)

    def _echo(self, text: str, colour: str) -> None:
        self.out.write(paint(mask(text), colour, color=use_color(self.out)) + "\n")
        self.out.flush()

    def close(self) -> None:
        """Nothing to flush: every line is printed as it comes."""


# bookkeeping of ours in a registered result that ansible's ad-hoc output does not show
HIDDEN_KEYS = frozenset({"invocation", "module", "attempts"})


def _dump(result: dict[str, Any]) -> str:
    shown = {k: v for k, v in result.items() if not k.startswith("_") and k not in HIDDEN_KEYS}
    if shown.get("failed") is False:
        del shown["failed"]
    return json.dumps(shown, indent=4, sort_keys=True, default=str)


def _command_text(host: str, result: dict[str, Any], caption: str) -> str:
    """ansible's `host | CHANGED | rc=0 >>` then stdout, stderr and msg."""
    text = f"{host} | {caption} | rc={result.get('rc', -1)} >>\n"
    for key in ("stdout", "stderr", "msg"):
        text += str(result.get(key) or "")
    return text
