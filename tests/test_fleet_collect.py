"""`machineroom collect`, `status` and `metrics` against real sshd hosts (fleet_lab h1-h4).

h1-h3 are collected as root with the lab key; h4 gets a restricted collection key.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
from clirun import machineroom

from machineroom.lab import Lab
from machineroom.modules.base import CommandOutput, ModuleContext
from machineroom.modules.collect import CollectModule
from machineroom.modules.collect_script import Collector, build_script, parse_collection
from machineroom.state import open_state
from machineroom.state.metrics import HostCollection, now_unix

DEAD = "127.0.2.250"  # nothing listens there: an unreachable host


def rows(repo: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with sqlite3.connect(repo / ".machineroom" / "state.db") as db:
        return list(db.execute(sql, params))


def address(lab: Lab, index: int) -> str:
    return lab.hosts[index].address


def make_repo(tmp_path: Path, lab: Lab, hosts: dict[str, str], all_vars: str = "") -> Path:
    """An inventory repo with `hosts` (name -> inline YAML fields) trusting the lab's keys."""
    lines = ["all:", "  vars:", f"    ssh_key: {lab.key}", "    user: root"]
    lines += [f"    {line}" for line in all_vars.splitlines()]
    lines += ["  children:", "    web:", "      hosts:"]
    lines += [f"        {name}: {{{fields}}}" for name, fields in hosts.items()]
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    folder = tmp_path / ".machineroom"
    folder.mkdir(mode=0o700)
    (folder / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return tmp_path


@pytest.fixture
def repo(tmp_path: Path, fleet_lab: Lab) -> Path:
    """h1-h3 of the fleet lab, with a custom collector printing JSON."""
    document = '{"status": {"peers": 12, "synced": true}, "v": "x"}'
    collectors = f"collectors:\n  pop: {json.dumps('printf ' + repr(document))}\n"
    collectors += '  broken: "echo not json"\n'
    hosts = {f"h{i + 1}": f"host: {address(fleet_lab, i)}" for i in range(3)}
    return make_repo(tmp_path, fleet_lab, hosts, collectors)


def test_collect_stores_samples_status_run_and_audit(repo: Path) -> None:
    first = machineroom("collect", "all", cwd=repo)
    assert first.returncode == 0, first.stderr
    assert "collected 3/3 hosts" in first.stderr
    for name in ("h1", "h2", "h3"):
        assert name in first.stdout
    assert "collector broken: output is not JSON" in first.stdout
    time.sleep(1.1)  # the next samples need a later second (samples are keyed by second)
    second = machineroom("collect", "web", "--json", cwd=repo)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["unreachable"] == 0
    by_host = {h["host"]: h for h in report["hosts"]}
    metrics = by_host["h2"]["metrics"]
    # Real readings of a lab host: its / is a 2 GiB tmpfs-backed overlay, two CPUs shared.
    assert metrics["mem_total_bytes"] > 100 * 2**20
    assert 0 <= metrics["mem_used_pct"] <= 100
    assert 0 <= metrics["cpu_used_pct"] <= 100
    assert metrics["disk_size_bytes:/"] > 0
    assert metrics["uptime_seconds"] > 0
    assert metrics["pop.status.peers"] == 12
    assert metrics["pop.status.synced"] == 1
    assert "pop.v" not in metrics  # strings are not metrics
    assert metrics["broken.ok"] == 0
    # The time-series table (the `metrics` view) has both collections of each metric.
    counts = rows(
        repo,
        "SELECT host_id, COUNT(*) FROM metrics WHERE metric = 'load1' GROUP BY host_id",
    )
    assert sorted(counts) == [("h1", 2), ("h2", 2), ("h3", 2)]
    runs = rows(repo, "SELECT kind, status, command FROM runs ORDER BY id")
    assert runs == [
        ("collect", "ok", "machineroom collect all"),
        ("collect", "ok", "machineroom collect web"),
    ]
    audit = rows(repo, "SELECT host_id, command, exit_code FROM audit_log WHERE run_id = 2")
    assert sorted(audit) == [(f"h{i}", "(collect metrics)", 0) for i in (1, 2, 3)]
    # `ls` agrees: the collection marked them reachable.
    res = json.loads(str(rows(repo, "SELECT res FROM server_room WHERE id = 'h1'")[0][0]))
    assert res["reachable"] is True and res["last_seen"]


def test_one_remote_command_per_host(repo: Path) -> None:
    out = machineroom("collect", "all", cwd=repo)
    assert out.returncode == 0, out.stderr
    per_host = rows(repo, "SELECT host_id, COUNT(*) FROM audit_log GROUP BY host_id")
    assert sorted(per_host) == [("h1", 1), ("h2", 1), ("h3", 1)]


def test_status_and_metrics_commands(repo: Path) -> None:
    assert machineroom("collect", "all", cwd=repo).returncode == 0
    time.sleep(1.1)
    assert machineroom("collect", "all", cwd=repo).returncode == 0
    status = machineroom("status", cwd=repo)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split()[:4] == ["HOST", "STATE", "LAST", "SEEN"]
    for name in ("h1", "h2", "h3"):
        line = next(line for line in lines if line.startswith(name + " "))
        assert " up " in line and "ago" in line and "%" in line
    assert "3 hosts: 3 up, 0 down, 0 never collected" in status.stdout
    as_json = json.loads(machineroom("status", "h1", "--json", cwd=repo).stdout)
    assert [h["host"] for h in as_json["hosts"]] == ["h1"]
    assert as_json["hosts"][0]["state"] == "up"
    assert as_json["total"]["up"] == 1

    series = machineroom("metrics", "h1", "load1", "--since", "1h", cwd=repo)
    assert series.returncode == 0, series.stderr
    assert "2 samples in the last 1h" in series.stdout
    spark = next(line for line in series.stdout.splitlines() if line.startswith("h1 load1"))
    assert len(spark.split()[-1]) == 2  # one mark a sample
    overview = machineroom("metrics", "h1", "disk_used_pct:*", cwd=repo)
    assert "disk_used_pct:/ " in overview.stdout
    data = json.loads(machineroom("metrics", "h1", "up", "--json", cwd=repo).stdout)
    assert [value for _, value in data["up"]] == [1.0, 1.0]

    unknown = machineroom("metrics", "h9", cwd=repo)
    assert unknown.returncode == 5
    assert "no metrics recorded for host 'h9'" in unknown.stderr
    typo = machineroom("metrics", "h1", "lod1", cwd=repo)
    assert typo.returncode == 5
    assert "host h1 has no metric 'lod1'" in typo.stderr and "load1" in typo.stderr
    bad = machineroom("metrics", "h1", "load1", "--since", "yesterday", cwd=repo)
    assert bad.returncode == 5 and "--since: 'yesterday' is not a duration" in bad.stderr


def test_unreachable_host_is_counted_and_kept(tmp_path: Path, fleet_lab: Lab) -> None:
    repo = make_repo(
        tmp_path, fleet_lab, {"h1": f"host: {address(fleet_lab, 0)}", "gone": f"host: {DEAD}"}
    )
    for expected_failures in (1, 2):
        out = machineroom("collect", "all", "--connect-timeout", "3", cwd=repo)
        assert out.returncode == 3, out.stderr
        assert "gone" in out.stdout and "unreachable" in out.stdout
        assert "collected 1/2 hosts" in out.stderr and "1 unreachable" in out.stderr
        failures = rows(repo, "SELECT failures, reachable FROM host_status WHERE host_id='gone'")
        assert failures == [(expected_failures, 0)]
        time.sleep(1.1)
    ups = rows(repo, "SELECT value FROM metrics WHERE host_id = 'gone' AND metric = 'up'")
    assert [v for (v,) in ups] == [0.0, 0.0]
    status = machineroom("status", "--json", cwd=repo)
    gone = next(h for h in json.loads(status.stdout)["hosts"] if h["host"] == "gone")
    assert gone["state"] == "down" and gone["failures"] == 2 and gone["last_seen"] is None
    runs = rows(repo, "SELECT status FROM runs")
    assert runs == [("unreachable",), ("unreachable",)]


def test_retention_prunes_old_samples(repo: Path) -> None:
    machineroom("collect", "h1", cwd=repo)
    store = open_state(repo / ".machineroom" / "state.db")
    old = now_unix() - 40 * 86400
    store.metrics.record_collections([HostCollection("h1", old, True, metrics={"load1": 9.0})])
    store.close()
    time.sleep(1.1)  # a later second than the first collection's samples
    out = machineroom("collect", "h1", "--retention", "35d", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "pruned 2 old samples" in out.stderr  # load1 and up of 40 days ago
    left = rows(repo, "SELECT COUNT(*) FROM metrics WHERE at < ?", (now_unix() - 86400,))
    assert left == [(0,)]
    assert rows(repo, "SELECT COUNT(*) FROM metrics WHERE metric = 'load1'") == [(2,)]


def _ssh_client(address: str, key: str, known_hosts: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        address, username="root", key_filename=key, allow_agent=False, look_for_keys=False
    )
    return client


def test_restricted_key_collects_and_can_do_nothing_else(
    tmp_path: Path, fleet_lab: Lab, hermetic: Path
) -> None:
    key = hermetic / ".ssh" / "collector_key"  # named `~/.ssh/collector_key` below
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "collector", "-f", str(key)],
        check=True,
    )
    h4 = address(fleet_lab, 3)
    (tmp_path / "repo").mkdir()
    repo = make_repo(tmp_path / "repo", fleet_lab, {"h4": f"host: {h4}"})
    installed = machineroom("collect", "h4", "--install-restricted-key", f"{key}.pub", cwd=repo)
    assert installed.returncode == 0, installed.stderr
    assert "h4: changed" in installed.stdout
    again = machineroom("collect", "h4", "--install-restricted-key", f"{key}.pub", cwd=repo)
    assert "h4: ok: already installed" in again.stdout

    # The inventory now names the restricted key for collection only.
    inventory = (
        (repo / "inventory.yml")
        .read_text()
        .replace(f"host: {h4}", f"host: {h4}, collect_key: ~/.ssh/collector_key")
    )
    (repo / "inventory.yml").write_text(inventory)
    out = machineroom("collect", "h4", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)["hosts"][0]["metrics"]
    assert metrics["mem_total_bytes"] > 0 and "load1" in metrics

    admin = _ssh_client(h4, fleet_lab.key, fleet_lab.known_hosts)
    restricted = _ssh_client(h4, str(key), fleet_lab.known_hosts)
    try:
        # Any command sent is replaced by the collector: the file is never created.
        _, stdout, _ = restricted.exec_command("touch /tmp/pwned; echo done")
        output = stdout.read().decode()
        assert output.startswith("v\t1\n") and "done" not in output
        _, check, _ = admin.exec_command("test -e /tmp/pwned && echo yes || echo no")
        assert check.read().decode().strip() == "no"
        # No port forwarding and no terminal.
        transport = restricted.get_transport()
        assert transport is not None
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 0))
        channel = transport.open_session()
        with pytest.raises(paramiko.SSHException):
            channel.get_pty()
        channel.close()
        # The installed script is root's, not writable by the collecting login.
        _, mode, _ = admin.exec_command("stat -c '%U %a' /usr/local/lib/machineroom/collect.sh")
        assert mode.read().decode().strip() == "root 755"
    finally:
        restricted.close()
        admin.close()


