"""Secrets by value and terminal-safe output, end to end on real lab hosts.

What an attacker (or a curious viewer) would try: make a host print the login password, a
vault value, a `-e` password, the output of a `no_log` task, and their upper-case and base64
forms, then look for them in the console at `-vv --diff`, in `--json`, in every table of the
state database, in `show` and in the dashboard's API. And make a host print escape sequences.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
from clirun import machineroom
from websupport import CHROMIUM, Server, make_token

from machineroom.lab import Lab
from machineroom.vault import encrypt_text

LAB_HOST = "h15"  # one lab host, reached under two inventory names (two password sources)
HOSTS = ("sec-env", "sec-vault")
VAULT_PASSWORD = "vault-pass-for-tests"
VAULT_SECRET = "Vaulted-Secret-42"
EXTRA_SECRET = "extra-pw-9137"
FILE_SECRET = "file-token-5521"


def _forms(secret: str) -> list[str]:
    return [
        secret,
        secret.upper(),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode(secret.encode()).decode().rstrip("="),
    ]


def _database_text(path: Path) -> str:
    """Every text value of every table, as one string."""
    db = sqlite3.connect(path)
    try:
        parts = []
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                parts.extend(str(value) for value in row if value is not None)
        return "\n".join(parts)
    finally:
        db.close()


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [form for secret in secrets for form in _forms(secret) if form in text]


@pytest.fixture()
def project(tmp_path: Path, lab: Lab) -> Path:
    """Two lab hosts logged into as `deploy` with the password from an environment variable
    (h14) and from the vault (h15); a vault value in the play's variables."""
    by_name = {h.name: h for h in lab.hosts}
    password = lab.users["deploy"]
    assert password is not None
    vaulted_login = encrypt_text(password, VAULT_PASSWORD, oneline=True)
    (tmp_path / "inventory.yml").write_text(
        textwrap.dedent(
            f"""\
            all:
              hosts:
                {HOSTS[0]}:
                  host: {by_name[LAB_HOST].address}
                  user: deploy
                  password: !env DEPLOY_PW
                {HOSTS[1]}:
                  host: {by_name[LAB_HOST].address}
                  user: deploy
                  password: "{vaulted_login}"
            """
        )
    )
    vaulted = encrypt_text(VAULT_SECRET, VAULT_PASSWORD)
    vault_block = textwrap.indent(vaulted, "        ")
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            """\
            - hosts: all
              vars:
                vault_secret: !vault |
            {vault_block}
              tasks:
                - name: the login password printed by the host
                  command: echo "login={{{{ pw }}}}"
                  vars:
                    pw: "{password}"
                - name: a vault value and its derived forms
                  debug:
                    msg: >-
                      {{{{ vault_secret }}}} {{{{ vault_secret | upper }}}}
                      {{{{ vault_secret | b64encode }}}}
                - name: an -e password
                  command: echo "{{{{ db_password }}}} {{{{ db_password | b64encode }}}}"
                - name: a secret written to a file (diff)
                  copy:
                    content: "token={{{{ vault_secret }}}}\\n"
                    dest: /tmp/mr-secret-test
                - name: put a token on the host
                  copy:
                    content: "{file_secret}\\n"
                    dest: /tmp/mr-token
                  no_log: true
                - name: read it without logging
                  command: cat /tmp/mr-token
                  register: token
                  no_log: true
                - name: use it later
                  debug:
                    msg: "the token is {{{{ token.stdout }}}}"
                - name: become with the login password
                  command: id -un
                  become: true
            """
        ).format(vault_block=vault_block, password=password, file_secret=FILE_SECRET)
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    return tmp_path


def _env(lab: Lab) -> dict[str, str]:
    password = lab.users["deploy"]
    assert password is not None
    return {"DEPLOY_PW": password, "MACHINEROOM_VAULT_PASSWORD": VAULT_PASSWORD}


