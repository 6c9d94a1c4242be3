"""How the fleet pages say what is broken and what changed: each host's last apply in words,
what is pending for it (its `next_action`) as a sentence with the command that resumes it,
what needs attention (a rank the pages sort by), the overview's sections, and facts as
tables instead of JSON.

Pure functions of plain data (the store's rows, the inventory's ids): data.py feeds them and
the API returns what they make, so the pages and `/api/hosts` say the same.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from machineroom.state.last_apply import LastApply

# The order hosts are listed in, worst first.
BROKEN, ATTENTION, FINE, RETIRED = 0, 1, 2, 3
NO_GROUP = "ungrouped"  # Ansible's implicit group: inventory hosts in no group but `all`
NOT_IN_INVENTORY = "not in the inventory"
FACT_DEPTH = 4  # nested levels shown as tables; deeper ones as JSON text


def shown_path(path: str | None, root: Path | None) -> str:
    """A recorded playbook path, relative to the repo when it is inside it."""
    if not path:
        return ""
    if root is not None and os.path.isabs(path):
        relative = os.path.relpath(path, root)
        if not relative.startswith(".."):
            return relative
    return path


def _reason(action: dict[str, Any]) -> tuple[str, str]:
    """(`failed` | `unreachable` | `interrupted`, the error) from next_action's reason,
    which reads `failed: non-zero return code`; `interrupted: interrupted` has no error."""
    word, _, detail = str(action.get("reason") or "").partition(":")
    word, detail = word.strip() or "stopped", detail.strip()
    return word, "" if detail == word else detail


def pending_words(action: dict[str, Any], root: Path | None) -> dict[str, str]:
    """What `next_action` says, for people: `text` (`apply interrupted at task "Wait"
    (site.yml:6:7)`), `command` (the `apply --resume` that continues it, when there is a stage
    to resume from) and `at`. Empty texts when nothing is pending."""
    if not action:
        return {"text": "", "command": "", "at": ""}
    word, detail = _reason(action)
    verb = {
        "failed": "failed",
        "interrupted": "interrupted",
        "unreachable": "could not reach the host",
    }.get(word, word)
    text = f"apply {verb}"
    task = action.get("task_name") or action.get("task")
    if task:
        text += f" at task “{task}”"
    stage = action.get("stage")
    if stage and stage != "main":  # `main`: a playbook without stages
        text += f" in stage {stage}"
    if action.get("location"):
        text += f" ({action['location']})"
    if detail:
        text += f": {detail}"
    playbook = shown_path(action.get("playbook"), root)
    command = f"machineroom apply {shlex.quote(playbook)} --resume" if stage and playbook else ""
    return {"text": text, "command": command, "at": str(action.get("at") or "")}


def forget_command(ids: Iterable[str]) -> str:
    """`machineroom forget ID...`, each id quoted for a POSIX shell."""
    return " ".join(["machineroom forget", *(shlex.quote(str(i)) for i in ids)])


def last_apply_view(
    last: LastApply | None, action: dict[str, Any], root: Path | None
) -> dict[str, Any] | None:
    """The host's last apply as the pages show it: `status` (running, ok, changed, failed,
    unreachable, interrupted), `run_id`, `at`, `playbook`, `changed`, `failed`."""
    if last is None:
        return None
    stats = last.stats
    if last.run_status == "running":
        word = "running"
    elif action.get("run_id") == last.run_id and action.get("reason"):
        word = _reason(action)[0]  # the recorder's own word for how the host ended
    elif stats.get("unreachable"):
        word = "unreachable"
    elif stats.get("failed"):
        word = "failed"
    elif last.run_status == "interrupted" and not last.recap:
        word = "interrupted"  # killed: nothing says which hosts had finished
    else:
        # the host finished in a run stopped on others: a host the stop cut short has this
        # run's next_action (the first branch)
        word = "changed" if stats.get("changed") else "ok"
    return {
        "status": word,
        "run_id": last.run_id,
        "run_status": last.run_status,
        "at": last.finished_at or last.started_at,
        "playbook": shown_path(last.playbook, root),
        "changed": int(stats.get("changed", 0)),
        "failed": int(stats.get("failed", 0)),
    }


def problems_of(host: dict[str, Any]) -> tuple[int, list[str]]:
    """A host summary's rank (BROKEN first, RETIRED last) and what is wrong, in words."""
    if host["status"] == "retired":
        return RETIRED, []
    broken, attention = [], []
    last = host.get("last_apply") or {}
    word = last.get("status")
    if word == "failed":
        broken.append("last apply failed")
    elif word == "unreachable":
        broken.append("last apply could not reach it")
    elif word == "interrupted":
        attention.append("last apply interrupted")
    if host["status"] == "down" and host.get("in_inventory", True):
        # (a host only the database remembers being down is no news: it is gone)
        broken.append("down" + (f": {host['error']}" if host.get("error") else ""))
    if host.get("open_alerts"):
        count = host["open_alerts"]
        broken.append(f"{count} open alert{'s' if count != 1 else ''}")
    if host.get("pending") and not (broken or attention):
        attention.append("apply pending")
    if broken:
        return BROKEN, broken + attention
    return (ATTENTION if attention else FINE), attention


