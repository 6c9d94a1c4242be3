"""The server-list commands end to end, as a user runs them: import, ls, retire, validate."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

SERVERS = """\
# Traditional password authentication
web-server-01--192.168.1.100--root--${WEB_PASS}--22
db-server-01--192.168.1.101--admin--securepass--2222

# SSH key authentication with custom port
kansas-server--203.0.113.100--admin------22--/Users/yourusername/.ssh/custom_key

# SSH key authentication with default port
prod-web--192.168.1.100--ubuntu------/Users/yourusername/.ssh/prod_key
#vpn-profile--L2TP/IPSEC--tunnel-server--username--${VPN_PASS}
"""


def machineroom(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "servers.txt").write_text(SERVERS)
    return tmp_path


def test_import_writes_server_room_without_plaintext(repo: Path) -> None:
    out = machineroom("import", "servers.txt", cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "imported 4 server(s)" in out.stderr
    assert "servers.txt:3:37: host 'db-server-01': plaintext password" in out.stderr
    db = repo / ".machineroom" / "state.db"
    assert oct(db.stat().st_mode & 0o777) == "0o600"
    assert oct(db.parent.stat().st_mode & 0o777) == "0o700"
    rows = {
        r[0]: r[1:]
        for r in sqlite3.connect(db).execute(
            "SELECT id, host, user, pass, port, description, res, next_action FROM server_room"
        )
    }
    assert rows["web-server-01"][:4] == ("192.168.1.100", "root", "env:WEB_PASS", 22)
    assert rows["db-server-01"][:4] == ("192.168.1.101", "admin", "", 2222)
    assert rows["kansas-server"][:4] == ("203.0.113.100", "admin", "", 22)
    assert rows["prod-web"][:4] == ("192.168.1.100", "ubuntu", "", 22)
    assert b"securepass" not in db.read_bytes()
    assert json.loads(rows["prod-web"][5]) == {}


def test_import_emits_yaml_that_loads_back_to_the_same_servers(repo: Path) -> None:
    out = machineroom("import", "servers.txt", "--emit-yaml", "inventory.yml", cwd=repo)
    assert out.returncode == 0, out.stderr
    listed = machineroom("ls", "--json", "-i", "inventory.yml", cwd=repo)
    assert listed.returncode == 0, listed.stderr
    servers = {s["id"]: s for s in json.loads(listed.stdout)}
    assert set(servers) == {"web-server-01", "db-server-01", "kansas-server", "prod-web"}
    assert servers["kansas-server"]["port"] == 22
    assert servers["web-server-01"]["pass"] == "env:WEB_PASS"
    back = machineroom("import", "inventory.yml", "--emit-serverlist", "-", cwd=repo)
    assert back.returncode == 0, back.stderr
    assert "kansas-server--203.0.113.100--admin--" in back.stdout
    assert "/Users/yourusername/.ssh/custom_key" in back.stdout


def test_ls_shows_status_and_retire_marks_and_undoes(repo: Path) -> None:
    assert machineroom("import", "servers.txt", cwd=repo).returncode == 0
    retired = machineroom("retire", "db-server-01", cwd=repo)
    assert retired.returncode == 0, retired.stderr
    table = machineroom("ls", cwd=repo).stdout
    line = next(x for x in table.splitlines() if "db-server-01" in x)
    assert "retired" in line
    active = machineroom("ls", "--active", cwd=repo).stdout
    assert "db-server-01" not in active and "prod-web" in active
    for alias in ("show", "list", "tell"):
        assert machineroom(alias, cwd=repo).stdout == table
    assert machineroom("retire", "--undo", "db-server-01", cwd=repo).returncode == 0
    line = next(x for x in machineroom("ls", cwd=repo).stdout.splitlines() if "db-server" in x)
    assert "retired" not in line


def test_retire_unknown_server_names_close_ids(repo: Path) -> None:
    assert machineroom("import", "servers.txt", cwd=repo).returncode == 0
    out = machineroom("retire", "db-server-1", cwd=repo)
    assert out.returncode != 0
    assert "unknown server 'db-server-1'" in out.stderr
    assert "db-server-01" in out.stderr
    assert "Traceback" not in out.stderr


def test_validate_reports_missing_key_files_with_lines(repo: Path) -> None:
    out = machineroom("validate", "-i", "servers.txt", cwd=repo)
    assert out.returncode == 4
    assert (
        "servers.txt:6:46: host 'kansas-server': key file /Users/yourusername/.ssh/custom_key "
        "does not exist; expected the path of a private key file"
    ) in out.stderr
    assert "servers.txt:9:38: host 'prod-web'" in out.stderr


def test_validate_warns_about_plaintext_and_strict_fails(tmp_path: Path) -> None:
    key = tmp_path / "id_test"
    key.write_text("not really a key\n")
    (tmp_path / "s.txt").write_text(f"a--10.0.0.1--root--hunter2\nb--10.0.0.2--root------{key}\n")
    out = machineroom("validate", "-i", "s.txt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "s.txt:1:20: host 'a': plaintext password" in out.stderr
    assert "2 host(s)" in out.stdout and "1 warning(s)" in out.stdout
    assert "hunter2" not in out.stderr + out.stdout
    assert machineroom("validate", "--strict", "-i", "s.txt", cwd=tmp_path).returncode == 4


def test_yaml_typo_is_reported_with_file_line_and_suggestion(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(
        "all:\n  children:\n    web:\n      hosts:\n        w1: {host: 10.0.0.1, port: abc}\n"
    )
    out = machineroom("validate", "-i", "inv.yml", cwd=tmp_path)
    assert out.returncode == 4
    assert out.stderr.startswith("error: inv.yml:5:")
    assert "port" in out.stderr and "Traceback" not in out.stderr


def test_unknown_command_suggests_and_exits_5(tmp_path: Path) -> None:
    out = machineroom("lss", cwd=tmp_path)
    assert out.returncode == 5
    assert "no such command 'lss' (did you mean 'ls'?)" in out.stderr


def test_no_inventory_is_a_usage_error(tmp_path: Path) -> None:
    out = machineroom("validate", cwd=tmp_path)
    assert out.returncode == 5
    assert "no inventory: pass -i FILE" in out.stderr


def test_history_lists_runs(repo: Path) -> None:
    assert machineroom("import", "servers.txt", cwd=repo).returncode == 0
    out = machineroom("history", cwd=repo)
    assert out.returncode == 0
    assert "import" in out.stdout and "ok" in out.stdout
