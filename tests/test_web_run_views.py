"""The run pages' logic without a server: the task x host matrix (order, folding, filters),
the CLI recap's counts, durations, and the audit log's one-line module calls."""

from __future__ import annotations

from typing import Any

from machineroom.executor.action_text import describe_call
from machineroom.masking import SECRETS
from machineroom.state.records import RunRow
from machineroom.web.run_views import (
    build_matrix,
    details,
    format_seconds,
    host_count,
    ignored,
    recap_counts,
)

_ids = iter(range(1, 10_000))


def result(host: str, task: str, status: str, message: str = "", diff: str = "") -> dict[str, Any]:
    """A task_results row as the store hands it out."""
    return {
        "id": next(_ids),
        "host_id": host,
        "task": task,
        "location": f"site.yml:{len(task)}",
        "status": status,
        "message": message,
        "diff": diff,
        "stdout": "",
        "stderr": "",
    }


def run_row(summary: dict[str, Any], **fields: Any) -> RunRow:
    """A runs row."""
    base: dict[str, Any] = {
        "id": 1,
        "kind": "apply",
        "command": "machineroom apply site.yml",
        "user": "ops",
        "workstation": "ws",
        "pid": 1,
        "started_at": "2026-01-01T10:00:00.000Z",
        "finished_at": "2026-01-01T10:03:05.500Z",
        "status": "ok",
        "playbook": "site.yml",
        "inventory": None,
        "git_commit": None,
        "summary": summary,
    }
    return RunRow(**{**base, **fields})


def test_identical_hosts_fold_into_one_column_in_host_order() -> None:
    rows = []
    for host in ("web10", "web2", "web1", "db1"):  # finishing order, not name order
        rows.append(result(host, "Write motd", "changed", diff="+hello"))
        status = "failed" if host == "db1" else "ok"
        rows.append(result(host, "Check", status, message="boom" if status == "failed" else ""))
    matrix = build_matrix(rows)
    assert [c.label for c in matrix.columns] == ["db1", "web1, web2, web10"]  # failed first
    assert [t["task"] for t in matrix.tasks] == ["Write motd", "Check"]
    assert matrix.folded


def test_columns_with_a_failure_come_first() -> None:
    rows = [
        result("a1", "Copy", "changed", diff="+1"),
        result("b2", "Copy", "ok"),
        result("c3", "Copy", "unreachable", message="no route"),
        result("d4", "Copy", "failed", message="boom"),
    ]
    assert [c.label for c in build_matrix(rows).columns] == ["c3", "d4", "a1", "b2"]


def test_more_than_three_identical_hosts_are_counted() -> None:
    rows = [result(f"h{n}", "Ping", "ok") for n in range(1, 8)]
    (column,) = build_matrix(rows).columns
    assert column.label == "7 hosts" and column.hosts[0] == "h1" and column.hosts[-1] == "h7"


def test_a_different_message_or_diff_keeps_hosts_apart() -> None:
    rows = [
        result("a", "Copy", "changed", diff="+1"),
        result("b", "Copy", "changed", diff="+2"),
        result("c", "Copy", "changed", diff="+1"),
    ]
    assert [c.label for c in build_matrix(rows).columns] == ["a, c", "b"]


def test_tasks_keep_the_order_hosts_ran_them_in() -> None:
    rows = [
        result("a", "one", "ok"),
        result("a", "three", "ok"),
        result("b", "one", "ok"),
        result("b", "two", "skipped"),  # only b ran it, between one and three
        result("b", "three", "ok"),
        result("b", "three", "ok"),  # a handler notified twice: its own row
    ]
    matrix = build_matrix(rows)
    assert [(t["task"], t["nth"]) for t in matrix.tasks] == [
        ("one", 1),
        ("two", 1),
        ("three", 1),
        ("three", 2),
    ]


def test_only_keeps_tasks_and_columns_with_those_statuses() -> None:
    rows = [
        result("a", "Copy", "changed", diff="+1"),
        result("a", "Check", "ok"),
        result("b", "Copy", "changed", diff="+1"),
        result("b", "Check", "failed", message="no"),
    ]
    failed = build_matrix(rows, ("failed",))
    assert [t["task"] for t in failed.tasks] == ["Check"]
    assert [c.label for c in failed.columns] == ["b"]
    changed = build_matrix(rows, ("changed",))
    assert [t["task"] for t in changed.tasks] == ["Copy"]
    assert [c.label for c in changed.columns] == ["b", "a"]  # b failed elsewhere: first
    assert build_matrix(rows, ("unreachable",)).tasks == []


def test_counts_are_the_cli_recaps_ok_includes_changed() -> None:
    totals = {"ok": 5, "changed": 3, "failed": 1, "skipped": 0, "unreachable": 0}
    assert recap_counts(run_row({"totals": totals})) == totals
    # no recorded summary (a run still going): the rows, counted the same way
    raw = {"ok": 2, "changed": 3, "failed": 1}
    assert recap_counts(run_row({}), raw) == {
        "ok": 5,
        "changed": 3,
        "failed": 1,
        "unreachable": 0,
        "skipped": 0,
    }
    # a failure the task ignored is ok to the recap (ok=N ignored=1), not failed
    ignoring = {"ok": 2, "changed": 1, "failed": 2, "ignored": 1}
    counts = recap_counts(run_row({}), ignoring)
    assert (counts["ok"], counts["failed"]) == (4, 1)


