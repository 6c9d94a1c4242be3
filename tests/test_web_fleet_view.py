"""The fleet pages' words, from the rows the recorder writes (next_action as
state/recorder.py writes it, last applies as state/last_apply.py reads them)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from machineroom.state.last_apply import LastApply
from machineroom.web.fleet_view import (
    BROKEN,
    FINE,
    NOT_IN_INVENTORY,
    facts_view,
    forget_command,
    last_apply_view,
    pending_words,
    problems_of,
    sections,
)

ROOT = Path("/srv/infra")
INTERRUPTED = {
    "run_id": 7,
    "reason": "interrupted: interrupted",
    "at": "2026-12-07T18:04:52.317Z",
    "playbook": "/srv/infra/playbooks/site.yml",
    "stage": "main",
    "task": "playbooks/site.yml:6",
    "location": "playbooks/site.yml:6:7",
    "task_name": "Wait for the deploy window",
}


@pytest.mark.parametrize(
    ("action", "text", "command"),
    [
        (
            INTERRUPTED,
            "apply interrupted at task “Wait for the deploy window” (playbooks/site.yml:6:7)",
            "machineroom apply playbooks/site.yml --resume",
        ),
        (
            {
                **INTERRUPTED,
                "reason": "failed: non-zero return code",
                "stage": "docker",
                "task_name": "Install docker",
            },
            "apply failed at task “Install docker” in stage docker (playbooks/site.yml:6:7): "
            "non-zero return code",
            "machineroom apply playbooks/site.yml --resume",
        ),
        (
            # unreachable before its first task: no task, and a playbook outside the repo
            {
                "run_id": 3,
                "reason": "unreachable: connection refused",
                "stage": "cert",
                "playbook": "/elsewhere/site.yml",
            },
            "apply could not reach the host in stage cert: connection refused",
            "machineroom apply /elsewhere/site.yml --resume",
        ),
        # a path a shell would split or expand is quoted
        (
            {**INTERRUPTED, "playbook": "/srv/infra/my plays/$(reboot).yml"},
            "apply interrupted at task “Wait for the deploy window” (playbooks/site.yml:6:7)",
            "machineroom apply 'my plays/$(reboot).yml' --resume",
        ),
        # no stage: `apply --resume` would not resume it, so no command is offered
        ({"reason": "failed: boom"}, "apply failed: boom", ""),
        ({}, "", ""),
    ],
)
def test_pending_is_said_in_words(action: dict[str, Any], text: str, command: str) -> None:
    words = pending_words(action, ROOT)
    assert (words["text"], words["command"]) == (text, command)


def test_the_forget_command_quotes_each_id() -> None:
    assert forget_command(["old1", "it's", "a b"]) == "machineroom forget old1 'it'\"'\"'s' 'a b'"


def last(status: str = "failed", **stats: int) -> LastApply:
    return LastApply("web1", 7, status, "2026-12-07T18:04:40Z", None, "site.yml", dict(stats))


@pytest.mark.parametrize(
    ("row", "action", "word"),
    [
        (last("ok", ok=3, changed=1), {}, "changed"),
        (last("ok", ok=3), {}, "ok"),
        (last("failed", ok=1, failed=1), {}, "failed"),
        (last("unreachable", unreachable=1), {}, "unreachable"),
        # the stopped task counts as failed; the recorder's own word says what happened
        (last("interrupted", ok=1, failed=1), INTERRUPTED, "interrupted"),
        # a host that finished in a run stopped on other hosts: its own outcome
        (last("interrupted", ok=2, changed=1), {}, "changed"),
        (last("interrupted", ok=1), {**INTERRUPTED, "run_id": 2}, "ok"),
        # a killed run (no recap, its task results counted): it may have been cut short
        (replace(last("interrupted", ok=1), recap=False), {}, "interrupted"),
        # a pending record of another run does not speak for this one
        (last("failed", failed=1), {**INTERRUPTED, "run_id": 2}, "failed"),
        (last("running", changed=2), {}, "running"),
    ],
)
def test_the_last_apply_word(row: LastApply, action: dict[str, Any], word: str) -> None:
    view = last_apply_view(row, action, ROOT)
    assert view is not None and view["status"] == word
    assert last_apply_view(None, action, ROOT) is None


def host(**fields: Any) -> dict[str, Any]:
    base = {"id": "web1", "status": "up", "groups": [], "in_inventory": True, "open_alerts": 0}
    base.update(fields)
    base["rank"], base["problems"] = problems_of(base)
    return base


def test_problems_rank_what_is_broken_first() -> None:
    assert problems_of(host(last_apply={"status": "failed"})) == (BROKEN, ["last apply failed"])
    assert problems_of(host(status="down", error="refused", open_alerts=2)) == (
        BROKEN,
        ["down: refused", "2 open alerts"],
    )
    assert problems_of(host(last_apply={"status": "changed"})) == (FINE, [])
    # a host the inventory no longer lists, last seen down, is not failing
    assert problems_of(host(status="down", in_inventory=False)) == (FINE, [])
    assert problems_of(host(pending="apply failed: boom"))[1] == ["apply pending"]
    retired = host(status="retired", last_apply={"status": "failed"})
    assert retired["rank"] > FINE and retired["problems"] == []


def test_sections_put_the_worst_first_and_strangers_last() -> None:
    hosts = [
        host(id="db1", groups=["db"]),
        host(id="web2", groups=["web"], last_apply={"status": "failed"}),
        host(id="web10", groups=["web"]),
        host(id="lonely"),
        host(id="old1", in_inventory=False, status="down"),
    ]
    found = sections(hosts, inventory_loaded=True)
    assert [(s["name"], [h["id"] for h in s["hosts"]]) for s in found] == [
        ("web", ["web2", "web10"]),
        ("db", ["db1"]),
        ("ungrouped", ["lonely"]),
        (NOT_IN_INVENTORY, ["old1"]),
    ]
    # without an inventory nothing can be said to be outside it
    assert [s["name"] for s in sections(hosts, inventory_loaded=False)] == ["all"]


def test_facts_become_rows_and_tables() -> None:
    view = facts_view(
        {
            "os": {"id": "debian", "version": "12"},
            "disks": [{"mount": "/", "size_mb": 2048}, {"mount": "/tmp", "device": "tmpfs"}],
            "addresses": ["10.0.0.1", "fe80::1"],
            "compose": None,
            "docker": True,
        }
    )
    rows = dict(view["rows"])
    assert rows["os"] == {"rows": [("id", {"text": "debian"}), ("version", {"text": "12"})]}
    assert rows["disks"]["columns"] == ["mount", "size_mb", "device"]
    assert rows["disks"]["cells"][1] == [{"text": "/tmp"}, {"text": "–"}, {"text": "tmpfs"}]
    assert rows["addresses"] == {"text": "10.0.0.1, fe80::1"}
    assert (rows["compose"], rows["docker"]) == ({"text": "–"}, {"text": "yes"})
    deep: dict[str, Any] = {"a": {"b": {"c": {"d": {"e": 1}}}}}
    inner = facts_view(deep)["rows"][0][1]["rows"][0][1]["rows"][0][1]["rows"][0][1]
    assert inner == {"text": '{"e": 1}'}
