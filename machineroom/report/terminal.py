"""Text from hosts made safe for a terminal: control characters shown, never interpreted.

A host's output, a file's diff or a task's message may hold escape sequences that would set the
window title, clear the screen or overwrite a line to fake "ok". Everything that did not come
from machineroom passes through `visible()` before it is printed, so the only escape sequences
reaching the terminal are our own colours.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

# C0 controls but tab and newline, DEL, the C1 controls (ESC [ as one character: \x9b), and
# the invisible characters that reorder or hide text (bidi overrides and isolates, zero-width
# spaces and joiners, the BOM), with which a line can be made to read as something else.
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every control character but newline and tab, and every invisible
    reordering character, written as `\\xNN` / `\\uNNNN`
    (a Windows line end stays a line end)."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text.replace("\r\n", "\n"))


def visible_data(value: Any) -> Any:
    """`visible()` applied to the strings inside dicts and lists."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, Mapping):
        return {visible_data(k): visible_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [visible_data(item) for item in value]
    return value


def visible_event(event: Any) -> Any:
    """A run event (a frozen dataclass) with every text field made `visible()`."""
    if not dataclasses.is_dataclass(event) or isinstance(event, type):
        return event
    changes = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, str | Mapping | list):
            shown = visible_data(value)
            if shown != value:
                changes[f.name] = shown
    return dataclasses.replace(event, **changes) if changes else event
