"""A task's module call as one short line, the way a person wrote it in the playbook:
`command: systemctl restart nginx`, `copy: dest=/etc/motd mode=0644 content=(2 lines, 45 bytes)`.

The audit log shows it beside the command actually sent (a wrapper script nobody wrote).
What it must never show, for any module (ours or an ansible-core one): a secret. So, at every
depth of the arguments (a header inside `headers`, a field inside `body`):
- a value whose name says secret (`password`, `Authorization`, `api_key`, `token`, `key`,
  `cookie`, `private_key`...) is `***`;
- a payload, what travels to the host on stdin or is a file's content (`content`, `stdin`,
  `body`, `data`, `headers`, `cookies`...), is shown only by its size: a lookup or a plain
  variable put there is never registered as a secret, so masking by value cannot catch it;
- a URL's user and password are `***` (`https://***@host/`);
- and the whole line, like every value, goes through the secrets registry (masked before it
  is shortened: a cut secret would no longer match its mask).
A no_log task's call is only `module: (hidden: no_log)`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from machineroom.masking import is_secret_name, mask

HIDDEN = "(hidden: no_log)"
SECRET = "***"
VALUE_WIDTH = 60  # characters of one argument's value shown
LINE_WIDTH = 300  # characters of the whole line

# Name parts that say secret here besides masking's own (`Proxy-Authorization`, `Set-Cookie`,
# `private_key_file`, `session_id`): an audit line can afford to hide a little too much.
_SECRET_PARTS = frozenset({"authorization", "cookie", "private", "bearer", "session", "cred"})
# Last name parts of a payload: what goes to the host on stdin or into a file.
_PAYLOAD_ENDINGS = frozenset(
    {"content", "stdin", "body", "data", "payload", "headers", "cookies", "input"}
)
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@\"']+@")


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
        if key == free_form and isinstance(value, str):
            words.insert(0, _first_line(_clean(value)))
        elif key == "argv" and isinstance(value, list):
            words.insert(0, _short(_clean(shlex.join(str(word) for word in value)), LINE_WIDTH))
        else:
            words.append(f"{key}={_value(str(key), value)}")
    text = f"{module}: {' '.join(words)}" if words else module
    return _short(_clean(text), LINE_WIDTH)


def is_hidden_name(name: str) -> bool:
    """Whether an argument's name says its value is a secret (`url_password`, `X-Api-Key`,
    `Authorization`, `key`)."""
    parts = {part.lower() for part in _NAME_PARTS.findall(name)}
    return is_secret_name(name) or bool(parts & _SECRET_PARTS)


def is_payload_name(name: str) -> bool:
    """Whether an argument's name says it is a payload (`content`, `stdin`, `body`,
    `headers`): shown only by its size."""
    parts = [part.lower() for part in _NAME_PARTS.findall(name)]
    return bool(parts) and parts[-1] in _PAYLOAD_ENDINGS


def _clean(text: str) -> str:
    """Registered secrets masked, URLs' user and password hidden."""
    return _USERINFO.sub(rf"\1{SECRET}@", mask(text))


def _value(name: str, value: Any) -> str:
    """One argument's value: short text as is; a secret as `***`; a payload, long or
    multi-line text by its size; a structure with its secrets hidden at every depth."""
    if isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    if is_hidden_name(name):
        return SECRET
    if is_payload_name(name):
        return size_of(value)
    if isinstance(value, str):
        text = _clean(value)
        if "\n" in text.rstrip("\n"):
            return size_of(value)
        return _short(text.rstrip("\n"), VALUE_WIDTH) if text.strip() else json.dumps(text)
    try:
        shown = json.dumps(_scrub(value), ensure_ascii=False, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        shown = size_of(value)
    return _short(_clean(shown), VALUE_WIDTH)


def _scrub(value: Any) -> Any:
    """A structure with secret-named values as `***` and payloads as their size, at every
    depth; strings cleaned."""
    if isinstance(value, Mapping):
        scrubbed: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if isinstance(item, bool | int | float) or item is None:
                scrubbed[name] = item
            elif is_hidden_name(name):
                scrubbed[name] = SECRET
            elif is_payload_name(name):
                scrubbed[name] = size_of(item)
            else:
                scrubbed[name] = _scrub(item)
        return scrubbed
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(item) for item in value]
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, bytes | bytearray):
        return size_of(value)
    return value if isinstance(value, bool | int | float) else _clean(str(value))


def size_of(value: Any) -> str:
    """`(2 lines, 45 bytes)`, `(12 bytes)`, `(3 entries)`, `(2 items)`: what a payload was,
    not what it said."""
    if isinstance(value, str | bytes | bytearray):
        data = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
        lines = len(data.splitlines())
        unit = "byte" if len(data) == 1 else "bytes"
        return f"({lines} lines, {len(data)} {unit})" if lines > 1 else f"({len(data)} {unit})"
    if isinstance(value, Mapping):
        return f"({len(value)} {'entry' if len(value) == 1 else 'entries'})"
    if isinstance(value, list | tuple | set | frozenset):
        return f"({len(value)} {'item' if len(value) == 1 else 'items'})"
    return "(a value)"


def _first_line(text: str) -> str:
    """A free-form script: its first line, and how many lines it has when more than one."""
    lines = text.strip("\n").splitlines() or [""]
    more = f" … ({len(lines)} lines)" if len(lines) > 1 else ""
    return _short(lines[0].rstrip(), LINE_WIDTH) + more


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
