"""A task's module call as one short line, the way a person wrote it in the playbook:
`command: systemctl restart nginx`, `copy: dest=/etc/motd mode=0644 content=(2 lines)`.

The audit log shows it beside the command actually sent (a wrapper script nobody wrote).
Secrets are masked before anything is shortened (a cut secret would no longer match its
mask), and values of arguments whose names say secret are never shown.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from machineroom.masking import is_secret_name, mask

HIDDEN = "(hidden: no_log)"
VALUE_WIDTH = 60  # characters of one argument's value shown
LINE_WIDTH = 300  # characters of the whole line


def describe_call(
    module: str, args: Mapping[str, Any], free_form: str | None = None, no_log: bool = False
) -> str:
    """`module: free-form words key=value ...` (the free-form argument, e.g. command's `cmd`,
    first and bare); `module: (hidden: no_log)` for a no_log task."""
    if no_log:
        return f"{module}: {HIDDEN}"
    words: list[str] = []
    for key, value in args.items():
        if value is None or str(key).startswith("_"):
            continue
        if is_secret_name(str(key)):
            words.append(f"{key}=***")
        elif key == free_form and isinstance(value, str):
            words.insert(0, _first_line(mask(value)))
        elif key == "argv" and isinstance(value, list):
            words.insert(0, _short(mask(shlex.join(str(word) for word in value)), LINE_WIDTH))
        else:
            words.append(f"{key}={_value(value)}")
    text = f"{module}: {' '.join(words)}" if words else module
    return _short(text, LINE_WIDTH)


def _value(value: Any) -> str:
    """One argument's value: short text as is, long or multi-line text by its size."""
    if isinstance(value, str):
        text = mask(value)
        if "\n" in text.rstrip("\n"):
            return f"({len(text.splitlines())} lines)"
        return _short(text.rstrip("\n"), VALUE_WIDTH) if text.strip() else json.dumps(text)
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    try:
        shown = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        shown = str(value)
    return _short(mask(shown), VALUE_WIDTH)


def _first_line(text: str) -> str:
    """A free-form script: its first line, and how many lines it has when more than one."""
    lines = text.strip("\n").splitlines() or [""]
    more = f" … ({len(lines)} lines)" if len(lines) > 1 else ""
    return _short(lines[0].rstrip(), LINE_WIDTH) + more


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
