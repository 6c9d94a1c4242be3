"""The one type both YAML reading and templating need: text never rendered as a template."""

from __future__ import annotations


class Unsafe(str):
    """Text that must never be rendered as a template: a value tagged `!unsafe`, output from
    a host, facts, ... (templating.py's rules)."""

    __slots__ = ()
