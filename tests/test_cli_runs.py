"""`show RUN`, `show` (= ls) and `diff RUN1 RUN2` end to end, on runs recorded by the
StateRecorder into a real state database."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from machineroom.events import HostFinished, HostStats, RunFinished, RunStarted, TaskFinished
from machineroom.state import open_state
from machineroom.state.recorder import StateRecorder

DIFF = "--- before: /etc/motd\n+++ after: /etc/motd\n@@ -1 +1 @@\n-hello\n+welcome\n"


def machineroom(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def result(host: str, task_id: str, status: str, **fields: object) -> TaskFinished:
    name = str(fields.pop("task", task_id))
    return TaskFinished(host, task_id, name, "base", status, **fields)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Two recorded runs: in run 2, h1's motd is unchanged, h2's service fails, h3 is gone,
    h4 is new, and a task was added."""
    path = tmp_path / "state.db"
    store = open_state(path)
    for n in range(1, 5):
        store.upsert_server(f"h{n}", f"10.0.0.{n}", "root", "", 22)
    runs = {
        1: {
            "h1": [
                result("h1", "m", "changed", task="Write motd", diff=DIFF, location="site.yml:4"),
                result("h1", "s", "ok", task="Start app", msg="running", location="site.yml:9"),
            ],
            "h2": [
                result("h2", "m", "changed", task="Write motd", location="site.yml:4"),
                result("h2", "s", "ok", task="Start app", msg="running", location="site.yml:9"),
            ],
            "h3": [result("h3", "m", "ok", task="Write motd", location="site.yml:4")],
        },
        2: {
            "h1": [
                result("h1", "m", "ok", task="Write motd", location="site.yml:4"),
                result("h1", "s", "ok", task="Start app", msg="running", location="site.yml:9"),
                result("h1", "u", "ok", task="Uptime", stdout="up 3 days", location="site.yml:12"),
            ],
            "h2": [
                result("h2", "m", "ok", task="Write motd", location="site.yml:4"),
                result(
                    "h2",
                    "s",
                    "failed",
                    task="Start app",
                    msg="exit 3: unit app.service not found",
                    stderr="Failed to start app.service",
                    location="site.yml:9",
                ),
            ],
            "h4": [result("h4", "m", "changed", task="Write motd", location="site.yml:4")],
        },
    }
    for number, hosts in runs.items():
        run_id = store.start_run("apply", "machineroom apply site.yml", playbook="site.yml")
        assert run_id == number
        recorder = StateRecorder(store, run_id)
        recorder(RunStarted(run_id, "site.yml", tuple(hosts)))
        stats: dict[str, HostStats] = {}
        for host, events in hosts.items():
            stats[host] = HostStats()
            for event in events:
                recorder(event)
                stats[host].add(event)
            failed = [e for e in events if e.status == "failed"]
            recorder(
                HostFinished(host, "failed", "base", failed[0].task_id, failed[0].msg)
                if failed
                else HostFinished(host, "ok")
            )
        status = "failed" if any(s.failed for s in stats.values()) else "ok"
        recorder(RunFinished(run_id, status, stats, 3.25))  # type: ignore[arg-type]
        recorder.close()
        assert recorder.errors == []
    store.close()
    return path


def test_show_run_prints_summary_recap_and_results(db: Path) -> None:
    out = machineroom("show", "2", "--state", str(db), cwd=db.parent)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("run 2  apply  failed  (")
    assert "  playbook  site.yml" in text
    assert "h2 : ok=1    changed=0    unreachable=0    failed=1" in text
    lines = text.splitlines()
    assert any(
        line.startswith("  failed") and "Start app  exit 3: unit app.service not found" in line
        for line in lines
    )
    assert "up 3 days" not in text  # output only with --host


