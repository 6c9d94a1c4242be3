"""Every stop is recorded: signals, timeouts and a full state database, end to end.

`machineroom apply` / `run` run as subprocesses against real lab hosts (h18, h19). A test
waits until the remote command is seen running on the host (`pgrep` over ssh), stops the run
the way a user, CI system or scheduler would, then checks what they would: the exit code, the
run's status in the database, and that nothing is left running on the hosts.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab

HOSTS = ("h18", "h19")


class Repo:
    """A throwaway inventory repo around HOSTS; the state database where the test says."""

    def __init__(self, root: Path, lab: Lab, state: Path | None = None) -> None:
        self.root = root
        self.lab = lab
        self.state = state or root / ".machineroom" / "state.db"
        lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "  children:", "    web:"]
        lines.append("      hosts:")
        for name in HOSTS:
            address = next(h.address for h in lab.hosts if h.name == name)
            lines.append(f"        {name}: {{host: {address}, user: root}}")
        (root / "inventory.yml").write_text("\n".join(lines) + "\n")
        (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
        (self.state.parent / "known_hosts").write_text(Path(lab.known_hosts).read_text())

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def start(self, *args: str) -> subprocess.Popen[str]:
        """`machineroom ARGS --state DB` in the background, output captured."""
        return subprocess.Popen(
            [sys.executable, "-m", "machineroom", args[0], "--state", str(self.state), *args[1:]],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def machineroom(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "machineroom", args[0], "--state", str(self.state), *args[1:]],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def db(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.state, timeout=10)) as conn:
            return list(conn.execute(sql))

    def ssh(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        """`command` on a lab host over OpenSSH (not machineroom: no run of ours recorded)."""
        return subprocess.run(
            ["ssh", "-F", str(self.lab.ssh_config), host, command],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def running(self, host: str, command: str) -> int:
        """How many processes on `host` run exactly `command` (not the shells around it)."""
        out = self.ssh(host, f"pgrep -cxf '{command}' || true")
        return int(out.stdout.strip() or 0)


def ended(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    """The stopped command's output once it exits; if it does not within `timeout`, it is
    killed (its pipes closed, not left to a later test) and the test fails with what it said."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout:g} s after the stop\nstdout:\n{out}\nstderr:\n{err}")


