"""Alert messages: `str.format` templates restricted to plain field names, and the small
text helpers of alerts (durations, masked webhook URLs).

`{value:.1f}` is fine; `{value.__class__}` or `{host[0]}` is refused when alerts.yml is
loaded, so a template can only format the alert's own values, never reach into Python objects.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from machineroom.errors import did_you_mean

MESSAGE_LIMIT = 1000  # characters of a rendered message

# Fields a message template may use; each is None when it means nothing for the rule.
MESSAGE_FIELDS = (
    "rule",
    "host",
    "subject",
    "severity",
    "metric",
    "value",
    "threshold",
    "for",
    "state",
    "status",
)


class _PlainFormatter(string.Formatter):
    """`str.format` with plain field names only: no attribute or index access."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if field_name not in kwargs:
            raise KeyError(field_name)
        return kwargs[field_name], field_name


def check_template(template: str, fields: Mapping[str, Any]) -> tuple[str, str] | None:
    """None if `template` renders with `fields`; else (problem, what was expected)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"{exc}", "'{' and '}' around field names, '{{' and '}}' for braces"
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            return "positional fields like {} are not allowed", "named fields: " + ", ".join(
                MESSAGE_FIELDS
            )
        if any(c in name for c in ".[!"):
            return (
                f"'{{{name}}}': attribute and index access are not allowed",
                "plain field names: " + ", ".join(MESSAGE_FIELDS),
            )
        if name not in MESSAGE_FIELDS:
            return (
                f"unknown field '{{{name}}}'" + did_you_mean(name, MESSAGE_FIELDS),
                "fields: " + ", ".join(MESSAGE_FIELDS),
            )
    try:
        _PlainFormatter().vformat(template, (), dict(fields))
    except (ValueError, TypeError, KeyError) as exc:
        empty = [k for k, v in fields.items() if v is None]
        note = f" (empty for this rule: {', '.join(empty)})" if empty else ""
        return f"does not render: {exc}{note}", "format specs that suit the field, e.g. {value:.1f}"
    return None


def render_message(template: str, fields: Mapping[str, Any]) -> str:
    """The template filled in, capped; a field that cannot be formatted shows as text."""
    try:
        text = _PlainFormatter().vformat(template, (), dict(fields))
    except (ValueError, TypeError, KeyError):
        text = (
            template
            + " ("
            + ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
            + ")"
        )
    return text[:MESSAGE_LIMIT]


def format_duration(seconds: float) -> str:
    """`600` -> `10m`, `5400` -> `1h30m`, `45` -> `45s`."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return "".join(parts)


def mask_url(url: str) -> str:
    """A URL fit for messages and the database: scheme and host, the rest (path, query and
    any user:password, where webhook tokens live) as `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/***" if host else "***"
