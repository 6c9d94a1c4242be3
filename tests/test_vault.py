"""The vault: the format, the key cache, atomic files, the password sources and the CLI."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from machineroom import vault
from machineroom.errors import VaultError
from machineroom.inventory.model import VAULT_PREFIX, Secret
from machineroom.vault import (
    HEADER,
    WRONG_PASSWORD,
    VaultKey,
    decrypt_file,
    decrypt_text,
    encrypt_file,
    encrypt_text,
    is_vault_text,
    read_vault_password,
)

PASSWORD = "correct horse battery staple"
SECRET = "pa55-w0rd: with 'quotes' and ünïcode\nand a second line"


def test_prefix_matches_the_inventory_model() -> None:
    assert vault.VAULT_PREFIX == VAULT_PREFIX
    assert HEADER.startswith(VAULT_PREFIX)


def test_round_trip_block_form() -> None:
    text = encrypt_text(SECRET, PASSWORD)
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == HEADER
    assert all(len(line) <= 80 for line in lines)
    assert text.endswith("\n")
    assert SECRET not in text
    assert is_vault_text(text)
    assert decrypt_text(text, PASSWORD) == SECRET


def test_round_trip_one_line_form_fits_the_server_list_format() -> None:
    text = encrypt_text("s3cret", PASSWORD, oneline=True)
    assert text.startswith(HEADER + ";")
    assert "\n" not in text
    # The server-list format splits on `--` and treats `#` as a comment.
    assert "-" not in text
    assert "#" not in text
    assert decrypt_text(text, PASSWORD) == "s3cret"


def test_each_encryption_is_different() -> None:
    assert encrypt_text("x", PASSWORD) != encrypt_text("x", PASSWORD)


def test_block_form_survives_yaml_indentation_and_crlf() -> None:
    block = encrypt_text(SECRET, PASSWORD)
    document = "password: |\n" + "".join(f"    {line}\r\n" for line in block.splitlines())
    loaded = yaml.safe_load(document)["password"]
    assert decrypt_text(loaded, PASSWORD) == SECRET
    indented = "\n".join("   " + line for line in block.splitlines())
    assert decrypt_text(indented, PASSWORD) == SECRET


def test_wrong_password_is_one_clear_error() -> None:
    text = encrypt_text(SECRET, PASSWORD)
    with pytest.raises(VaultError) as info:
        decrypt_text(text, "not the password")
    assert str(info.value) == WRONG_PASSWORD
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


@pytest.mark.parametrize("offset", [0, 2, 3, 20, 35, -1])
def test_tampered_data_is_refused(offset: int) -> None:
    text = encrypt_text("s3cret", PASSWORD, oneline=True)
    raw = bytearray(base64.b64decode(text.split(";")[4]))
    raw[offset] ^= 0x01
    damaged = f"{HEADER};{base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(VaultError, match="cannot decrypt"):
        decrypt_text(damaged, PASSWORD)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("!!!notbase64", "damaged vault data \\(not valid base64\\)"),
        ("AAAA", "damaged vault data \\(too short\\)"),
    ],
)
def test_malformed_payload(payload: str, message: str) -> None:
    with pytest.raises(VaultError, match=message):
        decrypt_text(f"{HEADER};{payload}", PASSWORD)


def test_huge_kdf_parameters_are_refused_before_deriving() -> None:
    raw = bytes([30, 8, 1]) + bytes(16 + 12 + 16)
    text = f"{HEADER};{base64.b64encode(raw).decode()}"
    with pytest.raises(VaultError, match="more than 1 GiB"):
        decrypt_text(text, PASSWORD)


def test_unknown_format_and_plain_text() -> None:
    with pytest.raises(VaultError, match="unsupported vault format"):
        decrypt_text("$MACHINEROOM_VAULT;2;scrypt;AES256GCM\nAAAA", PASSWORD)
    with pytest.raises(VaultError, match="unsupported vault algorithms"):
        decrypt_text("$MACHINEROOM_VAULT;1;pbkdf2;AES256GCM\nAAAA", PASSWORD)
    with pytest.raises(VaultError, match="not vault data"):
        decrypt_text("hello", PASSWORD)
    assert not is_vault_text("hello")


def test_kdf_parameters_are_stored_and_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault, "SCRYPT_LOG2_N", 12)
    monkeypatch.setattr(vault, "SCRYPT_R", 4)
    text = encrypt_text("cheap", PASSWORD, oneline=True)
    assert base64.b64decode(text.split(";")[4])[:3] == bytes([12, 4, 1])
    monkeypatch.undo()  # newer defaults still read older values
    assert decrypt_text(text, PASSWORD) == "cheap"


def test_empty_password_is_refused() -> None:
    with pytest.raises(VaultError, match="empty"):
        VaultKey("")


def test_key_cache_derives_once_per_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = vault._derive

    def counting(password: bytes, salt: bytes, params: tuple[int, int, int]) -> bytes:
        calls.append(salt)
        return real(password, salt, params)

    one = encrypt_text("one", PASSWORD)
    two = encrypt_text("two", PASSWORD, oneline=True)
    monkeypatch.setattr(vault, "_derive", counting)
    key = VaultKey(PASSWORD)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(key.decrypt(one))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["one"] * 8
    assert key.decrypt(two) == "two"
    assert key.decrypt(two) == "two"
    assert len(calls) == 2  # one derivation per distinct salt, even under a race
    assert PASSWORD not in repr(key)


def test_vault_key_plugs_into_secret_reveal() -> None:
    secret = Secret("vault", encrypt_text("hunter2", PASSWORD))
    assert secret.reveal(VaultKey(PASSWORD).decrypt) == "hunter2"
    assert "hunter2" not in repr(secret)


# --- files ---------------------------------------------------------------------------------


def test_file_round_trip_keeps_mode_and_content(tmp_path: Path) -> None:
    path = tmp_path / "secrets.yml"
    data = b"db_password: x\x00y\n" + bytes(range(256))  # binary survives too
    path.write_bytes(data)
    path.chmod(0o640)
    encrypt_file(path, PASSWORD)
    assert path.read_text().startswith(HEADER + "\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    decrypt_file(path, PASSWORD)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.yml"]


def test_file_through_a_symlink_rewrites_the_target(tmp_path: Path) -> None:
    target = tmp_path / "real.yml"
    target.write_text("a: 1\n")
    link = tmp_path / "link.yml"
    link.symlink_to(target)
    encrypt_file(link, PASSWORD)
    assert link.is_symlink()
    assert is_vault_text(target.read_text())


def test_already_encrypted_and_not_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("plain\n")
    with pytest.raises(VaultError, match="not encrypted"):
        decrypt_file(path, PASSWORD)
    encrypt_file(path, PASSWORD)
    with pytest.raises(VaultError, match="already encrypted"):
        encrypt_file(path, PASSWORD)
    with pytest.raises(VaultError, match="no such file"):
        encrypt_file(tmp_path / "missing", PASSWORD)


def test_wrong_password_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("plain\n")
    encrypt_file(path, PASSWORD)
    before = path.read_bytes()
    with pytest.raises(VaultError, match=f"{path}: {WRONG_PASSWORD}"):
        decrypt_file(path, "wrong")
    assert path.read_bytes() == before


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_atomic_write_failure_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "f.yml"
    path.write_text("original\n")

    def boom(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="No space left"):
        encrypt_file(path, PASSWORD)
    monkeypatch.undo()
    assert path.read_text() == "original\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.yml"]


def test_write_atomic_new_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new"
    vault.write_atomic(path, b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- the password --------------------------------------------------------------------------


def _password_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "vault-pass"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_password_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MACHINEROOM_VAULT_PASSWORD", "from-env")
    path = _password_file(tmp_path, "from-file\r\nsecond line ignored\n")
    assert read_vault_password(path, prompt=lambda _: "from-prompt") == "from-file"
    assert read_vault_password(prompt=lambda _: "from-prompt") == "from-env"
    assert read_vault_password(env=None, prompt=lambda _: "from-prompt") == "from-prompt"
    monkeypatch.delenv("MACHINEROOM_VAULT_PASSWORD")
    with pytest.raises(VaultError) as info:
        read_vault_password()
    message = str(info.value)
    assert "--vault-password-file" in message
    assert "$MACHINEROOM_VAULT_PASSWORD" in message
    assert "--ask-vault-password" in message


def test_password_file_must_be_private(tmp_path: Path) -> None:
    path = _password_file(tmp_path, "pw\n", mode=0o644)
    with pytest.raises(VaultError, match=r"accessible to other users \(mode 644\).*chmod 600"):
        read_vault_password(path)
    path.chmod(0o640)  # group-readable is the user's call, like a shared deploy group
    assert read_vault_password(path) == "pw"


def test_password_file_problems(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="does not exist"):
        read_vault_password(tmp_path / "nope")
    with pytest.raises(VaultError, match="is empty"):
        read_vault_password(_password_file(tmp_path, "\nsecond\n"))


# --- the CLI, as a user runs it -----------------------------------------------------------


def machineroom(
    *args: str,
    password: str | None = PASSWORD,
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MACHINEROOM_VAULT_PASSWORD"}
    if password is not None:
        env["MACHINEROOM_VAULT_PASSWORD"] = password
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "machineroom", "vault", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_encrypt_view_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "group_vars.yml"
    path.write_text("db_password: hunter2\n")
    path.chmod(0o640)
    result = machineroom("encrypt", str(path))
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640

    result = machineroom("view", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "db_password: hunter2\n"

    result = machineroom("decrypt", str(path))
    assert result.returncode == 0, result.stderr
    assert path.read_text() == "db_password: hunter2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_cli_password_file(tmp_path: Path) -> None:
    pw = _password_file(tmp_path, "file-password\n")
    path = tmp_path / "s.txt"
    path.write_text("top secret\n")
    result = machineroom("encrypt", str(path), "--vault-password-file", str(pw), password=None)
    assert result.returncode == 0, result.stderr
    assert decrypt_text(path.read_text(), "file-password") == "top secret\n"
    pw.chmod(0o604)
    result = machineroom("view", str(path), "--vault-password-file", str(pw), password=None)
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
    assert "file-password" not in result.stderr + result.stdout


def test_cli_wrong_password_shows_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_text("token: s3cr3t-t0ken\n")
    encrypt_file(path, PASSWORD)
    before = path.read_bytes()
    for command in ("view", "decrypt", "edit"):
        result = machineroom(command, str(path), password="guess-0f-the-pass")
        assert result.returncode == 1
        assert result.stderr.strip() == f"error: {path}: {WRONG_PASSWORD}"
        output = result.stdout + result.stderr
        assert "s3cr3t-t0ken" not in output
        assert "guess-0f-the-pass" not in output
        assert PASSWORD not in output
        assert "Traceback" not in output
    assert path.read_bytes() == before


def test_cli_no_password_and_no_terminal(tmp_path: Path) -> None:
    result = machineroom("encrypt-string", "v4lue-n0t-shown", password=None)
    assert result.returncode == 1
    assert "no vault password given" in result.stderr
    assert "v4lue-n0t-shown" not in result.stdout + result.stderr


def test_cli_refuses_double_encrypt_and_plain_decrypt(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x\n")
    result = machineroom("decrypt", str(plain))
    assert (result.returncode, result.stderr.strip()) == (1, f"error: {plain}: not encrypted")
    encrypted = tmp_path / "enc.txt"
    encrypted.write_text("y\n")
    encrypt_file(encrypted, PASSWORD)
    # Checked before anything is written: plain.txt stays plain.
    result = machineroom("encrypt", str(plain), str(encrypted))
    assert (result.returncode, result.stderr.strip()) == (
        1,
        f"error: {encrypted}: already encrypted",
    )
    assert plain.read_text() == "x\n"


def test_cli_decrypt_many_is_all_or_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.write_text("good\n")
    encrypt_file(good, PASSWORD)
    other = tmp_path / "other"
    other.write_text("other\n")
    encrypt_file(other, "another password")
    result = machineroom("decrypt", str(good), str(other))
    assert result.returncode == 1
    assert is_vault_text(good.read_text())


def test_cli_encrypt_string_yaml_block(tmp_path: Path) -> None:
    result = machineroom("encrypt-string", "hunter2", "--name", "db_password")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("db_password: !vault |\n  $MACHINEROOM_VAULT;1;scrypt;")
    assert "hunter2" not in result.stdout

    class Loader(yaml.SafeLoader):
        pass

    def scalar(loader: yaml.SafeLoader, node: yaml.Node) -> str:
        assert isinstance(node, yaml.ScalarNode)
        return str(loader.construct_scalar(node))

    Loader.add_constructor("!vault", scalar)
    loaded = yaml.load(result.stdout, Loader=Loader)
    assert decrypt_text(loaded["db_password"], PASSWORD) == "hunter2"


def test_cli_encrypt_string_stdin_and_oneline() -> None:
    result = machineroom("encrypt-string", "--stdin", "--oneline", stdin="from stdin\n")
    assert result.returncode == 0, result.stderr
    line = result.stdout.rstrip("\n")
    assert "\n" not in line
    assert decrypt_text(line, PASSWORD) == "from stdin"
    # Without a terminal, a missing VALUE is read from stdin too.
    result = machineroom("encrypt-string", "--name", "x", "--oneline", stdin="piped")
    name, _, value = result.stdout.strip().partition(": ")
    assert (name, decrypt_text(value, PASSWORD)) == ("x", "piped")


def test_cli_encrypt_string_usage_errors() -> None:
    result = machineroom("encrypt-string", "v", "--stdin")
    assert result.returncode == 5
    assert "not both" in result.stderr
    result = machineroom("encrypt-string", "--stdin", stdin="")
    assert result.returncode == 5
    assert "empty" in result.stderr


def _editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o700)
    return str(script)


def test_cli_edit_changes_and_wipes_the_temp_copy(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("a: 1\n")
    path.chmod(0o600)
    encrypt_file(path, PASSWORD)
    seen = tmp_path / "seen"
    editor = _editor(
        tmp_path,
        f'stat -c %a "$(dirname "$1")" > {seen}; echo "$1" >> {seen}; echo "b: 2" >> "$1"',
    )
    result = machineroom("edit", str(path), extra_env={"EDITOR": editor, "VISUAL": ""})
    assert result.returncode == 0, result.stderr
    assert decrypt_text(path.read_text(), PASSWORD) == "a: 1\nb: 2\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mode, scratch = seen.read_text().split()
    assert mode == "700"
    assert scratch.endswith("/vars.yml")  # same name: the editor highlights YAML
    assert not Path(scratch).parent.exists()


def test_cli_edit_unchanged_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("a: 1\n")
    encrypt_file(path, PASSWORD)
    before = path.read_bytes()
    result = machineroom("edit", str(path), extra_env={"EDITOR": "true", "VISUAL": ""})
    assert result.returncode == 0, result.stderr
    assert "no changes" in result.stderr
    assert path.read_bytes() == before


def test_cli_edit_failing_editor_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("a: 1\n")
    encrypt_file(path, PASSWORD)
    before = path.read_bytes()
    editor = _editor(tmp_path, 'echo "b: 2" >> "$1"; exit 3')
    result = machineroom("edit", str(path), extra_env={"EDITOR": editor, "VISUAL": ""})
    assert result.returncode == 1
    assert "exited with status 3" in result.stderr
    assert path.read_bytes() == before


def test_cli_edit_creates_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "new.yml"
    editor = _editor(tmp_path, 'echo "fresh: yes" > "$1"')
    result = machineroom("edit", str(path), extra_env={"EDITOR": editor, "VISUAL": ""})
    assert result.returncode == 0, result.stderr
    assert decrypt_text(path.read_text(), PASSWORD) == "fresh: yes\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cli_edit_plain_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.yml"
    path.write_text("a: 1\n")
    result = machineroom("edit", str(path), extra_env={"EDITOR": "true"})
    assert result.returncode == 1
    assert "not encrypted; run `machineroom vault encrypt" in result.stderr