def sort_key(host: dict[str, Any]) -> tuple[int, list[Any]]:
    """Worst first, then by id with numbers in order (h2 before h10)."""
    return host["rank"], natural_key(host["id"])


def natural_key(text: str) -> list[Any]:
    """Sort key putting h2 before h10."""
    import re

    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def sections(hosts: list[dict[str, Any]], inventory_loaded: bool) -> list[dict[str, Any]]:
    """The overview's sections: inventory hosts under their most specific group (`ungrouped`,
    as in Ansible, for those in no group but `all`), the sections holding the worst hosts
    first; then the hosts the database knows that the inventory does not list. Without an
    inventory there is nothing to compare with: every host is under `all`."""
    groups: dict[str, list[dict[str, Any]]] = {}
    outside: list[dict[str, Any]] = []
    for host in hosts:
        if not inventory_loaded:
            groups.setdefault("all", []).append(host)
        elif not host["in_inventory"]:
            outside.append(host)
        else:
            groups.setdefault(host["groups"][-1] if host["groups"] else NO_GROUP, []).append(host)
    result = [
        {"name": name, "hosts": sorted(members, key=sort_key), "outside": False}
        for name, members in groups.items()
    ]
    result.sort(key=_section_key)
    if outside:
        result.append(
            {"name": NOT_IN_INVENTORY, "hosts": sorted(outside, key=sort_key), "outside": True}
        )
    return result


def _section_key(section: dict[str, Any]) -> tuple[int, bool, str]:
    worst = min(int(host["rank"]) for host in section["hosts"])
    return worst, section["name"] == NO_GROUP, str(section["name"])


def facts_view(value: Any, depth: int = 0) -> dict[str, Any]:
    """A JSON value as the host page's tables show it: `{"text": ...}` for a scalar or a list
    of scalars (joined), `{"rows": [(key, view), ...]}` for an object, `{"columns": [...],
    "cells": [[view, ...], ...]}` for a list of objects; deeper than FACT_DEPTH, JSON text."""
    if isinstance(value, dict):
        if depth >= FACT_DEPTH:
            return {"text": json.dumps(value, sort_keys=True)}
        return {"rows": [(str(k), facts_view(v, depth + 1)) for k, v in sorted(value.items())]}
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value) and depth < FACT_DEPTH:
            columns: list[str] = []
            for item in value:
                columns += [str(k) for k in item if str(k) not in columns]
            cells = [[facts_view(item.get(c), depth + 1) for c in columns] for item in value]
            return {"columns": columns, "cells": cells}
        if all(not isinstance(item, dict | list) for item in value):
            return {"text": ", ".join(_scalar(item) for item in value) or "none"}
        return {"text": json.dumps(value, sort_keys=True)}
    return {"text": _scalar(value)}


def _scalar(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
