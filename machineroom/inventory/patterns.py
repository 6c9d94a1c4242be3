"""Host patterns, as users of Ansible write them for `hosts:` and `--limit`.

A pattern is terms joined by `:` (or `,`): a host or group name, `all` or `*`, a glob
(`web*`), a regular expression (`~web\\d+`, matched from the start of the name), any of them
with a subscript (`web[0]`, `web[0:2]`, end included, counted in inventory order). A term
prefixed `&` keeps only hosts also in it, `!` removes its hosts. As in Ansible, plain terms
are joined first, then `&` terms intersect, then `!` terms exclude, whatever their order;
a pattern of only `&`/`!` terms starts from all hosts.
"""

from __future__ import annotations

import difflib
import fnmatch
import re

from machineroom.errors import InputError
from machineroom.inventory.model import Host, Inventory

_SUBSCRIPT = re.compile(r"^(?P<base>.+)\[(?P<start>-?\d+)(?::(?P<end>-?\d*))?\]$")
_GLOB_CHARS = set("*?[")
EXPECTED = (
    "host or group names, globs (web*), ~regex or all, joined by : or ',' "
    "(&name intersects, !name excludes)"
)


def split_pattern(pattern: str) -> list[str]:
    """The terms of a pattern: split on `,` if it has one, else on `:` outside brackets."""
    if "," in pattern:
        return [t.strip() for t in pattern.split(",") if t.strip()]
    terms: list[str] = []
    current, depth = "", 0
    for char in pattern:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char == ":" and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms if t.strip()]


def _close_names(inventory: Inventory, word: str) -> str:
    names = [*inventory.groups, *inventory.hosts]
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"


def _match_term(inventory: Inventory, term: str, whole: str) -> list[str]:
    """Host ids a single term names, in inventory order (before & and !)."""
    subscript = None if term.startswith("~") else _SUBSCRIPT.match(term)
    if subscript:
        matched = _match_term(inventory, subscript["base"], whole)
        start = int(subscript["start"])
        end = subscript["end"]
        if end is None:
            return [matched[start]] if -len(matched) <= start < len(matched) else []
        stop = int(end) + 1 if end else len(matched)
        return matched[start:stop]
    ids = list(inventory.hosts)
    if term in ("all", "*"):
        return ids
    if term.startswith("~"):
        try:
            regex = re.compile(term[1:])
        except re.error as exc:
            raise InputError(
                f"host pattern '{whole}': bad regular expression '{term[1:]}': {exc}",
                expected="a Python regular expression after ~",
            ) from None
        wanted = {g for g in inventory.groups if regex.match(g)}
        return [i for i in ids if regex.match(i) or wanted & set(inventory.hosts[i].groups)]
    if _GLOB_CHARS & set(term):
        wanted = set(fnmatch.filter(inventory.groups, term))
        return [
            i
            for i in ids
            if fnmatch.fnmatchcase(i, term) or wanted & set(inventory.hosts[i].groups)
        ]
    if term in inventory.groups:
        return [i for i in ids if term in inventory.hosts[i].groups]
    if term in inventory.hosts:
        return [term]
    if term == "ungrouped":  # Ansible's implicit group of hosts in no group but all
        return [i for i in ids if set(inventory.hosts[i].groups) <= {"all", "ungrouped"}]
    raise InputError(
        f"host pattern '{whole}': no host or group '{term}'" + _close_names(inventory, term),
        expected=EXPECTED,
    )


def select_hosts(inventory: Inventory, pattern: str) -> list[Host]:
    """The hosts a pattern names, in inventory order, each once.

    A name that is neither a host nor a group, or a pattern that selects no host at all, is
    an InputError naming the close host and group names.
    """
    terms = split_pattern(pattern)
    if not terms:
        raise InputError("empty host pattern", expected=EXPECTED)
    plain = [t for t in terms if t[0] not in "&!"]
    meet = [t[1:] for t in terms if t[0] == "&"]
    drop = [t[1:] for t in terms if t[0] == "!"]
    chosen: set[str] = set()
    for term in plain or ["all"]:
        chosen.update(_match_term(inventory, term, pattern))
    for term in meet:
        chosen &= set(_match_term(inventory, term, pattern))
    for term in drop:
        chosen -= set(_match_term(inventory, term, pattern))
    result = [host for host_id, host in inventory.hosts.items() if host_id in chosen]
    if not result:
        raise InputError(
            f"host pattern '{pattern}' matches no host"
            + (_close_names(inventory, plain[0]) if plain and plain[0] != "all" else ""),
            expected=EXPECTED,
        )
    return result
