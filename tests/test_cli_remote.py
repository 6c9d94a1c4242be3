"""run, connect and scanports end to end: the CLI as a subprocess against real sshd lab hosts."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from machineroom.lab import Lab


def machineroom(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def db_rows(repo: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        return list(db.execute(sql))


def write_inventory(repo: Path, lab: Lab, hosts: dict[str, str], extra: str = "") -> None:
    """An inventory of lab hosts; `hosts` maps name -> its inline YAML fields; `key: K` in the
    fields stands for the lab's key file."""
    lines = ["all:", "  hosts:"]
    for name, fields in hosts.items():
        lines.append(f"    {name}: {{{fields.replace('key: K', f'ssh_key: {lab.key}')}}}")
    (repo / "inventory.yml").write_text("\n".join(lines) + "\n" + extra)


def lab_host(lab: Lab, name: str) -> str:
    return next(h.address for h in lab.hosts if h.name == name)


@pytest.fixture
def repo(tmp_path: Path, lab: Lab) -> Path:
    """A fresh inventory repo listing every lab host as root, trusting the lab's host keys."""
    (tmp_path / "inventory.yml").write_text(Path(lab.inventory).read_text())
    machineroom_dir = tmp_path / ".machineroom"
    machineroom_dir.mkdir(mode=0o700)
    (machineroom_dir / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return tmp_path


def test_run_on_every_lab_host_in_parallel_is_audited(repo: Path, lab: Lab) -> None:
    started = time.monotonic()
    out = machineroom("run", "all", "--forks", "50", "--", "hostname", cwd=repo)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    for h in lab.hosts:
        assert f"── {h.name} | ok" in out.stdout
        assert f"\n{h.name}\n" in out.stdout
    assert f"{len(lab.hosts)} host(s): {len(lab.hosts)} ok, 0 failed" in out.stderr
    assert took < 15
    audit = db_rows(repo, "SELECT host_id, command, exit_code FROM audit_log ORDER BY host_id")
    assert sorted(a[0] for a in audit) == sorted(h.name for h in lab.hosts)
    assert {(a[1], a[2]) for a in audit} == {("hostname", 0)}
    run = db_rows(repo, "SELECT kind, status, summary FROM runs")
    assert run[0][:2] == ("run", "ok")
    res = dict(db_rows(repo, "SELECT id, res FROM server_room"))
    assert all(json.loads(str(r))["reachable"] is True for r in res.values())


def test_failed_command_exits_2_and_json_has_each_host(repo: Path, lab: Lab) -> None:
    out = machineroom("run", "h1:h2", "--json", "--", 'test "$(hostname)" = h1', cwd=repo)
    assert out.returncode == 2
    report = json.loads(out.stdout)
    assert report["hosts"]["h1"]["status"] == "ok"
    assert report["hosts"]["h2"] == {**report["hosts"]["h2"], "status": "failed", "exit_code": 1}
    assert report["status"] == "failed"


def test_wrong_password_marks_only_that_host_unreachable(repo: Path, lab: Lab) -> None:
    write_inventory(
        repo,
        lab,
        {
            "h1": f"host: {lab_host(lab, 'h1')}, user: deploy, password: '${{DEPLOY_PASS}}'",
            "h2": f"host: {lab_host(lab, 'h2')}, user: deploy, password: wrong-Secret-1",
            "h3": f"host: {lab_host(lab, 'h3')}, user: root, key: K",
        },
    )
    out = machineroom("run", "all", "--", "id -un", cwd=repo, env={"DEPLOY_PASS": "deploy-pass"})
    assert out.returncode == 3, out.stderr
    assert "── h1 | ok" in out.stdout and "── h3 | ok" in out.stdout
    assert "── h2 | unreachable" in out.stdout
    assert "deploy" in out.stdout.split("── h2")[1].splitlines()[1]  # names the user
    assert "Traceback" not in out.stdout + out.stderr
    res = {k: json.loads(str(v)) for k, v in db_rows(repo, "SELECT id, res FROM server_room")}
    assert res["h2"]["reachable"] is False and res["h1"]["reachable"] is True
    dump = "\n".join(sqlite3.connect(repo / ".machineroom" / "state.db").iterdump())
    assert "wrong-Secret-1" not in dump and "deploy-pass" not in dump
    assert "wrong-Secret-1" not in out.stdout + out.stderr
    passes = dict(db_rows(repo, "SELECT id, pass FROM server_room"))
    assert passes == {"h1": "env:DEPLOY_PASS", "h2": "", "h3": ""}


def test_unreachable_port_is_reported_and_exit_3(repo: Path, lab: Lab) -> None:
    write_inventory(repo, lab, {"closed": "host: 127.0.0.1, port: 1, user: root, key: K"})
    out = machineroom("run", "closed", "--", "true", cwd=repo)
    assert out.returncode == 3
    assert "── closed | unreachable" in out.stdout
    assert "refused" in out.stdout


def test_host_keys_unknown_refused_then_accepted_once_for_all(tmp_path: Path, lab: Lab) -> None:
    (tmp_path / "inventory.yml").write_text(Path(lab.inventory).read_text())
    refused = machineroom("run", "all", "--", "true", cwd=tmp_path)
    assert refused.returncode == 3
    assert "unknown host key" in refused.stdout and "--accept-new-host-keys" in refused.stdout
    accepted = machineroom("run", "all", "--accept-new-host-keys", "--", "true", cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stdout
    known = tmp_path / ".machineroom" / "known_hosts"
    assert oct(known.stat().st_mode & 0o777) == "0o600"
    assert len(known.read_text().splitlines()) == len(lab.hosts)
    again = machineroom("run", "all", "--", "true", cwd=tmp_path)
    assert again.returncode == 0


def test_changed_host_key_is_refused_even_with_accept_new(repo: Path, lab: Lab) -> None:
    known = repo / ".machineroom" / "known_hosts"
    lines = known.read_text().splitlines()
    other = lines[1].split()[1:]  # h2's key type and key, written down as h1's
    lines[0] = " ".join([lines[0].split()[0], *other])
    known.write_text("\n".join(lines) + "\n")
    out = machineroom("run", "h1", "--accept-new-host-keys", "--", "true", cwd=repo)
    assert out.returncode == 3
    assert "changed" in out.stdout.lower()
    assert str(known) in out.stdout


def test_retired_hosts_are_skipped(repo: Path, lab: Lab) -> None:
    assert machineroom("retire", "h2", cwd=repo).returncode == 0
    out = machineroom("run", "h1:h2:h3", "--", "hostname", cwd=repo)
    assert out.returncode == 0
    assert "skipping retired: h2" in out.stderr
    assert "── h2" not in out.stdout and "── h3 | ok" in out.stdout


def test_become_with_a_sudo_password_from_the_environment(repo: Path, lab: Lab) -> None:
    write_inventory(
        repo, lab, {"h4": f"host: {lab_host(lab, 'h4')}, user: ops, password: '${{OPS_PASS}}'"}
    )
    out = machineroom("run", "h4", "-b", "--", "id -un", cwd=repo, env={"OPS_PASS": "ops-pass"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "\nroot\n" in out.stdout
    dump = "\n".join(sqlite3.connect(repo / ".machineroom" / "state.db").iterdump())
    assert "ops-pass" not in dump


def test_jump_host_from_a_tunnel_profile(repo: Path, lab: Lab) -> None:
    jump, target = lab_host(lab, "h5"), lab_host(lab, "h6")
    write_inventory(
        repo,
        lab,
        {
            "h5": f"host: {jump}, user: root, key: K",
            "h6": f"host: {target}, user: root, tunnel: bastion, key: K",
            "h7": f"host: {lab_host(lab, 'h7')}, user: root, key: K",
        },
        extra=(
            f"tunnels:\n  bastion: {{type: SSH, server: {jump}, user: root, ssh_key: {lab.key}}}\n"
        ),
    )
    # All hosts share 127/8, so the peer address proves nothing: instead, while the session
    # to h6 is open, the TCP connection to h6:22 must belong to h5's sshd (visible in h5's
    # pid namespace only), not to a process on any other host.
    session = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "run", "h6", "--", 'echo "$SSH_CLIENT"; sleep 8'],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # look while the session is open (asked again until it shows: a busy machine is slow)
    while True:
        owners = machineroom("run", "h5:h7", "--json", "--", f"ss -tnpH dst {target}:22", cwd=repo)
        if '"sshd"' in json.loads(owners.stdout)["hosts"]["h5"]["stdout"]:
            break
        assert session.poll() is None, "the session ended before it was seen"
    stdout, stderr = session.communicate(timeout=60)
    assert session.returncode == 0, stdout + stderr
    peer_port = stdout.split("── h6")[1].splitlines()[1].split()[1]
    hosts = json.loads(owners.stdout)["hosts"]
    on_jump = [line for line in hosts["h5"]["stdout"].splitlines() if f":{peer_port} " in line]
    assert len(on_jump) == 1 and '"sshd"' in on_jump[0]
    assert '"sshd"' not in hosts["h7"]["stdout"]
    through = machineroom("connect", "h6", "--", "hostname", cwd=repo)
    assert through.returncode == 0, through.stderr
    assert through.stdout.strip() == "h6"


def test_connect_runs_ssh_with_the_inventory_settings(repo: Path, lab: Lab) -> None:
    out = machineroom("connect", "h1", "--", "hostname; id -un", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["h1", "root"]
    unknown = machineroom("connect", "h99", cwd=repo)
    assert unknown.returncode == 4
    assert "no host 'h99'" in unknown.stderr


def test_scanports_stores_open_ports(repo: Path, lab: Lab) -> None:
    out = machineroom("scanports", "h1:h2", "--ports", "22,2222,8000-8002", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0].split()[-1] == "22"
    res = {k: json.loads(str(v)) for k, v in db_rows(repo, "SELECT id, res FROM server_room")}
    assert res["h1"]["ports"] == [22] and res["h2"]["ports"] == [22]
    bad = machineroom("scanports", "all", "--ports", "70000", cwd=repo)
    assert bad.returncode == 4


def test_ctrl_c_marks_the_run_interrupted(repo: Path, lab: Lab) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "run", "all", "--forks", "2", "--", "sleep 1"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Ctrl-C once a first host is done (not after a fixed time: a busy machine starts slowly)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = db_rows(repo, "SELECT count(*) FROM audit_log WHERE exit_code = 0")
        except sqlite3.Error:  # the database or its tables are not there yet
            done = [(0,)]
        if done[0][0]:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 99
    finished = stdout.count("| ok")
    assert 0 < finished < len(lab.hosts)
    runs = db_rows(repo, "SELECT status FROM runs")
    assert runs == [("interrupted",)]
    # the commands still running were killed on their hosts; all of it is in the audit log
    audit = db_rows(repo, "SELECT command, exit_code FROM audit_log")
    assert sum(1 for a in audit if a == ("sleep 1", 0)) == finished
    killed = sum(1 for a in audit if a == ("sleep 1", -1))
    kills = sum(1 for a in audit if a[0] == "(kill the command: the run is stopping)")
    # each command cut short had a kill sent; a kill may also reach a command that was just
    # ending (it then counts as finished)
    assert killed <= kills, audit
    assert len(audit) == finished + killed + kills, audit
