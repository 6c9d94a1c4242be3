"""`run -- COMMAND`, `facts` and `scan-docker` leave the same kind of run as `apply`: a runs row
with its final status, one task_results row per host in apply's status words, the audit log,
each host's reachability; their output and `--json` as before. End to end on lab hosts h1-h7
(the CLI tests' hosts): a test that changes a host undoes it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.test_cli_remote import db_rows, lab_host, machineroom, write_inventory


@pytest.fixture
def root(tmp_path: Path, lab: Lab) -> Path:
    """An inventory repo of every lab host as root, trusting the lab's host keys."""
    (tmp_path / "inventory.yml").write_text(Path(lab.inventory).read_text())
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return tmp_path


def last_run(repo: Path) -> tuple[int, str, str, dict[str, Any], dict[str, Any]]:
    """The latest run: id, kind, status, args, summary."""
    rows = db_rows(repo, "SELECT id, kind, status, args, summary FROM runs ORDER BY id DESC")
    run_id, kind, status, args, summary = rows[0]
    return (
        int(str(run_id)),
        str(kind),
        str(status),
        json.loads(str(args)),
        json.loads(str(summary or "{}")),
    )


def task_rows(repo: Path, run_id: int) -> dict[str, tuple[str, str]]:
    """host -> (status, message) of the run's task rows (one per host, or the test fails)."""
    rows = db_rows(
        repo, f"SELECT host_id, status, message FROM task_results WHERE run_id = {run_id}"
    )
    assert len(rows) == len({r[0] for r in rows}), rows
    return {str(h): (str(s), str(m or "")) for h, s, m in rows}


def audit_rows(repo: Path, run_id: int) -> list[tuple[str, str, int]]:
    """(host, command, exit code) of the run's audit log, by host."""
    sql = f"SELECT host_id, command, exit_code FROM audit_log WHERE run_id = {run_id}"
    rows = db_rows(repo, sql + " ORDER BY host_id")
    return [(str(h), str(c), int(str(e))) for h, c, e in rows]


def res_of(repo: Path) -> dict[str, dict[str, Any]]:
    """Each server's `res`."""
    return {str(k): json.loads(str(v)) for k, v in db_rows(repo, "SELECT id, res FROM server_room")}


def test_run_command_is_a_recorded_one_task_run(root: Path, lab: Lab) -> None:
    command = 'test "$(hostname)" = h1 && echo "{{ not_a_var }} ${#HOME}"'
    out = machineroom("run", "h1:h2", "--", command, cwd=root)
    assert out.returncode == 2, out.stdout + out.stderr
    # the per-host blocks and the summary line, as before
    assert "── h1 | ok | " in out.stdout and "── h2 | failed (exit 1) | " in out.stdout
    # the command as typed: never rendered as a template
    assert "\n{{ not_a_var }} 5\n" in out.stdout
    assert "2 host(s): 1 ok, 1 failed, 0 unreachable  (run 1)" in out.stderr
    run_id, kind, status, args, summary = last_run(root)
    assert (run_id, kind, status) == (1, "run", "failed")
    assert args == {"pattern": "h1:h2", "command": command}
    assert summary["totals"]["changed"] == 1 and summary["totals"]["failed"] == 1
    # one task row per host, in apply's words (raw is always changed)
    assert {h: s for h, (s, _) in task_rows(root, run_id).items()} == {
        "h1": "changed",
        "h2": "failed",
    }
    assert audit_rows(root, run_id) == [("h1", command, 0), ("h2", command, 1)]
    res = res_of(root)
    assert res["h1"]["reachable"] is True and res["h2"]["reachable"] is True
    assert res["h2"]["last_seen"]

    again = machineroom("run", "h1:h2", "--json", "--", command, cwd=root)
    assert again.returncode == 2
    report = json.loads(again.stdout)
    assert (report["run"], report["status"]) == (2, "failed")
    assert report["hosts"]["h1"] == {
        **report["hosts"]["h1"],
        "status": "ok",
        "exit_code": 0,
        "stdout": "{{ not_a_var }} 5\n",
        "stderr": "",
        "error": "",
    }
    assert report["hosts"]["h2"]["status"] == "failed" and report["hosts"]["h2"]["exit_code"] == 1
    assert isinstance(report["hosts"]["h1"]["duration"], float)


def test_run_keeps_the_pending_stage_apply_resumes(root: Path, lab: Lab) -> None:
    assert machineroom("run", "h1", "--", "true", cwd=root).returncode == 0
    pending = {"stage": "docker", "reason": "failed: x", "run_id": 1}
    with sqlite3.connect(root / ".machineroom" / "state.db") as db:
        db.execute("UPDATE server_room SET next_action = ? WHERE id = 'h1'", (json.dumps(pending),))
    assert machineroom("run", "h1", "--", "true", cwd=root).returncode == 0
    assert machineroom("facts", "h1", cwd=root).returncode == 0
    (action,) = db_rows(root, "SELECT next_action FROM server_room WHERE id = 'h1'")[0]
    assert json.loads(str(action)) == pending  # an ad-hoc run is nothing --resume continues


