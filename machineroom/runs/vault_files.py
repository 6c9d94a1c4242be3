"""The file work of `machineroom vault ...`: which key to use, and encrypting, decrypting,
re-keying and editing vault files in place. The cryptography lives in machineroom/vault.py;
the CLI (cli/vault_cmds.py) asks for passwords and prints.

Files are always rewritten atomically and keep their mode (vault.py's `write_atomic`); each
command checks every file before it changes any, and decrypts everything before it writes, so
a wrong password or a damaged file changes nothing. Plaintext is written only where the user
asked for it (`decrypt`) and, while editing, to a private scratch folder wiped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from machineroom.errors import UsageError, VaultError
from machineroom.vault import (
    ANSIBLE_PASSWORD_FILE_ENV,
    FORMATS,
    PASSWORD_ENV,
    VaultKey,
    encrypt_file,
    is_vault_text,
    key_for_ids,
    read_vault_file,
    read_vault_password,
    vault_format,
    write_atomic,
)

# the vault's names the CLI shows in its options' help, passed on
__all__ = [
    "ANSIBLE_PASSWORD_FILE_ENV",
    "FORMATS",
    "PASSWORD_ENV",
    "Decrypted",
    "Prompt",
    "VaultKey",
    "check_editable",
    "check_encrypted",
    "check_plain",
    "decrypt_files",
    "decrypt_for_rekey",
    "edit_file",
    "encrypt_files",
    "encrypt_value",
    "new_vault_key",
    "peek",
    "private_copy",
    "run_editor",
    "vault_key",
    "view_file",
    "write_rekeyed",
]

Prompt = Callable[[str], str]


def vault_key(
    password_file: Path | None,
    ask: bool,
    vault_ids: Sequence[str],
    prompt: Prompt | None,
    *,
    new: bool = False,
) -> VaultKey:
    """A VaultKey from the password file, $MACHINEROOM_VAULT_PASSWORD or `prompt`, or from
    --vault-id options (a ring of keys). `new`: the key encrypts, so it must be one password.
    `prompt` None: there is no terminal to ask on (a VaultError names the ways instead)."""
    if ask and password_file is not None:
        raise UsageError("give either --vault-password-file or --ask-vault-password, not both")
    if vault_ids:
        if new and (len(vault_ids) > 1 or password_file is not None or ask):
            raise UsageError("encrypting takes one password: give one --vault-id")
        return key_for_ids(vault_ids, password_file, ask, prompt)
    password = read_vault_password(password_file, env=None if ask else PASSWORD_ENV, prompt=prompt)
    return VaultKey(password)


def new_vault_key(password_file: Path | None, prompt: Prompt) -> VaultKey:
    """The key `rekey` encrypts with: the new password file's, else the prompt's."""
    return VaultKey(read_vault_password(password_file, env=None, prompt=prompt))


def check_plain(files: Sequence[Path]) -> None:
    """A VaultError for the first of `files` that is already encrypted (or unreadable)."""
    for path in files:
        if is_vault_text(peek(path)):
            raise VaultError(f"{path}: already encrypted")


def check_encrypted(files: Sequence[Path]) -> None:
    """A VaultError for the first of `files` that is not encrypted (or unreadable)."""
    for path in files:
        if not is_vault_text(peek(path)):
            raise VaultError(f"{path}: not encrypted")


def encrypt_files(files: Sequence[Path], key: VaultKey, fmt: str) -> Iterator[Path]:
    """Encrypt each file in place in format `fmt`; yields each path once it is written."""
    for path in files:
        encrypt_file(path, key, fmt)
        yield path


def decrypt_files(files: Sequence[Path], key: VaultKey) -> Iterator[Path]:
    """Decrypt each file in place; yields each path once it is written. Every file is
    decrypted before the first is written."""
    plain = [(path, read_vault_file(path, key)) for path in files]
    for path, data in plain:
        write_atomic(os.path.realpath(path), data)
        yield path


def view_file(path: Path, key: VaultKey) -> bytes:
    """The plaintext of an encrypted file (nothing written anywhere)."""
    return read_vault_file(path, key)


@dataclass(frozen=True)
class Decrypted:
    """A vault file's plaintext held in memory for re-keying, and the format it was in."""

    path: Path
    fmt: str
    data: bytes