def wait_until(what: Callable[[], bool], proc: subprocess.Popen[str] | None, why: str) -> None:
    """Poll `what` (60 s at most); fail with the command's output if it never holds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if what():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    if proc is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{why}: never happened\nstdout:\n{out}\nstderr:\n{err}")
    pytest.fail(f"{why}: never happened")


@pytest.fixture
def repo(tmp_path: Path, lab: Lab) -> Repo:
    return Repo(tmp_path, lab)


def unique_sleep() -> str:
    """A `sleep N` no other test runs, so pgrep finds only ours."""
    return f"sleep {1000 + uuid.uuid4().int % 8999}"


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: str(s.name)
)
def test_a_signal_stops_apply_kills_remote_commands_and_records_it(
    repo: Repo, signum: signal.Signals
) -> None:
    sleep = unique_sleep()
    marker = f"/srv/too-late-{signum.name}"
    repo.write(
        "site.yml",
        f"""\
        - hosts: web
          gather_facts: false
          tasks:
            - command: echo started
            - shell: "{sleep} & {sleep}; touch {marker}"
            - copy: {{content: late, dest: {marker}}}
        """,
    )
    proc = repo.start("apply", "site.yml")
    wait_until(
        lambda: all(repo.running(h, sleep) == 2 for h in HOSTS), proc, "both sleeps on each host"
    )
    proc.send_signal(signum)
    stdout, stderr = ended(proc)

    assert proc.returncode == 99, stdout + stderr
    assert f"interrupted ({signum.name})" in stderr
    assert "Traceback" not in stderr
    assert [h for h in HOSTS if repo.running(h, sleep)] == []
    for host in HOSTS:  # the shell around the sleeps was killed too: it never went on
        assert repo.ssh(host, f"test -e {marker} || echo absent").stdout == "absent\n"
    ((status, summary),) = repo.db("SELECT status, summary FROM runs")
    assert status == "interrupted"
    assert f"interrupted ({signum.name})" in summary
    # results kept: the first task, and the killed one with why
    rows = repo.db("SELECT host_id, task, status, message FROM task_results ORDER BY id")
    assert {(r[0], r[2]) for r in rows if r[1] == "command"} == {(h, "changed") for h in HOSTS}
    killed = [r for r in rows if r[1] == "shell"]
    assert {r[0] for r in killed} == set(HOSTS)
    assert all(r[2] == "failed" and "killed on the host" in r[3] for r in killed), killed
    pending = dict(repo.db("SELECT id, next_action FROM server_room"))
    assert all('"interrupted' in str(pending[h]) for h in HOSTS), pending


def test_a_host_that_finished_before_the_stop_is_not_left_pending(repo: Repo) -> None:
    sleep = unique_sleep()
    first, second = HOSTS
    repo.write(
        "site.yml",
        f"""\
        - hosts: web
          gather_facts: false
          tasks:
            - command: echo started
            - command: "{sleep}"
              when: inventory_hostname == '{second}' and resumed is not defined
        """,
    )
    proc = repo.start("apply", "site.yml")
    wait_until(lambda: repo.running(second, sleep) == 1, proc, f"the sleep on {second}")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = ended(proc)
    assert proc.returncode == 99, stdout + stderr
    pending = dict(repo.db("SELECT id, next_action FROM server_room"))
    # the first host had walked the whole playbook: nothing to resume there
    assert pending[first] in (None, "", "{}"), pending
    assert '"interrupted' in str(pending[second]) and "stage" in str(pending[second]), pending
    resumed = repo.machineroom("apply", "site.yml", "--resume", "-e", "resumed=1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    hosts_run = {r[0] for r in repo.db("SELECT host_id FROM task_results WHERE run_id = 2")}
    assert hosts_run == {second}, resumed.stdout + resumed.stderr


def test_sigterm_stops_run_and_kills_its_commands(repo: Repo) -> None:
    sleep = unique_sleep()
    proc = repo.start("run", "web", "--", f"{sleep} & {sleep}")
    wait_until(lambda: all(repo.running(h, sleep) == 2 for h in HOSTS), proc, "sleeps on hosts")
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = ended(proc)
    assert proc.returncode == 99, stdout + stderr
    assert "interrupted (SIGTERM)" in stderr
    assert [h for h in HOSTS if repo.running(h, sleep)] == []
    assert repo.db("SELECT status FROM runs") == [("interrupted",)]
    # the audit log has each killed command, and the command that killed it
    audit = repo.db("SELECT host_id, command, exit_code FROM audit_log")
    assert sorted(a for a in audit if a[2] == -1) == [(h, f"{sleep} & {sleep}", -1) for h in HOSTS]
    killers = [a[0] for a in audit if a[1] == "(kill the command: the run is stopping)"]
    assert sorted(killers) == list(HOSTS)


def test_a_task_timeout_kills_the_whole_command_on_the_host(repo: Repo) -> None:
    sleep = unique_sleep()
    repo.write(
        "site.yml",
        f"""\
        - hosts: h18
          gather_facts: false
          tasks:
            - shell: "{sleep} & {sleep}; touch /srv/after-timeout"
              timeout: 2
        """,
    )
    out = repo.machineroom("apply", "site.yml")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "timed out after 2s" in out.stdout + out.stderr
    assert repo.running("h18", sleep) == 0  # the background child and the foreground one
    assert repo.ssh("h18", "test -e /srv/after-timeout || echo absent").stdout == "absent\n"


def test_a_schedule_timeout_stops_the_run_and_its_remote_command(repo: Repo) -> None:
    sleep = unique_sleep()
    repo.write(
        "site.yml",
        f"""\
        - hosts: h19
          gather_facts: false
          tasks:
            - command: {sleep}
        """,
    )
    repo.write(
        "schedules.yml",
        """\
        schedules:
          slow:
            every: 2s
            apply: site.yml
            timeout: 3s
        """,
    )
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "scheduler", "--grace", "20"],
        cwd=repo.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: repo.running("h19", sleep) == 1, scheduler, "the schedule's sleep")

        def finished() -> bool:
            with contextlib.suppress(sqlite3.OperationalError):
                return bool(repo.db("SELECT 1 FROM schedule_events WHERE event = 'finished'"))
            return False

        wait_until(finished, scheduler, "the timed-out run finished")
    finally:
        scheduler.send_signal(signal.SIGTERM)
        out, err = scheduler.communicate(timeout=60)
    assert scheduler.returncode == 0, out + err
    assert repo.running("h19", sleep) == 0
    # the timed-out run stopped on SIGTERM within the grace period: exit 99, not killed
    detail = repo.db("SELECT detail FROM schedule_events WHERE event = 'finished' ORDER BY id")
    assert detail[0][0].startswith("exit 99, interrupted"), detail
    assert "timed out after 3s" in detail[0][0]
    # (a second run may have started before the scheduler stopped: it was stopped the same way)
    runs = repo.db("SELECT status, summary FROM runs ORDER BY id")
    assert all(status == "interrupted" and "SIGTERM" in summary for status, summary in runs)


# -- a state database that fills up during a run ------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (a real full disk; we are root in the test machine), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> int:
    """Write a file in `folder` until the disk is full; its size."""
    written = 0
    with (folder / "filler").open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        while True:
            try:
                written += out.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        with contextlib.suppress(OSError):  # the last partial pages
            while out.write(b"\0" * 512):
                written += 512
    return written


def test_a_full_state_database_fails_the_run_and_stops_it(
    tmp_path: Path, lab: Lab, small_disk: Path
) -> None:
    repo = Repo(tmp_path, lab, small_disk / "state.db")
    go = f"/tmp/go-{uuid.uuid4().hex}"
    tasks = [
        "- command: echo first",
        f'- shell: "while [ ! -e {go} ]; do sleep 0.05; done"',
    ]
    tasks += [f'- shell: "head -c 20000 /dev/zero | tr \\\\0 x; echo {n}"' for n in range(57)]
    tasks.append("- copy: {content: late, dest: /srv/too-late-full}")
    repo.write(
        "site.yml",
        "- hosts: h18\n  gather_facts: false\n  tasks:\n" + "".join(f"    {t}\n" for t in tasks),
    )
    assert len(tasks) == 60
    # --no-programs: one command per task, so that the stop finds the tasks after the failed
    # write not yet started (a per-host program runs ahead of the recording: it would have
    # finished these fast tasks before the controller saw the disk full)
    proc = repo.start("apply", "site.yml", "--no-programs")

    def first_written() -> bool:
        with contextlib.suppress(sqlite3.OperationalError):
            return bool(repo.db("SELECT 1 FROM task_results WHERE task = 'command'"))
        return False

    wait_until(first_written, proc, "the first task's row")
    fill(small_disk)
    assert repo.ssh("h18", f"touch {go}").returncode == 0
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 1, stdout + stderr
    assert f"state database {repo.state}: disk full (database or disk is full)" in stderr
    assert "run 1: error" in stdout and "run 1: ok" not in stdout
    assert "Traceback" not in stderr
    # the run stopped: the last task never started
    assert repo.ssh("h18", "test -e /srv/too-late-full || echo absent").stdout == "absent\n"

    (small_disk / "filler").unlink()  # space comes back
    history = repo.machineroom("history")
    assert history.returncode == 0, history.stderr
    ((status, summary),) = repo.db("SELECT status, summary FROM runs")
    assert status in ("error", "interrupted"), status  # never left 'running'
    written = repo.db("SELECT count(*) FROM task_results")[0][0]
    assert written < 60
    print(f"full disk: {written} of 60 results written; final status {status}: {summary}")
    if status == "interrupted":  # the end could not be written: the next command swept it
        assert "still marked 'running'" in stderr