def test_parse_collection_of_known_output() -> None:
    output = (
        "v\t1\nuptime\t3600.5\nload\t0.50\t0.25\t0.10\n"
        "cpu\t100\t0\t100\t700\t100\t0\t0\t0\ncpus\t2\n"
        "mem\tMemTotal:\t1000\nmem\tMemAvailable:\t250\nmem\tSwapTotal:\t0\nmem\tSwapFree:\t0\n"
        "disk\t/\t1000\t900\t50\ndisk\t/data\t2000\t500\t1500\ndisk\t/my disk\t100\t10\t90\n"
        "net\teth0\t5000\t1000\nnet\tdummy0\t0\t0\nnet\tdocker0\t100\t100\n"
        "docker\tok\ncontainer\tweb\tnginx:1\trunning\tUp 2 hours\n"
        "container\tjob\tbusybox\texited\tExited (1) 3 minutes ago\n"
    )
    first = parse_collection(output, None, 1000)
    m = first.metrics
    assert m["uptime_seconds"] == 3600.5 and m["load5"] == 0.25
    assert m["cpu_used_pct"] == 20.0  # 200 busy of 1000 ticks since boot
    assert m["mem_used_pct"] == 75.0 and m["mem_total_bytes"] == 1000 * 1024
    # as df: used / (used + available), so the 5 % reserve of / does not hide a full disk
    assert m["disk_used_pct:/"] == 94.74 and m["disk_used_pct:/data"] == 25.0
    assert m["disk_used_pct:/my disk"] == 10.0 and m["disk_avail_bytes:/data"] == 1500 * 1024
    assert m["disk_used_pct_max"] == 94.74
    assert m["containers_total"] == 2 and m["containers_running"] == 1
    assert "net_rx_bytes:dummy0" not in m and m["net_rx_bytes:eth0"] == 5000
    assert first.containers[1] == {
        "name": "job",
        "image": "busybox",
        "state": "exited",
        "status": "Exited (1) 3 minutes ago",
    }
    # 10 seconds later: CPU and network from the difference.
    later = output.replace("cpu\t100\t0\t100\t700\t100", "cpu\t150\t0\t150\t800\t100")
    later = later.replace("net\teth0\t5000\t1000", "net\teth0\t7000\t1500")
    later = later.replace("net\tdocker0\t100\t100", "net\tdocker0\t9100\t9100")
    second = parse_collection(later, first.counters, 1010)
    assert second.metrics["cpu_used_pct"] == 50.0  # 100 busy of 200 new ticks
    assert second.metrics["net_rx_bytes_per_s"] == 200.0
    assert second.metrics["net_tx_bytes_per_s"] == 50.0  # docker0's bridged bytes not twice
    assert second.metrics["net_rx_bytes:docker0"] == 9100
    # A reboot between collections (a new boot time, counters from zero): since boot again,
    # never a share from two boots, never past 100 %.
    rebooted = later.replace("uptime\t3600.5", "uptime\t50000").replace(
        "cpu\t150\t0\t150\t800\t100", "cpu\t30000\t0\t30000\t60000\t0"
    )
    third = parse_collection(rebooted, {**second.counters, "cpu_idle": 99000.0}, 100000)
    assert third.metrics["cpu_used_pct"] == 50.0