def test_facts_failed_is_failed_and_unreachable_is_unreachable(root: Path, lab: Lab) -> None:
    # a real failure of the facts script: an account whose shell refuses every command
    setup = (
        "id nologin-mr >/dev/null 2>&1 || useradd -m -s /usr/sbin/nologin nologin-mr;"
        " mkdir -p ~nologin-mr/.ssh; cp ~/.ssh/authorized_keys ~nologin-mr/.ssh/;"
        " chown -R nologin-mr ~nologin-mr/.ssh"
    )
    made = machineroom("run", "h2", "--", setup, cwd=root)
    assert made.returncode == 0, made.stdout + made.stderr
    try:
        write_inventory(
            root,
            lab,
            {
                "h1": f"host: {lab_host(lab, 'h1')}, user: root, key: K",
                "h2": f"host: {lab_host(lab, 'h2')}, user: nologin-mr, key: K",
                "closed": "host: 127.0.0.1, port: 1, user: root, key: K",
            },
        )
        out = machineroom("facts", "all", cwd=root)
        assert out.returncode == 3, out.stdout + out.stderr  # unreachable beats failed
        assert out.stdout.startswith("h1 ") and "h2" not in out.stdout
        assert "h2: " in out.stderr and "closed: unreachable: " in out.stderr
        run_id, kind, status, args, _ = last_run(root)
        assert (kind, status, args) == ("facts", "unreachable", {"pattern": "all"})
        rows = task_rows(root, run_id)
        assert {h: s for h, (s, _) in rows.items()} == {
            "h1": "ok",
            "h2": "failed",
            "closed": "unreachable",
        }
        # the facts script's commands are in the audit log under their label
        audit = audit_rows(root, run_id)
        assert {(h, c) for h, c, _ in audit} == {("h1", "(gather facts)"), ("h2", "(gather facts)")}
        assert [e for h, _, e in audit if h == "h2"] != [0]
        res = res_of(root)
        assert res["h2"]["reachable"] is True and "facts" not in res["h2"]  # failed, not gone
        assert res["closed"]["reachable"] is False and "refused" in res["closed"]["last_error"]
        assert res["h1"]["facts"]["hostname"] == "h1"
        facts_rows = db_rows(root, f"SELECT host_id FROM facts WHERE run_id = {run_id}")
        assert facts_rows == [("h1",)]

        failed = machineroom("facts", "h1:h2", "--json", "--timeout", "30.5", cwd=root)
        assert failed.returncode == 2, failed.stdout + failed.stderr
        gathered = json.loads(failed.stdout)
        assert list(gathered) == ["h1"] and gathered["h1"]["hostname"] == "h1"
        assert last_run(root)[2] == "failed"
    finally:
        write_inventory(root, lab, {"h2": f"host: {lab_host(lab, 'h2')}, user: root, key: K"})
        machineroom("run", "h2", "--", "userdel -r nologin-mr", cwd=root)


DOCKER = "/usr/local/bin/docker"  # on the login shell's PATH
FAKE_DOCKER = """\
#!/bin/sh
# a docker client stand-in for the scan: `docker ps -a` lists two containers
echo '{"ID":"0123456789abcdef","Names":"web","Image":"nginx:1","State":"running",'\
'"Status":"Up 1 hour","Labels":"com.docker.compose.project=site,com.docker.compose.service=web"}'
echo '{"ID":"fedcba9876543210","Names":"job","Image":"busybox","State":"exited",'\
'"Status":"Exited (0)","Labels":""}'
"""
BROKEN_DOCKER = """\
#!/bin/sh
echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2
exit 1
"""


def test_scan_docker_is_a_recorded_one_task_run(root: Path, lab: Lab) -> None:
    for host, script in (("h6", FAKE_DOCKER), ("h7", BROKEN_DOCKER)):
        install = f"cat > {DOCKER} <<'EOF'\n{script}EOF\nchmod 755 {DOCKER}"
        made = machineroom("run", host, "--", install, cwd=root)
        assert made.returncode == 0, made.stdout + made.stderr
    try:
        out = machineroom("scan-docker", "h6:h7", cwd=root)
        assert out.returncode == 2, out.stdout + out.stderr  # docker failed on h7
        assert "h6: 2 container(s), 1 running" in out.stdout and "  web " in out.stdout
        assert "h7: Cannot connect to the Docker daemon" in out.stderr
        run_id, kind, status, args, _ = last_run(root)
        assert (kind, status, args) == ("scan-docker", "failed", {"pattern": "h6:h7"})
        rows = task_rows(root, run_id)
        assert {h: s for h, (s, _) in rows.items()} == {"h6": "ok", "h7": "failed"}
        assert rows["h7"][1].startswith("Cannot connect to the Docker daemon")
        audit = audit_rows(root, run_id)
        assert audit == [("h6", "(scan docker)", 0), ("h7", "(scan docker)", 3)]
        res = res_of(root)
        assert [(c["name"], c["state"]) for c in res["h6"]["containers"]] == [
            ("job", "exited"),
            ("web", "running"),
        ]
        assert res["h6"]["containers"][1]["project"] == "site" and res["h6"]["containers_at"]
        assert res["h7"]["docker_error"].startswith("Cannot connect to the Docker daemon")
        assert res["h7"]["reachable"] is True

        scan = machineroom("scan-docker", "h6:h7", "--json", cwd=root)
        assert scan.returncode == 2, scan.stderr
        assert scan.stderr == ""  # with --json, the failure is in the document
        found = json.loads(scan.stdout)
        assert found["h7"] == {"error": res["h7"]["docker_error"]}
        assert found["h6"]["docker"] is True
        assert found["h6"]["containers"][1]["id"] == "0123456789ab"
    finally:
        machineroom("run", "h6:h7", "--", f"rm -f {DOCKER}", cwd=root)