def test_hosts_whose_output_differs_never_fold_and_keep_their_own_blocks() -> None:
    rows = [result(h, "Check the disk", "failed", "non-zero return code") for h in "abc"]
    rows[0]["stderr"] = "/var is 99% full"
    rows[1]["stderr"] = "/srv is 97% full"
    rows[2]["stderr"] = "/var is 99% full"
    matrix = build_matrix(rows)
    assert sorted(c.label for c in matrix.columns) == ["a, c", "b"]
    blocks = details(matrix)
    assert sorted((b["stderr"], tuple(b["hosts"])) for b in blocks) == [
        ("/srv is 97% full", ("b",)),
        ("/var is 99% full", ("a", "c")),
    ]


def test_an_ignored_failure_is_its_own_look_not_a_failure() -> None:
    rows = [result("a", "Probe", "failed", "rc=1 (ignored)"), result("b", "Copy", "changed")]
    rows[0]["ignored"] = 1
    matrix = build_matrix(rows)
    assert [c.label for c in matrix.columns] == ["b", "a"]  # a ignored: not first
    assert [c.cells[k]["look"] for c in matrix.columns for k in c.cells] == ["changed", "ignored"]
    assert [b["task"]["task"] for b in details(matrix)] == ["Copy"]
    assert [g["task"]["task"] for g in ignored(matrix)] == ["Probe"]
    assert build_matrix(rows, ("failed",)).tasks == []


def test_host_counts_and_durations_of_every_kind_of_summary() -> None:
    assert host_count(run_row({"hosts": {"a": {}, "b": {}}})) == 2
    assert host_count(run_row({"hosts": 12})) == 12  # a collection's summary
    assert host_count(run_row({"hosts": True})) == 0
    assert format_seconds(run_row({}).seconds()) == "3m05s"
    assert format_seconds(run_row({"duration": 0.4217}).seconds()) == "0.42s"
    assert run_row({}, finished_at=None, status="running").seconds() is None
    assert format_seconds(3723) == "1h02m03s"


def test_a_module_call_reads_as_the_task_wrote_it() -> None:
    assert describe_call("command", {"cmd": "systemctl restart nginx"}, "cmd") == (
        "command: systemctl restart nginx"
    )
    assert describe_call("copy", {"dest": "/etc/motd", "content": "a\nb\n", "mode": "0644"}) == (
        "copy: dest=/etc/motd content=(2 lines, 4 bytes) mode=0644"
    )
    assert describe_call("command", {"argv": ["echo", "a b"]}) == "command: echo 'a b'"
    assert describe_call("shell", {"cmd": "set -e\nmake\n"}, "cmd") == "shell: set -e … (2 lines)"
    assert describe_call("ping", {}) == "ping"


def test_a_module_call_never_shows_a_secret() -> None:
    assert describe_call("user", {"name": "bob", "password": "x"}) == "user: name=bob password=***"
    assert describe_call("command", {"cmd": "echo hi"}, "cmd", no_log=True) == (
        "command: (hidden: no_log)"
    )
    secret = "s3cr3t-" + "x" * 80  # masked before it is shortened: no prefix of it shows
    SECRETS.add(secret)
    try:
        shown = describe_call("uri", {"url": "https://h/", "body": secret + "-tail"})
        assert "s3cr3t" not in shown and "body=(" in shown
        shown = describe_call("debug", {"msg": "x " + secret})
        assert "s3cr3t" not in shown and "x ***" in shown
    finally:
        SECRETS.clear()


def test_secret_names_payloads_and_url_passwords_are_hidden_at_every_depth() -> None:
    shown = describe_call(
        "uri",
        {
            "url": "https://admin:hunter2pw@api.example/v1",
            "headers": {"Authorization": "Bearer abc123"},
            "body": {"password": "s3cretvalue"},
            "force_basic_auth": True,
        },
    )
    assert shown == (
        "uri: url=https://***@api.example/v1 headers=(1 entry) body=(1 entry) force_basic_auth=true"
    )
    # any module, ours or an ansible-core one: secret names at every depth, payloads by size
    shown = describe_call(
        "community.mysql.mysql_user",
        {"login": {"user": "root", "login_password": "pw-1"}, "extra": [{"api_key": "k-2"}]},
    )
    assert shown == (
        'community.mysql.mysql_user: login={"user":"root","login_password":"***"} '
        'extra=[{"api_key":"***"}]'
    )
    assert describe_call("copy", {"dest": "/etc/token", "content": "tok-1"}) == (
        "copy: dest=/etc/token content=(5 bytes)"
    )
    assert describe_call("command", {"cmd": "wc -c", "stdin": "pw\nx"}, "cmd") == (
        "command: wc -c stdin=(2 lines, 4 bytes)"
    )
    assert describe_call("shell", {"cmd": "curl https://u:p4ss@h/x"}, "cmd") == (
        "shell: curl https://***@h/x"
    )
    assert describe_call("get_url", {"url": "https://h/f", "X-Api-Key": "k"}) == (
        "get_url: url=https://h/f X-Api-Key=***"
    )