def test_collector_script_runs_under_dash_and_reports_collector_failures() -> None:
    script = build_script(
        (
            Collector("ok", "echo '{\"a\": [1, 2.5, true]}'"),
            Collector("fails", "echo oops >&2; exit 3"),
            Collector("slow", "sleep 5", timeout=1),
        )
    )
    out = subprocess.run(["dash", "-c", script], capture_output=True, text=True, timeout=30)
    parsed = parse_collection(out.stdout)
    assert parsed.metrics["ok.a.0"] == 1 and parsed.metrics["ok.a.1"] == 2.5
    assert parsed.metrics["ok.a.2"] == 1 and parsed.metrics["ok.ok"] == 1
    assert parsed.metrics["fails.ok"] == 0 and parsed.metrics["slow.ok"] == 0
    assert "collector fails: exit 3: oops" in parsed.problems
    assert "collector slow: timed out" in parsed.problems
    assert parsed.metrics["mem_total_bytes"] > 0


def test_bad_collectors_declaration_is_an_input_error(tmp_path: Path, fleet_lab: Lab) -> None:
    repo = make_repo(
        tmp_path,
        fleet_lab,
        {"h1": f"host: {address(fleet_lab, 0)}"},
        "collectors:\n  '9lives': 'echo {}'\n",
    )
    out = machineroom("collect", "all", cwd=repo)
    assert out.returncode == 4, out.stderr
    assert "collector name '9lives' must start with a letter" in out.stderr
    assert "inventory.yml" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_keeps_what_was_collected_and_marks_the_run(tmp_path: Path, fleet_lab: Lab) -> None:
    repo = make_repo(
        tmp_path,
        fleet_lab,
        {"h1": f"host: {address(fleet_lab, 0)}", "h2": f"host: {address(fleet_lab, 1)}"},
        'collectors:\n  slow: "sleep 3; echo \'{\\"x\\": 1}\'"\n',
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "machineroom", "collect", "all"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the run is recorded, then interrupt
        with contextlib.suppress(sqlite3.OperationalError):  # not migrated yet
            if (repo / ".machineroom" / "state.db").exists() and rows(repo, "SELECT id FROM runs"):
                break
        time.sleep(0.1)
    # the hosts' commands (3 s of `sleep`) run once their ssh logins are done, which takes
    # more than half a second on a loaded machine
    time.sleep(1.5)
    process.send_signal(2)  # SIGINT, as Ctrl-C sends
    _, err = process.communicate(timeout=60)
    assert process.returncode == 99, err
    assert "interrupted" in err and "Traceback" not in err
    assert rows(repo, "SELECT status FROM runs") == [("interrupted",)]
    # The collections still running were killed on the hosts: nothing half-known is stored
    # (an interrupted collection says nothing about the host), the audit log has them.
    assert rows(repo, "SELECT host_id FROM host_status") == []
    assert sorted(rows(repo, "SELECT host_id, exit_code FROM audit_log WHERE exit_code < 0")) == [
        ("h1", -1),
        ("h2", -1),
    ]


def test_bad_alerts_file_stops_collect_before_any_host(tmp_path: Path, fleet_lab: Lab) -> None:
    repo = make_repo(tmp_path, fleet_lab, {"h1": f"host: {address(fleet_lab, 0)}"})
    (repo / "alerts.yml").write_text(
        "rules:\n  disk:\n    metric: disk_used_pct_max\n    abov: 90\n"
    )
    out = machineroom("collect", "all", cwd=repo)
    assert out.returncode == 4, out.stderr
    assert "alerts.yml:4:5" in out.stderr and "did you mean 'above'" in out.stderr
    assert not (repo / ".machineroom" / "state.db").exists() or rows(
        repo, "SELECT COUNT(*) FROM runs"
    ) == [(0,)]
    checked = machineroom("validate", cwd=repo)
    assert checked.returncode == 4 and "alerts.yml:4:5" in checked.stderr
    (repo / "alerts.yml").write_text(
        "rules:\n  disk:\n    metric: disk_used_pct_max\n    above: 90\n"
    )
    checked = machineroom("validate", cwd=repo)
    assert checked.returncode == 0, checked.stderr
    assert "alerts.yml: 1 alert rule(s): valid" in checked.stdout


def test_hung_df_is_cut_short_and_reported(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "df").write_text("#!/bin/sh\nsleep 30\n")
    (fake / "df").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "MACHINEROOM_PROBE_TIMEOUT": "1"}
    started = time.monotonic()
    out = subprocess.run(
        ["sh", "-c", build_script()], capture_output=True, text=True, timeout=20, env=env
    )
    assert time.monotonic() - started < 10
    parsed = parse_collection(out.stdout)
    assert "df timed out after 1 s (a hung mount?)" in parsed.problems
    assert parsed.metrics["load1"] >= 0 and "disk_used_pct_max" not in parsed.metrics


