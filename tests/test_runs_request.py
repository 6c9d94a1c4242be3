"""RunRequest as JSON (what the scheduler and the dashboard hand a child), and the hidden
`machineroom run-request -` running one on a real host, its trigger on the run's row."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from machineroom.errors import UsageError
from machineroom.lab import Lab
from machineroom.runs.connect import ConnectSettings
from machineroom.runs.request import KINDS, RunRequest

HOST = "h3"  # one of the CLI tests' hosts; the test writes only a file of its own name


def full_request() -> RunRequest:
    """A request with every field set to something other than its default."""
    return RunRequest(
        kind="apply",
        target="playbooks/site.yml",
        inventory_paths=("inventory.yml", "more/"),
        state_path="/srv/state.db",
        limit="web:&prod",
        tags=("docker", "env"),
        skip_tags=("slow",),
        stages=("install",),
        extra_vars=('{"release": "1.2"}', "@vars.yml", "a=b"),
        check=True,
        diff=True,
        resume=True,
        verbosity=2,
        command="uptime; echo 'quoted $HOME'",
        module="copy",
        module_args="src=a dest=/b",
        become=True,
        become_user="deploy",
        habits={"start_at_task": "Install", "force_handlers": True},
        options={"retention": "35d", "alerts": False},
        connect=ConnectSettings(
            forks=7,
            connect_timeout=3.5,
            command_timeout=60.0,
            known_hosts=("/etc/ssh/extra",),
            accept_new_host_keys=True,
            vault_password_file="/run/vault-pass",
            ask_vault_password=True,
            vault_ids=("prod@/run/prod-pass",),
        ),
        connect_from_settings=True,
        trigger="schedule:nightly",
        command_line="machineroom apply playbooks/site.yml --check",
    )


def test_every_field_survives_the_json_round_trip() -> None:
    request = full_request()
    default = RunRequest(kind="apply", target="x")
    changed = {
        f.name for f in fields(RunRequest) if getattr(request, f.name) != getattr(default, f.name)
    }
    assert changed == {f.name for f in fields(RunRequest)} - {"kind"}  # every field is tried
    text = request.to_json()
    assert json.loads(text)["connect"]["vault_ids"] == ["prod@/run/prod-pass"]
    assert RunRequest.from_json(text) == request
    for kind in KINDS:  # every kind is accepted
        assert RunRequest.from_json(RunRequest(kind=kind, target="all").to_json()).kind == kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"kind": "apply", "target": "a.yml", "targte": "b"}', "unknown field(s): targte"),
        ('{"kind": "reboot", "target": "all"}', "unknown kind of run 'reboot' (known: apply, run"),
        ('{"target": "all"}', "missing 1 required positional argument: 'kind'"),
        ("[1, 2]", "expected a JSON object"),
        ("{kind: apply}", "not JSON"),
        (
            '{"kind": "apply", "target": "a.yml", "habits": {"becom": true}}',
            "habits: unknown flag(s): becom (known: ask_become_pass",
        ),
    ],
)
def test_a_malformed_request_is_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        RunRequest.from_json(text)
    assert message in str(caught.value)


def test_a_request_leaving_connections_to_the_project_reads_them_where_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scheduler and the dashboard leave forks, timeouts and the vault source to the
    child: it reads the repository's machineroom.yml as it is at that run."""
    from machineroom.runs import settings
    from machineroom.runs.execute import settled

    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1: {host: 127.0.0.1}\n")
    (tmp_path / "machineroom.yml").write_text("forks: 7\ncommand_timeout: 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "_cache", {})
    asked = RunRequest(
        kind="facts", target="all", inventory_paths=("inventory.yml",), connect_from_settings=True
    )
    done = settled(asked)
    assert (done.connect.forks, done.connect.command_timeout) == (7, 42.0)
    assert not done.connect_from_settings
    chosen = RunRequest(kind="facts", target="all", connect=ConnectSettings(forks=3))
    assert settled(chosen) is chosen  # a requester's own choice stands


def run_request(text: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "machineroom", "run-request", "-"],
        input=text,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_refuses_a_bad_request_with_exit_5(tmp_path: Path) -> None:
    done = run_request('{"kind": "apply", "target": "a.yml", "when": "now"}', tmp_path)
    assert done.returncode == 5, done.stderr
    assert "run request: unknown field(s): when" in done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "machineroom", "--help"], capture_output=True, text=True
    )
    assert "run-request" not in listed.stdout  # hidden: only the scheduler and the web use it


def lab_repo(root: Path, lab: Lab) -> Path:
    """An inventory of HOST in `root`, its host key known; the inventory's path."""
    host = next(h for h in lab.hosts if h.name == HOST)
    (root / "inventory.yml").write_text(
        f"all:\n  hosts:\n    {HOST}: {{host: {host.address}, user: root, ssh_key: {lab.key}}}\n"
    )
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return root / "inventory.yml"


def test_run_request_applies_on_a_host_and_records_the_trigger(tmp_path: Path, lab: Lab) -> None:
    lab_repo(tmp_path, lab)
    playbook = tmp_path / "site.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - hosts: all
              gather_facts: false
              tasks:
                - copy: {content: "{{ word }}\\n", dest: /tmp/test_runs_request.txt}
            """
        )
    )
    state = tmp_path / ".machineroom" / "state.db"
    request = RunRequest(
        kind="apply",
        target=str(playbook),
        inventory_paths=(str(tmp_path / "inventory.yml"),),
        state_path=str(state),
        extra_vars=('{"word": "from a request"}',),
        diff=True,
        trigger="schedule:test-request",
        command_line="machineroom apply site.yml --diff",
    )
    done = run_request(request.to_json(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "\x1b[" not in done.stdout  # plain lines: it writes to a log, not a terminal
    assert "changed" in done.stdout and "from a request" in done.stdout  # the diff
    with sqlite3.connect(state) as db:
        rows = list(db.execute("SELECT kind, status, trigger, command, playbook FROM runs"))
    assert rows == [
        (
            "apply",
            "ok",
            "schedule:test-request",
            "machineroom apply site.yml --diff",
            str(playbook),
        )
    ]
    # the same request again: nothing to change, same exit status as `apply`
    again = run_request(request.to_json(), tmp_path)
    assert again.returncode == 0 and "changed=0" in again.stdout.replace(" ", ""), again.stdout


def test_run_request_runs_a_command_with_its_trigger(tmp_path: Path, lab: Lab) -> None:
    inventory = lab_repo(tmp_path, lab)
    state = tmp_path / ".machineroom" / "state.db"
    request = RunRequest(
        kind="run",
        target="all",
        inventory_paths=(str(inventory),),
        state_path=str(state),
        command="echo from-a-request",
        trigger="web:ci:0a1b2c",
        command_line="machineroom run all -- 'echo from-a-request'",
    )
    done = run_request(request.to_json(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with sqlite3.connect(state) as db:
        runs = list(db.execute("SELECT id, kind, status, trigger, command FROM runs"))
        audit = list(db.execute("SELECT host_id, command, exit_code FROM audit_log"))
    assert [r[1:] for r in runs] == [
        ("run", "ok", "web:ci:0a1b2c", "machineroom run all -- 'echo from-a-request'")
    ]
    assert audit == [(HOST, "echo from-a-request", 0)]
