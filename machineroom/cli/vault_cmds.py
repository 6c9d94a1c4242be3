"""`machineroom vault ...`: encrypt, decrypt, view and edit vault files; encrypt single values.

The cryptography lives in `machineroom.vault`; this file only gets the password, prompts,
runs the editor and prints. Errors are raised as MachineroomError for `cli.main` to print.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

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

F = TypeVar("F", bound=Callable[..., Any])


def password_options(func: F) -> F:
    """The options every vault command shares: where the vault password comes from."""
    func = click.option(
        "--vault-id",
        "vault_ids",
        multiple=True,
        expose_value=False,
        callback=_remember_vault_ids,
        help="[LABEL@]FILE or LABEL@prompt, as ansible-vault's: repeatable to decrypt; "
        "one to encrypt with (--format ansible writes its LABEL in the 1.2 header).",
    )(func)
    func = click.option(
        "--ask-vault-password",
        "--ask-vault-pass",
        "ask",
        is_flag=True,
        help="Prompt for the vault password (even when a file or the variable gives one).",
    )(func)
    func = click.option(
        "--vault-password-file",
        "password_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Read the password from the first line of FILE (mode 600), or run FILE if it "
        f"is executable. Else ${PASSWORD_ENV}, else ${ANSIBLE_PASSWORD_FILE_ENV}, else a "
        "prompt on a terminal.",
    )(func)
    return func


def format_option(func: F) -> F:
    """`--format`: write our format (default) or ansible-vault's 1.1."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="machineroom",
        show_default=True,
        help="machineroom (scrypt, AES-GCM) or ansible (ansible-vault 1.1, readable by Ansible).",
    )(func)


def _prompt(text: str) -> str:
    value: str = click.prompt(text, hide_input=True, err=True)
    return value


def _prompt_new(text: str) -> str:
    """Ask twice when choosing a password to encrypt with: a typo would lock the data away."""
    value: str = click.prompt(
        f"New {text.lower()}", hide_input=True, confirmation_prompt=True, err=True
    )
    return value


def _remember_vault_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta["vault_ids"] = tuple(value)
    return value


def get_key(password_file: Path | None, ask: bool, *, new: bool = False) -> VaultKey:
    """A VaultKey from --vault-password-file, $MACHINEROOM_VAULT_PASSWORD or a prompt, or
    from --vault-id options (a ring of keys).

    A prompt happens when asked for, or when nothing else gives a password and stdin is a
    terminal; a script without a terminal gets an error naming the three ways instead.
    """
    if ask and password_file is not None:
        raise UsageError("give either --vault-password-file or --ask-vault-password, not both")
    vault_ids: tuple[str, ...] = click.get_current_context().meta.get("vault_ids", ())
    prompt = None
    if ask or sys.stdin.isatty():
        prompt = _prompt_new if new else _prompt
    if vault_ids:
        if new and (len(vault_ids) > 1 or password_file is not None or ask):
            raise UsageError("encrypting takes one password: give one --vault-id")
        return key_for_ids(vault_ids, password_file, ask, prompt)
    password = read_vault_password(password_file, env=None if ask else PASSWORD_ENV, prompt=prompt)
    return VaultKey(password)


@click.group("vault")
def vault_group() -> None:
    """Encrypt secrets: whole files, or single values for inventories (`!vault |`).

    The password comes from --vault-password-file, $MACHINEROOM_VAULT_PASSWORD, or a prompt.
    """


@vault_group.command("encrypt")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option
@password_options
def encrypt_command(
    files: tuple[Path, ...], fmt: str, password_file: Path | None, ask: bool
) -> None:
    """Encrypt FILES in place (each keeps its mode; written atomically)."""
    for path in files:  # check every file before asking for a password or changing any
        if is_vault_text(_peek(path)):
            raise VaultError(f"{path}: already encrypted")
    key = get_key(password_file, ask, new=True)
    for path in files:
        encrypt_file(path, key, fmt)
        click.echo(
            f"encrypted {path}" + (" (ansible-vault format)" if fmt == "ansible" else ""), err=True
        )


@vault_group.command("decrypt")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@password_options
def decrypt_command(files: tuple[Path, ...], password_file: Path | None, ask: bool) -> None:
    """Decrypt FILES in place (each keeps its mode; written atomically)."""
    for path in files:
        if not is_vault_text(_peek(path)):
            raise VaultError(f"{path}: not encrypted")
    key = get_key(password_file, ask)
    # Decrypt everything first, so a wrong password or a damaged file changes nothing.
    plain = [(path, read_vault_file(path, key)) for path in files]
    for path, data in plain:
        write_atomic(os.path.realpath(path), data)
        click.echo(f"decrypted {path}", err=True)


