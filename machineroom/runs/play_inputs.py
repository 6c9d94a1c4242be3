"""What a play needs before it runs, as ansible-playbook settles it: `vars_prompt` answers,
a `hosts:` pattern written as a template, and the `order:` of its hosts."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from machineroom.errors import InputError
from machineroom.inventory.model import Host
from machineroom.masking import SECRETS
from machineroom.playbook.args import is_template
from machineroom.playbook.model import Playbook
from machineroom.templating import Templar, Where
from machineroom.unsafe import Unsafe

Prompt = Callable[[str, bool], str]


def settle_plays(
    playbook: Playbook, extra_vars: Mapping[str, Any], prompt: Prompt | None = None
) -> Playbook:
    """The playbook with each play's vars_prompt answered (as play vars) and its templated
    `hosts:` rendered with its vars and the extra vars."""
    plays = []
    for play in playbook.plays:
        answers = {
            str(entry["name"]): _answer(entry, prompt)
            for entry in play.vars_prompt
            if entry["name"] not in extra_vars
        }
        if answers:
            play = replace(play, vars=MappingProxyType({**play.vars, **answers}))
        if is_template(play.hosts):
            variables = {**play.vars, **extra_vars}
            pattern = Templar().render(play.hosts, variables, Where(play.location))
            text = ",".join(map(str, pattern)) if isinstance(pattern, list) else str(pattern)
            if not text.strip():
                raise InputError(f"hosts: {play.hosts} gave an empty pattern", play.location)
            play = replace(play, hosts=text)
        plays.append(play)
    return replace(playbook, plays=tuple(plays))


def in_order(hosts: Sequence[Host], order: str) -> list[Host]:
    """The play's hosts in its `order:` (inventory order is how they were chosen)."""
    if order == "reverse_inventory":
        return list(reversed(hosts))
    if order in ("sorted", "reverse_sorted"):
        return sorted(hosts, key=lambda h: h.id, reverse=order == "reverse_sorted")
    if order == "shuffle":
        shuffled = list(hosts)
        random.shuffle(shuffled)
        return shuffled
    return list(hosts)


def _answer(entry: Mapping[str, Any], prompt: Prompt | None) -> Any:
    """One vars_prompt entry's value: asked on a terminal, else its default (with a warning,
    as Ansible's "Not prompting as we are not in interactive mode")."""
    name = str(entry["name"])
    private = entry.get("private", True) is not False
    default = entry.get("default")
    text = str(entry.get("prompt") or f"input for {name}")
    if default is not None:
        text += f" [{default}]"
    result = ""
    if prompt is not None and sys.stdin.isatty():
        result = prompt(text, private)
        if entry.get("confirm"):
            while prompt(f"confirm {text}", private) != result:
                sys.stderr.write("***** VALUES ENTERED DO NOT MATCH ****\n")
                result = prompt(text, private)
    else:
        what = "its default" if default is not None else "an empty value"
        sys.stderr.write(
            f"warning: not prompting for '{name}' (not a terminal): using {what}; "
            f"give -e {name}=... instead\n"
        )
    value: Any = result if result or default is None else default
    if entry.get("encrypt"):
        from machineroom.filters_more import password_hash

        kind = str(entry["encrypt"]).removesuffix("_crypt")
        value = password_hash(value, kind, entry.get("salt"), entry.get("salt_size"))
    if private and isinstance(value, str):
        SECRETS.add(value)  # an answer typed hidden is a secret: masked wherever it goes
    if entry.get("unsafe") and isinstance(value, str):
        value = Unsafe(value)
    return value
