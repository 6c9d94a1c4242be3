"""No secret reaches the audit log's module calls: a real `machineroom apply` on a lab host
(fleet_lab h9) sends a URL with a password in it, headers, a body holding a vault value, a
password from an `env` lookup, a file's content and a command's stdin; then the database's
bytes, `/api/audit` and `machineroom history RUN` are searched for every one of them."""

from __future__ import annotations

import re
import secrets
import sqlite3
from pathlib import Path

from clirun import machineroom as run_cli
from websupport import Server, make_token

from machineroom.lab import Lab
from machineroom.vault import VaultKey

VAULT_PASSWORD = "vault-pass-for-audit-test"
URL_PASSWORD = "hunter2pw-url"
BEARER = "Bearer tok-header-8d1f03"
VAULT_VALUE = "s3cret-from-the-vault"
ENV_PASSWORD = "env-lookup-pw-5521"
FILE_TOKEN = "tok-file-content-77ab"
STDIN_SECRET = "stdin-secret-4410"
PLAIN_VAR = "plain-groupvar-api-key-9913"
ALL_SECRETS = (
    URL_PASSWORD,
    "tok-header-8d1f03",
    VAULT_VALUE,
    ENV_PASSWORD,
    FILE_TOKEN,
    STDIN_SECRET,
    PLAIN_VAR,
)

SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Call the API
      uri:
        url: "http://admin:{{ url_secret }}@127.0.0.1:9/api"
        method: POST
        headers:
          Authorization: "{{ bearer }}"
          X-Request: "audit-test"
          X-Api-Key: "{{ plain_api_key }}"
        body_format: json
        body: {"user": "admin", "password": "{{ vault_value }}"}
        url_username: admin
        url_password: "{{ lookup('env', 'MR_AUDIT_ENV_PW') }}"
        force_basic_auth: true
        timeout: 5
      ignore_errors: true
    - name: Write the token
      copy:
        dest: /tmp/mr-audit-token-{{ nonce }}
        content: "{{ file_token }}"
        mode: "0600"
    - name: Feed a command
      command:
        cmd: wc -c
        stdin: "{{ stdin_secret }}"
"""


def test_no_secret_reaches_the_audit_log_db_api_or_history(fleet_lab: Lab, tmp_path: Path) -> None:
    host = fleet_lab.hosts[8]
    root = tmp_path
    (root / "inventory.yml").write_text(
        "all:\n  vars:\n"
        f"    ssh_key: {fleet_lab.key}\n    user: root\n"
        f"    url_secret: {URL_PASSWORD}\n    bearer: '{BEARER}'\n"
        f"    file_token: {FILE_TOKEN}\n    stdin_secret: {STDIN_SECRET}\n"
        f"    plain_api_key: {PLAIN_VAR}\n    nonce: {secrets.token_hex(4)}\n"
        f"  hosts:\n    {host.name}: {{host: {host.address}, port: {host.port}}}\n"
    )
    vault_dir = root / "group_vars" / "all"
    vault_dir.mkdir(parents=True)
    (vault_dir / "vault.yml").write_text(
        VaultKey(VAULT_PASSWORD).encrypt(f"vault_value: {VAULT_VALUE}\n")
    )
    (root / "site.yml").write_text(SITE)
    (root / "pw").write_text(VAULT_PASSWORD + "\n")
    (root / "pw").chmod(0o600)
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    env = {"HOME": str(home), "SSH_AUTH_SOCK": "", "NO_COLOR": "1"}
    out = run_cli(
        "apply",
        "site.yml",
        "--vault-password-file",
        "pw",
        cwd=root,
        env={**env, "MR_AUDIT_ENV_PW": ENV_PASSWORD},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    run_id = int(re.findall(r"^run (\d+): ", out.stdout, re.MULTILINE)[-1])
    state = root / ".machineroom" / "state.db"

    # the database's bytes, its WAL included
    for path in state.parent.glob("state.db*"):
        data = path.read_bytes()
        for secret in ALL_SECRETS:
            assert secret.encode() not in data, (secret, path.name)

    history = run_cli("history", str(run_id), cwd=root, env=env)
    assert history.returncode == 0, history.stdout + history.stderr
    # what it does show: the calls, their payloads by size, the URL without its password
    assert "uri: url=http://***@127.0.0.1:9/api" in history.stdout, history.stdout
    assert "headers=(3 entries)" in history.stdout and "url_password=***" in history.stdout
    assert f"content=({len(FILE_TOKEN)} bytes)" in history.stdout
    assert f"stdin=({len(STDIN_SECRET)} bytes)" in history.stdout
    for secret in ALL_SECRETS:
        assert secret not in history.stdout, secret

    token = make_token(root, state, "viewer-1", "viewer")
    server = Server(root, state, [root / "inventory.yml"], env)
    try:
        with server.client(token) as client:
            reply = client.get("/api/audit", params={"run": run_id})
            page = client.get("/audit", params={"run": run_id})
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    actions = "\n".join(entry["action"] for entry in reply.json())
    assert "uri: url=http://***@127.0.0.1:9/api" in actions, actions
    assert "copy: dest=/tmp/mr-audit-token-" in actions
    for secret in ALL_SECRETS:
        assert secret not in reply.text, secret
        assert secret not in page.text, secret


def test_the_engines_own_commands_carry_no_task_action(fleet_lab: Lab, tmp_path: Path) -> None:
    """The sudo probe and the kill of a timed-out command are machineroom's, not the task's:
    their audit rows' action is ''."""
    host = fleet_lab.hosts[9]
    root = tmp_path
    (root / "inventory.yml").write_text(
        f"all:\n  vars:\n    ssh_key: {fleet_lab.key}\n    user: deploy\n"
        "    command_timeout: 2\n"
        f"  hosts:\n    {host.name}: {{host: {host.address}, port: {host.port}}}\n"
    )
    (root / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  become: true\n  tasks:\n"
        "    - name: Wait too long\n      command: sleep 47\n"
    )
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    out = run_cli(
        "apply", "site.yml", cwd=root, env={"HOME": str(home), "SSH_AUTH_SOCK": "", "NO_COLOR": "1"}
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "timed out" in out.stdout, out.stdout
    with sqlite3.connect(root / ".machineroom" / "state.db") as conn:
        rows = conn.execute("SELECT command, action FROM audit_log ORDER BY id").fetchall()
    probes = [action for command, action in rows if command.startswith("sudo -k -n")]
    kills = [action for command, action in rows if command.startswith("(kill")]
    tasks = [action for command, action in rows if "sleep 47" in command]
    assert probes and kills and tasks, rows
    assert probes == [""] * len(probes) and kills == [""] * len(kills), rows
    assert tasks == ["command: sleep 47"] * len(tasks), rows