@vault_group.command("view")
@click.argument("file", type=click.Path(path_type=Path))
@password_options
def view_command(file: Path, password_file: Path | None, ask: bool) -> None:
    """Print the plaintext of an encrypted FILE to stdout."""
    key = get_key(password_file, ask)
    data = read_vault_file(file, key)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


@vault_group.command("edit")
@click.argument("file", type=click.Path(path_type=Path))
@format_option
@password_options
def edit_command(file: Path, fmt: str, password_file: Path | None, ask: bool) -> None:
    """Edit an encrypted FILE with $VISUAL/$EDITOR; a missing FILE is created (in --format).

    An existing FILE keeps its format, ours or ansible-vault's.

    The plaintext lives only in a private temporary folder (mode 700, in RAM when /dev/shm
    exists), is overwritten and removed afterwards, and FILE is rewritten only if it changed.
    """
    exists = file.exists()
    if exists and not is_vault_text(_peek(file)):
        raise VaultError(f"{file}: not encrypted; run `machineroom vault encrypt {file}` first")
    key = get_key(password_file, ask, new=not exists)
    if exists:
        fmt = vault_format(_peek(file))
    before = read_vault_file(file, key) if exists else b""
    with _private_copy(file.name, before) as scratch:
        _run_editor(scratch)
        after = scratch.read_bytes()
    if after == before:
        click.echo(f"{file}: no changes; not rewritten", err=True)
        return
    write_atomic(os.path.realpath(file), key.encrypt_bytes(after, fmt=fmt).encode("ascii"))
    click.echo(f"{'saved' if exists else 'created'} {file}", err=True)


@vault_group.command("encrypt-string")
@click.argument("value", required=False)
@click.option("--name", "-n", default=None, help="Print `NAME: !vault |` ready to paste.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from stdin.")
@click.option(
    "--oneline",
    is_flag=True,
    help="One line, no newlines: for the server-list format or a plain YAML string.",
)
@format_option
@password_options
def encrypt_string_command(
    value: str | None,
    name: str | None,
    from_stdin: bool,
    oneline: bool,
    fmt: str,
    password_file: Path | None,
    ask: bool,
) -> None:
    """Encrypt one VALUE for an inventory or vars file.

    Without VALUE or --stdin, asks for it on a terminal (nothing lands in shell history).
    One trailing newline of stdin is dropped. Each value has its own salt, so each costs one
    key derivation (~0.1 s) to encrypt and to decrypt.
    """
    if value is not None and from_stdin:
        raise UsageError("give VALUE or --stdin, not both")
    if oneline and fmt == "ansible":
        raise UsageError(
            "--oneline is not possible with --format ansible (it has no one-line form)"
        )
    if value is None:
        if from_stdin or not sys.stdin.isatty():
            value = sys.stdin.read()
            value = value[:-1] if value.endswith("\n") else value
            value = value[:-1] if value.endswith("\r") else value
        else:
            value = click.prompt(
                "Value to encrypt", hide_input=True, confirmation_prompt=True, err=True
            )
    if not value:
        raise UsageError("nothing to encrypt: the value is empty")
    key = get_key(password_file, ask, new=True)
    text = key.encrypt_bytes(value.encode("utf-8"), oneline=oneline, fmt=fmt)
    click.echo(render_encrypted_value(text, name, oneline))


@vault_group.command("rekey")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--new-vault-password-file",
    "new_password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the new password from FILE; else a prompt (asked twice).",
)
@password_options
def rekey_command(
    files: tuple[Path, ...],
    new_password_file: Path | None,
    password_file: Path | None,
    ask: bool,
) -> None:
    """Re-encrypt FILES under a new password, each keeping its format."""
    for path in files:
        if not is_vault_text(_peek(path)):
            raise VaultError(f"{path}: not encrypted")
    key = get_key(password_file, ask)
    # Decrypt everything with the old password first: a wrong one changes nothing.
    plain = [(path, vault_format(_peek(path)), read_vault_file(path, key)) for path in files]
    if new_password_file is None and not sys.stdin.isatty():
        raise UsageError("give --new-vault-password-file (stdin is not a terminal)")
    new_key = VaultKey(read_vault_password(new_password_file, env=None, prompt=_prompt_new))
    for path, fmt, data in plain:
        write_atomic(os.path.realpath(path), new_key.encrypt_bytes(data, fmt=fmt).encode("ascii"))
        click.echo(f"rekeyed {path}", err=True)


def render_encrypted_value(text: str, name: str | None, oneline: bool) -> str:
    """Format vault text for pasting: `NAME: !vault |` + indented block, or the one-line form."""
    prefix = f"{name}: " if name else ""
    if oneline:
        return prefix + text
    block = "\n".join("  " + line for line in text.rstrip("\n").split("\n"))
    return f"{prefix}!vault |\n{block}"


def _peek(path: Path) -> str:
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
def _private_copy(name: str, data: bytes) -> Iterator[Path]:
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


def _run_editor(path: Path) -> None:
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