def decrypt_for_rekey(files: Sequence[Path], key: VaultKey) -> list[Decrypted]:
    """Every file decrypted with the old key, in memory: a wrong key changes nothing."""
    return [Decrypted(path, vault_format(peek(path)), read_vault_file(path, key)) for path in files]


def write_rekeyed(files: Sequence[Decrypted], new_key: VaultKey) -> Iterator[Path]:
    """Each file encrypted again under `new_key`, in its own format; yields each path once
    it is written."""
    for item in files:
        text = new_key.encrypt_bytes(item.data, fmt=item.fmt)
        write_atomic(os.path.realpath(item.path), text.encode("ascii"))
        yield item.path


def encrypt_value(value: str, key: VaultKey, oneline: bool, fmt: str) -> str:
    """One value as vault text (its own salt), for an inventory or vars file."""
    return key.encrypt_bytes(value.encode("utf-8"), oneline=oneline, fmt=fmt)


def check_editable(path: Path) -> bool:
    """Whether `path` exists; a VaultError when it exists but is not encrypted."""
    exists = path.exists()
    if exists and not is_vault_text(peek(path)):
        raise VaultError(f"{path}: not encrypted; run `machineroom vault encrypt {path}` first")
    return exists


def edit_file(path: Path, key: VaultKey, fmt: str) -> Literal["unchanged", "saved", "created"]:
    """Edit a vault file with $VISUAL/$EDITOR; a missing one is created in `fmt`, an existing
    one keeps its own format. The plaintext lives only in a private scratch folder (see
    `private_copy`); the file is rewritten only if the text changed."""
    exists = path.exists()
    if exists:
        fmt = vault_format(peek(path))
    before = read_vault_file(path, key) if exists else b""
    with private_copy(path.name, before) as scratch:
        run_editor(scratch)
        after = scratch.read_bytes()
    if after == before:
        return "unchanged"
    write_atomic(os.path.realpath(path), key.encrypt_bytes(after, fmt=fmt).encode("ascii"))
    return "saved" if exists else "created"


def peek(path: Path) -> str:
    """The first bytes of a file as text, enough to see a vault header; VaultError if unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read(256).decode("ascii", "replace")
    except FileNotFoundError:
        raise VaultError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VaultError(f"{path}: is a directory") from None
    except PermissionError:
        raise VaultError(f"{path}: permission denied") from None


@contextlib.contextmanager
def private_copy(name: str, data: bytes) -> Iterator[Path]:
    """A plaintext copy in a fresh 700 folder, overwritten with zeros and removed on exit."""
    # /dev/shm keeps the plaintext off disk; it is tmpfs on Linux.
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="machineroom-vault-", dir=base))  # mode 700
    scratch = folder / name  # same name, so the editor picks the right syntax highlighting
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        yield scratch
    finally:
        # Editors leave swap and backup files beside the file: wipe everything in the folder.
        for leftover in folder.iterdir():
            with contextlib.suppress(OSError):
                if leftover.is_file() and not leftover.is_symlink():
                    size = leftover.stat().st_size
                    with open(leftover, "r+b") as handle:
                        handle.write(b"\0" * size)
                        handle.flush()
                        os.fsync(handle.fileno())
        shutil.rmtree(folder, ignore_errors=True)


def run_editor(path: Path) -> None:
    """$VISUAL, else $EDITOR, else vi, on `path`; a VaultError when it fails."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    command = [*shlex.split(editor), str(path)]
    try:
        result = subprocess.run(command, check=False)
    except FileNotFoundError:
        raise VaultError(f"editor not found: {command[0]} (set $EDITOR)") from None
    if result.returncode != 0:
        raise VaultError(
            f"the editor exited with status {result.returncode}; the vault file is unchanged"
        )