def test_no_secret_reaches_console_json_or_database(
    project: Path, lab: Lab, request: pytest.FixtureRequest
) -> None:
    env = _env(lab)
    secrets = [env["DEPLOY_PW"], VAULT_SECRET, EXTRA_SECRET, FILE_SECRET, VAULT_PASSWORD]
    out = machineroom(
        "apply", "site.yml", "-vv", "--diff", "-e", f"db_password={EXTRA_SECRET}",
        cwd=project, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "***" in out.stdout
    assert "login=***" in out.stdout
    assert "the token is ***" in out.stdout
    assert _leaks(out.stdout + out.stderr, secrets) == []

    out = machineroom(
        "apply", "site.yml", "--json", "-e", f"db_password={EXTRA_SECRET}",
        cwd=project, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    json.loads(out.stdout)
    assert _leaks(out.stdout + out.stderr, secrets) == []

    # an ad-hoc command through the vault-decrypted login, with the become password
    out = machineroom(
        "run", "all", "--become", "--", f"echo {env['DEPLOY_PW']}", cwd=project, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert _leaks(out.stdout + out.stderr, secrets) == []

    database = project / ".machineroom" / "state.db"
    stored = _database_text(database)
    assert "***" in stored
    assert _leaks(stored, secrets) == []
    for run in ("1", "2", "3"):
        shown = machineroom("show", run, "--json", cwd=project)
        assert shown.returncode == 0, shown.stderr
        assert _leaks(shown.stdout, secrets) == []

    _viewer_sees_no_secret(project, database, secrets, request)

    # masking hid the secret from people, it did not change what ran on the host
    check = machineroom("run", HOSTS[0], "--", "cat /tmp/mr-secret-test", cwd=project, env=env)
    assert check.stdout.endswith(f"token={VAULT_SECRET}\n")


def test_host_escape_sequences_are_shown_not_obeyed(tmp_path: Path, lab: Lab) -> None:
    host = next(h for h in lab.hosts if h.name == LAB_HOST)
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  hosts:\n    {host.name}: {{host: {host.address}, user: root, "
        f"ssh_key: {lab.key}}}\n"
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    hostile = r"printf '\033]0;TITLE\007\033[2J\rok: [fake]\n\233K'"
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            f"""\
            - hosts: all
              tasks:
                - command: {json.dumps(hostile)}
                  register: r
                - debug: {{msg: "{{{{ r.stdout }}}}"}}
            """
        )
    )
    outputs = []
    for args in (("apply", "site.yml", "-vv"), ("run", "all", "--", hostile), ("show", "1")):
        out = machineroom(*args, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        outputs.append(out.stdout + out.stderr)
    for text in outputs:
        # nothing to colour on a pipe, so no escape character at all reaches it
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "\r" not in text
        assert r"\x1b]0;TITLE\x07\x1b[2J\x0dok: [fake]" in text


def _viewer_sees_no_secret(
    project: Path, database: Path, secrets: list[str], request: pytest.FixtureRequest
) -> None:
    """A viewer of the dashboard, through the API and in a real browser, reads the runs and
    the audit log and finds no secret."""
    token = make_token(project, database, "viewer1", "viewer")
    server = Server(project, database, [project / "inventory.yml"], env={})
    try:
        with server.client(token) as client:
            for path in ("/api/runs", "/api/runs/1", "/api/runs/2", "/api/runs/3", "/api/audit"):
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text)
                assert _leaks(answer.text, secrets) == [], path
        if not Path(CHROMIUM).exists():
            pytest.skip("the browser half needs Debian's chromium (scripts/setup.sh --test)")
        context = request.getfixturevalue("browser").new_context()
        try:
            page = context.new_page()
            page.goto(server.url + "/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/")
            for path in ("/runs/1", "/runs/2", "/runs/3", "/audit"):
                page.goto(server.url + path)
                text = page.content()
                assert "***" in text or path == "/runs/3", path
                assert _leaks(text, secrets) == [], path
        finally:
            context.close()
    finally:
        server.stop()
