"""ansible-vault data: vectors made by ansible-vault decrypt with us, ours decrypt with
ansible-vault, whole-file vaults load (group_vars, vars_files, role vars), and a real apply
with an ansible-vault-encrypted group_vars/all/vault.yml whose value stays masked."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest
from clirun import machineroom
from test_ansible_parity import Ansible, ansible  # noqa: F401  (the fixture)

from machineroom.ansible_vault import ANSIBLE_HEADER
from machineroom.errors import VaultError
from machineroom.lab import Lab
from machineroom.masking import SECRETS
from machineroom.vault import VaultKey, read_vault_password
from machineroom.yamlio import load_yaml, parse_yaml

VECTORS = Path(__file__).resolve().parent / "data" / "vault"
PASSWORD = (VECTORS / "password.txt").read_text().strip()
PLAIN = (VECTORS / "whole.plain.yml").read_text()
NO_ENV = ("MACHINEROOM_VAULT_PASSWORD", "ANSIBLE_VAULT_PASSWORD_FILE")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_ENV}
    env.update(extra)
    return env


def _run(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "machineroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(**extra), "COLUMNS": "200"},
        check=False,
    )


@pytest.mark.parametrize("name", ["whole-1.1.yml", "whole-1.2.yml"])
def test_whole_file_vectors_from_ansible_vault_decrypt(name: str) -> None:
    assert VaultKey(PASSWORD).decrypt((VECTORS / name).read_text()) == PLAIN


def test_inline_vectors_from_ansible_vault_decrypt() -> None:
    key = VaultKey(PASSWORD)
    one = parse_yaml((VECTORS / "inline-1.1.yml").read_text(), "inline-1.1.yml")
    two = parse_yaml((VECTORS / "inline-1.2.yml").read_text(), "inline-1.2.yml")
    assert key.decrypt(one["api_key"]) == "inline-secret-value"
    assert key.decrypt(two["other"]) == "labelled ünïcode value"
    assert SECRETS.text("inline-secret-value") == "***"


def test_wrong_password_is_one_line() -> None:
    with pytest.raises(VaultError) as caught:
        VaultKey("not the password").decrypt((VECTORS / "whole-1.1.yml").read_text())
    assert caught.value.message == "cannot decrypt: wrong vault password or damaged data"


def test_tampered_hmac_and_ciphertext_are_refused() -> None:
    text = (VECTORS / "whole-1.1.yml").read_text()
    header, _, body = text.partition("\n")
    payload = "".join(body.split())
    inner = bytes.fromhex(payload).split(b"\n")
    for index in (1, 2):  # the HMAC, the ciphertext
        part = bytearray(inner[index])
        part[4] = ord("0") if part[4] != ord("0") else ord("1")
        damaged = list(inner)
        damaged[index] = bytes(part)
        forged = header + "\n" + b"\n".join(damaged).hex() + "\n"
        with pytest.raises(VaultError, match="wrong vault password or damaged data"):
            VaultKey(PASSWORD).decrypt(forged)
    with pytest.raises(VaultError, match="not valid hex"):
        VaultKey(PASSWORD).decrypt(header + "\nzz\n")
    with pytest.raises(VaultError, match="unsupported ansible-vault format"):
        VaultKey(PASSWORD).decrypt("$ANSIBLE_VAULT;9.9;AES256\n00\n")


def test_ours_in_ansible_format_decrypt_with_ansible_vault(
    ansible: Ansible,  # noqa: F811
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    data = tmp_path / "secrets.yml"
    data.write_text(PLAIN)
    out = _run("vault", "encrypt", "--format", "ansible", str(data), cwd=tmp_path,
               MACHINEROOM_VAULT_PASSWORD=PASSWORD)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert data.read_text().startswith(ANSIBLE_HEADER + "\n")
    value = _run("vault", "encrypt-string", "--format", "ansible", "--name", "tok",
                 "inline ünïcode", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD)  # fmt: skip
    assert value.returncode == 0, value.stderr
    (tmp_path / "inline.yml").write_text(value.stdout)
    ansible_vault = str(ansible.playbook.parent / "ansible-vault")
    env = {**_env(), "ANSIBLE_CONFIG": str(ansible.playbook.parent.parent / "empty-ansible.cfg")}
    view = subprocess.run(
        [ansible_vault, "view", "--vault-password-file", str(password_file), str(data)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert view.returncode == 0, view.stderr
    assert view.stdout == PLAIN
    debug = subprocess.run(
        [str(ansible.playbook.parent / "ansible"), "localhost", "-m", "debug", "-a", "var=tok",
         "-e", "@inline.yml", "--vault-password-file", str(password_file)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert debug.returncode == 0, debug.stdout + debug.stderr
    assert '"tok": "inline ünïcode"' in debug.stdout


def test_cli_view_edit_rekey_keep_the_ansible_format(tmp_path: Path) -> None:
    data = tmp_path / "vault.yml"
    data.write_text((VECTORS / "whole-1.2.yml").read_text())
    view = _run("vault", "view", "vault.yml", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD)
    assert view.returncode == 0, view.stderr
    assert view.stdout == PLAIN
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho 'extra: added-by-editor' >> \"$1\"\n")
    editor.chmod(0o755)
    edit = _run("vault", "edit", "vault.yml", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD,
                EDITOR=str(editor))  # fmt: skip
    assert edit.returncode == 0, edit.stderr
    assert data.read_text().startswith(ANSIBLE_HEADER + "\n")
    new_pw = tmp_path / "new-pw"
    new_pw.write_text("the-new-password\n")
    new_pw.chmod(0o600)
    rekey = _run("vault", "rekey", "vault.yml", "--new-vault-password-file", str(new_pw),
                 cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD)  # fmt: skip
    assert rekey.returncode == 0, rekey.stderr
    assert data.read_text().startswith(ANSIBLE_HEADER + "\n")
    assert VaultKey("the-new-password").decrypt(data.read_text()) == (
        PLAIN + "extra: added-by-editor\n"
    )
    decrypt = _run("vault", "decrypt", "vault.yml", cwd=tmp_path,
                   MACHINEROOM_VAULT_PASSWORD="the-new-password")  # fmt: skip
    assert decrypt.returncode == 0, decrypt.stderr
    assert data.read_text() == PLAIN + "extra: added-by-editor\n"


def test_ansible_password_file_variable_and_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MACHINEROOM_VAULT_PASSWORD", raising=False)
    plain = tmp_path / "pw"
    plain.write_text("from-the-file\n")
    plain.chmod(0o600)
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(plain))
    assert read_vault_password() == "from-the-file"
    script = tmp_path / "pw.sh"
    script.write_text("#!/bin/sh\necho from-the-script\n")
    script.chmod(0o755)  # a script may be readable by others: it holds no password
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(script))
    assert read_vault_password() == "from-the-script"
    monkeypatch.setenv("MACHINEROOM_VAULT_PASSWORD", "from-the-variable")
    assert read_vault_password() == "from-the-variable"  # ours comes first
    failing = tmp_path / "fail.sh"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o700)
    with pytest.raises(VaultError, match="exited with status 3"):
        read_vault_password(failing)


def test_whole_file_vault_loads_and_its_values_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MACHINEROOM_VAULT_PASSWORD", PASSWORD)
    path = tmp_path / "vault.yml"
    path.write_text((VECTORS / "whole-1.1.yml").read_text())
    data = load_yaml(path)
    assert data["db_password"] == "s3cret-from-ansible"
    assert data["users"][0]["token"] == "tok-alice-1234"
    assert SECRETS.text("db=s3cret-from-ansible t=tok-alice-1234") == "db=*** t=***"
    # a YAML error inside the decrypted text names the file and the line
    bad = tmp_path / "bad.yml"
    bad.write_text(VaultKey(PASSWORD).encrypt_bytes(b"a: 1\nb: [\n", fmt="ansible"))
    with pytest.raises(Exception, match=r"bad\.yml:3"):
        load_yaml(bad)


def _project(tmp_path: Path, lab: Lab) -> Path:
    host = lab.hosts[0]
    (tmp_path / "inventory.yml").write_text(
        f"all:\n  hosts:\n    {host.name}: {{host: {host.address}, port: {host.port}, "
        f"user: root, ssh_key: {lab.key}}}\n"
    )
    (tmp_path / ".machineroom").mkdir(mode=0o700)
    (tmp_path / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    vault_dir = tmp_path / "group_vars" / "all"
    vault_dir.mkdir(parents=True)
    (vault_dir / "vault.yml").write_text((VECTORS / "whole-1.1.yml").read_text())
    (vault_dir / "main.yml").write_text("app_user: alice\n")
    (tmp_path / "extra.yml").write_text((VECTORS / "whole-1.2.yml").read_text())
    (tmp_path / "site.yml").write_text(
        textwrap.dedent(
            f"""\
            - hosts: all
              vars_files: [extra.yml]
              tasks:
                - name: write the vaulted password
                  copy:
                    content: "pw={{{{ db_password }}}} tok={{{{ users[0].token }}}}\\n"
                    dest: /tmp/av-{os.getpid()}
                - name: show it
                  command: cat /tmp/av-{os.getpid()}
            """
        )
    )
    return tmp_path


def test_apply_with_group_vars_encrypted_by_ansible_vault(tmp_path: Path, lab: Lab) -> None:
    project = _project(tmp_path, lab)
    missing = _run("apply", "site.yml", cwd=project)
    assert missing.returncode != 0
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1, missing.stderr
    assert "extra.yml is vault-encrypted and no vault password was given" in lines[0]
    assert "ANSIBLE_VAULT_PASSWORD_FILE" in lines[0]

    wrong = _run("apply", "site.yml", cwd=project, MACHINEROOM_VAULT_PASSWORD="nope")
    assert wrong.returncode != 0
    assert wrong.stderr.strip().count("\n") == 0, wrong.stderr
    assert "extra.yml: cannot decrypt: wrong vault password" in wrong.stderr

    password_file = project / "pw"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    out = _run("apply", "site.yml", "-vv", "--vault-password-file", "pw", cwd=project)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "s3cret-from-ansible" not in out.stdout + out.stderr
    assert "tok-alice-1234" not in out.stdout + out.stderr
    assert "pw=*** tok=***" in out.stdout

    db = sqlite3.connect(project / ".machineroom" / "state.db")
    try:
        stored = []
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                stored.extend(str(v) for v in row if v is not None)
    finally:
        db.close()
    text = "\n".join(stored)
    assert "s3cret-from-ansible" not in text and "tok-alice-1234" not in text
    assert "***" in text

    # the value really landed on the host (reversed, so that masking does not hide it)
    check = machineroom("run", lab.hosts[0].name, "--", f"rev /tmp/av-{os.getpid()}",
                        cwd=project, env={"MACHINEROOM_VAULT_PASSWORD": PASSWORD})  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "pw=s3cret-from-ansible tok=tok-alice-1234"[::-1] in check.stdout


def test_host_vars_and_role_vars_vaults_load(tmp_path: Path) -> None:
    """host_vars/ (ansible-vault 1.2) and a role's vars/ (ours) as whole-file vaults."""
    (tmp_path / "inventory.yml").write_text("all:\n  hosts:\n    h1: {host: 127.0.0.1}\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text((VECTORS / "whole-1.2.yml").read_text())
    role = tmp_path / "roles" / "r"
    (role / "vars").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "vars" / "main.yml").write_text(
        VaultKey(PASSWORD).encrypt("role_secret: r0le-s3cret\n")
    )
    (role / "tasks" / "main.yml").write_text('- debug: {msg: "{{ role_secret }}"}\n')
    (tmp_path / "site.yml").write_text("- hosts: all\n  roles: [r]\n")
    plan = _run("plan", "site.yml", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    check = _run("validate", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD=PASSWORD)
    assert check.returncode == 0, check.stderr
    assert "s3cret" not in check.stdout + check.stderr
    wrong = _run("plan", "site.yml", cwd=tmp_path, MACHINEROOM_VAULT_PASSWORD="not-it")
    assert wrong.returncode == 1
    # the playbook (and its roles) load before the inventory
    assert wrong.stderr == (
        "error: roles/r/vars/main.yml: cannot decrypt: wrong vault password or damaged data\n"
    )


def test_vault_ids_open_data_made_with_several_passwords(
    ansible: Ansible,  # noqa: F811
    tmp_path: Path,
) -> None:
    """--vault-id LABEL@FILE, repeated, as ansible-playbook's: group_vars made by
    ansible-vault under two labels (and one of ours) load in one plan; a labelled file we
    write carries its label and ansible-vault opens it."""
    (tmp_path / "dev.pw").write_text("dev-password-1\n")
    (tmp_path / "prod.pw").write_text(PASSWORD + "\n")
    for name in ("dev.pw", "prod.pw"):
        (tmp_path / name).chmod(0o600)
    (tmp_path / "inventory.yml").write_text(
        "all:\n  hosts:\n    h1: {host: 127.0.0.1, user: root, connection: local}\n  children:\n"
        "    web: {hosts: {h1: {}}}\n    db: {hosts: {h1: {}}}\n"
    )
    gv = tmp_path / "group_vars"
    gv.mkdir()
    (gv / "db.yml").write_text((VECTORS / "whole-1.2.yml").read_text())  # ansible-vault, prod
    (gv / "web.yml").write_text("web_token: w3b-t0ken-dev\n")
    ansible_vault = str(ansible.playbook.parent / "ansible-vault")
    env = {**_env(), "ANSIBLE_CONFIG": str(ansible.playbook.parent.parent / "empty-ansible.cfg")}
    made = subprocess.run(
        [ansible_vault, "encrypt", "--vault-id", f"dev@{tmp_path / 'dev.pw'}", str(gv / "web.yml")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (gv / "web.yml").read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;dev\n")
    (gv / "all.yml").write_text(VaultKey("dev-password-1").encrypt("ours: 0urs-s3cret\n"))
    (tmp_path / "site.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        '    - debug: {msg: "{{ web_token }} {{ db_password }} {{ ours }}"}\n'
    )
    ids = ("--vault-id", "dev@dev.pw", "--vault-id", "prod@prod.pw")
    run = _run("apply", "-i", "inventory.yml", "site.yml", *ids, "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "w3b-t0ken-dev" not in run.stdout and "s3cret" not in run.stdout
    assert '"msg": "*** *** ***"' in run.stdout
    one = _run("apply", "-i", "inventory.yml", "site.yml", "--vault-id", "dev@dev.pw",
               cwd=tmp_path)  # fmt: skip
    assert one.returncode in (1, 4), one.stdout + one.stderr
    assert "group_vars/db.yml: cannot decrypt: wrong vault password or damaged data" in one.stderr
    assert "(tried" not in one.stderr  # one password: nothing else was tried
    both = _run("vault", "view", *ids, "group_vars/db.yml", cwd=tmp_path)
    assert both.stdout == PLAIN
    # writing under a label: the 1.2 header names it, and ansible-vault reads it
    secret = tmp_path / "new.yml"
    secret.write_text("x: 1\n")
    wrote = _run("vault", "encrypt", "--format", "ansible", "--vault-id", "prod@prod.pw",
                 "new.yml", cwd=tmp_path)  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    assert secret.read_text().startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    view = subprocess.run(
        [ansible_vault, "view", "--vault-id", f"prod@{tmp_path / 'prod.pw'}", str(secret)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert view.stdout == "x: 1\n", view.stderr
    two = _run("vault", "encrypt", *ids, "group_vars/web.yml", cwd=tmp_path)
    assert two.returncode == 2 or "already encrypted" in two.stderr
    bad = _run("vault", "view", "--vault-id", "nolabel@", "new.yml", cwd=tmp_path)
    assert bad.stderr == (
        "error: --vault-id 'nolabel@': expected LABEL@FILE, LABEL@prompt, or FILE\n"
    )