def test_show_run_host_gives_detail(db: Path) -> None:
    out = machineroom("show", "1", "--host", "h1", "--state", str(db), cwd=db.parent)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "\nh1\n" in text and "\nh2\n" not in text
    assert "h1 : ok=2    changed=1" in text and "h2 :" not in text
    assert "      at site.yml:4" in text
    assert "      +welcome" in text and "      -hello" in text
    detail = machineroom("show", "2", "--host", "h1", "--state", str(db), cwd=db.parent)
    assert "      stdout:\n        up 3 days" in detail.stdout


def test_show_run_json(db: Path) -> None:
    out = machineroom("show", "2", "--host", "h2", "--json", "--state", str(db), cwd=db.parent)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["id"] == 2 and doc["run"]["status"] == "failed"
    assert doc["run"]["summary"]["hosts"]["h2"]["failed"] == 1
    assert [r["status"] for r in doc["hosts"]["h2"]] == ["ok", "failed"]
    assert doc["hosts"]["h2"][1]["stderr"] == "Failed to start app.service"


def test_show_unknown_run_or_host_is_invalid_input(db: Path) -> None:
    out = machineroom("show", "9", "--state", str(db), cwd=db.parent)
    assert out.returncode == 4
    assert "no run 9 in" in out.stderr
    out = machineroom("show", "2", "--host", "h9", "--state", str(db), cwd=db.parent)
    assert out.returncode == 4
    assert "run 2 has no results for host 'h9'; expected one of h1, h2, h4" in out.stderr
    out = machineroom("show", "--host", "h1", "--state", str(db), cwd=db.parent)
    assert out.returncode == 5


def test_show_without_a_run_is_ls(db: Path) -> None:
    ls = machineroom("ls", "--state", str(db), cwd=db.parent)
    show = machineroom("show", "--state", str(db), cwd=db.parent)
    assert ls.returncode == show.returncode == 0, show.stderr
    ages = re.compile(r"\d+[smhd] ago")  # the two ran a moment apart
    assert ages.sub("_ ago", show.stdout) == ages.sub("_ ago", ls.stdout)
    assert "h2" in show.stdout and "base" in show.stdout  # h2's pending stage
    as_json = machineroom("show", "--json", "--state", str(db), cwd=db.parent)
    assert json.loads(as_json.stdout) == json.loads(
        machineroom("ls", "--json", "--state", str(db), cwd=db.parent).stdout
    )


def test_diff_lists_what_changed_between_runs(db: Path) -> None:
    out = machineroom("diff", "1", "2", "--state", str(db), cwd=db.parent)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("run 1 (apply ok, ") and "  ->  run 2 (apply failed, " in text
    h1 = text[text.index("\nh1\n") : text.index("\nh2\n")]
    assert "  ~ Write motd  changed -> ok" in h1
    assert "Start app" not in h1  # the same in both runs
    assert "  + Uptime  (only in run 2: ok)" in h1
    h2 = text[text.index("\nh2\n") :]
    assert "  ~ Start app  ok -> failed" in h2
    assert "      was: running\n      now: exit 3: unit app.service not found" in h2
    assert "hosts only in run 1: h3" in text
    assert "hosts only in run 2: h4" in text


def test_diff_json_and_no_differences(db: Path) -> None:
    out = machineroom("diff", "1", "2", "--json", "--state", str(db), cwd=db.parent)
    doc = json.loads(out.stdout)
    assert doc["run1"] == 1 and doc["run2"] == 2
    assert doc["hosts"]["h1"]["only_in_run2"][0]["task"] == "Uptime"
    assert [c["after"]["status"] for c in doc["hosts"]["h2"]["changed"]] == ["ok", "failed"]
    assert doc["hosts_only_in_run1"] == ["h3"] and doc["hosts_only_in_run2"] == ["h4"]
    same = machineroom("diff", "2", "2", "--state", str(db), cwd=db.parent)
    assert same.returncode == 0
    assert same.stdout.splitlines()[-1] == "no differences in task results"
    missing = machineroom("diff", "1", "7", "--state", str(db), cwd=db.parent)
    assert missing.returncode == 4 and "no run 7" in missing.stderr