def test_a_host_past_the_timeout_does_not_hold_up_the_others(
    tmp_path: Path, fleet_lab: Lab
) -> None:
    repo = make_repo(
        tmp_path,
        fleet_lab,
        {
            "h1": f"host: {address(fleet_lab, 0)}",
            "h2": f"host: {address(fleet_lab, 1)}, collectors: {{slow: 'sleep 20'}}",
        },
    )
    started = time.monotonic()
    out = machineroom("collect", "all", "--timeout", "2", cwd=repo)
    assert time.monotonic() - started < 15
    assert out.returncode == 3, out.stderr
    assert "h2" in out.stdout and "timed out" in out.stdout
    states = dict(rows(repo, "SELECT host_id, reachable FROM host_status"))
    assert states == {"h1": 1, "h2": 0}
    assert rows(repo, "SELECT status FROM runs") == [("unreachable",)]


def test_collect_and_the_install_are_runs_with_task_rows(
    tmp_path: Path, fleet_lab: Lab, hermetic: Path
) -> None:
    """Both go through the one run pipeline: a run row with its final status as `apply`
    leaves it, one task row a host (three for the install's tasks), check mode for the
    install."""
    hosts = {"h1": f"host: {address(fleet_lab, 0)}", "h3": f"host: {address(fleet_lab, 2)}"}
    repo = make_repo(tmp_path, fleet_lab, {**hosts, "gone": f"host: {DEAD}"})
    out = machineroom("collect", "all", "--connect-timeout", "3", cwd=repo)
    assert out.returncode == 3, out.stderr
    assert rows(repo, "SELECT id, kind, status FROM runs") == [(1, "collect", "unreachable")]
    tasks = rows(repo, "SELECT host_id, task, status FROM task_results ORDER BY host_id")
    assert tasks == [
        ("gone", "collect", "unreachable"),
        ("h1", "collect", "ok"),
        ("h3", "collect", "ok"),
    ]
    summary = json.loads(str(rows(repo, "SELECT summary FROM runs WHERE id = 1")[0][0]))
    assert summary["hosts"] == 3 and summary["unreachable"] == 1
    assert summary["totals"]["ok"] == 2 and summary["totals"]["unreachable"] == 1

    key = hermetic / ".ssh" / "collector_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tasks-test", "-f", str(key)],
        check=True,
    )

    def key_installed() -> bool:
        admin = _ssh_client(address(fleet_lab, 2), fleet_lab.key, fleet_lab.known_hosts)
        try:
            _, out, _ = admin.exec_command("grep -c tasks-test /root/.ssh/authorized_keys")
            return out.read().decode().strip() not in ("", "0")
        finally:
            admin.close()

    install = ("collect", "h3", "--install-restricted-key", f"{key}.pub")
    checked = machineroom(*install, "--check", cwd=repo)
    assert checked.returncode == 0, checked.stderr
    assert "h3: changed" in checked.stdout
    assert not key_installed()  # check mode changed nothing
    done = machineroom(*install, cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "h3: changed" in done.stdout and key_installed()
    again = machineroom(*install, cwd=repo)
    assert "h3: ok: already installed" in again.stdout
    runs = rows(repo, "SELECT id, kind, status, json_extract(args, '$.check') FROM runs")
    assert runs[1:] == [
        (2, "collector-install", "ok", 1),
        (3, "collector-install", "ok", 0),
        (4, "collector-install", "ok", 0),
    ]
    for run_id in (2, 3, 4):  # the folder, the script, the key
        tasks = rows(repo, "SELECT host_id, status FROM task_results WHERE run_id = ?", (run_id,))
        assert [host for host, _ in tasks] == ["h3"] * 3
        assert ("changed" in {status for _, status in tasks}) == (run_id != 4)


def test_readings_take_rates_against_the_stored_counters_and_drop_stopped_hosts() -> None:
    """The collect run's subscriber: a host's samples get their CPU and network rates from
    the counters of its previous collection; a host a stop cut short leaves nothing."""
    from machineroom.events import HostFinished, TaskFinished
    from machineroom.runs.collect import TASK_NAME, HostReport, _Readings

    output = "v\t1\nuptime\t100\ncpu\t10\t0\t10\t80\t0\nnet\teth0\t2000\t100\n"
    module = CollectModule()
    outcome = module.interpret({}, ModuleContext("h1"), CommandOutput(0, output, ""))
    previous = {"h1": {"counters": {"cpu_idle": 40.0, "cpu_total": 50.0, "at": 990.0}}}
    previous["h1"]["counters"]["net_rx:eth0"] = 1000.0
    shown: list[HostReport] = []
    readings = _Readings(previous, lambda: 1000, shown.append)

    def finished(host: str, status: str, result: dict[str, object]) -> TaskFinished:
        return TaskFinished(host, "t1", TASK_NAME, "", status, msg="", result=result)  # type: ignore[arg-type]

    readings(finished("h1", "ok", dict(outcome.result)))
    readings(finished("h2", "failed", {"msg": "killed"}))
    assert shown == []  # told when the host is done
    readings(HostFinished("h1", "ok"))
    readings(HostFinished("h2", "interrupted"))
    assert [r.host_id for r in shown] == ["h1"] and list(readings.reports) == ["h1"]
    metrics = shown[0].metrics
    assert metrics["cpu_used_pct"] == 20.0  # 10 busy of 50 new ticks, not since boot
    assert metrics["net_rx_bytes_per_s"] == 100.0  # 1000 bytes in 10 s
    assert [c.host_id for c in readings.collections] == ["h1"]
